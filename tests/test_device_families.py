"""Each device family's native payloads decode into the contract's events; what is wrong is a named PayloadError."""

from __future__ import annotations

import json
from typing import Any

import pytest

from device_drivers import frigate, guardlink_button, guardlink_wearable, owntracks, shelly, tasmota, zigbee2mqtt
from device_drivers.payload import PayloadError
from edge.rules import incident_for
from guardlink.geo import LatLon
from guardlink.models import EventKind, IncidentKind, Severity
from guardlink.siteconfig import ConfigError, Device, Position, parse_site

NOW = 1_700_000_000.0
HALL = Position(lat=40.84172, lon=111.75205)


def encode(doc: object) -> bytes:
    return json.dumps(doc).encode()


def reason(call: Any, *args: Any) -> str:
    with pytest.raises(PayloadError) as info:
        call(*args)
    return info.value.reason


# --- Per-device action mapping: panic, duress, test ----------------------------------------------

BUTTON = Device(id="btn-hall", driver="zigbee2mqtt", location=HALL, panic_actions=["single"], duress_actions=["hold"], test_actions=["double"])


@pytest.mark.parametrize(
    ("action", "kind"),
    [("single", EventKind.PANIC), ("hold", EventKind.DURESS), ("double", EventKind.TEST), ("triple", EventKind.BUTTON)],
)
def test_site_file_maps_each_button_action_to_panic_duress_test_or_nothing(action: str, kind: EventKind) -> None:
    [event] = zigbee2mqtt.decode(encode({"action": action}), BUTTON, NOW)
    assert (event.kind, event.action, event.location) == (kind, action, HALL.point())


def test_a_test_action_overrides_the_default_panic_actions() -> None:
    device = Device(id="b", driver="zigbee2mqtt", test_actions=["double"])
    kinds = [zigbee2mqtt.decode(encode({"action": a}), device, NOW)[0].kind for a in ("single", "double")]
    assert kinds == [EventKind.PANIC, EventKind.TEST]


