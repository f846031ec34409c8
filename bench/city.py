"""A city's sites as load on the district broker: many sites over few MQTT connections, as a load balancer would gather them.

Each site sends its status heartbeat (retained, as the edge does), its complete guard report, and escalations at a steady
city-wide rate (every incident a few revisions apart). Like the edge's outbox, the fleet resends a revision until its
receipt is back; receipts come over one wildcard QoS 1 subscription (one consumer on a NATS cluster, not one per site).
A connection that breaks reconnects to the next broker of the list (a NATS cluster's other nodes).
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import paho.mqtt.client as mqtt

from bench.hub import revision
from guardlink import topics
from guardlink.ids import uuid7
from guardlink.models import (
    Escalation,
    EscalationStatus,
    GuardReport,
    GuardsReport,
    GuardState,
    Location,
    Receipt,
)
from guardlink.siteconfig import BrokerUrl

STATUSES = [EscalationStatus.DISPATCHED, EscalationStatus.ASSIGNED, EscalationStatus.ON_SCENE, EscalationStatus.RESOLVED]


@dataclass(slots=True)
class CityPlan:
    """What the simulated city sends; rates are per site unless said otherwise."""

    sites: int
    guards_per_site: int = 4
    devices_per_site: int = 10
    heartbeat_s: float = 30.0  # the edge's status heartbeat (GB/T 28181 devices: 60 s; EN 50136 supervision: 20-90 s)
    guards_every_s: float = 30.0  # a complete guard report at least this often (positions move)
    incidents_per_hour: float = 0.5  # per site; a revision every `revision_every_s` follows each
    revisions_per_incident: int = 4
    revision_every_s: float = 2.0
    district: str = "bench"


@dataclass(slots=True)
class FleetCounts:
    """What a fleet sent and got back."""

    messages: int = 0
    revisions: int = 0
    resent: int = 0
    seconds: float = 0.0  # how long the traffic was sent
    published_at: dict[tuple[str, int], float] = field(default_factory=dict)  # first publish (time.time())
    receipted_at: dict[tuple[str, int], float] = field(default_factory=dict)  # first receipt


def site_name(n: int) -> str:
    return f"site-{n:05d}"


class Fleet:
    """Sites over `connections` MQTT clients (spread over `brokers`), plus one client that takes every site's receipts."""

    def __init__(self, brokers: list[BrokerUrl], sites: list[str], *, district: str, connections: int = 8, resend_after_s: float = 10.0) -> None:
        self.brokers, self.sites, self.district, self.resend_after_s = brokers, sites, district, resend_after_s
        self.counts = FleetCounts()
        self._lock = threading.Lock()
        self._unreceipted: dict[tuple[str, int], tuple[str, bytes, float]] = {}  # key -> (site, payload, last sent)
        self._receipts = self._client(f"city-receipts-{district}", len(brokers) - 1, clean_session=False, subscribe=topics.police_receipts(district, "+"))
        self._receipts.on_message = self._on_receipt
        self._publishers = [self._client(f"city-{district}-{n}-{uuid7()[-6:]}", n) for n in range(min(connections, len(sites)))]
        self._of_site = {site: self._publishers[n % len(self._publishers)] for n, site in enumerate(sites)}

    def _client(self, client_id: str, first: int, *, clean_session: bool = True, subscribe: str | None = None) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(1000)
        client.reconnect_delay_set(0.1, 1.0)
        ready = threading.Event()
        turn = itertools.count(first)

        def connected(c: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
            if subscribe:
                c.subscribe(subscribe, qos=1)
            else:
                ready.set()

        def next_node(c: mqtt.Client, *_: object) -> None:
            """Reconnect to the next node: the one we were on may be gone. Also when a connection attempt fails, or a client
            that rotated onto a dead node would try that node for ever (paho retries the same host)."""
            broker = self.brokers[next(turn) % len(self.brokers)]
            c._host, c._port = broker.host, broker.port  # paho's setters refuse while its socket is still being closed

        client.on_connect = connected
        client.on_disconnect = next_node
        client.on_connect_fail = next_node
        client.on_subscribe = lambda c, u, mid, codes, p: ready.set()
        client.on_socket_open = lambda c, u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        broker = self.brokers[next(turn) % len(self.brokers)]
        client.connect(broker.host, broker.port)
        client.loop_start()
        if not ready.wait(15):
            client.loop_stop()
            raise TimeoutError(f"the city's client {client_id} could not connect to {broker}")
        return client

    def _on_receipt(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        receipt = Receipt.model_validate_json(message.payload)
        with self._lock:
            for r in receipt.received:
                key = (r.id, r.revision)
                self._unreceipted.pop(key, None)
                self.counts.receipted_at.setdefault(key, now)

    def _send(self, site: str, topic: str, payload: bytes, retain: bool = False) -> None:
        self._of_site[site].publish(topic, payload, qos=1, retain=retain)
        self.counts.messages += 1

    def revision(self, escalation: Escalation) -> None:
        """Publish a revision; it is resent until its receipt is back."""
        payload, key, site = escalation.to_json(), (escalation.id, escalation.revision), escalation.site.id
        now = time.time()
        with self._lock:
            self._unreceipted[key] = (site, payload, now)
            self.counts.published_at.setdefault(key, now)
            self.counts.revisions += 1
        self._send(site, topics.police_escalations(self.district, site), payload)

    def status(self, site: str, doc: dict[str, object]) -> None:
        self._send(site, topics.police_site_status(self.district, site), json.dumps(doc).encode(), retain=True)

    def guards(self, report: GuardsReport) -> None:
        self._send(report.site, topics.police_guards(self.district, report.site), report.model_dump_json(by_alias=True).encode())

    def resend_overdue(self) -> int:
        """Publish again every revision whose receipt is `resend_after_s` late (the edge's outbox does the same)."""
        now = time.time()
        with self._lock:
            due = [(key, site, payload) for key, (site, payload, at) in self._unreceipted.items() if now - at >= self.resend_after_s]
            for key, site, payload in due:
                self._unreceipted[key] = (site, payload, now)
        for _key, site, payload in due:
            self._send(site, topics.police_escalations(self.district, site), payload)
        self.counts.resent += len(due)
        return len(due)

    def wait_receipted(self, timeout_s: float) -> bool:
        """Until every revision has its receipt (resending the late ones), or `timeout_s`; whether they all have."""
        deadline = time.monotonic() + timeout_s
        while self.unreceipted() and time.monotonic() < deadline:
            self.resend_overdue()
            time.sleep(0.05)
        return not self.unreceipted()

    def unreceipted(self) -> int:
        with self._lock:
            return len(self._unreceipted)

    def close(self) -> None:
        for client in [*self._publishers, self._receipts]:
            client.disconnect()
            client.loop_stop()


def escalation(site: str, district: str, escalation_id: str, number: int, at: float) -> Escalation:
    """Revision `number` of a panic at `site`, its status moving on with each revision."""
    return revision(site, escalation_id, number, number, district_id=district, at=at, status=STATUSES[min(number, len(STATUSES)) - 1])


def guards_report(site: str, guards: int, at: float) -> GuardsReport:
    """Every guard of a site, somewhere around it."""
    return GuardsReport(site=site, at=datetime.fromtimestamp(at, timezone.utc), guards=[
        GuardReport(id=f"g{n}", name=f"Guard {n}", roles=["patrol"], state=GuardState.AVAILABLE,
                    location=Location(lat=40.0 + random.random() / 10, lon=111.0 + random.random() / 10), accuracy_m=5.0,
                    position_at=datetime.fromtimestamp(at, timezone.utc))
        for n in range(guards)
    ])


def run_city(fleet: Fleet, plan: CityPlan, seconds: float, *, max_messages: int | None = None, stop: threading.Event | None = None) -> FleetCounts:
    """Send the plan's traffic for `seconds` or until `max_messages` (heartbeats and reports spread evenly over their periods)."""
    stop = stop or threading.Event()
    rng = random.Random(7)
    start = time.time()
    # (when, what, site, n): the timetable, kept sorted by time as it is consumed
    timetable: list[tuple[float, str, str, int]] = []
    for n, site in enumerate(fleet.sites):
        timetable.append((start + plan.heartbeat_s * n / len(fleet.sites), "status", site, 0))
        timetable.append((start + plan.guards_every_s * (n + 0.5) / len(fleet.sites), "guards", site, 0))
    city_rate = plan.incidents_per_hour * len(fleet.sites) / 3600
    at = start + rng.expovariate(city_rate)
    while at < start + seconds:
        site, escalation_id = rng.choice(fleet.sites), uuid7()
        for number in range(1, plan.revisions_per_incident + 1):
            timetable.append((at + (number - 1) * plan.revision_every_s, escalation_id, site, number))
        at += rng.expovariate(city_rate)
    heapq.heapify(timetable)
    next_resend = start + 1.0
    while timetable and not stop.is_set() and (max_messages is None or fleet.counts.messages < max_messages):
        when, what, site, number = timetable[0]
        if when >= start + seconds + plan.revisions_per_incident * plan.revision_every_s:
            break
        pause = when - time.time()
        if pause > 0:
            time.sleep(min(pause, 0.05))
            continue
        heapq.heappop(timetable)
        if what == "status":
            fleet.status(site, {"state": "online", "every_s": plan.heartbeat_s, "at": when, "backlog": 0, "unreceipted": 0,
                                "devices": plan.devices_per_site, "devices_online": plan.devices_per_site})
            heapq.heappush(timetable, (when + plan.heartbeat_s, what, site, 0))
        elif what == "guards":
            fleet.guards(guards_report(site, plan.guards_per_site, when))
            heapq.heappush(timetable, (when + plan.guards_every_s, what, site, 0))
        else:
            fleet.revision(escalation(site, plan.district, what, number, when))
        if time.time() >= next_resend:
            fleet.resend_overdue()
            next_resend = time.time() + 1.0
    fleet.counts.seconds = time.time() - start
    return fleet.counts
