"""SIA DC-09 from the hub (a district forwarding to a receiving centre) and the transmitter's state at the edge, against
a real pysiaalarm receiver: alarm then restore from what the intake stored, exactly once across a hub kill, one forwarder."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from test_dc09 import ACCOUNT, KEY_256, _free_port, received_after_restart
from test_telemetry_metrics import scrape, value

from bench.dc09 import sia_receiver
from bench.hub import HUB_BROKER_SETTINGS, SimulatedSite, district_yaml, revision
from bench.hub import start_hub as bench_start_hub
from device_drivers import zigbee2mqtt
from device_drivers.simulators import SiteSimulator
from guardlink.alarmcentre import AlarmCentre
from guardlink.districtconfig import parse_district
from guardlink.models import EscalationStatus
from guardlink.siteconfig import Metrics
from guardlink.yamlconfig import ConfigError
from hub.database import make_engine, migrate
from hub.forwarding import Forwarding
from hub.service import serve
from hub.store import Revision, store
from hub.tables import RevisionRow

from conftest import running_edge, running_mosquitto, wait_until

pytest.importorskip("pysiaalarm")

SITES = ["s1", "s2"]
ACCOUNTS = {"s1": "A001", "s2": "A002"}


def district(broker: object, database: str, port: int, key: str | None = KEY_256) -> str:
    key_line = f', key: "{key.encode().hex()}"' if key else ""
    return district_yaml(broker, database, SITES) + f"""alarm_centres:
  - {{id: arc, host: 127.0.0.1, port: {port}, account: "{ACCOUNT}", accounts: {{s1: "{ACCOUNTS['s1']}", s2: "{ACCOUNTS['s2']}"}},
     zones: {{s1/btn-1: 7}}, ack_timeout_s: 0.5, retry_max_s: 0.5, supervision_s: 0{key_line}}}