@pytest.mark.parametrize("lists", ["panic_actions: [single, double]", "duress_actions: [double]"])
def test_an_action_listed_as_both_alarm_and_test_is_a_config_error(lists: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_site(
            f"""
site: {{id: s, name: S, district: d, location: {{lat: 1, lon: 1}}}}
police: {{broker: "mqtt://h:1"}}
devices:
  - {{id: b, driver: zigbee2mqtt, test_actions: [double], {lists}}}
""",
            "s.yaml",
        )
    assert info.value.messages == ["s.yaml:5:5: devices.0: device 'b': double cannot be both an alarm and a test action"]


def test_a_test_press_reaches_the_police_as_a_test_and_sends_nobody() -> None:
    [event] = zigbee2mqtt.decode(encode({"action": "double"}), BUTTON, NOW)
    incident = incident_for(event, BUTTON, None, None)
    assert (incident.kind, incident.severity) == (IncidentKind.TEST, Severity.INFO)
    config = parse_site(
        "site: {id: s, name: S, district: d, location: {lat: 1, lon: 1}}\npolice: {broker: 'mqtt://h:1'}\n", "s.yaml"
    )
    assert config.needs("test").guards == 0


def test_test_actions_and_channel_are_read_from_the_site_file() -> None:
    config = parse_site(
        """
site: {id: s, name: S, district: d, location: {lat: 1, lon: 1}}
police: {broker: "mqtt://h:1"}
devices:
  - {id: in-0, driver: shelly_rpc, topic: shellyplusi4-a1/events/rpc, channel: 0, test_actions: [double]}
  - {id: in-1, driver: shelly_rpc, topic: shellyplusi4-a1/events/rpc, channel: 1}
""",
        "s.yaml",
    )
    assert [(d.channel, d.test_actions) for d in config.devices] == [(0, ["double"]), (1, [])]


def test_two_devices_on_one_topic_and_channel_are_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_site(
            """
site: {id: s, name: S, district: d, location: {lat: 1, lon: 1}}
police: {broker: "mqtt://h:1"}
devices:
  - {id: in-0, driver: tasmota, topic: stat/mod/RESULT}
  - {id: in-1, driver: tasmota, topic: stat/mod/RESULT}
""",
            "s.yaml",
        )
    assert info.value.messages == ["s.yaml:6:40: device 'in-1' uses topic 'stat/mod/RESULT' of device 'in-0'"]


# --- Zigbee2MQTT sensors, voltage, bridge --------------------------------------------------------

SENSOR = Device(id="door-1", driver="zigbee2mqtt", location=HALL)


@pytest.mark.parametrize(
    ("doc", "kind", "attrs"),
    [
        ({"contact": False}, EventKind.CONTACT, {"open": True}),
        ({"contact": True}, EventKind.CONTACT, {"open": False}),
        ({"occupancy": True}, EventKind.OCCUPANCY, {"occupied": True}),
        ({"water_leak": True}, EventKind.WATER_LEAK, {"active": True}),
        ({"smoke": False}, EventKind.SMOKE, {"active": False}),
    ],
)
def test_zigbee_sensor_states_become_events(doc: dict[str, Any], kind: EventKind, attrs: dict[str, bool]) -> None:
    [event] = zigbee2mqtt.decode(encode(doc), SENSOR, NOW)
    assert (event.kind, event.attrs, event.location) == (kind, attrs, HALL.point())


def test_zigbee_sensor_message_with_status_gives_state_then_status() -> None:
    events = zigbee2mqtt.decode(zigbee2mqtt.sensor_payload("water_leak", True, 91, 2950, 120), SENSOR, NOW)
    assert [e.kind for e in events] == [EventKind.WATER_LEAK, EventKind.DEVICE_STATUS]
    assert (events[1].battery, events[1].linkquality, events[1].attrs) == (91.0, 120, {"voltage_mv": 2950.0, "tamper": False})


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"contact": "open"}, "wrong_type"),
        ({"occupancy": 1}, "wrong_type"),
        ({"water_leak": None, "smoke": "yes"}, "wrong_type"),
        ({"voltage": -5}, "out_of_range"),
        ({"voltage": 100_000}, "out_of_range"),
        ({"battery_low": "true"}, "wrong_type"),
    ],
)
def test_zigbee_rejects_bad_sensor_fields(doc: dict[str, Any], why: str) -> None:
    assert reason(zigbee2mqtt.decode, encode(doc), SENSOR, NOW) == why


def test_zigbee_bridge_offline_takes_every_device_behind_it_offline() -> None:
    devices = (SENSOR, BUTTON)
    [(topic, decode)] = zigbee2mqtt.DRIVER.shared_topics("zigbee2mqtt/door-1").items()
    assert topic == "zigbee2mqtt/bridge/state"
    events = decode(b'{"state": "offline"}', devices, NOW)
    assert [(e.device, e.kind, e.online, e.attrs) for e in events] == [
        ("door-1", EventKind.AVAILABILITY, False, {"via": "bridge"}),
        ("btn-hall", EventKind.AVAILABILITY, False, {"via": "bridge"}),
    ]
    assert [e.online for e in decode(b"online", devices, NOW)] == [True, True]
    assert reason(decode, b"exploded", devices, NOW) == "unknown_state"


# --- Shelly -------------------------------------------------------------------------------------

GEN1 = Device(id="btn-s1", driver="shelly", topic="shellies/shellybutton1-A1/input_event/0", duress_actions=["triple"])


@pytest.mark.parametrize(("code", "action", "kind"), [("S", "single", EventKind.PANIC), ("SS", "double", EventKind.PANIC),
                                                      ("SSS", "triple", EventKind.DURESS), ("L", "long", EventKind.PANIC)])
def test_shelly_gen1_input_events_are_presses(code: str, action: str, kind: EventKind) -> None:
    [event] = shelly.decode_gen1(shelly.gen1_payload(code, 12), GEN1, NOW)
    assert (event.kind, event.action, event.attrs) == (kind, action, {"event_cnt": 12})


def test_shelly_gen1_empty_event_after_boot_is_no_press() -> None:
    assert shelly.decode_gen1(b'{"event": "", "event_cnt": 0}', GEN1, NOW) == []


