"""The police side as a dispatcher uses it: lines to act on, nothing missed while away, commands that say what happened."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest

from device_drivers.simulators import SiteSimulator
from edge.embedded_broker import free_tcp_port
from edge.escalations import first_revision
from gateway.police import PoliceWatcher, describe
from guardlink import topics
from guardlink.models import Escalation, Incident, IncidentKind, Location, Severity, iso
from guardlink.siteconfig import BrokerUrl, SiteConfig

from conftest import GUARDLINK, REPO, running_edge, wait_until

NOW = 1_800_014_400.0  # 2027-01-15 12:00:00 UTC


def an_escalation(config: SiteConfig, sequence: int = 1) -> Escalation:
    incident = Incident(kind=IncidentKind.PANIC, severity=Severity.CRITICAL, device="btn-gate", location=Location(lat=40.8, lon=111.7), detected_at=iso(NOW))
    return first_revision(config, incident, 1, now=NOW, sequence=sequence)


@pytest.fixture
def shanghai_time():
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Shanghai"
    time.tzset()
    yield
    os.environ.pop("TZ") if before is None else os.environ.__setitem__("TZ", before)
    time.tzset()


def test_a_line_shows_the_short_id_police_command_takes_and_the_local_time_with_its_zone(school, shanghai_time):
    escalation = an_escalation(school)
    line = describe(escalation)
    assert line.startswith(f"20:00:00 CST #{escalation.id[-8:]} "), line  # 12:00 UTC is 20:00 in Shanghai


class Watching:
    """A PoliceWatcher running in this loop, recording what it shows."""

    def __init__(self, broker: BrokerUrl, name: str, **options) -> None:
        self.shown: list[Escalation] = []
        self.opened: list[Escalation] = []
        self.watcher = PoliceWatcher(broker, self.shown.append, on_open=self.opened.append, name=name, **options)

    async def __aenter__(self) -> Watching:
        self.task = asyncio.create_task(self.watcher.run())
        await asyncio.wait_for(self.watcher.ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def publish(broker: BrokerUrl, topic: str, payloads: list[bytes]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_escalations_published_while_the_watcher_is_away_are_shown_when_it_is_back(school, mosquitto):
    topic = topics.police_escalations(school.site.district, school.site.id)
    async with Watching(mosquitto, "desk-7") as first, Watching(mosquitto, "desk-8") as other:
        await asyncio.to_thread(publish, mosquitto, topic, [an_escalation(school, 1).to_json()])
        await wait_until(lambda: len(first.shown) == 1 and len(other.shown) == 1, what="both watchers see the first")
    missed = [an_escalation(school, n) for n in (2, 3, 4)]
    await asyncio.to_thread(publish, mosquitto, topic, [e.to_json() for e in missed])  # nobody connected
    async with Watching(mosquitto, "desk-7") as back:
        await wait_until(lambda: len(back.shown) == 3, what="what arrived while desk-7 was away")
        assert [e.id for e in back.shown] == [e.id for e in missed]
    assert first.watcher.identifier == back.watcher.identifier != other.watcher.identifier


async def test_a_watcher_started_late_shows_the_escalations_still_open_at_the_site(school, mosquitto, tmp_path, recorder):
    status = recorder(mosquitto, topics.police_site_status(school.site.district, school.site.id))
    async with running_edge(school, mosquitto, mosquitto, tmp_path / "outbox.db", status_every_s=0.2) as node:
        with SiteSimulator(school, mosquitto, seed=3) as sim:
            await asyncio.to_thread(sim.report_positions)
            await asyncio.to_thread(sim.press, "btn-gate", "single")
            await wait_until(lambda: node.outbox.backlog == 0 and node.dispatcher.jobs, what="an open escalation delivered")
        [open_id] = node.dispatcher.jobs
        await wait_until(lambda: any(open_id.encode() in p for p in status.payloads()), what="a heartbeat listing it")
        async with Watching(mosquitto, "late") as late:
            await wait_until(lambda: late.opened, what="the open escalation from the site's retained status")
            assert [e.id for e in late.opened] == [open_id] and late.shown == []


def police_command(broker: BrokerUrl, *args: str, site: str = "hohhot-no3-primary", wait: float = 5) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*GUARDLINK, "police", "command", "--broker", str(broker), "--district", "xincheng", "--site", site, "--wait", str(wait), *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )


async def test_police_command_says_applied_refused_or_not_answered_with_distinct_exit_codes(school, mosquitto, tmp_path):
    async with running_edge(school, mosquitto, mosquitto, tmp_path / "outbox.db") as node:
        with SiteSimulator(school, mosquitto, seed=3) as sim:
            await asyncio.to_thread(sim.report_positions)
            await asyncio.to_thread(sim.press, "btn-gate", "single")
            await wait_until(lambda: node.dispatcher.jobs, what="an open escalation")
        [escalation_id] = node.dispatcher.jobs
        applied = await asyncio.to_thread(police_command, mosquitto, f"#{escalation_id[-8:]}", "acknowledge", "--by", "desk-7")
        assert applied.returncode == 0, applied.stderr
        assert applied.stderr.startswith("applied: acknowledge") and "rev 2" in applied.stderr and "acknowledged by desk-7" in applied.stderr
        unknown = await asyncio.to_thread(police_command, mosquitto, "0190c0ffee", "close")
        assert unknown.returncode == 1 and "refused" in unknown.stderr and "no open escalation '0190c0ffee'" in unknown.stderr
        wrong_site = await asyncio.to_thread(police_command, mosquitto, escalation_id, "close", site="no-such-site", wait=1)
        assert wrong_site.returncode == 3 and "did not answer within 1 s" in wrong_site.stderr
        assert escalation_id in node.dispatcher.jobs, "nothing was closed"


@pytest.mark.parametrize("broker", ["mqtt://127.0.0.1:{free}", "mqtt://no-such-host.invalid:1883"], ids=["down", "unknown-host"])
def test_police_command_against_an_unreachable_broker_exits_4_without_a_traceback(broker):
    result = police_command(BrokerUrl.parse(broker.format(free=free_tcp_port())), "0190c0ffee", "close")
    assert result.returncode == 4 and "cannot reach the police broker" in result.stderr and "Traceback" not in result.stderr


def test_police_watch_against_a_port_that_is_not_mqtt_reports_and_stops_cleanly(tmp_path, spawn: Callable[..., subprocess.Popen]):
    log = tmp_path / "watch.log"
    server = subprocess.Popen(
        ["python3", "-c", "import socket\ns=socket.create_server(('127.0.0.1',0));print(s.getsockname()[1],flush=True)\n"
         "while True:\n c,_=s.accept();c.recv(64);c.sendall(b'HTTP/1.1 400 Bad Request\\r\\n\\r\\n');c.close()"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        port = int(server.stdout.readline())
        for attempt in range(1, 4):
            watch = spawn("police", "watch", "--broker", f"mqtt://127.0.0.1:{port}", stderr_path=log)
            asyncio.run(wait_until(lambda n=attempt: log.read_text().count("closed the connection") >= 3 * n, what="reconnect attempts"))
            watch.send_signal(signal.SIGINT)
            watch.wait(10)
            assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        server.kill()
        server.wait()
