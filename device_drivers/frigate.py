"""Frigate NVR cameras: a site that already runs Frigate feeds its detections into guardlink.

One guardlink device per Frigate camera; its `topic` is the camera's motion topic `frigate/<camera>/motion`
(default: the device id is the camera name), which names the camera and Frigate's topic prefix. Read:

    frigate/<camera>/motion   ON | OFF
    frigate/events            {"type": "new" | "update" | "end", "before": {...}, "after": {"id", "camera", "label",
                               "top_score", "false_positive", "frame_time", "entered_zones": [...], ...}}
    frigate/stats             {"cameras": {"<camera>": {"camera_fps": 5.0, ...}}, ...}   every 60 s
    frigate/available         online | offline

An object entering one of the camera's Frigate zones (a zone in `after.entered_zones` that was not in
`before.entered_zones`, and not a false positive) is a `detection` event carrying the label, score and the
zones entered; edge/rules.py decides which labels are incidents (`intrusion`). Frigate's zones already
apply its inertia and loitering time. Events of cameras no device is configured for are ignored. A camera
whose `camera_fps` drops to 0 in the stats is offline; the stats are its heartbeat.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from device_drivers.driver import DecodeShared, Driver, Health, SimulatedSite, Simulation, decode_availability, each_device
from device_drivers.payload import PayloadError, flag, json_object, number, obj, text, texts, timestamp
from guardlink.models import Event, EventKind
from guardlink.siteconfig import Device

EVENT_TYPES = ("new", "update", "end")
MAX_EVENT_BYTES = 64 * 1024  # an event is a few kB (box, region, zones, attributes, path)
MAX_STATS_BYTES = 256 * 1024  # stats list every process's CPU use
MOTION = {"ON": True, "OFF": False}


def camera_of(device: Device) -> str:
    """The camera name in Frigate: the middle of `frigate/<camera>/motion`."""
    return _topic(device).rsplit("/", 2)[-2]


def _topic(device: Device) -> str:
    return device.topic or f"frigate/{device.id}/motion"


def decode_motion(payload: bytes, device: Device, now: float) -> list[Event]:
    """`ON` / `OFF` on the camera's motion topic."""
    state = MOTION.get(payload.decode("ascii", errors="replace").strip()) if len(payload) <= 8 else None
    if state is None:
        raise PayloadError("unknown_state", f"motion {payload[:16]!r} is not ON or OFF")
    location = device.location.point() if device.location else None
    return [Event(EventKind.OCCUPANCY, device.id, now, location=location, attrs={"occupied": state})]


def decode_event(payload: bytes, devices: Sequence[Device], now: float) -> list[Event]:
    """A tracked-object event: a detection when the object newly entered one of its camera's zones."""
    doc = json_object(payload, MAX_EVENT_BYTES)
    kind = text(doc, "type", required=True)
    if kind not in EVENT_TYPES:
        raise PayloadError("unknown_type", f"event type {kind!r} is not one of {', '.join(EVENT_TYPES)}")
    after = obj(doc, "after", required=True)
    before = obj(doc, "before") or {}
    camera = text(after, "camera", required=True)
    device = next((d for d in devices if camera_of(d) == camera), None)
    label = text(after, "label", required=True)
    score = number(after, "top_score", 0, 1)
    if score is None:
        score = number(after, "score", 0, 1)
    false_positive = flag(after, "false_positive")
    timestamp(after, "frame_time", now)
    entered = texts(after, "entered_zones")
    earlier = set(texts(before, "entered_zones")) if kind != "new" else set()
    zones = [zone for zone in entered if zone not in earlier]
    if device is None or kind == "end" or false_positive or not zones:
        return []
    attrs: dict[str, object] = {"label": label, "score": score, "zones": zones, "camera": camera, "event_id": text(after, "id", max_len=64)}
    location = device.location.point() if device.location else None
    return [Event(EventKind.DETECTION, device.id, now, location=location, attrs=attrs)]


def decode_stats(payload: bytes, devices: Sequence[Device], now: float) -> list[Event]:
    """Frigate's periodic stats: each configured camera is heard, online while it delivers frames."""
    cameras = obj(json_object(payload, MAX_STATS_BYTES), "cameras") or {}
    events = []
    for device in devices:
        stats = obj(cameras, camera_of(device))
        if stats is None:
            continue  # Frigate does not know the camera: its silence raises device_offline in time
        fps = number(stats, "camera_fps", 0, 1000)
        online = fps is None or fps > 0
        detail = None if online else f"Frigate receives no frames from camera {camera_of(device)!r}"
        events.append(Event(EventKind.AVAILABILITY, device.id, now, online=online, attrs={"fps": fps, "detail": detail}))
    return events


def _shared(topic: str) -> dict[str, DecodeShared]:
    prefix = topic.rsplit("/", 2)[0]
    return {
        f"{prefix}/events": decode_event,
        f"{prefix}/stats": decode_stats,
        f"{prefix}/available": each_device(decode_availability),
    }


def event_payload(kind: str, camera: str, label: str, score: float, zones_before: list[str], zones_after: list[str],
                  event_id: str, frame_time: float, false_positive: bool = False) -> bytes:
    """A `frigate/events` message as Frigate publishes it (trimmed to the fields guardlink reads, plus a few more)."""

    def state(zones: list[str]) -> dict[str, object]:
        return {
            "id": event_id, "camera": camera, "frame_time": frame_time, "label": label, "sub_label": None,
            "top_score": score, "score": score, "false_positive": false_positive, "start_time": frame_time - 2,
            "end_time": frame_time if kind == "end" else None, "box": [424, 300, 536, 512], "area": 23744,
            "current_zones": zones, "entered_zones": zones, "has_snapshot": True, "has_clip": True, "stationary": False,
        }

    return json.dumps({"type": kind, "before": state(zones_before), "after": state(zones_after)}).encode()


def stats_payload(camera_fps: dict[str, float]) -> bytes:
    """A `frigate/stats` message, trimmed."""
    cameras = {name: {"camera_fps": fps, "process_fps": fps, "detection_fps": fps / 2, "pid": 100} for name, fps in camera_fps.items()}
    return json.dumps({"cameras": cameras, "service": {"uptime": 3600, "version": "0.14.1"}}).encode()


def _detect(sim: SimulatedSite, device: Device, zone: str, label: str) -> list[tuple[str, bytes]]:
    """`label` walks into `zone`: Frigate's new event, then the update that enters the zone."""
    camera, now = camera_of(device), time.time()
    event_id = f"{now:.6f}-{sim.rng.getrandbits(24):06x}"
    events = f"{sim.topic(device).rsplit('/', 2)[0]}/events"
    return [
        (events, event_payload("new", camera, label, 0.6, [], [], event_id, now)),
        (events, event_payload("update", camera, label, 0.88, [], [zone], event_id, now)),
    ]


def _everyday(sim: SimulatedSite, device: Device, health: Health) -> tuple[str, bytes]:
    return sim.topic(device), sim.rng.choice((b"ON", b"OFF"))


DRIVER = Driver(
    name="frigate",
    summary="Frigate NVR cameras (frigate/events detections, stats, availability)",
    watch=lambda site: (),
    default_topic=lambda site, device: f"frigate/{device}/motion",
    decode=decode_motion,
    heartbeat_s=60.0,  # frigate/stats every 60 s (Frigate's default stats_interval)
    shared_topics=_shared,
    simulate=Simulation(everyday=_everyday, detect=_detect),
)
