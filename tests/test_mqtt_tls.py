"""MQTT over TLS against a real mosquitto TLS listener: the police uplink delivers through it; a wrong CA, an expired
certificate, a missing client certificate and a wrong password are refused. Certificates are made here."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.servers import running_mosquitto
from device_drivers import guardlink_wearable
from gateway.connection import Client, MqttError
from guardlink import topics
from guardlink.siteconfig import BrokerUrl, parse_site

from conftest import running_edge

SITE = """
site: {id: tls-site, name: TLS site, district: d1, location: {lat: 40.8421, lon: 111.7512}}
police: {broker: "mqtt://127.0.0.1:1"}
devices:
  - {id: wear-a, driver: guardlink_wearable}
guards:
  - {id: g-a, name: Guard A, wearable: wear-a}
"""


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    expired_cert: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name)).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], key: ec.EllipticCurvePrivateKey, name: str, *, server: bool, expired: bool = False
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    start, end = (now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if expired else (now - dt.timedelta(hours=1), now + dt.timedelta(days=30))
    builder = (
        x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca[0].subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(ca[1], hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A police CA with a broker and an edge certificate, an unrelated CA, and an expired broker certificate."""
    d = tmp_path_factory.mktemp("pki")
    ca, other = _ca("guardlink test police CA"), _ca("some other CA")
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    return Pki(
        ca=_write_cert(d / "ca.pem", ca[0]),
        server_cert=_write_cert(d / "broker.crt", _issue(ca, server_key, "127.0.0.1", server=True)),
        server_key=_write_key(d / "broker.key", server_key),
        client_cert=_write_cert(d / "edge.crt", _issue(ca, client_key, "edge-tls-site", server=False)),
        client_key=_write_key(d / "edge.key", client_key),
        other_ca=_write_cert(d / "other-ca.pem", other[0]),
        expired_cert=_write_cert(d / "expired.crt", _issue(ca, server_key, "127.0.0.1", server=True, expired=True)),
    )


def _tls_broker(tmp_path: Path, pki: Pki, *, server_cert: Path | None = None) -> Iterator[BrokerUrl]:
    """mosquitto with only a TLS listener that wants a client certificate from the police CA and a password."""
    passwords = tmp_path / "passwords"
    passwords.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "edge", "s3cret-pw"], check=True, capture_output=True)
    extra = (
        f"cafile {pki.ca}\ncertfile {server_cert or pki.server_cert}\nkeyfile {pki.server_key}\nrequire_certificate true\n"
        f"allow_anonymous false\npassword_file {passwords}\n"
    )
    with running_mosquitto(tmp_path / "tls-broker", extra=extra) as plain:
        yield plain


@pytest.fixture
def tls_police(tmp_path: Path, pki: Pki) -> Iterator[BrokerUrl]:
    yield from _tls_broker(tmp_path, pki)


def _url(broker: BrokerUrl, pki: Pki, *, ca: Path | None = None, query: str = "") -> BrokerUrl:
    return BrokerUrl.parse(
        f"mqtts://edge@{broker.host}:{broker.port}?ca={ca or pki.ca}&cert={pki.client_cert}&key={pki.client_key}{query}"
    )


async def test_police_uplink_delivers_escalations_over_tls(mosquitto: BrokerUrl, tls_police: BrokerUrl, pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "police-password").write_text("s3cret-pw\n")
    police = _url(tls_police, pki, query=f"&password_file={tmp_path / 'police-password'}")
    config = parse_site(SITE, "site.yaml")
    async with Client(police, identifier="police-witness") as witness:
        await witness.subscribe(topics.police_escalations("d1", "tls-site"), qos=1)
        async with running_edge(config, mosquitto, police, tmp_path / "outbox.db") as node, Client(mosquitto) as wearable:
            await wearable.publish(topics.native_device_uplink("tls-site", "wear-a"), guardlink_wearable.sos_payload(1), qos=1)
            async with asyncio.timeout(10):
                async for message in witness.messages:
                    assert b'"kind":"sos"' in message.payload.replace(b" ", b"")
                    break
            assert node.uplink.connected


async def test_a_broker_certificate_from_another_ca_is_refused(tls_police: BrokerUrl, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLICE_PW", "s3cret-pw")
    with pytest.raises(MqttError, match="certificate verify failed"):
        async with Client(_url(tls_police, pki, ca=pki.other_ca, query="&password_env=POLICE_PW")):
            pass


async def test_an_expired_broker_certificate_is_refused(tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLICE_PW", "s3cret-pw")
    for broker in _tls_broker(tmp_path, pki, server_cert=pki.expired_cert):
        with pytest.raises(MqttError, match="certificate has expired"):
            async with Client(_url(broker, pki, query="&password_env=POLICE_PW")):
                pass


async def test_the_broker_requires_the_password(tls_police: BrokerUrl, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MqttError, match="refused the connection .* check the username and password"):
        async with Client(_url(tls_police, pki)):  # no password
            pass
    monkeypatch.setenv("POLICE_PW", "wrong")
    with pytest.raises(MqttError, match="refused the connection"):
        async with Client(_url(tls_police, pki, query="&password_env=POLICE_PW")):
            pass
    monkeypatch.setenv("POLICE_PW", "s3cret-pw")
    async with Client(_url(tls_police, pki, query="&password_env=POLICE_PW")) as client:
        await client.publish("guardlink/test", b"in", qos=1)


async def test_the_broker_requires_a_client_certificate(tls_police: BrokerUrl, pki: Pki) -> None:
    no_cert = BrokerUrl.parse(f"mqtts://edge:s3cret-pw@{tls_police.host}:{tls_police.port}?ca={pki.ca}")
    with pytest.raises(MqttError):
        async with Client(no_cert) as client:
            await client.publish("guardlink/test", b"in", qos=1)
