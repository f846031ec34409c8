"""What `make lint` checks stays clean where it is clean: ruff and mypy (pyproject's settings) on the packages listed
here. Add a package once it passes; the goal is every package `make lint` covers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUFF_CLEAN = ["."]  # the whole tree (pyproject.toml excludes the vendored console libraries)
MYPY_CLEAN = ["guardlink", "device_drivers", "gateway", "edge", "hub"]


def _tool(name: str) -> str:
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


def test_ruff_finds_nothing_in_the_clean_packages():
    result = subprocess.run([_tool("ruff"), "check", "--no-cache", *RUFF_CLEAN], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_mypy_finds_nothing_in_the_clean_packages(tmp_path):
    packages = [arg for package in MYPY_CLEAN for arg in ("-p", package)]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy"), *packages], cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
