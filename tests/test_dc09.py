"""SIA DC-09: the codec, the event mapping, and the transmitter against a real receiver (pysiaalarm's) over TCP and UDP."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.dc09 import sia_receiver
from gateway import dc09
from gateway.dc09_codes import CODES, data, panel_event
from gateway.dc09_transmitter import CentreLink, OutboxSource
from gateway.outbox import Outbox
from guardlink.alarmcentre import AlarmCentre, Dc09Format
from guardlink.models import Escalation, EscalationStatus, Incident, IncidentKind, Location, Severity, SiteRef, iso
from guardlink.siteconfig import parse_site
from guardlink.yamlconfig import ConfigError

from conftest import running_mosquitto, wait_until

pysiaalarm = pytest.importorskip("pysiaalarm")
ADM_MAPPING = pytest.importorskip("pysiaalarm.data.adm_mapping").ADM_MAPPING

ACCOUNT = "1A2B"
KEY_128 = "guardlink-key-16"  # pysiaalarm (like Home Assistant) takes the key as 16/24/32 characters
KEY_256 = "guardlink-aes-256-test-key-32chr"
SITE = SiteRef(id="school", name="School", district="d1", location=Location(lat=40.84, lon=111.75))


def revision(sequence: int, number: int = 1, kind: IncidentKind = IncidentKind.PANIC, status: EscalationStatus = EscalationStatus.DISPATCHED,
             escalation_id: str | None = None, device: str = "btn-gate", guard: str | None = None) -> Escalation:
    now = time.time()
    return Escalation(
        id=escalation_id or f"esc-{sequence}", revision=number, sequence=sequence, site=SITE,
        incident=Incident(kind=kind, severity=Severity.CRITICAL, device=device, location=Location(lat=40.84, lon=111.75),
                          raised_by_guard=guard, detected_at=iso(now)),
        assignments=[], status=status, issued_at=iso(now),
    )


def centre(port: int, protocol: str = "tcp", fmt: Dc09Format = Dc09Format.SIA_DCS, key: str | None = None, **settings: object) -> AlarmCentre:
    return AlarmCentre(
        id="arc", host="127.0.0.1", port=port, protocol=protocol, format=fmt, account=ACCOUNT, receiver="12", line="3",
        key=key.encode().hex() if key else None, **{"ack_timeout_s": 0.5, "retry_max_s": 0.5, "supervision_s": 0, **settings},
    )


async def store(outbox: Outbox, *revisions: Escalation) -> None:
    await asyncio.gather(*(outbox.append(r) for r in revisions))


class Running:
    """A CentreLink over a real outbox, running in this loop."""

    def __init__(self, tmp_path: Path, alarm_centre: AlarmCentre, clock=time.time) -> None:
        self.outbox = Outbox(tmp_path / "outbox.db", receipt_timeout_s=None)
        self.link = CentreLink(alarm_centre, OutboxSource(self.outbox), zones={"btn-gate": 5, "wear-li": 7}, users={"g-li": 2}, clock=clock)
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Running:
        await self.outbox.open()
        await self.link.open()
        self.task = asyncio.create_task(self.link.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.outbox.close()


# -- the codec ------------------------------------------------------------------------------------------------------


def test_crc_is_crc16_arc_and_frames_carry_length_crc_and_timestamp():
    assert dc09.crc16(b"123456789") == 0xBB3D  # the CRC-16/ARC check value
    message = dc09.frame("SIA-DCS", 9, dc09.Route("1a2b", "3", "12"), "#1A2B|Nri1/PA5", 1_800_000_000)
    assert message.startswith(b"\n") and message.endswith(b"\r")
    body = message[9:-1]
    assert body == b'"SIA-DCS"0009R12L3#1A2B[#1A2B|Nri1/PA5]_08:00:00,01-15-2027'
    assert message[1:5] == b"%04X" % dc09.crc16(body) and message[5:9] == b"0%03X" % len(body)


def test_encrypted_frames_pad_to_whole_blocks_without_separator_characters():
    key = KEY_256.encode()
    for length in range(40):
        message = dc09.frame("ADM-CID", 1, dc09.Route(ACCOUNT), "#1A2B|1120 01 " + "0" * length, time.time(), key)
        hex_part = message.split(b"[", 1)[1][:-1].decode()
        plain = dc09.decrypt(key, hex_part)
        pad, _, rest = plain.partition("|")
        assert not set(pad) & set("|[]") and rest.startswith("#1A2B|1120") and len(plain) % 16 == 0
        assert b'"*ADM-CID"' in message


def test_answers_with_a_bad_crc_or_length_are_refused():
    good = b'\nDFAE0014"ACK"0007R12L1#AAA[]\r'
    assert dc09.parse_response(good).acknowledges(7)
    with pytest.raises(dc09.DecodeError, match="CRC"):
        dc09.parse_response(good.replace(b"DFAE", b"DFAF"))
    with pytest.raises(dc09.DecodeError, match="bytes"):
        dc09.parse_response(good.replace(b"0014", b"0015"))
    with pytest.raises(dc09.DecodeError):
        dc09.parse_response(b"\n\r")


# -- the mapping ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CODES))
def test_every_mapped_kind_reads_back_as_its_event_in_both_formats(kind):
    from pysiaalarm import SIAAccount, SIAEvent

    accounts = {ACCOUNT: SIAAccount(ACCOUNT, None)}
    code = CODES[kind]
    alarm = panel_event(revision(1, kind=kind, guard="g-li"), 1, 5, 2)
    finished = panel_event(revision(2, 2, kind=kind, status=EscalationStatus.RESOLVED, escalation_id="esc-1"), 1, 5, 2)
    for event, sia in ((alarm, code.sia), (finished, code.sia_restore)):
        if sia is None:
            assert event is None, "a test has no restore"
            continue
        sia_event = SIAEvent.from_line(dc09.frame("SIA-DCS", 1, dc09.Route(ACCOUNT), data(event, ACCOUNT, Dc09Format.SIA_DCS), time.time()).decode().strip(), accounts)
        assert (sia_event.code, sia_event.ri, sia_event.message) == (sia, "1", "5")
        cid = SIAEvent.from_line(dc09.frame("ADM-CID", 1, dc09.Route(ACCOUNT), data(event, ACCOUNT, Dc09Format.ADM_CID), time.time()).decode().strip(), accounts)
        assert (cid.event_type, cid.event_qualifier, cid.ri) == (f"{code.contact_id:03d}", "3" if event.restore else "1", "005")
        if f"{code.contact_id:03d}" in ADM_MAPPING:
            assert cid.code == ADM_MAPPING[f"{code.contact_id:03d}"]["3" if event.restore else "1"]


def test_only_the_first_revision_and_the_one_that_ends_it_are_reported():
    assert panel_event(revision(1, 2, status=EscalationStatus.ASSIGNED), 1, 1, None) is None
    assert panel_event(revision(1, kind=IncidentKind.LEFT_POST), 1, 1, None) is None
    for final in (EscalationStatus.RESOLVED, EscalationStatus.FALSE_ALARM, EscalationStatus.CLOSED):
        assert panel_event(revision(1, 3, status=final), 1, 1, None).restore


# -- configuration --------------------------------------------------------------------------------------------------

SITE_YAML = """site: {id: s1, name: S, district: d1, location: {lat: 40.0, lon: 111.0}}
police: {broker: "mqtt://127.0.0.1:1883"}
devices:
  - {id: btn-1, driver: zigbee2mqtt}
