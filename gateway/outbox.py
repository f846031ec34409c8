"""The durable outbox: every escalation revision hits SQLite (WAL, fsync on commit) before anything depends on it.

Writes go through one writer thread with group commit, so the event loop never waits on the disk and a
burst of incidents costs one fsync per batch, not one per revision. When the database cannot be opened
or written (read-only directory, disk full), the outbox keeps accepting revisions in memory, says so
loudly through `health`, and writes them to disk as soon as the disk takes writes again: nothing already
stored is lost and the site keeps dispatching.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.lock import ProcessLock
from guardlink.models import Escalation, Severity

log = logging.getLogger(__name__)

SET_ASIDE_KEPT = 1000  # messages that could not be processed: the newest this many are kept for inspection
SET_ASIDE_BYTES = 64 * 1024
RESEND_MAX_S = 600.0  # an unreceipted revision is resent at most this far apart

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    sequence     INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL,
    revision     INTEGER NOT NULL,
    critical     INTEGER NOT NULL,
    source       TEXT,
    document     BLOB    NOT NULL,
    stored_at    REAL    NOT NULL,
    delivered_at REAL,
    expired_at   REAL,
    receipted_at REAL,
    UNIQUE (id, revision)
);
CREATE INDEX IF NOT EXISTS outbox_source ON outbox (source) WHERE source IS NOT NULL;
CREATE TABLE IF NOT EXISTS set_aside (
    at      REAL    NOT NULL,
    origin  TEXT    NOT NULL,
    topic   TEXT    NOT NULL,
    bytes   INTEGER NOT NULL,
    sha256  TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    error   TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS edge_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(slots=True)
class Unreceipted:
    """A revision the police broker took (PUBACK) that the command centre has not confirmed storing yet."""

    pending: Pending
    delivered_at: float
    resend_at: float
    resends: int = 0


@dataclass(slots=True, eq=False)
class Pending:
    """A stored revision waiting for the police broker's PUBACK."""

    escalation: Escalation
    document: bytes
    stored_at: float
    source: str | None = None  # identity of the device message it came from, to spot broker redeliveries
    on_disk: bool = False
    settled: bool = False  # the write was attempted: on disk, or held in memory because the disk failed
    settled_at: float | None = None
    written: asyncio.Future[bool] | None = field(default=None, repr=False)
    receipted: bool = False  # the command centre confirmed it committed this revision

    @property
    def critical(self) -> bool:
        return self.escalation.incident.severity is Severity.CRITICAL


