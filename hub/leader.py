"""Work that one hub worker of a district does at a time, whoever it is: forwarding to alarm receiving centres, and on a
NATS cluster the district links that speak MQTT (patrol tasks and field reports, event call-ups, site rosters).

Hub workers sharing a database (hub/intake_nats.py) each run such work under a `DistrictLock`; the one holding it works,
the others wait and take over when it goes. PostgreSQL: a session advisory lock on a connection of its own (the server
drops it when the worker dies or the connection breaks, and the worker, checking its connection, stops at once).
SQLite: an flock on `<database>.<name>.lock` (dropped by the kernel when the process dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from gateway.lock import InUse, ProcessLock

log = logging.getLogger(__name__)

LOCK_RETRY_S = 2.0  # a worker without the lock tries again this often (and the holder checks it still holds it)


class LockLost(Exception):
    """The lock's connection broke: another worker may take the work now."""


class DistrictLock:
    """The district's one holder of `name`: a PostgreSQL session advisory lock, else an flock next to the SQLite file."""

    def __init__(self, engine: Engine, district: str, name: str) -> None:
        self.engine = engine
        self.name = name
        self.key = f"guardlink-{name}-{district}"
        self._connection: Connection | None = None
        self.held = False  # this worker holds it (on /metrics)
        database = engine.url.database
        sqlite_file = engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
        self._file = ProcessLock(Path(f"{database}.{name}")) if sqlite_file else None

    def acquire(self) -> bool:
        """Take the lock if no other worker holds it (blocking I/O: call off the loop)."""
        if self.engine.dialect.name == "postgresql":
            connection = self.engine.connect()
            held = bool(connection.scalar(text("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))"), {"key": self.key}))
            connection.commit()  # a session lock outlives the transaction
            if held:
                self._connection = connection
            else:
                connection.close()
            self.held = held
            return held
        if self._file is not None:
            try:
                self._file.acquire()
            except InUse:
                return False
        self.held = True
        return True

    def check(self) -> None:
        """LockLost when the lock's connection no longer works (the server released the lock with it)."""
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT 1"))
                self._connection.commit()
            except Exception as exc:
                raise LockLost(f"the {self.name} lock's connection broke: {exc}") from exc

    def release(self) -> None:
        self.held = False
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()  # the session ends: PostgreSQL lets go of its advisory locks
            self._connection = None
        if self._file is not None:
            self._file.release()


async def while_leader(lock: DistrictLock, work: Callable[[], Coroutine[Any, Any, None]], *, standby_reason: str) -> None:
    """Run `work()` whenever this worker holds `lock`, until cancelled: wait while another holds it (logged once as
    `event=<name>_standby`), stop the work at once when the lock is lost (`event=<name>_stopped`) and wait again."""
    waiting_logged = False
    while True:
        if not await asyncio.to_thread(lock.acquire):
            if not waiting_logged:
                log.info("event=%s_standby reason=%r", lock.name, standby_reason)
                waiting_logged = True
            await asyncio.sleep(LOCK_RETRY_S)
            continue
        waiting_logged = False
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(work())
                tasks.create_task(_keep_checking(lock))
        except* LockLost as lost:
            log.error("event=%s_stopped reason=%r", lock.name, str(lost.exceptions[0]))
        finally:
            await asyncio.to_thread(lock.release)


async def _keep_checking(lock: DistrictLock) -> None:
    while True:
        await asyncio.sleep(LOCK_RETRY_S)
        await asyncio.to_thread(lock.check)
