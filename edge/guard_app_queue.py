"""The guard app's field reports waiting for the district broker (task answers, checkpoint scans, tips), kept in SQLite
next to the outbox (WAL, fsync on commit): what the app was told is queued survives an edge restart and goes out after it,
in order. A report is removed only once the broker has taken it."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS field_reports (
    sequence  INTEGER PRIMARY KEY,
    id        TEXT    NOT NULL UNIQUE,
    topic     TEXT    NOT NULL,
    payload   BLOB    NOT NULL,
    queued_at REAL    NOT NULL
);
"""


def field_queue_path(outbox_path: Path) -> Path:
    """Where the guard app's field reports wait: next to the outbox database."""
    return outbox_path.with_name(f"{outbox_path.stem}-field.db")


class FieldQueue:
    """A durable FIFO of (topic, payload) by report id; `path` None keeps it in memory. Safe from several threads."""

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(":memory:" if path is None else path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.clock = clock

    def put(self, report_id: str, topic: str, payload: bytes) -> bool:
        """Queue a report (committed when this returns); False when one of this id is already waiting."""
        with self._lock, self._db:
            cursor = self._db.execute("INSERT OR IGNORE INTO field_reports (id, topic, payload, queued_at) VALUES (?, ?, ?, ?)",
                                      (report_id, topic, payload, self.clock()))
            return cursor.rowcount == 1

    def first(self) -> tuple[int, str, bytes] | None:
        """The oldest waiting report: (sequence, topic, payload)."""
        with self._lock:
            return self._db.execute("SELECT sequence, topic, payload FROM field_reports ORDER BY sequence LIMIT 1").fetchone()

    def remove(self, sequence: int) -> None:
        """The broker took it."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM field_reports WHERE sequence = ?", (sequence,))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM field_reports").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
