"""Large-event mobilisation over a real mosquitto: call-ups from a register of thousands through the sites' edges, simulated
guards answering and arriving, no-shows replaced, roll calls, stand-down, held guards getting no site offers, and the API."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from bench.mobilise import district, event_spec, seed_register
from device_drivers.simulators import SiteSimulator
from edge.callups import CallUpRelay
from gateway.connection import Client
from guardlink import topics
from guardlink.callup import CallUp, CallUpKind, OnEventNotice
from guardlink.districtconfig import DistrictConfig
from guardlink.models import GuardReport, GuardsReport, GuardState, Location
from hub.accounts import Accounts, Role
from hub.api import create_app
from hub.database import make_engine, migrate
from hub.events import EventGuardState
from hub.events_service import EventService
from hub.events_store import counts, create_event, fill, release, roll_call, stand_down, start_roll_call
from hub.events_tables import EventGuardRow, EventRow
from hub.register_tables import RegisteredGuard
from hub.store import Guards, store

from conftest import running_edge, wait_until

BEHAVIOURS = ["arrive"] * 7 + ["decline", "silent", "no_show"]  # by a hash of the guard's id: the simulation is repeatable


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def at(self) -> datetime:
        return datetime.fromtimestamp(self.now, tz=timezone.utc)


def behaviour(guard: str) -> str:
    return BEHAVIOURS[zlib.crc32(guard.encode()) % len(BEHAVIOURS)]


def engine_for(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate(engine)
    return engine


def define(engine, config: DistrictConfig, spec, clock: FakeClock) -> int:
    with Session(engine) as session, session.begin():
        return fill(session, config, create_event(session, spec, clock.at(), "disp"), clock.at())


def states(engine, event_id: str) -> dict[str, str]:
    with Session(engine) as session:
        return dict(session.execute(select(EventGuardRow.guard, EventGuardRow.state).where(EventGuardRow.event_id == event_id)).all())


class SimulatedGuards:
    """Every guard of every site, on the site broker: takes call-ups as the guard app would, answers by behaviour."""

    def __init__(self, client: Client, clock: FakeClock, starts: datetime) -> None:
        self.client, self.clock, self.starts = client, clock, starts
        self.briefed: dict[str, tuple[str, str, str]] = {}  # guard -> (site, sector, role)
        self.expect: dict[str, str] = {}  # guard -> the state the hub should show
        self.arrived: dict[str, tuple[str, str]] = {}  # guard -> (sector, role) checked in
        self.other: list[CallUp] = []

    async def run(self) -> None:
        async for message in self.client.messages:
            item = CallUp.model_validate_json(message.payload)
            site = message.topic.value.split("/")[1]
            if item.kind is not CallUpKind.CALLUP:
                self.other.append(item)
                continue
            self.briefed[item.guard] = (site, item.briefing.sector, item.briefing.role)
            does = behaviour(item.guard)
            if does == "silent":
                self.expect[item.guard] = "called"
            elif does == "decline":
                await self.reply(item.guard, "decline")
            elif does == "arrive" and self.clock.at() >= self.starts:
                await self.check_in(item.guard)  # late call-ups: straight to the sector
            else:
                await self.reply(item.guard, "confirm")
                if self.clock.at() >= self.starts + timedelta(seconds=300):
                    self.expect[item.guard] = "no_show"  # confirmed past the arrival time, not there: at once a no-show

    async def reply(self, guard: str, answer: str, **extra: object) -> None:
        site, sector, role = self.briefed[guard]
        self.expect[guard] = {"confirm": "confirmed", "decline": "declined", "arrived": "arrived"}.get(answer, self.expect.get(guard, ""))
        doc = {"event": "derby", "answer": answer, **extra}
        await self.client.publish(topics.guard_callup_reply(site, guard), json.dumps(doc), qos=1)

    async def check_in(self, guard: str) -> None:
        _site, sector, role = self.briefed[guard]
        self.arrived[guard] = (sector, role)
        await self.reply(guard, "arrived", sector=sector)

    def settled(self, engine) -> bool:
        shown = states(engine, "derby")
        return len(shown) == len(self.briefed) and all(shown.get(g) == s for g, s in self.expect.items()) and len(self.expect) == len(self.briefed)

    def time_passed(self, confirmed_too: bool = True) -> None:
        """What the hub does once answer (and arrival) times are over: the silent (and the absent) ones drop out."""
        for guard, state in self.expect.items():
            if state == "called":
                self.expect[guard] = "no_answer"
            elif state == "confirmed" and confirmed_too:
                self.expect[guard] = "no_show"


async def test_event_of_three_sectors_ends_with_the_headcount_of_the_simulation_and_no_shows_replaced(mosquitto, tmp_path):
    config = district(30, communities=6, district_id="evtest")
    engine = engine_for(tmp_path)
    now = time.time()
    clock = FakeClock(now)
    seed_register(engine, 3000, 10, config.sites(), clock.at().date(), ineligible_every=7)
    starts = clock.at() + timedelta(hours=1)
    needs = [{"patrol": 60, "first_aid": 10}, {"patrol": 50}, {"patrol": 40, "mediator": 10}]
    spec = event_spec("derby", needs, starts, answer_within_s=300, arrive_grace_s=300)
    service = EventService(config, engine, broker=mosquitto, clock=clock, poll_s=0.02, check_every_s=0.05)
    board = SimpleNamespace(guards={}, refresh_duty=lambda now: None)
    relays = [CallUpRelay(SimpleNamespace(site=SimpleNamespace(id=site, district="evtest")), board, site_broker=mosquitto, police_broker=mosquitto, clock=clock)
              for site in config.sites()]
    tasks = [asyncio.create_task(service.run()), *(asyncio.create_task(r.run()) for r in relays)]
    try:
        async with Client(mosquitto, identifier="guards") as client:
            await client.subscribe(topics.guard_callup("+", "+"), qos=1)
            guards = SimulatedGuards(client, clock, starts)
            tasks.append(asyncio.create_task(guards.run()))
            await wait_until(lambda: service.ready.is_set() and all(r._site_up.is_set() and r._police is not None for r in relays), what="service and edges connected")
            called = await asyncio.to_thread(define, engine, config, spec, clock)
            assert called == 170
            await wait_until(lambda: len(guards.briefed) >= 170 and guards.settled(engine), timeout_s=30, what="every first answer stored")
            clock.now = starts.timestamp() + 60  # doors open, an hour on: the silent ones had their time to answer
            guards.time_passed(confirmed_too=False)
            await checked_again(service)
            for guard, state in list(guards.expect.items()):
                if state == "confirmed" and behaviour(guard) == "arrive":
                    await guards.check_in(guard)
            await wait_until(lambda: guards.settled(engine), timeout_s=30, what="the check-ins stored")
            for _round in range(12):  # silent and absent guards drop out and are replaced, until every sector is full
                with Session(engine) as session:
                    if all(c.arrived == c.needed for c in counts(session, "derby")):
                        break
                clock.now += 310
                guards.time_passed()
                await checked_again(service)
                await wait_until(lambda: guards.settled(engine), timeout_s=30, what="replacements answered")
            await wait_until(lambda: all(set(r.held) == {g for g in guards.arrived if g in r_guards(engine, r)} for r in relays), timeout_s=10,
                             what="each edge holding exactly its guards on the event")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    with Session(engine) as session:
        headcount = {(c.sector, c.role): c for c in counts(session, "derby")}
        rows = session.scalars(select(EventGuardRow).where(EventGuardRow.event_id == "derby")).all()
        failed = set(session.scalars(select(RegisteredGuard.id).where(RegisteredGuard.vetting == "failed")))
    simulated = Counter(guards.arrived.values())
    wanted = {(f"s{n + 1}", role): count for n, need in enumerate(needs) for role, count in need.items()}
    assert {k: c.arrived for k, c in headcount.items()} == dict(simulated) == wanted
    assert {r.guard for r in rows if r.state == EventGuardState.ARRIVED} == set(guards.arrived)
    no_shows = [r for r in rows if r.state == EventGuardState.NO_SHOW]
    assert no_shows and all(behaviour(r.guard) == "no_show" for r in no_shows)  # called, confirmed, never came: replaced
    assert not failed & {r.guard for r in rows}  # only eligible guards are called up
    per_company = Counter(r.company for r in rows)
    assert len(per_company) == 10 and max(per_company.values()) - min(per_company.values()) <= 12  # fair across companies


async def checked_again(service: EventService) -> None:
    """Until the hub's time-driven checks have run twice more (a clock moved: the next full check sees the new time)."""
    done = service.checks
    await wait_until(lambda: service.checks >= done + 2, what="the hub's checks at the new time")


