"""Patrol points at the hub, on an injected clock (no sleeps): a dwell check-in from the guards' reported positions as the
store keeps them, none for a guard only passing through; a QR scan as a field report; route windows judged late and missed,
each an `alert` change on the live stream of the point's community chief and of no other community's chief; the console's
field page (Chromium) shows tasks, those alerts and the tip queue, and a tip is decided there."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from guardlink.districtconfig import DistrictConfig
from guardlink.models import GuardReport, GuardsReport, GuardState, Location
from guardlink.patrol import ScanCheckin, TaskAnswer, Tip
from hub.accounts import Accounts, Role
from hub.api import create_app
from hub.checkins import PatrolWatch, qr_text, scanned_point
from hub.database import make_engine, migrate
from hub.field import FieldLink
from hub.field_tables import CheckinRow
from hub.store import Guards, store
from hub.tables import ChangeKind, ChangeRow
from tests.test_hub_api import FAST_HASHER, PASSWORD, read_events, serving

from conftest import chromium, needs_chromium

EAST, WEST = "e-school", "w-factory"
MONDAY_8 = datetime(2026, 5, 4, 8, 0, tzinfo=timezone.utc)  # a Monday: the routes' only window in the days looked back on
GATE = (40.0500, 111.0500)
QR = "gate-secret-7f3a"
CONFIG = DistrictConfig.model_validate({
    "district": {"id": "patroltest", "name": "Patrol test district", "timezone": "UTC"},
    "broker": "mqtt://127.0.0.1:1",  # the field link is driven by hand here: never connected
    "communities": [
        {"id": "east", "name": "East", "chief": "Chief E", "outline": [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], "sites": [EAST]},
        {"id": "west", "name": "West", "chief": "Chief W", "outline": [[39.0, 111.0], [39.1, 111.0], [39.1, 111.1]], "sites": [WEST]},
    ],
    "patrol": {
        "dwell_s": 60, "late_s": 600,
        "points": [
            {"id": "gate", "name": "School gate", "anchor": "workstation", "lat": GATE[0], "lon": GATE[1], "radius_m": 50, "qr": QR, "community": "east"},
            {"id": "yard", "name": "Bike yard", "lat": 40.0530, "lon": 111.0500, "radius_m": 40, "community": "east"},
            {"id": "mill", "name": "Mill gate", "anchor": "police_office", "lat": 39.0500, "lon": 111.0500, "radius_m": 50, "community": "west"},
        ],
        "routes": [
            {"id": "school-run", "name": "School run", "points": ["gate", "yard"], "windows": ["mon 08:00-09:00"]},
            {"id": "mill-run", "name": "Mill run", "points": ["mill"], "windows": ["mon 08:00-09:00"]},
        ],
    },
})
USERS = {"disp": (Role.DISPATCHER, []), "east_chief": (Role.CHIEF, ["east"]), "west_chief": (Role.CHIEF, ["west"])}


@dataclass
class District:
    """A migrated SQLite hub database with users, and the hub's API served over it on a real uvicorn."""

    engine: Engine
    url: str
    config: DistrictConfig

    @contextmanager
    def client(self, user: str) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            assert client.post("/api/login", json={"name": user, "password": PASSWORD}).status_code == 200
            yield client

    def last_change(self) -> int:
        with Session(self.engine) as db:
            return db.scalar(select(func.max(ChangeRow.id))) or 0


@contextmanager
def district(workdir: Path, config: DistrictConfig, users: dict[str, tuple[Role, list[str]]]) -> Iterator[District]:
    """The hub's API over a fresh database of `config` (no broker: field reports are handed to `FieldLink.receive`)."""
    engine = make_engine(f"sqlite:///{workdir / 'hub.db'}")
    migrate(engine)
    accounts = Accounts(engine, hasher=FAST_HASHER)
    for name, (role, communities) in users.items():
        accounts.add_user(name, role, communities=communities, password=PASSWORD)

    async def publish(site: str, command: object) -> None:
        raise AssertionError("no police commands here")

    try:
        with serving(create_app(engine=engine, config=config, publish_command=publish, accounts=accounts)) as url:
            yield District(engine, url, config)
    finally:
        engine.dispose()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[District]:
    with district(tmp_path, CONFIG, USERS) as served:
        yield served


