"""`guardlink bench hub`: escalation revisions stored per second by the hub, next to a raw paho subscriber on the same backlog.

- Simulated sites (plain paho publishers) put a backlog of escalation revisions on a real mosquitto while the hub's
  persistent session and the raw subscriber's are registered but away; each then drains the same backlog:
  - raw: a bare paho client receives them (no parsing; paho acknowledges each at once);
  - stored: the hub's intake parses, commits (group commit) and acknowledges them, into SQLite and into PostgreSQL.
  Each database drains `--rounds` backlogs (a new one each round); the medians are reported, with every round.
- Latency: sites publish at a steady 200 revisions/s to the hub's intake in a process of its own (PostgreSQL, as
  `guardlink hub` runs it, without the HTTP API), which records when each revision's commit returned: publish ->
  committed, p50/p99. The sites also record when each receipt comes back: publish -> receipt (the receipt leaves after
  the commit and comes back through the broker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from gateway.connection import threaded_client
from guardlink import topics
from guardlink.districtconfig import DistrictConfig
from guardlink.ids import uuid7
from guardlink.models import Escalation, EscalationStatus, Incident, IncidentKind, Location, Receipt, Severity, SiteRef, iso
from guardlink.siteconfig import BrokerUrl
from hub.broker_access import HUB_BROKER_SETTINGS  # the acknowledgement window the hub needs, as broker-config writes it

DISTRICT = "bench"
GOAL_RATIO = 0.3
GOAL_P99_MS = 20.0


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
        self.receipted_at: dict[tuple[str, int], float] = {}  # time.time() of each revision's first receipt
        self._lock = threading.Lock()
        self._pending: list[mqtt.MQTTMessageInfo] = []
        subscribed = threading.Event()
        self._client = threaded_client(broker, client_id=f"sim-{site}-{uuid7()[-8:]}", clean_session=True)  # TCP_NODELAY, as the edge
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
        now = time.time()
        receipt = Receipt.model_validate_json(message.payload)
        with self._lock:
            self.receipts.append(receipt)
            for r in receipt.received:
                self.received.add((r.id, r.revision))
                self.receipted_at.setdefault((r.id, r.revision), now)

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


def publish_backlog(sites: list[SimulatedSite], revisions: int, tag: str) -> None:
    """`revisions` revisions spread over the sites (4 revisions per escalation), all acknowledged by the broker."""
    for n in range(revisions):
        site = sites[n % len(sites)]
        site.publish(revision(site.site, f"{tag}-{n // (4 * len(sites))}-{site.site}", (n // len(sites)) % 4 + 1, n // len(sites) + 1))
    for site in sites:
        site.wait_published(timeout_s=120)


async def _drain(intake_args: tuple, expected: int, timeout_s: float) -> float:
    """Run an intake until it has stored `expected` new revisions; revisions/s from its subscription to its last commit."""
    from hub.intake import Intake

    config, engine, broker = intake_args
    done = asyncio.Event()
    intake = Intake(config, engine, broker=broker, on_commit=lambda stored: done.set() if intake.stored >= expected else None)
    task = asyncio.create_task(intake.run())
    try:
        await asyncio.wait_for(intake.ready.wait(), 30)
        if expected == 0:
            return 0.0
        start = time.perf_counter()
        await asyncio.wait_for(done.wait(), timeout_s)
        return expected / (time.perf_counter() - start)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _register(intake_args: tuple) -> None:
    """Subscribe the hub's persistent session once, then leave: the broker queues for it from now on."""
    await _drain(intake_args, 0, 30)


def district_yaml(broker: BrokerUrl, database: str, sites: list[str], district_id: str = DISTRICT) -> str:
    """A district file for a hub process: `sites` in one community, HTTP on any free port."""
    return (
        f"district: {{id: {district_id}, name: District {district_id}}}\n"
        f"broker: {broker}\n"
        f"database: {database}\n"
        "listen: 127.0.0.1:0\n"
        "communities:\n"
        f"  - {{id: c1, name: One, chief: Chief, outline: [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], sites: [{', '.join(sites)}]}}\n"
    )


def start_hub(district_file: Path, log: Path, start: Callable[[list[str], Path], subprocess.Popen] | None = None) -> subprocess.Popen:
    """A `guardlink hub` process, returned once its persistent session is subscribed (its log says so)."""
    subscribed = log.read_text().count("event=intake_subscribed") if log.exists() else 0
    args = ["hub", "--config", str(district_file)]
    if start is None:
        with log.open("a") as err:
            proc = subprocess.Popen([sys.executable, "-m", "cli", *args], stdout=subprocess.DEVNULL, stderr=err)
    else:
        proc = start(args, log)
    deadline = time.monotonic() + 30
    while log.read_text().count("event=intake_subscribed") <= subscribed:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the hub did not subscribe:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)
    return proc


