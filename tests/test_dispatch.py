"""Dispatch as a state machine: offers, answers, timeouts, re-offers, police commands. Pure: no broker, time passed in."""

from __future__ import annotations

import itertools
import math

import pytest

from edge.dispatch import Dispatcher
from edge.guards import GuardBoard
from guardlink.geo import EARTH_RADIUS_M, LatLon
from guardlink.models import (
    Answer,
    CommandKind,
    Event,
    EventKind,
    GuardState,
    Incident,
    IncidentKind,
    Location,
    PoliceCommand,
    Severity,
    iso,
)
from guardlink.siteconfig import parse_site

NOW = 1_800_014_400.0  # Friday 2027-01-15, 12:00 UTC: g4 (mon-fri 08:00-09:00) is off shift
HOME = LatLon(40.8421, 111.7512)
SITE = f"""
site: {{id: s, name: S, district: d, location: {{lat: {HOME.lat}, lon: {HOME.lon}}}}}
police: {{broker: mqtt://127.0.0.1:1}}
devices:
  - {{id: btn, driver: zigbee2mqtt, location: {{lat: {HOME.lat}, lon: {HOME.lon}}}}}
  - {{id: w1, driver: guardlink_wearable}}
  - {{id: w2, driver: guardlink_wearable}}
  - {{id: w3, driver: guardlink_wearable}}
  - {{id: w4, driver: guardlink_wearable}}
guards:
  - {{id: g1, name: One, roles: [patrol], wearable: w1}}
  - {{id: g2, name: Two, roles: [patrol, first_aid], wearable: w2}}
  - {{id: g3, name: Three, roles: [patrol], wearable: w3}}
  - {{id: g4, name: Four, roles: [mediator], wearable: w4, schedule: ["mon-fri 08:00-09:00"]}}
incidents:
  man_down: {{guards: 1, roles: [first_aid]}}
"""


def north(metres: float) -> LatLon:
    return LatLon(HOME.lat + math.degrees(metres / EARTH_RADIUS_M), HOME.lon)


def make_site(positions: dict[str, float]):
    """The site with each wearable placed `metres` north of the button."""
    config = parse_site(SITE, "site.yaml")
    board = GuardBoard(config, NOW)
    counter = itertools.count(1)
    dispatcher = Dispatcher(config, board, lambda: next(counter))
    for device, metres in positions.items():
        board.observe(Event(EventKind.POSITION, device, NOW, location=north(metres), accuracy_m=0.0))
    return config, board, dispatcher


@pytest.fixture
def site():
    return make_site({"w1": 100, "w2": 200, "w3": 300, "w4": 10})


def panic(kind: IncidentKind = IncidentKind.PANIC, by: str | None = None) -> Incident:
    return Incident(kind=kind, severity=Severity.CRITICAL, device="btn", location=Location.of(HOME), raised_by_guard=by, detected_at=iso(NOW))


def states(step) -> dict[str, str]:
    return {a.guard: a.state.value for a in step.escalation.assignments}


def test_a_panic_is_offered_to_the_best_available_guard(site):
    config, board, dispatcher = site
    step = dispatcher.open(panic(), NOW)
    assert (step.escalation.revision, step.escalation.status.value, states(step)) == (1, "dispatched", {"g1": "offered"})
    assert [(g, o.state, o.answer_within_s) for g, o in step.offers] == [("g1", "offered", 30)]
    assert step.escalation.assignments[0].eta_s == pytest.approx(100 / 1.4, abs=0.1)
    assert board.guards["g1"].state is GuardState.OFFERED
    assert board.guards["g4"].state is GuardState.OFF_DUTY, "g4 is nearest but off shift"


def test_a_decline_passes_the_offer_to_the_next_guard(site):
    _, board, dispatcher = site
    first = dispatcher.open(panic(), NOW)
    step = dispatcher.answer("g1", Answer.DECLINE, first.escalation.id, NOW + 3)
    assert (step.escalation.revision, states(step)) == (2, {"g1": "declined", "g2": "offered"})
    assert step.escalation.id == first.escalation.id and step.escalation.sequence > first.escalation.sequence
    assert board.guards["g1"].state is GuardState.AVAILABLE


def test_an_unanswered_offer_times_out_and_moves_on_until_nobody_is_left(site):
    _, _, dispatcher = site
    dispatcher.open(panic(), NOW)
    assert dispatcher.expire(NOW + 29) == []
    [step] = dispatcher.expire(NOW + 30)
    assert states(step) == {"g1": "timed_out", "g2": "offered"}
    [step] = dispatcher.expire(NOW + 60)
    [step] = dispatcher.expire(NOW + 90)
    assert states(step) == {"g1": "timed_out", "g2": "timed_out", "g3": "timed_out"}
    assert step.escalation.status.value == "no_guard_available"


