"""The command centre's side of the field link, on its own connection to the district broker: patrol tasks out to the
sites (retained, one topic per task, each revision once the database has it), and the sites' field reports in (task
answers, checkpoint scans, tips), each stored in one transaction. Also runs the patrol watch (hub/checkins.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from gateway.connection import Client, stay_connected
from guardlink import topics
from guardlink.districtconfig import DistrictConfig
from guardlink.patrol import FieldEnvelope, ScanCheckin, TaskAnswer, Tip
from guardlink.siteconfig import BrokerUrl
from hub.checkins import PatrolWatch, record_checkin, scanned_point
from hub.field_tables import TaskRow
from hub.tasks import apply_answer
from hub.tips import TipRefused, store_tip

log = logging.getLogger(__name__)

REPORT_MAX_BYTES = 4 * 1024 * 1024


class FieldLink:
    """Publishes tasks (new revisions are looked for every `poll_s`), takes field reports; `run()` until cancelled."""

    def __init__(self, config: DistrictConfig, engine: Engine, broker: BrokerUrl | None = None, *, poll_s: float = 0.2) -> None:
        self.config, self.engine, self.poll_s = config, engine, poll_s
        self.broker = broker or config.broker_url()
        self.district = config.district.id
        self.refused = 0
        self.patrol = PatrolWatch(config, engine)
        self.client: Client | None = None  # while connected: the district's other MQTT work may publish through it (rosters)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            if self.patrol.enabled:
                tasks.create_task(self.patrol.run())
            # A persistent session, each report acknowledged once stored: reports sent while the hub is away or restarting wait for it.
            tasks.create_task(stay_connected(self.broker, self._session, identifier=f"guardlink-hub-{self.district}-field", clean_session=False, manual_ack=True))

    async def _session(self, client: Client) -> None:
        await client.subscribe(topics.police_field(self.district, "+"), qos=1)
        self.client = client
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._publish(client))
                async for message in client.messages:
                    payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                    await asyncio.to_thread(self.receive, message.topic.value.split("/")[-2], payload)
                    client.ack(message)
        finally:
            self.client = None

    async def _publish(self, client: Client) -> None:
        while True:
            for site, task_id, revision, document in await asyncio.to_thread(self._unpublished):
                await client.publish(topics.police_task(self.district, site, task_id), _json(document), qos=1, retain=True)
                await asyncio.to_thread(self._published, task_id, revision)
                log.info("event=task_published task=%s site=%s revision=%d", task_id, site, revision)
            await asyncio.sleep(self.poll_s)

    def _unpublished(self) -> list[tuple[str, str, int, dict]]:
        with Session(self.engine) as session:
            rows = session.scalars(select(TaskRow).where(TaskRow.published < TaskRow.revision).order_by(TaskRow.updated_at).limit(200))
            return [(r.site, r.id, r.revision, r.document) for r in rows]

    def _published(self, task_id: str, revision: int) -> None:
        with Session(self.engine) as session, session.begin():
            row = session.get(TaskRow, task_id)
            if row is not None and row.published < revision:
                row.published = revision

    def receive(self, site: str, payload: bytes) -> None:
        """One field report from `site`: stored, or refused (counted and logged with the reason); OperationalError when the
        database is unreachable (nothing stored: try again)."""
        try:
            if len(payload) > REPORT_MAX_BYTES:
                raise TipRefused(f"{len(payload)} bytes; at most {REPORT_MAX_BYTES}")
            report = FieldEnvelope.model_validate_json(b'{"report":' + payload + b"}").report
            now = datetime.now(timezone.utc)
            with Session(self.engine) as session, session.begin():
                if isinstance(report, TaskAnswer):
                    apply_answer(session, self.config, site, report, now)
                elif isinstance(report, ScanCheckin):
                    point = scanned_point(report.code, self.config.patrol.points)
                    if point is None:
                        raise TipRefused("not the QR code of a patrol point")
                    record_checkin(session, self.config, point, site, report.guard, "qr", report.at, report.id)
                elif isinstance(report, Tip):
                    store_tip(session, self.config, site, report, now)
        except OperationalError:
            raise  # the database is away: the report stays unacknowledged and comes again
        except (ValidationError, TipRefused, ValueError) as exc:
            self.refused += 1
            log.warning("event=field_report_refused site=%s bytes=%d reason=%r", site, len(payload), str(exc)[:300])
        except Exception:  # a defect in handling this one report: refused and logged, never a stop of the field link
            self.refused += 1
            log.exception("event=field_report_failed site=%s bytes=%d", site, len(payload))


def _json(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