def test_shelly_gen1_battery_and_online_topics_are_shared_by_the_module() -> None:
    shared = shelly.GEN1.shared_topics(GEN1.topic)
    assert set(shared) == {"shellies/shellybutton1-A1/online", "shellies/shellybutton1-A1/sensor/battery"}
    [status] = shared["shellies/shellybutton1-A1/sensor/battery"](b"87", (GEN1,), NOW)
    assert (status.kind, status.battery) == (EventKind.DEVICE_STATUS, 87.0)
    [offline] = shared["shellies/shellybutton1-A1/online"](b"false", (GEN1,), NOW)
    assert offline.online is False
    assert reason(shared["shellies/shellybutton1-A1/sensor/battery"], b"nan", (GEN1,), NOW) == "out_of_range"
    assert reason(shared["shellies/shellybutton1-A1/sensor/battery"], b"lots", (GEN1,), NOW) == "malformed_number"


@pytest.mark.parametrize(("doc", "why"), [({"event": "X"}, "unknown_action"), ({"event": 1}, "wrong_type"), ({}, "missing_field"),
                                          ({"event": "S", "event_cnt": -1}, "out_of_range")])
def test_shelly_gen1_rejects_bad_input_events(doc: dict[str, Any], why: str) -> None:
    assert reason(shelly.decode_gen1, encode(doc), GEN1, NOW) == why


I4 = "shellyplusi4-a8032ab1"
INPUT_0 = Device(id="in-0", driver="shelly_rpc", topic=f"{I4}/events/rpc")
INPUT_2 = Device(id="in-2", driver="shelly_rpc", topic=f"{I4}/events/rpc", channel=2, duress_actions=["long"])


def test_shelly_rpc_event_goes_to_the_device_wired_to_that_input() -> None:
    [event] = shelly.decode_rpc(shelly.rpc_payload(I4, 2, "long_push", NOW), (INPUT_0, INPUT_2), NOW)
    assert (event.device, event.kind, event.action, event.attrs) == ("in-2", EventKind.DURESS, "long", {"input": 2})
    [event] = shelly.decode_rpc(shelly.rpc_payload(I4, 0, "double_push", NOW), (INPUT_0, INPUT_2), NOW)
    assert (event.device, event.kind) == ("in-0", EventKind.PANIC)


@pytest.mark.parametrize(("channel", "name"), [(1, "single_push"), (0, "btn_down"), (0, "btn_up"), (0, "config_changed")])
def test_shelly_rpc_ignores_unwired_inputs_and_non_press_events(channel: int, name: str) -> None:
    assert shelly.decode_rpc(shelly.rpc_payload(I4, channel, name, NOW), (INPUT_0, INPUT_2), NOW) == []


def test_shelly_rpc_status_is_a_heartbeat_with_battery() -> None:
    events = shelly.decode_rpc(shelly.rpc_status_payload(I4, 41, NOW), (INPUT_0, INPUT_2), NOW)
    assert [(e.device, e.kind, e.battery) for e in events] == [("in-0", EventKind.DEVICE_STATUS, 41.0), ("in-2", EventKind.DEVICE_STATUS, 41.0)]


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"params": {}}, "missing_field"),
        ({"method": "NotifyEvent", "params": {"events": "single_push"}}, "wrong_type"),
        ({"method": "NotifyEvent", "params": {"events": [{"id": 0, "event": "single_push"}] * 17}}, "wrong_type"),
        ({"method": "NotifyEvent", "params": {"events": [5]}}, "wrong_type"),
        ({"method": "NotifyEvent", "params": {"events": [{"component": "input:0", "event": "single_push"}]}}, "missing_field"),
        ({"method": "NotifyEvent", "params": {"events": [{"component": "input:0", "id": 99, "event": "single_push"}]}}, "out_of_range"),
        ({"method": "NotifyStatus", "params": {"devicepower:0": {"battery": {"percent": 140}}}}, "out_of_range"),
        ({"method": "NotifyEvent", "params": []}, "wrong_type"),
    ],
)
def test_shelly_rpc_rejects_bad_notifications(doc: dict[str, Any], why: str) -> None:
    assert reason(shelly.decode_rpc, encode(doc), (INPUT_0,), NOW) == why


