"""Patrol tasks at the hub's API on a real uvicorn: guards chosen by role, availability, the register's eligibility and
distance from where their edge placed them; fairness over many pushes; pushes to the top hotspot cells; a declined task
offered to the next guard at once, with `GET /api/tasks` and the live stream following."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from bench.hub import revision
from guardlink.districtconfig import DistrictConfig
from guardlink.geo import LatLon
from guardlink.models import GuardReport, GuardState, Location
from guardlink.patrol import TaskAnswer
from hub.accounts import Role
from hub.field import FieldLink
from hub.register_tables import CompanyRow, RegisteredGuard
from hub.store import Revision, store
from hub.tasks import Candidate, choose
from tests.test_hub_api import read_events
from tests.test_patrol import District, district, store_guards

EAST, MALL, WEST = "e-school", "e-mall", "w-factory"
POST = (40.0500, 111.0500)  # the patrol point "gate"
CONFIG = DistrictConfig.model_validate({
    "district": {"id": "tasktest", "name": "Task test district", "timezone": "UTC"},
    "broker": "mqtt://127.0.0.1:1",  # the field link is driven by hand here: never connected
    "communities": [
        {"id": "east", "name": "East", "chief": "Chief E", "outline": [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], "sites": [EAST, MALL]},
        {"id": "west", "name": "West", "chief": "Chief W", "outline": [[39.9, 111.0], [40.0, 111.0], [40.0, 111.1]], "sites": [WEST]},
    ],
    "hotspots": {"cell_m": 200},
    "registry": {"training_hours_min": 0},
    "patrol": {"points": [{"id": "gate", "name": "School gate", "lat": POST[0], "lon": POST[1], "radius_m": 50, "community": "east"}]},
})
USERS = {"disp": (Role.DISPATCHER, []), "east_chief": (Role.CHIEF, ["east"])}


def guard(guard_id: str, metres_north: float, roles: tuple[str, ...] = ("patrol",), state: GuardState = GuardState.AVAILABLE,
          at: tuple[float, float] = POST) -> GuardReport:
    """A guard placed `metres_north` of `at`."""
    now = datetime.now(timezone.utc)
    return GuardReport(id=guard_id, name=guard_id, roles=list(roles), state=state, location=Location(lat=at[0] + metres_north / 111_195, lon=at[1]), position_at=now)


def place(engine, site: str, *guards: GuardReport) -> None:
    store_guards(engine, site, datetime.now(timezone.utc), list(guards))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[District]:
    with district(tmp_path, CONFIG, USERS) as served:
        yield served


def push(client: httpx.Client, kind: str = "patrol", guards: int = 1, **extra: object) -> dict:
    body = {"kind": kind, "target": {"point": "gate"}, "guards": guards, **extra}
    response = client.post("/api/tasks", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_choose_is_by_role_availability_and_distance_with_the_fewest_recent_tasks_first() -> None:
    target = LatLon(*POST)

    def c(name: str, metres: float, roles: tuple[str, ...] = ("patrol",), recent: int = 0, available: bool = True) -> Candidate:
        return Candidate("s", name, frozenset(roles), LatLon(POST[0] + metres / 111_195, POST[1]), recent, available)

    pool = [c("far", 2500), c("near", 100), c("busy", 10, available=False), c("medic", 20, ("first_aid",)), c("tired", 50, recent=4), c("out", 5000)]
    assert [x.guard for x, _ in choose(pool, target, frozenset({"patrol"}), 10, 3000)] == ["near", "far", "tired"]
    assert [x.guard for x, _ in choose(pool, target, frozenset(), 2, 3000)] == ["medic", "near"], "no roles asked: anyone"
    assert [x.guard for x, _ in choose(pool, target, frozenset({"patrol"}), 1, 3000, exclude={("s", "near")})] == ["far"]
    assert choose([Candidate("s", "unplaced", frozenset({"patrol"}), None, 0, True)], target, frozenset(), 1, 3000) == [], "never placed: not sent"
    distance = choose(pool, target, frozenset({"patrol"}), 1, 3000)[0][1]
    assert distance == pytest.approx(100, abs=1)


def test_the_hub_sends_guards_of_the_kinds_role_that_are_free_and_near_their_post(hub: District) -> None:
    place(hub.engine, EAST, guard("g-near", 80), guard("g-far", 1500), guard("g-medic", 10, ("first_aid",)), guard("g-mediator", 300, ("mediator",)),
          guard("g-busy", 5, state=GuardState.ASSIGNED), guard("g-away", 9000))
    place(hub.engine, WEST, guard("w-near", 40))
    with hub.client("disp") as client:
        first = push(client, guards=3)
        assert [(t["guard"], t["state"]) for t in first["tasks"]] == [("w-near", "offered"), ("g-near", "offered"), ("g-far", "offered")]
        assert first["unfilled"] == 0 and all(t["distance_m"] <= 3000 for t in first["tasks"])
        mediation = push(client, "dispute_mediation")
        assert [t["guard"] for t in mediation["tasks"]] == ["g-mediator"]
        again = push(client, guards=2, start=(datetime.now(timezone.utc) + timedelta(minutes=30)).isoformat())
        assert again["tasks"] == [] and again["unfilled"] == 2, "the patrol guards are on open tasks in that window; g-away is 9 km off"
    with hub.client("east_chief") as client:
        assert {t["site"] for t in client.get("/api/tasks").json()} == {EAST}, "a chief sees the tasks of their communities"
        later = datetime.now(timezone.utc) + timedelta(hours=5)
        mine = push(client, guards=3, start=later.isoformat(), end=(later + timedelta(hours=1)).isoformat())
        assert {t["guard"] for t in mine["tasks"]} == {"g-near", "g-far"} and mine["unfilled"] == 1, "a chief's push stays in their communities"


def test_with_a_register_only_eligible_guards_are_sent(hub: District) -> None:
    today = date.today()
    with Session(hub.engine) as db, db.begin():
        db.add(CompanyRow(licence="L-1", name="Guard Co", contact=None, updated_at=datetime.now(timezone.utc)))
        for i, (guard_id, vetting) in enumerate((("g-vetted", "passed"), ("g-unvetted", "failed"))):
            db.add(RegisteredGuard(
                id=guard_id, name=guard_id, company="L-1", phone=None, id_hash=f"h{i}", id_masked="1***", roles=["patrol"], status="active",
                vetting=vetting, vetted_by=None, vetted_on=today, vetting_until=today + timedelta(days=90), pre_job_training=True,
                assessment_score=None, site=EAST, posted_from=today, wearable=None, updated_at=datetime.now(timezone.utc),
            ))
    place(hub.engine, EAST, guard("g-unvetted", 10), guard("g-unregistered", 20), guard("g-vetted", 900))
    with hub.client("disp") as client:
        pushed = push(client, guards=3)
    assert [t["guard"] for t in pushed["tasks"]] == ["g-vetted"] and pushed["unfilled"] == 2


def test_over_30_pushed_tasks_the_counts_spread_over_the_guards(hub: District) -> None:
    place(hub.engine, EAST, *(guard(f"g-{i}", 100 + 400 * i) for i in range(6)))
    start = datetime.now(timezone.utc) + timedelta(hours=1)
    with hub.client("disp") as client:
        chosen = []
        for i in range(30):
            window = start + timedelta(hours=3 * i)  # windows apart: nobody is busy with an earlier task
            chosen += [t["guard"] for t in push(client, start=window.isoformat(), end=(window + timedelta(hours=2)).isoformat())["tasks"]]
    counts = Counter(chosen)
    assert len(chosen) == 30 and len(counts) == 6, counts
    assert max(counts.values()) - min(counts.values()) <= 1, f"nobody gets every task: {counts}"


def test_pushing_from_the_top_hotspots_makes_a_task_for_each_of_those_cells(hub: District) -> None:
    now = datetime.now(timezone.utc)
    spots = [(EAST, 40.08, 111.05)] * 12 + [(MALL, 40.02, 111.03)] * 5
    items = []
    for i, (site, lat, lon) in enumerate(spots):
        esc = revision(site, f"esc-{i}", 1, 1, district_id="tasktest", at=(now - timedelta(days=i % 6, hours=1)).timestamp())
        esc = esc.model_copy(update={"incident": esc.incident.model_copy(update={"location": Location(lat=lat, lon=lon)})})
        items.append(Revision(esc, "east", now))
    with Session(hub.engine) as db, db.begin():
        store(db, items, now)
    place(hub.engine, EAST, guard("g-north", 120, at=(40.08, 111.05)), guard("g-north-2", 700, at=(40.08, 111.05)))
    place(hub.engine, MALL, guard("g-south", -150, at=(40.02, 111.03)))
    with hub.client("disp") as client:
        cells = [f["properties"] for f in client.get("/api/hotspots", params={"hours": 4, "top": 2}).json()["features"]]
        response = client.post("/api/tasks/hotspots", json={"kind": "patrol", "hours": 4, "top": 2, "guards_per_cell": 1})
        assert response.status_code == 201, response.text
        pushed = response.json()
        listed = client.get("/api/tasks").json()
    assert pushed["unfilled"] == 0 and len(pushed["tasks"]) == 2
    assert [(t["target"]["kind"], t["target"]["id"]) for t in pushed["tasks"]] == [("cell", str(c["cell"])) for c in cells]
    for task, cell in zip(pushed["tasks"], cells, strict=True):
        assert [task["target"]["location"]["lat"], task["target"]["location"]["lon"]] == pytest.approx(cell["centre"], abs=1e-4)
        assert task["distance_m"] < 1000, "the guard nearest the cell goes"
    assert {t["guard"] for t in pushed["tasks"]} == {"g-north", "g-south"}
    assert {t["id"] for t in listed} == {t["id"] for t in pushed["tasks"]}


def test_a_declined_task_is_offered_to_the_next_guard_and_the_console_follows(hub: District) -> None:
    place(hub.engine, EAST, guard("g-first", 50), guard("g-second", 400), guard("g-mediator", 10, ("mediator",)))
    place(hub.engine, MALL, guard("g-third", 900))
    place(hub.engine, WEST, guard("w-other", 30))  # another community: not offered a task of the east's
    link = FieldLink(CONFIG, hub.engine)
    start = hub.last_change()

    def decline(task: dict) -> None:
        answer = TaskAnswer(id=f"answer-{task['id'][-12:]}", task=task["id"], guard=task["guard"], answer="decline", at=datetime.now(timezone.utc))
        link.receive(task["site"], answer.to_json())

    with hub.client("east_chief") as client:
        task = push(client, note="Gate at dismissal")["tasks"][0]
        assert task["guard"] == "g-first"
        offered = [task["guard"]]
        for _ in range(2):
            decline(task)
            listed = client.get("/api/tasks").json()
            assert listed[1]["id"] == task["id"] and listed[1]["state"] == "declined" and listed[1]["revision"] == 2
            task = listed[0]
            assert task["state"] == "offered" and task["target"]["id"] == "gate" and task["note"] == "Gate at dismissal"
            offered.append(task["guard"])
        assert offered == ["g-first", "g-second", "g-third"]
        decline(task)  # nobody else of the role in the community: the task stays declined
        assert [t["state"] for t in client.get("/api/tasks").json()] == ["declined"] * 3
        last = hub.last_change()
        with client.stream("GET", "/api/stream", params={"after": start}) as stream:
            events = read_events(stream.iter_lines(), lambda events: events[-1]["id"] >= last)
    tasks = [(e["payload"]["guard"], e["payload"]["state"]) for e in events if e["event"] == "task"]
    assert tasks == [("g-first", "offered"), ("g-first", "declined"), ("g-second", "offered"), ("g-second", "declined"),
                     ("g-third", "offered"), ("g-third", "declined")]


def test_an_answer_from_another_guard_or_site_changes_nothing(hub: District) -> None:
    place(hub.engine, EAST, guard("g-first", 50), guard("g-second", 400))
    link = FieldLink(CONFIG, hub.engine)
    with hub.client("disp") as client:
        task = push(client)["tasks"][0]
        now = datetime.now(timezone.utc)
        link.receive(EAST, TaskAnswer(id="answer-x-1", task=task["id"], guard="g-second", answer="decline", at=now).to_json())
        link.receive(MALL, TaskAnswer(id="answer-x-2", task=task["id"], guard=task["guard"], answer="decline", at=now).to_json())
        link.receive(EAST, TaskAnswer(id="answer-x-3", task=task["id"], guard=task["guard"], answer="done", at=now).to_json())  # not accepted yet
        assert [(t["guard"], t["state"], t["revision"]) for t in client.get("/api/tasks").json()] == [("g-first", "offered", 1)]
        link.receive(EAST, TaskAnswer(id="answer-x-4", task=task["id"], guard=task["guard"], answer="accept", at=now).to_json())
        link.receive(EAST, TaskAnswer(id="answer-x-5", task=task["id"], guard=task["guard"], answer="done", at=now).to_json())
        assert [(t["guard"], t["state"], t["revision"]) for t in client.get("/api/tasks").json()] == [("g-first", "done", 3)]
