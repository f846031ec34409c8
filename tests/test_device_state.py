"""The edge's view of each device, published for installers: prompt on online/offline, throttled otherwise."""

from __future__ import annotations

from edge.device_state import DeviceStates
from guardlink.models import Event, EventKind


def status(at: float, battery: float | None = None) -> Event:
    return Event(EventKind.DEVICE_STATUS, "btn", at, battery=battery, linkquality=100)


def test_first_report_is_published_then_changes_are_throttled_and_liveness_refreshed():
    states = DeviceStates(["btn"], every_s=60, min_interval_s=10)
    first = states.heard(status(0, battery=90), 0)
    assert first is not None and first["battery"] == 90 and first["online"] is True
    assert all(states.heard(status(t, battery=90 - t), t) is None for t in range(1, 10)), "a flood of changes is throttled"
    assert states.heard(status(10, battery=80), 10)["battery"] == 80
    assert states.heard(status(30, battery=80), 30) is None, "nothing new"
    assert states.heard(status(70, battery=80), 70) is not None, "last seen refreshed every minute"


def test_going_offline_and_coming_back_are_published_at_once():
    states = DeviceStates(["btn"], every_s=60, min_interval_s=10)
    states.heard(status(0, battery=90), 0)
    assert states.online("btn", False, 1)["online"] is False
    assert states.online("btn", True, 2)["online"] is True
    assert states.heard(status(3, battery=90), 3) is None
    assert DeviceStates(["btn"]).heard(Event(EventKind.DEVICE_STATUS, "other", 0), 0) is None, "unknown devices are ignored"