class Clock:
    """The patrol watch's clock, moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now.timestamp()


def check_at(watch: PatrolWatch, clock: Clock, moment: datetime) -> None:
    """One look by the patrol watch at `moment`."""
    clock.now = moment
    watch.check()


def store_guards(engine: Engine, site: str, at: datetime, guards: list[GuardReport]) -> None:
    """A site's complete GuardsReport, stored as the hub's intake stores it."""
    with Session(engine) as db, db.begin():
        store(db, [Guards(GuardsReport(site=site, guards=guards, at=at), at)], at)


def report_positions(engine: Engine, site: str, at: datetime, positions: dict[str, tuple[tuple[float, float], datetime]]) -> None:
    """A site's available patrol guards (guard -> (lat, lon), reported at)."""
    store_guards(engine, site, at, [GuardReport(id=guard, name=guard, roles=["patrol"], state=GuardState.AVAILABLE, location=Location(lat=lat, lon=lon),
                                                position_at=when) for guard, ((lat, lon), when) in positions.items()])


def checkins(engine: Engine) -> list[tuple[str, str, str, datetime]]:
    with Session(engine) as db:
        return [(r.point, r.guard, r.method, r.at.replace(tzinfo=timezone.utc)) for r in db.scalars(select(CheckinRow).order_by(CheckinRow.at))]


def test_a_guard_dwelling_inside_a_points_radius_checks_in_once_and_one_passing_through_does_not(hub: District) -> None:
    clock = Clock(MONDAY_8)
    watch = PatrolWatch(CONFIG, hub.engine, clock)
    t0 = MONDAY_8 + timedelta(minutes=10)
    away = (40.0700, 111.0700)  # some 2.8 km off
    near_gate = (GATE[0] + 0.0002, GATE[1])  # 22 m from the post, inside its 50 m radius
    report_positions(hub.engine, EAST, t0, {"g-stay": (near_gate, t0), "g-pass": (GATE, t0)})
    check_at(watch, clock, t0 + timedelta(seconds=20))
    report_positions(hub.engine, EAST, t0 + timedelta(seconds=30), {"g-stay": (near_gate, t0), "g-pass": (away, t0 + timedelta(seconds=30))})
    for seconds in (40, 59, 61, 120, 300):
        check_at(watch, clock, t0 + timedelta(seconds=seconds))
    assert checkins(hub.engine) == [("gate", "g-stay", "dwell", t0 + timedelta(seconds=60))], "one stay, one check-in; passing through is none"
    with hub.client("east_chief") as client:
        assert [(c["guard"], c["method"]) for c in client.get("/api/patrol/checkins").json()] == [("g-stay", "dwell")]
    with hub.client("west_chief") as client:
        assert client.get("/api/patrol/checkins").json() == [], "another community's points are not shown"

    # The guard leaves and comes back: a new stay, a new check-in once it lasts.
    report_positions(hub.engine, EAST, t0 + timedelta(seconds=400), {"g-stay": (away, t0 + timedelta(seconds=400)), "g-pass": (away, t0 + timedelta(seconds=30))})
    check_at(watch, clock, t0 + timedelta(seconds=410))
    report_positions(hub.engine, EAST, t0 + timedelta(seconds=500), {"g-stay": (near_gate, t0 + timedelta(seconds=500)), "g-pass": (away, t0 + timedelta(seconds=30))})
    for seconds in (510, 530, 565):
        check_at(watch, clock, t0 + timedelta(seconds=seconds))
    assert [c[3] for c in checkins(hub.engine)] == [t0 + timedelta(seconds=60), t0 + timedelta(seconds=560)]


def test_a_stale_position_inside_a_radius_is_no_check_in(hub: District) -> None:
    clock = Clock(MONDAY_8 + timedelta(hours=1))
    report_positions(hub.engine, EAST, clock.now, {"g-old": (GATE, clock.now - timedelta(minutes=30))})
    watch = PatrolWatch(CONFIG, hub.engine, clock)
    for minutes in (0, 2, 5):
        check_at(watch, clock, MONDAY_8 + timedelta(hours=1, minutes=minutes))
    assert not [c for c in checkins(hub.engine) if c[2] == "dwell"]


