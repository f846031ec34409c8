"""One process per outbox: an exclusive lock on `<outbox>.lock`, holding the owner's pid, released when it exits.

Two edges for one site would share an outbox and push each other off both brokers (they use the same client
ids). The lock is an flock(2): the kernel drops it when its holder dies, even by kill -9, so no stale lock
ever has to be cleaned up by hand.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class InUse(RuntimeError):
    """Another process holds the lock."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(
            f"{path} is in use by {holder}: one edge per site. Stop that process first, "
            f"or give this one another outbox (--outbox) if it is meant for a different site"
        )


class ProcessLock:
    """An exclusive, non-blocking lock on a file next to `path`; `acquire()` raises InUse naming the holder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(f"{path}.lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False (logged) when the lock file cannot be created at all, e.g. on a read-only disk."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            log.warning("event=lock_unavailable path=%s error=%r", self.path, str(exc))
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 64, 0).decode(errors="replace").strip())
            os.close(fd)
            raise InUse(self.path.with_suffix(""), holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go of the lock (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _describe(pid: str) -> str:
    """`process 1234 (guardlink edge --config ...)` from the pid the holder wrote, as far as /proc tells."""
    if not pid.isdigit():
        return "another process"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    return f"process {pid}" + (f" ({command[:200]})" if command else "")
