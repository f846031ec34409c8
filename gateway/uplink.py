"""The police uplink: stored escalation revisions to the district's broker at QoS 1, in order; the site's status; police commands."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import aiomqtt

from gateway.connection import stay_connected
from gateway.farewell import say_offline
from gateway.outbox import Outbox
from guardlink import topics
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
        status_every_s: float = 10.0,
        window: int = 64,
    ) -> None:
        self.broker = broker
        self.outbox = outbox
        self.topic = topics.police_escalations(district, site)
        self.status_topic = topics.police_site_status(district, site)
        self.commands_topic = topics.police_commands(district, site)
        self.on_command = on_command
        self.identifier = f"guardlink-edge-{site}-uplink"
        self.status = status
        self.status_every_s = status_every_s
        self.window = window
        self.delivered = 0
        self.connected = False

    async def run(self) -> None:
        """Deliver forever, reconnecting as needed."""
        will = aiomqtt.Will(self.status_topic, self._status_document("offline"), qos=1, retain=True)
        await stay_connected(self.broker, self._session, identifier=self.identifier, will=will)

    async def _session(self, client: aiomqtt.Client) -> None:
        self.connected = True
        try:
            await self._serve(client)
        except asyncio.CancelledError:
            await say_offline(client, self.status_topic, self._status_document("offline"))  # a clean stop: no Last Will
            raise
        finally:
            self.connected = False

    async def _serve(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.commands_topic, qos=1)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._heartbeat(client))
                tasks.create_task(self._deliver(client))
                tasks.create_task(self._commands(client))
        except* aiomqtt.MqttError as group:
            raise group.exceptions[0] from None

    async def _deliver(self, client: aiomqtt.Client) -> None:
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

    async def _commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.on_command(message.payload if isinstance(message.payload, bytes) else str(message.payload).encode())

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        while True:
            await client.publish(self.status_topic, self._status_document("online"), qos=1, retain=True)
            await asyncio.sleep(self.status_every_s)

    def _status_document(self, state: str) -> bytes:
        doc = {"state": state, "every_s": self.status_every_s, "at": time.time()}
        if state == "online":
            doc |= self.status()
        return json.dumps(doc).encode()