def test_a_scanned_qr_code_is_one_check_in_and_a_wrong_code_is_refused(hub: District) -> None:
    gate = CONFIG.patrol.point("gate")
    assert gate is not None and qr_text(gate) == f"GLCP:gate:{QR}"
    assert scanned_point(f"GLCP:gate:{QR}", CONFIG.patrol.points) is gate
    assert scanned_point("GLCP:gate:not-the-secret", CONFIG.patrol.points) is None
    assert scanned_point(f"GLCP:yard:{QR}", CONFIG.patrol.points) is None, "a point without a QR secret takes no scan"
    assert scanned_point("https://example.com/", CONFIG.patrol.points) is None
    link = FieldLink(CONFIG, hub.engine)
    at = MONDAY_8 + timedelta(minutes=20)
    scan = ScanCheckin(id="scan-0001", guard="g-wang", code=f" GLCP:gate:{QR} ", location=Location(lat=GATE[0], lon=GATE[1]), at=at)
    link.receive(EAST, scan.to_json())
    link.receive(EAST, scan.to_json())  # the app resent it
    link.receive(EAST, ScanCheckin(id="scan-0002", guard="g-wang", code="GLCP:gate:guessed-secret", at=at).to_json())
    link.receive(EAST, b'{"schema": "guardlink.checkin/1", "id": "scan-0003", "guard": "g-wang"}')
    assert checkins(hub.engine) == [("gate", "g-wang", "qr", at)]
    assert link.refused == 2


def test_late_and_missed_route_windows_alert_only_the_chief_of_that_community(hub: District) -> None:
    clock = Clock(MONDAY_8 + timedelta(minutes=30))
    watch = PatrolWatch(CONFIG, hub.engine, clock)
    link = FieldLink(CONFIG, hub.engine)
    start = hub.last_change()
    watch.check()  # inside the window: nothing to judge yet
    link.receive(EAST, ScanCheckin(id="scan-late-1", guard="g-li", code=f"GLCP:gate:{QR}", at=MONDAY_8 + timedelta(hours=1, minutes=5)).to_json())
    check_at(watch, clock, MONDAY_8 + timedelta(hours=1, minutes=6))  # the gate: late; the yard and the mill may still be
    check_at(watch, clock, MONDAY_8 + timedelta(hours=1, minutes=11))  # past late_s: the yard and the mill are missed
    check_at(watch, clock, MONDAY_8 + timedelta(hours=2))  # judged once: no second alert
    with Session(hub.engine) as db:
        alerts = [(r.payload["alert"], r.payload["point"], r.payload["community"], r.payload["chief"])
                  for r in db.scalars(select(ChangeRow).where(ChangeRow.kind == ChangeKind.ALERT, ChangeRow.id > start).order_by(ChangeRow.id))]
    assert alerts == [("checkin_late", "gate", "east", "Chief E"), ("checkin_missed", "yard", "east", "Chief E"), ("checkin_missed", "mill", "west", "Chief W")]

    # A marker each chief may see, after the alerts: their streams are read up to it.
    link.receive(EAST, ScanCheckin(id="scan-mark-e", guard="g-li", code=f"GLCP:gate:{QR}", at=MONDAY_8 + timedelta(hours=3)).to_json())
    with Session(hub.engine) as db, db.begin():
        db.add(ChangeRow(at=MONDAY_8 + timedelta(hours=3), kind=ChangeKind.CHECKIN, key="mill", payload={"site": None, "community": "west", "point": "mill"}))
    last = hub.last_change()
    for chief, expected in (("east_chief", [("checkin_late", "gate"), ("checkin_missed", "yard")]), ("west_chief", [("checkin_missed", "mill")])):
        with hub.client(chief) as client, client.stream("GET", "/api/stream", params={"after": start}) as stream:
            marker = "gate" if chief == "east_chief" else "mill"
            events = read_events(stream.iter_lines(), lambda events, marker=marker: events[-1]["event"] == "checkin" and events[-1]["key"] == marker
                                 and events[-1]["id"] > last - 2)
        assert [(e["payload"]["alert"], e["payload"]["point"]) for e in events if e["event"] == "alert"] == expected, chief
        late = next((e for e in events if e["event"] == "alert" and e["payload"]["alert"] == "checkin_late"), None)
        if late:
            assert late["site"] is None and late["payload"]["checked_in_at"].startswith("2026-05-04T09:05")
    with hub.client("disp") as client:
        outcomes = {(w["route"], w["point"]): w["outcome"] for w in client.get("/api/patrol/windows").json()}
    assert outcomes == {("school-run", "gate"): "late", ("school-run", "yard"): "missed", ("mill-run", "mill"): "missed"}


