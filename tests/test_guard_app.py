"""The guard app in Debian's Chromium (phone viewport), served by a real `guardlink edge` (the example school with the app
on), with a real `guardlink hub` and mosquitto: a task pushed at the hub reaches the guard's app and the acceptance comes
back to the hub; a panic offer answered in the app makes the escalation's revision at the hub; a QR check-in and a tip
with a photo reach the hub; a hostile tip is refused or neutralised. Screenshots in the test's tmp dir (`screenshots/`).
Also: reports queued at an edge whose district broker is away survive the edge being killed, and go out after its restart."""

from __future__ import annotations

import base64
import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from argon2 import PasswordHasher

from bench.servers import running_mosquitto
from device_drivers.registry import DRIVERS
from device_drivers.simulators import SiteSimulator
from edge.embedded_broker import free_tcp_port
from edge.guard_app_queue import FieldQueue, field_queue_path
from guardlink import topics
from guardlink.siteconfig import BrokerUrl, load_site
from hub.accounts import Accounts, Role
from hub.database import make_engine, migrate
from tests.test_console import PASSWORD, SCHOOL, SCHOOL_FILE, Process, district_yaml, wait_for

from conftest import chromium, needs_chromium

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium

REPO = Path(__file__).resolve().parent.parent
PINS = {"g-li": "1111", "g-zhang": "2222", "g-wang": "3333", "g-zhao": "4444"}
QR = "gate-secret-7f3a"
WAIT_MS = 15_000
PATROL = f"""
patrol:
  dwell_s: 1
  check_every_s: 0.5
  points:
    - {{id: gate-post, name: School gate post, anchor: workstation, lat: 40.84245, lon: 111.75042, radius_m: 80, qr: {QR}, community: dongjie}}
"""


@dataclass
class Rig:
    hub_url: str
    app_url: str
    sim: SiteSimulator
    browser: object
    shots: Path

    @contextmanager
    def api(self) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=self.hub_url, timeout=10) as client:
            assert client.post("/api/login", json={"name": "desk", "password": PASSWORD}).status_code == 200
            yield client

    def phone(self, guard: str):
        """A phone-sized browser logged in to the guard app as `guard`."""
        context = self.browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True, locale="en-US")
        tab = context.new_page()
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto(self.app_url)
        tab.fill("#login-guard", guard)
        tab.fill("#login-pin", PINS[guard])
        tab.click("#login-form button[type=submit]")
        tab.wait_for_selector("body[data-ready]", state="attached", timeout=WAIT_MS)
        return tab

    def shot(self, tab, name: str) -> Path:
        path = self.shots / f"{name}.png"
        tab.screenshot(path=str(path))
        return path


errors: list[str] = []