def r_guards(engine, relay: CallUpRelay) -> set[str]:
    with Session(engine) as session:
        return set(session.scalars(select(RegisteredGuard.id).where(RegisteredGuard.site == relay.site)))


class SimulatedSites:
    """Sites answering on the district broker for their guards (as their edges pass the guards' replies on)."""

    def __init__(self, client: Client, district_id: str) -> None:
        self.client, self.district = client, district_id
        self.items: list[tuple[str, CallUp]] = []
        self.notices: dict[str, list[str]] = {}

    async def run(self) -> None:
        from guardlink.callup import CallUps

        async for message in self.client.messages:
            if message.topic.value.endswith("/on-event"):
                notice = OnEventNotice.model_validate_json(message.payload)
                self.notices[notice.site] = notice.guards
                continue
            doc = CallUps.model_validate_json(message.payload)
            self.items += [(doc.site, item) for item in doc.items]

    async def answer(self, site: str, guard: str, answer: str, at: datetime, **extra: object) -> None:
        doc = {"schema": "guardlink.callup-answers/1", "site": site, "answers": [{"guard": guard, "event": "gala", "answer": answer, "at": at.isoformat(), **extra}]}
        await self.client.publish(topics.police_callup_answers(self.district, site), json.dumps(doc), qos=1)

    def of(self, kind: CallUpKind) -> list[tuple[str, CallUp]]:
        return [(s, i) for s, i in self.items if i.kind is kind]


