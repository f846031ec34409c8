"""Hub workers on a real three-node NATS JetStream cluster (MQTT listener for the sites) storing into a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench.city import Fleet, escalation, site_name
from bench.servers import NatsCluster, Postgres, running_nats_cluster, stop_process
from guardlink import topics
from guardlink.patrol import Tip
from guardlink.provisioning import create_keys, load_private_key
from guardlink.roster import verify_roster
from hub.database import make_engine, migrate
from hub.field_tables import TipRow
from hub.tables import EscalationRow, GuardRow, RejectionRow, RevisionRow, SiteRow
from tests.test_telemetry_metrics import scrape, value

DISTRICT = "city"
SITES = [site_name(n) for n in range(50)]
ESCALATIONS_PER_SITE = 25
REVISIONS = 4  # per escalation: 50 * 25 * 4 = 5,000


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with running_nats_cluster(tmp_path / "nats") as nodes:
        yield nodes


@pytest.fixture
def district_file(tmp_path: Path, postgres: Postgres) -> Path:
    migrate(postgres.url)
    path = tmp_path / "district.yaml"
    path.write_text(
        f"district: {{id: {DISTRICT}, name: City}}\ndatabase: {postgres.url}\nlisten: 127.0.0.1:0\n"
        f"communities:\n  - {{id: c1, name: One, chief: Chief, outline: [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], sites: [{', '.join(SITES)}]}}\n"
    )
    return path


def stored_count(postgres: Postgres) -> int:
    engine = make_engine(postgres.url)
    try:
        with Session(engine) as session:
            return session.scalar(select(func.count()).select_from(RevisionRow)) or 0
    finally:
        engine.dispose()


class Workers:
    """`guardlink hub --broker nats://...` processes, each logging to its own file; all stopped at the end."""

    def __init__(self, tmp_path: Path, district_file: Path, cluster: NatsCluster) -> None:
        self.tmp_path, self.district_file, self.cluster = tmp_path, district_file, cluster
        self.procs: dict[str, subprocess.Popen] = {}

    def log(self, name: str) -> str:
        return (self.tmp_path / f"worker-{name}.log").read_text()

    def start(self, name: str, *extra: str, wait: bool = True) -> subprocess.Popen:
        with (self.tmp_path / f"worker-{name}.log").open("w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "cli", "hub", "--config", str(self.district_file), "--broker", self.cluster.nats_url, *extra],
                                    stdout=subprocess.DEVNULL, stderr=log)
        self.procs[name] = proc
        if wait:
            wait_for(lambda: "event=intake_subscribed" in self.log(name) or proc.poll() is not None, 30, f"worker {name} to subscribe")
            assert proc.poll() is None, self.log(name)[-3000:]
        return proc

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)


@pytest.fixture
def workers(tmp_path: Path, district_file: Path, cluster: NatsCluster) -> Iterator[Workers]:
    running = Workers(tmp_path, district_file, cluster)
    yield running
    running.stop()


def test_every_revision_stored_once_through_a_leader_kill_a_worker_kill_and_a_worker_added(cluster: NatsCluster, workers: Workers, postgres: Postgres):
    workers.start("a")
    workers.start("b")
    fleet = Fleet([cluster.mqtt_url(name) for name in cluster.names], SITES, district=DISTRICT, connections=10, resend_after_s=8.0)
    published, third_worker = threading.Event(), threading.Event()
    plan = [(site, f"{site}-e{e:02d}", number) for e in range(ESCALATIONS_PER_SITE) for number in range(1, REVISIONS + 1) for site in SITES]

    def publish() -> None:
        for n, (site, escalation_id, number) in enumerate(plan):
            fleet.revision(escalation(site, DISTRICT, escalation_id, number, time.time()))
            if n == 3000:
                third_worker.wait(60)  # the last 2,000 go out once the third worker is there
            if n % 50 == 49:
                time.sleep(0.05)  # about 1,000 revisions a second: the faults land mid-stream
                fleet.resend_overdue()
        published.set()

    leader = cluster.meta_leader()
    publisher = threading.Thread(target=publish, daemon=True)
    try:
        publisher.start()
        wait_for(lambda: fleet.counts.revisions >= 1000, 30, "1,000 revisions published")
        cluster.kill(leader)  # kill -9 of the JetStream meta leader
        wait_for(lambda: fleet.counts.revisions >= 2000, 30, "2,000 revisions published")
        workers.procs["a"].kill()  # kill -9 of a hub worker holding messages
        wait_for(lambda: fleet.counts.revisions >= 3000, 30, "3,000 revisions published")
        workers.start("c")  # added mid-stream, nothing else changed
        third_worker.set()
        wait_for(published.is_set, 60, "every revision published")
        try:
            wait_for(lambda: fleet.resend_overdue() >= 0 and fleet.unreceipted() == 0, 90, "every revision receipted")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {fleet.unreceipted()} without receipt, {fleet.counts.resent} resent; stored {stored_count(postgres)}; "
                                 + " ".join(f"\n--- worker {n}:\n{workers.log(n)[-1500:]}" for n in workers.procs)) from None
        assert "event=worker_took_work" in workers.log("c"), workers.log("c")[-2000:]
        assert cluster.meta_leader() != leader
    finally:
        third_worker.set()
        published.wait(60)
        fleet.close()

    engine = make_engine(postgres.url)
    try:
        with Session(engine) as session:
            stored = set(session.execute(select(RevisionRow.escalation_id, RevisionRow.revision)).all())
            latest = dict(session.execute(select(EscalationRow.id, EscalationRow.revision)).all())
            statuses = set(session.scalars(select(EscalationRow.status)).all())
            rejected = session.scalar(select(func.count()).select_from(RejectionRow))
    finally:
        engine.dispose()
    expected = {(escalation_id, number) for _site, escalation_id, number in plan}
    assert stored == expected  # every revision exactly once: (id, revision) is the table's key, and none is missing
    assert latest == {escalation_id: REVISIONS for _site, escalation_id, _n in plan}  # no late revision overwrote a newer one
    assert statuses == {"resolved"}
    assert rejected == 0
    receipted = {site for (escalation_id, _n) in fleet.counts.receipted_at for site in [escalation_id.split("-e")[0]]}
    assert receipted == set(SITES)
    assert len(fleet.counts.receipted_at) == len(expected)


def test_a_second_worker_on_sqlite_is_refused(cluster: NatsCluster, workers: Workers, tmp_path: Path):
    sqlite = f"sqlite:///{tmp_path / 'hub.db'}"
    workers.start("one", "--database", sqlite)
    second = workers.start("two", "--database", sqlite, wait=False)
    assert second.wait(30) == 2
    assert "SQLite, which takes one worker" in workers.log("two")


def test_simulated_city_is_stored_and_receipted(cluster: NatsCluster, workers: Workers, postgres: Postgres):
    workers.start("a")
    mqtt = ",".join(f"127.0.0.1:{cluster.ports[name]['mqtt']}" for name in cluster.names)
    done = subprocess.run(
        [sys.executable, "-m", "cli", "simulate", "city", "--sites", "50", "--guards-per-site", "3", "--district", DISTRICT, "--broker", f"mqtt://{mqtt}",
         "--connections", "4", "--seconds", "4", "--heartbeat-s", "2", "--guards-every-s", "2", "--incidents-per-hour", "720"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sent, receipted = (int(word) for word in re.search(r"(\d+) escalation revisions, (\d+) receipted", done.stdout).groups())
    assert sent > 0 and receipted == sent, done.stdout
    engine = make_engine(postgres.url)
    try:
        with Session(engine) as session:
            wait_for(lambda: session.scalar(select(func.count()).select_from(GuardRow)) == 50 * 3, 20, "every site's guards stored")
            assert session.scalar(select(func.count()).select_from(SiteRow).where(SiteRow.online)) == 50
            assert session.scalar(select(func.count()).select_from(RevisionRow)) == sent
    finally:
        engine.dispose()


async def test_a_police_command_reaches_an_edge_that_was_away(cluster: NatsCluster, postgres: Postgres):
    """Commands go into the cluster at QoS 1: an edge's persistent session gets one sent while it was disconnected."""
    import asyncio

    import paho.mqtt.client as paho

    from bench.hub import district
    from guardlink import topics
    from guardlink.models import CommandKind, PoliceCommand
    from hub.intake_nats import NatsIntake, parse_servers
    from hub.service import command_publisher

    migrate(postgres.url)
    engine = make_engine(postgres.url)
    intake = NatsIntake(district(SITES, DISTRICT), engine, servers=parse_servers(cluster.nats_url))
    running = asyncio.create_task(intake.run())
    got: list[bytes] = []
    subscribed = threading.Event()

    def edge() -> paho.Client:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"edge-{SITES[0]}", clean_session=False)
        client.on_connect = lambda c, u, f, rc, p: c.subscribe(topics.police_commands(DISTRICT, SITES[0]), qos=1)
        client.on_subscribe = lambda *args: subscribed.set()
        client.on_message = lambda c, u, message: got.append(message.payload)
        client.connect("127.0.0.1", cluster.ports["n2"]["mqtt"])
        client.loop_start()
        return client

    try:
        await asyncio.wait_for(intake.ready.wait(), 30)
        away = edge()
        assert await asyncio.to_thread(subscribed.wait, 15)
        away.disconnect()
        away.loop_stop()
        command = PoliceCommand(command=CommandKind.CLOSE, escalation="e-1", by="desk-1", note="handled on the phone")
        await command_publisher(intake)(SITES[0], command)  # type: ignore[misc]
        back = edge()
        await asyncio.to_thread(wait_for, lambda: bool(got), 20, "the command at the edge")
        back.disconnect()
        back.loop_stop()
        assert PoliceCommand.model_validate_json(got[0]) == command
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        engine.dispose()


