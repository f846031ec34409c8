"""Fixtures that start real servers on free loopback ports, and condition waits with timeouts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from bench.servers import Postgres, running_mosquitto, running_postgres, running_victoria_metrics, stop_process
from device_drivers.registry import DRIVERS
from edge.node import EdgeNode
from guardlink.siteconfig import BrokerUrl, SiteConfig, load_site

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's: `playwright install` cannot download here
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--autoplay-policy=no-user-gesture-required"]  # as root Chromium needs --no-sandbox
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/system-deps installs it)")
SCHOOL = REPO / "firmware_configs" / "sites" / "school.yaml"
GUARDLINK = [sys.executable, "-m", "cli"]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[BrokerUrl]:
    """A fresh mosquitto broker for one test."""
    with running_mosquitto(tmp_path) as url:
        yield url


@pytest.fixture
def police_mosquitto(tmp_path: Path) -> Iterator[BrokerUrl]:
    """A second, separate broker playing the police command centre."""
    with running_mosquitto(tmp_path) as url:
        yield url


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[Postgres]:
    """A fresh PostgreSQL server (initdb + pg_ctl on a free loopback port) for one test; `.url`, `.stop()`, `.start()`."""
    with running_postgres(tmp_path / "postgres") as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The hub's database for one test, once on SQLite and once on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return request.getfixturevalue("postgres").url


@pytest.fixture
def hub_engine(database_url: str) -> Iterator[Any]:
    """An engine on the hub's database (SQLite, then PostgreSQL), migrated to the newest schema."""
    from hub.database import make_engine, migrate

    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


class VictoriaMetrics:
    """A VictoriaMetrics server under test: its URL for writers, and what it stored, read back through its export API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def export(self, selector: str) -> list[dict[str, Any]]:
        """Every series matching a selector such as `{__name__=~"device_health_.*"}`, with values and timestamps (ms)."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10):
            pass  # make points written so far visible to the export
        query = urllib.parse.urlencode({"match[]": selector})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as response:
            return [json.loads(line) for line in response.read().splitlines() if line.strip()]

    async def wait_for(self, selector: str, until: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 15.0) -> list[dict[str, Any]]:
        """Poll the export (off the event loop) until `until(series)` holds; fail the test after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            series = await asyncio.to_thread(self.export, selector)
            if until(series):
                return series
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {selector}; have {series}")
            await asyncio.sleep(0.05)


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A fresh VictoriaMetrics (it takes the InfluxDB v2 write API) for one test."""
    with running_victoria_metrics(tmp_path / "vm") as url:
        yield VictoriaMetrics(url)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `guardlink ...` processes; every one is stopped after the test, pass or fail."""
    procs: list[subprocess.Popen] = []

    def start(*args: str, stderr_path: Path | None = None) -> subprocess.Popen:
        stderr = stderr_path.open("a") if stderr_path else subprocess.PIPE
        procs.append(subprocess.Popen([*GUARDLINK, *args], stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=REPO))
        return procs[-1]

    yield start
    for proc in procs:
        stop_process(proc)


class Recorder:
    """A raw paho subscriber that records every message on a topic filter (an independent witness)."""

    def __init__(self, broker: BrokerUrl, topic_filter: str, client_id: str | None = None) -> None:
        """With a `client_id` the session is persistent: the broker queues messages while it is away."""
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "", clean_session=client_id is None)
        self._client.reconnect_delay_set(0.1, 1)
        self._client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic_filter, qos=1)
        self._client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError(f"could not subscribe to {topic_filter} on {broker}")

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload))

    def payloads(self) -> list[bytes]:
        with self._lock:
            return [payload for _, payload in self.messages]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def recorder() -> Iterator[Callable[..., Recorder]]:
    """Start recorders on demand; all are closed after the test."""
    made: list[Recorder] = []

    def start(broker: BrokerUrl, topic_filter: str, client_id: str | None = None) -> Recorder:
        made.append(Recorder(broker, topic_filter, client_id))
        return made[-1]

    yield start
    for r in made:
        r.close()


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll `condition` until true; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def school() -> SiteConfig:
    """The example school site."""
    return load_site(SCHOOL, DRIVERS.keys())


@asynccontextmanager
async def running_edge(
    config: SiteConfig, site: BrokerUrl, police: BrokerUrl, outbox: Path, **options: Any
) -> AsyncIterator[EdgeNode]:
    """An edge node running in this test's loop, subscribed and ready; cancelled afterwards."""
    node = EdgeNode(config, site_broker=site, police_broker=police, outbox_path=outbox, **options)
    task = asyncio.create_task(node.run())
    try:
        await asyncio.wait_for(node.ready.wait(), 10)
        yield node
    finally:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=20)
        if not done:  # a part that swallows its cancellation: say which, rather than hang the suite
            stacks = "\n".join(f"{t.get_name()}: {t.get_stack(limit=3)}" for t in asyncio.all_tasks() if not t.done())
            raise AssertionError(f"the edge did not stop within 20 s of being cancelled; tasks still running:\n{stacks}")


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory the outbox cannot write: a read-only mount as root, a 0555 directory otherwise."""
    target = tmp_path / "readonly"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o555)
        yield target
        target.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(target)], capture_output=True).returncode == 0
    if not mounted:
        # No mount privilege: a path below a regular file cannot be created either.
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        yield blocker / "readonly"
        return
    try:
        yield target
    finally:
        subprocess.run(["umount", "--lazy", str(target)], check=True)  # lazy: an open file must not leave the mount behind


@contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright browser on Debian's Chromium, closed on the way out."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
