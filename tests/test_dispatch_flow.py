"""The dispatch flow over real brokers: offers on wearables, answers back, police commands, man-down, simulated guards."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

from device_drivers import guardlink_wearable
from device_drivers.simulators import GuardHabits, SiteSimulator
from guardlink import topics
from guardlink.models import Escalation
from guardlink.siteconfig import SiteConfig

from conftest import GUARDLINK, REPO, running_edge, wait_until

SITE = "hohhot-no3-primary"


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def fast_ticks(config: SiteConfig) -> SiteConfig:
    return config.model_copy(update={"supervision": config.supervision.model_copy(update={"check_every_s": 0.02})})


def revisions(recorder) -> list[Escalation]:
    return [Escalation.from_json(p) for p in recorder.payloads()]


def offers_to(recorder, guard: str) -> list[dict]:
    return [json.loads(p) for t, p in recorder.messages if t == topics.guard_offer(SITE, guard)]


async def reply(sim: SiteSimulator, guard: str, answer: str, escalation: str | None) -> None:
    doc = {"answer": answer} | ({"escalation": escalation} if escalation else {})
    await asyncio.to_thread(sim.publish_raw, topics.guard_reply(SITE, guard), json.dumps(doc).encode())


async def test_decline_timeout_accept_arrive_resolve_each_reach_the_police(school, mosquitto, recorder, tmp_path):
    clock = FakeClock()
    police = recorder(mosquitto, topics.police_escalations_filter())
    offers = recorder(mosquitto, topics.guard_offer(SITE, "+"))
    async with running_edge(fast_ticks(school), mosquitto, mosquitto, tmp_path / "outbox.db", clock=clock) as node:
        with SiteSimulator(school, mosquitto, seed=4) as sim:
            await asyncio.to_thread(sim.report_positions)
            await wait_until(lambda: all(s.point for s in node.board.guards.values()), what="positions")
            await asyncio.to_thread(sim.press, "btn-gate")
            await wait_until(lambda: len(offers.messages) == 1, what="the first offer")
            first_guard = offers.messages[0][0].split("/")[-2]
            eid = json.loads(offers.messages[0][1])["escalation"]
            await reply(sim, first_guard, "decline", eid)
            await wait_until(lambda: len(offers.messages) == 2, what="the offer passed on after a decline")
            second_guard = offers.messages[1][0].split("/")[-2]
            clock.now += 31  # the second guard does not answer within the offer timeout
            await wait_until(lambda: len(offers.messages) == 3, what="the offer passed on after a timeout")
            third_guard = offers.messages[2][0].split("/")[-2]
            await reply(sim, third_guard, "accept", eid)
            await reply(sim, third_guard, "on_scene", eid)
            await reply(sim, third_guard, "resolved", eid)
            await wait_until(lambda: len(police.payloads()) >= 6, what="six revisions")
    shown = revisions(police)
    assert [e.revision for e in shown] == [1, 2, 3, 4, 5, 6] and {e.id for e in shown} == {eid}
    assert [e.status.value for e in shown] == ["dispatched", "dispatched", "dispatched", "assigned", "on_scene", "resolved"]
    final = {a.guard: a.state.value for a in shown[-1].assignments}
    assert final == {first_guard: "declined", second_guard: "timed_out", third_guard: "done"}
    assert len({first_guard, second_guard, third_guard}) == 3


async def test_police_commands_acknowledge_send_more_guards_and_close(school, mosquitto, police_mosquitto, recorder, tmp_path):
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    offers = recorder(mosquitto, topics.guard_offer(SITE, "+"))
    async with running_edge(school, mosquitto, police_mosquitto, tmp_path / "outbox.db") as node:
        with SiteSimulator(school, mosquitto, seed=8) as sim:
            await asyncio.to_thread(sim.report_positions)
            await wait_until(lambda: all(s.point for s in node.board.guards.values()), what="positions")
            await asyncio.to_thread(sim.press, "btn-hall")
            await wait_until(lambda: police.payloads(), what="the escalation")
            eid = revisions(police)[0].id
            base = [*GUARDLINK, "police", "command", "--broker", str(police_mosquitto), "--district", "xincheng", "--site", SITE, eid]
            for action in (["acknowledge", "--by", "desk-7"], ["more-guards", "--count", "2"], ["close"]):
                before = len(police.payloads())
                done = await asyncio.to_thread(subprocess.run, [*base, *action], capture_output=True, text=True, timeout=30, cwd=REPO)
                assert done.returncode == 0, done.stderr
                await wait_until(lambda n=before: len(police.payloads()) > n, what=f"{action[0]} applied")
    shown = revisions(police)
    assert shown[1].acknowledged_by == "desk-7"
    assert sum(a.state.value == "offered" for a in shown[2].assignments) == 3
    assert shown[3].status.value == "closed" and {a.state.value for a in shown[3].assignments} == {"withdrawn"}
    withdrawn = [json.loads(p) for _, p in offers.messages if json.loads(p)["state"] == "withdrawn"]
    assert len(withdrawn) == 3


async def test_a_guard_who_falls_and_does_not_cancel_raises_man_down(school, mosquitto, recorder, tmp_path):
    clock = FakeClock()
    config = fast_ticks(school)
    police = recorder(mosquitto, topics.police_escalations_filter())
    alerts = recorder(mosquitto, topics.guard_alert(SITE, "+"))
    uplink = topics.native_device_uplink(SITE, "wear-zhang")

    async def summary(seq: int, **kw) -> None:
        await asyncio.to_thread(sim.publish_raw, uplink, guardlink_wearable.motion_payload(seq, **kw))

    async with running_edge(config, mosquitto, mosquitto, tmp_path / "outbox.db", clock=clock) as node:
        with SiteSimulator(config, mosquitto, seed=1) as sim:
            await asyncio.to_thread(sim.report_positions)
            await wait_until(lambda: all(s.point for s in node.board.guards.values()), what="positions")
            await summary(100, min_g=0.1, max_g=1.0, tilt_deg=30, still=False)
            clock.now += 0.5
            await summary(101, min_g=0.9, max_g=3.5, tilt_deg=85, still=False)
            for seq in range(102, 113):
                clock.now += 1
                await summary(seq, min_g=0.98, max_g=1.02, tilt_deg=85, still=True)
            await wait_until(lambda: alerts.payloads(), what="the pre-alarm on the fallen guard's wearable")
            assert alerts.messages[0][0] == topics.guard_alert(SITE, "g-zhang")
            assert police.payloads() == [], "nothing goes to the police during the pre-alarm"
            clock.now += 15
            await wait_until(lambda: police.payloads(), what="the man-down escalation")
    [escalation] = revisions(police)
    assert escalation.incident.kind.value == "man_down" and escalation.incident.raised_by_guard == "g-zhang"
    assert escalation.incident.severity.value == "critical"
    assert [a.guard for a in escalation.assignments] and "g-zhang" not in [a.guard for a in escalation.assignments]


async def test_simulated_guards_carry_an_incident_to_its_end(school, mosquitto, recorder, tmp_path):
    police = recorder(mosquitto, topics.police_escalations_filter())
    habits = GuardHabits(accept=1.0, decline=0.0, react_s=(0.05, 0.1), walk_speed_mps=400, false_alarm=0.0, resolve_after_s=(0.1, 0.2), falls_every_s=None)
    async with running_edge(school, mosquitto, mosquitto, tmp_path / "outbox.db"):
        with SiteSimulator(school, mosquitto, seed=6, habits=habits) as sim:
            run = asyncio.create_task(asyncio.to_thread(sim.run, 6.0, press_every_s=30, positions_every_s=0.2))
            await wait_until(lambda: any(e.status.value == "resolved" for e in revisions(police)), timeout_s=15, what="a resolved incident")
            await run
    statuses = [e.status.value for e in revisions(police)]
    assert statuses[:4] == ["dispatched", "assigned", "on_scene", "resolved"]


async def test_an_edge_restart_keeps_open_offers_going(school, mosquitto, recorder, tmp_path):
    police = recorder(mosquitto, topics.police_escalations_filter())
    offers = recorder(mosquitto, topics.guard_offer(SITE, "+"))
    with SiteSimulator(school, mosquitto, seed=9) as sim:
        async with running_edge(school, mosquitto, mosquitto, tmp_path / "outbox.db") as node:
            await asyncio.to_thread(sim.report_positions)
            await wait_until(lambda: all(s.point for s in node.board.guards.values()), what="positions")
            await asyncio.to_thread(sim.press, "btn-yard")
            await wait_until(lambda: police.payloads() and offers.messages, what="the offer")
        # The edge stopped with the offer open; a new edge on the same outbox takes it back.
        guard = offers.messages[0][0].split("/")[-2]
        eid = revisions(police)[0].id
        async with running_edge(school, mosquitto, mosquitto, tmp_path / "outbox.db") as node:
            assert node.board.guards[guard].state.value == "offered"
            await reply(sim, guard, "accept", eid)
            await wait_until(lambda: len(police.payloads()) >= 2, what="the accepted revision")
    accepted = revisions(police)[-1]
    assert (accepted.id, accepted.revision, accepted.status.value) == (eid, 2, "assigned")
    assert {a.guard: a.state.value for a in accepted.assignments} == {guard: "assigned"}
