"""Tasmota buttons (ESP modules running Tasmota with buttons decoupled from relays, `SetOption73 1`).

    stat/<topic>/RESULT   {"Button1": {"Action": "SINGLE"}}     SINGLE, DOUBLE, TRIPLE, QUAD, PENTA, HOLD
    tele/<topic>/STATE    {"Time": ..., "Uptime": ..., "Wifi": {"RSSI": 78, ...}}   every TelePeriod (300 s)
    tele/<topic>/LWT      Online | Offline                        (Last Will, retained)

`<topic>` is the module's Tasmota topic (the default FullTopic `%prefix%/%topic%/`). A module has up to
eight buttons: configure one guardlink device per button wired to an alarm, `channel` = the button
number (default 1). RESULT messages of other commands (`{"POWER": "ON"}` ...) carry no press.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from device_drivers.driver import DecodeShared, Driver, Health, SimulatedSite, Simulation, decode_availability, each_device, on_channel, press
from device_drivers.payload import PayloadError, json_object, number, obj, text
from guardlink.models import Event, EventKind
from guardlink.siteconfig import Device

ACTIONS = {"SINGLE": "single", "DOUBLE": "double", "TRIPLE": "triple", "QUAD": "quadruple", "PENTA": "many", "HOLD": "hold"}
SENDS = {action: word for word, action in ACTIONS.items()} | {"long": "HOLD"}  # what a simulated press of each guardlink action sends
_BUTTON = re.compile(r"^Button([1-8])$")


def decode_result(payload: bytes, devices: Sequence[Device], now: float) -> list[Event]:
    """A RESULT message: a press for each configured button it reports."""
    doc = json_object(payload)
    events: list[Event] = []
    for key in doc:
        match = _BUTTON.match(key) if isinstance(key, str) else None
        if match is None:
            continue
        action = text(obj(doc, key, required=True), "Action", required=True, max_len=16)
        if action not in ACTIONS:
            raise PayloadError("unknown_action", f"{key} action {action!r} is not one of {', '.join(ACTIONS)}")
        device = on_channel(devices, int(match[1]), 1)
        if device is not None:
            events.append(press(device, ACTIONS[action], now, button=int(match[1])))
    return events


def _state(payload: bytes, device: Device, now: float) -> list[Event]:
    """Periodic telemetry: the module is alive; its Wi-Fi signal (percent) stands in for link quality."""
    doc = json_object(payload)
    wifi = obj(doc, "Wifi")
    rssi = number(wifi, "RSSI", 0, 100) if wifi else None
    return [Event(EventKind.DEVICE_STATUS, device.id, now, attrs={"wifi_percent": rssi} if rssi is not None else {})]


def _module(topic: str) -> str:
    parts = topic.split("/")
    return parts[1] if len(parts) == 3 and parts[0] == "stat" and parts[2] == "RESULT" else topic


def telemetry_topic(topic: str) -> str:
    """Where the module of a device on `stat/<topic>/RESULT` sends its periodic telemetry."""
    return f"tele/{_module(topic)}/STATE"


def _shared(topic: str) -> dict[str, DecodeShared]:
    return {f"tele/{_module(topic)}/LWT": each_device(decode_availability), telemetry_topic(topic): each_device(_state)}


def result_payload(button: int, action: str) -> bytes:
    """A RESULT message for a press, as Tasmota publishes it."""
    return json.dumps({f"Button{button}": {"Action": action}}).encode()


def state_payload(uptime_s: int, rssi: int) -> bytes:
    """A tele STATE message, trimmed to what guardlink reads."""
    days, rest = divmod(uptime_s, 86400)
    uptime = f"{days}T{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return json.dumps({"Time": "2024-01-01T00:00:00", "Uptime": uptime, "UptimeSec": uptime_s, "Wifi": {"RSSI": rssi, "Signal": -60}}).encode()


def _simulated_press(sim: SimulatedSite, device: Device, action: str) -> bytes:
    return result_payload(device.channel or 1, SENDS[action])


def _everyday(sim: SimulatedSite, device: Device, health: Health) -> tuple[str, bytes]:
    return telemetry_topic(sim.topic(device)), state_payload(sim.rng.randint(60, 10**6), health[1] * 100 // 255)


DRIVER = Driver(
    name="tasmota",
    summary="Tasmota modules' buttons (stat/<topic>/RESULT)",
    watch=lambda site: (),
    default_topic=lambda site, device: f"stat/{device}/RESULT",
    decode=lambda payload, device, now: decode_result(payload, (device,), now),
    heartbeat_s=300.0,  # tele/<topic>/STATE every TelePeriod (300 s by default)
    shared_topics=_shared,
    decode_own_shared=decode_result,
    actions=tuple(SENDS),
    simulate=Simulation(everyday=_everyday, press=_simulated_press),
)
