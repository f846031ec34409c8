"""The edge's evidence directory kept under the site file's `evidence_keep_mb`, so snapshots and clips never fill the
disk the outbox lives on: the oldest files go first.

Never removed: a file the uploader has not yet delivered to the hub (the hub's copy is the one police keep), and a
file younger than `KEEP_NEWER_S` (its incident is still being handled). When such files alone keep the directory over
the limit it stays over, and says so (`event=evidence_over_limit`). A `.partial` file older than that is what a crash
left mid-write, and goes like any other.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KEEP_NEWER_S = 600.0
SWEEP_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Swept:
    """What one sweep did."""

    removed: int  # files
    removed_bytes: int
    kept_bytes: int  # what the directory holds afterwards
    over_limit: bool  # still over: only files that may not go are left


def sweep(directory: Path, keep_bytes: int, *, held: Callable[[str], bool], now: float) -> Swept:
    """Remove the oldest files of `directory` (and below) until it holds at most `keep_bytes`, except those `held(path)`
    and those modified less than KEEP_NEWER_S before `now`."""
    files = []
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue  # gone meanwhile (renamed from .partial, removed)
            files.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in files)
    removed = removed_bytes = 0
    for mtime, size, path in sorted(files):
        if total <= keep_bytes:
            break
        if now - mtime < KEEP_NEWER_S or held(path):
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("event=evidence_not_removed file=%s error=%r", path, str(exc))
            continue
        total -= size
        removed += 1
        removed_bytes += size
    return Swept(removed, removed_bytes, total, total > keep_bytes)


def report(swept: Swept, keep_bytes: int) -> None:
    """Log what a sweep did, when it did anything or could not do enough."""
    if swept.removed:
        log.info("event=evidence_removed files=%d bytes=%d kept_bytes=%d keep_bytes=%d", swept.removed, swept.removed_bytes, swept.kept_bytes, keep_bytes)
    if swept.over_limit:
        log.warning("event=evidence_over_limit kept_bytes=%d keep_bytes=%d reason=%r", swept.kept_bytes, keep_bytes,
                    "what is left is not uploaded to the hub yet, or younger than 10 minutes")