def test_a_check_in_inside_the_window_is_on_time_and_alerts_nobody(hub: District) -> None:
    clock = Clock(MONDAY_8 + timedelta(minutes=5))
    watch = PatrolWatch(CONFIG, hub.engine, clock)
    report_positions(hub.engine, WEST, clock.now, {"g-zhao": ((39.0501, 111.0500), clock.now)})
    watch.check()
    check_at(watch, clock, MONDAY_8 + timedelta(minutes=7))  # dwelt 2 minutes: checked in at 08:06
    check_at(watch, clock, MONDAY_8 + timedelta(hours=1, minutes=30))
    with Session(hub.engine) as db:
        alerted = {r.payload["point"] for r in db.scalars(select(ChangeRow).where(ChangeRow.kind == ChangeKind.ALERT))}
    assert "mill" not in alerted and alerted == {"gate", "yard"}
    with hub.client("west_chief") as client:
        assert client.get("/api/patrol/windows").json()[0]["outcome"] == "on_time"


@needs_chromium
def test_the_console_field_page_shows_tasks_alerts_and_tips_and_a_tip_is_decided_there(hub: District, tmp_path: Path) -> None:
    pytest.importorskip("playwright.sync_api")
    clock = Clock(MONDAY_8 + timedelta(minutes=10))
    watch, link = PatrolWatch(CONFIG, hub.engine, clock), FieldLink(CONFIG, hub.engine)
    now = datetime.now(timezone.utc)
    report_positions(hub.engine, EAST, now, {"g-li": ((GATE[0] + 0.001, GATE[1]), now), "g-wang": ((GATE[0] + 0.004, GATE[1]), now)})
    with hub.client("east_chief") as client:
        task = client.post("/api/tasks", json={"kind": "patrol", "target": {"point": "gate"}, "note": "Dismissal"}).json()["tasks"][0]
    link.receive(EAST, TaskAnswer(id="answer-console-1", task=task["id"], guard=task["guard"], answer="decline", at=now).to_json())
    _, jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), (40, 80, 160), np.uint8))
    for i, text in enumerate(("A van without plates waits by the east gate <script>alert(1)</script>", "Leaflets about a fake bank helpline")):
        link.receive(EAST, Tip(id=f"tip-console-{i}", guard="g-wang", category="suspicious_vehicle" if i == 0 else "fraud", text=text,
                               photo=base64.b64encode(jpeg.tobytes()).decode() if i == 0 else None, photo_type="image/jpeg" if i == 0 else None,
                               at=now).to_json())
    for minutes in (70, 75):  # past the window and late_s: every point of the routes missed
        check_at(watch, clock, MONDAY_8 + timedelta(minutes=minutes))
    page_errors: list[str] = []
    with chromium() as browser:
        tab = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US").new_page()
        tab.on("pageerror", lambda error: page_errors.append(str(error)))
        tab.goto(f"{hub.url}/console/#/field")
        tab.fill("#login-name", "east_chief")
        tab.fill("#login-password", PASSWORD)
        tab.click("form.login button[type=submit]")
        tab.wait_for_selector("body[data-ready]", state="attached", timeout=15_000)
        tab.locator("tr[data-state='declined']").wait_for(timeout=15_000)
        assert tab.locator("tr[data-task]").count() == 2 and tab.locator("tr[data-state='offered']").count() == 1
        assert sorted(tab.locator(".field-alerts li[data-outcome]").evaluate_all("els => els.map(e => e.dataset.point)")) == ["gate", "yard"]
        assert tab.locator("li[data-tip]").count() == 2
        assert "<script>" in tab.locator("li[data-tip='tip-console-0'] .tip-text").inner_text(), "shown as text, never as markup"
        tab.locator("li[data-tip='tip-console-0'] img").evaluate("img => img.decode()")
        shot = tmp_path / "console-field.png"
        tab.screenshot(path=str(shot))
        tab.locator("li[data-tip='tip-console-1'] button.reject").click()
        tab.locator("li[data-tip='tip-console-1']").wait_for(state="detached", timeout=15_000)
        link.receive(EAST, ScanCheckin(id="scan-console-1", guard="g-li", code=f"GLCP:gate:{QR}", at=now).to_json())  # the stream refreshes the page
        tab.click("#language")
        tab.locator("h2", has_text="线索队列").wait_for(timeout=15_000)
        tab.screenshot(path=str(tmp_path / "console-field-zh.png"))
    assert not page_errors, page_errors
    with hub.client("east_chief") as client:
        assert [t["state"] for t in client.get("/api/tips").json() if t["id"] == "tip-console-1"] == ["rejected"]
