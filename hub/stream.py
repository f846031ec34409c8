"""The live stream of committed `changes` rows: one poller per process fans them out in id order, clients resume by id."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from hub.tables import ChangeKind, ChangeRow, EscalationRow

log = logging.getLogger(__name__)

PAGE = 500
QUEUE_LIMIT = 10_000  # a client this far behind is cut off; it reconnects with Last-Event-ID and reads the backlog


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change, as the stream sends it."""

    id: int
    at: datetime
    kind: str
    key: str
    site: str | None  # the site it concerns, for scoping a chief's stream
    payload: dict[str, Any]

    def event(self) -> bytes:
        """The change as one Server-Sent Event; its id is the changes row id."""
        data = json.dumps({"id": self.id, "at": self.at.isoformat(), "kind": self.kind, "key": self.key, "site": self.site, "payload": self.payload})
        return f"id: {self.id}\nevent: {self.kind}\ndata: {data}\n\n".encode()


@dataclass(slots=True)
class GapWait:
    """Ids may commit out of order on PostgreSQL (concurrent writers) or never (a rolled-back insert): a missing id holds
    later rows back until it appears or `grace_s` has passed, so clients see ids strictly increasing and resume exactly."""

    grace_s: float = 1.0
    _since: dict[int, float] = field(default_factory=dict)

    def deliverable(self, upto: int, ids: list[int], now: float) -> int:
        """How many of `ids` (ascending, all > upto) can go out now."""
        count = 0
        for i in ids:
            if i != upto + 1:
                first_seen = self._since.setdefault(upto + 1, now)
                if now - first_seen < self.grace_s:
                    break
                log.warning("event=change_ids_skipped first=%d last=%d", upto + 1, i - 1)
            self._since.pop(upto + 1, None)
            upto = i
            count += 1
        return count


class ChangeFeed:
    """Reads new `changes` rows (woken by `notify`, else every `poll_s`) and hands each to every subscriber in id order."""

    def __init__(self, engine: Engine, *, notify: asyncio.Event | None = None, poll_s: float = 0.1, gaps: GapWait | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.notify = notify or asyncio.Event()
        self.poll_s = poll_s
        self.gaps = gaps or GapWait()
        self.clock = clock
        self.upto = 0  # every row up to this id has been handed out (or given up as never committed)
        self.started = asyncio.Event()  # set once `upto` is the newest row at start: subscribers wait for it
        self._subscribers: set[asyncio.Queue[Change | None]] = set()
        self._sites: dict[str, str] = {}  # escalation id -> site, for rows whose payload does not say

    def start_position(self) -> None:
        """Begin after the newest committed row."""
        with Session(self.engine) as db:
            self.upto = db.scalar(select(func.max(ChangeRow.id))) or 0

    async def run(self) -> None:
        """Poll until cancelled."""
        while not self.started.is_set():
            try:
                await asyncio.to_thread(self.start_position)
                self.started.set()
            except Exception as exc:  # the database is not reachable yet
                log.warning("event=change_feed_waiting error=%r", exc)
                await asyncio.sleep(1.0)
        log.info("event=change_feed_started after=%d", self.upto)
        try:
            while True:
                try:
                    await asyncio.wait_for(self.notify.wait(), self.poll_s)
                except TimeoutError:
                    pass
                self.notify.clear()
                try:
                    await self._deliver()
                except Exception as exc:  # the database may be restarting: keep polling
                    log.warning("event=change_feed_error error=%r", exc)
                    await asyncio.sleep(self.poll_s)
        finally:
            for queue in self._subscribers:
                queue.put_nowait(None)

    async def _deliver(self) -> None:
        while True:
            if not self._subscribers:  # nobody listens: only move `upto` on, reading ids, not rows (a busy hub commits thousands a second)
                ids = await asyncio.to_thread(self.read_ids, self.upto, PAGE * 10)
                if self._subscribers:
                    continue  # one came meanwhile: it must get these rows
                ready_ids = ids[: self.gaps.deliverable(self.upto, ids, self.clock())]
                if ready_ids:
                    self.upto = ready_ids[-1]
                if len(ready_ids) < PAGE * 10:
                    return
                continue
            rows = await asyncio.to_thread(self.read, self.upto, None, PAGE)
            ready = rows[: self.gaps.deliverable(self.upto, [row.id for row in rows], self.clock())]
            for change in ready:
                for queue in list(self._subscribers):
                    if queue.qsize() >= QUEUE_LIMIT:
                        self._subscribers.discard(queue)
                        queue.put_nowait(None)  # tells the client's stream to end
                    else:
                        queue.put_nowait(change)
                self.upto = change.id
            if len(ready) < PAGE:
                return

    def read_ids(self, after: int, limit: int) -> list[int]:
        """The ids of committed rows after `after`, in order."""
        with Session(self.engine) as db:
            return list(db.scalars(select(ChangeRow.id).where(ChangeRow.id > after).order_by(ChangeRow.id).limit(limit)))

    def read(self, after: int, upto: int | None, limit: int) -> list[Change]:
        """Committed rows with after < id <= upto, in id order."""
        query = select(ChangeRow).where(ChangeRow.id > after).order_by(ChangeRow.id).limit(limit)
        if upto is not None:
            query = query.where(ChangeRow.id <= upto)
        with Session(self.engine) as db:
            rows = list(db.scalars(query))
            missing = {r.key for r in rows if r.kind in (ChangeKind.ESCALATION, ChangeKind.COMMAND) and _payload_site(r.payload) is None} - self._sites.keys()
            if missing:
                self._sites.update(db.execute(select(EscalationRow.id, EscalationRow.site).where(EscalationRow.id.in_(missing))))
            return [Change(r.id, r.at, r.kind, r.key, self._site_of(r), r.payload) for r in rows]

    def _site_of(self, row: ChangeRow) -> str | None:
        if row.kind in (ChangeKind.SITE, ChangeKind.GUARDS):
            return row.key
        return _payload_site(row.payload) or self._sites.get(row.key)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[tuple[int, asyncio.Queue[Change | None]]]:
        """A queue of every change handed out from now on, and the id up to which changes were handed out before it."""
        queue: asyncio.Queue[Change | None] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield self.upto, queue
        finally:
            self._subscribers.discard(queue)

    async def changes(self, after: int | None, visible: Callable[[Change], bool], idle_s: float = 15.0) -> AsyncIterator[Change | None]:
        """Every change after `after` (from now when None) that `visible` allows: the backlog from the database, then live;
        None after `idle_s` without one (a keepalive)."""
        await self.started.wait()
        async with self.subscribe() as (upto, queue):
            last = upto if after is None else after
            while last < upto:
                page = await asyncio.to_thread(self.read, last, upto, PAGE)
                if not page:
                    break
                for change in page:
                    if visible(change):
                        yield change
                last = page[-1].id
            while True:
                try:
                    live = await asyncio.wait_for(queue.get(), idle_s)
                except TimeoutError:
                    yield None
                    continue
                if live is None:
                    return  # the feed stopped, or this client fell too far behind: it reconnects and resumes
                if live.id > last:
                    last = live.id
                    if visible(live):
                        yield live


def _payload_site(payload: dict[str, Any]) -> str | None:
    site = payload.get("site") if isinstance(payload, dict) else None
    if isinstance(site, dict):  # an escalation document: {"site": {"id": ...}}
        site = site.get("id")
    return site if isinstance(site, str) else None
