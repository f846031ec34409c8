"""`guardlink bench console`: panic press at a real edge -> its row visible on the live board in Chromium, under load.

- A real mosquitto, a `guardlink hub` process (SQLite) and a `guardlink edge` process running the example school.
- Load: `--sites` simulated sites x `--guards` guards each (default 200 x 10 = 2,000) move every second: each site
  publishes its complete `GuardsReport` once a second on the district broker (spread over the second), as an edge does;
  `--open` open incidents (default 300) from those sites are on the board before the first press.
- Presses: sequential panic presses and SOS at the edge (buttons and wearables of the school, in turn). For each:
  press -> the escalation's first revision on the district broker (a raw subscriber: `edge_*_ms`, the edge's share),
  press -> the escalation's first revision on the hub's `/api/stream` (a plain HTTP client: `stream_*_ms`), and
  press -> its row in the board's DOM at the next animation frame in Chromium (`ui_*_ms`), both from the same press. The
  row shows what the stream's change says at once (severity, kind, site, status; the alert sounds); its device, zone and
  guards follow from one read of the hub (`ui_full_*_ms`: the row complete). `ui_after_stream_*_ms`: per press, the row's
  time minus the stream's, what the console itself adds.
- `ui_busy_fraction`: the share of the measurement window the page's main thread spent in long tasks (PerformanceObserver
  `longtask`), on the board; `map_busy_fraction` the same on the map page, where every guard marker moves.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

from bench.hub import HUB_BROKER_SETTINGS
from bench.latency import Consumer, percentile
from bench.servers import running_mosquitto, stop_process
from device_drivers.registry import DRIVERS
from device_drivers.simulators import SiteSimulator
from edge.embedded_broker import free_tcp_port
from guardlink import topics
from guardlink.ids import uuid7
from guardlink.models import (
    Escalation,
    EscalationStatus,
    GuardReport,
    GuardsReport,
    GuardState,
    Incident,
    IncidentKind,
    Location,
    Severity,
    SiteRef,
    iso,
)
from guardlink.siteconfig import BrokerUrl, load_site

REPO = Path(__file__).resolve().parent.parent
SCHOOL_FILE = REPO / "firmware_configs" / "sites" / "school.yaml"
DISTRICT = "xincheng"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
GOAL_UI_P99_MS = 250.0
GOAL_BUSY = 0.25
USER, PASSWORD = "bench-desk", "bench console password"
CENTRE = (40.8421, 111.7512)
PRESSES = [("btn-gate", "single"), ("wear-li", "single"), ("btn-hall", "single"), ("wear-zhang", "single"), ("btn-yard", "single"), ("wear-wang", "single")]

# Installed on the board page: when each incident's row first entered the DOM and when it had all its details (epoch ms,
# at the next animation frame), and the page's long tasks.
PROBE = """
(() => {
  window.__seen = {};  // the row, as soon as it shows (severity, kind, site, status)
  window.__full = {};  // the row with its device, zone and guards
  window.__longtasks = [];
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longtasks.push([performance.timeOrigin + e.startTime, e.duration]); })
    .observe({ type: "longtask", buffered: true });
  const watch = () => {
    const body = document.querySelector("table.board tbody");
    if (!body) return setTimeout(watch, 50);
    const mark = (table, ids) => requestAnimationFrame(() => { const now = Date.now(); for (const id of ids) if (!(id in table)) table[id] = now; });
    new MutationObserver((records) => {
      const fresh = [], full = [];
      for (const r of records) {
        for (const n of r.addedNodes) if (n.dataset && n.dataset.id && !(n.dataset.id in window.__seen)) fresh.push(n.dataset.id);
        const row = r.type === "attributes" ? r.target : null;
        for (const n of row ? [row] : r.addedNodes) if (n.dataset && n.dataset.provisional === "false" && !(n.dataset.id in window.__full)) full.push(n.dataset.id);
      }
      if (fresh.length) mark(window.__seen, fresh);
      if (full.length) mark(window.__full, full);
    }).observe(body, { childList: true, subtree: true, attributes: true, attributeFilter: ["data-provisional"] });
  };
  watch();
})();
"""


def district_yaml(sites: list[str], port: int, broker: BrokerUrl, database: Path) -> str:
    lat, lon = CENTRE
    return json.dumps({
        "district": {"id": DISTRICT, "name": "Benchmark district", "timezone": "Asia/Shanghai"},
        "broker": str(broker), "database": f"sqlite:///{database}", "listen": f"127.0.0.1:{port}",
        "communities": [{
            "id": "bench", "name": "Benchmark community", "chief": "Chief",
            "outline": [[lat + 0.05, lon - 0.07], [lat + 0.05, lon + 0.07], [lat - 0.05, lon + 0.07], [lat - 0.05, lon - 0.07]],
            "sites": ["hohhot-no3-primary", *sites],
        }],
    })  # JSON is YAML


class GuardLoad:
    """`guards` guards at each of `sites` simulated sites walking about; each site reports all of them once a second."""

    def __init__(self, broker: BrokerUrl, sites: list[str], guards: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.sites = sites
        self.positions = {s: [self._near(CENTRE, 4000) for _ in range(guards)] for s in sites}
        self.states = {s: [self.rng.choice([GuardState.AVAILABLE] * 6 + [GuardState.ASSIGNED, GuardState.ON_SCENE, GuardState.OFF_DUTY]) for _ in range(guards)] for s in sites}
        self.sent = 0
        self.late_s = 0.0  # how far behind its 1 Hz schedule the publisher fell, at most
        self._stop = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-guards-{uuid7()[-8:]}")
        self._client.max_queued_messages_set(0)
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="guard-load", daemon=True)

    def _near(self, point: tuple[float, float], radius_m: float) -> tuple[float, float]:
        return (point[0] + self.rng.uniform(-1, 1) * radius_m / 111_000, point[1] + self.rng.uniform(-1, 1) * radius_m / 84_000)

    def report(self, site: str) -> bytes:
        """The site's guards one step (about 1.4 m) further on."""
        now = time.time()
        guards = []
        for n, (lat, lon) in enumerate(self.positions[site]):
            angle = self.rng.uniform(0, 2 * math.pi)
            lat, lon = lat + math.sin(angle) * 1.4 / 111_000, lon + math.cos(angle) * 1.4 / 84_000
            self.positions[site][n] = (lat, lon)
            guards.append(GuardReport(id=f"g{n:02d}", name=f"Guard {site[-3:]}-{n:02d}", roles=["patrol"], state=self.states[site][n],
                                      location=Location(lat=lat, lon=lon), accuracy_m=5.0, position_at=iso(now)))
        return GuardsReport(site=site, guards=guards, at=iso(now)).model_dump_json(by_alias=True).encode()

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        tick = 0
        while not self._stop.is_set():
            for n, site in enumerate(self.sites):
                due = start + tick + n / len(self.sites)
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                self.late_s = max(self.late_s, -wait)
                self._client.publish(topics.police_guards(DISTRICT, site), self.report(site), qos=1)
                self.sent += 1
            tick += 1

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._client.disconnect()
        self._client.loop_stop()


