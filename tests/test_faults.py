"""Fault tests: processes killed, brokers down or restarted, disks unwritable, devices silent. Nothing is lost."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from device_drivers import guardlink_wearable
from device_drivers.simulators import SiteSimulator
from gateway.police import PoliceWatcher, SiteNotice
from guardlink import topics
from guardlink.models import Escalation
from guardlink.siteconfig import BrokerUrl, SiteConfig

from conftest import Recorder, running_edge, running_mosquitto, stop_process, wait_until

SITE = "hohhot-no3-primary"
OUTAGE_S = 60  # the police broker outage the product promises to ride out


class EdgeProcess:
    """`guardlink edge` as a separate process, its log in a file, so it can be killed like a real one."""

    def __init__(self, spawn: Callable[..., subprocess.Popen], site_file: Path, site: BrokerUrl, police: BrokerUrl, outbox: Path, log: Path) -> None:
        self.args = ("edge", "--config", str(site_file), "--broker", str(site), "--police-broker", str(police), "--outbox", str(outbox))
        self.spawn, self.log = spawn, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        starts = self.log.read_text().count("event=edge_ready") if self.log.exists() else 0
        self.proc = self.spawn(*self.args, stderr_path=self.log)
        deadline = time.monotonic() + 20
        while self.log.read_text().count("event=edge_ready") <= starts:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"edge did not become ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.02)

    def kill_9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        stop_process(self.proc)


class Wearable:
    """A guard wearable pressing SOS with its own sequence numbers, published at QoS 1."""

    def __init__(self, broker: BrokerUrl, device: str = "wear-li") -> None:
        self.topic = topics.native_device_uplink(SITE, device)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.seq = 0
        self.in_flight: list[mqtt.MQTTMessageInfo] = []

    def press(self, count: int = 1) -> None:
        for _ in range(count):
            self.in_flight.append(self.client.publish(self.topic, guardlink_wearable.sos_payload(self.seq), qos=1))
            self.seq += 1

    def wait_acknowledged(self) -> float:
        for info in self.in_flight:
            info.wait_for_publish(30)
        self.in_flight.clear()
        return time.time()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def escalations(recorder: Recorder) -> list[Escalation]:
    """What the police consumer shows: first sight of each (id, revision), in arrival order."""
    seen, shown = set(), []
    for payload in recorder.payloads():
        escalation = Escalation.from_json(payload)
        if (escalation.id, escalation.revision) not in seen:
            seen.add((escalation.id, escalation.revision))
            shown.append(escalation)
    return shown


def sos_seqs(recorder: Recorder) -> list[int]:
    return [e.incident.device_seq for e in escalations(recorder) if e.incident.kind == "sos"]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def test_edge_killed_mid_burst_delivers_every_press_exactly_once(tmp_path, spawn, recorder):
    with running_mosquitto(tmp_path / "site", durable=True) as site, running_mosquitto(tmp_path / "police") as police:
        consumer = recorder(police, topics.police_escalations_filter())
        edge = EdgeProcess(spawn, Path("firmware_configs/sites/school.yaml").resolve(), site, police, tmp_path / "outbox.db", tmp_path / "edge.log")
        edge.start()
        wearable = Wearable(site)
        try:
            wearable.press(1000)
            wait_for(lambda: len(consumer.payloads()) >= 150, 30, "the burst to start reaching the police")
            edge.kill_9()
            delivered_before_kill = len(sos_seqs(consumer))
            wearable.wait_acknowledged()
            edge.start()
            wait_for(lambda: len(set(sos_seqs(consumer))) >= 1000, 60, "all 1000 presses at the police")
            time.sleep(0.5)  # a duplicate escalation would arrive right behind the last one
        finally:
            wearable.close()
    seqs = sos_seqs(consumer)
    assert delivered_before_kill < 1000, "the kill must land mid-burst for this test to mean anything"
    assert sorted(seqs) == list(range(1000)), "every press exactly once: none lost, none escalated twice"


def test_police_broker_down_for_a_minute_then_everything_arrives_in_order(tmp_path, spawn, recorder):
    police_dir = tmp_path / "police"
    police_dir.mkdir()
    with running_mosquitto(tmp_path / "site", durable=True) as site:
        with running_mosquitto(police_dir, durable=True) as police:
            consumer = recorder(police, topics.police_escalations_filter(), client_id="police-console")
            edge = EdgeProcess(spawn, Path("firmware_configs/sites/school.yaml").resolve(), site, police, tmp_path / "outbox.db", tmp_path / "edge.log")
            edge.start()
            wearable = Wearable(site)
            wearable.press(5)
            wait_for(lambda: len(sos_seqs(consumer)) == 5, 20, "presses before the outage")
        # The police broker is down (stopped above); presses keep coming for the whole outage.
        outage_ends = time.monotonic() + OUTAGE_S
        while time.monotonic() < outage_ends:
            wearable.press()
            time.sleep(0.25)
        wearable.wait_acknowledged()
        assert "event=mqtt_disconnected" in edge.log.read_text()
        with running_mosquitto(police_dir, police.port, durable=True):
            wait_for(lambda: len(set(sos_seqs(consumer))) >= wearable.seq, 60, "the backlog at the police")
            wearable.press()
            wait_for(lambda: len(set(sos_seqs(consumer))) == wearable.seq, 20, "a press after the outage")
        wearable.close()
    shown = escalations(consumer)
    assert sorted(sos_seqs(consumer)) == list(range(wearable.seq)), "nothing lost, nothing twice"
    sequences = [e.sequence for e in shown]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences), "in order per site"


def test_queued_presses_survive_a_site_broker_crash_while_the_edge_is_down(tmp_path, spawn, recorder):
    broker_dir = tmp_path / "site"
    broker_dir.mkdir()
    with running_mosquitto(tmp_path / "police") as police:
        consumer = recorder(police, topics.police_escalations_filter())
        with running_mosquitto(broker_dir, durable=True) as site:
            edge = EdgeProcess(spawn, Path("firmware_configs/sites/school.yaml").resolve(), site, police, tmp_path / "outbox.db", tmp_path / "edge.log")
            edge.start()  # the edge's persistent session now exists on the site broker
            edge.stop()
            wearable = Wearable(site)
            wearable.press(50)
            wearable.wait_acknowledged()
            wearable.close()
            database = broker_dir / "mosquitto.db"
            queued = [guardlink_wearable.sos_payload(seq) for seq in range(50)]
            # autosave_on_changes writes right after each change: wait until the file holds every press.
            wait_for(lambda: database.exists() and all(p in database.read_bytes() for p in queued), 10, "the broker to save its queue")
            broker_pid = next(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_mosquitto_on(p, site.port))
            os.kill(broker_pid, signal.SIGKILL)  # a crash: no orderly save on the way down
        with running_mosquitto(broker_dir, site.port, durable=True):
            edge.start()
            wait_for(lambda: len(set(sos_seqs(consumer))) >= 50, 30, "the queued presses at the police")
    assert sorted(sos_seqs(consumer)) == list(range(50))


def _is_mosquitto_on(proc_dir: Path, port: int) -> bool:
    try:
        cmdline = (proc_dir / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"mosquitto" in part for part in cmdline[:1]) and any(f"mosquitto-{port}.conf".encode() in part for part in cmdline)


async def test_unwritable_outbox_raises_the_alarm_and_the_site_still_dispatches(school, unwritable_dir, mosquitto, recorder, caplog):
    caplog.set_level(logging.ERROR, logger="gateway.outbox")
    police = recorder(mosquitto, topics.police_escalations_filter())
    offers = recorder(mosquitto, topics.guard_offer(SITE, "+"))
    async with running_edge(school, mosquitto, mosquitto, unwritable_dir / "outbox.db") as node:
        assert node.status()["health"]["outbox"].startswith("failing")
        with SiteSimulator(school, mosquitto, seed=11) as sim:
            await asyncio.to_thread(sim.report_positions)
            await wait_until(lambda: all(s.point for s in node.board.guards.values()), what="guard positions")
            await asyncio.to_thread(sim.press, "btn-gate")
            await wait_until(lambda: offers.payloads() and police.payloads(), what="the offer to a guard and the police escalation")
    assert any("event=outbox_failing" in r.getMessage() for r in caplog.records)
    assert json.loads(offers.payloads()[0])["escalation"] == Escalation.from_json(police.payloads()[0]).id


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_a_silent_wearable_raises_device_offline_and_its_return_resolves_it(school: SiteConfig, mosquitto, recorder, tmp_path):
    config = school.model_copy(update={"supervision": school.supervision.model_copy(update={"check_every_s": 0.02})})
    clock = FakeClock()
    police = recorder(mosquitto, topics.police_escalations_filter())
    async with running_edge(config, mosquitto, mosquitto, tmp_path / "outbox.db", clock=clock) as node:
        with SiteSimulator(config, mosquitto, seed=2) as sim:
            clock.now += 80
            await asyncio.to_thread(sim.publish_raw, topics.native_device_uplink(SITE, "wear-li"), guardlink_wearable.position_payload(0, sim.home, 5))
            await wait_until(lambda: node.supervisor.devices["wear-li"].last_seen == clock.now, what="wear-li heard")
            clock.now += 11  # 91 s: three 30 s heartbeats missed by wear-zhang and wear-wang, not by wear-li
            await wait_until(lambda: len(police.payloads()) >= 2, what="device-offline escalations")
            await asyncio.sleep(0.2)
            offline = {e.incident.device: e for e in escalations(police)}
            assert set(offline) == {"wear-zhang", "wear-wang"}
            assert all(e.incident.kind == "device_offline" and e.status == "reported" for e in offline.values())
            await asyncio.to_thread(sim.publish_raw, topics.native_device_uplink(SITE, "wear-zhang"), guardlink_wearable.position_payload(0, sim.home, 5))
            await wait_until(lambda: len(police.payloads()) >= 3, what="the resolving revision")
    resolved = escalations(police)[-1]
    assert (resolved.id, resolved.revision, resolved.status) == (offline["wear-zhang"].id, 2, "resolved")


async def test_last_will_low_battery_and_tamper_become_incidents(school, mosquitto, recorder, tmp_path):
    police = recorder(mosquitto, topics.police_escalations_filter())
    async with running_edge(school, mosquitto, mosquitto, tmp_path / "outbox.db"):
        with SiteSimulator(school, mosquitto) as sim:
            await asyncio.to_thread(sim.publish_raw, "zigbee2mqtt/btn-hall/availability", b'{"state": "offline"}')
            await asyncio.to_thread(sim.publish_raw, "zigbee2mqtt/btn-gate", b'{"battery": 9, "linkquality": 40}')
            await asyncio.to_thread(sim.publish_raw, "zigbee2mqtt/btn-hall/availability", b"online")
            await asyncio.to_thread(sim.publish_raw, "zigbee2mqtt/Yard Button", b'{"tamper": true}')
            await wait_until(lambda: len(police.payloads()) >= 4, what="four escalations")
    shown = [(e.incident.device, e.incident.kind.value, e.status.value, e.revision) for e in escalations(police)]
    assert shown == [
        ("btn-hall", "device_offline", "reported", 1),
        ("btn-gate", "low_battery", "reported", 1),
        ("btn-hall", "device_offline", "resolved", 2),
        ("btn-yard", "tamper", "no_guard_available", 1),
    ]


def test_police_see_a_killed_site_go_offline_and_come_back_with_its_backlog(tmp_path, spawn, mosquitto):
    notices: list[SiteNotice] = []
    loop_ready = threading.Event()

    def watch() -> None:
        async def main() -> None:
            watcher = PoliceWatcher(mosquitto, lambda e: None, on_site=notices.append)
            task = asyncio.create_task(watcher.run())
            await watcher.ready.wait()
            loop_ready.set()
            await asyncio.to_thread(stop.wait)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        asyncio.run(main())

    stop = threading.Event()
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        assert loop_ready.wait(10)
        edge = EdgeProcess(spawn, Path("firmware_configs/sites/school.yaml").resolve(), mosquitto, mosquitto, tmp_path / "outbox.db", tmp_path / "edge.log")
        edge.start()
        edge.kill_9()
        wait_for(lambda: any(not n.online for n in notices), 10, "site offline at the police")
        edge.start()
        wait_for(lambda: any(n.online for n in notices), 10, "site back at the police")
    finally:
        stop.set()
        thread.join(10)
    offline, back = [n for n in notices if not n.online][0], [n for n in notices if n.online][0]
    assert offline.site == back.site == f"xincheng/{SITE}"
    assert "Last Will" in offline.detail and back.backlog == 0


@pytest.mark.parametrize("missed", [3])
def test_site_monitor_raises_offline_after_missed_heartbeats_without_a_last_will(missed):
    from gateway.police import SiteMonitor

    monitor = SiteMonitor(missed=missed)
    assert monitor.status("d/s", {"state": "online", "every_s": 10, "backlog": 0}, now=100.0) is None
    assert monitor.overdue(now=129.0) == []
    [notice] = monitor.overdue(now=131.0)
    assert not notice.online and "no heartbeat" in notice.detail
    back = monitor.status("d/s", {"state": "online", "every_s": 10, "backlog": 7}, now=140.0)
    assert back.online and back.backlog == 7
