"""Fixtures that start real servers on free loopback ports, and condition waits with timeouts."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from device_drivers.registry import DRIVERS
from edge.node import EdgeNode

from edge.embedded_broker import free_tcp_port
from guardlink.siteconfig import BrokerUrl, SiteConfig, load_site

REPO = Path(__file__).resolve().parent.parent
SCHOOL = REPO / "firmware_configs" / "sites" / "school.yaml"


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None)
    if not found:
        pytest.fail("mosquitto is not installed: run `make test` (it installs it) or `apt-get install mosquitto`")
    return found


@contextmanager
def running_mosquitto(workdir: Path, port: int | None = None, extra_config: str = "") -> Iterator[BrokerUrl]:
    """A mosquitto process on `port` (a free loopback port when None); always stopped afterwards."""
    attempts = 3 if port is None else 1
    for attempt in range(attempts):
        port = port if attempts == 1 else free_tcp_port()
        conf = workdir / f"mosquitto-{port}.conf"
        log_path = workdir / f"mosquitto-{port}.log"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_config}")
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT)
        try:
            if _wait_listening(proc, port, timeout_s=10):
                yield BrokerUrl(host="127.0.0.1", port=port)
                return
        finally:
            stop_process(proc)
        if attempt == attempts - 1:
            pytest.fail(f"mosquitto did not start: {log_path.read_text(errors='replace')}")


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a process, killing it if it does not exit within 5 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_listening(proc: subprocess.Popen, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False  # e.g. the port was taken between choosing and binding it
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


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


class Recorder:
    """A raw paho subscriber that records every message on a topic filter (an independent witness)."""

    def __init__(self, broker: BrokerUrl, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
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
def recorder() -> Iterator[Callable[[BrokerUrl, str], Recorder]]:
    """Start recorders on demand; all are closed after the test."""
    made: list[Recorder] = []

    def start(broker: BrokerUrl, topic_filter: str) -> Recorder:
        made.append(Recorder(broker, topic_filter))
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
        await asyncio.gather(task, return_exceptions=True)
