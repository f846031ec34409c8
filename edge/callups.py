"""Event call-ups at the site: the command centre's call-ups, stand-downs and roll calls handed to each guard (for the
guard app), the guards' answers and check-ins passed back, and the guards an event holds kept off site jobs.

Topics and documents: guardlink/callup.py. Two connections of its own (the police broker and the site broker), so the
escalation path is not touched: a call-up is acknowledged to the police broker only once handed to the site broker, and
a guard's answer is acknowledged on the site broker only once the police broker took it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pydantic import ValidationError

from edge.guards import GuardBoard
from gateway.connection import Client, Message, MqttError, stay_connected
from guardlink import topics
from guardlink.callup import MAX_CALLUP_BYTES, CallUpAnswers, CallUpReply, CallUps, GuardAnswer, OnEventNotice
from guardlink.models import iso
from guardlink.siteconfig import BrokerUrl, SiteConfig

log = logging.getLogger(__name__)

HOLD_EVERY_S = 2.0  # held guards are re-applied this often (a roster may have brought a guard back onto the board)


class CallUpRelay:
    """Runs until cancelled; `forwarded` call-ups and `answered` replies are counted, `held` are the guards on an event."""

    def __init__(self, config: SiteConfig, board: GuardBoard, *, site_broker: BrokerUrl, police_broker: BrokerUrl, clock: Callable[[], float] = time.time) -> None:
        self.site = config.site.id
        self.district = config.site.district
        self.board = board
        self.site_broker, self.police_broker = site_broker, police_broker
        self.clock = clock
        self.held: frozenset[str] = frozenset()
        self.forwarded = 0
        self.answered = 0
        self.rejected = 0
        self._site: Client | None = None
        self._site_up = asyncio.Event()
        self._police: Client | None = None
        self._replies: list[tuple[GuardAnswer, Client, Message]] = []
        self._replied = asyncio.Event()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(stay_connected(self.site_broker, self._site_session, identifier=f"guardlink-edge-{self.site}-callups-site",
                                             clean_session=False, manual_ack=True))
            tasks.create_task(stay_connected(self.police_broker, self._police_session, identifier=f"guardlink-edge-{self.site}-callups-police",
                                             clean_session=False, manual_ack=True))
            tasks.create_task(self._keep_held())

    # --- holding guards -------------------------------------------------------------------------------------------

    def hold(self, guards: frozenset[str]) -> None:
        """These guards are on an event: no site offers (a job in hand is finished); the others are free again."""
        self.held = guards
        self._apply_hold()

    def _apply_hold(self) -> None:
        changed = False
        for guard, status in self.board.guards.items():
            on_event = guard in self.held
            if status.on_event != on_event:
                status.on_event, changed = on_event, True
        if changed:
            self.board.refresh_duty(self.clock())

    async def _keep_held(self) -> None:
        while True:
            await asyncio.sleep(HOLD_EVERY_S)
            self._apply_hold()

    # --- the police broker: call-ups in, answers out ---------------------------------------------------------------

    async def _police_session(self, client: Client) -> None:
        callups, notice = topics.police_callups(self.district, self.site), topics.police_on_event(self.district, self.site)
        await client.subscribe(callups, qos=1)
        await client.subscribe(notice, qos=1)
        self._police = client
        self._replied.set()  # answers waiting from before a reconnect go now
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._send_answers(client))
                tasks.create_task(self._take_police(client, callups, notice))
        except* MqttError as group:
            raise group.exceptions[0] from None
        finally:
            self._police = None

    async def _take_police(self, client: Client, callups: str, notice: str) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            if message.topic.value == notice:
                self._notice(payload)
            elif message.topic.value == callups:
                await self._forward(payload)
            client.ack(message)

    def _notice(self, payload: bytes) -> None:
        try:
            notice = OnEventNotice.model_validate_json(payload)
        except (ValidationError, ValueError) as exc:
            self.rejected += 1
            log.warning("event=on_event_rejected site=%s error=%r", self.site, str(exc)[:300])
            return
        self.hold(frozenset(notice.guards))
        log.info("event=on_event site=%s held=%d", self.site, len(self.held))

    async def _forward(self, payload: bytes) -> None:
        """Each call-up to its guard's topic on the site broker (waiting for the site broker if it is away)."""
        try:
            if len(payload) > MAX_CALLUP_BYTES:
                raise ValueError(f"{len(payload)} bytes (at most {MAX_CALLUP_BYTES})")
            doc = CallUps.model_validate_json(payload)
        except (ValidationError, ValueError) as exc:
            self.rejected += 1
            log.warning("event=callups_rejected site=%s error=%r", self.site, str(exc)[:300])
            return
        while True:
            await self._site_up.wait()
            site = self._site
            try:
                await asyncio.gather(*(site.publish(topics.guard_callup(self.site, item.guard), item.to_json(), qos=1) for item in doc.items))  # type: ignore[union-attr]
                break
            except (MqttError, AttributeError) as exc:
                log.warning("event=callups_not_forwarded site=%s error=%r", self.site, str(exc))
                await asyncio.sleep(0.5)
        self.forwarded += len(doc.items)

    async def _send_answers(self, client: Client) -> None:
        while True:
            await self._replied.wait()
            self._replied.clear()
            batch, self._replies = self._replies[:5000], self._replies[5000:]
            if not batch:
                continue
            try:
                await client.publish(topics.police_callup_answers(self.district, self.site),
                                     CallUpAnswers(site=self.site, answers=[a for a, _, _ in batch]).to_json(), qos=1)
            except MqttError:
                self._replies[:0] = batch  # sent after the reconnect
                raise
            for _, site_client, message in batch:
                site_client.ack(message)
            self.answered += len(batch)
            if self._replies:
                self._replied.set()

    # --- the site broker: guards' replies in, call-ups out --------------------------------------------------------

    async def _site_session(self, client: Client) -> None:
        await client.subscribe(topics.guard_callup_reply(self.site, "+"), qos=1)
        self._site = client
        self._site_up.set()
        try:
            async for batch in client.batches():
                for message in batch:
                    self._reply(client, message)
        finally:
            self._site_up.clear()
            self._site = None

    def _reply(self, client: Client, message: Message) -> None:
        guard = message.topic.value.split("/")[3]
        try:
            reply = CallUpReply.model_validate_json(message.payload)
        except (ValidationError, ValueError) as exc:
            self.rejected += 1
            log.warning("event=callup_reply_rejected site=%s guard=%s error=%r", self.site, guard, str(exc)[:300])
            client.ack(message)
            return
        answer = GuardAnswer(guard=guard, event=reply.event, answer=reply.answer, sector=reply.sector, roll_call=reply.roll_call, at=iso(self.clock()))
        self._replies.append((answer, client, message))
        self._replied.set()
