"""Device drivers decode native payloads into events and reject everything else with a named PayloadError."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from device_drivers import frigate, guardlink_wearable, owntracks, shelly, zigbee2mqtt
from device_drivers.driver import DecodeShared, Driver
from device_drivers.payload import MAX_JSON_DEPTH, PayloadError
from device_drivers.registry import DRIVERS, driver
from edge.intake import Intake
from guardlink.geo import LatLon
from guardlink.models import Event, EventKind
from guardlink.siteconfig import Device, Position, SiteConfig

NOW = 1_700_000_000.0
GATE = Position(lat=40.84245, lon=111.75042)

BUTTON = Device(
    id="btn-gate",
    driver="zigbee2mqtt",
    location=GATE,
    panic_actions=["single", "double", "hold"],
    duress_actions=["triple"],
)
WEARABLE = Device(id="wear-li", driver="guardlink_wearable")
PHONE = Device(id="phone-zhao", driver="owntracks", topic="owntracks/zhao/phone")


def encode(doc: object) -> bytes:
    return json.dumps(doc).encode()


def rejection(drv: Driver, payload: bytes, device: Device = BUTTON) -> str:
    """The PayloadError reason `drv` gives for `payload` (fails the test if it accepts it)."""
    with pytest.raises(PayloadError) as info:
        drv.decode(payload, device, NOW)
    return info.value.reason


def z2m(doc: object) -> list[Event]:
    return zigbee2mqtt.decode(encode(doc), BUTTON, NOW)


# --- Zigbee2MQTT buttons ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        ("single", EventKind.PANIC),
        ("double", EventKind.PANIC),
        ("hold", EventKind.PANIC),
        ("triple", EventKind.DURESS),
        ("release", EventKind.BUTTON),
        ("long", EventKind.BUTTON),  # a default panic action, but this device's list leaves it out
    ],
)
def test_zigbee_action_maps_to_kind_per_device_action_lists(action: str, kind: EventKind) -> None:
    [event] = z2m({"action": action})
    assert (event.kind, event.action, event.device, event.at) == (kind, action, "btn-gate", NOW)


def test_zigbee_action_in_both_lists_is_duress_so_the_alarm_stays_silent() -> None:
    device = BUTTON.model_copy(update={"panic_actions": ["single"], "duress_actions": ["single"]})
    [event] = zigbee2mqtt.decode(encode({"action": "single"}), device, NOW)
    assert event.kind is EventKind.DURESS


def test_zigbee_default_panic_actions_apply_when_device_lists_none() -> None:
    device = Device(id="btn-hall", driver="zigbee2mqtt")
    kinds = {a: zigbee2mqtt.decode(encode({"action": a}), device, NOW)[0].kind for a in ("single", "long", "triple")}
    assert kinds == {"single": EventKind.PANIC, "long": EventKind.PANIC, "triple": EventKind.BUTTON}


def test_zigbee_press_carries_the_device_configured_location() -> None:
    [event] = z2m({"action": "single"})
    assert event.location == LatLon(40.84245, 111.75042)


def test_zigbee_press_of_device_without_location_has_no_location() -> None:
    [event] = zigbee2mqtt.decode(encode({"action": "single"}), Device(id="b", driver="zigbee2mqtt"), NOW)
    assert event.location is None


def test_zigbee_empty_action_is_not_a_press() -> None:
    assert z2m({"action": ""}) == []


def test_zigbee_empty_action_with_battery_gives_only_status() -> None:
    [event] = z2m({"action": "", "battery": 87, "linkquality": 140})
    assert (event.kind, event.battery, event.linkquality, event.action) == (EventKind.DEVICE_STATUS, 87.0, 140, None)


def test_zigbee_battery_alone_gives_device_status() -> None:
    [event] = z2m({"battery": 42.5})
    assert (event.kind, event.battery, event.linkquality) == (EventKind.DEVICE_STATUS, 42.5, None)


def test_zigbee_linkquality_alone_gives_device_status() -> None:
    [event] = z2m({"linkquality": 0})
    assert (event.kind, event.battery, event.linkquality) == (EventKind.DEVICE_STATUS, None, 0)


def test_zigbee_press_with_status_gives_press_then_status() -> None:
    events = z2m({"action": "single", "battery": 100, "linkquality": 255})
    assert [e.kind for e in events] == [EventKind.PANIC, EventKind.DEVICE_STATUS]
    assert (events[1].battery, events[1].linkquality) == (100.0, 255)


def test_zigbee_message_without_action_or_status_gives_nothing() -> None:
    assert z2m({"illuminance": 30, "update": {"state": "idle"}}) == []


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"action": "explode"}, "unknown_action"),
        ({"action": "Single"}, "unknown_action"),
        ({"action": "x" * 65}, "out_of_range"),
        ({"battery": "high"}, "wrong_type"),
        ({"linkquality": 3.5}, "wrong_type"),
        ({"action": 5}, "wrong_type"),
        ({"action": ["single"]}, "wrong_type"),
        ({"battery": True}, "wrong_type"),
        ({"linkquality": False}, "wrong_type"),
        ({"battery": 150}, "out_of_range"),
        ({"battery": -1}, "out_of_range"),
        ({"linkquality": 300}, "out_of_range"),
        ({"linkquality": -1}, "out_of_range"),
        ({"battery": 10**400}, "out_of_range"),  # a huge integer must not overflow float conversion
    ],
)
def test_zigbee_rejects_bad_fields_with_reason(doc: dict[str, Any], reason: str) -> None:
    assert rejection(zigbee2mqtt.DRIVER, encode(doc)) == reason


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_zigbee_rejects_non_finite_battery(constant: bytes) -> None:
    assert rejection(zigbee2mqtt.DRIVER, b'{"battery": ' + constant + b"}") == "wrong_type"


# --- Payload shape, shared by every driver ------------------------------------------------------


def nested_lists(depth: int) -> list[Any]:
    """`depth` lists inside each other; inside an object, the payload is one level deeper."""
    doc: list[Any] = []
    for _ in range(depth - 1):
        doc = [doc]
    return doc


SHAPE_REJECTIONS = [
    pytest.param(b'{"action": "single", "pad": "' + b"x" * 1_000_000 + b'"}', "too_large", id="1MB"),
    pytest.param(b'{"action": "single"', "malformed_json", id="truncated"),
    pytest.param(b"", "malformed_json", id="empty"),
    pytest.param(b"{'action': 'single'}", "malformed_json", id="single-quotes"),
    pytest.param(b'{"action": "\xff\xfe"}', "malformed_json", id="invalid-utf8"),
    pytest.param(b"\xc3\x28", "malformed_json", id="invalid-utf8-sequence"),
    pytest.param(b'{"battery": ' + b"7" * 5000 + b"}", "malformed_json", id="integer-too-long-to-parse"),
    pytest.param(b'["single"]', "not_an_object", id="list"),
    pytest.param(b"42", "not_an_object", id="number"),
    pytest.param(b'"single"', "not_an_object", id="string"),
    pytest.param(b"null", "not_an_object", id="null"),
    pytest.param(b"[" * 5000 + b"]" * 5000, "too_deep", id="5000-nested-lists"),
    pytest.param(b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "too_deep", id="5000-nested-in-object"),
    pytest.param(b'{"a":' * 2500 + b"1" + b"}" * 2500, "too_deep", id="2500-nested-objects"),
    pytest.param(encode({"a": nested_lists(MAX_JSON_DEPTH)}), "too_deep", id="one-over-depth-limit"),
]


def every_decoder() -> dict[str, tuple[DecodeShared, tuple[Device, ...]]]:
    """Every topic a device of each family is heard on, with its decoder: `<driver> <topic>` -> (decode, devices)."""
    decoders = {}
    for name, drv in sorted(DRIVERS.items()):
        device = Device(id="dev-1", driver=name, location=GATE)
        for topic, decode in drv.routes("s", device).items():
            decoders[f"{name} {topic}"] = (decode, (device,))
    return decoders


DECODERS = every_decoder()
TEXT_TOPICS = ("availability", "online", "LWT", "available", "motion", "sensor/battery", "bridge/state")  # plain-text payloads
JSON_DECODERS = sorted(k for k in DECODERS if not k.endswith(TEXT_TOPICS))


def test_the_decoder_table_holds_every_topic_of_every_family() -> None:
    assert {k.split()[0] for k in JSON_DECODERS} == set(DRIVERS)
    assert {"frigate frigate/events", "frigate frigate/stats", "zigbee2mqtt zigbee2mqtt/bridge/state", "tasmota tele/dev-1/STATE"} <= set(DECODERS)


@pytest.mark.parametrize("name", JSON_DECODERS)
@pytest.mark.parametrize(("payload", "reason"), SHAPE_REJECTIONS)
def test_every_json_decoder_rejects_bad_payload_shape_with_reason(name: str, payload: bytes, reason: str) -> None:
    decode, devices = DECODERS[name]
    with pytest.raises(PayloadError) as info:
        decode(payload, devices, NOW)
    assert info.value.reason == reason


def test_nesting_at_the_depth_limit_is_accepted() -> None:
    assert z2m({"action": "single", "extra": nested_lists(MAX_JSON_DEPTH - 1)})[0].kind is EventKind.PANIC


# --- Native guardlink wearable ------------------------------------------------------------------


def wear(doc: object) -> list[Event]:
    return guardlink_wearable.decode(encode(doc), WEARABLE, NOW)


def test_wearable_position_gives_position_event() -> None:
    [event] = wear({"seq": 41, "type": "position", "lat": 40.8421, "lon": 111.7512, "acc": 4.5})
    assert event.kind is EventKind.POSITION
    assert (event.device, event.location, event.accuracy_m, event.attrs) == ("wear-li", LatLon(40.8421, 111.7512), 4.5, {"seq": 41})


@pytest.mark.parametrize(("press", "kind"), [("short", EventKind.SOS), ("long", EventKind.DURESS)])
def test_wearable_sos_press_length_chooses_sos_or_duress(press: str, kind: EventKind) -> None:
    [event] = wear({"seq": 42, "type": "sos", "press": press})
    assert (event.kind, event.action, event.attrs) == (kind, press, {"seq": 42})


def test_wearable_sos_without_press_is_a_short_press() -> None:
    [event] = wear({"seq": 0, "type": "sos"})
    assert event.kind is EventKind.SOS


def test_wearable_battery_gives_device_status() -> None:
    [event] = wear({"seq": 43, "type": "battery", "battery": 76})
    assert (event.kind, event.battery, event.attrs) == (EventKind.DEVICE_STATUS, 76.0, {"seq": 43})


def test_wearable_accepts_full_seq_range() -> None:
    assert wear({"seq": 2**32 - 1, "type": "sos"})[0].attrs == {"seq": 2**32 - 1}


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"type": "sos"}, "missing_field"),
        ({"seq": 1}, "missing_field"),
        ({"seq": 1, "type": "teleport"}, "unknown_type"),
        ({"seq": 1, "type": "sos", "press": "medium"}, "unknown_action"),
        ({"seq": 1, "type": "position", "lat": 40.0}, "missing_field"),
        ({"seq": 1, "type": "battery"}, "missing_field"),
        ({"seq": "1", "type": "sos"}, "wrong_type"),
        ({"seq": 1.5, "type": "sos"}, "wrong_type"),
        ({"seq": True, "type": "sos"}, "wrong_type"),
        ({"seq": 1, "type": 3}, "wrong_type"),
        ({"seq": -1, "type": "sos"}, "out_of_range"),
        ({"seq": 2**32, "type": "sos"}, "out_of_range"),
        ({"seq": 10**400, "type": "sos"}, "out_of_range"),
        ({"seq": 1, "type": "position", "lat": 91, "lon": 0}, "out_of_range"),
        ({"seq": 1, "type": "position", "lat": 0, "lon": -180.5}, "out_of_range"),
        ({"seq": 1, "type": "position", "lat": False, "lon": 0}, "wrong_type"),
        ({"seq": 1, "type": "position", "lat": 0, "lon": 0, "acc": -1}, "out_of_range"),
        ({"seq": 1, "type": "battery", "battery": 150}, "out_of_range"),
        ({"seq": 1, "type": "battery", "battery": "high"}, "wrong_type"),
    ],
)
def test_wearable_rejects_bad_reports_with_reason(doc: dict[str, Any], reason: str) -> None:
    assert rejection(guardlink_wearable.DRIVER, encode(doc), WEARABLE) == reason


def test_wearable_rejects_nan_latitude() -> None:
    payload = b'{"seq": 1, "type": "position", "lat": NaN, "lon": 0}'
    assert rejection(guardlink_wearable.DRIVER, payload, WEARABLE) == "wrong_type"


# --- OwnTracks ----------------------------------------------------------------------------------


def phone(doc: object) -> list[Event]:
    return owntracks.decode(encode(doc), PHONE, NOW)


def test_owntracks_location_with_battery_gives_position_and_status() -> None:
    events = phone({"_type": "location", "lat": 40.84, "lon": 111.75, "acc": 12, "batt": 64, "tst": 1700000000})
    assert [e.kind for e in events] == [EventKind.POSITION, EventKind.DEVICE_STATUS]
    assert (events[0].location, events[0].accuracy_m, events[0].device) == (LatLon(40.84, 111.75), 12.0, "phone-zhao")
    assert events[1].battery == 64.0


def test_owntracks_location_without_battery_gives_only_position() -> None:
    [event] = phone({"_type": "location", "lat": -33.9, "lon": 151.2})
    assert (event.kind, event.location, event.accuracy_m) == (EventKind.POSITION, LatLon(-33.9, 151.2), None)


@pytest.mark.parametrize("kind", ["waypoint", "card", "status"])
def test_owntracks_non_location_messages_give_nothing(kind: str) -> None:
    assert phone({"_type": kind, "lat": 999, "event": "enter"}) == []


def test_owntracks_last_will_says_the_phone_went_offline() -> None:
    [event] = phone({"_type": "lwt", "tst": 1700000000})
    assert event.kind is EventKind.AVAILABILITY and event.online is False


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"lat": 1, "lon": 2}, "missing_field"),
        ({"_type": 7}, "wrong_type"),
        ({"_type": "location", "lat": 91, "lon": 0}, "out_of_range"),
        ({"_type": "location", "lat": 0, "lon": 181}, "out_of_range"),
        ({"_type": "location", "lat": "40.8", "lon": 0}, "wrong_type"),
        ({"_type": "location", "lat": 0}, "missing_field"),
        ({"_type": "location", "lat": 0, "lon": 0, "batt": 101}, "out_of_range"),
        ({"_type": "location", "lat": 0, "lon": 0, "batt": True}, "wrong_type"),
    ],
)
def test_owntracks_rejects_bad_location_with_reason(doc: dict[str, Any], reason: str) -> None:
    assert rejection(owntracks.DRIVER, encode(doc), PHONE) == reason


# --- Simulator payloads round-trip through the drivers -------------------------------------------


def test_button_payload_round_trips() -> None:
    press, status = zigbee2mqtt.decode(zigbee2mqtt.button_payload("triple", battery=55, linkquality=200), BUTTON, NOW)
    assert (press.kind, press.action, press.location) == (EventKind.DURESS, "triple", GATE.point())
    assert (status.battery, status.linkquality) == (55.0, 200)


def test_button_payload_without_status_gives_only_the_press() -> None:
    [press] = zigbee2mqtt.decode(zigbee2mqtt.button_payload("single"), BUTTON, NOW)
    assert (press.kind, press.action) == (EventKind.PANIC, "single")


lats = st.floats(min_value=-90, max_value=90, allow_nan=False)
lons = st.floats(min_value=-180, max_value=180, allow_nan=False)
seqs = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=100, deadline=None)
@given(seq=seqs, lat=lats, lon=lons, acc=st.floats(min_value=0, max_value=100_000, allow_nan=False))
def test_position_payload_round_trips(seq: int, lat: float, lon: float, acc: float) -> None:
    [event] = guardlink_wearable.decode(guardlink_wearable.position_payload(seq, LatLon(lat, lon), acc), WEARABLE, NOW)
    assert (event.kind, event.location, event.accuracy_m, event.attrs) == (EventKind.POSITION, LatLon(lat, lon), acc, {"seq": seq})


@settings(max_examples=50, deadline=None)
@given(seq=seqs, press=st.sampled_from(["short", "long"]))
def test_sos_payload_round_trips(seq: int, press: str) -> None:
    [event] = guardlink_wearable.decode(guardlink_wearable.sos_payload(seq, press), WEARABLE, NOW)
    assert (event.kind, event.action, event.attrs) == (guardlink_wearable.PRESSES[press], press, {"seq": seq})


@settings(max_examples=100, deadline=None)
@given(
    lat=lats,
    lon=lons,
    acc=st.floats(min_value=0, max_value=99_999, allow_nan=False),
    battery=st.none() | st.integers(min_value=0, max_value=100),
)
def test_location_payload_round_trips(lat: float, lon: float, acc: float, battery: int | None) -> None:
    events = owntracks.decode(owntracks.location_payload(LatLon(lat, lon), acc, NOW, battery=battery), PHONE, NOW)
    assert (events[0].kind, events[0].location, events[0].accuracy_m) == (EventKind.POSITION, LatLon(lat, lon), round(acc))
    assert [e.battery for e in events[1:]] == ([] if battery is None else [battery])


# --- Registry -----------------------------------------------------------------------------------


def test_registry_names_each_driver_by_its_own_name() -> None:
    assert set(DRIVERS) == {
        "zigbee2mqtt", "shelly", "shelly_rpc", "tasmota", "owntracks", "frigate", "guardlink_button", "guardlink_wearable",
    }
    assert all(d.name == name and driver(name) is d for name, d in DRIVERS.items())


def test_unknown_driver_raises_keyerror_listing_known_names() -> None:
    with pytest.raises(KeyError) as info:
        driver("nope")
    message = info.value.args[0]
    assert "'nope'" in message
    assert all(name in message for name in DRIVERS)


@pytest.mark.parametrize("name", sorted(DRIVERS))
@pytest.mark.parametrize("site", ["hohhot-no3-primary", "s"])
def test_every_topic_a_device_is_heard_on_is_subscribed(name: str, site: str) -> None:
    config = SiteConfig.model_validate({
        "site": {"id": site, "name": "S", "district": "d", "location": {"lat": 40.0, "lon": 111.0}},
        "police": {"broker": "mqtt://127.0.0.1:1"},
        "devices": [{"id": "dev-1", "driver": name}],
    })
    intake = Intake(config)
    assert DRIVERS[name].topic_for(site, config.devices[0]) in intake.routes
    for topic in intake.routes:
        assert any(topic_matches_sub(f, topic) for f in intake.filters), (topic, intake.filters)


def test_wearable_watch_filter_ignores_other_sites() -> None:
    topic = guardlink_wearable.DRIVER.default_topic("other-site", "wear-li")
    assert not any(topic_matches_sub(f, topic) for f in guardlink_wearable.DRIVER.watch("school"))


def test_configured_topic_overrides_the_default() -> None:
    assert owntracks.DRIVER.topic_for("school", PHONE) == "owntracks/zhao/phone"
    assert zigbee2mqtt.DRIVER.topic_for("school", BUTTON) == "zigbee2mqtt/btn-gate"


# --- Properties: decode never fails in any way other than PayloadError ---------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()  # includes NaN and +-Infinity, which json.dumps writes as bare words
    | st.text(max_size=80)
    | st.sampled_from(
        sorted(zigbee2mqtt.ACTIONS) + ["", "position", "sos", "battery", "location", "short", "long", "press", "status", "transition",
        "enter", "S", "SS", "L", "NotifyEvent", "NotifyStatus", "single_push", "long_push", "input:0", "SINGLE", "HOLD", "new",
        "update", "end", "person", "dev-1", "ON", "online", "offline"]
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)

VALID_DOCS: list[dict[str, Any]] = [
    {"action": "single", "battery": 80, "linkquality": 120},
    {"action": "triple"},
    {"battery": 55.5, "linkquality": 7},
    {"contact": False, "occupancy": True, "water_leak": True, "smoke": False, "voltage": 2950, "battery_low": False, "tamper": False},
    {"seq": 41, "type": "position", "lat": 40.8421, "lon": 111.7512, "acc": 4.5},
    {"seq": 42, "boot": 7, "ts": NOW, "type": "sos", "press": "long"},
    {"seq": 43, "type": "battery", "battery": 76},
    {"seq": 44, "type": "motion", "min_g": 0.9, "max_g": 1.1, "tilt_deg": 12, "still": False},
    {"seq": 7, "boot": 3, "type": "press", "action": "single"},
    {"seq": 8, "boot": 3, "type": "status", "battery": 91, "rssi": -61, "tamper": True},
    {"_type": "location", "lat": 40.84, "lon": 111.75, "acc": 12, "batt": 64, "tst": 1700000000},
    {"_type": "transition", "event": "enter", "desc": "Gate", "lat": 40.84, "lon": 111.75, "acc": 12, "tst": 1700000000},
    {"event": "SS", "event_cnt": 4},
    json.loads(shelly.rpc_payload("dev-1", 0, "long_push", NOW)),
    json.loads(shelly.rpc_status_payload("dev-1", 40, NOW)),
    {"Button1": {"Action": "HOLD"}, "Button2": {"Action": "SINGLE"}},
    {"Time": "2024-01-01T00:00:00", "Uptime": "0T00:05:00", "Wifi": {"RSSI": 78, "Signal": -61}},
    json.loads(frigate.event_payload("update", "dev-1", "person", 0.9, [], ["yard"], "1.2-abc", NOW)),
    json.loads(frigate.stats_payload({"dev-1": 5.0})),
]


@st.composite
def mutated_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A real payload with one field, at any depth, replaced by any JSON value, dropped, or added."""
    doc = json.loads(json.dumps(draw(st.sampled_from(VALID_DOCS))))  # a deep copy to mutate
    parent: Any = doc
    while True:  # walk down a random path, stopping at some container
        children = list(parent.items()) if isinstance(parent, dict) else list(enumerate(parent))
        containers = [(k, v) for k, v in children if isinstance(v, dict | list) and v]
        if not containers or draw(st.booleans()):
            break
        parent = draw(st.sampled_from(containers))[1]
    keys = sorted(parent, key=str) if isinstance(parent, dict) else list(range(len(parent)))
    key = draw(st.sampled_from(keys) | st.text(max_size=8)) if keys else draw(st.text(max_size=8))
    if isinstance(parent, list):
        if isinstance(key, int):
            parent[key] = draw(json_values)
        else:
            parent.append(draw(json_values))
    elif draw(st.booleans()) and key in parent:
        del parent[key]
    else:
        parent[key] = draw(json_values)
    return doc


