"""Wearable rules: man-down with a pre-alarm the guard can cancel, heart-rate bands, the post geofence."""

from __future__ import annotations

import json
import math

from device_drivers import guardlink_wearable
from edge.wearables import WearableWatch
from guardlink.geo import EARTH_RADIUS_M, LatLon
from guardlink.models import Event, EventKind, IncidentKind
from guardlink.siteconfig import Device, Post, WearableRules

RULES = WearableRules()  # free fall < 0.4 g, impact > 2.5 g within 2 s, still 10 s, pre-alarm 15 s, tilt 60 degrees
DEVICE = Device(id="w1", driver="guardlink_wearable")


def motion(t: float, min_g=0.9, max_g=1.2, tilt=10.0, still=False) -> Event:
    return Event(EventKind.MOTION, "w1", t, attrs={"min_g": min_g, "max_g": max_g, "tilt_deg": tilt, "still": still})


def fall_then_lie_still(watch: WearableWatch, start: float, still_for: int):
    watch.motion(motion(start, min_g=0.1))
    watch.motion(motion(start + 0.5, max_g=3.4, tilt=85))
    started = None
    for s in range(1, still_for + 1):
        started = watch.motion(motion(start + 0.5 + s, tilt=85, still=True)) or started
    return started


def test_a_fall_then_stillness_starts_a_pre_alarm_and_then_the_alarm():
    watch = WearableWatch(RULES)
    assert fall_then_lie_still(watch, 100.0, 9) is None, "9 s still is not yet 10"
    started = watch.motion(motion(110.6, tilt=85, still=True))
    assert started is not None and started.cancel_within_s == 15 and "fall" in started.detail
    assert watch.man_down(110.6 + 14.9) == []
    [(device, detail)] = watch.man_down(110.6 + 15)
    assert device == "w1" and "not cancelled" in detail
    assert watch.man_down(200) == [], "raised once"


def test_the_guard_can_cancel_the_pre_alarm():
    watch = WearableWatch(RULES)
    assert fall_then_lie_still(watch, 0.0, 12) is not None
    assert watch.cancel("w1") is True
    assert watch.man_down(100) == []
    assert watch.cancel("w1") is False


def test_getting_up_after_a_fall_raises_nothing():
    watch = WearableWatch(RULES)
    watch.motion(motion(0, min_g=0.1))
    watch.motion(motion(0.5, max_g=3.4))
    for s in range(1, 30):
        assert watch.motion(motion(0.5 + s, still=False)) is None
    assert watch.man_down(100) == []


def test_an_impact_without_a_free_fall_is_not_a_fall():
    watch = WearableWatch(RULES)
    watch.motion(motion(0, max_g=3.4))  # a bump: no free fall before it
    assert all(watch.motion(motion(s, still=True)) is None for s in range(1, 30))


def test_lying_tilted_and_still_is_a_man_down_too():
    watch = WearableWatch(RULES)
    results = [watch.motion(motion(s, tilt=80, still=True)) for s in range(0, 12)]
    assert results[:10] == [None] * 10 and results[10] is not None, "10 s after lying down"
    assert "lying past 60 degrees" in results[10].detail


def test_heart_rate_outside_the_band_raises_once_and_clears_with_hysteresis():
    watch = WearableWatch(RULES)

    def vitals(rate: float):
        return watch.vitals(Event(EventKind.VITALS, "w1", 0, attrs={"heart_rate": rate}))

    assert vitals(90) == []
    [raised] = vitals(172)
    assert raised.kind is IncidentKind.ABNORMAL_HEART_RATE and raised.raised
    assert vitals(180) == []
    assert vitals(148) == [], "inside the band but within the hysteresis"
    [cleared] = vitals(120)
    assert not cleared.raised
    assert [c.raised for c in vitals(35)] == [True]


def test_leaving_the_post_raises_left_post_only_while_free():
    watch = WearableWatch(RULES)
    post = Post(lat=40.0, lon=111.0, radius_m=50)

    def at(metres: float, accuracy=5.0, free=True):
        point = LatLon(40.0 + math.degrees(metres / EARTH_RADIUS_M), 111.0)
        return watch.position("w1", point, accuracy, post, free)

    assert at(40) == []
    assert at(60, accuracy=20) == [], "could still be inside, given the accuracy"
    [left] = at(120)
    assert left.kind is IncidentKind.LEFT_POST and left.raised and "120 m" in left.detail
    assert at(130) == []
    [back] = at(10)
    assert not back.raised
    assert at(500, free=False) == [], "a guard sent on a job has not left their post"


def test_the_native_wearable_reports_motion_and_vitals():
    [m] = guardlink_wearable.decode(guardlink_wearable.motion_payload(5, 0.12, 3.3, 80, True), DEVICE, 1.0)
    assert m.kind is EventKind.MOTION and m.attrs == {"seq": 5, "min_g": 0.12, "max_g": 3.3, "tilt_deg": 80.0, "still": True}
    [v] = guardlink_wearable.decode(guardlink_wearable.vitals_payload(6, 77), DEVICE, 1.0)
    assert v.kind is EventKind.VITALS and v.attrs["heart_rate"] == 77
    bad = json.dumps({"seq": 1, "type": "motion", "min_g": 0.1, "max_g": 1, "tilt_deg": 5, "still": "no"}).encode()
    try:
        guardlink_wearable.decode(bad, DEVICE, 1.0)
    except ValueError as exc:
        assert "still" in str(exc)
    else:
        raise AssertionError("a non-boolean 'still' must be rejected")