def _committing_intake(district_file: str, ready: Any, stop: Any, results: Any) -> None:
    """The hub's intake (run in a process of its own) until `stop` is set; then puts [((id, revision), commit time)] on `results`."""
    from guardlink.districtconfig import load_district
    from hub.database import make_engine
    from hub.intake import Intake
    from hub.store import Stored

    config = load_district(district_file)
    committed: dict[tuple[str, int], float] = {}

    def record(stored: Stored) -> None:  # on the event loop, right after the writer's commit returned
        now = time.time()
        for item in stored.receipts:
            committed.setdefault((item.escalation.id, item.escalation.revision), now)

    async def serve() -> None:
        engine = make_engine(config.database_url())  # migrated already by the benchmark
        intake = Intake(config, engine, on_commit=record)
        task = asyncio.create_task(intake.run())
        try:
            await asyncio.wait_for(intake.ready.wait(), 30)
            ready.set()
            await asyncio.to_thread(stop.wait)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            engine.dispose()

    asyncio.run(serve())
    results.put(list(committed.items()))


def _latency(district_file: Path, sites: list[SimulatedSite], rate: float, seconds: float) -> tuple[list[float], list[float]]:
    """Publish at a steady `rate` to the hub's intake in a process of its own; each revision's publish -> committed and
    publish -> receipt times, in ms."""
    spawn = multiprocessing.get_context("spawn")
    ready, stop, results = spawn.Event(), spawn.Event(), spawn.Queue()
    hub = spawn.Process(target=_committing_intake, args=(str(district_file), ready, stop, results), daemon=True)
    hub.start()
    total = int(rate * seconds)
    published: dict[tuple[str, int], float] = {}
    try:
        deadline = time.monotonic() + 60
        while not ready.wait(0.1):
            if not hub.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the hub's intake did not subscribe (see its traceback above)")
        start = time.monotonic()
        for n in range(total):
            site = sites[n % len(sites)]
            doc = revision(site.site, f"lat-{n}", 1, 10_000_000 + n)
            published[(doc.id, 1)] = time.time()
            site.publish(doc)
            pause = start + (n + 1) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the publisher
        deadline = time.monotonic() + 30
        while not published.keys() <= set().union(*(s.receipted() for s in sites)) and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        committed = dict(results.get(timeout=30))
    finally:
        stop.set()
        hub.join(10)
        if hub.is_alive():
            hub.kill()
    receipted = {key: at for s in sites for key, at in s.receipted_at.items()}
    for what, times in (("commit", committed), ("receipt", receipted)):
        missing = [key for key in published if key not in times]
        if missing:
            raise RuntimeError(f"{len(missing)} of {total} revisions got no {what}")
    return [(committed[key] - at) * 1000 for key, at in published.items()], [(receipted[key] - at) * 1000 for key, at in published.items()]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run(revisions: int = 10_000, sites: int = 10, rate: float = 200.0, seconds: float = 10.0, rounds: int = 3) -> dict[str, object]:
    """Each round: raw and SQLite on one backlog, raw and PostgreSQL on the next; then latency at a steady rate into PostgreSQL."""
    from bench.ingest import RawSubscriber
    from bench.servers import running_mosquitto, running_postgres
    from hub.database import make_engine, migrate

    names = [f"site-{n:03d}" for n in range(sites)]
    config = district(names)
    with tempfile.TemporaryDirectory(prefix="guardlink-bench-hub-") as tmp:
        tmp_path = Path(tmp)
        with running_mosquitto(tmp_path / "broker", extra=HUB_BROKER_SETTINGS) as broker, running_postgres(tmp_path / "postgres") as postgres:
            simulated = [SimulatedSite(broker, name) for name in names]
            engines = {"sqlite": make_engine(f"sqlite:///{tmp_path / 'hub.db'}"), "postgres": make_engine(postgres.url)}
            try:
                for engine in engines.values():
                    migrate(engine)
                raw = RawSubscriber(broker, [topics.police_escalations(DISTRICT, "+")])
                raw.register()
                asyncio.run(_register((config, engines["sqlite"], broker)))
                rates: dict[str, list[float]] = {name: [] for name in engines}
                raw_rates = []
                for round_ in range(rounds):
                    for name, engine in engines.items():
                        print(f"round {round_ + 1}/{rounds}, {name}: backlog of {revisions} revisions from {sites} sites", file=sys.stderr, flush=True)
                        publish_backlog(simulated, revisions, f"{name}{round_}")
                        raw_rates.append(raw.drain(revisions, timeout_s=120))
                        rates[name].append(asyncio.run(_drain((config, engine, broker), revisions, timeout_s=300)))
                print(f"latency: {rate:.0f} revisions/s for {seconds:.0f} s into postgres (the hub's intake in its own process)", file=sys.stderr, flush=True)
                district_file = tmp_path / "district.yaml"
                district_file.write_text(district_yaml(broker, postgres.url, names))
                committed, receipted = _latency(district_file, simulated, rate, seconds)
            finally:
                for site in simulated:
                    site.close()
                for engine in engines.values():
                    engine.dispose()
    raw_per_s = statistics.median(raw_rates)
    stored = {name: statistics.median(values) for name, values in rates.items()}
    p99 = percentile(committed, 99)
    ratio = stored["postgres"] / raw_per_s
    return {
        "revisions": revisions,
        "sites": sites,
        "rounds": rounds,
        "stored_per_s_sqlite": round(stored["sqlite"]),
        "stored_per_s_postgres": round(stored["postgres"]),
        "raw_per_s": round(raw_per_s),
        "rounds_raw_per_s": [round(r) for r in raw_rates],
        "rounds_stored_per_s_sqlite": [round(r) for r in rates["sqlite"]],
        "rounds_stored_per_s_postgres": [round(r) for r in rates["postgres"]],
        "ratio_sqlite": round(stored["sqlite"] / raw_per_s, 3),
        "ratio_postgres": round(ratio, 3),
        "stored_p50_ms": round(percentile(committed, 50), 2),  # publish -> committed
        "stored_p99_ms": round(p99, 2),
        "receipt_p50_ms": round(percentile(receipted, 50), 2),  # publish -> receipt back at the site
        "receipt_p99_ms": round(percentile(receipted, 99), 2),
        "latency_rate_per_s": rate,
        "latency_revisions": len(committed),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "goal_ratio_postgres": GOAL_RATIO,
        "goal_p99_ms": GOAL_P99_MS,
        "goal_met": ratio >= GOAL_RATIO and p99 <= GOAL_P99_MS,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of `guardlink bench hub`."""
    engine = argparse.ArgumentParser(add_help=False)
    engine.add_argument("--engine", choices=("mosquitto", "nats"), default="mosquitto")
    chosen, rest = engine.parse_known_args(argv)
    if chosen.engine == "nats":
        from bench import hub_nats

        return hub_nats.main(rest)
    parser = argparse.ArgumentParser(prog="guardlink bench hub", description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("mosquitto", "nats"), default="mosquitto",
                        help="nats: hub workers on a three-node NATS JetStream cluster, 1 vs 2, and a simulated city (bench/hub_nats.py; its own options)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--revisions", type=int, default=10_000, help="revisions in each backlog (default 10000)")
    parser.add_argument("--sites", type=int, default=10, help="simulated sites (default 10)")
    parser.add_argument("--rate", type=float, default=200.0, help="revisions/s for the latency run (default 200)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="backlogs drained per database; medians are reported (default 3)")
    args = parser.parse_args(argv)
    result = run(args.revisions, args.sites, args.rate, args.seconds, args.rounds)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'revisions/s':<48}{'':>10}")
    print(f"{'raw paho subscriber (receive only)':<48}{result['raw_per_s']:>10}   {result['rounds_raw_per_s']}")
    print(f"{'hub intake, stored into SQLite':<48}{result['stored_per_s_sqlite']:>10}   ratio {result['ratio_sqlite']}  "
          f"{result['rounds_stored_per_s_sqlite']}")
    print(f"{'hub intake, stored into PostgreSQL':<48}{result['stored_per_s_postgres']:>10}   ratio {result['ratio_postgres']}  "
          f"{result['rounds_stored_per_s_postgres']}  goal >= {GOAL_RATIO}")
    print(f"publish -> committed at {result['latency_rate_per_s']:.0f}/s (PostgreSQL): p50 {result['stored_p50_ms']} ms, "
          f"p99 {result['stored_p99_ms']} ms  goal <= {GOAL_P99_MS}")
    print(f"publish -> receipt back at the site: p50 {result['receipt_p50_ms']} ms, p99 {result['receipt_p99_ms']} ms")
    print(f"load average {result['load_average']}; medians of {result['rounds']} rounds")
    print(f"goals {'met' if result['goal_met'] else 'NOT met'}")
    return 0
