"""Large events over the district broker: call-ups, stand-downs and roll calls out to the sites' edges, guards' answers
and check-ins in, "on event" notices (retained) so edges offer held guards no site jobs, and the checks time drives.

Its own persistent session on the district broker (`guardlink-hub-<district>-events`, clean session off, QoS 1, manual
acknowledgement: an answer is acknowledged once committed). What to send is read from the database (`event_guards.pending`,
set by the API or by the checks), so call-ups made by any process go out, and a hub restarted meanwhile sends them then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Engine, Table, bindparam, select, update
from sqlalchemy.orm import Session

from gateway.connection import Client, Message, MqttError, stay_connected
from guardlink import topics
from guardlink.callup import Briefing, CallUp, CallUpAnswers, CallUpKind, CallUps, GuardAnswer, OnEventNotice
from guardlink.districtconfig import DistrictConfig
from guardlink.models import Location
from guardlink.siteconfig import BrokerUrl
from hub.events_store import apply_answers, check, held_by_site, record_change
from hub.events_tables import EventGuardRow, EventRow, SectorRow

log = logging.getLogger(__name__)

SEND_LIMIT = 20_000  # pending messages read per round
PER_DOCUMENT = 2_000  # call-ups per site document


def _at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc)


class EventService:
    """Runs until cancelled; `sent` and `answers` count what went out and came in."""

    def __init__(
        self, config: DistrictConfig, engine: Engine, *, broker: BrokerUrl | None = None, clock: Callable[[], float] = time.time,
        notify: asyncio.Event | None = None, poll_s: float = 0.1, check_every_s: float = 1.0,
    ) -> None:
        self.config = config
        self.district = config.district.id
        self.engine = engine
        self.broker = broker or config.broker_url()
        self.clock = clock
        self.notify = notify or asyncio.Event()
        self.poll_s = poll_s
        self.check_every_s = check_every_s
        self.sent = 0
        self.answers = 0
        self.rejected = 0
        self.checks = 0  # rounds of the time-driven checks done
        self.ready = asyncio.Event()
        self._holds: dict[str, list[str]] | None = None  # as last published per site; None: publish every site once

    async def run(self) -> None:
        await stay_connected(self.broker, self._session, identifier=f"guardlink-hub-{self.district}-events", clean_session=False, manual_ack=True)

    async def _session(self, client: Client) -> None:
        await client.subscribe(topics.police_callup_answers(self.district, "+"), qos=1)
        self._holds = None
        self.ready.set()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._receive(client))
                tasks.create_task(self._send(client))
        except* MqttError as group:
            raise group.exceptions[0] from None

    # --- in -------------------------------------------------------------------------------------------------------

    async def _receive(self, client: Client) -> None:
        async for batch in client.batches():
            answers = [a for message in batch for a in self._answers(message)]
            if answers:
                await asyncio.to_thread(self._apply, answers)
                self.answers += len(answers)
            for message in batch:
                client.ack(message)

    def _answers(self, message: Message) -> list[GuardAnswer]:
        parts = message.topic.value.split("/")
        site = parts[3] if len(parts) == 5 else "?"
        try:
            doc = CallUpAnswers.model_validate_json(message.payload)
        except (ValidationError, ValueError) as exc:
            self.rejected += 1
            log.warning("event=callup_answers_rejected site=%s error=%r", site, str(exc)[:300])
            return []
        if doc.site != site:
            self.rejected += 1
            log.warning("event=callup_answers_rejected site=%s reason=wrong_site says=%s", site, doc.site)
            return []
        return doc.answers

    def _apply(self, answers: list[GuardAnswer]) -> None:
        now = _at(self.clock())
        with Session(self.engine) as session, session.begin():
            for event in apply_answers(session, answers, now):
                record_change(session, event, now)
        self.notify.set()

    # --- out ------------------------------------------------------------------------------------------------------

    async def _send(self, client: Client) -> None:
        checked_at = float("-inf")
        while True:
            if time.monotonic() - checked_at >= self.check_every_s:  # the cadence is real time; what is due, the clock's
                checked_at = time.monotonic()
                try:
                    await asyncio.to_thread(self._check)
                except Exception:
                    log.exception("event=event_check_failed")
            documents, sent = await asyncio.to_thread(self._pending)
            if documents:
                await asyncio.gather(*(client.publish(topic, payload, qos=1) for topic, payload in documents))
                await asyncio.to_thread(self._mark_sent, sent)
                self.sent += sum(len(rows) for rows in sent.values())
            await self._publish_holds(client)
            if not documents:
                await asyncio.sleep(self.poll_s)

    def _check(self) -> None:
        now = _at(self.clock())
        with Session(self.engine) as session, session.begin():
            changed = check(session, self.config, now)
            for event in changed:
                record_change(session, event, now)
        self.checks += 1
        if changed:
            self.notify.set()

    def _pending(self) -> tuple[list[tuple[str, bytes]], dict[str, list[dict[str, Any]]]]:
        """The documents to publish for what is pending, and which rows they cover (by kind)."""
        now = _at(self.clock())
        eg = EventGuardRow
        with Session(self.engine) as session:
            rows = session.execute(select(eg.event_id, eg.guard, eg.site, eg.sector, eg.role, eg.pending).where(eg.pending.is_not(None)).limit(SEND_LIMIT)).all()
            if not rows:
                return [], {}
            events = {e.id: e for e in session.scalars(select(EventRow).where(EventRow.id.in_({r.event_id for r in rows})))}
            sectors = {(s.event_id, s.id): s for s in session.scalars(select(SectorRow).where(SectorRow.event_id.in_(events)))}
        per_site: dict[str, list[CallUp]] = defaultdict(list)
        sent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            event = events[row.event_id]
            sent[row.pending].append({"e": row.event_id, "g": row.guard, "k": row.pending})
            if row.site is None:
                log.warning("event=callup_unsendable event=%s guard=%s reason=no_home_site", row.event_id, row.guard)
                continue
            per_site[row.site].append(self._callup(CallUpKind(row.pending), event, sectors.get((row.event_id, row.sector)), row.guard, row.role, now))
        documents = [
            (topics.police_callups(self.district, site), CallUps(site=site, items=items[start : start + PER_DOCUMENT]).to_json())
            for site, items in per_site.items() for start in range(0, len(items), PER_DOCUMENT)
        ]
        return documents, sent

    @staticmethod
    def _callup(kind: CallUpKind, event: EventRow, sector: SectorRow | None, guard: str, role: str, now: datetime) -> CallUp:
        if kind is CallUpKind.CALLUP and sector is not None:
            briefing = Briefing(
                event_name=event.name, sector=sector.id, sector_name=sector.name, role=role, starts_at=event.starts_at, ends_at=event.ends_at,
                report_to=Location(lat=sector.lat, lon=sector.lon), text=event.briefing,
            )
            return CallUp(kind=kind, event=event.id, guard=guard, briefing=briefing, answer_within_s=event.answer_within_s, sent_at=now)
        if kind is CallUpKind.ROLL_CALL and event.roll_call_due is not None:
            within = max((event.roll_call_due - now).total_seconds(), 1.0)
            return CallUp(kind=kind, event=event.id, guard=guard, roll_call=event.roll_call, answer_within_s=within, sent_at=now)
        return CallUp(kind=CallUpKind.STAND_DOWN, event=event.id, guard=guard, sent_at=now)

    def _mark_sent(self, sent: dict[str, list[dict[str, Any]]]) -> None:
        """Nothing more pending for these rows (unless the API asked for something else meanwhile); call-ups: sent now."""
        now = _at(self.clock())
        table = cast(Table, EventGuardRow.__table__)  # a declarative class's table (typed as any FromClause)
        with Session(self.engine) as session, session.begin():
            for kind, keys in sent.items():
                values: dict[str, Any] = {"pending": None, **({"sent_at": now} if kind == CallUpKind.CALLUP else {})}
                statement = update(table).where(table.c.event_id == bindparam("e"), table.c.guard == bindparam("g"), table.c.pending == bindparam("k"))
                session.connection().execute(statement.values(**values), keys)

    async def _publish_holds(self, client: Client) -> None:
        holds = await asyncio.to_thread(self._held)
        previous = self._holds
        sites = set(holds) | set(previous or {}) | (set(self.config.sites()) if previous is None else set())
        now = _at(self.clock())
        for site in sorted(sites):
            guards = holds.get(site, [])
            if previous is not None and previous.get(site, []) == guards:
                continue
            await client.publish(topics.police_on_event(self.district, site), OnEventNotice(site=site, guards=guards, at=now).to_json(), qos=1, retain=True)
        self._holds = holds

    def _held(self) -> dict[str, list[str]]:
        with Session(self.engine) as session:
            return held_by_site(session)

