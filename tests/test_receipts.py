"""End-to-end receipt, the edge's side: a revision counts as received by the police only when the command
centre's receipt is back; until then the edge counts it unreceipted and resends it, also after a restart.
(The command centre here is a raw paho client publishing receipts; tests/test_hub_* run the real hub.)"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

from test_containment import publish

from device_drivers.simulators import SiteSimulator
from guardlink import topics
from guardlink.models import Escalation, GuardsReport, Receipt, ReceivedRevision
from guardlink.siteconfig import SiteConfig

from conftest import running_edge, wait_until

SITE = "hohhot-no3-primary"


def impatient(school: SiteConfig) -> SiteConfig:
    """The school with receipts due after 1 s, so a resend comes quickly."""
    return school.model_copy(update={"police": school.police.model_copy(update={"receipts": True, "receipt_timeout_s": 1.0})})


def receipt_for(escalations: list[Escalation]) -> bytes:
    received = [ReceivedRevision(id=e.id, revision=e.revision) for e in escalations]
    return Receipt(received=received, at=datetime.now(timezone.utc)).model_dump_json(by_alias=True).encode()


def revisions(recorder) -> list[Escalation]:
    return [Escalation.from_json(p) for p in recorder.payloads()]


async def test_an_unreceipted_revision_is_resent_until_its_receipt_comes(school, mosquitto, police_mosquitto, recorder, tmp_path):
    config = impatient(school)
    district = config.site.district
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    async with running_edge(config, mosquitto, police_mosquitto, tmp_path / "outbox.db") as node:
        with SiteSimulator(config, mosquitto) as sim:
            await asyncio.to_thread(sim.press, "btn-gate", "single")
            await wait_until(lambda: police.payloads(), what="the escalation at the police broker")
            await wait_until(lambda: node.status()["unreceipted"] >= 1, what="it counted unreceipted")
            first = revisions(police)[0]
            await wait_until(lambda: [(e.id, e.revision) for e in revisions(police)].count((first.id, first.revision)) >= 2, what="a resend")
            assert node.status()["oldest_unreceipted_s"] >= 1.0
            receipt_topic = topics.police_receipts(district, SITE)
            await asyncio.to_thread(publish, police_mosquitto, [(receipt_topic, receipt_for(revisions(police)))])
            await wait_until(lambda: node.outbox.unreceipted == 0, what="every revision receipted")
            sent = len(police.payloads())
            await asyncio.to_thread(publish, police_mosquitto, [(receipt_topic, b'{"schema": "guardlink.receipt/1", "received": "x"}')])
            await wait_until(lambda: node.uplink.rejected_receipts == 1, what="a malformed receipt refused")
            await asyncio.sleep(2.5)  # past the resend time of anything still awaited
            assert len(police.payloads()) == sent, "nothing is resent once receipted"


async def test_unreceipted_revisions_are_remembered_across_a_restart(school, mosquitto, police_mosquitto, recorder, tmp_path):
    config = impatient(school)
    police = recorder(police_mosquitto, topics.police_escalations_filter())
    outbox = tmp_path / "outbox.db"
    async with running_edge(config, mosquitto, police_mosquitto, outbox) as node:
        with SiteSimulator(config, mosquitto) as sim:
            await asyncio.to_thread(sim.press, "btn-gate", "single")
            await wait_until(lambda: node.status()["unreceipted"] >= 1, what="an unreceipted revision")
    async with running_edge(config, mosquitto, police_mosquitto, outbox) as node:
        assert node.outbox.unreceipted >= 1
        receipt_topic = topics.police_receipts(config.site.district, SITE)
        await wait_until(lambda: node.uplink.connected, what="the uplink")
        await asyncio.to_thread(publish, police_mosquitto, [(receipt_topic, receipt_for(revisions(police)))])
        await wait_until(lambda: node.outbox.unreceipted == 0, what="the receipt after the restart")


async def test_the_edge_reports_its_guards_to_the_command_centre(school, mosquitto, police_mosquitto, recorder, tmp_path):
    guards = recorder(police_mosquitto, topics.police_guards(school.site.district, SITE))
    async with running_edge(school, mosquitto, police_mosquitto, tmp_path / "outbox.db"):
        with SiteSimulator(school, mosquitto, seed=3) as sim:
            await asyncio.to_thread(sim.report_positions)

            def placed() -> int:
                reports = [GuardsReport.model_validate_json(p) for p in guards.payloads()]
                return max((sum(g.location is not None for g in r.guards) for r in reports), default=0)

            await wait_until(placed, what="a guards report with positions")
    report = GuardsReport.model_validate(json.loads(guards.payloads()[-1]))
    assert report.site == SITE and {g.id for g in report.guards} == {g.id for g in school.guards}