async def test_roll_call_lists_exactly_the_silent_guards_and_stand_down_frees_everyone(mosquitto, tmp_path):
    config = district(10, communities=2, district_id="rolltest")
    engine = engine_for(tmp_path)
    clock = FakeClock(time.time())
    seed_register(engine, 200, 4, config.sites(), clock.at().date())
    starts = clock.at() - timedelta(minutes=5)  # already running: guards check in as they come
    service = EventService(config, engine, broker=mosquitto, clock=clock, poll_s=0.02, check_every_s=0.05)
    tasks = [asyncio.create_task(service.run())]
    try:
        async with Client(mosquitto, identifier="sites") as client:
            await client.subscribe(topics.police_callups("rolltest", "+"), qos=1)
            await client.subscribe(topics.police_on_event("rolltest", "+"), qos=1)
            sites = SimulatedSites(client, "rolltest")
            tasks.append(asyncio.create_task(sites.run()))
            await asyncio.wait_for(service.ready.wait(), 10)
            assert await asyncio.to_thread(define, engine, config, event_spec("gala", [{"patrol": 20}], starts, arrive_grace_s=3600), clock) == 20
            await wait_until(lambda: len(sites.of(CallUpKind.CALLUP)) == 20, what="20 call-ups")
            by_position = sites.of(CallUpKind.CALLUP)[:5]  # these five are seen inside the sector by their wearables
            for site, item in sites.of(CallUpKind.CALLUP)[5:]:
                await sites.answer(site, item.guard, "arrived", clock.at(), sector="s1")
            inside = item.briefing.report_to
            seen: dict[str, list[GuardReport]] = {}
            for site, item in by_position:
                seen.setdefault(site, []).append(GuardReport(id=item.guard, name="G", roles=["patrol"], state=GuardState.AVAILABLE,
                                                             location=Location(lat=inside.lat, lon=inside.lon), accuracy_m=5, position_at=clock.at()))
            with Session(engine) as session, session.begin():  # as the intake stores the sites' guards reports
                store(session, [Guards(GuardsReport(site=site, at=clock.at(), guards=seen_here), clock.at()) for site, seen_here in seen.items()], clock.at())
            await wait_until(lambda: Counter(states(engine, "gala").values()) == {"arrived": 20}, what="all 20 checked in")
            await wait_until(lambda: sum(len(g) for g in sites.notices.values()) == 20, what="the edges told who is held")

            with Session(engine) as session, session.begin():
                number = start_roll_call(session, session.get(EventRow, "gala"), 120, clock.at())
            await wait_until(lambda: len(sites.of(CallUpKind.ROLL_CALL)) == 20, what="20 roll calls")
            silent = sorted(item.guard for _site, item in sites.of(CallUpKind.ROLL_CALL)[::6])  # every 6th keeps quiet
            for site, item in sites.of(CallUpKind.ROLL_CALL):
                if item.guard not in silent:
                    await sites.answer(site, item.guard, "present", clock.at(), roll_call=number)

            def answered() -> int:
                with Session(engine) as session:
                    return roll_call(session, session.get(EventRow, "gala"), clock.at())["answered"]

            await wait_until(lambda: answered() == 20 - len(silent), what="the answers stored")
            clock.now += 121
            with Session(engine) as session:
                result = roll_call(session, session.get(EventRow, "gala"), clock.at())
            assert result["open"] is False and result["asked"] == 20
            assert [s["guard"] for s in result["silent"]] == silent

            with Session(engine) as session, session.begin():
                assert stand_down(session, session.get(EventRow, "gala"), clock.at()) == 20
            await wait_until(lambda: len(sites.of(CallUpKind.STAND_DOWN)) == 20, what="20 stand-downs")
            await wait_until(lambda: not any(sites.notices.values()), what="every guard free again")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


