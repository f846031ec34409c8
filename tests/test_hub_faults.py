"""Fault tests of the running hub (`guardlink hub` processes) on a real mosquitto: kill -9 mid-stream, a long outage."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bench.hub import HUB_BROKER_SETTINGS, SimulatedSite, district_yaml, revision
from bench.hub import start_hub as bench_start_hub
from bench.servers import running_mosquitto
from guardlink.siteconfig import BrokerUrl
from hub.database import make_engine
from hub.tables import RevisionRow
from tests.conftest import wait_until

SITES = ("s1", "s2", "s3")
REVISIONS = 1000
# The issue asks for a 60 s outage; the suite plays 5 s by default (the broker's queue and the hub's restart are the same
# either way). GUARDLINK_HUB_OUTAGE_S=60 runs the full minute.
OUTAGE_S = float(os.environ.get("GUARDLINK_HUB_OUTAGE_S", "5"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerUrl]:
    with running_mosquitto(tmp_path / "broker", extra=HUB_BROKER_SETTINGS) as url:
        yield url


@pytest.fixture
def district_file(tmp_path: Path, broker: BrokerUrl) -> Path:
    path = tmp_path / "district.yaml"
    path.write_text(district_yaml(broker, f"sqlite:///{tmp_path / 'hub.db'}", list(SITES)))
    return path


@pytest.fixture
def simulated(broker: BrokerUrl) -> Iterator[list[SimulatedSite]]:
    sites = [SimulatedSite(broker, site) for site in SITES]
    yield sites
    for site in sites:
        site.close()


def start_hub(spawn: Callable[..., subprocess.Popen], district_file: Path, log: Path) -> subprocess.Popen:
    """A `guardlink hub` process (stopped after the test), once its persistent session is subscribed."""
    return bench_start_hub(district_file, log, lambda args, log: spawn(*args, stderr_path=log))


def stored(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(RevisionRow)) or 0


def documents() -> list[tuple[int, object]]:
    """1000 revisions from 3 sites: each escalation goes through 4 revisions."""
    docs = []
    for n in range(REVISIONS):
        site, escalation = n % 3, n // 12
        docs.append((site, revision(SITES[site], f"e{escalation}-{SITES[site]}", (n // 3) % 4 + 1, n // 3 + 1)))
    return docs


def publish_steadily(sites: list[SimulatedSite], over_s: float, stop_early: threading.Event | None = None) -> threading.Thread:
    """Publish the 1000 revisions spread over `over_s` seconds, from a thread."""

    def run() -> None:
        docs = documents()
        start = time.monotonic()
        for i, (site, doc) in enumerate(docs):
            sites[site].publish(doc)
            pause = start + over_s * (i + 1) / len(docs) - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the publisher, not waiting on a condition
        for site in sites:
            site.wait_published()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def expected_pairs() -> set[tuple[str, int]]:
    return {(doc.id, doc.revision) for _, doc in documents()}


async def test_hub_killed_mid_stream_stores_every_revision_exactly_once_after_restart(spawn, district_file, simulated, tmp_path) -> None:
    log = tmp_path / "hub.log"
    hub = start_hub(spawn, district_file, log)
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        publisher = publish_steadily(simulated, over_s=3.0)
        await wait_until(lambda: stored(engine) >= 200, timeout_s=30, what="the hub storing the first revisions")
        hub.send_signal(signal.SIGKILL)
        hub.wait()
        at_kill = stored(engine)
        assert at_kill < REVISIONS, "the hub was to be killed mid-stream"
        start_hub(spawn, district_file, log)
        await asyncio.to_thread(publisher.join)
        await wait_until(lambda: stored(engine) == REVISIONS, timeout_s=60, what="every revision after the restart")
        with Session(engine) as session:
            pairs = [tuple(row) for row in session.execute(select(RevisionRow.escalation_id, RevisionRow.revision))]
        assert len(pairs) == len(set(pairs)) == REVISIONS and set(pairs) == expected_pairs()
        # A receipt the killed hub had not sent yet is lost; the edge resends what stays unreceipted, the hub receipts it.
        for index, site in enumerate(simulated):
            for doc in [doc for s, doc in documents() if s == index and (doc.id, doc.revision) not in site.receipted()]:
                site.publish(doc)
        await wait_until(lambda: set().union(*(s.receipted() for s in simulated)) == expected_pairs(), timeout_s=30, what="a receipt for every revision")
        assert stored(engine) == REVISIONS
    finally:
        engine.dispose()


async def test_everything_sent_while_the_hub_is_down_arrives_after_and_is_receipted(spawn, district_file, simulated, tmp_path) -> None:
    log = tmp_path / "hub.log"
    hub = start_hub(spawn, district_file, log)  # the broker now keeps the hub's session
    hub.send_signal(signal.SIGTERM)
    assert hub.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    down_at = time.monotonic()
    publisher = publish_steadily(simulated, over_s=OUTAGE_S)
    await asyncio.to_thread(publisher.join)
    assert time.monotonic() - down_at >= OUTAGE_S
    assert all(site.receipted() == set() for site in simulated)
    start_hub(spawn, district_file, log)
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        await wait_until(lambda: stored(engine) == REVISIONS, timeout_s=60, what="every revision sent during the outage")
        # every edge's unreceipted count returns to 0: each site has a receipt for each revision it sent
        for index, site in enumerate(simulated):
            mine = {(doc.id, doc.revision) for s, doc in documents() if s == index}
            await wait_until(lambda site=site, mine=mine: site.receipted() == mine, timeout_s=30, what=f"receipts at {site.site}")
    finally:
        engine.dispose()


async def test_a_district_service_that_fails_is_run_again_and_the_failure_logged(caplog: pytest.LogCaptureFixture) -> None:
    from hub.service import keep_running

    calls = []

    async def flaky() -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("the database is restarting")

    await asyncio.wait_for(keep_running("events", flaky), 10)
    assert len(calls) == 3 and calls[2] - calls[1] >= 1.9, "run again after 1 s, then after 2 s"
    assert caplog.text.count("event=service_failed service=events") == 2 and "the database is restarting" in caplog.text
