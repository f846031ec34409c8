"""The district intake: every site's escalation revisions, status and guards from the district broker, stored, then acknowledged.

A persistent session (fixed client id, clean session off, QoS 1, manual acknowledgement): a message is acknowledged only
after the writer has committed it, so a hub killed at any point gets it again from the broker. After each commit the hub
sends the site a receipt for every revision of the batch, stored now or before (the edge resent it because a receipt was
lost). Bad documents are counted per site and reason, and acknowledged: they never come back and never block the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial

from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gateway.connection import Client, Message, MqttError, stay_connected
from gateway.police import SiteMonitor
from guardlink import topics
from guardlink.districtconfig import DistrictConfig
from guardlink.models import Escalation, GuardsReport, Receipt, iso
from guardlink.siteconfig import BrokerUrl
from hub.store import Guards, Item, Rejected, Revision, SiteSilent, SiteStatus, Stored
from hub.tables import SiteRow
from hub.writer import Writer

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 256 * 1024
LOG_EVERY_S = 10.0


class RejectionLog:
    """Logs a rejection at most every `every_s` per site and reason, with how many were not logged in between. Pure."""

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self.every_s = every_s
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def due(self, site: str, reason: str, now: float) -> int | None:
        """The count since the last log line when one is due now, else None."""
        at, count = self._last.get((site, reason), (float("-inf"), 0))
        if now - at >= self.every_s:
            self._last[(site, reason)] = (now, 0)
            return count + 1
        self._last[(site, reason)] = (at, count + 1)
        return None


def client_id(district: str) -> str:
    """The hub's fixed client id on its district broker: the broker keeps its session and queue across restarts."""
    return f"guardlink-hub-{district}"


