"""The police console in Debian's Chromium (Playwright), against a real `guardlink hub` (SQLite), a real mosquitto and a
real `guardlink edge` running the example school: presses at the edge reach the board and the map, an acknowledgement
clicked in one browser reaches the edge and comes back to another, a chief sees only their community, the page rides
out a hub restart, and a killed edge shows offline. Screenshots are kept in the test's tmp dir (`screenshots/`)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from argon2 import PasswordHasher

from bench.servers import running_mosquitto, stop_process
from device_drivers.registry import DRIVERS
from device_drivers.simulators import SiteSimulator
from edge.embedded_broker import free_tcp_port
from guardlink import topics
from guardlink.ids import uuid7
from guardlink.models import Escalation, EscalationStatus, Evidence, Incident, IncidentKind, Location, Severity, SiteRef, iso
from guardlink.siteconfig import BrokerUrl, load_site
from hub.accounts import Accounts, Role
from hub.database import make_engine, migrate

from conftest import chromium, needs_chromium

playwright_api = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parent.parent
SCHOOL_FILE = REPO / "firmware_configs" / "sites" / "school.yaml"
SCHOOL = "hohhot-no3-primary"
MALL = "hailar-mall"  # a second site, in the other community, played by a plain MQTT client
PASSWORD = "console test password"
USERS = {"desk": (Role.DISPATCHER, []), "zhao": (Role.CHIEF, ["dongjie"]), "watch": (Role.VIEWER, [])}
WAIT_MS = 15_000

pytestmark = needs_chromium


def district_yaml(port: int, broker: BrokerUrl, database: Path) -> str:
    return f"""
district: {{id: xincheng, name: Xincheng District, timezone: Asia/Shanghai}}
broker: {broker}
database: sqlite:///{database}
listen: 127.0.0.1:{port}
communities:
  - id: dongjie
    name: Dongjie Community
    chief: Zhao Jun
    outline: [[40.8465, 111.7455], [40.8465, 111.7570], [40.8380, 111.7570], [40.8380, 111.7455]]
    sites: [{SCHOOL}]
  - id: hailar-east
    name: Hailar East Road Community
    chief: Bai Lin
    outline: [[40.8600, 111.7600], [40.8600, 111.7750], [40.8480, 111.7750], [40.8480, 111.7600]]
    sites: [{MALL}]
console: {{ack_within_s: 60}}
"""


class Process:
    """A `guardlink ...` subprocess logging to a file; `wait_for(text)` reads its log."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args, self.log = args, log
        self.proc: subprocess.Popen | None = None

    def start(self, ready: str, timeout_s: float = 30) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cli", *self.args], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout_s
        while ready not in self.log.read_text(errors="replace")[offset:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.args[0]} did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@dataclass
class District:
    url: str
    broker: BrokerUrl
    hub: Process
    edge: Process
    sim: SiteSimulator
    mall: mqtt.Client
    shots: Path
    browser: object

    def login(self, user: str = "desk", page: str = "#/board"):
        """A new browser context logged in through the console's form; the page shows `page`."""
        return console_login(self.browser, self.url, user, PASSWORD, page, errors, {"width": 1440, "height": 900})

    def shot(self, tab, name: str) -> Path:
        path = self.shots / f"{name}.png"
        tab.screenshot(path=str(path), full_page=False)
        return path

    @contextmanager
    def api(self, user: str = "desk") -> Iterator[httpx.Client]:
        """An API client logged in as `user`."""
        with httpx.Client(base_url=self.url, timeout=10) as client:
            assert client.post("/api/login", json={"name": user, "password": PASSWORD}).status_code == 200
            yield client

    def press(self, device: str = "btn-gate") -> str:
        """A panic press at the real edge; the id of the escalation it made, once the hub has it."""
        with self.api() as client:
            before = {i["id"] for i in client.get("/api/incidents", params={"site": SCHOOL, "limit": 500}).json()["items"]}
            self.sim.press(device)
            found = wait_for(lambda: [i["id"] for i in client.get("/api/incidents", params={"site": SCHOOL, "limit": 500}).json()["items"] if i["id"] not in before],
                             "the press to reach the hub")
            return found[0]

    def mall_incident(self, kind: IncidentKind = IncidentKind.PANIC, severity: Severity = Severity.CRITICAL, age_s: float = 0.0,
                      evidence: list[Evidence] | None = None) -> str:
        """An escalation from the mall site, published as its edge would (QoS 1) at the district broker."""
        at = time.time() - age_s
        doc = Escalation(
            id=uuid7(), revision=1, sequence=int(time.time() * 1000),
            site=SiteRef(id=MALL, name="Hailar Road Mall", district="xincheng", location=Location(lat=40.8540, lon=111.7680)),
            incident=Incident(kind=kind, severity=severity, device="btn-east", zone="east-entrance", location=Location(lat=40.8542, lon=111.7684), detected_at=iso(at)),
            assignments=[], status=EscalationStatus.DISPATCHED if kind is not IncidentKind.TEST else EscalationStatus.REPORTED,
            guards_needed=0 if kind is IncidentKind.TEST else 1, issued_at=iso(at), evidence=evidence or [],
        )
        self.mall.publish(topics.police_escalations("xincheng", MALL), doc.model_dump_json(by_alias=True), qos=1).wait_for_publish(10)
        return doc.id


