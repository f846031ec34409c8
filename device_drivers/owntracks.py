"""OwnTracks phones as guard wearables: `owntracks/<user>/<device>` JSON with `_type`.

    {"_type": "location", "lat": 40.84, "lon": 111.75, "acc": 12, "batt": 64, "tst": 1700000000}
    {"_type": "transition", "event": "enter", "desc": "Main gate", "lat": .., "lon": .., "acc": .., "tst": ..}
    {"_type": "lwt", "tst": 1699990000}      # the app's Last Will: the phone dropped off the broker

`tst` (when the phone took the fix) must be within 5 min ahead / 1 h behind the edge's clock: the app
queues reports while offline, and a position an hour old says nothing about where the guard is. The
Last Will's `tst` is when the app connected, so it is not checked.
"""

from __future__ import annotations

import json
import time

from device_drivers.driver import Driver, Health, SimulatedSite, Simulation
from device_drivers.payload import PayloadError, json_object, number, text, timestamp
from guardlink.geo import LatLon
from guardlink.models import Event, EventKind
from guardlink.siteconfig import Device

TRANSITIONS = ("enter", "leave")


def decode(payload: bytes, device: Device, now: float) -> list[Event]:
    """Decode a location, a region transition or the app's Last Will; other message types carry nothing guardlink uses."""
    doc = json_object(payload)
    kind = text(doc, "_type", required=True)
    if kind == "lwt":
        return [Event(EventKind.AVAILABILITY, device.id, now, online=False)]
    if kind not in ("location", "transition"):
        return []
    attrs: dict[str, object] = {}
    if kind == "transition":  # entering or leaving a region the guard's app watches, with the fix that triggered it
        event = text(doc, "event", required=True)
        if event not in TRANSITIONS:
            raise PayloadError("unknown_action", f"transition event {event!r} is not enter or leave")
        attrs = {"transition": event, "region": text(doc, "desc", max_len=128)}
    timestamp(doc, "tst", now)
    point = LatLon(number(doc, "lat", -90, 90, required=True), number(doc, "lon", -180, 180, required=True))
    events = [Event(EventKind.POSITION, device.id, now, location=point, accuracy_m=number(doc, "acc", 0, 100_000), attrs=attrs)]
    battery = number(doc, "batt", 0, 100)
    if battery is not None:
        events.append(Event(EventKind.DEVICE_STATUS, device.id, now, battery=battery))
    return events


def location_payload(point: LatLon, accuracy_m: float, timestamp: float, battery: int | None = None) -> bytes:
    """A location message as the OwnTracks app publishes it."""
    doc: dict[str, object] = {"_type": "location", "lat": point.lat, "lon": point.lon, "acc": round(accuracy_m), "tst": int(timestamp)}
    if battery is not None:
        doc["batt"] = battery
    return json.dumps(doc).encode()


def transition_payload(point: LatLon, accuracy_m: float, timestamp: float, event: str, region: str) -> bytes:
    """A region transition as the OwnTracks app publishes it."""
    return json.dumps({
        "_type": "transition", "event": event, "desc": region, "lat": point.lat, "lon": point.lon,
        "acc": round(accuracy_m), "tst": int(timestamp), "wtst": int(timestamp) - 86400, "t": "c",
    }).encode()


def lwt_payload(connected_at: float) -> bytes:
    """The Last Will the app registers when it connects."""
    return json.dumps({"_type": "lwt", "tst": int(connected_at)}).encode()


def _position(sim: SimulatedSite, device: Device, point: LatLon, accuracy_m: float) -> bytes:
    return location_payload(point, accuracy_m, time.time(), battery=sim.rng.randint(20, 100))


def _everyday(sim: SimulatedSite, device: Device, health: Health) -> tuple[str, bytes]:
    return sim.topic(device), location_payload(sim.where(device), sim.rng.uniform(3, 12), time.time())


DRIVER = Driver(
    name="owntracks",
    summary="OwnTracks phone app (location, region transitions, Last Will)",
    watch=lambda site: ("owntracks/+/+",),
    default_topic=lambda site, device: f"owntracks/{site}/{device}",
    decode=decode,
    heartbeat_s=900.0,  # the app's default significant-change mode reports at least every 15 min
    wearable=True,
    simulate=Simulation(everyday=_everyday, position=_position),
)
