"""The hub's intake against a real mosquitto (and SQLite / a real PostgreSQL): stored once, acknowledged after the commit,
receipts for new and duplicate revisions, bad documents and spoofs refused and counted, site liveness, a database restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bench.hub import HUB_BROKER_SETTINGS, SimulatedSite, district, revision
from bench.servers import running_mosquitto
from guardlink import topics
from guardlink.districtconfig import DistrictConfig
from guardlink.models import GuardsReport
from guardlink.siteconfig import BrokerUrl
from hub.database import make_engine, migrate
from hub.intake import Intake
from hub.tables import ChangeRow, EscalationRow, RejectionRow, RevisionRow, SiteRow
from tests.conftest import wait_until


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerUrl]:
    """The district broker, with the acknowledgement window a hub needs."""
    with running_mosquitto(tmp_path / "broker", extra=HUB_BROKER_SETTINGS) as url:
        yield url


@pytest.fixture
def sites(broker: BrokerUrl) -> Iterator[Callable[[str], SimulatedSite]]:
    made: list[SimulatedSite] = []

    def start(site: str) -> SimulatedSite:
        made.append(SimulatedSite(broker, site))
        return made[-1]

    yield start
    for site in made:
        site.close()


@asynccontextmanager
async def running_intake(config: DistrictConfig, engine: Engine, broker: BrokerUrl, **options: object) -> AsyncIterator[Intake]:
    intake = Intake(config, engine, broker=broker, **options)
    task = asyncio.create_task(intake.run())
    try:
        await asyncio.wait_for(intake.ready.wait(), 10)
        yield intake
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def count(engine: Engine, what: object) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(what))


def stored_pairs(engine: Engine) -> list[tuple[str, int]]:
    with Session(engine) as session:
        return [tuple(row) for row in session.execute(select(RevisionRow.escalation_id, RevisionRow.revision))]


@pytest.fixture
def engine(hub_engine: Engine) -> Engine:
    return hub_engine


async def test_revisions_are_stored_once_and_receipted_even_when_sent_again(broker, sites, engine) -> None:
    config = district(["s1", "s2"])
    s1, s2 = sites("s1"), sites("s2")
    async with running_intake(config, engine, broker) as intake:
        docs = [revision("s1", f"e1-{n}", 1, n + 1) for n in range(50)] + [revision("s1", "e1-0", 2, 51)]
        for doc in docs:
            s1.publish(doc)
        s2.publish(revision("s2", "e2-0", 1, 1))
        await wait_until(lambda: len(s1.receipted()) == 51 and len(s2.receipted()) == 1, what="receipts for every revision")
        s1.publish(docs[3])  # the edge lost the receipt and resends: stored already, receipted again
        await wait_until(lambda: intake.duplicates == 1, what="the resent revision")
        await wait_until(lambda: sum((docs[3].id, 1) in {(r.id, r.revision) for r in rc.received} for rc in s1.receipts) == 2, what="a second receipt")
    assert count(engine, RevisionRow) == 52
    with Session(engine) as session:
        latest = session.get(EscalationRow, "e1-0")
        assert (latest.revision, latest.community) == (2, "c1")
        assert session.scalar(select(func.count()).select_from(ChangeRow).where(ChangeRow.kind == "escalation")) == 52


async def test_malformed_documents_and_spoofs_are_refused_counted_and_do_not_block_other_sites(broker, sites, engine) -> None:
    config = district(["s1", "s2"])
    s1, s2 = sites("s1"), sites("s2")
    async with running_intake(config, engine, broker) as intake:
        for n in range(20):
            s1.publish(b"{not json" if n % 2 else b'{"schema": "guardlink.escalation/1", "id": 5}')
        s1.publish(revision("s1", "spoofed", 1, 1, about="s2"))  # s1 writes on its own topic about s2
        s1.publish(revision("s1", "spoofed-2", 1, 2), topic=topics.police_escalations("bench", "s2"))  # on s2's topic, saying s1
        s1.publish(GuardsReport(site="s2", guards=[], at=revision("s1", "x", 1, 1).issued_at).model_dump_json(by_alias=True).encode(),
                   topic=topics.police_guards("bench", "s1"))
        s1.status({"state": "sleeping"})
        s2.publish(revision("s2", "genuine", 1, 1))
        await wait_until(lambda: s2.receipted() == {("genuine", 1)}, what="the other site's revision")
        await wait_until(lambda: intake.rejected == 24, what="every bad document")
        assert s1.receipted() == set()
    with Session(engine) as session:
        counts = {(r.site, r.reason): r.count for r in session.scalars(select(RejectionRow))}
    assert counts == {("s1", "invalid_escalation"): 20, ("s1", "wrong_site"): 2, ("s2", "wrong_site"): 1, ("s1", "invalid_status"): 1}
    assert stored_pairs(engine) == [("genuine", 1)]


async def test_a_site_goes_offline_on_its_last_will_or_missed_heartbeats_and_comes_back_with_its_backlog(broker, sites, engine) -> None:
    now = [time.time()]
    config = district(["s1"], heartbeat_misses=3)
    s1 = sites("s1")
    async with running_intake(config, engine, broker, clock=lambda: now[0], check_every_s=0.01) as intake:
        def site() -> SiteRow | None:
            with Session(engine) as session:
                return session.get(SiteRow, "s1")

        s1.status({"state": "online", "every_s": 10, "backlog": 0, "unreceipted": 0, "oldest_unreceipted_s": None})
        await wait_until(lambda: site() is not None and site().online, what="the site online")
        now[0] += 31  # three heartbeats missed
        await wait_until(lambda: not site().online, what="the site offline after missed heartbeats")
        assert "no heartbeat" in site().detail
        s1.status({"state": "online", "every_s": 10, "backlog": 12, "unreceipted": 12, "oldest_unreceipted_s": 31.0})
        await wait_until(lambda: site().online, what="the site back")
        assert (site().backlog, site().unreceipted, site().oldest_unreceipted_s) == (12, 12, 31.0)
        assert "12 escalations were waiting" in site().detail
        s1.status({"state": "offline", "every_s": 10})  # its Last Will
        await wait_until(lambda: not site().online, what="the site offline on its Last Will")
        assert intake.rejected == 0
    with Session(engine) as session:
        liveness = [c.payload["online"] for c in session.scalars(select(ChangeRow).where(ChangeRow.kind == "site").order_by(ChangeRow.id))]
    assert liveness == [True, False, True, False]


async def test_nothing_is_lost_when_postgresql_restarts_mid_stream(broker, sites, postgres) -> None:
    engine = make_engine(postgres.url)
    migrate(engine)
    config = district(["s1", "s2", "s3"])
    simulated = [sites(f"s{n}") for n in (1, 2, 3)]
    try:
        async with running_intake(config, engine, broker) as intake:
            async def publish(start: int, stop: int) -> None:
                for n in range(start, stop):
                    simulated[n % 3].publish(revision(f"s{n % 3 + 1}", f"e{n // 3}-s{n % 3 + 1}", 1, n // 3 + 1))
                    if n % 20 == 0:
                        await asyncio.sleep(0.005)  # a steady stream, not one burst

            await publish(0, 150)
            await wait_until(lambda: intake.stored > 0, what="the first commits")
            await asyncio.to_thread(postgres.stop, "immediate")  # a crash: whatever was not committed is gone
            await publish(150, 300)
            await wait_until(lambda: intake._writer.retries > 0, what="a commit failing while the database is down")
            await asyncio.to_thread(postgres.start)
            await wait_until(lambda: intake.stored == 300, timeout_s=30, what="every revision after the restart")
            await wait_until(lambda: sum(len(s.receipted()) for s in simulated) == 300, what="every receipt")
        pairs = stored_pairs(engine)
        assert len(pairs) == len(set(pairs)) == 300
    finally:
        engine.dispose()


async def test_a_defect_in_reading_one_message_is_counted_and_the_intake_goes_on(broker, sites, engine) -> None:
    config = district(["s1", "s2"])
    s1, s2 = sites("s1"), sites("s2")
    async with running_intake(config, engine, broker) as intake:
        read = intake._item

        def defective(message):
            if "/s1/" in message.topic.value:
                raise KeyError("seq")
            return read(message)

        intake._item = defective
        s1.publish(revision("s1", "hit", 1, 1))
        s2.publish(revision("s2", "fine", 1, 1))
        await wait_until(lambda: s2.receipted() == {("fine", 1)}, what="the other site's revision")
        await wait_until(lambda: intake.rejected == 1, what="the failed message counted")
    with Session(engine) as session:
        assert {(r.site, r.reason): r.count for r in session.scalars(select(RejectionRow))} == {("s1", "processing_error"): 1}
