"""The police uplink: stored escalation revisions to the district's broker at QoS 1, in order; the site's status; police commands."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from gateway.connection import Client, MqttError, Will, stay_connected
from gateway.farewell import say_offline
from gateway.outbox import Outbox
from guardlink import topics
from guardlink.models import CommandAnswer, Receipt
from guardlink.siteconfig import BrokerUrl

log = logging.getLogger(__name__)


class PoliceUplink:
    """Delivers the outbox to the police broker; a revision is marked delivered only on PUBACK.

    Revisions go out in sequence order, up to `window` in flight; after a broken connection the
    oldest unacknowledged one is sent again first, so the police see each site's revisions in order
    (possibly twice, which they dedupe by id and revision). Reconnects back off up to 5 s, forever.
    """

    def __init__(
        self,
        broker: BrokerUrl,
        district: str,
        site: str,
        outbox: Outbox,
        *,
        status: Callable[[], dict[str, object]],
        on_command: Callable[[bytes], None],
        on_roster: Callable[[bytes], Awaitable[bytes]] | None = None,
        status_every_s: float = 10.0,
        window: int = 64,
    ) -> None:
        self.broker = broker
        self.outbox = outbox
        self.topic = topics.police_escalations(district, site)
        self.status_topic = topics.police_site_status(district, site)
        self.commands_topic = topics.police_commands(district, site)
        self.receipts_topic = topics.police_receipts(district, site)
        self.guards_topic = topics.police_guards(district, site)
        self.guards_report: bytes | None = None  # the site's guards as last reported by the edge, sent when it changes
        self.guards_changed = asyncio.Event()
        self.rejected_receipts = 0
        self.answers_topic = topics.police_command_answers(district, site)
        self._answers: list[CommandAnswer] = []  # to the commands just handled, sent right after them
        self.on_command = on_command
        self.on_roster = on_roster  # takes a roster document, returns the report to send back (edge/roster.py)
        self.roster_topic, self.roster_report_topic = topics.police_roster(district, site), topics.police_roster_applied(district, site)
        self.identifier = f"guardlink-edge-{site}-uplink"
        self.status = status
        self.status_every_s = status_every_s
        self.window = window
        self.delivered = 0
        self.connected = False

    async def run(self) -> None:
        """Deliver forever, reconnecting as needed."""
        will = Will(self.status_topic, self._status_document("offline"), qos=1, retain=True)
        await stay_connected(self.broker, self._session, identifier=self.identifier, will=will)

    async def _session(self, client: Client) -> None:
        self.connected = True
        try:
            await self._serve(client)
        except asyncio.CancelledError:
            await say_offline(client, self.status_topic, self._status_document("offline"))  # a clean stop: no Last Will
            raise
        finally:
            self.connected = False

    async def _serve(self, client: Client) -> None:
        await client.subscribe(self.commands_topic, qos=1)
        await client.subscribe(self.receipts_topic, qos=1)
        if self.on_roster is not None:
            await client.subscribe(self.roster_topic, qos=1)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._heartbeat(client))
                tasks.create_task(self._deliver(client))
                tasks.create_task(self._resend(client))
                tasks.create_task(self._report_guards(client))
                tasks.create_task(self._commands(client))
        except* MqttError as group:
            raise group.exceptions[0] from None

    async def _deliver(self, client: Client) -> None:
        while True:
            self.outbox.changed.clear()
            batch = self.outbox.deliverable(self.window)
            if not batch:
                await self.outbox.changed.wait()
                continue
            await asyncio.gather(*(client.publish(self.topic, p.document, qos=1) for p in batch))
            self.outbox.delivered(batch)
            self.delivered += len(batch)
            log.debug("event=escalations_delivered count=%d backlog=%d", len(batch), self.outbox.backlog)

    async def _resend(self, client: Client) -> None:
        """Revisions whose receipt is overdue go out again (the command centre dedupes by id and revision)."""
        while True:
            await asyncio.sleep(1.0)
            batch = self.outbox.due_resends(self.window)
            if batch:
                log.warning("event=escalations_resent reason=no_receipt count=%d unreceipted=%d", len(batch), self.outbox.unreceipted)
                await asyncio.gather(*(client.publish(self.topic, p.document, qos=1) for p in batch))

    async def _report_guards(self, client: Client) -> None:
        """The latest report of the site's guards, whenever the edge has a new one (and after every reconnect)."""
        while True:
            self.guards_changed.clear()
            if self.guards_report is not None:
                await client.publish(self.guards_topic, self.guards_report, qos=1)
            await self.guards_changed.wait()

    def report_guards(self, report: bytes) -> None:
        """Send this report of the site's guards (the newest wins if the link is slow or down)."""
        self.guards_report = report
        self.guards_changed.set()

    def _receipt(self, payload: bytes) -> None:
        try:
            receipt = Receipt.model_validate_json(payload)
        except ValidationError as exc:
            self.rejected_receipts += 1
            log.warning("event=receipt_rejected error=%r", str(exc)[:300])
            return
        confirmed = self.outbox.receipted((r.id, r.revision) for r in receipt.received)
        log.debug("event=receipt revisions=%d awaited=%d unreceipted=%d", len(receipt.received), confirmed, self.outbox.unreceipted)

    async def _commands(self, client: Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            if message.topic.value == self.receipts_topic:
                self._receipt(payload)
                continue
            if message.topic.value == self.roster_topic and self.on_roster is not None:
                await client.publish(self.roster_report_topic, await self.on_roster(payload), qos=1)
                continue
            self.on_command(payload)
            while self._answers:
                await client.publish(self.answers_topic, self._answers.pop(0).to_json(), qos=1)

    def answer(self, answer: CommandAnswer) -> None:
        """Tell the police what became of the command being handled (sent on the connection it came in on)."""
        self._answers.append(answer)

    async def _heartbeat(self, client: Client) -> None:
        while True:
            await client.publish(self.status_topic, self._status_document("online"), qos=1, retain=True)
            await asyncio.sleep(self.status_every_s)

    def _status_document(self, state: str) -> bytes:
        doc = {"state": state, "every_s": self.status_every_s, "at": time.time()}
        if state == "online":
            doc |= self.status()
        return json.dumps(doc).encode()