def test_the_nats_hub_benchmark_reports_every_figure_it_promises() -> None:
    """`guardlink bench hub --engine nats --json`, small: its own cluster, PostgreSQL and workers; figures, not speeds."""
    from conftest import GUARDLINK, REPO

    result = subprocess.run(
        [*GUARDLINK, "bench", "hub", "--engine", "nats", "--json", "--revisions", "2000", "--sites", "2000", "--seconds", "8", "--connections", "4"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    for key in ("stored_per_s_1", "stored_per_s_2", "scaling_2_workers", "messages_per_s", "lag_p99_ms"):
        assert isinstance(figures[key], (int, float)) and figures[key] > 0, key
    assert figures["sites_simulated"] == 2000 and figures["unreceipted"] == 0 and figures["escalation_revisions"] > 0


def test_field_reports_and_rosters_go_through_one_worker_at_a_time_and_another_takes_over_without_losing_any(cluster: NatsCluster, postgres: Postgres, tmp_path: Path):
    """Tasks, field reports, call-ups and rosters speak MQTT through the cluster's listener (the district file's broker),
    from the one worker holding the district-links lock; when it is killed another takes over, and reports sent meanwhile
    wait in the field link's persistent session."""
    migrate(postgres.url)
    listener = cluster.mqtt_url(cluster.names[0])
    signing_key, _ = create_keys(tmp_path / "keys", stem="district-roster")
    district_file = tmp_path / "district-links.yaml"
    district_file.write_text(
        f"district: {{id: {DISTRICT}, name: City}}\ndatabase: {postgres.url}\nlisten: 127.0.0.1:0\nbroker: mqtt://{listener.host}:{listener.port}\n"
        f"registry: {{signing_key: {signing_key}}}\n"
        f"communities:\n  - {{id: c1, name: One, chief: Chief, outline: [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], sites: [{', '.join(SITES)}]}}\n"
    )
    workers = Workers(tmp_path, district_file, cluster)
    site = cluster.mqtt_url(cluster.names[1])
    guard_app = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="guard-app")
    guard_app.connect(site.host, site.port)
    guard_app.loop_start()

    def send_tips(numbers: range) -> None:
        for n in numbers:
            tip = Tip(id=f"tip-cluster-{n:03d}", guard="g-1", category="fraud", text=f"tip {n}", at=datetime.now(timezone.utc))
            guard_app.publish(topics.police_field(DISTRICT, SITES[n % len(SITES)]), tip.to_json(), qos=1).wait_for_publish(10)

    def tips() -> int:
        engine = make_engine(postgres.url)
        try:
            with Session(engine) as session:
                return session.scalar(select(func.count()).select_from(TipRow)) or 0
        finally:
            engine.dispose()

    def links_held(name: str) -> float:
        """The worker's `guardlink_hub_lock_held{lock="links"}`, from its /metrics (which shows it pulls from the cluster)."""
        address = re.search(r"district \S+ at (http://\S+)", workers.log(name))
        assert address is not None, workers.log(name)[-2000:]
        samples = asyncio.run(scrape(address.group(1) + "/metrics"))
        assert ("guardlink_hub_nats_fetched_total", ()) in samples
        return value(samples, "guardlink_hub_lock_held", lock="links")

    def retained_rosters() -> dict[str, bytes]:
        """What a client connecting now gets on every site's roster topic (retained messages only)."""
        got: dict[str, bytes] = {}
        edge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="roster-reader")
        edge.on_message = lambda c, u, message: got.setdefault(message.topic.split("/")[-2], message.payload) if message.retain else None
        edge.connect(site.host, site.port)
        edge.loop_start()
        try:
            edge.subscribe(topics.police_roster(DISTRICT, "+"), qos=1)
            wait_for(lambda: len(got) == len(SITES), 30, "every site's retained roster")
        finally:
            edge.loop_stop()
            edge.disconnect()
        return got

    def running_links() -> list[str]:
        return [name for name in workers.procs if "event=district_links_started" in workers.log(name)]

    try:
        workers.start("a")
        workers.start("b")
        wait_for(lambda: len(running_links()) == 1 and any("event=links_standby" in workers.log(n) for n in workers.procs), 30,
                 "one worker running the district links, the other standing by")
        leader = running_links()[0]
        standby = next(name for name in workers.procs if name != leader)
        assert [links_held(leader), links_held(standby)] == [1.0, 0.0], "each worker's /metrics says whether it holds the links"
        send_tips(range(10))
        wait_for(lambda: tips() == 10, 30, "the first 10 tips stored")
        workers.procs[leader].kill()  # kill -9: its database session ends, and with it the lock
        send_tips(range(10, 20))  # while nobody holds the links: queued in the field link's session
        wait_for(lambda: "event=district_links_started" in workers.log(standby), 30, f"worker {standby} taking over the links")
        wait_for(lambda: tips() == 20, 60, "every tip stored, those sent while no worker held the links too")
        assert links_held(standby) == 1.0
        # Rosters went out from the links' worker over MQTT, retained: an edge connecting now gets its site's at once.
        rosters = retained_rosters()
        assert set(rosters) == set(SITES)
        public_key = load_private_key(signing_key).public_key()
        assert all(verify_roster(payload, public_key, district=DISTRICT, site=site).site == site for site, payload in rosters.items())
    finally:
        guard_app.loop_stop()
        guard_app.disconnect()
        workers.stop()
    assert "event=links_standby" in workers.log(standby)