alarm_centres:
  - id: arc
    host: arc.example
    port: 12000
    account: "%s"
    key: "%s"
    zones: {%s: 5}
"""


def test_alarm_centres_are_checked_with_file_line_and_column():
    good = parse_site(SITE_YAML % ("1A2B", "0" * 64, "btn-1"), "s.yaml")
    assert good.alarm_centres[0].secret_key() == bytes(32) and "0" * 64 not in repr(good.alarm_centres[0])
    with pytest.raises(ConfigError) as bad:
        parse_site(SITE_YAML % ("XYZ", "abc", "btn-9"), "s.yaml")
    messages = "\n".join(bad.value.messages)
    assert "s.yaml:9:14: alarm_centres.0.account: 'XYZ' is not 3-16 hex digits" in messages
    assert "s.yaml:10:10: alarm_centres.0.key: an AES key is 32, 48 or 64 hex digits (AES-128/192/256); this one has 3 characters" in messages
    assert "s.yaml:11:20: alarm centre 'arc' numbers 'btn-9', which is neither a device nor a camera" in messages
    assert "abc" not in messages.replace("'abc'", "")  # the key itself is never echoed


def test_a_key_from_the_environment_or_a_file(tmp_path, monkeypatch):
    key_file = tmp_path / "arc.key"
    key_file.write_text("ab" * 16 + "\n")
    assert AlarmCentre(id="a", host="h", port=1, account="123", key_file=str(key_file)).secret_key() == bytes([0xAB] * 16)
    monkeypatch.setenv("ARC_KEY", "cd" * 24)
    assert AlarmCentre(id="a", host="h", port=1, account="123", key_env="ARC_KEY").secret_key() == bytes([0xCD] * 24)
    with pytest.raises(ValueError, match="ARC_MISSING .*not set"):
        AlarmCentre(id="a", host="h", port=1, account="123", key_env="ARC_MISSING").secret_key()


# -- against the real receiver --------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
@pytest.mark.parametrize("fmt", list(Dc09Format))
@pytest.mark.parametrize("key", [None, KEY_128, KEY_256], ids=["plain", "aes128", "aes256"])
async def test_alarm_and_restore_reach_the_receiver(tmp_path, protocol, fmt, key):
    async with sia_receiver(protocol, {ACCOUNT: key}) as receiver, Running(tmp_path, centre(receiver.port, protocol, fmt, key)) as running:
        await store(running.outbox, revision(1, guard="g-li"), revision(2, 2, status=EscalationStatus.ASSIGNED, escalation_id="esc-1"),
                    revision(3, 3, status=EscalationStatus.RESOLVED, escalation_id="esc-1"))
        await wait_until(lambda: len(receiver.events) >= 2, 10, "alarm and restore at the receiver")
        await asyncio.sleep(0.2)
    assert [e.code for e in receiver.events] == ["PA", "PH"]
    assert {(e.account, e.receiver, e.line, e.encrypted) for e in receiver.events} == {(ACCOUNT, "R12", "L3", key is not None)}
    assert [e.sequence for e in receiver.events] == ["0001", "0002"]
    assert receiver.counts.valid_events == 2 and receiver.counts.error_crc == receiver.counts.error_format == 0
    if fmt is Dc09Format.SIA_DCS:
        assert (receiver.events[0].ri, receiver.events[0].message, receiver.events[0].id) == ("1", "5", "2")
    else:
        assert (receiver.events[0].event_type, receiver.events[0].partition, receiver.events[0].ri) == ("120", "01", "005")


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
async def test_a_nak_for_the_timestamp_resynchronises_the_clock_and_the_message_goes_again(tmp_path, protocol):
    behind = lambda: time.time() - 3600  # noqa: E731 - a transmitter whose clock is an hour late
    async with sia_receiver(protocol, {ACCOUNT: KEY_256}) as receiver, Running(tmp_path, centre(receiver.port, protocol, key=KEY_256), clock=behind) as running:
        await store(running.outbox, revision(1))
        await wait_until(lambda: receiver.events, 10, "the alarm after the resync")
    assert receiver.counts.error_timestamp == 1, "the first try was refused for its timestamp"
    assert [e.code for e in receiver.events] == ["PA"]
    assert running.link.stats.resyncs == 1 and abs(running.link.offset_s - 3600) < 5


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
async def test_silence_is_retried_with_the_same_sequence_until_acknowledged(tmp_path, protocol):
    async with sia_receiver(protocol, {ACCOUNT: None}) as receiver, Running(tmp_path, centre(receiver.port, protocol, ack_timeout_s=0.3)) as running:
        receiver.silence(2)
        await store(running.outbox, revision(1), revision(2))
        await wait_until(lambda: len(receiver.events) >= 2, 15, "both alarms after the silence")
        await asyncio.sleep(0.3)
    assert [(e.code, e.sequence) for e in receiver.events] == [("PA", "0001"), ("PA", "0002")], "each once, in order"
    assert running.link.stats.retries == 2


async def test_alarms_stored_while_one_is_going_out_follow_it_at_once(tmp_path):
    async with sia_receiver("tcp", {ACCOUNT: None}) as receiver, Running(tmp_path, centre(receiver.port, ack_timeout_s=0.3)) as running:
        receiver.silence(1)
        await store(running.outbox, revision(1))
        await wait_until(lambda: running.link.stats.retries >= 1, 5, "the first alarm to be in flight")
        await store(running.outbox, revision(2), revision(3), revision(4))  # read ahead of them found nothing: they must not wait
        await wait_until(lambda: len(receiver.events) >= 4, 5, "the alarms stored meanwhile")


async def test_supervision_null_messages_at_the_interval(tmp_path):
    async with sia_receiver("tcp", {ACCOUNT: KEY_128}) as receiver, Running(tmp_path, centre(receiver.port, key=KEY_128, supervision_s=0.2)):
        await wait_until(lambda: len(receiver.events) >= 3, 5, "three supervision messages")
    assert {(e.message_type.value, e.code) for e in receiver.events} == {("NULL", "RP")}


async def test_a_receiver_down_or_a_stopped_transmitter_loses_nothing_and_repeats_nothing(tmp_path):
    port = _free_port()
    async with Running(tmp_path, centre(port)) as running:
        await store(running.outbox, *(revision(i) for i in range(1, 6)))
        await wait_until(lambda: running.link.stats.retries >= 2, 10, "retries while the receiver is down")
        async with sia_receiver("tcp", {ACCOUNT: None}, port) as first:
            await wait_until(lambda: len(first.events) >= 5, 15, "the backlog once the receiver is up")
        await store(running.outbox, *(revision(i) for i in range(6, 11)))
        await wait_until(lambda: running.link.stats.retries >= 4, 10, "the receiver to be found down again")
    async with sia_receiver("tcp", {ACCOUNT: None}, port) as receiver:
        async with Running(tmp_path, centre(port)) as running:
            await wait_until(lambda: len(first.events) + len(receiver.events) >= 10, 15, "the other alarms after the restart")
            await store(running.outbox, revision(11))
            await wait_until(lambda: len(first.events) + len(receiver.events) >= 11, 15, "a new alarm after the backlog")
        async with Running(tmp_path, centre(port)):
            await asyncio.sleep(0.5)  # a third start has nothing left to send
    # (a receiver that stops listening still answers on a connection it has open: `first` may have had the sixth)
    assert [e.sequence for e in first.events + receiver.events] == [f"{n:04d}" for n in range(1, 12)]


def test_edge_killed_with_unsent_alarms_delivers_each_exactly_once_after_restart(tmp_path, spawn):
    from test_faults import EdgeProcess, Wearable, wait_for

    port = _free_port()
    school = Path("firmware_configs/sites/school.yaml").resolve()
    (tmp_path / "sites").mkdir()
    (tmp_path / "templates").symlink_to(school.parent.parent / "templates")
    site_file = tmp_path / "sites" / "school.yaml"
    site_file.write_text(school.read_text() + f"""