def test_accept_arrive_resolve_releases_the_guard(site):
    _, board, dispatcher = site
    first = dispatcher.open(panic(), NOW)
    eid = first.escalation.id
    assert dispatcher.answer("g1", Answer.ACCEPT, eid, NOW + 2).escalation.status.value == "assigned"
    assert dispatcher.expire(NOW + 100) == [], "an accepted offer never times out"
    assert dispatcher.answer("g1", Answer.ON_SCENE, eid, NOW + 60).escalation.status.value == "on_scene"
    done = dispatcher.answer("g1", Answer.FALSE_ALARM, eid, NOW + 90)
    assert (done.escalation.status.value, states(done), done.escalation.revision) == ("false_alarm", {"g1": "done"}, 4)
    assert board.guards["g1"].state is GuardState.AVAILABLE
    assert eid not in dispatcher.jobs
    assert dispatcher.answer("g1", Answer.RESOLVED, eid, NOW + 91) is None, "a closed job takes no more answers"


def test_answers_that_do_not_fit_are_ignored(site):
    _, _, dispatcher = site
    eid = dispatcher.open(panic(), NOW).escalation.id
    assert dispatcher.answer("g2", Answer.ACCEPT, eid, NOW) is None, "g2 was not offered the job"
    assert dispatcher.answer("g1", Answer.ON_SCENE, eid, NOW) is None, "on scene before accepting"
    assert dispatcher.answer("g1", Answer.ACCEPT, "no-such-id", NOW) is None


def test_duress_asks_for_two_guards(site):
    _, _, dispatcher = site
    assert states(dispatcher.open(panic(IncidentKind.DURESS), NOW)) == {"g1": "offered", "g2": "offered"}


def test_man_down_goes_to_a_first_aider_never_to_the_fallen_guard():
    _, _, dispatcher = make_site({"w1": 100, "w2": 900, "w3": 150})
    assert states(dispatcher.open(panic(IncidentKind.MAN_DOWN, by="g1"), NOW)) == {"g2": "offered"}


def test_the_guard_who_raised_an_sos_is_never_sent(site):
    _, _, dispatcher = site
    assert states(dispatcher.open(panic(IncidentKind.SOS, by="g1"), NOW)) == {"g2": "offered"}


def test_police_acknowledge_more_guards_and_close(site):
    _, board, dispatcher = site
    eid = dispatcher.open(panic(), NOW).escalation.id
    ack = dispatcher.command(PoliceCommand(command=CommandKind.ACKNOWLEDGE, escalation=eid, by="desk-7"), NOW + 1)
    assert ack.escalation.acknowledged_by == "desk-7" and ack.escalation.revision == 2
    more = dispatcher.command(PoliceCommand(command=CommandKind.MORE_GUARDS, escalation=eid, by="desk-7", count=2), NOW + 2)
    assert states(more) == {"g1": "offered", "g2": "offered", "g3": "offered"}
    closed = dispatcher.command(PoliceCommand(command=CommandKind.CLOSE, escalation=eid, by="desk-7"), NOW + 3)
    assert closed.escalation.status.value == "closed"
    assert set(states(closed).values()) == {"withdrawn"}
    assert {o.state for _, o in closed.offers} == {"withdrawn"}
    assert all(board.guards[g].state is GuardState.AVAILABLE for g in ("g1", "g2", "g3"))
    assert "already closed" in dispatcher.command(PoliceCommand(command=CommandKind.CLOSE, escalation=eid, by="desk-7"), NOW + 4)


def test_a_job_nobody_could_take_goes_out_again_when_a_guard_comes_on_shift(site):
    _, board, dispatcher = site
    for guard in ("g1", "g2", "g3"):
        board.set_state(guard, GuardState.OFF_DUTY)
    step = dispatcher.open(panic(), NOW)
    assert step.escalation.status.value == "no_guard_available"
    board.set_state("g3", GuardState.AVAILABLE)
    [again] = dispatcher.expire(NOW + 1)
    assert (again.escalation.status.value, states(again)) == ("dispatched", {"g3": "offered"})


def test_shifts_put_guards_on_and_off_duty_in_site_local_time(site):
    _, board, _ = site
    monday_0830 = 1_799_656_200.0  # Monday 2027-01-11, 08:30 UTC
    board.refresh_duty(monday_0830)
    assert board.guards["g4"].state is GuardState.AVAILABLE
    board.refresh_duty(monday_0830 + 3600)
    assert board.guards["g4"].state is GuardState.OFF_DUTY


def test_a_position_older_than_the_limit_makes_a_guard_unplaceable(site):
    _, _, dispatcher = site
    later = NOW + 601  # every position is now 601 s old (limit 600 s)
    assert dispatcher.open(panic(), later).escalation.status.value == "no_guard_available"


def test_every_revision_has_a_higher_sequence_and_the_same_id(site):
    _, _, dispatcher = site
    first = dispatcher.open(panic(), NOW)
    eid = first.escalation.id
    steps = [first, dispatcher.answer("g1", Answer.DECLINE, eid, NOW + 1), dispatcher.answer("g2", Answer.ACCEPT, eid, NOW + 2)]
    assert [s.escalation.revision for s in steps] == [1, 2, 3]
    assert [s.escalation.sequence for s in steps] == sorted({s.escalation.sequence for s in steps})
    assert {s.escalation.id for s in steps} == {eid}
    assert states(steps[-1]) == {"g1": "declined", "g2": "assigned"}
    assert steps[-1].escalation.assignments[1].answered_at is not None
