"""The generated mosquitto configuration, run for real: each account can do its own job and nothing else."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from bench.servers import _wait_listening, mosquitto_binary, stop_process
from device_drivers import guardlink_wearable, zigbee2mqtt
from edge.embedded_broker import free_tcp_port
from guardlink import topics
from guardlink.models import Escalation
from guardlink.siteconfig import BrokerUrl

from conftest import GUARDLINK, REPO, SCHOOL, running_edge, wait_until

SITE = "hohhot-no3-primary"


@pytest.fixture
def locked_broker(tmp_path: Path) -> Iterator[tuple[BrokerUrl, dict[str, str]]]:
    """`guardlink broker-config` for the school, and mosquitto running it; yields the address and the passwords."""
    port = free_tcp_port()
    out = tmp_path / "broker"
    result = subprocess.run(
        [*GUARDLINK, "broker-config", str(SCHOOL), "--out", str(out), "--bind", "127.0.0.1", "--port", str(port)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    passwords = dict(line.split() for line in (out / "credentials.txt").read_text().splitlines() if not line.startswith("#"))
    assert (out / "credentials.txt").stat().st_mode & 0o077 == 0 and (out / "passwd").stat().st_mode & 0o007 == 0
    conf = out / "mosquitto.conf"
    if os.geteuid() == 0:  # as root mosquitto drops to its own user, which cannot read the 0600 files; keep root for the test
        conf.write_text("user root\n" + conf.read_text())
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=(tmp_path / "mosquitto.log").open("w"))
    try:
        assert _wait_listening(proc, port, 10), (tmp_path / "mosquitto.log").read_text()
        yield BrokerUrl(host="127.0.0.1", port=port), passwords
    finally:
        stop_process(proc)


class Account:
    """A paho client logged in as one broker account, recording what it receives."""

    def __init__(self, broker: BrokerUrl, user: str | None, password: str | None) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.result: mqtt.ReasonCode | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.dropped = threading.Event()
        self.client.on_disconnect = lambda c, u, flags, reason, props: self.dropped.set()
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self._connected.wait(10)

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        self.result = reason
        self._connected.set()

    @property
    def accepted(self) -> bool:
        return self.result is not None and not self.result.is_failure

    def subscribe(self, *filters: str) -> None:
        self._subscribed.clear()
        self.client.subscribe([(f, 1) for f in filters])
        assert self._subscribed.wait(10)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def attempt(self, topic: str, payload: bytes) -> None:
        """Publish something the ACL should deny; returns once the broker has dealt with it (acked or dropped us)."""
        info = self.client.publish(topic, payload, qos=1)
        asyncio.run(wait_until(lambda: info.is_published() or self.dropped.is_set(), what="the broker's answer"))

    def topics(self) -> list[str]:
        return [t for t, _ in self.received]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for_topic(account: Account, topic: str) -> None:
    asyncio.run(wait_until(lambda: topic in account.topics(), what=f"{topic} at {account}"))


def test_anonymous_clients_and_wrong_passwords_are_refused(locked_broker):
    broker, passwords = locked_broker
    anonymous, wrong, right = Account(broker, None, None), Account(broker, "wear-li", "not-the-password"), Account(broker, "wear-li", passwords["wear-li"])
    try:
        assert not anonymous.accepted and not wrong.accepted and right.accepted
        assert anonymous.result is not None and wrong.result is not None, "refused, not timed out"
    finally:
        for a in (anonymous, wrong, right):
            a.close()


def test_a_device_publishes_only_its_own_topics_and_reads_only_its_own_offers(locked_broker):
    broker, passwords = locked_broker
    edge, li = Account(broker, "edge", passwords["edge"]), Account(broker, "wear-li", passwords["wear-li"])
    try:
        edge.subscribe(f"guardlink/{SITE}/#")
        li.subscribe(f"guardlink/{SITE}/guards/+/offer")
        # wear-li pretends to be wear-zhang (mosquitto denies it, and drops the connection), then speaks for itself.
        for topic, payload in ((topics.native_device_uplink(SITE, "wear-zhang"), guardlink_wearable.sos_payload(1)),
                               (topics.guard_reply(SITE, "g-zhang"), b'{"answer": "accept"}')):
            impostor = Account(broker, "wear-li", passwords["wear-li"])
            impostor.attempt(topic, payload)
            impostor.close()
        li.publish(topics.native_device_uplink(SITE, "wear-li"), guardlink_wearable.sos_payload(2))
        wait_for_topic(edge, topics.native_device_uplink(SITE, "wear-li"))
        assert topics.native_device_uplink(SITE, "wear-zhang") not in edge.topics()
        assert topics.guard_reply(SITE, "g-zhang") not in edge.topics()
        # The edge offers jobs to g-zhang, then to g-li: wear-li sees only its own guard's.
        edge.publish(topics.guard_offer(SITE, "g-zhang"), b"{}")
        edge.publish(topics.guard_offer(SITE, "g-li"), b"{}")
        wait_for_topic(li, topics.guard_offer(SITE, "g-li"))
        assert li.topics() == [topics.guard_offer(SITE, "g-li")]
    finally:
        edge.close()
        li.close()


def test_the_zigbee_bridge_is_confined_to_its_base_topic(locked_broker):
    broker, passwords = locked_broker
    edge, bridge = Account(broker, "edge", passwords["edge"]), Account(broker, "zigbee2mqtt", passwords["zigbee2mqtt"])
    try:
        edge.subscribe("zigbee2mqtt/+", f"guardlink/{SITE}/#")
        impostor = Account(broker, "zigbee2mqtt", passwords["zigbee2mqtt"])
        impostor.attempt(topics.native_device_uplink(SITE, "wear-li"), guardlink_wearable.sos_payload(1))
        impostor.close()
        bridge.publish("zigbee2mqtt/btn-gate", zigbee2mqtt.button_payload("single"))
        wait_for_topic(edge, "zigbee2mqtt/btn-gate")
        assert edge.topics() == ["zigbee2mqtt/btn-gate"]
    finally:
        edge.close()
        bridge.close()


async def test_the_edge_still_sees_everything_it_needs(locked_broker, school, police_mosquitto, recorder, tmp_path):
    broker, passwords = locked_broker
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    edge_url = BrokerUrl(host=broker.host, port=broker.port, username="edge", password=passwords["edge"])
    async with running_edge(school, edge_url, police_mosquitto, tmp_path / "outbox.db") as node:
        wearables = [Account(broker, d, passwords[d]) for d in ("wear-li", "wear-zhang", "wear-wang")]
        bridge = Account(broker, "zigbee2mqtt", passwords["zigbee2mqtt"])
        try:
            for i, account in enumerate(wearables):
                device = ("wear-li", "wear-zhang", "wear-wang")[i]
                point = school.site.location.point()
                await asyncio.to_thread(account.publish, topics.native_device_uplink(SITE, device), guardlink_wearable.position_payload(0, point, 5))
            await wait_until(lambda: sum(s.point is not None for s in node.board.guards.values()) == 3, what="three guards placed")
            await asyncio.to_thread(bridge.publish, "zigbee2mqtt/btn-gate", zigbee2mqtt.button_payload("single"))
            await wait_until(lambda: police.payloads(), what="the escalation")
        finally:
            for account in [*wearables, bridge]:
                account.close()
    escalation = Escalation.from_json(police.payloads()[0])
    assert escalation.incident.device == "btn-gate" and escalation.assignments
    assert node.intake.rejections.total == 0


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A CA-less self-signed certificate for 127.0.0.1 (the certificate is its own CA)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    return cert_path, key_path


def test_certificates_add_a_tls_listener_that_authenticates_too(tmp_path):
    import ssl

    cert, key = self_signed(tmp_path)
    port, tls_port = free_tcp_port(), free_tcp_port()
    out = tmp_path / "broker"
    result = subprocess.run(
        [*GUARDLINK, "broker-config", str(SCHOOL), "--out", str(out), "--bind", "127.0.0.1", "--port", str(port),
         "--tls-ca", str(cert), "--tls-cert", str(cert), "--tls-key", str(key), "--tls-port", str(tls_port)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    passwords = dict(line.split() for line in (out / "credentials.txt").read_text().splitlines() if not line.startswith("#"))
    conf = out / "mosquitto.conf"
    if os.geteuid() == 0:
        conf.write_text("user root\n" + conf.read_text())
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=(tmp_path / "log").open("w"))
    try:
        assert _wait_listening(proc, tls_port, 10), (tmp_path / "log").read_text()
        connected = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.tls_set(ca_certs=str(cert), cert_reqs=ssl.CERT_REQUIRED)
        client.username_pw_set("installer", passwords["installer"])
        client.on_connect = lambda c, u, f, reason, p: connected.set() if not reason.is_failure else None
        client.connect("127.0.0.1", tls_port)
        client.loop_start()
        try:
            assert connected.wait(10), "TLS connection with the installer's password"
        finally:
            client.disconnect()
            client.loop_stop()
    finally:
        stop_process(proc)


def test_half_the_tls_options_is_an_error(tmp_path):
    result = subprocess.run(
        [*GUARDLINK, "broker-config", str(SCHOOL), "--out", str(tmp_path), "--tls-cert", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert result.returncode == 2 and "--tls-ca, --tls-cert and --tls-key together" in result.stderr
