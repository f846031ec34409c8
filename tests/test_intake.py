"""The intake's hardening: routing of shared topics, per-device token buckets, replay protection, retained alarms."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers import guardlink_button, guardlink_wearable, zigbee2mqtt
from edge.intake import ALARM_PROBE_BYTES, BURST, RATE_PER_S, UNKNOWN_DEVICE, Intake
from edge.ratelimit import TokenBucket
from edge.replay import BOOTS_KEPT, REBOOT_SEQ_BELOW, REBOOT_SILENCE_S, WINDOW, ReplayGuard, Verdict
from edge.rules import ALARM_EVENTS
from edge.supervision import Supervisor
from guardlink.models import EventKind, IncidentKind
from guardlink.siteconfig import SiteConfig

NOW = 1_700_000_000.0
SITE = SiteConfig.model_validate({
    "site": {"id": "s", "name": "S", "district": "d", "location": {"lat": 40.0, "lon": 111.0}},
    "police": {"broker": "mqtt://127.0.0.1:1"},
    "devices": [
        {"id": "btn-a", "driver": "zigbee2mqtt"},
        {"id": "btn-b", "driver": "zigbee2mqtt"},
        {"id": "leak-1", "driver": "zigbee2mqtt"},
        {"id": "pb-1", "driver": "guardlink_button"},
        {"id": "wear-1", "driver": "guardlink_wearable"},
        {"id": "t-1", "driver": "tasmota", "topic": "stat/mod/RESULT"},
        {"id": "t-2", "driver": "tasmota", "topic": "stat/mod/RESULT", "channel": 2},
        {"id": "gate_cam", "driver": "frigate"},
        {"id": "yard_cam", "driver": "frigate"},
    ],
})
STATUS = b'{"battery": 80, "linkquality": 120}'
PRESS = zigbee2mqtt.button_payload("single")
NATIVE = "guardlink/s/dev/pb-1/up"


def intake() -> Intake:
    return Intake(SITE, now=NOW)


# --- Routing --------------------------------------------------------------------------------------


def test_a_bridge_state_reaches_every_device_behind_it() -> None:
    events = intake().decode("zigbee2mqtt/bridge/state", b"offline", NOW)
    assert sorted(e.device for e in events) == ["btn-a", "btn-b", "leak-1"]
    assert {(e.kind, e.online) for e in events} == {(EventKind.AVAILABILITY, False)}


def test_inputs_of_one_module_share_its_topic_and_each_gets_its_own_presses() -> None:
    lane = intake()
    assert lane.routes["stat/mod/RESULT"].label == "stat/mod/RESULT"
    [event] = lane.decode("stat/mod/RESULT", b'{"Button2": {"Action": "SINGLE"}}', NOW)
    assert (event.device, event.kind) == ("t-2", EventKind.PANIC)
    assert {e.device for e in lane.decode("tele/mod/STATE", b'{"Wifi": {"RSSI": 50}}', NOW)} == {"t-1", "t-2"}


def test_frigate_events_are_one_subscription_for_every_camera() -> None:
    lane = intake()
    assert "frigate/events" in lane.filters and "frigate/stats" in lane.filters
    payload = json.dumps({"type": "update", "before": {"camera": "yard_cam", "label": "person"},
                          "after": {"camera": "yard_cam", "label": "person", "entered_zones": ["yard"]}}).encode()
    [event] = lane.decode("frigate/events", payload, NOW)
    assert (event.device, event.kind, event.attrs["zones"]) == ("yard_cam", EventKind.DETECTION, ["yard"])


def test_unknown_topics_are_counted_under_one_name() -> None:
    lane = intake()
    for n in range(100):
        assert lane.decode(f"zigbee2mqtt/intruder-{n}", PRESS, NOW) == []
    assert dict(lane.rejections.counts) == {(UNKNOWN_DEVICE, "unknown_device"): 100}


# --- Rate limit -----------------------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket.full(rate_per_s=10, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(0.05) is False  # half a token
    assert bucket.take(0.1) is True
    assert bucket.take(100.0) and bucket.tokens == 4  # refilled, but never past the burst
    assert bucket.take(50.0) is True  # a clock going back neither refills nor breaks it


def test_a_flooding_device_is_cut_to_its_budget_and_counted() -> None:
    lane = intake()
    kept = sum(bool(lane.decode("zigbee2mqtt/btn-a", STATUS, NOW)) for _ in range(5000))
    assert kept == BURST
    assert lane.rejections.counts[("btn-a", "rate_limited")] == 5000 - BURST
    assert lane.decode("zigbee2mqtt/btn-b", STATUS, NOW), "another device's budget is its own"
    assert lane.decode("zigbee2mqtt/btn-a", STATUS, NOW + 1.5 / RATE_PER_S), "the budget refills at the rate"


def test_an_alarm_is_never_rate_limited_away() -> None:
    lane = intake()
    for _ in range(int(BURST) + 10):
        lane.decode("zigbee2mqtt/btn-a", STATUS, NOW)
    [press] = lane.decode("zigbee2mqtt/btn-a", PRESS, NOW)
    assert press.kind is EventKind.PANIC


def test_over_its_budget_a_payload_too_big_to_be_a_press_is_not_even_read() -> None:
    lane = intake()
    for _ in range(int(BURST)):
        lane.decode("zigbee2mqtt/btn-a", STATUS, NOW)
    big = json.dumps({"action": "single", "pad": "x" * ALARM_PROBE_BYTES}).encode()
    assert lane.decode("zigbee2mqtt/btn-a", big, NOW) == []
    assert lane.rejections.counts[("btn-a", "rate_limited")] == 1


# --- Replay protection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "then", "verdict"),
    [
        ([(5, 1, 0.0)], (6, 1, 0.1), Verdict.NEW),
        ([(5, 1, 0.0)], (5, 1, 0.1), Verdict.SEEN),  # repeated
        ([(5, 1, 0.0), (9, 1, 0.1)], (7, 1, 0.2), Verdict.NEW),  # out of order, never taken: a real message
        ([(5, 1, 0.0), (9, 1, 0.1), (7, 1, 0.2)], (7, 1, 0.3), Verdict.SEEN),  # ... once
        ([(5, 1, 0.0)], (4, 1, 0.1), Verdict.UNKNOWN),  # below the first seq heard: cannot tell
        ([(5000, 1, 0.0)], (5000 - WINDOW - 1, 1, 0.1), Verdict.UNKNOWN),  # older than the window
        ([(5, 1, 0.0)], (0, 2, 0.1), Verdict.NEW),  # rebooted: a higher boot, seq from 0
        ([(5, 1, 0.0), (0, 2, 0.1)], (6, 1, 0.2), Verdict.NEW),  # sent before the reboot, delivered after it
        ([(5, 2, 0.0)], (900, 1, 0.1), Verdict.OLD_BOOT),  # from an earlier life
        ([(5, 1, 0.0), *[(0, b, 0.1) for b in range(2, 2 + BOOTS_KEPT)]], (6, 1, 0.2), Verdict.OLD_BOOT),  # forgotten life
        ([(5, 1, 0.0)], (6, None, 0.1), Verdict.NEW),  # no boot: same boot as before
        ([(5, None, 0.0)], (0, 3, 0.1), Verdict.NEW),  # firmware that starts counting boots
        ([(500, None, 0.0)], (0, None, REBOOT_SILENCE_S), Verdict.NEW),  # restart without a boot counter: low seq after silence
        ([(500, None, 0.0)], (0, None, REBOOT_SILENCE_S - 0.1), Verdict.UNKNOWN),  # ... but not while it keeps talking
        ([(500, None, 0.0)], (REBOOT_SEQ_BELOW, None, 60.0), Verdict.UNKNOWN),  # ... nor a seq that is not low
        ([(5, 1, 0.0), (6, 1, 1.0)], (6, 1, 2.0), Verdict.SEEN),
        ([], (123, None, 0.0), Verdict.NEW),  # the first message heard is taken
    ],
)
def test_replay_rule(history: list[tuple[int, int | None, float]], then: tuple[int, int | None, float], verdict: Verdict) -> None:
    guard = ReplayGuard()
    for seq, boot, at in history:
        assert guard.check("dev", seq, boot, at) is Verdict.NEW
    seq, boot, at = then
    assert guard.check("dev", seq, boot, at) is verdict


@settings(max_examples=200, deadline=None)
@given(st.permutations(range(300)))
def test_every_seq_is_taken_exactly_once_whatever_the_order(order: list[int]) -> None:
    guard = ReplayGuard()
    guard.check("dev", 0, 1, 0.0)
    taken = [seq for seq in order if seq and guard.check("dev", seq, 1, 0.0) is Verdict.NEW]
    again = [seq for seq in order if guard.check("dev", seq, 1, 0.0) is Verdict.NEW]
    assert sorted(taken) == list(range(1, 300)) and again == []


def test_after_a_restore_what_was_taken_is_unknown_and_newer_is_new() -> None:
    before = ReplayGuard()
    for seq in (3, 4, 9):
        before.check("dev", seq, 7, 0.0)
    after = ReplayGuard()
    after.restore(json.loads(json.dumps(before.snapshot())))
    assert [after.check("dev", seq, 7, 1.0) for seq in (9, 5, 10, 10)] == [Verdict.UNKNOWN, Verdict.UNKNOWN, Verdict.NEW, Verdict.SEEN]
    assert after.check("dev", 0, 6, 1.0) is Verdict.OLD_BOOT


def test_a_copy_of_a_native_report_is_dropped_and_counted_but_a_copy_of_an_alarm_goes_on_to_the_outbox_check() -> None:
    lane = intake()
    press = guardlink_button.press_payload(7, boot=3)
    assert [e.kind for e in lane.decode(NATIVE, press, NOW)] == [EventKind.PANIC]
    # Only the outbox can prove that a press was stored (EdgeNode drops it then): the intake hands it on.
    assert [e.kind for e in lane.decode(NATIVE, press, NOW + 30)] == [EventKind.PANIC]
    status = guardlink_button.status_payload(8, battery=90, rssi=-60, boot=3)
    assert lane.decode(NATIVE, status, NOW + 31) and lane.decode(NATIVE, status, NOW + 32) == []
    assert lane.decode(NATIVE, guardlink_button.press_payload(2, boot=2), NOW + 33) == []
    assert [e.kind for e in lane.decode(NATIVE, guardlink_button.press_payload(0, boot=4), NOW + 40)] == [EventKind.PANIC]
    assert lane.rejections.counts[("pb-1", "replayed_seq")] == 1
    assert lane.rejections.counts[("pb-1", "replayed_boot")] == 1


def test_a_native_devices_last_will_is_read_as_its_availability() -> None:
    lane = intake()
    for state, online in ((b"offline", False), (b"online", True)):
        [event] = lane.decode("guardlink/s/devices/pb-1/availability", state, NOW)
        assert (event.kind, event.online) == (EventKind.AVAILABILITY, online)


def test_each_native_device_has_its_own_sequence() -> None:
    lane = intake()
    assert lane.decode(NATIVE, guardlink_button.press_payload(9), NOW)
    assert lane.decode("guardlink/s/dev/wear-1/up", guardlink_wearable.sos_payload(1), NOW)


# --- Retained messages ----------------------------------------------------------------------------


def test_an_alarm_in_a_retained_message_is_a_past_one_and_is_dropped() -> None:
    lane = intake()
    events = lane.decode("zigbee2mqtt/btn-a", zigbee2mqtt.button_payload("single", battery=50), NOW, retained=True)
    assert [e.kind for e in events] == [EventKind.DEVICE_STATUS], "the status in it still counts"
    assert lane.rejections.counts[("btn-a", "retained_alarm")] == 1
    assert [e.kind for e in lane.decode("zigbee2mqtt/btn-a", PRESS, NOW)] == [EventKind.PANIC]


# --- Sensor conditions ----------------------------------------------------------------------------


def test_a_leak_is_raised_once_while_it_lasts_and_resolved_when_it_stops() -> None:
    lane, supervisor = intake(), Supervisor({"leak-1": 3600.0}, missed=3, low_battery_percent=15, now=NOW)
    changes = []
    for state, at in ((True, 1), (True, 2), (True, 3), (False, 4), (False, 5)):
        for event in lane.decode("zigbee2mqtt/leak-1", zigbee2mqtt.sensor_payload("water_leak", state, 90, 3000, 100), NOW + at):
            changes += supervisor.heard(event)
    assert [(c.kind, c.raised, c.detail) for c in changes] == [
        (IncidentKind.WATER_LEAK, True, "water leak detected"),
        (IncidentKind.WATER_LEAK, False, "water leak cleared"),
    ]


def test_tamper_is_a_condition_raised_once_while_it_lasts_however_often_it_is_reported() -> None:
    lane, supervisor = intake(), Supervisor({"btn-a": 3600.0}, missed=3, low_battery_percent=15, now=NOW)
    changes, alarms = [], []
    for tamper, at in ((True, 1), (True, 2), (True, 3), (False, 4), (False, 5)):
        payload = json.dumps({"tamper": tamper, "battery": 90, "linkquality": 100}).encode()
        for event in lane.decode("zigbee2mqtt/btn-a", payload, NOW + at):
            changes += supervisor.heard(event)
            alarms += [event] if event.kind in ALARM_EVENTS else []
    assert alarms == [], "a repeated state report is no new alarm"
    assert [(c.kind, c.raised, c.detail) for c in changes] == [
        (IncidentKind.TAMPER, True, "tamper detected"),
        (IncidentKind.TAMPER, False, "tamper cleared"),
    ]


def test_bridge_offline_raises_device_offline_naming_the_bridge() -> None:
    supervisor = Supervisor({"btn-a": 3600.0}, missed=3, low_battery_percent=15, now=NOW)
    [event, *_] = intake().decode("zigbee2mqtt/bridge/state", b'{"state": "offline"}', NOW)
    [change] = supervisor.heard(event)
    assert (change.kind, change.raised, change.detail) == (IncidentKind.DEVICE_OFFLINE, True, "its bridge went offline")


# --- The whole intake never fails in any other way -------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    topic=st.sampled_from(sorted(Intake(SITE).routes) + ["zigbee2mqtt/nobody", "frigate/events"]),
    payload=st.binary(max_size=300) | st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=6), max_size=4)),
    retained=st.booleans(),
    at=st.floats(min_value=0, max_value=10),
)
def test_intake_of_anything_on_any_topic_gives_events_or_a_counted_rejection(topic: str, payload: bytes, retained: bool, at: float) -> None:
    lane = intake()
    events = lane.decode(topic, payload, NOW + at, retained=retained)
    assert events or lane.rejections.total <= 1
    assert all(e.device in {d.id for d in SITE.devices} for e in events)


def test_flood_limits_come_from_the_site_file() -> None:
    strict = SITE.model_copy(update={"intake": SITE.intake.model_copy(update={"rate_per_s": 1.0, "burst": 2.0})})
    lane = Intake(strict, now=NOW)
    for _ in range(5):
        lane.decode("zigbee2mqtt/btn-a", STATUS, NOW)
    assert lane.rejections.counts[("btn-a", "rate_limited")] == 3
