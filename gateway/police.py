"""The police side of the link: the escalation stream (validated, deduped by (id, revision)) and site liveness."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from gateway.connection import Client, Message, stay_connected
from guardlink import topics
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


@dataclass(frozen=True, slots=True)
class SiteNotice:
    """A site went silent or came back."""

    site: str  # district/site
    online: bool
    detail: str
    backlog: int | None = None


@dataclass(slots=True)
class _SiteSeen:
    last_at: float
    every_s: float
    online: bool


class SiteMonitor:
    """Tells 'site offline' (Last Will, or heartbeats missed) and 'site back' (with its backlog). Pure; time passed in."""

    def __init__(self, missed: int = 3) -> None:
        self.missed = missed
        self.sites: dict[str, _SiteSeen] = {}

    def status(self, site: str, doc: dict[str, object], now: float) -> SiteNotice | None:
        """Take a status document from a site's edge."""
        online = doc.get("state") == "online"
        every = doc.get("every_s")
        every_s = float(every) if isinstance(every, int | float) and every > 0 else 10.0
        seen = self.sites.get(site)
        self.sites[site] = _SiteSeen(now, every_s, online)
        if online and seen is not None and not seen.online:
            backlog = doc.get("backlog")
            return SiteNotice(site, True, f"back; {backlog} escalations were waiting to be delivered", backlog if isinstance(backlog, int) else None)
        if not online and (seen is None or seen.online):
            return SiteNotice(site, False, "the edge disconnected (Last Will)")
        return None

    def overdue(self, now: float) -> list[SiteNotice]:
        """Sites whose heartbeats stopped without a Last Will (link down, edge frozen)."""
        notices = []
        for site, seen in self.sites.items():
            if seen.online and now - seen.last_at > self.missed * seen.every_s:
                seen.online = False
                notices.append(SiteNotice(site, False, f"no heartbeat for {now - seen.last_at:.0f} s (every {seen.every_s:.0f} s)"))
        return notices


class PoliceWatcher:
    """Subscribes to the police stream: each new escalation revision to `on_escalation`, site changes to `on_site`,
    and the escalations a site reports open in its retained status (so a watcher started late shows them) to `on_open`.

    The session is persistent (a client id derived from the district, the site filter and `name`, clean session off,
    QoS 1): what the broker receives while the watcher is reconnecting or restarting is delivered when it is back.
    Two watchers need two names, or the broker hands the session from one to the other.
    """

    def __init__(
        self,
        broker: BrokerUrl,
        on_escalation: Callable[[Escalation], None],
        *,
        on_site: Callable[[SiteNotice], None] | None = None,
        district: str = "+",
        site: str = "+",
        name: str | None = None,
        on_open: Callable[[Escalation], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.broker = broker
        self.on_escalation = on_escalation
        self.on_open = on_open or on_escalation
        self.on_site = on_site or (lambda notice: None)
        self.filter = topics.police_escalations_filter(district, site)
        self.status_filter = topics.police_site_status_filter(district, site)
        self.identifier = watcher_id(district, site, name)
        self.clock = clock
        self.ready = asyncio.Event()
        self.invalid = 0
        self.duplicates = 0
        self.sites = SiteMonitor()
        self._dedupe = Deduper()

    async def run(self) -> None:
        """Watch forever, reconnecting as needed."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._check_heartbeats())
            tasks.create_task(stay_connected(self.broker, self._watch, identifier=self.identifier, clean_session=False))

    async def _check_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for notice in self.sites.overdue(self.clock()):
                self.on_site(notice)

    async def _watch(self, client: Client) -> None:
        await client.subscribe(self.filter, qos=1)
        await client.subscribe(self.status_filter, qos=1)
        self.ready.set()
        async for message in client.messages:
            if message.topic.matches(self.status_filter):
                self._site_status(message)
                continue
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


    def _site_status(self, message: Message) -> None:
        parts = message.topic.value.split("/")
        site = f"{parts[2]}/{parts[3]}"
        try:
            doc = json.loads(message.payload)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            self.invalid += 1
            log.warning("event=invalid_site_status topic=%s error=%r", message.topic, str(exc)[:200])
            return
        notice = self.sites.status(site, doc, self.clock())
        if notice is not None:
            self.on_site(notice)
        still_open = doc.get("open") if doc.get("state") == "online" else None
        for document in still_open if isinstance(still_open, list) else []:
            try:
                escalation = Escalation.model_validate(document)
            except ValidationError as exc:
                self.invalid += 1
                log.warning("event=invalid_open_escalation site=%s error=%r", site, str(exc)[:300])
                continue
            if self._dedupe.first_time(escalation):
                self.on_open(escalation)


def watcher_id(district: str, site: str, name: str | None = None) -> str:
    """The police watcher's stable MQTT client id, e.g. `guardlink-police-xincheng-all-desk7`."""
    parts = ["guardlink-police", "all" if district == "+" else district, "all" if site == "+" else site]
    return "-".join([*parts, name] if name else parts)


def short_id(escalation_id: str) -> str:
    """The end of an escalation id, as the police terminal shows it and `police command` accepts it (the
    beginning of a UUIDv7 is its timestamp, the same for escalations raised together)."""
    return escalation_id[-8:]


def local_time(moment: datetime) -> str:
    """A time on this terminal's clock, with its zone: `14:05:09 CST`."""
    return moment.astimezone().strftime("%H:%M:%S %Z")


def describe(escalation: Escalation, latency_ms: float | None = None) -> str:
    """One human line for a terminal: what, where, its status, and each guard's part."""
    inc = escalation.incident
    where = f" @ {inc.zone}" if inc.zone else ""
    if inc.location:
        where += f" ({inc.location.lat:.5f}, {inc.location.lon:.5f})"
    raised = f" by guard {inc.raised_by_guard}" if inc.raised_by_guard else ""
    guards = "; ".join(f"{a.name} ({a.guard}) {a.state.value.replace('_', ' ')} {a.distance_m:.0f} m" for a in escalation.assignments)
    extra = f" — {inc.detail}" if inc.detail else ""
    acknowledged = f" [acknowledged by {escalation.acknowledged_by}]" if escalation.acknowledged_by else ""
    latency = f"  [{latency_ms:.1f} ms]" if latency_ms is not None else ""
    return (
        f"{local_time(escalation.issued_at)} #{short_id(escalation.id)} {escalation.site.id} {inc.kind.value.upper()} ({inc.severity.value}) {inc.device}{raised}{where}{extra} "
        f"rev {escalation.revision} {escalation.status.value.upper().replace('_', ' ')}{': ' + guards if guards else ''}{acknowledged}{latency}"
    )
