"""The edge node runtime: one asyncio loop that reads the site broker and escalates to the police."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import aiomqtt

from edge.dispatch import assign_nearest, first_revision, offer_for
from edge.guards import GuardBoard
from edge.intake import Intake
from edge.rules import incident_for
from gateway.connection import stay_connected
from gateway.uplink import PoliceUplink
from guardlink import topics
from guardlink.models import Escalation, Event
from guardlink.siteconfig import BrokerUrl, SiteConfig

log = logging.getLogger(__name__)


def _status(state: str) -> bytes:
    return json.dumps({"state": state}).encode()


class EdgeNode:
    """Runs one site: intake -> rules -> nearest guard -> offer on the wearable -> escalation to the police."""

    def __init__(
        self,
        config: SiteConfig,
        *,
        site_broker: BrokerUrl,
        police_broker: BrokerUrl,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.site_broker = site_broker
        self.clock = clock
        self.intake = Intake(config)
        self.board = GuardBoard(config)
        self.uplink = PoliceUplink(police_broker, config.site.district, config.site.id)
        self.ready = asyncio.Event()  # set once subscribed on the site broker
        self.escalations: list[Escalation] = []
        self._status_topic = topics.edge_status(config.site.id)

    async def run(self) -> None:
        """Run until cancelled."""
        site = self.config.site
        log.info(
            "event=edge_starting site=%s devices=%d guards=%d site_broker=%s police_broker=%s",
            site.id, len(self.config.devices), len(self.config.guards), self.site_broker, self.uplink.broker,
        )
        will = aiomqtt.Will(self._status_topic, _status("offline"), qos=1, retain=True)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.uplink.run())
            tasks.create_task(
                stay_connected(self.site_broker, self._site_session, identifier=f"guardlink-edge-{site.id}", will=will)
            )

    async def _site_session(self, client: aiomqtt.Client) -> None:
        for topic_filter in self.intake.filters:
            await client.subscribe(topic_filter, qos=1)
        await client.publish(self._status_topic, _status("online"), qos=1, retain=True)
        self.ready.set()
        log.info("event=edge_ready site=%s subscriptions=%s", self.config.site.id, ",".join(self.intake.filters))
        async for message in client.messages:
            now = self.clock()
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            for event in self.intake.decode(message.topic.value, payload, now):
                await self._handle(client, event, now)

    async def _handle(self, client: aiomqtt.Client, event: Event, now: float) -> None:
        self.board.observe(event)
        device = self.config.device(event.device)
        wearer = self.board.wearer(event.device)
        incident = incident_for(
            event, device, wearer.guard.id if wearer else None, wearer.point if wearer else None
        )
        if incident is None:
            return
        assignments = assign_nearest(incident, self.board, self.config.site.location.point(), now)
        escalation = first_revision(self.config, incident, assignments, now)
        self.uplink.submit(escalation)  # the police hear of it first, whatever happens to the offer
        self.escalations.append(escalation)
        log.info(
            "event=incident kind=%s device=%s escalation=%s guard=%s",
            incident.kind.value, device.id, escalation.id, assignments[0].guard if assignments else "none",
        )
        for assignment in assignments:
            offer = offer_for(escalation, assignment)
            await client.publish(
                topics.guard_offer(self.config.site.id, assignment.guard), offer.model_dump_json().encode(), qos=1
            )
