"""Zigbee2MQTT: buttons and sensors on `zigbee2mqtt/<friendly name>`, their availability on
`zigbee2mqtt/<friendly name>/availability`, and the bridge's own state on `zigbee2mqtt/bridge/state`.

A device's state message is one JSON object with whatever the device exposes; guardlink reads:

    {"action": "single"}                          # buttons: single, double, triple, quadruple, many, hold, release ...
    {"contact": false}                            # door/window contact: false = open
    {"occupancy": true}                           # motion/presence sensor
    {"water_leak": true}                          # leak sensor: a condition, raised while true
    {"smoke": true}                               # smoke detector: a condition, raised while true
    {"tamper": true}                              # the case was opened
    {"battery": 87, "voltage": 2950, "linkquality": 120, "battery_low": false}

Zigbee2MQTT sends the device's whole state on every change, so a sensor's state comes again and again;
the edge acts on changes. When the bridge goes offline every device behind it is unreachable, so the
bridge's `offline` is an `offline` of each of its devices.
"""

from __future__ import annotations

import json

from device_drivers.driver import ACTIONS, DecodeShared, Driver, Health, SimulatedSite, Simulation, decode_availability, each_device, press
from device_drivers.payload import PayloadError, flag, integer, json_object, number, text
from guardlink.models import Event, EventKind
from guardlink.siteconfig import Device

SENSORS = {  # state field -> (event kind, what the attribute is called on the event, invert)
    "contact": (EventKind.CONTACT, "open", True),  # Zigbee2MQTT's contact=true means closed
    "occupancy": (EventKind.OCCUPANCY, "occupied", False),
    "water_leak": (EventKind.WATER_LEAK, "active", False),
    "smoke": (EventKind.SMOKE, "active", False),
}


def decode(payload: bytes, device: Device, now: float) -> list[Event]:
    """Decode one state message: a press (if any), sensor states, tamper, then battery and radio status."""
    doc = json_object(payload)
    events: list[Event] = []
    action = text(doc, "action")
    if action:  # Zigbee2MQTT clears the action with "" right after a press
        if action not in ACTIONS:
            raise PayloadError("unknown_action", f"action {action!r} is not a button action ({', '.join(sorted(ACTIONS))})")
        events.append(press(device, action, now))
    location = device.location.point() if device.location else None
    for field, (kind, name, invert) in SENSORS.items():
        state = flag(doc, field)
        if state is not None:
            events.append(Event(kind, device.id, now, location=location, attrs={name: state != invert}))
    battery = number(doc, "battery", 0, 100)
    linkquality = integer(doc, "linkquality", 0, 255)
    voltage = number(doc, "voltage", 0, 60_000)  # millivolts
    battery_low = flag(doc, "battery_low")
    if battery is not None or linkquality is not None or voltage is not None or battery_low is not None:
        attrs: dict[str, object] = {k: v for k, v in (("voltage_mv", voltage), ("battery_low", battery_low)) if v is not None}
        events.append(Event(EventKind.DEVICE_STATUS, device.id, now, battery=battery, linkquality=linkquality, attrs=attrs))
    tamper = flag(doc, "tamper")  # in every state report of devices that have the switch: a condition (edge/supervision.py)
    if tamper is not None:
        if events and events[-1].kind is EventKind.DEVICE_STATUS:
            events[-1].attrs["tamper"] = tamper
        else:
            events.append(Event(EventKind.TAMPER, device.id, now, location=location, attrs={"tamper": tamper}))
    return events


def button_payload(action: str, battery: float | None = None, linkquality: int | None = None) -> bytes:
    """What Zigbee2MQTT publishes for a button press (used by the simulators)."""
    doc: dict[str, object] = {"action": action}
    if battery is not None:
        doc["battery"] = battery
    if linkquality is not None:
        doc["linkquality"] = linkquality
    return json.dumps(doc).encode()


def sensor_payload(field: str, state: bool, battery: float, voltage: int, linkquality: int) -> bytes:
    """A sensor's state message as Zigbee2MQTT publishes it (`contact`, `occupancy`, `water_leak` or `smoke`)."""
    return json.dumps({field: state, "battery": battery, "voltage": voltage, "linkquality": linkquality, "tamper": False}).encode()


def _bridge(topic: str) -> dict[str, DecodeShared]:
    base = topic.split("/", 1)[0]  # the base topic Zigbee2MQTT was configured with
    return {f"{base}/bridge/state": each_device(_bridge_state)}


def _bridge_state(payload: bytes, device: Device, now: float) -> list[Event]:
    [event] = decode_availability(payload, device, now)
    event.attrs["via"] = "bridge"
    return [event]


def _simulated_press(sim: SimulatedSite, device: Device, action: str) -> bytes:
    return button_payload(action, battery=sim.rng.randint(40, 100), linkquality=sim.rng.randint(60, 255))


def _everyday(sim: SimulatedSite, device: Device, health: Health) -> tuple[str, bytes]:
    battery, linkquality = health
    return sim.topic(device), json.dumps({"battery": battery, "linkquality": linkquality}).encode()


DRIVER = Driver(
    name="zigbee2mqtt",
    summary="Zigbee buttons and sensors (contact, occupancy, leak, smoke) bridged by Zigbee2MQTT",
    watch=lambda site: ("zigbee2mqtt/+", "zigbee2mqtt/+/availability"),
    default_topic=lambda site, device: f"zigbee2mqtt/{device}",
    decode=decode,
    heartbeat_s=3600.0,  # battery buttons check in about hourly (Zigbee2MQTT's own passive timeout is 25 h)
    availability_topic=lambda site, device, topic: f"{topic}/availability",
    shared_topics=_bridge,
    actions=tuple(sorted(ACTIONS)),
    bridge_user="zigbee2mqtt",  # its devices never connect: the bridge publishes for all of them
    simulate=Simulation(everyday=_everyday, press=_simulated_press),
)