"""


async def test_the_hub_forwards_what_its_intake_stored_alarm_then_restore(database_url, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with running_mosquitto(tmp_path / "broker", extra=HUB_BROKER_SETTINGS) as broker:
        async with sia_receiver("tcp", {ACCOUNTS["s1"]: KEY_256, ACCOUNTS["s2"]: KEY_256}) as receiver:
            config = parse_district(district(broker, database_url, receiver.port), "district.yaml")
            hub = asyncio.create_task(serve(config, database=database_url, listen="127.0.0.1:0"))
            site = await asyncio.to_thread(SimulatedSite, broker, "s1")
            try:
                # The forwarder starts after what is stored when it first runs; the intake takes what comes once it subscribed.
                await wait_until(lambda: "event=intake_subscribed" in caplog.text and "event=forwarding_started" in caplog.text, 20, "the hub")
                for number, status in enumerate((EscalationStatus.DISPATCHED, EscalationStatus.ASSIGNED, EscalationStatus.RESOLVED), start=1):
                    site.publish(revision("s1", "esc-1", number, number, status=status))
                await asyncio.to_thread(site.wait_published)
                await wait_until(lambda: len(receiver.events) >= 2, 20, "alarm and restore at the receiver")
                await asyncio.sleep(0.3)  # nothing else follows
                address = re.search(r"event=hub_listening url=(\S+)", caplog.text)
                assert address is not None, caplog.text[-2000:]
                samples = await scrape(address.group(1) + "/metrics")
            finally:
                site.close()
                hub.cancel()
                await asyncio.gather(hub, return_exceptions=True)
    assert [(e.account, e.code, e.ri, e.message, e.encrypted) for e in receiver.events] == [
        (ACCOUNTS["s1"], "PA", "1", "7", True), (ACCOUNTS["s1"], "PH", "1", "7", True)]
    assert [e.sequence for e in receiver.events] == ["0001", "0002"]
    # The worker's /metrics: what its intake stored and receipted, that it holds the forwarding lock, the centre's link.
    assert value(samples, "guardlink_hub_stored_total") >= 3 and value(samples, "guardlink_hub_receipts_sent_total") == 3
    assert value(samples, "guardlink_hub_commits_total") >= 1 and value(samples, "guardlink_hub_broker_connected") == 1
    assert value(samples, "guardlink_hub_lock_held", lock="forwarding") == 1 and ("guardlink_hub_lock_held", (("lock", "links"),)) not in samples
    assert value(samples, "guardlink_dc09_acked_total", centre="arc") == 2 and value(samples, "guardlink_dc09_connected", centre="arc") == 1
    assert not any(name.startswith("guardlink_hub_nats") for name, _ in samples), "one MQTT broker: no cluster pulls"


def test_hub_killed_with_unsent_alarms_delivers_each_exactly_once_after_restart(spawn, tmp_path):
    port = _free_port()
    database = f"sqlite:///{tmp_path / 'hub.db'}"
    log = tmp_path / "hub.log"
    engine = make_engine(database)
    with running_mosquitto(tmp_path / "broker", extra=HUB_BROKER_SETTINGS) as broker:
        district_file = tmp_path / "district.yaml"
        district_file.write_text(district(broker, database, port))
        hub = bench_start_hub(district_file, log, lambda args, log: spawn(*args, stderr_path=log))
        sites = [SimulatedSite(broker, site) for site in SITES]
        try:
            asyncio.run(wait_until(lambda: "event=forwarding_started" in log.read_text(), 20, "the forwarder"))
            for n in range(20):
                sites[n % 2].publish(revision(SITES[n % 2], f"esc-{n}", 1, n // 2 + 1))
            for site in sites:
                site.wait_published()

            def stored() -> int:
                with Session(engine) as db:
                    return db.scalar(select(func.count()).select_from(RevisionRow)) or 0

            asyncio.run(wait_until(lambda: stored() == 20 and "event=dc09_retry" in log.read_text(), 20, "20 stored, the (absent) receiver tried"))
            hub.send_signal(signal.SIGKILL)
            hub.wait()

            events = received_after_restart(lambda: bench_start_hub(district_file, log, lambda args, log: spawn(*args, stderr_path=log)),
                                            port, {ACCOUNTS["s1"]: KEY_256, ACCOUNTS["s2"]: KEY_256}, 20)
        finally:
            for site in sites:
                site.close()
            engine.dispose()
    assert [e.code for e in events] == ["PA"] * 20
    assert [e.sequence for e in events] == [f"{n:04d}" for n in range(1, 21)], "each alarm exactly once, in order"
    assert sorted(e.account for e in events) == sorted(ACCOUNTS[SITES[n % 2]] for n in range(20)), "each site under its own account"


async def test_only_one_worker_forwards_and_another_takes_over_where_it_stopped(database_url, tmp_path, monkeypatch):
    monkeypatch.setattr("hub.leader.LOCK_RETRY_S", 0.2)
    engine = make_engine(database_url)
    await asyncio.to_thread(migrate, engine)

    def commit(*numbers: int) -> None:
        with Session(engine) as db, db.begin():
            now = datetime.now(timezone.utc)
            store(db, [Revision(revision("s1", f"esc-{n}", 1, n), "c1", now) for n in numbers], now)

    try:
        async with sia_receiver("tcp", {ACCOUNTS["s1"]: None}) as receiver:
            config = parse_district(district("mqtt://127.0.0.1:1", database_url, receiver.port, key=None), "district.yaml")
            first, second = Forwarding(config, engine, poll_s=0.05), Forwarding(config, engine, poll_s=0.05)
            first_task = asyncio.create_task(first.run())
            await wait_until(lambda: first.forwarding, 10, "the first worker to forward")
            second_task = asyncio.create_task(second.run())
            await asyncio.to_thread(commit, 1, 2, 3)
            await wait_until(lambda: len(receiver.events) >= 3, 10, "three alarms")
            assert not second.forwarding, "one forwarder per district"
            first_task.cancel()
            await asyncio.gather(first_task, return_exceptions=True)
            await asyncio.to_thread(commit, 4, 5)
            await wait_until(lambda: second.forwarding and len(receiver.events) >= 5, 10, "the second worker taking over")
            await asyncio.sleep(0.3)
            second_task.cancel()
            await asyncio.gather(second_task, return_exceptions=True)
    finally:
        engine.dispose()
    assert [e.sequence for e in receiver.events] == ["0001", "0002", "0003", "0004", "0005"], "each once, in order, across the handover"
    assert second.centres.status()["arc"]["acked"] == 2


async def test_a_hole_in_the_commit_order_is_waited_for_until_its_transaction_ends(postgres, tmp_path):
    engine = make_engine(postgres.url)
    await asyncio.to_thread(migrate, engine)

    def stored(db: Session, *numbers: int) -> None:
        now = datetime.now(timezone.utc)
        store(db, [Revision(revision("s1", f"esc-{n}", 1, n), "c1", now) for n in numbers], now)

    def commit(*numbers: int) -> None:
        with Session(engine) as db, db.begin():
            stored(db, *numbers)

    try:
        async with sia_receiver("tcp", {ACCOUNTS["s1"]: None}) as receiver:
            forwarding = Forwarding(parse_district(district("mqtt://127.0.0.1:1", postgres.url, receiver.port, key=None), "d.yaml"), engine, poll_s=0.05)
            task = asyncio.create_task(forwarding.run())
            await wait_until(lambda: forwarding.forwarding, 10, "the forwarder")
            slow, rolled_back = Session(engine), Session(engine)
            slow.begin()
            await asyncio.to_thread(stored, slow, 1)  # takes the first id, commits last
            rolled_back.begin()
            await asyncio.to_thread(stored, rolled_back, 2)
            await asyncio.to_thread(commit, 3)
            await asyncio.sleep(1.0)
            assert receiver.events == [], "nothing goes past an id a running transaction may still commit"
            await asyncio.to_thread(rolled_back.rollback)
            await asyncio.sleep(0.5)
            assert receiver.events == [], "the first id is still held"
            await asyncio.to_thread(slow.commit)
            await wait_until(lambda: len(receiver.events) >= 2, 10, "the slow revision, then the one behind it")
            await asyncio.sleep(0.3)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            slow.close()
            rolled_back.close()
    finally:
        engine.dispose()
    assert [e.sequence for e in receiver.events] == ["0001", "0002"], "esc-1 and esc-3 once each; esc-2 was rolled back"


def test_district_alarm_centres_are_checked_with_file_line_and_column():
    text = district_yaml("mqtt://127.0.0.1:1883", "sqlite:///hub.db", SITES) + """alarm_centres:
  - id: arc
    host: arc.example
    port: 12000
    account: "9000"
    accounts: {s1: "9001", s9: "9009"}
    zones: {s1/btn-1: 5, btn-2: 6}
  - {id: arc, host: h, port: 1, account: "XYZ"}
