"""Native guardlink wearable firmware on `guardlink/<site>/dev/<device>/up`.

Every message is a JSON object with a sequence number and a type:

    {"seq": 41, "type": "position", "lat": 40.8421, "lon": 111.7512, "acc": 4.5}
    {"seq": 42, "type": "sos", "press": "short"}      # "long" = duress, a silent alarm
    {"seq": 43, "type": "battery", "battery": 76}
    {"seq": 44, "type": "motion", "min_g": 0.92, "max_g": 1.10, "tilt_deg": 12, "still": false}
    {"seq": 45, "type": "vitals", "hr": 88}

`motion` summarises the accelerometer over the last second (minimum and maximum magnitude in g, the
angle of the wearer's torso from upright, whether it moved); the firmware sends one every second.
`vitals` carries the heart rate in beats per minute.

Every message carries the native envelope (device_drivers/native.py): `seq` from 0 per boot, `boot` (a
boot counter, recommended) and `ts` (optional); the edge drops replays. The firmware reports at least
every 30 s and sets its MQTT Last Will to `offline` (retained) on
`guardlink/<site>/devices/<device>/availability`, publishing `online` there after connecting.
"""

from __future__ import annotations

import json

from device_drivers.driver import Driver, Health, SimulatedSite, Simulation
from device_drivers.native import envelope, stamped
from device_drivers.payload import PayloadError, flag, json_object, number, text
from guardlink import topics
from guardlink.geo import LatLon
from guardlink.models import Event, EventKind
from guardlink.siteconfig import Device

PRESSES = {"short": EventKind.SOS, "long": EventKind.DURESS}


def decode(payload: bytes, device: Device, now: float) -> list[Event]:
    """Decode one wearable report."""
    doc = json_object(payload)
    kind, attrs = envelope(doc, now)
    if kind == "position":
        point = LatLon(number(doc, "lat", -90, 90, required=True), number(doc, "lon", -180, 180, required=True))
        accuracy = number(doc, "acc", 0, 100_000)
        return [Event(EventKind.POSITION, device.id, now, location=point, accuracy_m=accuracy, attrs=attrs)]
    if kind == "sos":
        press = text(doc, "press") or "short"
        if press not in PRESSES:
            raise PayloadError("unknown_action", f"sos press {press!r} is not one of {', '.join(PRESSES)}")
        return [Event(PRESSES[press], device.id, now, action=press, attrs=attrs)]
    if kind == "battery":
        return [Event(EventKind.DEVICE_STATUS, device.id, now, battery=number(doc, "battery", 0, 100, required=True), attrs=attrs)]
    if kind == "motion":
        still = flag(doc, "still", required=True)
        attrs |= {
            "min_g": number(doc, "min_g", 0, 64, required=True),
            "max_g": number(doc, "max_g", 0, 64, required=True),
            "tilt_deg": number(doc, "tilt_deg", 0, 180, required=True),
            "still": still,
        }
        return [Event(EventKind.MOTION, device.id, now, attrs=attrs)]
    if kind == "vitals":
        attrs["heart_rate"] = number(doc, "hr", 0, 300, required=True)
        return [Event(EventKind.VITALS, device.id, now, attrs=attrs)]
    raise PayloadError("unknown_type", f"message type {kind!r} is not one of position, sos, battery, motion, vitals")


def position_payload(seq: int, point: LatLon, accuracy_m: float, boot: int | None = None) -> bytes:
    """A position report as the firmware sends it."""
    return json.dumps(stamped({"type": "position", "lat": point.lat, "lon": point.lon, "acc": accuracy_m}, seq, boot)).encode()


def motion_payload(seq: int, min_g: float, max_g: float, tilt_deg: float, still: bool, boot: int | None = None) -> bytes:
    """An accelerometer summary as the firmware sends it every second."""
    doc = {"type": "motion", "min_g": min_g, "max_g": max_g, "tilt_deg": tilt_deg, "still": still}
    return json.dumps(stamped(doc, seq, boot)).encode()


def vitals_payload(seq: int, heart_rate: float, boot: int | None = None) -> bytes:
    """A heart-rate reading as the firmware sends it."""
    return json.dumps(stamped({"type": "vitals", "hr": heart_rate}, seq, boot)).encode()


def battery_payload(seq: int, battery: float, boot: int | None = None) -> bytes:
    """A battery report as the firmware sends it."""
    return json.dumps(stamped({"type": "battery", "battery": battery}, seq, boot)).encode()


def sos_payload(seq: int, press: str = "short", boot: int | None = None) -> bytes:
    """An SOS press as the firmware sends it."""
    return json.dumps(stamped({"type": "sos", "press": press}, seq, boot)).encode()


# -- simulated ------------------------------------------------------------------------------------


def _simulated_press(sim: SimulatedSite, device: Device, action: str) -> bytes:
    """`long` is the silent SOS, any other action a short one."""
    return sos_payload(sim.next_seq(device.id), "long" if action == "long" else "short", sim.boot)


def _position(sim: SimulatedSite, device: Device, point: LatLon, accuracy_m: float) -> bytes:
    return position_payload(sim.next_seq(device.id), point, accuracy_m, sim.boot)


def _walking(sim: SimulatedSite, device: Device) -> bytes:
    rng = sim.rng
    min_g, max_g, tilt = round(rng.uniform(0.7, 0.95), 2), round(rng.uniform(1.05, 1.6), 2), round(rng.uniform(3, 25))
    return motion_payload(sim.next_seq(device.id), min_g, max_g, tilt, False, sim.boot)


def _motion(sim: SimulatedSite, device: Device, lying: bool) -> list[bytes]:
    """A second's accelerometer summary (lying still after a fall, or walking), now and then a heart rate."""
    moved = motion_payload(sim.next_seq(device.id), 0.97, 1.02, 85.0, True, sim.boot) if lying else _walking(sim, device)
    if sim.rng.random() < 0.2:
        return [moved, vitals_payload(sim.next_seq(device.id), sim.rng.randint(65, 105), sim.boot)]
    return [moved]


def _fall(sim: SimulatedSite, device: Device) -> list[bytes]:
    """Free fall, then the impact."""
    return [
        motion_payload(sim.next_seq(device.id), 0.12, 1.0, 40.0, False, sim.boot),
        motion_payload(sim.next_seq(device.id), 0.9, 3.6, 85.0, False, sim.boot),
    ]


def _everyday(sim: SimulatedSite, device: Device, health: Health) -> tuple[str, bytes]:
    if sim.rng.random() < 0.5:
        return sim.topic(device), _walking(sim, device)
    return sim.topic(device), position_payload(sim.next_seq(device.id), sim.where(device), round(sim.rng.uniform(3, 12), 1), sim.boot)


DRIVER = Driver(
    name="guardlink_wearable",
    summary="guardlink's native wearable firmware (position, SOS, battery)",
    watch=lambda site: (topics.native_device_uplink(site, "+"), topics.device_availability(site, "+")),
    default_topic=topics.native_device_uplink,
    decode=decode,
    heartbeat_s=30.0,  # the firmware reports its position every 30 s or sooner
    availability_topic=lambda site, device, topic: topics.device_availability(site, device),
    sequenced=True,
    actions=("single", "long"),
    sos_key=True,
    wearable=True,
    verifies_configs=True,
    simulate=Simulation(everyday=_everyday, press=_simulated_press, position=_position, motion=_motion, fall=_fall),
)
