"""OwnTracks phones as guard wearables: `owntracks/<user>/<device>` JSON with `_type`."""

from __future__ import annotations

import json

from device_drivers.driver import Driver
from device_drivers.payload import json_object, number, text
from guardlink.geo import LatLon
from guardlink.models import Event, EventKind
from guardlink.siteconfig import Device


def decode(payload: bytes, device: Device, now: float) -> list[Event]:
    """Decode a location report or the app's Last Will; other message types carry nothing guardlink uses yet."""
    doc = json_object(payload)
    kind = text(doc, "_type", required=True)
    if kind == "lwt":  # the app's Last Will: the phone dropped off the broker
        return [Event(EventKind.AVAILABILITY, device.id, now, online=False)]
    if kind != "location":
        return []
    point = LatLon(number(doc, "lat", -90, 90, required=True), number(doc, "lon", -180, 180, required=True))
    events = [Event(EventKind.POSITION, device.id, now, location=point, accuracy_m=number(doc, "acc", 0, 100_000))]
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


DRIVER = Driver(
    name="owntracks",
    summary="OwnTracks phone app (location)",
    watch=lambda site: ("owntracks/+/+",),
    default_topic=lambda site, device: f"owntracks/{site}/{device}",
    decode=decode,
    heartbeat_s=900.0,  # the app's default significant-change mode reports at least every 15 min
)