SCHOOL_SITE = "hohhot-no3-primary"


async def test_a_guard_on_an_event_gets_no_site_offers_until_released(school, mosquitto, recorder, tmp_path):
    config = DistrictConfig.model_validate({"district": {"id": "xincheng", "name": "X"}, "communities": [
        {"id": "dongjie", "name": "D", "chief": "Z", "outline": [[40.8465, 111.7455], [40.8465, 111.7570], [40.8380, 111.7570]], "sites": [SCHOOL_SITE]}]})
    engine = engine_for(tmp_path)
    today = datetime.now(timezone.utc).date()
    seed_register(engine, 0, 1, [SCHOOL_SITE], today)
    with Session(engine) as session, session.begin():  # the school's guards, as the register has them
        for n, guard in enumerate(school.guards):
            session.add(RegisteredGuard(id=guard.id, name=guard.name, company="lic-000", id_hash=f"{n:064x}", id_masked="x", roles=list(guard.roles),
                                        status="active", vetting="passed", vetting_until=today + timedelta(days=90), pre_job_training=True, site=SCHOOL_SITE,
                                        updated_at=datetime.now(timezone.utc)))
        from hub.register_tables import TrainingRow
        session.add_all([TrainingRow(guard=g.id, day=today, hours=20) for g in school.guards])
    offers = recorder(mosquitto, topics.guard_offer(SCHOOL_SITE, "+"))
    callups = recorder(mosquitto, topics.guard_callup(SCHOOL_SITE, "+"))
    service = EventService(config, engine, broker=mosquitto, poll_s=0.02, check_every_s=0.05)
    service_task = asyncio.create_task(service.run())
    try:
        async with running_edge(school, mosquitto, mosquitto, tmp_path / "outbox.db") as node:
            spec = event_spec("derby", [{"first_aid": 2}], datetime.now(timezone.utc) + timedelta(hours=1))
            assert await asyncio.to_thread(define, engine, config, spec, FakeClock(time.time())) == 2
            await wait_until(lambda: len(callups.messages) == 2, what="two call-ups at the guards' app topic")
            held = {t.split("/")[-2] for t, _ in callups.messages}
            assert held == {"g-li", "g-zhang"}  # the school's first-aiders
            with SiteSimulator(school, mosquitto, seed=3) as sim:
                for guard in held:
                    await asyncio.to_thread(sim.publish_raw, topics.guard_callup_reply(SCHOOL_SITE, guard), json.dumps({"event": "derby", "answer": "confirm"}).encode())
                await wait_until(lambda: node.callups.held == held, what="the edge holding the confirmed guards")
                assert {g for g, s in node.board.guards.items() if s.state is GuardState.OFF_DUTY} >= held
                await asyncio.to_thread(sim.report_positions)
                await wait_until(lambda: all(s.point for s in node.board.guards.values()), what="positions")
                await asyncio.to_thread(sim.press, "btn-gate")
                await wait_until(lambda: len(offers.messages) >= 1, what="an offer")
                await asyncio.sleep(0.3)
                assert not held & {t.split("/")[-2] for t, _ in offers.messages}
                with Session(engine) as session, session.begin():
                    release(session, session.get(EventRow, "derby"), ["g-li"])
                await wait_until(lambda: node.callups.held == {"g-zhang"} and node.board.guards["g-li"].state is not GuardState.OFF_DUTY,
                                 what="g-li released for site jobs")
    finally:
        service_task.cancel()
        await asyncio.gather(service_task, return_exceptions=True)


