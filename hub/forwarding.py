"""The hub forwards the district's alarms and restores to alarm receiving centres over SIA DC-09 (the district file's `alarm_centres`).

The transmitter is the edge's (gateway/dc09_transmitter.py): alarm on an incident's first revision, restore on the one
that ends it, supervision, ACK / NAK / silence handling. Only its source differs: here the revisions come in the order
the hub committed them (`changes` ids, documents from `revisions`), and each centre's cursor is a `forwarding_cursors`
row, so a hub that stops or is killed resends from where the centre's last ACK left it.

Commit order: on SQLite ids are handed out inside the one write transaction, so they commit in order. PostgreSQL hands them
out before commit, so a hole (an id missing while later ones are committed) may still fill. A hole is waited for until
every transaction that was running when it was first seen has ended (the snapshot's xmin passes the xmax seen then): the
transaction holding the id had written its revision rows before it took the id, so it was one of them; what it
committed is then visible, and what is still missing was rolled back (or deleted) and is passed over. Nothing committed
is skipped, however long its transaction took.

One forwarder per district: hub workers sharing a database (hub/intake_nats.py) each run this, but only the one holding
the forwarding lock (hub/leader.py) sends; the others wait and take over when it goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, cast

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from gateway.dc09_transmitter import AlarmCentres, CentreLink, Cursor
from guardlink.districtconfig import DistrictConfig
from guardlink.models import Escalation
from hub.leader import DistrictLock, while_leader
from hub.tables import ChangeKind, ChangeRow, ForwardingCursorRow, RevisionRow

log = logging.getLogger(__name__)

POLL_S = 0.1  # how often the store is read for revisions other workers committed (this worker's own commits wake it at once)


class StoreSource:
    """Escalation revisions in the hub's commit order (an AlarmSource): positions are `changes` ids."""

    def __init__(self, engine: Engine, *, poll_s: float = POLL_S) -> None:
        self.engine = engine
        self.poll_s = poll_s
        self._watchers: list[asyncio.Event] = []
        self._holes: dict[int, tuple[int, int]] = {}  # first missing id -> (the next id present, the snapshot xmax) when first seen

    def watch(self) -> asyncio.Event:
        event = asyncio.Event()
        self._watchers.append(event)
        return event

    def wake(self) -> None:
        """Something was committed: readers look again."""
        for event in self._watchers:
            event.set()

    async def poll(self) -> None:
        """Wake readers every `poll_s`, for what other workers commit and for ids held back by a gap."""
        while True:
            await asyncio.sleep(self.poll_s)
            self.wake()

    async def newest(self) -> int:
        def newest() -> int:
            with Session(self.engine) as db:
                return db.scalar(select(func.max(ChangeRow.id))) or 0

        return await asyncio.to_thread(newest)

    async def read_after(self, position: int, limit: int) -> list[tuple[int, Escalation | None]]:
        return await asyncio.to_thread(self._read_after, position, limit)

    def _read_after(self, position: int, limit: int) -> list[tuple[int, Escalation | None]]:
        with Session(self.engine) as db:
            postgres = db.get_bind().dialect.name == "postgresql"
            # Read before the rows, so that they hold whatever the transactions that ended by then committed.
            settled = (_snapshot(db, "xmin") if self._holes else 0) if postgres else None
            rows = db.execute(
                select(ChangeRow.id, ChangeRow.kind, ChangeRow.key, ChangeRow.payload).where(ChangeRow.id > position).order_by(ChangeRow.id).limit(limit)
            ).all()
            rows = rows[: self._in_order(db, position, [row.id for row in rows], settled)]
            wanted = {(row.key, row.payload["revision"]): row.id for row in rows if row.kind == ChangeKind.ESCALATION}
            documents: dict[int, dict[str, Any]] = {}
            if wanted:
                found = db.execute(
                    select(RevisionRow.escalation_id, RevisionRow.revision, RevisionRow.document)
                    .where(RevisionRow.escalation_id.in_({key for key, _ in wanted}), RevisionRow.revision.in_({number for _, number in wanted}))
                )
                for key, number, document in found:
                    if (key, number) in wanted:
                        documents[wanted[(key, number)]] = cast(dict[str, Any], document)  # the JSON column's Python type
        entries: list[tuple[int, Escalation | None]] = [(change, Escalation.model_validate(documents[change])) for change in sorted(documents)]
        if rows and (not entries or entries[-1][0] != rows[-1].id):
            entries.append((rows[-1].id, None))  # the cursor moves past site and guard changes too
        return entries

    def _in_order(self, db: Session, position: int, ids: list[int], settled: int | None) -> int:
        """How many of `ids` (ascending, all > position) may go now; `settled`: the snapshot xmin read before them, None on SQLite."""
        count, upto = 0, position
        for change in ids:
            if change != upto + 1 and settled is not None:
                hole = self._holes.get(upto + 1)
                if hole is None or change > hole[0]:
                    self._holes[upto + 1] = (change, _snapshot(db, "xmax"))
                    break
                if settled < hole[1]:
                    break  # a transaction that may hold the missing ids is still running
                log.warning("event=forwarding_ids_passed first=%d last=%d reason=%r", upto + 1, change - 1, "never committed")
            self._holes.pop(upto + 1, None)
            upto = change
            count += 1
        return count

    async def load_cursor(self, centre: str) -> Cursor | None:
        def load() -> Cursor | None:
            with Session(self.engine) as db:
                row = db.get(ForwardingCursorRow, centre)
                return None if row is None else Cursor(row.after, row.sequence)

        return await asyncio.to_thread(load)

    async def save_cursor(self, centre: str, cursor: Cursor) -> None:
        def save() -> None:
            with Session(self.engine) as db, db.begin():
                db.merge(ForwardingCursorRow(centre=centre, after=cursor.after, sequence=cursor.sequence, updated_at=datetime.now(timezone.utc)))

        await asyncio.to_thread(save)


def _snapshot(db: Session, bound: str) -> int:
    """PostgreSQL's current snapshot xmin (oldest transaction still running) or xmax (first not yet started)."""
    return int(db.scalar(text(f"SELECT pg_snapshot_{bound}(pg_current_snapshot())::text::bigint")))


class Forwarding:
    """The district file's alarm centres, fed from the hub's store by whichever worker holds the forwarding lock."""

    def __init__(self, config: DistrictConfig, engine: Engine, *, clock: Callable[[], float] = time.time, poll_s: float = POLL_S) -> None:
        self.source = StoreSource(engine, poll_s=poll_s)
        self.centres = AlarmCentres([CentreLink(centre, self.source, zones=dict(centre.zones), users={}, clock=clock) for centre in config.alarm_centres])
        self.lock = DistrictLock(engine, config.district.id, "forwarding")
        self.forwarding = False

    def committed(self, *_: object) -> None:
        """Called after each of this worker's commits: forward at once rather than at the next poll."""
        self.source.wake()

    def status(self) -> dict[str, object]:
        return {"forwarding": self.forwarding, "centres": self.centres.status()}

    async def run(self) -> None:
        """Forward until cancelled, while this worker holds the lock; KeyUnavailable at once when a centre's key cannot be read."""
        for link in self.centres.links:
            link.centre.secret_key()
        await while_leader(self.lock, self._forward, standby_reason="another hub worker forwards to the alarm centres")

    async def _forward(self) -> None:
        await self.centres.open()
        log.info("event=forwarding_started centres=%s", ",".join(str(link.centre) for link in self.centres.links))
        self.forwarding = True
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.source.poll())
                tasks.create_task(self.centres.run())
        finally:
            self.forwarding = False