alarm_centres:
  - {{id: arc, host: 127.0.0.1, port: {port}, account: "{ACCOUNT}", format: ADM-CID, key: "{KEY_256.encode().hex()}", ack_timeout_s: 0.5, retry_max_s: 0.5}}
""")
    with running_mosquitto(tmp_path / "site", durable=True) as site, running_mosquitto(tmp_path / "police") as police:
        edge = EdgeProcess(spawn, site_file, site, police, tmp_path / "outbox.db", tmp_path / "edge.log")
        edge.start()
        wearable = Wearable(site)
        try:
            wearable.press(20)
            wearable.wait_acknowledged()  # the edge acknowledges a press only once it is stored
            wait_for(lambda: (tmp_path / "edge.log").read_text().count("event=escalation ") >= 20, 20, "20 escalations stored")
            edge.kill_9()
            assert "event=dc09_retry" in (tmp_path / "edge.log").read_text(), "the edge was trying the (absent) receiver when killed"

            events = received_after_restart(edge.start, port, {ACCOUNT: KEY_256}, 20)
        finally:
            wearable.close()
            edge.stop()
    assert [(e.event_qualifier, e.event_type, e.code) for e in events] == [("1", "101", "QA")] * 20
    assert [e.sequence for e in events] == [f"{n:04d}" for n in range(1, 21)], "each alarm exactly once, in order"


def received_after_restart(start: Callable[[], object], port: int, accounts: dict[str, str | None], count: int) -> list:
    """A receiver on `port`, then `start()` (a transmitter restarting): the events, once `count` came and a repeat had time to follow."""

    async def receive() -> list:
        async with sia_receiver("tcp", accounts, port) as receiver:
            await asyncio.to_thread(start)
            await wait_until(lambda: len(receiver.events) >= count, 30, f"{count} alarms after the restart")
            await asyncio.sleep(1.0)  # a repeat would come right behind
            return receiver.events

    return asyncio.run(receive())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