# --- Tasmota ------------------------------------------------------------------------------------

MODULE = "stat/tasmota_5A1B2C/RESULT"
BUTTON_1 = Device(id="t-1", driver="tasmota", topic=MODULE)
BUTTON_3 = Device(id="t-3", driver="tasmota", topic=MODULE, channel=3, test_actions=["double"], panic_actions=["hold"])


@pytest.mark.parametrize(
    ("button", "action", "device", "kind"),
    [(1, "SINGLE", "t-1", EventKind.PANIC), (1, "QUAD", "t-1", EventKind.BUTTON), (3, "DOUBLE", "t-3", EventKind.TEST),
     (3, "HOLD", "t-3", EventKind.PANIC), (1, "PENTA", "t-1", EventKind.BUTTON)],
)
def test_tasmota_button_actions_are_presses_of_the_device_on_that_button(button: int, action: str, device: str, kind: EventKind) -> None:
    [event] = tasmota.decode_result(tasmota.result_payload(button, action), (BUTTON_1, BUTTON_3), NOW)
    assert (event.device, event.kind, event.attrs["button"]) == (device, kind, button)


def test_tasmota_results_of_other_commands_and_unwired_buttons_give_nothing() -> None:
    assert tasmota.decode_result(b'{"POWER": "ON"}', (BUTTON_1,), NOW) == []
    assert tasmota.decode_result(tasmota.result_payload(2, "SINGLE"), (BUTTON_1, BUTTON_3), NOW) == []


def test_tasmota_telemetry_and_last_will_are_shared_by_the_module() -> None:
    shared = tasmota.DRIVER.shared_topics(MODULE)
    [a, b] = shared["tele/tasmota_5A1B2C/STATE"](tasmota.state_payload(300, 78), (BUTTON_1, BUTTON_3), NOW)
    assert (a.kind, a.attrs, b.device) == (EventKind.DEVICE_STATUS, {"wifi_percent": 78.0}, "t-3")
    assert [e.online for e in shared["tele/tasmota_5A1B2C/LWT"](b"Offline", (BUTTON_1,), NOW)] == [False]
    assert [e.online for e in shared["tele/tasmota_5A1B2C/LWT"](b"Online", (BUTTON_1,), NOW)] == [True]


@pytest.mark.parametrize(
    ("doc", "why"),
    [({"Button1": "SINGLE"}, "wrong_type"), ({"Button1": {}}, "missing_field"), ({"Button1": {"Action": "EXPLODE"}}, "unknown_action"),
     ({"Button1": {"Action": 1}}, "wrong_type")],
)
def test_tasmota_rejects_bad_button_results(doc: dict[str, Any], why: str) -> None:
    assert reason(tasmota.decode_result, encode(doc), (BUTTON_1,), NOW) == why


# --- OwnTracks ----------------------------------------------------------------------------------

PHONE = Device(id="phone-zhao", driver="owntracks", topic="owntracks/zhao/phone")


def test_owntracks_transition_is_a_position_naming_the_region() -> None:
    [event] = owntracks.decode(owntracks.transition_payload(LatLon(40.84, 111.75), 9, NOW, "leave", "Main gate"), PHONE, NOW)
    assert (event.kind, event.location, event.accuracy_m) == (EventKind.POSITION, LatLon(40.84, 111.75), 9.0)
    assert event.attrs == {"transition": "leave", "region": "Main gate"}


def test_owntracks_last_will_with_an_old_connect_time_is_still_read() -> None:
    [event] = owntracks.decode(owntracks.lwt_payload(NOW - 30 * 86400), PHONE, NOW)
    assert (event.kind, event.online) == (EventKind.AVAILABILITY, False)


@pytest.mark.parametrize(
    ("tst", "why"), [(NOW + 301, "future_timestamp"), (NOW - 3601, "stale_timestamp"), (0, "stale_timestamp"), ("now", "wrong_type")]
)
def test_owntracks_rejects_reports_timed_far_from_now(tst: object, why: str) -> None:
    doc = {"_type": "location", "lat": 40.84, "lon": 111.75, "tst": tst}
    assert reason(owntracks.decode, encode(doc), PHONE, NOW) == why