class Outbox:
    """Durable, ordered store of escalation revisions awaiting delivery to the police."""

    def __init__(
        self, path: Path, *, clock: Callable[[], float] = time.time, expire_after_s: float = 24 * 3600, receipt_timeout_s: float | None = 30.0
    ) -> None:
        """`receipt_timeout_s`: resend a delivered revision whose receipt has not come by then (backing off); None
        when no command centre confirms receipt (a bare police broker): a PUBACK then ends the revision's journey."""
        self.path = Path(path)
        self.receipt_timeout_s = receipt_timeout_s
        self._unreceipted: dict[tuple[str, int], Unreceipted] = {}
        self.clock = clock
        self.expire_after_s = expire_after_s  # non-critical revisions only: critical ones never expire
        self.health = "not open"
        self.expired = 0
        self.changed = asyncio.Event()  # set whenever a revision becomes deliverable
        # Observers (metrics, telemetry): told of newly stored revisions, and of delivered ones with the time of PUBACK.
        self.on_stored: Callable[[list[Pending]], None] | None = None
        self.on_delivered: Callable[[list[Pending], float], None] | None = None
        self._pending: deque[Pending] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._db: sqlite3.Connection | None = None
        self._next_sequence = 1
        self._sources: set[str] = set()  # the device messages every stored revision came from, to recognise copies
        self._lock = ProcessLock(self.path)
        self._watchers: list[asyncio.Event] = []  # further readers of what is stored (alarm centres), woken like the uplink

    async def open(self) -> None:
        """Open (or create) the database and load what was not yet delivered; never raises for a bad disk, raises
        gateway.lock.InUse when another process has this outbox open (one edge per site)."""
        self._lock.acquire()
        if not await self._connect():
            # Without the database the last sequence is unknown: continue from the clock so numbers keep rising.
            self._next_sequence = max(self._next_sequence, int(self.clock() * 1000))

    async def latest_revisions(self, since: float) -> list[Escalation]:
        """The latest stored revision of every escalation stored since `since`, in sequence order (to resume after a restart)."""
        if self._db is None:
            return []
        rows = await self._run(self._latest_sync, since)
        return [Escalation.from_json(doc) for (doc,) in rows]

    def watch(self) -> asyncio.Event:
        """An event set whenever revisions are stored, for a reader of its own (clear it before reading)."""
        event = asyncio.Event()
        self._watchers.append(event)
        return event

    @property
    def last_sequence(self) -> int:
        """The highest sequence number handed out so far (0 for a new outbox)."""
        return self._next_sequence - 1

    async def stored_after(self, sequence: int, limit: int) -> list[Escalation]:
        """Stored revisions with a sequence above `sequence`, oldest first, delivered or not (for readers with a cursor)."""
        if self._db is None:
            return []
        return await self._run(lambda: [Escalation.from_json(doc) for (doc,) in self._open_db().execute(
            "SELECT document FROM outbox WHERE sequence > ? ORDER BY sequence LIMIT ?", (sequence, limit))])

    async def prune(self, delivered_before: float) -> int:
        """Delete revisions delivered before this time; returns how many. Undelivered ones are never deleted."""
        for key in [k for k, u in self._unreceipted.items() if u.delivered_at < delivered_before]:
            del self._unreceipted[key]  # past the retention: no longer awaited
        if self._db is None:
            return 0
        return await self._run(self._prune_sync, delivered_before)

    async def close(self) -> None:
        """Finish queued writes, then close the database."""
        await self.flush()
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._writer.shutdown(wait=True)
        self._lock.release()

    @property
    def backlog(self) -> int:
        """Revisions not yet acknowledged by the police broker."""
        return len(self._pending)

    @property
    def ok(self) -> bool:
        return self.health == "ok"

    # -- the write path --------------------------------------------------------------------------

    def next_sequence(self) -> int:
        """Reserve the next per-site sequence number, for the revision passed to `append`."""
        sequence = self._next_sequence
        self._next_sequence += 1
        return sequence

    def append(self, escalation: Escalation, source: str | None = None) -> asyncio.Future[bool]:
        """Queue a revision for storing, in call order; the future says True once on disk, False if held in memory."""
        pending = Pending(escalation, escalation.to_json(), self.clock(), source)
        if source is not None:
            self._sources.add(source)
        pending.written = asyncio.get_running_loop().create_future()
        self._pending.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_writes())
        return pending.written

    async def flush(self) -> None:
        """Wait until every queued write has been attempted."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    def holds(self, source: str) -> bool:
        """True if a revision made from this device message is stored, queued or claimed: a copy of it is no new alarm."""
        return source in self._sources

    def claim(self, source: str) -> None:
        """Count a device message as held from now on, before its revisions are appended (its copies may come first)."""
        self._sources.add(source)

    def unclaim(self, source: str) -> None:
        """Undo `claim` for a message whose processing failed: a copy of it may still raise the alarm."""
        self._sources.discard(source)

    async def set_aside(self, origin: str, topic: str, payload: bytes, error: str) -> None:
        """Keep a message that could not be processed, for inspection (`set_aside` table; the newest 1,000, 64 KiB each)."""
        if self._db is None:
            return
        row = (self.clock(), origin, topic, len(payload), hashlib.sha256(payload).hexdigest(), payload[:SET_ASIDE_BYTES], error[:2000])
        await self._run(self._set_aside_sync, row)

    async def load_state(self, name: str) -> str | None:
        """A named piece of edge state saved with `save_state` (None when there is none, or no database)."""
        if self._db is None:
            return None
        rows = await self._run(lambda: self._open_db().execute("SELECT value FROM edge_state WHERE name = ?", (name,)).fetchall())
        return rows[0][0] if rows else None

    async def save_state(self, name: str, value: str) -> None:
        """Save a named piece of edge state (the replay guard's record) beside the escalations."""
        if self._db is not None:
            await self._run(self._save_state_sync, name, value)

    async def _flush_writes(self) -> None:
        while True:
            unsettled = [p for p in self._pending if not p.settled]
            if not unsettled:
                return
            if self._db is None:
                await self._connect()
                unsettled = [p for p in self._pending if not p.settled]  # revisions appended while connecting
            # Everything not yet on disk goes in one transaction: new revisions and any held in memory.
            batch = [p for p in self._pending if not p.on_disk]
            ok = self._db is not None and await self._run(self._insert_sync, batch)
            settled_at = self.clock()
            for p in batch:
                p.on_disk = ok
                p.settled = True
            self.changed.set()  # wake the uplink first: the police hear before anything else is done
            for watcher in self._watchers:
                watcher.set()
            for p in unsettled:
                p.settled_at = settled_at
                if p.written is not None and not p.written.done():
                    p.written.set_result(p.on_disk)
            if self.on_stored is not None:  # after what is already scheduled: the police and the acks come first
                asyncio.get_running_loop().call_soon(self.on_stored, unsettled)

    # -- the delivery side -----------------------------------------------------------------------

    def deliverable(self, limit: int) -> list[Pending]:
        """The oldest settled revisions in sequence order; non-critical ones past their age expire here."""
        now = self.clock()
        while self._pending and not self._pending[0].critical and now - self._pending[0].stored_at > self.expire_after_s:
            self._expire(self._pending.popleft(), now)
        batch: list[Pending] = []
        for p in self._pending:
            if len(batch) >= limit or not p.settled:
                break
            batch.append(p)
        return batch

    def delivered(self, batch: Iterable[Pending]) -> None:
        """The police broker acknowledged these revisions."""
        done = set(map(id, batch))
        if self.on_delivered is not None:
            asyncio.get_running_loop().call_soon(self.on_delivered, [p for p in self._pending if id(p) in done], self.clock())
        sequences = [p.escalation.sequence for p in self._pending if id(p) in done and p.on_disk]
        if self.receipt_timeout_s is not None:
            now = self.clock()
            for p in self._pending:
                if id(p) in done and not p.receipted:
                    key = (p.escalation.id, p.escalation.revision)
                    self._unreceipted.setdefault(key, Unreceipted(p, now, now + self.receipt_timeout_s))
        self._pending = deque(p for p in self._pending if id(p) not in done)
        if sequences and self._db is not None:
            # Marked in the background: losing a mark in a crash only means a resend, which the police side dedupes.
            self._writer.submit(self._mark_sync, "delivered_at", sequences, self.clock())

    # -- receipts from the command centre --------------------------------------------------------

    def receipted(self, revisions: Iterable[tuple[str, int]]) -> int:
        """The command centre committed these revisions: they are received by the police. Returns how many were awaited."""
        keys = set(revisions)
        awaited = [self._unreceipted.pop(key) for key in keys if key in self._unreceipted]
        for p in self._pending:
            if (p.escalation.id, p.escalation.revision) in keys:
                p.receipted = True  # confirmed before its PUBACK was handled
        if keys and self._db is not None:
            self._writer.submit(self._receipted_sync, sorted(keys), self.clock())
        return len(awaited)

    def due_resends(self, limit: int) -> list[Pending]:
        """Delivered revisions whose receipt is overdue, oldest first; each is due again later, backing off to 10 min."""
        now = self.clock()
        due = sorted((u for u in self._unreceipted.values() if u.resend_at <= now), key=lambda u: u.pending.escalation.sequence)[:limit]
        for u in due:
            u.resends += 1
            u.resend_at = now + min(RESEND_MAX_S, (self.receipt_timeout_s or 0.0) * 2**u.resends)
        return [u.pending for u in due]

    @property
    def unreceipted(self) -> int:
        """Revisions delivered to the police broker whose receipt has not come back."""
        return len(self._unreceipted)

    def oldest_unreceipted_s(self) -> float:
        """Age of the oldest unreceipted revision (since it was delivered), 0 when there is none."""
        if not self._unreceipted:
            return 0.0
        return max(0.0, self.clock() - min(u.delivered_at for u in self._unreceipted.values()))

    def _expire(self, pending: Pending, now: float) -> None:
        self.expired += 1
        log.warning(
            "event=escalation_expired id=%s revision=%d age_s=%.0f",
            pending.escalation.id, pending.escalation.revision, now - pending.stored_at,
        )
        if pending.on_disk and self._db is not None:
            self._writer.submit(self._mark_sync, "expired_at", [pending.escalation.sequence], now)

    # -- database (runs on the writer thread) ----------------------------------------------------

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def _connect(self) -> bool:
        try:
            db, rows, top, sources, unreceipted = await self._run(_open_database, self.path)
        except (sqlite3.Error, OSError) as exc:
            self._fail(f"cannot open {self.path}: {exc}")
            return False
        self._db = db
        self._sources |= sources
        if self.receipt_timeout_s is not None:
            now = self.clock()
            for doc, delivered_at in unreceipted:
                p = Pending(Escalation.from_json(doc), bytes(doc), delivered_at, on_disk=True, settled=True)
                key = (p.escalation.id, p.escalation.revision)
                self._unreceipted.setdefault(key, Unreceipted(p, delivered_at, now + self.receipt_timeout_s))
        held = {p.escalation.sequence for p in self._pending}
        loaded = [Pending(Escalation.from_json(doc), bytes(doc), at, on_disk=True, settled=True) for doc, at in rows]
        self._pending = deque(sorted([*self._pending, *(p for p in loaded if p.escalation.sequence not in held)], key=lambda p: p.escalation.sequence))
        self._next_sequence = max(self._next_sequence, top + 1)
        self._recovered()
        log.info("event=outbox_open path=%s backlog=%d next_sequence=%d", self.path, len(self._pending), self._next_sequence)
        self.changed.set()
        return True

    def _open_db(self) -> sqlite3.Connection:
        """The database; the *_sync methods run after their callers found it open, but `close` may have come between."""
        if self._db is None:
            raise sqlite3.ProgrammingError(f"{self.path} is closed")
        return self._db

    def _insert_sync(self, batch: list[Pending]) -> bool:
        try:
            with (db := self._open_db()):
                db.executemany(
                    "INSERT OR IGNORE INTO outbox (sequence, id, revision, critical, source, document, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(p.escalation.sequence, p.escalation.id, p.escalation.revision, int(p.critical), p.source, p.document, p.stored_at) for p in batch],
                )
        except (sqlite3.Error, OSError) as exc:
            self._fail(f"cannot write to {self.path}: {exc}")
            return False
        self._recovered()
        return True

    def _receipted_sync(self, keys: list[tuple[str, int]], at: float) -> None:
        try:
            with (db := self._open_db()):
                db.executemany("UPDATE outbox SET receipted_at = ? WHERE id = ? AND revision = ?", [(at, i, r) for i, r in keys])
        except (sqlite3.Error, OSError) as exc:
            self._fail(f"cannot mark revisions receipted in {self.path}: {exc}")

    def _mark_sync(self, column: str, sequences: list[int], at: float) -> None:
        try:
            with (db := self._open_db()):
                db.executemany(f"UPDATE outbox SET {column} = ? WHERE sequence = ?", [(at, s) for s in sequences])
        except (sqlite3.Error, OSError) as exc:
            self._fail(f"cannot mark revisions {column} in {self.path}: {exc}")

    def _latest_sync(self, since: float) -> list[tuple[bytes]]:
        return self._open_db().execute(
            "SELECT o.document FROM outbox o JOIN (SELECT id, MAX(revision) AS revision FROM outbox WHERE stored_at >= ? GROUP BY id) last"
            " ON o.id = last.id AND o.revision = last.revision ORDER BY o.sequence",
            (since,),
        ).fetchall()

    def _prune_sync(self, delivered_before: float) -> int:
        try:
            with (db := self._open_db()):
                return db.execute("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?", (delivered_before,)).rowcount
        except (sqlite3.Error, OSError) as exc:
            self._fail(f"cannot prune {self.path}: {exc}")
            return 0

    def _set_aside_sync(self, row: tuple[object, ...]) -> None:
        try:
            with (db := self._open_db()):
                db.execute("INSERT INTO set_aside (at, origin, topic, bytes, sha256, payload, error) VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                db.execute("DELETE FROM set_aside WHERE rowid <= (SELECT MAX(rowid) FROM set_aside) - ?", (SET_ASIDE_KEPT,))
        except (sqlite3.Error, OSError) as exc:
            self._fail(f"cannot set a message aside in {self.path}: {exc}")

    def _save_state_sync(self, name: str, value: str) -> None:
        try:
            with (db := self._open_db()):
                db.execute("INSERT INTO edge_state (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))
        except (sqlite3.Error, OSError) as exc:
            self._fail(f"cannot save {name} in {self.path}: {exc}")

    def _fail(self, reason: str) -> None:
        if self.health != f"failing: {reason}":
            log.error("event=outbox_failing reason=%r action=%r", reason, "holding escalations in memory and still dispatching; free or fix the disk")
        self.health = f"failing: {reason}"

    def _recovered(self) -> None:
        if self.health.startswith("failing"):
            log.warning("event=outbox_recovered path=%s", self.path)
        self.health = "ok"


def _open_database(path: Path) -> tuple[sqlite3.Connection, list[tuple[bytes, float]], int, set[str], list[tuple[bytes, float]]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit
        db.executescript(_SCHEMA)
        if "receipted_at" not in {row[1] for row in db.execute("PRAGMA table_info(outbox)")}:
            db.execute("ALTER TABLE outbox ADD COLUMN receipted_at REAL")  # an outbox from before receipts
        db.isolation_level = "DEFERRED"
        rows = db.execute(
            "SELECT document, stored_at FROM outbox WHERE delivered_at IS NULL AND expired_at IS NULL ORDER BY sequence"
        ).fetchall()
        top = db.execute("SELECT COALESCE(MAX(sequence), 0) FROM outbox").fetchone()[0]
        sources = {source for (source,) in db.execute("SELECT source FROM outbox WHERE source IS NOT NULL")}
        unreceipted = db.execute(
            "SELECT document, delivered_at FROM outbox WHERE delivered_at IS NOT NULL AND receipted_at IS NULL ORDER BY sequence"
        ).fetchall()
    except BaseException:
        db.close()
        raise
    return db, rows, top, sources, unreceipted
