"""Files that survive a power cut: a file renamed into place is durable only once its directory is fsynced too."""

from __future__ import annotations

import os
from pathlib import Path


def replace_durably(partial: Path, final: Path) -> None:
    """Rename a written and fsynced `partial` to `final`, then fsync the directory so the new name is on disk."""
    partial.replace(final)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