@pytest.mark.parametrize("tst", [NOW + 299, NOW - 3599])
def test_owntracks_accepts_reports_within_the_clock_window(tst: float) -> None:
    assert owntracks.decode(encode({"_type": "location", "lat": 1, "lon": 1, "tst": tst}), PHONE, NOW)


def test_owntracks_rejects_an_unknown_transition() -> None:
    doc = {"_type": "transition", "event": "hover", "lat": 1, "lon": 1, "tst": NOW}
    assert reason(owntracks.decode, encode(doc), PHONE, NOW) == "unknown_action"


# --- Frigate ------------------------------------------------------------------------------------

GATE_CAM = Device(id="cam-gate", driver="frigate", topic="frigate/gate_cam/motion", location=HALL, zone="main-gate")
YARD_CAM = Device(id="yard_cam", driver="frigate")


def frigate_event(kind: str = "update", label: str = "person", before: list[str] | None = None, after: list[str] | None = None,
                  camera: str = "gate_cam", **extra: Any) -> bytes:
    payload = frigate.event_payload(kind, camera, label, 0.91, before or [], after or [], "1700000000.1-abc", NOW, **extra)
    return payload


def test_frigate_person_entering_a_zone_is_a_detection_and_an_intrusion() -> None:
    [event] = frigate.decode_event(frigate_event(after=["yard", "fence"], before=["yard"]), (GATE_CAM, YARD_CAM), NOW)
    assert (event.kind, event.device, event.location) == (EventKind.DETECTION, "cam-gate", HALL.point())
    assert event.attrs == {"label": "person", "score": 0.91, "zones": ["fence"], "camera": "gate_cam", "event_id": "1700000000.1-abc"}
    incident = incident_for(event, GATE_CAM, None, None)
    assert (incident.kind, incident.severity, incident.zone) == (IncidentKind.INTRUSION, Severity.WARNING, "main-gate")
    assert incident.detail == "person entered fence (camera gate_cam)"


def test_frigate_new_event_already_in_a_zone_is_a_detection() -> None:
    [event] = frigate.decode_event(frigate_event("new", before=["yard"], after=["yard"]), (GATE_CAM,), NOW)
    assert event.attrs["zones"] == ["yard"]


@pytest.mark.parametrize(
    "payload",
    [
        frigate_event(after=["yard"], before=["yard"]),  # no new zone
        frigate_event(after=[]),  # seen, but in no zone
        frigate_event("end", after=["yard", "fence"], before=["yard"]),  # the object left
        frigate_event(after=["yard"], false_positive=True),
        frigate_event(after=["yard"], camera="kitchen"),  # a camera guardlink does not watch
    ],
)
def test_frigate_events_that_are_not_new_zone_entries_give_nothing(payload: bytes) -> None:
    assert frigate.decode_event(payload, (GATE_CAM, YARD_CAM), NOW) == []


def test_frigate_animals_entering_a_zone_are_detections_but_no_incident() -> None:
    [event] = frigate.decode_event(frigate_event(label="dog", after=["yard"]), (GATE_CAM,), NOW)
    assert incident_for(event, GATE_CAM, None, None) is None


def test_frigate_default_topic_names_the_camera_by_the_device_id() -> None:
    [event] = frigate.decode_event(frigate_event(after=["yard"], camera="yard_cam"), (GATE_CAM, YARD_CAM), NOW)
    assert event.device == "yard_cam"
    assert frigate.DRIVER.topic_for("s", YARD_CAM) == "frigate/yard_cam/motion"


def test_frigate_stats_are_each_camera_heartbeat_and_zero_fps_is_offline() -> None:
    events = frigate.decode_stats(frigate.stats_payload({"gate_cam": 5.0, "yard_cam": 0.0, "kitchen": 5.0}), (GATE_CAM, YARD_CAM), NOW)
    assert [(e.device, e.kind, e.online) for e in events] == [("cam-gate", EventKind.AVAILABILITY, True), ("yard_cam", EventKind.AVAILABILITY, False)]
    assert "no frames" in events[1].attrs["detail"]


