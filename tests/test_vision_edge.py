"""Cameras as part of a site: configuration checks, armed schedules, and camera events turned into escalations
that reach the police with the nearest guard and the evidence, through the same dispatch and outbox as a press."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jsonschema
import pytest

from bench.scenes import Scene, Walker
from device_drivers.registry import DRIVERS
from device_drivers.simulators import SiteSimulator
from edge.rules import camera_incident
from edge.vision.events import CameraEvent, CameraEventKind
from guardlink import topics
from guardlink.models import Escalation
from guardlink.siteconfig import ConfigError, Schedule, SiteConfig, load_site

from conftest import REPO, SCHOOL, running_edge, wait_until

COMMITTED_SCHEMA = json.loads((REPO / "guardlink" / "schemas" / "escalation.schema.json").read_text())
TEMPLATES = REPO / "firmware_configs" / "templates"
GATE = (40.84245, 111.75042)


def school_with(tmp_path: Path, cameras_yaml: str) -> SiteConfig:
    """The example school with cameras (and schedules) added to its file."""
    path = tmp_path / "school.yaml"
    path.write_text(SCHOOL.read_text() + "\n" + cameras_yaml)
    return load_site(path, DRIVERS.keys(), templates_dir=TEMPLATES)


def test_site_file_checks_what_cameras_refer_to(tmp_path):
    with pytest.raises(ConfigError) as caught:
        school_with(tmp_path, (
            "schedules:\n  - {id: night, shifts: ['daily 22:00-06:00']}\n"
            "cameras:\n"
            "  - id: cam-gate\n    source: rtsp://10.0.0.21/stream1\n    zone: main-gat\n"
            "    zones:\n      - {id: drive, polygon: [[0, 0], [1, 0], [1, 1]], site_zone: yrd, intrusion: {schedule: nights}}\n"
            "  - {id: btn-hall, source: rtsp://10.0.0.22/stream1}\n"
            "  - {id: cam-yard}\n"
        ))
    path = tmp_path / "school.yaml"
    first = len(SCHOOL.read_text().splitlines()) + 1  # the appended text starts on this line
    assert caught.value.messages == [
        f"{path}:{first + 6}:11: camera 'cam-gate' refers to zone 'main-gat', which is not defined (defined: main-gate, yard, hall)",
        f"{path}:{first + 8}:67: camera 'cam-gate' zone 'drive' refers to zone 'yrd', which is not defined (defined: main-gate, yard, hall)",
        f"{path}:{first + 8}:94: camera 'cam-gate' zone 'drive' refers to schedule 'nights', which is not defined (defined: night)",
        f"{path}:{first + 9}:10: camera 'btn-hall' has the id of a device; incidents name either, so they must differ",
        f"{path}:{first + 10}:5: camera 'cam-yard' has no source (rtsp://..., http://... MJPEG, mqtt:<topic> or a video file)",
    ]


def test_a_rule_with_a_schedule_raises_incidents_only_while_it_is_armed(tmp_path):
    site = school_with(tmp_path, (
        "schedules:\n  - {id: night, shifts: ['daily 22:00-06:00']}\n"
        "cameras:\n  - id: cam-gate\n    source: rtsp://10.0.0.21/stream1\n    zone: main-gate\n"
        "    location: {lat: 40.84245, lon: 111.75042}\n"
        "    zones:\n      - {id: drive, polygon: [[0, 0], [1, 0], [1, 1]], site_zone: yard, intrusion: {schedule: night}}\n"
    ))
    camera, schedules = site.camera("cam-gate"), {s.id: s for s in site.schedules}
    local = ZoneInfo(site.site.timezone)
    late = datetime(2026, 11, 20, 23, 30, tzinfo=local).timestamp()
    noon = datetime(2026, 11, 20, 12, 0, tzinfo=local).timestamp()

    def at(t: float, kind: CameraEventKind = CameraEventKind.INTRUSION) -> CameraEvent:
        return CameraEvent(kind, "cam-gate", t, zone="drive", track=4, box=(0.4, 0.5, 0.05, 0.2), dwell_s=0.2)

    incident = camera_incident(at(late), camera, schedules, site.site.timezone)
    assert incident is not None and incident.kind == "intrusion" and incident.device == "cam-gate"
    assert incident.zone == "yard" and (incident.location.lat, incident.location.lon) == GATE
    assert incident.detected_at.timestamp() == late and "track 4 in drive" in incident.detail
    assert camera_incident(at(noon), camera, schedules, site.site.timezone) is None  # not armed by day
    assert camera_incident(at(noon, CameraEventKind.LOITERING), camera, schedules, site.site.timezone) is not None  # no schedule
    night = Schedule(id="night", shifts=["daily 22:00-06:00"])
    assert night.armed(datetime(2026, 11, 21, 5, 59, tzinfo=local).timestamp(), site.site.timezone)
    assert not night.armed(datetime(2026, 11, 21, 6, 0, tzinfo=local).timestamp(), site.site.timezone)


async def test_camera_intrusion_reaches_the_police_with_a_guard_and_its_evidence(mosquitto, police_mosquitto, recorder, tmp_path):
    clip = Scene(640, 360, 15, 8, [Walker(((1.5, 0.02, 0.7), (7, 0.9, 0.8)))], seed=9).write(tmp_path / "gate.mp4")
    site = school_with(tmp_path, (
        "cameras:\n"
        f"  - id: cam-gate\n    source: {clip}\n    zone: main-gate\n    location: {{lat: {GATE[0]}, lon: {GATE[1]}}}\n"
        "    evidence: {before_s: 2, after_s: 2}\n"
        "    zones:\n      - {id: drive, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]], loitering: null}\n"
        f"  - {{id: cam-hall, source: {tmp_path / 'unplugged.mp4'}, zone: hall, offline_after_s: 1}}\n"
    ))
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    bus = recorder(mosquitto, topics.camera_events(site.site.id, "+"))

    def revisions(kind: str) -> list[Escalation]:
        return [e for e in map(Escalation.from_json, police.payloads()) if e.incident.kind == kind]

    async with running_edge(site, mosquitto, police_mosquitto, tmp_path / "outbox.db", evidence_dir=tmp_path / "evidence") as node:
        with SiteSimulator(site, mosquitto, seed=7) as sim:
            await asyncio.to_thread(sim.report_positions)
            await wait_until(lambda: sum(s.point is not None for s in node.board.guards.values()) >= 3, 10, "guard positions")
            await wait_until(lambda: revisions("intrusion"), 30, "the intrusion escalation")
            await wait_until(lambda: any(len(e.evidence) == 2 for e in revisions("intrusion")), 30, "its snapshot and clip")
            await wait_until(lambda: revisions("camera_offline"), 15, "the unplugged camera reported offline")

    for payload in police.payloads():
        jsonschema.validate(json.loads(payload), COMMITTED_SCHEMA)
    first, *later = revisions("intrusion")
    assert first.revision == 1 and first.status == "dispatched" and first.evidence == []
    assert first.incident.device == "cam-gate" and first.incident.zone == "main-gate" and first.incident.severity == "warning"
    assert [a.state for a in first.assignments] == ["offered"]
    with_evidence = later[-1]
    assert with_evidence.id == first.id and with_evidence.revision > 1
    assert [item.kind for item in with_evidence.evidence] == ["snapshot", "clip"]
    for item in with_evidence.evidence:
        data = await asyncio.to_thread(Path(item.path).read_bytes)
        assert item.camera == "cam-gate" and len(data) == item.bytes and hashlib.sha256(data).hexdigest() == item.sha256
        assert Path(item.path).is_relative_to(tmp_path / "evidence")
    [offline] = revisions("camera_offline")
    assert offline.status == "reported" and offline.guards_needed == 0 and offline.incident.zone == "hall"
    kinds = {(json.loads(p)["camera"], json.loads(p)["kind"]) for p in bus.payloads()}
    assert {("cam-gate", "camera_online"), ("cam-gate", "intrusion"), ("cam-hall", "camera_offline")} <= kinds
