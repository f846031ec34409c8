"""Camera worker processes as the edge runs them: below alarm handling on the CPU, signed in to a password-protected
site broker without the password on their command line, and their statistics on the edge's /metrics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from pathlib import Path

import pytest
from test_telemetry_metrics import scrape, value, with_metrics

from bench.scenes import Scene, Walker
from bench.servers import running_mosquitto
from device_drivers.registry import DRIVERS
from edge.vision.events import CameraEvent, CameraEventKind
from edge.vision.process import CameraProcess
from gateway.connection import threaded_client
from guardlink.cameraconfig import CameraSettings
from guardlink.siteconfig import BrokerUrl, load_site

from conftest import SCHOOL, running_edge, wait_until


def _clip(path: Path) -> Path:
    return Scene(320, 180, 15, 6, [Walker(((0.5, 0.02, 0.7), (5.5, 0.9, 0.8)))], seed=3).write(path)


def _descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in map(int, (task / "children").read_text().split()):
            found += [child, *_descendants(child)]
    return found


async def test_camera_workers_and_their_ffmpeg_run_below_alarm_handling(tmp_path: Path) -> None:
    camera = CameraSettings(id="gate", source=str(_clip(tmp_path / "gate.mp4")))
    events: list[CameraEvent] = []
    process = CameraProcess(camera, on_event=events.append, on_evidence=lambda ref, f: None)
    task = asyncio.create_task(process.run())
    try:
        await wait_until(lambda: any(e.kind is CameraEventKind.ONLINE for e in events), 30, "the camera's first frame")
        worker = process._process.pid
        ffmpeg = await asyncio.to_thread(lambda: [p for p in _descendants(worker) if Path(f"/proc/{p}/comm").read_text().strip() == "ffmpeg"])
        assert ffmpeg, "the worker's ffmpeg"
        for pid in (worker, *ffmpeg):
            assert os.sched_getscheduler(pid) == os.SCHED_IDLE or os.getpriority(os.PRIO_PROCESS, pid) >= 19, pid
        assert os.sched_getscheduler(0) == os.SCHED_OTHER and os.getpriority(os.PRIO_PROCESS, 0) < 19  # the edge itself is not lowered
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_mqtt_camera_signs_in_with_the_site_brokers_password_kept_off_its_command_line(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"
    passwords.write_text("")
    await asyncio.to_thread(subprocess.run, ["mosquitto_passwd", "-b", str(passwords), "edge", "cam-s3cret"], check=True, capture_output=True)
    with running_mosquitto(tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {passwords}\n") as plain:
        broker = BrokerUrl(host=plain.host, port=plain.port, username="edge", password="cam-s3cret")
        jpeg = tmp_path / "frame.jpg"
        await asyncio.to_thread(
            subprocess.run, ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x180", "-frames:v", "1", str(jpeg)], check=True
        )
        publisher = threaded_client(broker)
        publisher.connect(broker.host, broker.port)
        publisher.loop_start()
        stop = threading.Event()

        def feed() -> None:
            while not stop.wait(0.1):
                publisher.publish("cameras/yard/jpeg", jpeg.read_bytes())

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        events: list[CameraEvent] = []
        process = CameraProcess(CameraSettings(id="yard", source="mqtt:cameras/yard/jpeg"), on_event=events.append,
                                on_evidence=lambda ref, f: None, broker=broker)
        task = asyncio.create_task(process.run())
        try:
            await wait_until(lambda: any(e.kind is CameraEventKind.ONLINE for e in events), 30, "frames through the locked broker")
            assert b"cam-s3cret" not in await asyncio.to_thread(Path(f"/proc/{process._process.pid}/cmdline").read_bytes)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            stop.set()
            feeder.join(5)
            publisher.disconnect()
            publisher.loop_stop()


async def test_camera_statistics_are_on_metrics(mosquitto: BrokerUrl, police_mosquitto: BrokerUrl, tmp_path: Path) -> None:
    path = tmp_path / "school.yaml"
    path.write_text(SCHOOL.read_text() + f"\ncameras:\n  - {{id: cam-gate, source: {_clip(tmp_path / 'gate.mp4')}, zone: main-gate}}\n")
    site = with_metrics(load_site(path, DRIVERS.keys(), templates_dir=SCHOOL.parent.parent / "templates"))
    async with running_edge(site, mosquitto, police_mosquitto, tmp_path / "outbox.db") as node:
        url = node.monitor.endpoint.url

        async def fps() -> float:
            return value(await scrape(url), "guardlink_camera_fps", camera="cam-gate")

        for _ in range(100):
            if await fps() > 0:
                break
            await asyncio.sleep(0.1)
        samples = await scrape(url)
    assert 0 < value(samples, "guardlink_camera_fps", camera="cam-gate") <= 20  # the clip plays at 15 fps (the first report counts from start)
    assert value(samples, "guardlink_camera_cpu_percent", camera="cam-gate") > 0
    assert ("guardlink_camera_dropped_frames_total", (("camera", "cam-gate"),)) in samples
    assert ("guardlink_camera_motion_ratio", (("camera", "cam-gate"),)) in samples


pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