def test_api_runs_an_event_for_dispatchers_and_shows_it_to_viewers(tmp_path):
    config = district(6, communities=2, district_id="apitest")
    engine = engine_for(tmp_path)
    seed_register(engine, 120, 3, config.sites(), datetime.now(timezone.utc).date())
    accounts = Accounts(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    accounts.add_user("disp", Role.DISPATCHER)
    accounts.add_user("watcher", Role.VIEWER)
    tokens = {name: {"Authorization": f"Bearer {accounts.issue_token(name)}"} for name in ("disp", "watcher")}

    async def publish(_site, _command) -> None:
        return None

    spec = event_spec("parade", [{"patrol": 10}, {"patrol": 5, "first_aid": 2}], datetime.now(timezone.utc) + timedelta(hours=2))
    body = json.loads(spec.model_dump_json())
    with TestClient(create_app(engine=engine, config=config, publish_command=publish, accounts=accounts)) as api:
        assert api.post("/api/events", json=body, headers=tokens["watcher"]).status_code == 403
        created = api.post("/api/events", json=body, headers=tokens["disp"])
        assert created.status_code == 201, created.text
        assert created.json()["called_now"] == 17
        assert api.post("/api/events", json=body, headers=tokens["disp"]).status_code == 422  # the same id again
        shown = api.get("/api/events/parade", headers=tokens["watcher"]).json()
        assert [(h["sector"], h["role"], h["needed"], h["called"]) for h in shown["headcount"]] == [
            ("s1", "patrol", 10, 10), ("s2", "patrol", 5, 5), ("s2", "first_aid", 2, 2)]
        assert len(api.get("/api/events/parade/guards", headers=tokens["watcher"], params={"state": "called"}).json()) == 17
        assert api.post("/api/events/parade/roll-calls", json={"within_s": 60}, headers=tokens["disp"]).json()["asked"] == 0  # nobody confirmed yet
        ended = api.post("/api/events/parade/stand-down", json={}, headers=tokens["disp"]).json()
        assert ended == {"stood_down": 17, "ended": True}
        assert api.get("/api/events", headers=tokens["watcher"]).json()[0]["state"] == "ended"
        assert api.get("/api/events/nope", headers=tokens["watcher"]).status_code == 404
    with Session(engine) as session:
        from hub.tables import ChangeRow

        payloads = [c.payload for c in session.scalars(select(ChangeRow).where(ChangeRow.kind == "event", ChangeRow.key == "parade").order_by(ChangeRow.id))]
    assert payloads[0]["needed"] == 17 and payloads[-1]["state"] == "ended"  # the live stream's rows
