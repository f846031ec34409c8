"""The district broker's generated configuration, run on a real mosquitto: a site speaks only for itself."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.hub import revision
from bench.servers import _wait_listening, mosquitto_binary, stop_process
from edge.embedded_broker import free_tcp_port
from guardlink import topics
from tests.conftest import GUARDLINK, REPO

DISTRICT_YAML = """\
district: {id: bench, name: Bench district}
communities:
  - {id: c1, name: One, chief: Chief, outline: [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], sites: [s1]}
  - {id: c2, name: Two, chief: Chief, outline: [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], sites: [s2]}
"""


@pytest.fixture
def district_broker(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """`guardlink broker-config --district` and mosquitto running it; yields its port and the accounts' passwords."""
    district = tmp_path / "district.yaml"
    district.write_text(DISTRICT_YAML)
    port, out = free_tcp_port(), tmp_path / "broker"
    done = subprocess.run([*GUARDLINK, "broker-config", "--district", str(district), "--out", str(out), "--bind", "127.0.0.1", "--port", str(port)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    passwords = dict(line.split() for line in (out / "credentials.txt").read_text().splitlines() if not line.startswith("#"))
    assert set(passwords) == {"hub", "s1", "s2"} and (out / "credentials.txt").stat().st_mode & 0o077 == 0
    conf = out / "mosquitto.conf"
    if os.geteuid() == 0:  # as root mosquitto drops to its own user, which cannot enter the test's private tmp dir
        conf.write_text("user root\n" + conf.read_text())
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=(tmp_path / "mosquitto.log").open("w"))
    try:
        assert _wait_listening(proc, port, 10), (tmp_path / "mosquitto.log").read_text()
        yield port, passwords
    finally:
        stop_process(proc)


class Login:
    """An MQTT 5 client logged in as one account: what it receives, and the broker's answer to each publish and subscribe."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.received: list[str] = []
        self.published: dict[int, mqtt.ReasonCode] = {}
        self.subscribed: dict[int, list[mqtt.ReasonCode]] = {}
        self._changed = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
        self.client.on_message = lambda c, u, m: self._note(lambda: self.received.append(m.topic))
        self.client.on_publish = lambda c, u, mid, rc, p: self._note(lambda: self.published.__setitem__(mid, rc))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._note(lambda: self.subscribed.__setitem__(mid, rcs))
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(10), f"{user} could not log in"

    def _note(self, change: object) -> None:
        with self._changed:
            change()
            self._changed.notify_all()

    def wait(self, condition: object, what: str) -> None:
        with self._changed:
            assert self._changed.wait_for(condition, timeout=10), f"timed out waiting for {what}"

    def publish(self, topic: str, payload: bytes) -> mqtt.ReasonCode:
        mid = self.client.publish(topic, payload, qos=1, properties=Properties(PacketTypes.PUBLISH)).mid
        self.wait(lambda: mid in self.published, f"the PUBACK of {topic}")
        return self.published[mid]

    def subscribe(self, topic_filter: str) -> list[mqtt.ReasonCode]:
        _, mid = self.client.subscribe(topic_filter, qos=1)
        self.wait(lambda: mid in self.subscribed, f"the SUBACK of {topic_filter}")
        return self.subscribed[mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_site_spoofing_another_sites_topic_is_refused_by_the_broker(district_broker) -> None:
    port, passwords = district_broker
    hub, s1 = Login(port, "hub", passwords["hub"]), Login(port, "s1", passwords["s1"])
    try:
        for topic_filter in (topics.police_escalations("bench", "+"), topics.police_site_status("bench", "+"), topics.police_guards("bench", "+")):
            assert not any(rc.is_failure for rc in hub.subscribe(topic_filter))
        # reading: a site gets its own receipts, never another's (mosquitto 2.0 checks read access per message)
        s1.subscribe(topics.police_receipts("bench", "s2"))
        s1.subscribe(topics.police_receipts("bench", "s1"))
        assert not hub.publish(topics.police_receipts("bench", "s2"), b"for s2").is_failure
        assert not hub.publish(topics.police_receipts("bench", "s1"), b"for s1").is_failure
        s1.wait(lambda: topics.police_receipts("bench", "s1") in s1.received, "the site's own receipt")
        assert s1.received == [topics.police_receipts("bench", "s1")]
        # writing: s1 on s2's topic is refused (and mosquitto drops the connection; paho logs in again)
        spoof = s1.publish(topics.police_escalations("bench", "s2"), revision("s2", "forged", 1, 1).to_json())
        assert spoof.is_failure and spoof.getName() == "Not authorized"
        assert s1.publish(topics.police_receipts("bench", "s1"), b"{}").is_failure  # receipts come from the hub only
        assert not s1.publish(topics.police_escalations("bench", "s1"), revision("s1", "genuine", 1, 1).to_json()).is_failure
        hub.wait(lambda: topics.police_escalations("bench", "s1") in hub.received, "the site's own escalation at the hub")
        assert hub.received == [topics.police_escalations("bench", "s1")]  # the forged one never reached the hub
    finally:
        hub.close()
        s1.close()
