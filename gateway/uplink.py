"""The police uplink: escalations to the district's broker at QoS 1, in order, each held until PUBACK."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import aiomqtt

from gateway.connection import stay_connected
from guardlink import topics
from guardlink.models import Escalation
from guardlink.siteconfig import BrokerUrl

log = logging.getLogger(__name__)


class PoliceUplink:
    """Delivers submitted escalations to the police broker; a revision leaves the queue only once acknowledged."""

    def __init__(self, broker: BrokerUrl, district: str, site: str) -> None:
        self.broker = broker
        self.topic = topics.police_escalations(district, site)
        self.identifier = f"guardlink-edge-{site}-uplink"
        self.delivered = 0
        self._pending: deque[Escalation] = deque()
        self._wake = asyncio.Event()

    @property
    def backlog(self) -> int:
        """Escalation revisions not yet acknowledged by the police broker."""
        return len(self._pending)

    def submit(self, escalation: Escalation) -> None:
        """Queue a revision for delivery (returns at once)."""
        self._pending.append(escalation)
        self._wake.set()

    async def run(self) -> None:
        """Deliver forever, reconnecting as needed."""
        await stay_connected(self.broker, self._deliver, identifier=self.identifier)

    async def _deliver(self, client: aiomqtt.Client) -> None:
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            escalation = self._pending[0]
            await client.publish(self.topic, escalation.to_json(), qos=1)
            self._pending.popleft()
            self.delivered += 1
            log.info("event=escalation_delivered id=%s revision=%d backlog=%d", escalation.id, escalation.revision, len(self._pending))
