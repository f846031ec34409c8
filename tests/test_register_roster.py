"""Rosters from the district register to real edges over a real mosquitto: applied without a restart, a guard whose vetting
ends stops getting offers within one roster cycle while the job in hand goes on, forged and tampered rosters refused and
reported, the last good roster kept across a restart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from bench.registry import COMPANY_HEADER, GUARD_HEADER, companies, guards, write_csv
from device_drivers.simulators import SiteSimulator
from edge.guards import GuardBoard
from edge.node import EdgeNode
from edge.roster import RosterSync, roster_guards
from guardlink import topics
from guardlink.districtconfig import DistrictConfig
from guardlink.models import GuardState
from guardlink.provisioning import public_key_text
from guardlink.roster import RosterGuard, RosterRefused, sign_roster, verify_roster
from guardlink.siteconfig import BrokerUrl, SiteConfig
from hub.database import make_engine, migrate
from hub.register import IdHasher, edit_guard
from hub.register_import import import_files
from hub.register_publisher import RosterPublisher

from conftest import running_edge, wait_until

DISTRICT = "xincheng"
SCHOOL = "hohhot-no3-primary"
KEY = Ed25519PrivateKey.generate()
IDS = IdHasher(b"test-only-id-key-0123456789")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def district(sites: list[str], every_s: float = 300.0) -> DistrictConfig:
    return DistrictConfig.model_validate({
        "district": {"id": DISTRICT, "name": "Xincheng", "timezone": "Asia/Shanghai"},
        "communities": [{"id": "c1", "name": "C1", "chief": "Chief", "outline": [[40.8, 111.7], [40.9, 111.7], [40.9, 111.8]], "sites": sites}],
        "registry": {"roster_debounce_s": 0.05, "roster_every_s": every_s},
    })


def with_roster_key(config: SiteConfig, site: str | None = None) -> SiteConfig:
    """The school (under another site id when given) trusting the district key, checking every 20 ms."""
    update: dict[str, object] = {
        "police": config.police.model_copy(update={"roster_key": public_key_text(KEY.public_key())}),
        "supervision": config.supervision.model_copy(update={"check_every_s": 0.02}),
    }
    if site:
        update["site"] = config.site.model_copy(update={"id": site})
    return config.model_copy(update=update)


def register(tmp_path: Path, rows: list[dict[str, str]]):
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate(engine)
    plan = import_files(engine, [write_csv(tmp_path / "c.csv", COMPANY_HEADER, companies(2)), write_csv(tmp_path / "g.csv", GUARD_HEADER, rows)], IDS, {r["site"] for r in rows})
    assert plan.problems == []
    return engine


def school_guards(today: date) -> list[dict[str, str]]:
    """The school's four guards (ids and wearables as in its site file), all eligible for a year."""
    rows = guards(4, 2, [SCHOOL], today)
    for row, (guard, wearable) in zip(rows, [("g-li", "wear-li"), ("g-zhang", "wear-zhang"), ("g-wang", "wear-wang"), ("g-zhao", "phone-zhao")], strict=True):
        row.update(guard=guard, wearable=wearable, roles="patrol;first_aid")
    return rows