class Intake:
    """Takes the district's police topics into the database; `run()` forever, reconnecting as needed."""

    def __init__(
        self,
        config: DistrictConfig,
        engine: Engine,
        *,
        broker: BrokerUrl | None = None,
        clock: Callable[[], float] = time.time,
        check_every_s: float = 1.0,
        notify: asyncio.Event | None = None,
        on_commit: Callable[[Stored], None] | None = None,
    ) -> None:
        """`notify` is set after every commit that appended `changes` rows (it wakes the live stream); `on_commit` is
        called on the event loop with what each batch stored, right after its commit."""
        self.config = config
        self.district = config.district.id
        self.engine = engine
        self.broker = broker or config.broker_url()
        self.clock = clock
        self.check_every_s = check_every_s
        self.notify = notify or asyncio.Event()
        self.on_commit = on_commit or (lambda stored: None)
        self.filters = {
            "escalations": topics.police_escalations(self.district, "+"),
            "status": topics.police_site_status(self.district, "+"),
            "guards": topics.police_guards(self.district, "+"),
        }
        self.monitor = SiteMonitor(missed=config.settings.heartbeat_misses)
        self._community = {site: community.id for community in config.communities for site in community.sites}
        self.rejection_log = RejectionLog()
        self.ready = asyncio.Event()
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0
        self.receipts_sent = 0
        self.client: Client | None = None  # while connected: the API's police commands go out on it
        self._sending: set[asyncio.Task[None]] = set()
        self._writer: Writer | None = None

    async def run(self) -> None:
        """Take messages until cancelled."""
        await asyncio.to_thread(self._prime_monitor)
        self._writer = Writer(self.engine, asyncio.get_running_loop(), max_items=self.config.settings.commit_batch, clock=self.clock)
        self._writer.start()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._check_heartbeats())
                tasks.create_task(stay_connected(self.broker, self._session, identifier=client_id(self.district), clean_session=False, manual_ack=True))
        finally:
            await asyncio.to_thread(self._writer.stop)

    def writers(self) -> list[Writer]:
        """The database writers running (on /metrics)."""
        return [self._writer] if self._writer is not None else []

    def _running_writer(self) -> Writer:
        """The writer `run` started (messages come only after it did)."""
        if self._writer is None:
            raise RuntimeError("the intake's writer is not running: run() starts it before taking messages")
        return self._writer

    def pulls(self) -> tuple[int, int] | None:
        """Messages pulled and batches held uncommitted, for a worker that pulls from a cluster (on /metrics); None here."""
        return None

    def _prime_monitor(self) -> None:
        """Pick up liveness where the last run left it, so a site that went silent meanwhile is noticed."""
        with Session(self.engine) as session:
            for row in session.scalars(select(SiteRow).where(SiteRow.district == self.district)):
                if row.online and row.last_heartbeat is not None:
                    every_s = (row.status or {}).get("every_s", 10.0)
                    self.monitor.status(row.id, {"state": "online", "every_s": every_s}, row.last_heartbeat.timestamp())

    async def _check_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.check_every_s)
            await self._refresh_liveness()
            now = self.clock()
            overdue = self.monitor.overdue(now)
            for notice in overdue:
                log.warning("event=site_offline site=%s detail=%r", notice.site, notice.detail)
            if overdue:
                silent: list[Item] = [SiteSilent(n.site, n, iso(now)) for n in overdue]
                self._running_writer().submit(silent, lambda stored: self.notify.set())

    async def _refresh_liveness(self) -> None:
        """Nothing to do: this intake sees every heartbeat (hub workers that share them refresh from the database)."""

    async def _session(self, client: Client) -> None:
        self.client = client
        try:
            for topic_filter in self.filters.values():
                await client.subscribe(topic_filter, qos=1)
            self.ready.set()
            log.info("event=intake_subscribed district=%s", self.district)
            async for batch in client.batches():
                items = [self._contained(message) for message in batch]
                self._running_writer().submit([i for i in items if i is not None], partial(self._committed, client, batch))
        finally:
            self.client = None

    def _committed(self, client: Client, batch: list[Message], stored: Stored) -> None:
        """After the commit: acknowledge the batch (on the connection it came in on), send receipts."""
        if client is self.client:
            for message in batch:
                client.ack(message)
        self.stored += stored.new
        self.duplicates += stored.duplicates
        if stored.changes:
            self.notify.set()
        self.on_commit(stored)
        if stored.receipts and self.client is not None:
            per_site: dict[str, list[dict[str, object]]] = {}  # plain values: pydantic builds the receipt from them fastest
            for revision in stored.receipts:
                doc = revision.escalation
                per_site.setdefault(doc.site.id, []).append({"id": doc.id, "revision": doc.revision})
            task = asyncio.get_running_loop().create_task(self._send_receipts(self.client, per_site))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send_receipts(self, client: Client, per_site: dict[str, list[dict[str, object]]]) -> None:
        at = datetime.now(timezone.utc)
        size = self.config.settings.receipt_batch
        sends = []
        for site, received in per_site.items():
            topic = topics.police_receipts(self.district, site)
            for start in range(0, len(received), size):
                payload = Receipt.model_validate({"received": received[start : start + size], "at": at}).model_dump_json(by_alias=True)
                sends.append(client.publish(topic, payload, qos=1))
        try:
            await asyncio.gather(*sends)
            self.receipts_sent += sum(len(r) for r in per_site.values())
        except MqttError as exc:  # the edge resends the revision after its timeout, and gets the receipt then
            log.warning("event=receipts_not_sent sites=%d error=%r", len(per_site), str(exc))

    def _contained(self, message: Message) -> Item | None:
        """`_item`, with any defect in reading one message kept to that message: refused and counted, the rest go on."""
        try:
            return self._item(message)
        except Exception as exc:
            log.exception("event=document_failed topic=%s bytes=%d", message.topic.value, len(message.payload or b""))
            parts = message.topic.value.split("/")
            return self._reject(parts[3] if len(parts) == 5 else "?", "processing_error", f"{type(exc).__name__}: {exc}", self.clock())

    def _item(self, message: Message) -> Item | None:
        """What a message is, or why it is refused; None for a message that needs nothing stored (a cleared retained status)."""
        now = self.clock()
        parts = message.topic.value.split("/")
        site, kind = (parts[3], parts[4]) if len(parts) == 5 else ("?", "?")
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        if len(payload) > MAX_DOCUMENT_BYTES:
            return self._reject(site, "too_large", f"{len(payload)} bytes (at most {MAX_DOCUMENT_BYTES})", now)
        community = self._community.get(site)
        if kind == "escalations":
            try:
                escalation = Escalation.model_validate_json(payload)  # parsed once; the text is stored as received
            except (ValidationError, ValueError) as exc:
                return self._reject(site, "invalid_escalation", str(exc), now)
            if escalation.site.id != site or escalation.site.district != self.district:
                return self._reject(site, "wrong_site", f"escalation {escalation.id} says site {escalation.site.id!r} in district {escalation.site.district!r}", now)
            return Revision(escalation, community, iso(now), payload)
        if kind == "guards":
            try:
                report = GuardsReport.model_validate_json(payload)
            except (ValidationError, ValueError) as exc:
                return self._reject(site, "invalid_guards", str(exc), now)
            if report.site != site:
                return self._reject(site, "wrong_site", f"guards report says site {report.site!r}", now)
            return Guards(report, iso(now))
        if kind == "status":
            if not payload:
                return None
            try:
                doc = json.loads(payload)
                if not isinstance(doc, dict) or doc.get("state") not in ("online", "offline"):
                    raise ValueError("a status is an object whose state is 'online' or 'offline'")
                every_s = doc.get("every_s", 10.0)
                if not isinstance(every_s, int | float) or isinstance(every_s, bool) or not 0 < every_s <= 3600:
                    raise ValueError(f"every_s {every_s!r} is not a number of seconds in (0, 3600]")
            except ValueError as exc:
                return self._reject(site, "invalid_status", str(exc), now)
            notice = self.monitor.status(site, doc, now)
            if notice is not None:
                log.info("event=site_%s site=%s detail=%r", "online" if notice.online else "offline", site, notice.detail)
            return SiteStatus(site, self.district, community, doc, notice, iso(now))
        return self._reject(site, "unknown_topic", message.topic.value, now)

    def _reject(self, site: str, reason: str, detail: str, now: float) -> Rejected:
        self.rejected += 1
        count = self.rejection_log.due(site, reason, now)
        if count is not None:
            log.warning("event=document_rejected site=%s reason=%s count=%d detail=%r", site, reason, count, detail[:300])
        return Rejected(site[:64], reason, detail, iso(now))
