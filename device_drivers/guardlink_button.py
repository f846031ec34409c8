"""Native guardlink panic button firmware on `guardlink/<site>/dev/<device>/up`.

    {"seq": 7, "boot": 3, "type": "press", "action": "single"}          # single, double, triple, hold, long
    {"seq": 8, "boot": 3, "type": "status", "battery": 91, "rssi": -61, "tamper": false}

Every message carries the native envelope (device_drivers/native.py: `seq`, `boot`, optional `ts`); the edge
drops replays. Which actions are panic, duress (silent) or a test is set per device in the site file
(`panic_actions`, `duress_actions`, `test_actions`). The button sends `status` every 5 minutes, sets its
Last Will to `offline` (retained) on `guardlink/<site>/devices/<device>/availability` and publishes
`online` there after connecting. `tamper: true` means its case was opened or it was pulled off the wall.
"""

from __future__ import annotations

import json

from device_drivers.driver import Driver, Health, SimulatedSite, Simulation, press
from device_drivers.native import envelope, stamped
from device_drivers.payload import PayloadError, flag, json_object, number, text
from guardlink import topics
from guardlink.models import Event, EventKind
from guardlink.siteconfig import Device

ACTIONS = ("single", "double", "triple", "hold", "long")


def decode(payload: bytes, device: Device, now: float) -> list[Event]:
    """Decode one button report."""
    doc = json_object(payload)
    kind, attrs = envelope(doc, now)
    if kind == "press":
        action = text(doc, "action", required=True)
        if action not in ACTIONS:
            raise PayloadError("unknown_action", f"press action {action!r} is not one of {', '.join(ACTIONS)}")
        return [press(device, action, now, **attrs)]
    if kind == "status":
        battery = number(doc, "battery", 0, 100, required=True)
        rssi = number(doc, "rssi", -130, 0)
        tamper = flag(doc, "tamper")  # in every status report: a condition (edge/supervision.py)
        status_attrs = attrs | ({"rssi_dbm": rssi} if rssi is not None else {}) | ({"tamper": tamper} if tamper is not None else {})
        return [Event(EventKind.DEVICE_STATUS, device.id, now, battery=battery, attrs=status_attrs)]
    raise PayloadError("unknown_type", f"message type {kind!r} is not one of press, status")


def press_payload(seq: int, action: str = "single", boot: int | None = None) -> bytes:
    """A press as the button firmware sends it."""
    return json.dumps(stamped({"type": "press", "action": action}, seq, boot)).encode()


def status_payload(seq: int, battery: float, rssi: float, boot: int | None = None, tamper: bool = False) -> bytes:
    """The button's periodic status report."""
    return json.dumps(stamped({"type": "status", "battery": battery, "rssi": rssi, "tamper": tamper}, seq, boot)).encode()


def _simulated_press(sim: SimulatedSite, device: Device, action: str) -> bytes:
    return press_payload(sim.next_seq(device.id), action, sim.boot)


def _everyday(sim: SimulatedSite, device: Device, health: Health) -> tuple[str, bytes]:
    battery, linkquality = health
    return sim.topic(device), status_payload(sim.next_seq(device.id), battery, -40 - linkquality // 5, sim.boot)


DRIVER = Driver(
    name="guardlink_button",
    summary="guardlink's native panic button firmware (press, status)",
    watch=lambda site: (topics.native_device_uplink(site, "+"), topics.device_availability(site, "+")),
    default_topic=topics.native_device_uplink,
    decode=decode,
    heartbeat_s=300.0,  # status every 5 minutes
    availability_topic=lambda site, device, topic: topics.device_availability(site, device),
    sequenced=True,
    actions=ACTIONS,
    verifies_configs=True,
    simulate=Simulation(everyday=_everyday, press=_simulated_press),
)
