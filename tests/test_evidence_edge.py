"""Video with every alarm: a panic in a zone gets the snapshot and pre-alarm clip of every camera watching the zone,
listed in a later revision, uploaded by the edge to a real hub and played from there; the ring keeps 30 s."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from prometheus_client import generate_latest
from test_vision_edge import school_with

from bench.scenes import Scene, Walker
from device_drivers.simulators import SiteSimulator
from edge.embedded_broker import free_tcp_port
from edge.evidence_plan import alarm_cameras, watched_site_zones
from edge.vision.evidence import FrameRing, write_clip
from edge.vision.worker import CameraWorker
from guardlink import topics
from guardlink.cameraconfig import CameraSettings
from guardlink.models import Escalation
from hub.accounts import Accounts, Role
from hub.database import make_engine, migrate

from conftest import running_edge, wait_until


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False

SITE = "hohhot-no3-primary"
GATE = (40.84245, 111.75042)


def test_a_camera_watches_its_own_zone_and_the_site_zones_its_zones_and_lines_report(tmp_path: Path) -> None:
    site = school_with(tmp_path, (
        "cameras:\n"
        "  - id: cam-gate\n    source: rtsp://10.0.0.21/s\n    zone: main-gate\n"
        "    zones: [{id: drive, polygon: [[0, 0], [1, 0], [1, 1]], site_zone: yard}]\n"
        "    lines: [{id: door, points: [[0, 0.5], [1, 0.5]], site_zone: hall}]\n"
        "  - {id: cam-hall, source: rtsp://10.0.0.22/s, zone: hall}\n"
        "  - {id: cam-roof, source: rtsp://10.0.0.23/s}\n"
    ))
    gate, hall, roof = site.cameras
    assert (watched_site_zones(gate), watched_site_zones(hall), watched_site_zones(roof)) == (
        {"main-gate", "yard", "hall"}, {"hall"}, frozenset(),
    )


def test_the_ring_keeps_the_30_s_before_an_alarm_by_default_and_the_clip_carries_them(tmp_path: Path) -> None:
    camera = CameraSettings(id="cam", source="x.mp4")
    worker = CameraWorker(camera, lambda message: None, evidence_dir=tmp_path)
    try:
        assert camera.evidence.before_s == 30 and worker.ring is not None and worker.ring.seconds >= 30 + camera.evidence.after_s
    finally:
        worker.evidence.close()
    ring, t0 = FrameRing(worker.ring.seconds, camera.evidence.fps), 1_800_000_000.0
    for i in range(int(45 * camera.evidence.fps)):  # 45 s of frames, the alarm at 40 s
        image = np.full((90, 160, 3), i % 250, np.uint8)
        ring.add(cv2.imencode(".jpg", image)[1].tobytes(), t0 + i / camera.evidence.fps)
    alarm = t0 + 40
    frames = ring.between(alarm - camera.evidence.before_s, alarm + camera.evidence.after_s)
    clip = write_clip(frames, tmp_path / "clip.mp4", "cam")
    assert clip.start.timestamp() <= alarm - 29.7 and clip.end.timestamp() >= alarm + 4.7
    video = cv2.VideoCapture(clip.path)
    try:
        seconds = video.get(cv2.CAP_PROP_FRAME_COUNT) / video.get(cv2.CAP_PROP_FPS)
    finally:
        video.release()
    assert seconds >= 34


async def test_a_panic_gets_the_zone_cameras_snapshot_and_pre_alarm_clip_and_they_reach_the_hub(
    mosquitto, police_mosquitto, recorder, spawn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    district = tmp_path / "district.yaml"
    district.write_text(
        "district: {id: xincheng, name: Xincheng}\n"
        f"communities: [{{id: north, name: North, chief: Chief, outline: [[40.8, 111.7], [40.9, 111.7], [40.9, 111.8]], sites: [{SITE}]}}]\n"
    )
    database = f"sqlite:///{tmp_path / 'hub.db'}"
    engine = make_engine(database)
    migrate(engine)
    accounts = Accounts(engine)
    accounts.add_user("edge-school", Role.SITE, site=SITE)
    accounts.add_user("desk", Role.DISPATCHER)
    monkeypatch.setenv("GUARDLINK_TEST_HUB_TOKEN", accounts.issue_token("edge-school"))
    police_token = accounts.issue_token("desk")
    engine.dispose()
    hub_url = f"http://127.0.0.1:{free_tcp_port()}"
    spawn("hub", "--config", str(district), "--database", database, "--listen", hub_url.removeprefix("http://"), "--broker", str(police_mosquitto),
          stderr_path=tmp_path / "hub.log")
    await wait_until(lambda: _healthy(hub_url), 20, "the hub serving")
    video = Scene(640, 360, 15, 8, [Walker(((1.5, 0.02, 0.7), (7, 0.9, 0.8)))], seed=9).write(tmp_path / "yard.mp4")
    site = school_with(tmp_path, (
        "cameras:\n"  # cam-gate looks into the yard through its camera zone; cam-hall watches the hall only
        f"  - id: cam-gate\n    source: {video}\n    zone: main-gate\n    location: {{lat: {GATE[0]}, lon: {GATE[1]}}}\n"
        "    evidence: {after_s: 1}\n"
        "    zones: [{id: drive, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]], site_zone: yard, intrusion: null, loitering: null}]\n"
        f"  - {{id: cam-hall, source: {video}, zone: hall, zones: [{{id: all, polygon: [[0, 0], [1, 0], [1, 1]], intrusion: null, loitering: null}}]}}\n"
        f"upload: {{url: '{hub_url}', token_env: GUARDLINK_TEST_HUB_TOKEN}}\n"
    ))
    police = recorder(police_mosquitto, topics.police_escalations_filter())

    def panics() -> list[Escalation]:
        return [e for e in map(Escalation.from_json, police.payloads()) if e.incident.kind == "panic"]

    async with running_edge(site, mosquitto, police_mosquitto, tmp_path / "outbox.db") as node:
        with SiteSimulator(site, mosquitto, seed=7) as sim:
            await asyncio.to_thread(sim.report_positions)
            # Seconds of video in the ring before the press (what the clip must show): stats come 1 s after start, then every 5 s.
            await wait_until(lambda: node.cameras["cam-gate"].stats.get("frames", 0) > 40, 30, "cam-gate frames in its ring")
            await asyncio.to_thread(sim.press, "btn-yard")
            await wait_until(lambda: any(len(e.evidence) == 2 for e in panics()), 30, "the panic's snapshot and clip")
            first = panics()[0]
            assert alarm_cameras(first, site.cameras) == ["cam-gate"]
            async with httpx.AsyncClient(base_url=hub_url, headers={"Authorization": f"Bearer {police_token}"}, timeout=10) as hub_client:
                for _ in range(300):  # the console's view: both items listed and uploaded, within 30 s
                    items = (await hub_client.get(f"/api/incidents/{first.id}")).json().get("evidence", [])
                    if len(items) == 2 and all(i["uploaded"] for i in items):
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError(f"timed out waiting for both files uploaded to the hub: {items}")
                clip_item = next(i for i in items if i["kind"] == "clip")
                seek = await hub_client.get(clip_item["url"], headers={"Range": "bytes=1000-"})
            metrics = generate_latest(node.monitor.registry).decode()  # the edge's /metrics page, as rendered
            assert "guardlink_evidence_uploaded_total 2.0" in metrics and "guardlink_evidence_uploads_pending 0.0" in metrics

    assert first.revision == 1 and first.evidence == [] and first.incident.zone == "yard"
    with_evidence = next(e for e in panics() if len(e.evidence) == 2)
    assert with_evidence.id == first.id and with_evidence.revision > 1
    assert [(e.camera, e.kind) for e in with_evidence.evidence] == [("cam-gate", "snapshot"), ("cam-gate", "clip")]
    clip = next(e for e in with_evidence.evidence if e.kind == "clip")
    pressed = first.incident.detected_at.timestamp()
    assert clip.start.timestamp() <= pressed - 2 and clip.end.timestamp() >= pressed + 0.5  # the video from before the alarm
    data = await asyncio.to_thread(Path(clip.path).read_bytes)
    assert hashlib.sha256(data).hexdigest() == clip.sha256
    assert seek.status_code == 206 and seek.content == data[1000:] and seek.headers["content-type"] == "video/mp4"
    assert clip_item["url"] == f"/api/incidents/{first.id}/evidence/{clip.sha256}"
    assert json.loads(police.payloads()[-1])["site"]["id"] == SITE
