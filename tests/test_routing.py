"""The router decides what each input means, with no broker, disk or clock: plans are checked here directly."""

from __future__ import annotations

import itertools
import json

from device_drivers import guardlink_wearable, zigbee2mqtt
from edge.dispatch import Step
from edge.node import ClockSteps
from edge.routing import DEVICE_SOURCE, Inbound, Router, device_confirmation
from guardlink import topics
from guardlink.geo import LatLon
from guardlink.models import EscalationStatus, EventKind, IncidentKind
from guardlink.siteconfig import SiteConfig

NOW = 1_700_000_000.0
SITE = "hohhot-no3-primary"


def router(school: SiteConfig, stored: set[str] | None = None) -> Router:
    return Router(school, NOW, holds=(stored if stored is not None else set()).__contains__, next_sequence=itertools.count(1).__next__)


def test_a_press_plans_one_stored_revision_with_its_source(school):
    plan = router(school).route(Inbound("zigbee2mqtt/btn-gate", zigbee2mqtt.button_payload("single"), mid=7), NOW)
    [step] = plan.steps
    assert (step.escalation.revision, step.escalation.incident.kind, step.escalation.status) == (1, IncidentKind.PANIC, EscalationStatus.NO_GUARD_AVAILABLE)  # nobody placed yet
    assert plan.stores and plan.source is not None and plan.source.startswith("zigbee2mqtt/btn-gate|7|")
    assert [e.kind for e in plan.events] == [EventKind.PANIC]


def test_a_native_alarm_is_known_by_device_boot_and_seq_and_a_stored_copy_is_only_confirmed(school):
    sos = Inbound(topics.native_device_uplink(SITE, "wear-li"), guardlink_wearable.sos_payload(41, boot=7))
    first = router(school).route(sos, NOW)
    assert first.source == f"{DEVICE_SOURCE}wear-li@7#41" and len(first.steps) == 1
    again = router(school, stored={first.source})
    copy = again.route(sos, NOW)
    assert not copy.stores and copy.confirm == first.source
    assert again.intake.rejections.counts[("wear-li", "replayed_seq")] == 1
    assert device_confirmation(first.source) == ("wear-li", json.dumps({"seq": 41, "boot": 7}).encode())


def test_a_redelivery_of_a_plain_press_is_a_copy_only_when_the_broker_marks_it_dup(school):
    press = zigbee2mqtt.button_payload("single")
    source = router(school).route(Inbound("zigbee2mqtt/btn-gate", press, mid=9), NOW).source
    assert router(school, stored={source}).route(Inbound("zigbee2mqtt/btn-gate", press, mid=9), NOW).stores, "no DUP: a new press"
    assert not router(school, stored={source}).route(Inbound("zigbee2mqtt/btn-gate", press, dup=True, mid=9), NOW).stores


def test_a_position_moves_the_guard_and_stores_nothing(school):
    r = router(school)
    report = guardlink_wearable.position_payload(3, LatLon(40.8421, 111.7512), 5.0, boot=7)
    plan = r.route(Inbound(topics.native_device_uplink(SITE, "wear-li"), report), NOW)
    assert not plan.stores and r.board.guards["g-li"].point == LatLon(40.8421, 111.7512)


def test_a_guards_acceptance_is_a_new_revision(school):
    r = router(school)
    for n, (wearable, lat) in enumerate((("wear-li", 40.8422), ("wear-zhang", 40.8430), ("wear-wang", 40.8440))):
        r.route(Inbound(topics.native_device_uplink(SITE, wearable), guardlink_wearable.position_payload(n, LatLon(lat, 111.7512), 5.0, boot=1)), NOW)
    [opened] = r.route(Inbound("zigbee2mqtt/btn-gate", zigbee2mqtt.button_payload("single")), NOW).steps
    [(guard, _offer)] = opened.offers
    reply = json.dumps({"answer": "accept", "escalation": opened.escalation.id}).encode()
    [accepted] = r.route(Inbound(topics.guard_reply(SITE, guard), reply), NOW + 5).steps
    assert (accepted.escalation.id, accepted.escalation.revision) == (opened.escalation.id, 2)
    assert accepted.escalation.status is EscalationStatus.ASSIGNED


def test_a_native_last_will_raises_device_offline_and_publishes_its_state(school):
    plan = router(school).route(Inbound(topics.device_availability(SITE, "wear-li"), b"offline"), NOW)
    [step] = plan.steps
    assert step.escalation.incident.kind is IncidentKind.DEVICE_OFFLINE
    assert any(topic == topics.device_state(SITE, "wear-li") and retain for topic, _, retain in plan.publish)


def test_time_alone_raises_a_silent_device(school):
    r = router(school)
    assert not r.tick(NOW + 1).stores
    plan = r.tick(NOW + 4 * 30)  # a wearable's heartbeat is 30 s; three missed
    assert {s.escalation.incident.device for s in plan.steps if s.escalation.incident.kind is IncidentKind.DEVICE_OFFLINE} >= {"wear-li"}


def test_a_wall_clock_step_fires_no_offer_and_silences_no_device(school):
    def placed_router() -> tuple[Router, Step]:
        r = router(school)
        for n, wearable in enumerate(("wear-li", "wear-zhang", "wear-wang")):
            report = guardlink_wearable.position_payload(n, LatLon(40.8422 + n / 1000, 111.7512), 5.0, boot=1)
            r.route(Inbound(topics.native_device_uplink(SITE, wearable), report), NOW)
        [opened] = r.route(Inbound("zigbee2mqtt/btn-gate", zigbee2mqtt.button_payload("single")), NOW).steps
        return r, opened

    stepped = NOW + 3600 + 2  # NTP set the clock an hour ahead, two seconds after the offer
    unaware, _ = placed_router()
    assert unaware.tick(stepped).stores, "without knowing of the step, every deadline and heartbeat fires at once"
    aware, _ = placed_router()
    aware.shift(3600)
    assert not aware.tick(stepped).stores
    assert aware.tick(stepped + school.dispatch.offer_timeout_s).stores, "the offer still times out, on its own time"


def test_clock_steps_are_told_from_time_running():
    wall, mono = [NOW], [100.0]
    steps = ClockSteps(lambda: wall[0], lambda: mono[0])
    wall[0] += 5
    mono[0] += 5
    assert steps.check() == 0.0
    wall[0] += 3600 + 1
    mono[0] += 1
    assert steps.check() == 3600.0
    wall[0] += 0.3  # NTP slewing the clock, a little at a time
    assert steps.check() == 0.0
