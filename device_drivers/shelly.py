"""Shelly buttons and input modules, both generations.

Gen1 (`shelly`; Shelly Button1, i3, and relays' inputs): one topic per input,

    shellies/<id>/input_event/<n>    {"event": "S", "event_cnt": 12}    S, SS, SSS, L = single, double, triple, long
    shellies/<id>/sensor/battery     87                                  (battery devices)
    shellies/<id>/online             true | false                        (Last Will)

Gen2+ (`shelly_rpc`; Plus/Pro i4, BLU gateways' inputs ...): JSON-RPC notifications on one topic per device,

    <id>/events/rpc   {"src": "<id>", "dst": "<id>/events", "method": "NotifyEvent",
                       "params": {"ts": 1700000000.12, "events": [{"component": "input:0", "id": 0, "event": "single_push"}]}}
    <id>/events/rpc   {"method": "NotifyStatus", "params": {"ts": ..., "devicepower:0": {"battery": {"percent": 87}}}}
    <id>/online       true | false                                       (Last Will)

A Gen2 module's inputs share its topic: configure one guardlink device per input wired to a button, with
`channel` set to the input id (default 0). `btn_down`/`btn_up` and events of inputs nobody configured are ignored.
Shelly clocks are not trusted (a Gen2 device without SNTP sends a wrong `ts`), so presses are never
rejected for their time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from device_drivers.driver import DecodeShared, Driver, Health, SimulatedSite, Simulation, decode_availability, each_device, on_channel, press
from device_drivers.payload import PayloadError, integer, json_object, number, obj, text
from guardlink.models import Event, EventKind
from guardlink.siteconfig import Device

GEN1_EVENTS = {"S": "single", "SS": "double", "SSS": "triple", "L": "long", "SL": "many", "LS": "many"}
GEN2_EVENTS = {"single_push": "single", "double_push": "double", "triple_push": "triple", "long_push": "long"}
GEN2_IGNORED = frozenset({"btn_down", "btn_up"})  # the push events follow them
# What a simulated press of each guardlink action sends.
GEN1_SENDS = {"single": "S", "double": "SS", "triple": "SSS", "hold": "L", "long": "L"}
GEN2_SENDS = {"single": "single_push", "double": "double_push", "triple": "triple_push", "hold": "long_push", "long": "long_push"}
MAX_EVENTS = 16  # one notification carries a handful of events


# -- Gen1 ----------------------------------------------------------------------------------------


def decode_gen1(payload: bytes, device: Device, now: float) -> list[Event]:
    """An input event of a Gen1 device: `{"event": "S", "event_cnt": n}` (an empty event after boot is no press)."""
    doc = json_object(payload)
    event = text(doc, "event", required=True, max_len=8)
    count = integer(doc, "event_cnt", 0, 2**32 - 1)
    if not event:
        return []
    if event not in GEN1_EVENTS:
        raise PayloadError("unknown_action", f"input event {event!r} is not one of {', '.join(GEN1_EVENTS)}")
    return [press(device, GEN1_EVENTS[event], now, **({"event_cnt": count} if count is not None else {}))]


def _gen1_battery(payload: bytes, device: Device, now: float) -> list[Event]:
    if len(payload) > 16:
        raise PayloadError("too_large", f"{len(payload)} bytes for a battery level")
    try:
        level = float(payload.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise PayloadError("malformed_number", f"battery level {payload[:16]!r} is not a number") from None
    if not 0 <= level <= 100:  # also false for NaN
        raise PayloadError("out_of_range", f"battery {level} outside [0, 100]")
    return [Event(EventKind.DEVICE_STATUS, device.id, now, battery=level)]


def battery_topic(topic: str) -> str:
    """Where the Gen1 device of an input on `shellies/<id>/input_event/<n>` reports its battery."""
    return f"{topic.split('/input_event/', 1)[0]}/sensor/battery"


def _gen1_shared(topic: str) -> dict[str, DecodeShared]:
    return {f"{topic.split('/input_event/', 1)[0]}/online": each_device(decode_availability), battery_topic(topic): each_device(_gen1_battery)}


def gen1_payload(event: str, count: int) -> bytes:
    """A Gen1 input event as the device publishes it."""
    return json.dumps({"event": event, "event_cnt": count}).encode()


def _gen1_press(sim: SimulatedSite, device: Device, action: str) -> bytes:
    return gen1_payload(GEN1_SENDS[action], sim.next_seq(device.id))


def _gen1_everyday(sim: SimulatedSite, device: Device, health: Health) -> tuple[str, bytes]:
    return battery_topic(sim.topic(device)), str(health[0]).encode()


GEN1 = Driver(
    name="shelly",
    summary="Shelly Gen1 buttons and inputs (shellies/<id>/input_event/<n>)",
    watch=lambda site: (),
    default_topic=lambda site, device: f"shellies/{device}/input_event/0",
    decode=decode_gen1,
    heartbeat_s=3600.0,  # Button1 wakes at least hourly to report its battery; mains devices stay connected
    shared_topics=_gen1_shared,
    actions=tuple(GEN1_SENDS),
    simulate=Simulation(everyday=_gen1_everyday, press=_gen1_press),
)


# -- Gen2+ RPC -----------------------------------------------------------------------------------


def decode_rpc(payload: bytes, devices: Sequence[Device], now: float) -> list[Event]:
    """A JSON-RPC notification of a Gen2+ device, for the devices wired to its inputs."""
    doc = json_object(payload)
    method = text(doc, "method", required=True)
    params = obj(doc, "params") or {}
    if method == "NotifyEvent":
        raw = params.get("events")
        if not isinstance(raw, list) or len(raw) > MAX_EVENTS:
            raise PayloadError("wrong_type", f"'events' must be a list of at most {MAX_EVENTS} objects")
        events: list[Event] = []
        for item in raw:
            if not isinstance(item, dict):
                raise PayloadError("wrong_type", "each of 'events' must be an object")
            name = text(item, "event", required=True)
            channel = _input_id(item)
            if name in GEN2_IGNORED or channel is None or not name:
                continue
            device = on_channel(devices, channel, 0)
            if device is None:
                continue  # an input no guardlink device is wired to
            if name not in GEN2_EVENTS:
                continue  # other notifications (config_changed, ota_progress ...) say nothing about a press
            events.append(press(device, GEN2_EVENTS[name], now, input=channel))
        return events
    if method in ("NotifyStatus", "NotifyFullStatus"):
        power = obj(params, "devicepower:0")
        battery = obj(power, "battery") if power else None
        level = number(battery, "percent", 0, 100) if battery else None
        return [Event(EventKind.DEVICE_STATUS, d.id, now, battery=level) for d in devices]  # heard, with battery if any
    return []


def _input_id(item: dict[str, object]) -> int | None:
    """Input number from `"id": 0` with `"component": "input:0"`; None for other components."""
    component = text(item, "component")
    if component is not None and not component.startswith("input:"):
        return None
    return integer(item, "id", 0, 64, required=True)


def _rpc_shared(topic: str) -> dict[str, DecodeShared]:
    return {f"{topic.removesuffix('/events/rpc')}/online": each_device(decode_availability)}


def rpc_payload(device_prefix: str, channel: int, event: str, ts: float) -> bytes:
    """A Gen2+ NotifyEvent for one input, as the device publishes it."""
    return json.dumps({
        "src": device_prefix, "dst": f"{device_prefix}/events", "method": "NotifyEvent",
        "params": {"ts": ts, "events": [{"component": f"input:{channel}", "id": channel, "event": event, "ts": ts}]},
    }).encode()


def rpc_status_payload(device_prefix: str, battery: int, ts: float) -> bytes:
    """A Gen2+ NotifyStatus with the battery level, as battery devices publish it."""
    return json.dumps({
        "src": device_prefix, "dst": f"{device_prefix}/events", "method": "NotifyStatus",
        "params": {"ts": ts, "devicepower:0": {"id": 0, "battery": {"V": 3.0, "percent": battery}}},
    }).encode()


def _rpc_press(sim: SimulatedSite, device: Device, action: str) -> bytes:
    return rpc_payload(sim.topic(device).removesuffix("/events/rpc"), device.channel or 0, GEN2_SENDS[action], time.time())


def _rpc_everyday(sim: SimulatedSite, device: Device, health: Health) -> tuple[str, bytes]:
    topic = sim.topic(device)
    return topic, rpc_status_payload(topic.removesuffix("/events/rpc"), health[0], time.time())


GEN2 = Driver(
    name="shelly_rpc",
    summary="Shelly Gen2+ inputs and buttons (JSON-RPC notifications on <id>/events/rpc)",
    watch=lambda site: (),
    default_topic=lambda site, device: f"{device}/events/rpc",
    decode=lambda payload, device, now: decode_rpc(payload, (device,), now),
    heartbeat_s=3600.0,
    shared_topics=_rpc_shared,
    decode_own_shared=decode_rpc,
    actions=tuple(GEN2_SENDS),
    simulate=Simulation(everyday=_rpc_everyday, press=_rpc_press),
)