errors: list[str] = []


def console_login(browser, url: str, user: str, password: str, page: str, page_errors: list[str], viewport: dict[str, int]):
    """A new browser context logged in as `user` through the console's form; the page shows `page`; the page's script
    errors go to `page_errors`."""
    tab = browser.new_context(viewport=viewport, locale="en-US").new_page()
    tab.on("pageerror", lambda error: page_errors.append(f"{user}: {error}"))
    tab.goto(f"{url}/console/{page}")
    tab.fill("#login-name", user)
    tab.fill("#login-password", password)
    tab.click("form.login button[type=submit]")
    tab.wait_for_selector("body[data-ready]", state="attached", timeout=WAIT_MS)
    return tab


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = 15.0) -> object:
    """Poll until `condition()` is truthy; its value. Fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)
    return value


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Iterator[District]:
    workdir = tmp_path_factory.mktemp("console")
    shots = workdir / "screenshots"
    shots.mkdir()
    port = free_tcp_port()
    with running_mosquitto(workdir / "mosquitto") as broker:
        district_file = workdir / "district.yaml"
        district_file.write_text(district_yaml(port, broker, workdir / "hub.db"))
        engine = make_engine(f"sqlite:///{workdir / 'hub.db'}")
        migrate(engine)
        accounts = Accounts(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        for name, (role, communities) in USERS.items():
            accounts.add_user(name, role, communities=communities, password=PASSWORD)
        engine.dispose()
        hub = Process(["hub", "--config", str(district_file)], workdir / "hub.log")
        edge = Process(["edge", "--config", str(SCHOOL_FILE), "--broker", str(broker), "--police-broker", str(broker), "--outbox", str(workdir / "outbox.db")],
                       workdir / "edge.log")
        mall = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"mall-{uuid7()[-8:]}")
        try:
            hub.start("guardlink hub: district")
            edge.start("event=edge_ready")
            mall.connect(broker.host, broker.port)
            mall.loop_start()
            mall.publish(topics.police_site_status("xincheng", MALL), json.dumps({"state": "online", "every_s": 3600}), qos=1, retain=True).wait_for_publish(10)
            with SiteSimulator(load_site(SCHOOL_FILE, DRIVERS.keys()), broker, seed=3) as sim, chromium() as browser:
                sim.report_positions()
                yield District(f"http://127.0.0.1:{port}", broker, hub, edge, sim, mall, shots, browser)
        finally:
            mall.loop_stop()
            mall.disconnect()
            edge.stop()
            hub.stop()


@pytest.fixture(autouse=True)
def no_page_errors() -> Iterator[None]:
    errors.clear()
    yield
    assert not errors, f"the console threw: {errors}"


def board_row(tab, incident: str):
    return tab.locator(f"table.board tr[data-id='{incident}']")


# --- tests, in the order a shift would meet them -------------------------------------------------------------------------


def test_login_lands_on_the_board_and_logout_returns_to_the_login(district: District) -> None:
    context = district.browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
    tab = context.new_page()
    tab.goto(district.url + "/")
    tab.wait_for_selector("form.login")
    district.shot(tab, "login")
    tab.fill("#login-name", "desk")
    tab.fill("#login-password", "not the password")
    tab.click("form.login button[type=submit]")
    tab.wait_for_selector("form.login .error:not([hidden])")
    assert "Wrong user name or password" in tab.inner_text("form.login .error")

    tab.fill("#login-password", PASSWORD)
    tab.click("form.login button[type=submit]")
    tab.wait_for_selector("body[data-ready]", state="attached")
    assert tab.url.endswith("#/board")
    assert "desk" in tab.inner_text("#who") and "dispatcher" in tab.inner_text("#who")
    assert tab.locator("section.board-page").count() == 1

    tab.click("#logout")
    tab.wait_for_selector("form.login")
    assert "logged out" in tab.inner_text("form.login .error")
    tab.reload()
    tab.wait_for_selector("form.login")  # the session is gone, not just hidden
    assert context.request.get(f"{district.url}/api/me").status == 401
    context.close()


def test_a_press_at_the_edge_appears_on_the_board_and_on_the_map(district: District) -> None:
    tab = district.login()
    incident = district.press("btn-gate")
    row = board_row(tab, incident)
    row.wait_for(timeout=WAIT_MS)
    assert "Panic alarm" in row.inner_text() and "CRITICAL" in row.inner_text()  # at once, from the stream's change
    row = tab.locator(f"table.board tr[data-id='{incident}'][data-provisional=false]")  # then with its details
    row.wait_for(timeout=WAIT_MS)
    assert "Panic alarm" in row.inner_text() and "Hohhot No. 3 Primary School" in row.inner_text() and "main-gate" in row.inner_text()
    assert "alarm" in row.get_attribute("class")  # critical and nobody acknowledged it: highlighted
    wait_for(lambda: int(tab.evaluate("document.body.dataset.alerts || 0")) >= 1, "the alert to sound")
    district.shot(tab, "board-after-press")

    tab.click("a[data-nav=map]")
    tab.wait_for_selector(f"path[data-incident='{incident}']", state="attached", timeout=WAIT_MS)
    tab.wait_for_selector(f"path[data-site='{SCHOOL}'][data-online=true]", state="attached", timeout=WAIT_MS)
    wait_for(lambda: int(tab.get_attribute("#map", "data-guards") or 0) >= 3, "guards on the map")
    assert tab.locator(".leaflet-tile").count() == 0  # no tile server configured: nothing fetched from outside
    district.shot(tab, "map")
    tab.click(f"path[data-incident='{incident}']")
    tab.wait_for_selector(".incident-head[data-revision]")
    assert incident in tab.url
    tab.context.close()


def test_acknowledging_in_the_browser_reaches_the_edge_and_shows_in_another_browser(district: District) -> None:
    incident = district.press("btn-hall")
    acting = district.login(page=f"#/incident/{incident}")
    watching = district.login()
    viewer = district.login("watch")
    board_row(watching, incident).wait_for(timeout=WAIT_MS)
    board_row(viewer, incident).wait_for(timeout=WAIT_MS)
    assert viewer.locator("button.ack").count() == 0  # a viewer gets no action buttons

    acting.click("button[data-action=acknowledge]")
    acting.wait_for_selector(".result.ok")
    # the edge makes a new revision with acknowledged_by; it comes back through the hub to both browsers
    acting.wait_for_selector(".incident-head .acked", timeout=WAIT_MS)
    assert "desk" in acting.inner_text(".incident-head .acked")
    row = board_row(watching, incident)
    watching.wait_for_function(f"document.querySelector(\"tr[data-id='{incident}'] .acked\") !== null", timeout=WAIT_MS)
    assert "✓ desk" in row.inner_text() and "alarm" not in row.get_attribute("class")
    timeline = acting.inner_text(".timeline")
    assert "acknowledged by desk" in timeline and "desk" in acting.locator(".timeline li.cmd").first.inner_text()
    with district.api() as client:
        detail = client.get(f"/api/incidents/{incident}").json()
    assert detail["acknowledged_by"] == "desk" and detail["timeline"][-1]["acknowledged_by"] == "desk"  # made by the edge
    district.shot(acting, "incident")

    acting.fill(".note-input", "pupil's prank, teacher on site")
    acting.click("button[data-action=close]")
    board_row(watching, incident).wait_for(state="detached", timeout=WAIT_MS)  # closed at the edge: off every board
    acting.wait_for_selector(".incident-head[data-status=closed]", timeout=WAIT_MS)
    assert "pupil's prank, teacher on site" in acting.inner_text(".timeline")
    assert acting.locator("button[data-action=close]").count() == 0  # nothing more to command
    for tab in (acting, watching, viewer):
        tab.context.close()


def test_evidence_not_uploaded_yet_says_so(district: District) -> None:
    at = iso(time.time())
    clip = Evidence(kind="clip", camera="cam-east", path="/var/lib/guardlink/evidence/a.mp4", media_type="video/mp4", bytes=1000,
                    sha256="ab" * 32, start=at, end=at)
    incident = district.mall_incident(evidence=[clip])
    tab = district.login(page=f"#/incident/{incident}")
    tab.wait_for_selector(".evidence-item.clip .not-uploaded")
    assert "Not uploaded yet" in tab.inner_text(".evidence-item.clip") and "cam-east" in tab.inner_text(".evidence-item.clip")
    assert tab.locator(".evidence video").count() == 0
    tab.context.close()


def test_a_chief_sees_only_their_community(district: District) -> None:
    overdue = district.mall_incident(age_s=150)
    test_press = district.mall_incident(IncidentKind.TEST, Severity.INFO)
    desk = district.login()
    board_row(desk, overdue).wait_for(timeout=WAIT_MS)
    board_row(desk, test_press).wait_for(timeout=WAIT_MS)
    assert "overdue" in board_row(desk, overdue).get_attribute("class")  # nobody acknowledged it in 60 s: red
    age = board_row(desk, overdue).locator("td.age")
    assert re.fullmatch(r"2:\d\d", age.inner_text())  # detected 150 s ago, in the district's time
    desk.wait_for_function("([cell, before]) => cell.textContent !== before", arg=[age.element_handle(), age.inner_text()])  # it ticks
    assert "TEST" in board_row(desk, test_press).inner_text() and "test" in board_row(desk, test_press).get_attribute("class")
    fresh = district.press("btn-yard")
    board_row(desk, fresh).wait_for(timeout=WAIT_MS)
    district.shot(desk, "board")

    chief = district.login("zhao")
    board_row(chief, fresh).wait_for(timeout=WAIT_MS)
    assert board_row(chief, overdue).count() == 0 and board_row(chief, test_press).count() == 0
    assert all(site == SCHOOL for site in chief.eval_on_selector_all("table.board tbody tr", "rows => rows.map(r => guardlinkConsole.state.incidents.get(r.dataset.id).site)"))
    chief.click("a[data-nav=map]")
    chief.wait_for_selector(f"path[data-site='{SCHOOL}']", state="attached")
    assert chief.locator(f"path[data-site='{MALL}']").count() == 0
    assert chief.locator(".community-label").all_inner_texts() == ["Dongjie Community"]
    chief.click("a[data-nav=sites]")
    chief.wait_for_selector(f"tr[data-site='{SCHOOL}']")
    assert chief.locator(f"tr[data-site='{MALL}']").count() == 0
    for tab in (desk, chief):
        tab.context.close()


def test_switching_to_chinese_translates_the_page(district: District) -> None:
    tab = district.login()
    tab.click("#language")
    tab.wait_for_function("document.documentElement.lang === 'zh-CN'")
    assert tab.inner_text("a[data-nav=board]").startswith("实时警情")
    assert "紧急" in tab.inner_text("table.board")
    assert re.search(r"\d{2}:\d{2}:\d{2}", tab.inner_text("#clock"))
    district.shot(tab, "board-zh")
    tab.click("#language")
    tab.wait_for_function("document.documentElement.lang === 'en'")
    tab.context.close()


def test_the_page_survives_a_hub_restart_and_shows_what_happened_meanwhile(district: District) -> None:
    tab = district.login()
    tab.evaluate("window.sameDocument = true")
    district.hub.stop()
    tab.wait_for_selector("#banner:not([hidden])", timeout=WAIT_MS)
    assert "Reconnecting" in tab.inner_text("#banner")
    district.shot(tab, "reconnecting")
    district.sim.press("btn-gate")  # the edge holds it; the broker queues it for the hub's session
    district.hub.start("guardlink hub: district")
    tab.wait_for_selector("#banner[hidden]", state="attached", timeout=WAIT_MS)
    with district.api() as client:
        newest = client.get("/api/incidents", params={"site": SCHOOL, "limit": 1}).json()["items"][0]["id"]
    board_row(tab, newest).wait_for(timeout=WAIT_MS)
    assert tab.evaluate("window.sameDocument") is True  # caught up without a reload
    tab.context.close()


def test_a_site_whose_edge_is_killed_shows_offline(district: District) -> None:
    tab = district.login(page="#/sites")
    tab.wait_for_selector(f"tr[data-site='{SCHOOL}'][data-online=true]")
    district.edge.kill()
    tab.wait_for_selector(f"tr[data-site='{SCHOOL}'][data-online=false]", timeout=WAIT_MS)
    assert tab.locator("table.sites tbody tr").first.get_attribute("data-online") == "false"  # offline on top
    assert "OFFLINE" in tab.inner_text(f"tr[data-site='{SCHOOL}']")
    district.shot(tab, "sites")
    tab.click("a[data-nav=map]")
    tab.wait_for_selector(f"path[data-site='{SCHOOL}'][data-online=false]", state="attached", timeout=WAIT_MS)
    tab.click("a[data-nav=guards]")
    tab.wait_for_selector("table.guards tbody tr")
    district.shot(tab, "guards")
    tab.context.close()