def test_frigate_motion_topic_gives_occupancy() -> None:
    [event] = frigate.decode_motion(b"ON", GATE_CAM, NOW)
    assert (event.kind, event.attrs) == (EventKind.OCCUPANCY, {"occupied": True})
    assert reason(frigate.decode_motion, b"MAYBE", GATE_CAM, NOW) == "unknown_state"


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"type": "teleport", "after": {}}, "unknown_type"),
        ({"type": "new"}, "missing_field"),
        ({"type": "new", "after": []}, "wrong_type"),
        ({"type": "new", "after": {"camera": "gate_cam"}}, "missing_field"),
        ({"type": "new", "after": {"camera": "gate_cam", "label": "person", "top_score": 7}}, "out_of_range"),
        ({"type": "new", "after": {"camera": "gate_cam", "label": "person", "entered_zones": "yard"}}, "wrong_type"),
        ({"type": "new", "after": {"camera": "gate_cam", "label": "person", "entered_zones": ["z"] * 33}}, "out_of_range"),
        ({"type": "new", "after": {"camera": "gate_cam", "label": "person", "frame_time": NOW - 7200}}, "stale_timestamp"),
        ({"type": "new", "after": {"camera": "gate_cam", "label": "person", "false_positive": "no"}}, "wrong_type"),
    ],
)
def test_frigate_rejects_bad_events(doc: dict[str, Any], why: str) -> None:
    assert reason(frigate.decode_event, encode(doc), (GATE_CAM,), NOW) == why


# --- Native guardlink panic button and the native envelope ---------------------------------------

PANIC_BUTTON = Device(id="btn-native", driver="guardlink_button", location=HALL, duress_actions=["long"], test_actions=["triple"])


@pytest.mark.parametrize(("action", "kind"), [("single", EventKind.PANIC), ("long", EventKind.DURESS), ("triple", EventKind.TEST)])
def test_native_button_press_follows_the_site_action_lists(action: str, kind: EventKind) -> None:
    [event] = guardlink_button.decode(guardlink_button.press_payload(5, action, boot=9), PANIC_BUTTON, NOW)
    assert (event.kind, event.action, event.attrs, event.location) == (kind, action, {"seq": 5, "boot": 9}, HALL.point())


def test_native_button_status_gives_status_with_its_tamper_switch() -> None:
    [event] = guardlink_button.decode(guardlink_button.status_payload(6, 88, -70, boot=9, tamper=True), PANIC_BUTTON, NOW)
    assert (event.kind, event.battery, event.attrs) == (EventKind.DEVICE_STATUS, 88.0, {"seq": 6, "boot": 9, "rssi_dbm": -70.0, "tamper": True})


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"seq": 1, "type": "press", "action": "spin"}, "unknown_action"),
        ({"seq": 1, "type": "press"}, "missing_field"),
        ({"seq": 1, "type": "status"}, "missing_field"),
        ({"seq": 1, "type": "reboot"}, "unknown_type"),
        ({"seq": 1, "boot": -1, "type": "press", "action": "single"}, "out_of_range"),
        ({"seq": 1, "boot": 2**53, "type": "press", "action": "single"}, "out_of_range"),
        ({"seq": 1, "boot": "3", "type": "press", "action": "single"}, "wrong_type"),
        ({"seq": 1, "ts": NOW + 600, "type": "press", "action": "single"}, "future_timestamp"),
        ({"seq": 1, "ts": NOW - 7200, "type": "press", "action": "single"}, "stale_timestamp"),
    ],
)
def test_native_button_rejects_bad_reports(doc: dict[str, Any], why: str) -> None:
    assert reason(guardlink_button.decode, encode(doc), PANIC_BUTTON, NOW) == why


def test_native_wearable_carries_boot_and_checks_its_clock() -> None:
    [event] = guardlink_wearable.decode(encode({"seq": 3, "boot": 2, "ts": NOW - 1, "type": "sos"}), Device(id="w", driver="guardlink_wearable"), NOW)
    assert event.attrs == {"seq": 3, "boot": 2}
    assert reason(guardlink_wearable.decode, encode({"seq": 3, "ts": NOW + 900, "type": "sos"}), Device(id="w", driver="guardlink_wearable"), NOW) == "future_timestamp"
