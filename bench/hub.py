"""`guardlink bench hub`: escalation revisions stored per second by the hub, next to a raw paho subscriber on the same backlog.

- Simulated sites (plain paho publishers) put a backlog of escalation revisions on a real mosquitto while the hub's
  persistent session and the raw subscriber's are registered but away; each then drains the same backlog:
  - raw: a bare paho client receives them (no parsing; paho acknowledges each at once);
  - stored: the hub's intake parses, commits (group commit) and acknowledges them, into SQLite and into PostgreSQL.
- Latency: sites publish at a steady 200 revisions/s to a running hub (PostgreSQL); each revision's time from publish to
  the commit that stored it (`committed_at` - the publish time carried in `issued_at`, same clock), p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt

from guardlink import topics
from guardlink.districtconfig import DistrictConfig
from guardlink.ids import uuid7
from guardlink.models import Escalation, EscalationStatus, Incident, IncidentKind, Location, Receipt, Severity, SiteRef, iso
from guardlink.siteconfig import BrokerUrl

DISTRICT = "bench"
GOAL_RATIO = 0.3
GOAL_P99_MS = 20.0
# mosquitto sends a client at most 20 unacknowledged QoS 1 messages by default; an intake that acknowledges after its
# commit needs a deeper window to commit in groups (firmware_configs/mosquitto/district.conf sets the same).
HUB_BROKER_SETTINGS = "max_inflight_messages 1000\nmax_queued_messages 0\n"


def district(sites: list[str], district_id: str = DISTRICT, **settings: object) -> DistrictConfig:
    """A district with one community holding `sites`."""
    return DistrictConfig.model_validate({
        "district": {"id": district_id, "name": f"District {district_id}"},
        "communities": [{"id": "c1", "name": "Community 1", "chief": "Chief", "outline": [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], "sites": sites}],
        "settings": settings,
    })


def revision(site: str, escalation_id: str, number: int, sequence: int, *, district_id: str = DISTRICT, at: float | None = None,
             status: EscalationStatus = EscalationStatus.DISPATCHED, about: str | None = None) -> Escalation:
    """Revision `number` of an escalation from `site` (`about` names another site in the document: a spoof)."""
    now = time.time() if at is None else at
    return Escalation(
        id=escalation_id, revision=number, sequence=sequence,
        site=SiteRef(id=about or site, name=f"Site {site}", district=district_id, location=Location(lat=40.05, lon=111.05)),
        incident=Incident(kind=IncidentKind.PANIC, severity=Severity.CRITICAL, device="btn-1", zone="gate",
                          location=Location(lat=40.05, lon=111.05), detected_at=iso(now)),
        assignments=[], status=status, guards_needed=1, issued_at=iso(now),
    )


class SimulatedSite:
    """A site's uplink played by a plain paho client: publishes revisions (QoS 1) and status, records the receipts it gets."""

    def __init__(self, broker: BrokerUrl, site: str, district_id: str = DISTRICT) -> None:
        self.site, self.district = site, district_id
        self.receipts: list[Receipt] = []
        self.received: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._pending: list[mqtt.MQTTMessageInfo] = []
        subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{site}-{uuid7()[-8:]}", clean_session=True)
        self._client.max_queued_messages_set(0)
        self._client.max_inflight_messages_set(200)
        self._client.on_connect = lambda c, u, f, rc, p: c.subscribe(topics.police_receipts(district_id, site), qos=1)
        self._client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        self._client.on_message = self._on_receipt
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        if not subscribed.wait(10):
            self.close()
            raise TimeoutError(f"simulated site {site} could not subscribe to its receipts on {broker}")

    def _on_receipt(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        receipt = Receipt.model_validate_json(message.payload)
        with self._lock:
            self.receipts.append(receipt)
            self.received.update((r.id, r.revision) for r in receipt.received)

    def publish(self, escalation: Escalation | bytes, topic: str | None = None) -> None:
        """Publish a revision (or raw bytes) on this site's escalation topic, or on `topic`."""
        payload = escalation.to_json() if isinstance(escalation, Escalation) else escalation
        self._pending.append(self._client.publish(topic or topics.police_escalations(self.district, self.site), payload, qos=1))

    def status(self, doc: dict[str, object], retain: bool = True) -> None:
        self._pending.append(self._client.publish(topics.police_site_status(self.district, self.site), json.dumps(doc), qos=1, retain=retain))

    def wait_published(self, timeout_s: float = 60.0) -> None:
        """Until the broker has acknowledged everything published so far."""
        deadline = time.monotonic() + timeout_s
        for info in self._pending:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        self._pending.clear()

    def receipted(self) -> set[tuple[str, int]]:
        with self._lock:
            return set(self.received)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
