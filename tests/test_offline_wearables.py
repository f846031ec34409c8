"""A guard whose wearable is offline cannot receive an offer, so none is made: no 30 s timeout per unreachable guard."""

from __future__ import annotations

from test_dispatch import NOW, make_site, north, panic, states

from guardlink.models import Event, EventKind, Incident, IncidentKind, Severity, iso


def offline(device: str) -> Incident:
    return Incident(kind=IncidentKind.DEVICE_OFFLINE, severity=Severity.WARNING, device=device, location=None, detected_at=iso(NOW), detail="silent")


def test_a_guard_whose_wearable_announced_offline_is_not_offered_until_it_reports_again():
    config, board, dispatcher = make_site({"w1": 100, "w2": 200, "w3": 300})
    board.observe(Event(EventKind.AVAILABILITY, "w1", NOW, online=False))  # its Last Will
    assert states(dispatcher.open(panic(), NOW)) == {"g2": "offered"}
    board.observe(Event(EventKind.POSITION, "w1", NOW + 5, location=north(100), accuracy_m=0.0))
    assert states(dispatcher.open(panic(), NOW + 5)) == {"g1": "offered"}


def test_a_wearable_declared_offline_by_supervision_takes_its_guard_out_of_dispatch():
    config, board, dispatcher = make_site({"w1": 100, "w2": 200, "w3": 300})
    dispatcher.open(offline("w1"), NOW)  # missed heartbeats: no Last Will, only silence
    assert states(dispatcher.open(panic(), NOW)) == {"g2": "offered"}


def test_after_a_restart_an_open_device_offline_still_keeps_its_guard_out():
    config, board, dispatcher = make_site({"w1": 100, "w2": 200, "w3": 300})
    still_open = dispatcher.open(offline("w1"), NOW).escalation
    _, board, dispatcher = make_site({"w1": 100, "w2": 200, "w3": 300})
    dispatcher.adopt(still_open, NOW)
    assert states(dispatcher.open(panic(), NOW)) == {"g2": "offered"}
