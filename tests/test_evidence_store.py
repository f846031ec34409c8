"""The edge's evidence directory stays under `evidence_keep_mb`: oldest first, never a file still to be uploaded or a young one."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from edge.evidence_store import KEEP_NEWER_S, report, sweep
from gateway.evidence_upload import EvidenceUploader
from guardlink.siteconfig import SiteConfig

NOW = time.time()


def evidence(directory: Path, name: str, size: int, age_s: float) -> Path:
    path = directory / "cam-gate" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "oldest": evidence(tmp_path, "e1-clip.mp4", 4000, 5 * 86400),
        "old": evidence(tmp_path, "e2-clip.mp4", 3000, 4 * 86400),
        "crashed": evidence(tmp_path, "e3-clip.mp4.partial", 500, 3 * 86400),
        "not_uploaded": evidence(tmp_path, "e4-clip.mp4", 2000, 2 * 86400),
        "young": evidence(tmp_path, "e5-snapshot.jpg", 1000, KEEP_NEWER_S / 2),
    }


def test_the_oldest_files_go_first_and_only_as_many_as_needed(tmp_path: Path, files: dict[str, Path]) -> None:
    swept = sweep(tmp_path, 7000, held=lambda path: False, now=NOW)  # 10,500 bytes held: the oldest file alone is enough
    assert (swept.removed, swept.removed_bytes, swept.kept_bytes, swept.over_limit) == (1, 4000, 6500, False)
    assert not files["oldest"].exists() and all(p.exists() for k, p in files.items() if k != "oldest")
    assert sweep(tmp_path, 7000, held=lambda path: False, now=NOW).removed == 0, "under the limit: nothing more goes"


def test_files_still_to_be_uploaded_and_young_files_stay_even_over_the_limit(tmp_path: Path, files: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    waiting = {str(files["not_uploaded"])}
    swept = sweep(tmp_path, 100, held=waiting.__contains__, now=NOW)
    assert {k for k, p in files.items() if p.exists()} == {"not_uploaded", "young"}, "a crash's .partial goes too"
    assert (swept.removed, swept.kept_bytes, swept.over_limit) == (3, 3000, True)
    with caplog.at_level(logging.INFO):
        report(swept, 100)
    assert "event=evidence_removed files=3" in caplog.text and "event=evidence_over_limit" in caplog.text


def test_nothing_counts_as_uploaded_before_the_upload_queue_is_read(tmp_path: Path) -> None:
    uploader = EvidenceUploader("http://127.0.0.1:1", lambda: "token", tmp_path / "uploads.db")
    assert uploader.waiting_paths() is None


def test_the_limit_is_a_site_setting_with_a_floor(school: SiteConfig) -> None:
    assert school.evidence_keep_mb == 2048
    document = school.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert SiteConfig.model_validate({**document, "evidence_keep_mb": 500}).evidence_keep_mb == 500
    with pytest.raises(ValueError, match="evidence_keep_mb"):
        SiteConfig.model_validate({**document, "evidence_keep_mb": 1})
