"""Chaos: presses from several wearables while the edge, the site broker and the police broker are killed -9
at random, overlapping moments. Every press reaches the police exactly once.

Each run is seeded; a failure names its seed. `GUARDLINK_CHAOS_SEEDS=N` runs seeds 1..N (the suite runs 2),
`GUARDLINK_CHAOS_PRESSES` sets the presses per run (300).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from bench.servers import mosquitto_command, stop_process
from device_drivers import guardlink_wearable
from edge.embedded_broker import free_tcp_port
from guardlink import topics
from guardlink.models import Escalation
from guardlink.siteconfig import BrokerUrl

from conftest import GUARDLINK, SCHOOL, Recorder

SITE = "hohhot-no3-primary"
WEARABLES = ("wear-li", "wear-zhang", "wear-wang")
PRESSES = int(os.environ.get("GUARDLINK_CHAOS_PRESSES", "300"))  # in all, at RATE_PER_S
RATE_PER_S = 50.0
BOOT = 7
RESEND_S = 2.0  # the firmware resends an alarm the edge has not confirmed after this long, then backs off
RESEND_MAX_S = 30.0
SEEDS = range(1, int(os.environ.get("GUARDLINK_CHAOS_SEEDS", "2")) + 1)


class Restartable:
    """A process that can be killed -9 and started again on the same port and data."""

    def __init__(self, name: str, command: Callable[[], list[str]], log: Path) -> None:
        self.name, self.command, self.log = name, command, log
        self.proc: subprocess.Popen | None = None
        self.kills = 0
        self._turn = threading.Lock()  # one outage at a time: a second one waits for the first restart

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)

    def outage(self, down_s: float) -> None:
        """Kill -9, stay down for `down_s`, start again."""
        with self._turn:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.kills += 1
            time.sleep(down_s)
            self.start()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class Wearable:
    """A wearable as the native firmware behaves: SOS at QoS 1 with a fixed boot and a rising seq, each resent every
    RESEND_S, backing off, until the edge confirms it stored it (a broker killed right after its PUBACK may have lost it)."""

    def __init__(self, broker: BrokerUrl, device: str) -> None:
        self.topic = topics.native_device_uplink(SITE, device)
        self.ack_topic = topics.native_device_ack(SITE, device)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"chaos-{device}", clean_session=False)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.on_connect = lambda client, userdata, flags, reason, properties: client.subscribe(self.ack_topic, qos=1)
        self.client.on_message = self._confirmed
        self.client.connect_async(broker.host, broker.port)
        self.client.loop_start()
        self.seq = 0
        self.unconfirmed: dict[int, tuple[float, float]] = {}  # seq -> (when to resend, the wait after that)
        self.lock = threading.Lock()

    def _confirmed(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        doc = json.loads(message.payload)
        if doc.get("boot") == BOOT:
            with self.lock:
                self.unconfirmed.pop(doc["seq"], None)

    def press(self) -> None:
        with self.lock:
            self.unconfirmed[self.seq] = (time.monotonic() + RESEND_S, RESEND_S * 2)
        self.client.publish(self.topic, guardlink_wearable.sos_payload(self.seq, boot=BOOT), qos=1)
        self.seq += 1

    def resend_due(self) -> None:
        now = time.monotonic()
        with self.lock:
            due = [seq for seq, (at, _) in self.unconfirmed.items() if at <= now]
            for seq in due:  # backing off, as firmware must: a storm of resends would bury the edge it waits for
                wait = self.unconfirmed[seq][1]
                self.unconfirmed[seq] = (now + wait, min(wait * 2, RESEND_MAX_S))
        for seq in due:
            self.client.publish(self.topic, guardlink_wearable.sos_payload(seq, boot=BOOT), qos=1)

    def all_confirmed(self) -> bool:
        self.resend_due()
        with self.lock:
            return not self.unconfirmed

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def chaos_plan(rng: random.Random, span_s: float) -> list[tuple[float, str, float]]:
    """(when, what, down for): the edge killed four times, each broker once, at independent moments that may overlap."""
    plan = [(rng.uniform(0.3, span_s), "edge", rng.uniform(0.5, 3.0)) for _ in range(4)]
    plan += [(rng.uniform(0.3, span_s), broker, rng.uniform(0.5, 3.0)) for broker in ("site", "police")]
    return sorted(plan)


def press_ids(recorder: Recorder) -> dict[tuple[str, int], set[str]]:
    """Every (device, seq) the police saw an escalation for, with the escalation ids."""
    ids: dict[tuple[str, int], set[str]] = defaultdict(set)
    for payload in recorder.payloads():
        escalation = Escalation.from_json(payload)
        if escalation.incident.kind == "sos":
            ids[(escalation.incident.device, escalation.incident.device_seq)].add(escalation.id)
    return ids


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_press_reaches_the_police_exactly_once_through_random_kills(tmp_path, seed):
    rng = random.Random(seed)
    site_port, police_port = free_tcp_port(), free_tcp_port()
    site_url, police_url = BrokerUrl(host="127.0.0.1", port=site_port), BrokerUrl(host="127.0.0.1", port=police_port)
    for part in ("site", "police"):
        (tmp_path / part).mkdir()
    procs = {
        "site": Restartable("site", lambda: mosquitto_command(tmp_path / "site", site_port, durable=True), tmp_path / "site.log"),
        "police": Restartable("police", lambda: mosquitto_command(tmp_path / "police", police_port, durable=True), tmp_path / "police.log"),
        "edge": Restartable(
            "edge",
            lambda: [*GUARDLINK, "edge", "--config", str(SCHOOL), "--broker", str(site_url), "--police-broker", str(police_url),
                     "--outbox", str(tmp_path / "outbox.db")],
            tmp_path / "edge.log",
        ),
    }
    for proc in procs.values():
        proc.start()
    plan = chaos_plan(rng, PRESSES / RATE_PER_S)
    wearables: list[Wearable] = []
    consumer: Recorder | None = None
    try:
        wait_for(lambda: _listening(site_port) and _listening(police_port), 10, "both brokers")
        consumer = Recorder(police_url, topics.police_escalations_filter(), client_id="chaos-police")
        wait_for(lambda: "event=edge_ready" in (tmp_path / "edge.log").read_text(), 20, "the edge")
        wearables = [Wearable(site_url, device) for device in WEARABLES]
        chaos = [threading.Timer(at, procs[what].outage, (down,)) for at, what, down in plan]
        for timer in chaos:
            timer.start()
        started = time.monotonic()
        for n in range(PRESSES):
            time.sleep(max(0.0, started + n / RATE_PER_S - time.monotonic()))
            wearables[n % len(wearables)].press()
            wearables[n % len(wearables)].resend_due()
        for timer in chaos:
            timer.join()
        wait_for(lambda: all([w.all_confirmed() for w in wearables]), 90, "the edge to confirm every press to its wearable")
        expected = {(w.topic.split("/")[-2], seq) for w in wearables for seq in range(w.seq)}
        wait_for(lambda: expected <= set(press_ids(consumer)), 90, "every press at the police")
        time.sleep(1.0)  # a duplicate escalation would come right behind the last press
        seen = press_ids(consumer)
        missing = sorted(expected - set(seen))
        doubled = sorted(key for key, ids in seen.items() if len(ids) > 1)
        assert not missing and not doubled, f"seed {seed}: {len(missing)} missing {missing[:10]}, {len(doubled)} escalated twice {doubled[:10]}"
        assert sum(p.kills for p in procs.values()) == len(plan), f"seed {seed}: every planned kill happened"
    except AssertionError as exc:
        raise AssertionError(f"chaos seed {seed} (plan {plan}): {exc}") from None
    finally:
        for wearable in wearables:
            wearable.close()
        if consumer is not None:
            consumer.close()
        for proc in procs.values():
            proc.stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
