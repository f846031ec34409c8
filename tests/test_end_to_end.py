"""A press on a real broker reaches the police stream with the nearest guard assigned."""

from __future__ import annotations

import asyncio
import json
import math
from contextlib import ExitStack

import jsonschema
import pytest

from device_drivers.simulators import SiteSimulator
from guardlink import topics
from guardlink.models import Escalation, escalation_json_schema
from guardlink.siteconfig import SiteConfig

from conftest import running_edge, running_mosquitto, wait_until

SCHEMA = escalation_json_schema()


def brute_force_best(target: tuple[float, float], guards: dict[str, tuple[float, float, float]]) -> tuple[str, float]:
    """Independent check over every guard, no shared code: fresh positions, so ETA = (distance + accuracy) / 1.4 m/s."""

    def dist(a: tuple[float, float], b: tuple[float, float]) -> float:
        la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
        h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
        return 2 * 6_371_008.8 * math.asin(math.sqrt(h))

    costs = [((dist(target, (lat, lon)) + acc) / 1.4, dist(target, (lat, lon)), g) for g, (lat, lon, acc) in guards.items()]
    _, distance, guard = min(costs)
    return guard, distance


def guard_positions(config: SiteConfig, sim: SiteSimulator) -> dict[str, tuple[float, float, float]]:
    walkers = {g.id: sim.walkers[g.wearable] for g in config.guards}
    return {g: (w.point.lat, w.point.lon, w.accuracy_m) for g, w in walkers.items()}


async def test_zigbee_press_escalates_once_with_the_best_placed_guard(school, mosquitto, police_mosquitto, recorder, tmp_path):
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    offers = recorder(mosquitto, topics.guard_offer(school.site.id, "+"))
    async with running_edge(school, mosquitto, police_mosquitto, tmp_path / "outbox.db") as node:
        with SiteSimulator(school, mosquitto, seed=7) as sim:
            await asyncio.to_thread(sim.report_positions)
            positions = guard_positions(school, sim)
            await wait_until(lambda: all(s.point for s in node.board.guards.values()), what="guard positions at the edge")
            await asyncio.to_thread(sim.press, "btn-gate", "single")
            await wait_until(lambda: police.payloads(), what="an escalation on the police broker")
            await asyncio.sleep(0.5)  # anything duplicated would arrive by now

    [payload] = police.payloads()
    doc = json.loads(payload)
    jsonschema.validate(doc, SCHEMA)
    escalation = Escalation.from_json(payload)
    assert police.messages[0][0] == topics.police_escalations(school.site.district, school.site.id)
    assert escalation.incident.kind == "panic" and escalation.incident.severity == "critical"
    assert escalation.incident.device == "btn-gate" and escalation.incident.zone == "main-gate"
    gate = school.device("btn-gate").location
    expected_guard, expected_m = brute_force_best((gate.lat, gate.lon), positions)
    [assignment] = escalation.assignments
    assert assignment.guard == expected_guard
    assert assignment.distance_m == pytest.approx(expected_m, abs=0.1)
    assert escalation.status == "dispatched" and escalation.revision == 1
    [(offer_topic, offer)] = offers.messages
    assert offer_topic == topics.guard_offer(school.site.id, expected_guard)
    assert json.loads(offer)["escalation"] == escalation.id


async def test_wearable_sos_never_assigns_the_guard_who_raised_it(school, mosquitto, recorder, tmp_path):
    police = recorder(mosquitto, topics.police_escalations_filter())
    async with running_edge(school, mosquitto, mosquitto, tmp_path / "outbox.db") as node:
        with SiteSimulator(school, mosquitto, seed=3) as sim:
            await asyncio.to_thread(sim.report_positions)
            positions = guard_positions(school, sim)
            await wait_until(lambda: all(s.point for s in node.board.guards.values()), what="guard positions")
            await asyncio.to_thread(sim.press, "wear-li")
            await wait_until(lambda: police.payloads(), what="the SOS escalation")

    escalation = Escalation.from_json(police.payloads()[0])
    assert escalation.incident.kind == "sos" and escalation.incident.raised_by_guard == "g-li"
    li = positions.pop("g-li")
    assert (escalation.incident.location.lat, escalation.incident.location.lon) == pytest.approx(li[:2])
    assert escalation.assignments[0].guard == brute_force_best(li[:2], positions)[0]


async def test_press_with_no_guard_on_duty_still_reaches_police(school, mosquitto, recorder, tmp_path):
    police = recorder(mosquitto, topics.police_escalations_filter())
    async with running_edge(school, mosquitto, mosquitto, tmp_path / "outbox.db"):
        with SiteSimulator(school, mosquitto) as sim:  # no positions reported: nobody can be placed
            await asyncio.to_thread(sim.press, "btn-hall", "hold")
            await wait_until(lambda: police.payloads(), what="the escalation")
    escalation = Escalation.from_json(police.payloads()[0])
    assert escalation.status == "no_guard_available" and escalation.assignments == []


async def test_escalations_queued_while_police_broker_is_down_are_delivered_on_return(school, mosquitto, tmp_path, recorder):
    with running_mosquitto(tmp_path) as police_url:
        pass  # the police broker's address is known, but nothing listens there any more
    with ExitStack() as police_back:
        async with running_edge(school, mosquitto, police_url, tmp_path / "outbox.db") as node:
            with SiteSimulator(school, mosquitto, seed=1) as sim:
                await asyncio.to_thread(sim.press, "btn-gate")
                await wait_until(lambda: node.outbox.backlog == 1, what="the escalation waiting in the uplink")
            police_back.enter_context(running_mosquitto(tmp_path, police_url.port))
            police = recorder(police_url, topics.police_escalations_filter())
            await wait_until(lambda: police.payloads(), timeout_s=15, what="delivery after the police broker returns")
    assert Escalation.from_json(police.payloads()[0]).incident.device == "btn-gate"
