"""Zigbee2MQTT buttons: `zigbee2mqtt/<friendly name>` JSON state with `action`, `battery`, `linkquality`, `tamper`;
availability on `zigbee2mqtt/<friendly name>/availability`."""

from __future__ import annotations

import json

from device_drivers.driver import Driver
from device_drivers.payload import PayloadError, integer, json_object, number, text
from guardlink.models import Event, EventKind
from guardlink.siteconfig import Device

# Actions Zigbee2MQTT publishes for buttons (single/multi press, hold and release, Aqara "many"/"long").
ACTIONS = frozenset({"single", "double", "triple", "quadruple", "many", "hold", "release", "long", "long_release", "press"})


def decode(payload: bytes, device: Device, now: float) -> list[Event]:
    """Decode one state message into a press event (if any) and a status event (if any)."""
    doc = json_object(payload)
    events: list[Event] = []
    action = text(doc, "action")
    if action:  # Zigbee2MQTT clears the action with "" right after a press
        if action not in ACTIONS:
            raise PayloadError("unknown_action", f"action {action!r} is not a button action ({', '.join(sorted(ACTIONS))})")
        kind = (
            EventKind.DURESS if action in device.duress_actions
            else EventKind.PANIC if action in device.panic_actions
            else EventKind.BUTTON
        )
        location = device.location.point() if device.location else None
        events.append(Event(kind, device.id, now, location=location, action=action))
    tamper = doc.get("tamper")
    if tamper is not None and not isinstance(tamper, bool):
        raise PayloadError("wrong_type", f"'tamper' must be true or false, got {type(tamper).__name__}")
    if tamper:
        events.append(Event(EventKind.TAMPER, device.id, now, location=device.location.point() if device.location else None))
    battery = number(doc, "battery", 0, 100)
    linkquality = integer(doc, "linkquality", 0, 255)
    if battery is not None or linkquality is not None:
        events.append(Event(EventKind.DEVICE_STATUS, device.id, now, battery=battery, linkquality=linkquality))
    return events


def button_payload(action: str, battery: float | None = None, linkquality: int | None = None) -> bytes:
    """What Zigbee2MQTT publishes for a button press (used by the simulators)."""
    doc: dict[str, object] = {"action": action}
    if battery is not None:
        doc["battery"] = battery
    if linkquality is not None:
        doc["linkquality"] = linkquality
    return json.dumps(doc).encode()


DRIVER = Driver(
    name="zigbee2mqtt",
    summary="Zigbee buttons bridged by Zigbee2MQTT",
    watch=lambda site: ("zigbee2mqtt/+", "zigbee2mqtt/+/availability"),
    default_topic=lambda site, device: f"zigbee2mqtt/{device}",
    decode=decode,
    heartbeat_s=3600.0,  # battery buttons check in about hourly (Zigbee2MQTT's own passive timeout is 25 h)
    availability_topic=lambda site, device, topic: f"{topic}/availability",
)