def school_with_app(workdir: Path, app_port: int) -> Path:
    """The example school's site file with the guard app on `app_port`, written into `workdir`."""
    site = yaml.safe_load(SCHOOL_FILE.read_text())
    site["guard_app"] = {"listen": f"127.0.0.1:{app_port}", "pins": PINS}
    site_file = workdir / "school.yaml"
    site_file.write_text(yaml.safe_dump(site, allow_unicode=True))
    shutil.copytree(REPO / "firmware_configs" / "templates", workdir.parent / "templates", dirs_exist_ok=True)  # the site file's templates
    return site_file


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    workdir = tmp_path_factory.mktemp("guard-app")
    shots = workdir / "screenshots"
    shots.mkdir()
    port, app_port = free_tcp_port(), free_tcp_port()
    site_file = school_with_app(workdir, app_port)
    with running_mosquitto(workdir / "mosquitto") as broker:
        district_file = workdir / "district.yaml"
        district_file.write_text(district_yaml(port, broker, workdir / "hub.db") + PATROL)
        engine = make_engine(f"sqlite:///{workdir / 'hub.db'}")
        migrate(engine)
        Accounts(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)).add_user("desk", Role.DISPATCHER, password=PASSWORD)
        engine.dispose()
        hub = Process(["hub", "--config", str(district_file)], workdir / "hub.log")
        edge = Process(["edge", "--config", str(site_file), "--broker", str(broker), "--police-broker", str(broker), "--outbox", str(workdir / "outbox.db")],
                       workdir / "edge.log")
        try:
            hub.start("guardlink hub: district")
            edge.start("event=guard_app_listening")
            with SiteSimulator(load_site(site_file, DRIVERS.keys()), broker, seed=5) as sim, chromium() as browser:
                sim.report_positions()
                yield Rig(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{app_port}", sim, browser, shots)
        finally:
            edge.stop()
            hub.stop()


@pytest.fixture(autouse=True)
def no_page_errors() -> Iterator[None]:
    errors.clear()
    yield
    assert not errors, f"the guard app threw: {errors}"


def placed_guards(client: httpx.Client) -> list[dict]:
    return [g for g in client.get("/api/guards", params={"site": SCHOOL}).json() if g.get("lat") is not None]


def test_a_task_pushed_at_the_hub_reaches_the_guards_app_and_the_acceptance_comes_back(rig: Rig) -> None:
    with rig.api() as client:
        wait_for(lambda: len(placed_guards(client)) >= 2, "the school's guards to be placed at the hub", 30)
        pushed = client.post("/api/tasks", json={"kind": "patrol", "target": {"point": "gate-post"}, "guards": 1, "note": "Evening school run"})
        assert pushed.status_code == 201, pushed.text
        task = pushed.json()["tasks"][0]
        assert "patrol" in next(g for g in placed_guards(client) if g["id"] == task["guard"])["roles"]
        tab = rig.phone(task["guard"])
        card = tab.locator(f"li[data-task='{task['id']}']")
        card.wait_for(timeout=WAIT_MS)
        assert "School gate post" in card.inner_text()
        rig.shot(tab, "task-offered")
        card.locator("button.accept").click()
        wait_for(lambda: client.get("/api/tasks").json()[0]["state"] == "accepted", "the acceptance at the hub")
        tab.locator(f"li[data-task='{task['id']}'] .badge.accepted").wait_for(timeout=WAIT_MS)
        rig.shot(tab, "task-accepted")


def test_a_panic_offer_answered_in_the_app_makes_the_revision_at_the_hub(rig: Rig) -> None:
    with rig.api() as client:
        rig.sim.press("btn-gate")
        incident = wait_for(lambda: [i for i in client.get("/api/incidents", params={"site": SCHOOL, "open": True}).json()["items"]
                                     if i["kind"] == "panic"], "the press at the hub")[0]
        offered = wait_for(lambda: [a for a in client.get(f"/api/incidents/{incident['id']}").json()["timeline"][-1]["assignments"]
                                    if a["state"] == "offered"], "an offer")[0]
        tab = rig.phone(offered["guard"])
        card = tab.locator(f"li[data-escalation='{incident['id']}']")
        card.wait_for(timeout=WAIT_MS)
        rig.shot(tab, "incident-offered")
        card.locator("button.accept").click()
        wait_for(lambda: any(a["guard"] == offered["guard"] and a["state"] == "assigned"
                             for a in client.get(f"/api/incidents/{incident['id']}").json()["timeline"][-1]["assignments"]), "the acceptance at the hub")
        tab.locator(f"li[data-escalation='{incident['id']}'] button.accept").click()  # on scene
        wait_for(lambda: client.get(f"/api/incidents/{incident['id']}").json()["status"] == "on_scene", "on scene at the hub")


def test_a_qr_check_in_and_a_tip_with_a_photo_reach_the_hub_in_chinese(rig: Rig, tmp_path: Path) -> None:
    photo = tmp_path / "bike.jpg"
    image = np.full((600, 800, 3), 200, np.uint8)
    cv2.rectangle(image, (200, 150), (600, 450), (40, 80, 160), -1)
    cv2.imwrite(str(photo), image)
    with rig.api() as client:
        tab = rig.phone("g-wang")
        tab.click("#lang")
        assert tab.locator("#scan").inner_text() == "扫描打卡点二维码"
        tab.fill("#code", f"GLCP:gate-post:{QR}")
        tab.click("#code-form button[type=submit]")
        wait_for(lambda: any(c["method"] == "qr" and c["guard"] == "g-wang" for c in client.get("/api/patrol/checkins").json()), "the QR check-in")
        tab.select_option("#tip-category", "suspicious_vehicle")
        tab.fill("#tip-text", "A motorbike without plates waits at the gate <script>alert(1)</script>")
        tab.set_input_files("#tip-photo", str(photo))
        rig.shot(tab, "tip-form")
        tab.click("#tip-form button[type=submit]")
        tip = wait_for(lambda: client.get("/api/tips", params={"state": "new"}).json(), "the tip in the queue")[0]
        assert tip["category"] == "suspicious_vehicle" and tip["guard"] == "g-wang" and tip["photo"]
        image = client.get(tip["photo"])
        assert image.headers["content-type"] == "image/jpeg" and image.content.startswith(b"\xff\xd8\xff")
        assert "sandbox" in image.headers["content-security-policy"]
        assert client.post(f"/api/tips/{tip['id']}/decision", json={"decision": "accept"}).json()["state"] == "accepted"
        rig.shot(tab, "checkin-and-tip-zh")


def test_hostile_tips_are_refused_at_the_app(rig: Rig) -> None:
    token = httpx.post(f"{rig.app_url}/api/login", json={"guard": "g-li", "pin": PINS["g-li"]}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    big = "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff" + b"\0" * (3 * 1024 * 1024)).decode()
    tip = {"id": "hostile-1", "category": "other", "text": "x", "photo": big}
    assert httpx.post(f"{rig.app_url}/api/tips", json=tip, headers=headers, timeout=30).status_code == 413
    html = {"id": "hostile-2", "category": "other", "text": "x", "photo": "data:text/html;base64," + base64.b64encode(b"<script>1</script>").decode()}
    assert httpx.post(f"{rig.app_url}/api/tips", json=html, headers=headers).status_code == 422
    assert httpx.post(f"{rig.app_url}/api/login", json={"guard": "g-li", "pin": "9999"}).status_code == 401
    assert httpx.get(f"{rig.app_url}/api/state", headers={"Authorization": "Bearer g-li.forged"}).status_code == 401


def test_reports_queued_at_the_edge_survive_a_kill_and_reach_the_district_broker_after_the_restart(tmp_path: Path) -> None:
    app_port, police_port = free_tcp_port(), free_tcp_port()
    site_file = school_with_app(tmp_path, app_port)
    app = f"http://127.0.0.1:{app_port}"
    with running_mosquitto(tmp_path / "site-broker") as site_broker:
        police = BrokerUrl(host="127.0.0.1", port=police_port)  # nobody listens there yet: the district link is down
        edge = Process(["edge", "--config", str(site_file), "--broker", str(site_broker), "--police-broker", str(police),
                        "--outbox", str(tmp_path / "outbox.db")], tmp_path / "edge.log")
        try:
            edge.start("event=guard_app_listening")
            token = httpx.post(f"{app}/api/login", json={"guard": "g-li", "pin": PINS["g-li"]}).json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            tip = {"id": "tip-before-kill", "category": "hazard", "text": "A loose manhole cover by the east gate"}
            scan = {"id": "scan-before-kill", "code": f"GLCP:gate-post:{QR}"}
            assert httpx.post(f"{app}/api/tips", json=tip, headers=headers).json() == {"status": "queued"}
            assert httpx.post(f"{app}/api/checkin", json=scan, headers=headers).json() == {"status": "queued"}
            edge.kill()  # SIGKILL: nothing is flushed on the way out
            assert len(FieldQueue(field_queue_path(tmp_path / "outbox.db"))) == 2, "both reports are on disk"
            with running_mosquitto(tmp_path / "police-broker", police_port) as police, listening(police, topics.police_field("xincheng", SCHOOL)) as heard:
                edge.start("event=guard_app_listening")
                wait_for(lambda: len(heard) >= 2, "the queued reports at the district broker", 30)
                assert [(r["schema"], r["id"]) for r in heard] == [("guardlink.tip/1", "tip-before-kill"), ("guardlink.checkin/1", "scan-before-kill")]
                assert heard[0]["guard"] == "g-li" and heard[0]["text"] == tip["text"]
                wait_for(lambda: len(FieldQueue(field_queue_path(tmp_path / "outbox.db"))) == 0, "the queue to drain once the broker took them")
        finally:
            edge.stop()


@contextmanager
def listening(broker: BrokerUrl, topic: str) -> Iterator[list[dict]]:
    """The JSON documents published on `topic`, as they arrive (subscribed when this enters)."""
    heard: list[dict] = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="field-listener")
    client.on_message = lambda _c, _u, message: heard.append(json.loads(message.payload))
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert subscribed.wait(10), "the listener did not subscribe"
        yield heard
    finally:
        client.loop_stop()
        client.disconnect()