"""
    with pytest.raises(ConfigError) as bad:
        parse_district(text, "d.yaml")
    assert bad.value.messages == [
        "d.yaml:12:32: alarm centre 'arc' gives an account to site 's9', which no community has",
        "d.yaml:13:33: alarm centre 'arc' numbers 'btn-2': at a district, zones are numbered as <site>/<device>",
        "d.yaml:14:10: duplicate alarm centre id 'arc'",
        "d.yaml:14:42: alarm_centres.1.account: 'XYZ' is not 3-16 hex digits (DC-09 account numbers are hex); quote it in YAML",
    ]
    good = parse_district(text.replace(', s9: "9009"', "").replace(", btn-2: 6", "").replace('id: arc, host: h, port: 1, account: "XYZ"', 'id: arc-2, host: h, port: 1, account: "123"'), "d.yaml")
    assert [c.account_for("s1") for c in good.alarm_centres] == ["9001", "123"] and good.alarm_centres[0].account_for("s2") == "9000"


async def test_the_edge_status_and_metrics_show_each_alarm_centre(school, mosquitto, police_mosquitto, tmp_path):
    async with sia_receiver("tcp", {ACCOUNT: None}) as receiver:
        centre = {"id": "arc", "host": "127.0.0.1", "port": receiver.port, "account": ACCOUNT, "ack_timeout_s": 0.5, "supervision_s": 0}
        config = school.model_copy(update={"metrics": Metrics(listen="127.0.0.1:0"), "alarm_centres": [AlarmCentre(**centre)]})
        async with running_edge(config, mosquitto, police_mosquitto, tmp_path / "outbox.db") as node:
            with SiteSimulator(school, mosquitto, seed=3) as sim:
                await asyncio.to_thread(sim.publish_raw, "zigbee2mqtt/btn-gate", zigbee2mqtt.button_payload("single"))
                await wait_until(lambda: receiver.events, 10, "the alarm at the receiver")
            await wait_until(lambda: node.status()["alarm_centres"]["arc"]["acked"] == 1, 5, "the ACK counted")
            status = node.status()["alarm_centres"]["arc"]
            samples = await scrape(node.monitor.endpoint.url)
    assert status == {"connected": True, "sent": 1, "acked": 1, "supervision_acked": 0, "retries": 0, "naks": 0, "rejected": 0, "oldest_unacked_s": 0.0}
    assert value(samples, "guardlink_dc09_acked_total", centre="arc") == 1
    assert value(samples, "guardlink_dc09_sent_total", centre="arc") == 1
    assert value(samples, "guardlink_dc09_connected", centre="arc") == 1
    assert ("guardlink_dc09_oldest_unacked_seconds", (("centre", "arc"),)) in samples
    assert ("guardlink_dc09_naks_total", (("centre", "arc"),)) in samples and ("guardlink_dc09_retries_total", (("centre", "arc"),)) in samples
