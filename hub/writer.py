"""Group commit: one thread takes every batch waiting, commits them in one transaction, and reports back to the event loop.

A batch is reported only after its commit, so the intake acknowledges a message only once it is stored. A database
that is down (PostgreSQL restarting, SQLite locked) is retried with backoff, forever, and nothing is acknowledged
meanwhile; the broker holds the rest. A batch the database refuses for its content (a value too long ...) is committed
item by item, and the items refused are counted as rejections instead: one bad document never blocks the others.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from hub.store import Item, Rejected, Revision, Stored, store

log = logging.getLogger(__name__)

Done = Callable[[Stored], None]


@dataclass(slots=True)
class _Pending:
    items: list[Item]
    done: Done


class Writer:
    """The intake's only database writer; `submit` from the event loop, `done(stored)` is called back on that loop."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop, *, max_items: int = 1000, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.loop = loop
        self.max_items = max_items
        self.clock = clock
        self.commits = 0
        self.retries = 0
        self._pending: list[_Pending] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._connection: Connection | None = None  # kept between commits: a checkout would ping the database first
        self._thread = threading.Thread(target=self._run, name="hub-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish what is being committed and stop; batches not yet taken are dropped (their messages stay unacknowledged)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def submit(self, items: list[Item], done: Done) -> None:
        """Queue a batch; `done` runs on the event loop after its commit."""
        with self._wake:
            self._pending.append(_Pending(items, done))
            self._wake.notify()

    def _take(self) -> list[_Pending] | None:
        with self._wake:
            while not self._pending and not self._stopping:
                self._wake.wait()
            if self._stopping:
                return None
            taken: list[_Pending] = []
            size = 0
            while self._pending and (not taken or size + len(self._pending[0].items) <= self.max_items):
                size += len(self._pending[0].items)
                taken.append(self._pending.pop(0))
            return taken

    def _run(self) -> None:
        try:
            while (taken := self._take()) is not None:
                results = self._commit_until_done(taken)
                if results is None:
                    return
                for pending, stored in zip(taken, results, strict=True):
                    self.loop.call_soon_threadsafe(pending.done, stored)
        finally:
            self._disconnect()

    def _commit_until_done(self, taken: list[_Pending]) -> list[Stored] | None:
        delay = 0.05
        while not self._stopping:
            try:
                return self._commit(taken)
            except OperationalError as exc:  # the database is unreachable or busy: nothing was committed, try again
                self._disconnect()  # the next attempt takes a connection from the pool, checked first
                self.retries += 1
                log.warning("event=commit_retry error=%r retry_in_s=%.2f", str(exc.orig or exc)[:200], delay)
                with self._wake:
                    self._wake.wait_for(lambda: self._stopping, timeout=delay)
                delay = min(delay * 2, 2.0)
        return None

    def _commit(self, taken: list[_Pending]) -> list[Stored]:
        items = [item for pending in taken for item in pending.items]
        try:
            stored = self._transaction(items)
        except OperationalError:
            raise
        except (DBAPIError, SQLAlchemyError) as exc:  # the content was refused: find the culprits one by one
            log.warning("event=commit_refused items=%d error=%r", len(items), str(exc)[:200])
            return [self._one_by_one(pending.items) for pending in taken]
        return _split(stored, taken)

    def _transaction(self, items: list[Item]) -> Stored:
        if self._connection is None:
            self._connection = self.engine.connect()
        with Session(bind=self._connection) as session, session.begin():
            stored = store(session, items, datetime.now(timezone.utc))
        self.commits += 1
        return stored

    def _disconnect(self) -> None:
        if self._connection is not None:
            with suppress(SQLAlchemyError):  # a broken connection is discarded by the pool
                self._connection.close()
            self._connection = None

    def _one_by_one(self, items: list[Item]) -> Stored:
        total = Stored()
        for item in items:
            try:
                stored = self._transaction([item])
            except OperationalError:
                raise
            except (DBAPIError, SQLAlchemyError) as exc:
                site = item.escalation.site.id if isinstance(item, Revision) else getattr(item, "site", "?")
                now = datetime.now(timezone.utc)
                stored = self._transaction([Rejected(str(site)[:64], "unstorable", str(exc)[:300], now)])
            total.new += stored.new
            total.duplicates += stored.duplicates
            total.changes += stored.changes
            total.receipts += stored.receipts
        return total


def _split(stored: Stored, taken: list[_Pending]) -> list[Stored]:
    """One transaction's result told per submitted batch: receipts go back with the batch they came in."""
    if len(taken) == 1:
        return [stored]
    results, at = [], 0
    for pending in taken:
        count = sum(isinstance(item, Revision) for item in pending.items)
        results.append(Stored(receipts=stored.receipts[at : at + count]))
        at += count
    results[0].new, results[0].duplicates, results[0].changes = stored.new, stored.duplicates, stored.changes
    return results
