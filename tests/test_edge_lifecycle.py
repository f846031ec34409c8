"""Starting and stopping an edge as an operator does: one edge per site, and a clean stop says offline at once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gateway.lock import InUse
from gateway.outbox import Outbox
from guardlink import topics

from conftest import GUARDLINK, REPO, SCHOOL, Recorder

SITE = "hohhot-no3-primary"


async def test_a_second_outbox_on_the_same_file_is_refused_naming_the_holder(tmp_path):
    first = Outbox(tmp_path / "outbox.db")
    await first.open()
    try:
        with pytest.raises(InUse) as refused:
            await Outbox(tmp_path / "outbox.db").open()
        assert f"process {os.getpid()}" in str(refused.value) and "one edge per site" in str(refused.value)
    finally:
        await first.close()
    again = Outbox(tmp_path / "outbox.db")
    await again.open()  # released on close
    await again.close()


async def test_a_second_edge_for_the_site_exits_with_a_clear_error_before_connecting(tmp_path):
    held = Outbox(tmp_path / "outbox.db")
    await held.open()
    try:
        result = await asyncio.to_thread(
            subprocess.run,
            [*GUARDLINK, "edge", "--config", str(SCHOOL), "--broker", "mqtt://127.0.0.1:1", "--police-broker", "mqtt://127.0.0.1:1",
             "--outbox", str(tmp_path / "outbox.db")],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )
    finally:
        await held.close()
    assert result.returncode == 1, result.stderr
    assert f"is in use by process {os.getpid()}" in result.stderr and "Traceback" not in result.stderr
    assert "mqtt_disconnected" not in result.stderr, "refused before touching the brokers"


def _retained_state(broker, topic: str) -> str | None:
    recorder = Recorder(broker, topic)
    try:
        deadline = time.monotonic() + 5
        while not recorder.payloads() and time.monotonic() < deadline:
            time.sleep(0.02)
        payloads = recorder.payloads()
        return json.loads(payloads[-1])["state"] if payloads else None
    finally:
        recorder.close()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_clean_stop_leaves_the_site_offline_on_both_brokers(tmp_path: Path, spawn, mosquitto, police_mosquitto, stop):
    site_status, police_status = topics.edge_status(SITE), topics.police_site_status("xincheng", SITE)
    log = tmp_path / "edge.log"
    edge = spawn("edge", "--config", str(SCHOOL), "--broker", str(mosquitto), "--police-broker", str(police_mosquitto),
                 "--outbox", str(tmp_path / "outbox.db"), stderr_path=log)
    deadline = time.monotonic() + 20
    while _retained_state(police_mosquitto, police_status) != "online" or "event=edge_ready" not in log.read_text():
        assert edge.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
    edge.send_signal(stop)
    assert edge.wait(10) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    assert _retained_state(mosquitto, site_status) == "offline", "Home Assistant and installers see the site offline"
    assert _retained_state(police_mosquitto, police_status) == "offline", "the police see it at once, not after 3 heartbeats"
