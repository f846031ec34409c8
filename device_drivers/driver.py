"""What a driver entry is: one declarative description of a device family, like a Zigbee2MQTT converter."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from device_drivers.payload import PayloadError
from guardlink.geo import LatLon
from guardlink.models import Event, EventKind
from guardlink.siteconfig import Device

Decode = Callable[[bytes, Device, float], list[Event]]  # (payload, device, now) -> events; raises PayloadError
# A topic several configured devices share (a bridge's state, an NVR's event stream, a multi-input module):
# (payload, the devices on it, now) -> events for whichever of them the message concerns.
DecodeShared = Callable[[bytes, Sequence[Device], float], list[Event]]


def _no_availability(site: str, device_id: str, topic: str) -> None:
    return None


def _no_shared_topics(topic: str) -> dict[str, DecodeShared]:
    return {}


class SimulatedSite(Protocol):
    """What a family's simulation hooks are given: the simulator's randomness and the counters its devices keep."""

    rng: random.Random
    boot: int  # native firmware's boot counter: a new simulator is a new boot

    def topic(self, device: Device) -> str:
        """The topic the device publishes on."""
        ...

    def next_seq(self, device_id: str) -> int:
        """The device's next message sequence number (native firmware counts its messages)."""
        ...

    def where(self, device: Device) -> LatLon:
        """Where the device is now (a worn one walks with its guard)."""
        ...


Health = tuple[int, int]  # the battery % and radio link quality (0-255) a simulated device reports


@dataclass(frozen=True, slots=True)
class Simulation:
    """How the simulators make one family's devices talk, kept next to the family's decoder (as Zigbee2MQTT keeps
    a device's fromZigbee and toZigbee together). Hooks a family has no use for stay None."""

    # One message of the device's everyday traffic (status, telemetry, a sensor state, a position), as (topic, payload):
    # the edge makes exactly one event of it.
    everyday: Callable[[SimulatedSite, Device, Health], tuple[str, bytes]]
    press: Callable[[SimulatedSite, Device, str], bytes] | None = None  # a press of one of the driver's `actions`, on the device's topic
    position: Callable[[SimulatedSite, Device, LatLon, float], bytes] | None = None  # wearables: (point, accuracy m) on the device's topic
    motion: Callable[[SimulatedSite, Device, bool], list[bytes]] | None = None  # every second: accelerometer (lying still or not), vitals
    fall: Callable[[SimulatedSite, Device], list[bytes]] | None = None  # the wearer falls: free fall, then the impact
    detect: Callable[[SimulatedSite, Device, str, str], list[tuple[str, bytes]]] | None = None  # a camera sees (zone, label)


def _everyday_unknown(sim: SimulatedSite, device: Device, health: Health) -> tuple[str, bytes]:
    raise NotImplementedError(f"no simulation of {device.driver} devices")


NO_SIMULATION = Simulation(everyday=_everyday_unknown)


@dataclass(frozen=True, slots=True)
class Driver:
    """How guardlink speaks to one device family."""

    name: str
    summary: str
    watch: Callable[[str], tuple[str, ...]]  # site id -> topic filters the family's devices publish under (exact topics need none)
    default_topic: Callable[[str, str], str]  # (site id, device id) -> the device's topic when the config has none
    decode: Decode  # a message on the device's own topic
    heartbeat_s: float  # a healthy device of this family is heard from at least this often
    # (site id, device id, device topic) -> where the family announces online/offline (Last Will), if it does
    availability_topic: Callable[[str, str, str], str | None] = _no_availability
    # device topic -> topics it shares with other devices of the family, and how to read them
    shared_topics: Callable[[str], dict[str, DecodeShared]] = _no_shared_topics
    # A message on the device's own topic may concern several configured devices (inputs of one module).
    decode_own_shared: DecodeShared | None = None
    sequenced: bool = False  # messages carry `seq` (and `boot`): the intake drops replays (see edge/replay.py)
    actions: tuple[str, ...] = ()  # the guardlink actions (ACTIONS) its button can send; none: it has no button
    sos_key: bool = False  # its button is an SOS key: every press is an alarm, whatever the site's panic actions
    wearable: bool = False  # worn by a guard: it reports where the guard is, so it has no fixed location
    verifies_configs: bool = False  # firmware that verifies, applies and reports pushed signed configurations
    bridge_user: str | None = None  # the broker account of the bridge publishing for all its devices (they never connect)
    simulate: Simulation = NO_SIMULATION  # how the simulators make its devices talk

    def topic_for(self, site: str, device: Device) -> str:
        """The topic this device publishes on."""
        return device.topic or self.default_topic(site, device.id)

    def routes(self, site: str, device: Device) -> dict[str, DecodeShared]:
        """Every topic the device is heard on, with how a message there is read for the devices sharing it."""
        topic = self.topic_for(site, device)
        routes = {topic: self.decode_own_shared or one_device(self.decode)}
        availability = self.availability_topic(site, device.id, topic)
        if availability:
            routes[availability] = each_device(decode_availability)
        return routes | self.shared_topics(topic)


def one_device(decode: Decode) -> DecodeShared:
    """A device's own topic: the message concerns that one device."""
    return lambda payload, devices, now: decode(payload, devices[0], now)


def each_device(decode: Decode) -> DecodeShared:
    """A topic whose message concerns every device on it alike (a bridge going offline takes its devices with it)."""

    def fan_out(payload: bytes, devices: Sequence[Device], now: float) -> list[Event]:
        events = decode(payload, devices[0], now)
        return events + [replace(e, device=d.id, attrs=dict(e.attrs)) for d in devices[1:] for e in events]

    return fan_out


AVAILABILITY_STATES = {"online": True, "offline": False, "true": True, "false": False}


def decode_availability(payload: bytes, device: Device, now: float) -> list[Event]:
    """`online` / `offline` (any case), plain or as {"state": ...}, or Shelly's `true` / `false`."""
    if len(payload) > 256:
        raise PayloadError("too_large", f"{len(payload)} bytes for an availability message")
    text = payload.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        try:
            text = json.loads(text).get("state", "")
        except (ValueError, AttributeError, RecursionError):
            raise PayloadError("malformed_json", "availability is neither online/offline nor {\"state\": ...}") from None
    online = AVAILABILITY_STATES.get(text.lower()) if isinstance(text, str) else None
    if online is None:
        raise PayloadError("unknown_state", f"availability {str(text)[:32]!r} is not online or offline")
    return [Event(EventKind.AVAILABILITY, device.id, now, online=online)]


# Button actions in guardlink's words; each family's driver translates its own vocabulary into these, and the
# site file says per device which of them are panic, duress (silent) or test presses.
ACTIONS = frozenset({"single", "double", "triple", "quadruple", "many", "hold", "release", "long", "long_release", "press"})


def press(device: Device, action: str, now: float, **attrs: object) -> Event:
    """A button press as the site configured that device: duress first (a silent alarm stays silent), then test
    (which overrides the default panic actions; the site file cannot list an action as both), then panic."""
    kind = (
        EventKind.DURESS if action in device.duress_actions
        else EventKind.TEST if action in device.test_actions
        else EventKind.PANIC if action in device.panic_actions
        else EventKind.BUTTON
    )
    location = device.location.point() if device.location else None
    return Event(kind, device.id, now, location=location, action=action, attrs=dict(attrs))


def on_channel(devices: Sequence[Device], channel: int, default: int) -> Device | None:
    """The configured device wired to input `channel` of a multi-input module."""
    return next((d for d in devices if (d.channel if d.channel is not None else default) == channel), None)
