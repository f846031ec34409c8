"""The console's events and assessment pages in Debian's Chromium, against the hub's API on a real uvicorn (SQLite, no
broker: guards' answers are handed to the events store as the events service would). An event created through the API
shows with its headcount per sector; check-ins move the headcount live, without a reload; a roll call lists the silent
guards and shrinks as they answer; a viewer sees no actions; stand-down ends the event. The assessment page shows the
report's charts for a small fixed history. Screenshots are kept in the test's tmp dir (CONSOLE_EVENTS_SHOT: copy the
event page's there, e.g. docs/console-events.png)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from bench.mobilise import district as mobilise_district
from bench.mobilise import event_spec, seed_register
from guardlink.callup import Answer, GuardAnswer
from hub.accounts import Role
from hub.events_store import apply_answers, record_change
from tests.test_console import console_login
from tests.test_hub_api import PASSWORD
from tests.test_patrol import district

from conftest import chromium, needs_chromium

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium

USERS = {"disp": (Role.DISPATCHER, []), "watch": (Role.VIEWER, []), "north_chief": (Role.CHIEF, ["north"])}
WAIT_MS = 15_000
NEEDS = [{"patrol": 24, "first_aid": 4}, {"patrol": 16}, {"patrol": 12, "mediator": 3}]


def answer(engine, guards: list[str], what: Answer, sectors: dict[str, str] | None = None, roll_call: int | None = None) -> None:
    """Guards' answers as the events service applies them: the store's update and a `changes` row for the stream."""
    now = datetime.now(timezone.utc)
    with Session(engine) as session, session.begin():
        given = [GuardAnswer(guard=g, event="derby", answer=what, sector=(sectors or {}).get(g), roll_call=roll_call, at=now) for g in guards]
        for event in apply_answers(session, given, now):
            record_change(session, event, now)


@pytest.fixture
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


def login(browser, url: str, user: str, page: str, errors: list[str], viewport: dict[str, int] | None = None):
    return console_login(browser, url, user, PASSWORD, page, errors, viewport or {"width": 1440, "height": 1000})


def headcount(tab) -> str:
    return tab.locator(".summary [data-headcount]").get_attribute("data-headcount")


def test_an_event_shows_its_headcount_which_moves_live_with_check_ins_and_roll_call_answers(tmp_path: Path, browser) -> None:
    config = mobilise_district(12, communities=4, district_id="evconsole")
    with district(tmp_path, config, USERS) as hub:
        seed_register(hub.engine, 400, 4, config.sites(), datetime.now(timezone.utc).date())
        starts = datetime.now(timezone.utc) - timedelta(minutes=20)
        spec = event_spec("derby", NEEDS, starts, briefing="Vests on; report to the sector lead at the tent.")
        with hub.client("disp") as client:
            created = client.post("/api/events", json=spec.model_dump(mode="json"))
            assert created.status_code == 201, created.text
            guards = client.get("/api/events/derby/guards").json()
        needed = sum(sum(n.values()) for n in NEEDS)
        assert len(guards) == needed
        # Sector 1's patrol all there, its first aiders half there and half coming; sector 2 one short; sector 3 short.
        of: dict[tuple[str, str], list[str]] = {}
        for g in guards:
            of.setdefault((g["sector"], g["role"]), []).append(g["guard"])
        sector_of = {g["guard"]: g["sector"] for g in guards}
        arrive = of["s1", "patrol"] + of["s1", "first_aid"][:2] + of["s2", "patrol"][:15] + of["s3", "patrol"][:5] + of["s3", "mediator"][:1]
        answer(hub.engine, arrive, Answer.ARRIVED, sector_of)
        answer(hub.engine, of["s1", "first_aid"][2:] + of["s3", "patrol"][5:8] + of["s3", "mediator"][1:], Answer.CONFIRM)
        answer(hub.engine, of["s3", "patrol"][8:11], Answer.DECLINE)
        late = of["s2", "patrol"][15]

        errors: list[str] = []
        tab = login(browser, hub.url, "disp", "#/events", errors)
        row = tab.locator("tr[data-event='derby']")
        row.wait_for(timeout=WAIT_MS)
        assert "City marathon" in row.inner_text() and f"{len(arrive)} / {needed}" in row.inner_text()
        tab.screenshot(path=str(tmp_path / "events-list.png"))

        row.click()
        tab.locator(".event-page[data-loaded]").wait_for(timeout=WAIT_MS)
        assert headcount(tab) == f"{len(arrive)}/{needed}"
        fills = dict(tab.locator("table.sectors tr[data-sector]").evaluate_all("rows => rows.map(r => [r.dataset.sector + '/' + r.dataset.role, r.dataset.fill])"))
        assert fills == {"s1/patrol": "full", "s1/first_aid": "coming", "s2/patrol": "short", "s3/patrol": "short", "s3/mediator": "coming"}
        assert tab.locator("path[data-sector]").count() == 3, "every sector on the map"
        assert tab.locator("path[data-sector='s3']").get_attribute("data-fill") == "short"
        tab.evaluate("window.notReloaded = true")

        # One more check-in in sector 2: the headcount moves without a reload.
        answer(hub.engine, [late], Answer.ARRIVED, sector_of)
        tab.wait_for_function(f"document.querySelector('.summary [data-headcount]').dataset.headcount === '{len(arrive) + 1}/{needed}'", timeout=WAIT_MS)
        assert tab.locator("tr[data-sector='s2'][data-role='patrol']").get_attribute("data-fill") == "full"
        assert tab.locator("path[data-sector='s2']").get_attribute("data-fill") == "full"
        assert tab.evaluate("window.notReloaded") is True

        # A roll call: every guard there or coming is asked; the silent ones are listed, and shrink as they answer.
        tab.click("button.roll-call-start")
        result = tab.locator(".roll-call-result[data-asked]")
        result.wait_for(timeout=WAIT_MS)
        asked = int(result.get_attribute("data-asked"))
        assert asked == len(arrive) + 1 + 7 and int(result.get_attribute("data-silent")) == asked
        answer(hub.engine, arrive[:30], Answer.PRESENT, roll_call=1)
        tab.wait_for_function(f"document.querySelector('.roll-call-result').dataset.silent === '{asked - 30}'", timeout=WAIT_MS)
        assert tab.locator("ul.silent li").count() == asked - 30
        assert arrive[0] not in tab.locator("ul.silent").inner_text() and arrive[30] in tab.locator("ul.silent").inner_text()
        tab.locator("button[data-state='declined']").click()
        assert tab.locator("table.event-guards tbody tr").count() == 3
        tab.locator(".guard-filter button").first.click()
        shot = tmp_path / "console-events.png"
        tab.screenshot(path=str(shot))
        if os.environ.get("CONSOLE_EVENTS_SHOT"):
            shutil.copy(shot, os.environ["CONSOLE_EVENTS_SHOT"])

        # A viewer watches the same event: no actions.
        viewer = login(browser, hub.url, "watch", "#/events/derby", errors)
        viewer.locator(".event-page[data-loaded]").wait_for(timeout=WAIT_MS)
        assert viewer.locator(".event-actions button").count() == 0 and headcount(viewer) == f"{len(arrive) + 1}/{needed}"

        # In Chinese, then the stand-down ends the event on the dispatcher's page.
        tab.click("#language")
        tab.locator("h2", has_text="各区域、各岗位人数").wait_for(timeout=WAIT_MS)
        tab.locator(".event-page[data-loaded] .roll-call-result").wait_for(timeout=WAIT_MS)
        tab.screenshot(path=str(tmp_path / "console-events-zh.png"))
        tab.once("dialog", lambda dialog: dialog.accept())
        tab.click("button.stand-down")
        tab.locator(".summary .stat.event-ended").wait_for(timeout=WAIT_MS)
        assert tab.locator(".event-actions button").count() == 0
        with hub.client("disp") as client:
            assert client.get("/api/events/derby").json()["state"] == "ended"
    assert not errors, errors


def test_the_assessment_page_shows_the_reports_charts_and_links_its_downloads(tmp_path: Path, browser) -> None:
    from tests.test_assessment import CONFIG, fixed_history

    with district(tmp_path, CONFIG, USERS) as hub:
        fixed_history(hub.engine)
        errors: list[str] = []
        tab = login(browser, hub.url, "disp", "#/assessment/2026-11", errors, {"width": 1280, "height": 1000})
        frame = tab.locator("iframe.assessment-report[data-period='2026-11']")
        frame.wait_for(timeout=WAIT_MS)
        report = tab.frame_locator("iframe.assessment-report")
        assert report.locator("svg").count() == 5
        assert "Guard assessment · 2026-11" in report.locator("h1").inner_text()
        assert tab.locator("a.download[data-format='csv']").get_attribute("href") == "/api/reports/assessment?period=2026-11&format=csv"
        tab.screenshot(path=str(tmp_path / "console-assessment.png"))

        # A chief: only their community, no "all".
        chief = login(browser, hub.url, "north_chief", "#/assessment/2026-11", errors)
        chief.locator("iframe.assessment-report[data-community='north']").wait_for(timeout=WAIT_MS)
        assert chief.locator("#assessment-community option").evaluate_all("os => os.map(o => o.value)") == ["north"]
        assert "community north" in chief.frame_locator("iframe.assessment-report").locator(".sub").inner_text()
    assert not errors, errors