def publish_retained(broker: BrokerUrl, topic: str, payload: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


@asynccontextmanager
async def publishing(config: DistrictConfig, engine, broker: BrokerUrl, clock: Clock) -> AsyncIterator[RosterPublisher]:
    async def publish(topic: str, payload: bytes) -> None:
        await asyncio.to_thread(publish_retained, broker, topic, payload)

    publisher = RosterPublisher(config, engine, KEY, publish, clock=clock, poll_s=0.02)
    task = asyncio.create_task(publisher.run())
    try:
        yield publisher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def reports(recorder) -> list[dict]:
    return [json.loads(p) for p in recorder.payloads()]


# --- pure parts ------------------------------------------------------------------------------------------------------


def test_a_guard_left_off_the_roster_finishes_the_job_in_hand_and_gets_no_new_offers(school: SiteConfig) -> None:
    now = time.time()
    board = GuardBoard(school, now)
    roster = sign_roster(KEY, DISTRICT, SCHOOL, 1, [RosterGuard(id=g.id, name=g.name, roles=g.roles, wearable=g.wearable) for g in school.guards], "2026-06-01T00:00:00+00:00")
    guards_, until = roster_guards(roster, school.guards)
    assert [g.schedule for g in guards_] == [g.schedule for g in school.guards], "the site file still gives its guards' shifts"
    board.set_state("g-li", GuardState.ASSIGNED, "esc-1")
    kept = [g for g in guards_ if g.id not in ("g-li", "g-wang")]
    board.replace_guards(kept + [guards_[0].model_copy(update={"id": "g-new", "wearable": None})], {"g-new": now + 60}, now)
    assert "g-wang" not in board.guards, "a free guard left off leaves at once"
    assert board.guards["g-li"].leaving and board.guards["g-li"].state is GuardState.ASSIGNED, "the job in hand goes on"
    assert board.on_duty(board.guards["g-new"], now) and not board.on_duty(board.guards["g-new"], now + 61), "no offers past the vetting's end"
    board.release("g-li", now)
    assert "g-li" not in board.guards, "gone once the job is over"


def test_rosters_not_signed_by_the_district_for_this_site_and_newer_are_refused() -> None:
    guard = RosterGuard(id="g-1", name="One", roles=["patrol"])
    genuine = sign_roster(KEY, DISTRICT, SCHOOL, 5, [guard], "2026-06-01T00:00:00+00:00").to_json()
    public = KEY.public_key()
    assert verify_roster(genuine, public, district=DISTRICT, site=SCHOOL, applied_version=4).version == 5
    forged = sign_roster(Ed25519PrivateKey.generate(), DISTRICT, SCHOOL, 6, [guard], "2026-06-01T00:00:00+00:00").to_json()
    doc = json.loads(genuine)
    doc["guards"].append({"id": "g-intruder", "name": "Intruder", "roles": ["patrol"], "wearable": None, "company": None, "until": None})
    cases = {
        "bad_signature": [forged, json.dumps(doc).encode()],
        "old_version": [genuine],
        "wrong_site": [sign_roster(KEY, DISTRICT, "elsewhere", 9, [guard], "2026-06-01T00:00:00+00:00").to_json()],
        "unsigned": [json.dumps({**json.loads(genuine), "signature": ""}).encode()],
        "malformed": [b"{", b"[]"],
    }
    for reason, payloads in cases.items():
        for payload in payloads:
            with pytest.raises(RosterRefused) as refused:
                verify_roster(payload, public, district=DISTRICT, site=SCHOOL, applied_version=6)
            assert refused.value.reason == reason


# --- real edges ------------------------------------------------------------------------------------------------------


async def test_rosters_reach_three_real_edges_and_are_applied_without_a_restart(school, mosquitto, recorder, tmp_path) -> None:
    sites = ["site-a", "site-b", "site-c"]
    today = date.today()
    engine = register(tmp_path, guards(30, 2, sites, today))  # ten guards at each site
    applied = recorder(mosquitto, topics.police_roster_applied(DISTRICT, "+"))
    config = district(sites)
    async with (
        running_edge(with_roster_key(school, "site-a"), mosquitto, mosquitto, tmp_path / "a" / "outbox.db") as a,
        running_edge(with_roster_key(school, "site-b"), mosquitto, mosquitto, tmp_path / "b" / "outbox.db") as b,
        running_edge(with_roster_key(school, "site-c"), mosquitto, mosquitto, tmp_path / "c" / "outbox.db") as c,
        publishing(config, engine, mosquitto, Clock()) as publisher,
    ):
        edges = {"site-a": a, "site-b": b, "site-c": c}
        await wait_until(lambda: all(e.roster.version == 1 for e in edges.values()), what="every edge applied its roster")
        for site, edge in edges.items():
            assert set(edge.board.guards) == {f"g-{i:05d}" for i in range(sites.index(site), 30, 3)}, "the roster replaces the site file's guards"
        await wait_until(lambda: len(reports(applied)) >= 3, what="the edges' reports")
        assert sorted((r["site"], r["status"], r["version"], r["guards"]) for r in reports(applied)) == [(s, "applied", 1, 10) for s in sites]
        # A register change reaches only the site it concerns, as its next version.
        with Session(engine) as session, session.begin():
            edit_guard(session, "g-00001", {"status": "suspended"}, sites=sites, actor="test", address=None, now=datetime.now(timezone.utc))
        await wait_until(lambda: b.roster.version == 2, what="site-b's next roster")
        assert "g-00001" not in b.board.guards and (a.roster.version, c.roster.version) == (1, 1)
        await wait_until(lambda: (b.status().get("roster") or {}).get("version") == 2, what="the heartbeat's roster version")
        assert publisher.versions == {"site-a": 1, "site-b": 2, "site-c": 1}
    engine.dispose()


async def test_a_guard_whose_vetting_ends_gets_no_new_offers_within_one_roster_cycle_and_keeps_the_job_in_hand(school, mosquitto, recorder, tmp_path) -> None:
    hub_clock = Clock()
    today = date.today()
    engine = register(tmp_path, school_guards(today))
    offers = recorder(mosquitto, topics.guard_offer(SCHOOL, "+"))
    police = recorder(mosquitto, topics.police_escalations_filter())
    cycle_s = 0.5
    async with (
        running_edge(with_roster_key(school), mosquitto, mosquitto, tmp_path / "outbox.db") as node,
        publishing(district([SCHOOL], every_s=cycle_s), engine, mosquitto, hub_clock),
    ):
        await wait_until(lambda: node.roster.version == 1, what="the first roster")
        with SiteSimulator(school, mosquitto, seed=4) as sim:
            await asyncio.to_thread(sim.report_positions)
            await wait_until(lambda: all(s.point for s in node.board.guards.values()), what="positions")
            await asyncio.to_thread(sim.press, "btn-gate")
            await wait_until(lambda: len(offers.messages) == 1, what="the first offer")
            guard = offers.messages[0][0].split("/")[-2]
            job = json.loads(offers.messages[0][1])["escalation"]
            await asyncio.to_thread(sim.publish_raw, topics.guard_reply(SCHOOL, guard), json.dumps({"answer": "accept", "escalation": job}).encode())
            await wait_until(lambda: node.board.guards[guard].state is GuardState.ASSIGNED, what="the guard on the job")
            # The guard's vetting is now valid until tomorrow: still on the roster (with the new end), until that day is over.
            with Session(engine) as session, session.begin():
                edit_guard(session, guard, {"vetting_until": today + timedelta(days=1)}, sites=[SCHOOL], actor="test", address=None, now=datetime.now(timezone.utc))
            await wait_until(lambda: node.roster.version == 2, what="the roster with the vetting's new end")
            assert guard in {g.id for g in node.roster.applied.guards} and not node.board.guards[guard].leaving
            hub_clock.now += 2 * 86400  # two days on at the hub: the vetting ended yesterday
            started = time.monotonic()
            await wait_until(lambda: node.roster.version == 3, what="the roster of the next cycle")
            assert time.monotonic() - started < cycle_s + 1.0, "within one roster cycle"
            status = node.board.guards[guard]
            assert status.leaving and status.state is GuardState.ASSIGNED and status.job == job, "the job in hand goes on"
            await asyncio.to_thread(sim.press, "btn-hall")
            await wait_until(lambda: len(offers.messages) >= 2, what="the second incident's offer")
            second = json.loads(offers.messages[-1][1])["escalation"]
            assert second != job and all(t.split("/")[-2] != guard for t, p in offers.messages[1:] if json.loads(p)["escalation"] == second)
            await asyncio.to_thread(sim.publish_raw, topics.guard_reply(SCHOOL, guard), json.dumps({"answer": "resolved", "escalation": job}).encode())
            await wait_until(lambda: guard not in node.board.guards, what="the guard leaving after the job")

            def resolved() -> list[dict]:
                return [json.loads(p) for p in police.payloads() if json.loads(p)["id"] == job and json.loads(p)["status"] == "resolved"]

            await wait_until(lambda: resolved(), what="the job resolved at the police")
    assert {a["guard"]: a["state"] for a in resolved()[-1]["assignments"]}[guard] == "done"
    engine.dispose()


def test_after_a_bulk_import_a_change_derives_only_the_sites_it_touches(tmp_path) -> None:
    sites = [f"site-{n:02d}" for n in range(20)]
    engine = register(tmp_path, guards(400, 2, sites, date.today()))  # every guard changed just now
    published: list[str] = []

    async def publish(topic: str, payload: bytes) -> None:
        published.append(topic)

    publisher = RosterPublisher(district(sites), engine, KEY, publish)
    assert len(publisher.derive(every=True)) == 20 and publisher.derived_sites == 20
    publisher.derive()
    assert publisher.derived_sites == 0, "the import was derived already, though it is within the margin for late commits"
    with Session(engine) as session, session.begin():
        edit_guard(session, "g-00005", {"site": "site-11"}, sites=sites, actor="test", address=None, now=datetime.now(timezone.utc))
    changed = publisher.derive()
    assert publisher.derived_sites == 2 and set(changed) == {"site-05", "site-11"}, "where the guard was listed and where they are posted now"
    engine.dispose()


async def test_a_forged_or_tampered_roster_is_refused_and_reported_and_the_last_good_one_survives_a_restart(school, mosquitto, recorder, tmp_path) -> None:
    config = with_roster_key(school)
    applied = recorder(mosquitto, topics.police_roster_applied(DISTRICT, SCHOOL))
    topic = topics.police_roster(DISTRICT, SCHOOL)
    listed = [RosterGuard(id="g-li", name="Li Wei", roles=["patrol"], wearable="wear-li"), RosterGuard(id="g-new", name="New", roles=["gate"])]
    genuine = sign_roster(KEY, DISTRICT, SCHOOL, 3, listed, datetime.now(timezone.utc).isoformat())
    async with running_edge(config, mosquitto, mosquitto, tmp_path / "outbox.db") as node:
        await asyncio.to_thread(publish_retained, mosquitto, topic, genuine.to_json())
        await wait_until(lambda: node.roster.version == 3, what="the genuine roster")
        forged = sign_roster(Ed25519PrivateKey.generate(), DISTRICT, SCHOOL, 4, [*listed, RosterGuard(id="g-intruder", name="X", roles=["patrol"])], genuine.issued_at)
        tampered = json.loads(genuine.to_json())
        tampered["version"] = 5
        tampered["guards"].append({"id": "g-intruder", "name": "X", "roles": ["patrol"], "wearable": None, "company": None, "until": None})
        for payload in (forged.to_json(), json.dumps(tampered).encode()):
            await asyncio.to_thread(publish_retained, mosquitto, topic, payload)
        await wait_until(lambda: sum(r["status"] == "refused" for r in reports(applied)) == 2, what="two refusals reported")
        refused = [r for r in reports(applied) if r["status"] == "refused"]
        assert [(r["reason"], r["offered_version"], r["version"]) for r in refused] == [("bad_signature", 4, 3), ("bad_signature", 5, 3)]
        assert set(node.board.guards) == {"g-li", "g-new"} and node.roster.version == 3
        assert node.status()["roster"]["refused"] == {"bad_signature": 2}
        await asyncio.to_thread(publish_retained, mosquitto, topic, b"")  # the broker forgets the roster: the hub is away
    restarted = EdgeNode(config, site_broker=mosquitto, police_broker=mosquitto, outbox_path=tmp_path / "outbox.db")
    restarted.roster.load()
    assert restarted.roster.version == 3 and set(restarted.board.guards) == {"g-li", "g-new"}
    assert restarted.board.guards["g-li"].guard.schedule == next(g for g in school.guards if g.id == "g-li").schedule


def test_a_roster_file_edited_on_disk_is_refused_at_start(school, tmp_path) -> None:
    config = with_roster_key(school)
    path = tmp_path / "outbox.roster.json"
    doc = json.loads(sign_roster(KEY, DISTRICT, SCHOOL, 2, [RosterGuard(id="g-li", name="Li Wei", roles=["patrol"])], "2026-06-01T00:00:00+00:00").to_json())
    doc["guards"][0]["roles"] = ["patrol", "commander"]
    path.write_text(json.dumps(doc))
    sync = RosterSync(config, GuardBoard(config, time.time()), path, time.time)
    sync.load()
    assert sync.version == 0 and sync.refused == {"bad_signature": 1} and set(sync.board.guards) == {g.id for g in school.guards}