def assert_events_or_payload_error(name: str, payload: bytes) -> None:
    decode, devices = DECODERS[name]
    try:
        events = decode(payload, devices, NOW)
    except PayloadError as exc:
        assert exc.reason and isinstance(exc.reason, str)
        return
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, Event)
        assert isinstance(event.kind, EventKind)
        assert (event.device, event.at) == ("dev-1", NOW)
        if event.location is not None:
            assert -90 <= event.location.lat <= 90 and -180 <= event.location.lon <= 180
            assert math.isfinite(event.location.lat) and math.isfinite(event.location.lon)
        if event.battery is not None:
            assert 0 <= event.battery <= 100
        if event.linkquality is not None:
            assert 0 <= event.linkquality <= 255
        if event.accuracy_m is not None:
            assert 0 <= event.accuracy_m <= 100_000
        if "seq" in event.attrs:
            assert isinstance(event.attrs["seq"], int) and 0 <= event.attrs["seq"] < 2**32
        json.dumps(event.attrs)  # attributes stay plain data


PROPERTY = settings(max_examples=150, deadline=None)


@pytest.mark.parametrize("name", sorted(DECODERS))
@PROPERTY
@given(payload=st.binary(max_size=256))
def test_decode_of_arbitrary_bytes_gives_events_or_payload_error(name: str, payload: bytes) -> None:
    assert_events_or_payload_error(name, payload)


@pytest.mark.parametrize("name", JSON_DECODERS)
@PROPERTY
@given(value=json_values)
def test_decode_of_arbitrary_json_gives_events_or_payload_error(name: str, value: object) -> None:
    assert_events_or_payload_error(name, json.dumps(value).encode())


@pytest.mark.parametrize("name", JSON_DECODERS)
@settings(max_examples=300, deadline=None)
@given(doc=mutated_docs())
def test_decode_of_mutated_real_payloads_gives_events_or_payload_error(name: str, doc: dict[str, Any]) -> None:
    assert_events_or_payload_error(name, json.dumps(doc).encode())


def test_every_valid_doc_is_read_by_some_decoder() -> None:
    """The mutation corpus is made of payloads the drivers accept, so mutations start from real, accepted input."""
    for doc in VALID_DOCS:
        read = []
        for name in JSON_DECODERS:
            decode, devices = DECODERS[name]
            try:
                read.append(bool(decode(json.dumps(doc).encode(), devices, NOW)))
            except PayloadError:
                pass
        assert any(read), doc