def open_incident(site: str, n: int, rng: random.Random) -> Escalation:
    """An open critical incident at a simulated site, detected some minutes ago."""
    at = time.time() - rng.uniform(60, 1800)
    lat, lon = CENTRE[0] + rng.uniform(-0.04, 0.04), CENTRE[1] + rng.uniform(-0.06, 0.06)
    return Escalation(
        id=uuid7(), revision=1, sequence=n + 1,
        site=SiteRef(id=site, name=f"Simulated site {site[-3:]}", district=DISTRICT, location=Location(lat=lat, lon=lon)),
        incident=Incident(kind=rng.choice([IncidentKind.PANIC, IncidentKind.INTRUSION, IncidentKind.LOW_BATTERY]), severity=rng.choice(list(Severity)),
                          device=f"dev-{n % 7}", zone="yard", location=Location(lat=lat, lon=lon), detected_at=iso(at)),
        assignments=[], status=EscalationStatus.DISPATCHED, guards_needed=1, issued_at=iso(at),
    )


class BrokerWatch(Consumer):
    """The school's escalations on the district broker: when each escalation's first revision left the edge (time.time())."""

    def __init__(self, broker: BrokerUrl, site: str) -> None:
        self.first: dict[str, float] = {}
        super().__init__(broker, topics.police_escalations(DISTRICT, site))

    def _arrived(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        doc = json.loads(message.payload)
        if doc.get("revision") == 1:
            self.first.setdefault(doc["id"], time.time())
        super()._arrived(client, userdata, message)


class StreamWatch:
    """A logged-in HTTP client on the hub's `/api/stream`: when each escalation's first revision arrived (time.time())."""

    def __init__(self, url: str, cookies: httpx.Cookies) -> None:
        self.first: dict[str, float] = {}
        self.site: dict[str, str] = {}
        self._cond = threading.Condition()
        self._client = httpx.Client(base_url=url, cookies=cookies, timeout=httpx.Timeout(10, read=None))
        self._thread = threading.Thread(target=self._run, name="stream-watch", daemon=True)
        self._open = threading.Event()
        self._thread.start()
        if not self._open.wait(10):
            raise RuntimeError("the hub's stream did not open")

    def _run(self) -> None:
        try:
            with self._client.stream("GET", "/api/stream") as response:
                self._open.set()
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    now = time.time()
                    change = json.loads(line[6:])
                    payload = change.get("payload") or {}
                    if change["kind"] == "escalation" and payload.get("revision") == 1:
                        with self._cond:
                            self.first.setdefault(change["key"], now)
                            self.site[change["key"]] = payload.get("site")
                            self._cond.notify_all()
        except httpx.HTTPError:
            pass  # closed at the end

    def next_new(self, site: str, known: set[str], timeout_s: float) -> str:
        """The first escalation of `site` not in `known`, waiting up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                fresh = [i for i, s in self.site.items() if s == site and i not in known]
                if fresh:
                    return fresh[0]
                if not self._cond.wait(deadline - time.monotonic()) and time.monotonic() > deadline:
                    raise TimeoutError(f"no new escalation from {site} on the stream within {timeout_s} s")

    def close(self) -> None:
        self._client.close()


@contextmanager
def running(args: list[str], log: Path, ready: str, timeout_s: float = 60) -> Iterator[None]:
    """A `guardlink ...` process until the block ends; waits for `ready` in its log."""
    import subprocess

    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli", *args], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + timeout_s
        while ready not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
        yield
    finally:
        stop_process(proc)


def busy_fraction(page, since_ms: float, until_ms: float) -> float:
    tasks = page.evaluate("window.__longtasks")
    busy = sum(max(0.0, min(start + length, until_ms) - max(start, since_ms)) for start, length in tasks)
    return busy / (until_ms - since_ms)


def run(presses: int = 100, sites: int = 200, guards: int = 10, open_incidents: int = 300, settle_s: float = 5.0, shots: Path | None = None) -> dict[str, object]:
    """Measure; returns the figures (and with `shots`, screenshots of the board and the map there)."""
    from hub.accounts import Accounts, Role
    from hub.database import make_engine, migrate

    rng = random.Random(11)
    site_ids = [f"sim-{n:03d}" for n in range(sites)]
    with tempfile.TemporaryDirectory(prefix="guardlink-bench-console-") as tmp:
        work = Path(tmp)
        port = free_tcp_port()
        with running_mosquitto(work / "mosquitto", extra=HUB_BROKER_SETTINGS) as broker:
            district_file = work / "district.yaml"
            district_file.write_text(district_yaml(site_ids, port, broker, work / "hub.db"))
            engine = make_engine(f"sqlite:///{work / 'hub.db'}")
            migrate(engine)
            Accounts(engine).add_user(USER, Role.DISPATCHER, password=PASSWORD)
            engine.dispose()
            url = f"http://127.0.0.1:{port}"
            print(f"hub, edge and {sites} x {guards} guards on {broker}", file=sys.stderr, flush=True)
            with (
                running(["hub", "--config", str(district_file)], work / "hub.log", "guardlink hub: district"),
                running(["edge", "--config", str(SCHOOL_FILE), "--broker", str(broker), "--police-broker", str(broker), "--outbox", str(work / "outbox.db")],
                        work / "edge.log", "event=edge_ready"),
                httpx.Client(base_url=url, timeout=30) as api,
                SiteSimulator(load_site(SCHOOL_FILE, DRIVERS.keys()), broker, seed=5) as school,
            ):
                assert api.post("/api/login", json={"name": USER, "password": PASSWORD}).status_code == 200
                load = GuardLoad(broker, site_ids, guards)
                publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-incidents-{uuid7()[-8:]}")
                publisher.connect(broker.host, broker.port)
                publisher.loop_start()
                try:
                    for n in range(open_incidents):
                        doc = open_incident(site_ids[n % sites], n, rng)
                        publisher.publish(topics.police_escalations(DISTRICT, doc.site.id), doc.model_dump_json(by_alias=True), qos=1)
                    _wait(lambda: api.get("/api/incidents", params={"open": "true", "limit": 1}).json()["total"] >= open_incidents, 60, "the open incidents at the hub")
                    load.start()
                    school.report_positions()
                    stream = StreamWatch(url, api.cookies)
                    edge_out = BrokerWatch(broker, "hohhot-no3-primary")
                    try:
                        return _measure(url, stream, edge_out, school, load, presses, settle_s, sites * guards, open_incidents, shots)
                    finally:
                        edge_out.close()
                        stream.close()
                finally:
                    load.close()
                    publisher.loop_stop()
                    publisher.disconnect()


def _measure(url: str, stream: StreamWatch, edge_out: BrokerWatch, school: SiteSimulator, load: GuardLoad, presses: int, settle_s: float,
             guards: int, open_incidents: int, shots: Path | None) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US").new_page()
            page.add_init_script(PROBE)
            page.goto(f"{url}/console/#/board")
            page.fill("#login-name", USER)
            page.fill("#login-password", PASSWORD)
            page.click("form.login button[type=submit]")
            page.wait_for_selector("body[data-ready]", state="attached", timeout=30_000)
            page.wait_for_function(f"document.querySelectorAll('table.board tbody tr').length >= {open_incidents}", timeout=30_000)
            print(f"board open with {open_incidents} incidents; guards moving for {settle_s:g} s before the presses", file=sys.stderr, flush=True)
            time.sleep(settle_s)  # a load warm-up, not a wait for a condition: the guards have to have moved for a while

            known = set(stream.site)
            ui_ms, full_ms, stream_ms, broker_ms = [], [], [], []
            window_start = page.evaluate("Date.now()")
            for n in range(presses):
                device, action = PRESSES[n % len(PRESSES)]
                pressed = school.press(device, action)
                incident = stream.next_new("hohhot-no3-primary", known, 15)
                known.add(incident)
                stream_ms.append((stream.first[incident] - pressed) * 1000)
                broker_ms.append((edge_out.first.get(incident, stream.first[incident]) - pressed) * 1000)
                page.wait_for_function(f"window.__seen[{json.dumps(incident)}] !== undefined", timeout=15_000, polling=20)
                ui_ms.append(page.evaluate(f"window.__seen[{json.dumps(incident)}]") - pressed * 1000)
                page.wait_for_function(f"window.__full[{json.dumps(incident)}] !== undefined", timeout=15_000, polling=20)
                full_ms.append(page.evaluate(f"window.__full[{json.dumps(incident)}]") - pressed * 1000)
                if (n + 1) % 25 == 0:
                    print(f"  presses: {n + 1}/{presses}", file=sys.stderr, flush=True)
                time.sleep(rng_gap(n))  # presses a few hundred ms apart: a rate the edge's per-device limits allow
            window_end = page.evaluate("Date.now()")
            board_busy = busy_fraction(page, window_start, window_end)
            rows = page.evaluate("document.querySelectorAll('table.board tbody tr').length")
            if shots:
                page.screenshot(path=str(shots / "bench-board.png"))

            page.click("a[data-nav=map]")
            page.wait_for_function(f"Number(document.getElementById('map')?.dataset.guards || 0) >= {guards}", timeout=30_000)
            map_start = page.evaluate("Date.now()")
            time.sleep(10)  # the map's load is the guards moving: watch it for a fixed while
            map_busy = busy_fraction(page, map_start, page.evaluate("Date.now()"))
            if shots:
                page.screenshot(path=str(shots / "bench-map.png"))
        finally:
            browser.close()
    ui_p99 = percentile(ui_ms, 0.99)
    after = [u - s for u, s in zip(ui_ms, stream_ms, strict=True)]  # what the console adds to the hub's own stream, per press
    return {
        "presses": presses,
        "guards_moving": guards,
        "guard_reports_per_s": round(len(load.sites), 1),
        "guard_publisher_late_s": round(load.late_s, 3),
        "open_incidents": open_incidents,
        "board_rows_at_end": rows,
        "ui_p50_ms": round(statistics.median(ui_ms), 1),
        "ui_p99_ms": round(ui_p99, 1),
        "ui_max_ms": round(max(ui_ms), 1),
        "ui_full_p50_ms": round(statistics.median(full_ms), 1),
        "ui_full_p99_ms": round(percentile(full_ms, 0.99), 1),
        "ui_after_stream_p50_ms": round(statistics.median(after), 1),
        "ui_after_stream_p99_ms": round(percentile(after, 0.99), 1),
        "edge_p50_ms": round(statistics.median(broker_ms), 1),
        "edge_p99_ms": round(percentile(broker_ms, 0.99), 1),
        "stream_p50_ms": round(statistics.median(stream_ms), 1),
        "stream_p99_ms": round(percentile(stream_ms, 0.99), 1),
        "ui_busy_fraction": round(board_busy, 4),
        "map_busy_fraction": round(map_busy, 4),
        "goal_ui_p99_ms": GOAL_UI_P99_MS,
        "goal_ui_busy_fraction": GOAL_BUSY,
        "goal_met": ui_p99 <= GOAL_UI_P99_MS and board_busy <= GOAL_BUSY,
    }


def rng_gap(n: int) -> float:
    return 0.2 + (n * 37 % 100) / 1000  # 0.2-0.3 s, deterministic


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `guardlink bench console`."""
    parser = argparse.ArgumentParser(prog="guardlink bench console", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--presses", type=int, default=100, help="sequential presses at the edge (default 100)")
    parser.add_argument("--sites", type=int, default=200, help="simulated sites reporting guards (default 200)")
    parser.add_argument("--guards", type=int, default=10, help="guards per simulated site (default 10)")
    parser.add_argument("--open", dest="open_incidents", type=int, default=300, help="open incidents on the board before the presses (default 300)")
    parser.add_argument("--screenshots", type=Path, default=None, help="save the board and the map under load here")
    args = parser.parse_args(argv)
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    result = run(presses=args.presses, sites=args.sites, guards=args.guards, open_incidents=args.open_incidents, shots=args.screenshots)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['guards_moving']} guards moving at 1 Hz, {result['open_incidents']} open incidents, {result['presses']} presses")
        print(f"{'press ->':<28}{'p50 ms':>10}{'p99 ms':>10}")
        print(f"{'escalation out of the edge':<28}{result['edge_p50_ms']:>10.1f}{result['edge_p99_ms']:>10.1f}")
        print(f"{'hub stream':<28}{result['stream_p50_ms']:>10.1f}{result['stream_p99_ms']:>10.1f}")
        print(f"{'row visible in Chromium':<28}{result['ui_p50_ms']:>10.1f}{result['ui_p99_ms']:>10.1f}")
        print(f"{'... with device, zone, guards':<28}{result['ui_full_p50_ms']:>10.1f}{result['ui_full_p99_ms']:>10.1f}")
        print(f"{'row visible after stream':<28}{result['ui_after_stream_p50_ms']:>10.1f}{result['ui_after_stream_p99_ms']:>10.1f}")
        print(f"main thread busy (long tasks): board {result['ui_busy_fraction']:.1%}, map {result['map_busy_fraction']:.1%}")
        print(f"goals ui_p99 <= {GOAL_UI_P99_MS:g} ms, busy <= {GOAL_BUSY:.0%}: {'met' if result['goal_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
