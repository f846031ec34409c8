"""The edge node runtime: one asyncio loop that reads the site broker, stores escalations and sends them to the police."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt

from device_drivers.registry import driver
from edge.dispatch import assign_nearest
from edge.escalations import first_revision, next_revision, offer_for
from edge.guards import GuardBoard
from edge.intake import Intake
from edge.rules import condition_incident, incident_for
from edge.supervision import Change, Supervisor
from gateway.connection import Client, stay_connected
from gateway.outbox import Outbox
from gateway.uplink import PoliceUplink
from guardlink import topics
from guardlink.models import Escalation, EscalationStatus, Incident, IncidentKind
from guardlink.siteconfig import BrokerUrl, SiteConfig

log = logging.getLogger(__name__)


def _status(state: str) -> bytes:
    return json.dumps({"state": state}).encode()


class EdgeNode:
    """Runs one site: intake -> rules -> nearest guard -> outbox (durable) -> police; offers on the wearables.

    The site broker session is persistent (fixed client id, clean session off, QoS 1) and every message
    is acknowledged only after what it caused is stored, so a press is never lost to an edge restart:
    the broker keeps it until then and redelivers it, and a redelivery of a press already stored is
    recognised and not escalated twice.
    """

    def __init__(
        self,
        config: SiteConfig,
        *,
        site_broker: BrokerUrl,
        police_broker: BrokerUrl,
        outbox_path: Path,
        clock: Callable[[], float] = time.time,
        status_every_s: float = 10.0,
    ) -> None:
        self.config = config
        self.site_broker = site_broker
        self.clock = clock
        self.intake = Intake(config)
        self.board = GuardBoard(config)
        self.outbox = Outbox(outbox_path, clock=clock)
        self.uplink = PoliceUplink(
            police_broker, config.site.district, config.site.id, self.outbox, status=self.status, status_every_s=status_every_s
        )
        sup = config.supervision
        heartbeats = {d.id: d.heartbeat_s or driver(d.driver).heartbeat_s for d in config.devices}
        self.supervisor = Supervisor(heartbeats, missed=sup.missed_heartbeats, low_battery_percent=sup.low_battery_percent, now=clock())
        self.ready = asyncio.Event()  # set once subscribed on the site broker
        self.incidents = 0
        self.redeliveries_skipped = 0
        self.site_connected = False
        self._open_conditions: dict[tuple[str, IncidentKind], Escalation] = {}
        self._status_topic = topics.edge_status(config.site.id)
        self._tasks: set[asyncio.Task[None]] = set()

    def status(self) -> dict[str, object]:
        """Health and backlog, as reported to the police in the site's status heartbeat."""
        return {
            "site": self.config.site.id,
            "backlog": self.outbox.backlog,
            "incidents": self.incidents,
            "rejected_payloads": self.intake.rejections.total,
            "health": {"outbox": self.outbox.health, "site_broker": "connected" if self.site_connected else "disconnected"},
        }

    async def run(self) -> None:
        """Run until cancelled."""
        site = self.config.site
        log.info(
            "event=edge_starting site=%s devices=%d guards=%d site_broker=%s police_broker=%s outbox=%s",
            site.id, len(self.config.devices), len(self.config.guards), self.site_broker, self.uplink.broker, self.outbox.path,
        )
        await self.outbox.open()
        will = aiomqtt.Will(self._status_topic, _status("offline"), qos=1, retain=True)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.uplink.run())
                tasks.create_task(self._supervise())
                tasks.create_task(
                    stay_connected(
                        self.site_broker, self._site_session, identifier=f"guardlink-edge-{site.id}",
                        clean_session=False, manual_ack=True, will=will,
                    )
                )
        finally:
            await self.outbox.close()

    async def _site_session(self, client: Client) -> None:
        for topic_filter in self.intake.filters:
            await client.subscribe(topic_filter, qos=1)
        await client.publish(self._status_topic, _status("online"), qos=1, retain=True)
        self.site_connected = True
        self.ready.set()
        log.info("event=edge_ready site=%s subscriptions=%s", self.config.site.id, ",".join(self.intake.filters))
        try:
            async for message in client.messages:
                # One task per message: each starts in arrival order, so sequence numbers follow arrival,
                # and the outbox commits whatever arrives together in one fsync.
                task = asyncio.create_task(self._process(client, message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            self.site_connected = False

    async def _process(self, client: Client, message: aiomqtt.Message) -> None:
        now = self.clock()
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        topic = message.topic.value
        incidents: list[Incident] = []
        for event in self.intake.decode(topic, payload, now):
            self.board.observe(event)
            for change in self.supervisor.heard(event):
                self._condition(change, now)
            wearer = self.board.wearer(event.device)
            incident = incident_for(
                event, self.config.device(event.device), wearer.guard.id if wearer else None, wearer.point if wearer else None
            )
            if incident is not None:
                incidents.append(incident)
        if not incidents:
            client.ack(message)
            return
        source = f"{topic}|{message.mid}|{hashlib.sha256(payload).hexdigest()[:32]}"
        if getattr(message, "dup", False) and await self.outbox.seen_source(source):
            self.redeliveries_skipped += 1
            log.info("event=redelivery_skipped topic=%s mid=%d", topic, message.mid)
            client.ack(message)
            return
        stored = []
        for incident in incidents:
            assignments = assign_nearest(incident, self.board, self.config.site.location.point(), now)
            escalation = first_revision(self.config, incident, assignments, now=now, sequence=self.outbox.next_sequence())
            stored.append((escalation, self.outbox.append(escalation, source)))
        await asyncio.gather(*(written for _, written in stored))
        client.ack(message)  # only now may the broker forget the press
        for escalation, _ in stored:
            self.incidents += 1
            guard = escalation.assignments[0].guard if escalation.assignments else "none"
            log.info("event=incident kind=%s device=%s escalation=%s guard=%s", escalation.incident.kind.value, escalation.incident.device, escalation.id, guard)
            for assignment in escalation.assignments:
                offer = offer_for(escalation, assignment)
                await client.publish(topics.guard_offer(self.config.site.id, assignment.guard), offer.model_dump_json().encode(), qos=1)

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(self.config.supervision.check_every_s)
            now = self.clock()
            for change in self.supervisor.overdue(now):
                self._condition(change, now)

    def _condition(self, change: Change, now: float) -> None:
        """Report a device condition to the police (revision 1), and its clearing (next revision, resolved)."""
        key = (change.device, change.kind)
        log.warning("event=device_condition device=%s kind=%s raised=%s detail=%r", change.device, change.kind.value, change.raised, change.detail)
        if change.raised:
            wearer = self.board.wearer(change.device)
            incident = condition_incident(change.kind, self.config.device(change.device), change.detail, now, wearer.point if wearer else None)
            escalation = first_revision(self.config, incident, [], now=now, sequence=self.outbox.next_sequence(), status=EscalationStatus.REPORTED)
            self._open_conditions[key] = escalation
        elif opened := self._open_conditions.pop(key, None):
            escalation = next_revision(opened, status=EscalationStatus.RESOLVED, now=now, sequence=self.outbox.next_sequence(), detail=change.detail)
        else:
            return
        self.outbox.append(escalation)
