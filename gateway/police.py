"""The police side of the link: receive the escalation stream, validate, dedupe by (id, revision)."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

import aiomqtt
from pydantic import ValidationError

from gateway.connection import stay_connected
from guardlink import topics
from guardlink.ids import uuid7
from guardlink.models import Escalation
from guardlink.siteconfig import BrokerUrl

log = logging.getLogger(__name__)


class Deduper:
    """Remembers the last `capacity` (id, revision) pairs so at-least-once delivery shows exactly once."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()

    def first_time(self, escalation: Escalation) -> bool:
        """True the first time this revision is seen."""
        key = (escalation.id, escalation.revision)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True


class PoliceWatcher:
    """Subscribes to the police escalation stream and hands each new revision to `on_escalation`."""

    def __init__(
        self,
        broker: BrokerUrl,
        on_escalation: Callable[[Escalation], None],
        *,
        district: str = "+",
        site: str = "+",
        identifier: str | None = None,
    ) -> None:
        self.broker = broker
        self.on_escalation = on_escalation
        self.filter = topics.police_escalations_filter(district, site)
        self.identifier = identifier or f"guardlink-police-{uuid7()}"
        self.ready = asyncio.Event()
        self.invalid = 0
        self.duplicates = 0
        self._dedupe = Deduper()

    async def run(self) -> None:
        """Watch forever, reconnecting as needed."""
        await stay_connected(self.broker, self._watch, identifier=self.identifier)

    async def _watch(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.filter, qos=1)
        self.ready.set()
        async for message in client.messages:
            try:
                escalation = Escalation.from_json(message.payload)
            except (ValidationError, ValueError) as exc:
                self.invalid += 1
                log.warning("event=invalid_escalation topic=%s error=%r", message.topic, str(exc)[:300])
                continue
            if self._dedupe.first_time(escalation):
                self.on_escalation(escalation)
            else:
                self.duplicates += 1


def describe(escalation: Escalation, latency_ms: float | None = None) -> str:
    """One human line for a terminal: what, where, who was sent, how far, how fast."""
    inc = escalation.incident
    where = f" @ {inc.zone}" if inc.zone else ""
    if inc.location:
        where += f" ({inc.location.lat:.5f}, {inc.location.lon:.5f})"
    if escalation.assignments:
        a = escalation.assignments[0]
        who = f"-> {a.name} ({a.guard}) {a.distance_m:.0f} m away"
    else:
        who = "-> NO GUARD AVAILABLE"
    raised = f" by guard {inc.raised_by_guard}" if inc.raised_by_guard else ""
    latency = f"  [{latency_ms:.1f} ms]" if latency_ms is not None else ""
    stamp = escalation.issued_at.strftime("%H:%M:%S")
    return (
        f"{stamp} {escalation.site.id} {inc.kind.value.upper()} ({inc.severity.value}) "
        f"{inc.device}{raised}{where} {who} rev {escalation.revision}{latency}"
    )
