"""Fault tests of the district command centre with real edges.

Three sites, the example school under three site ids, each with its own site broker and a real edge node; a real
mosquitto is the district broker; the hub is a `guardlink hub` process on SQLite or a real PostgreSQL. Wearables press
SOS with a rising seq; every press becomes an escalation. Whatever happens to the hub or its database, every revision the
edges stored in their outboxes ends up stored by the hub exactly once, and each edge's unreceipted count returns to 0.

`GUARDLINK_HUB_OUTAGE_S=60` runs the hub outage for the full minute the issue promises (the suite plays 5 s: the
broker's queue, the edges' resends and the hub's restart are the same either way).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bench.hub import HUB_BROKER_SETTINGS, district_yaml
from bench.hub import start_hub as bench_start_hub
from bench.servers import Postgres, running_mosquitto
from device_drivers.registry import DRIVERS
from device_drivers.simulators import SiteSimulator
from edge.node import EdgeNode
from guardlink.siteconfig import BrokerUrl, SiteConfig, load_site
from hub.database import make_engine
from hub.tables import ChangeKind, ChangeRow, EscalationRow, RevisionRow

from conftest import REPO, SCHOOL, running_edge

DISTRICT = "edges"
SITES = ("school-north", "school-east", "school-west")
WEARABLES = ("wear-li", "wear-zhang", "wear-wang")
ESCALATIONS = 1000
RATE_PER_S = 100.0  # presses per second, over the three sites
OUTAGE_S = float(os.environ.get("GUARDLINK_HUB_OUTAGE_S", "5"))
OUTAGE_ESCALATIONS = 300  # pressed while the hub is down


def site_config(tmp_path: Path, site: str) -> SiteConfig:
    """The example school as `site` of the test district: receipts due after 1 s (a resend comes quickly), and offers to
    guards that stay open for the whole test (no re-offer revisions appear while the test counts)."""
    text = SCHOOL.read_text().replace("id: hohhot-no3-primary", f"id: {site}").replace("district: xincheng", f"district: {DISTRICT}")
    text = text.replace("police:\n", "police:\n  receipt_timeout_s: 1.0\n", 1).replace("offer_timeout_s: 30 ", "offer_timeout_s: 3600 ", 1)
    path = tmp_path / f"{site}.yaml"
    path.write_text(text)
    config = load_site(path, DRIVERS.keys(), templates_dir=REPO / "firmware_configs" / "templates")
    assert (config.site.id, config.police.receipt_timeout_s, config.dispatch.offer_timeout_s) == (site, 1.0, 3600)
    return config


@dataclass
class District:
    """The district broker, the hub's database, the district file, and each site's configuration and broker."""

    broker: BrokerUrl
    database: str
    file: Path
    sites: list[SiteConfig]
    site_brokers: list[BrokerUrl]


@pytest.fixture
def district(tmp_path: Path, database_url: str) -> Iterator[District]:
    """The hub's database: SQLite, then a real PostgreSQL (conftest's `database_url`)."""
    with ExitStack() as servers:
        broker = servers.enter_context(running_mosquitto(tmp_path / "district", extra=HUB_BROKER_SETTINGS))
        site_brokers = [servers.enter_context(running_mosquitto(tmp_path / site)) for site in SITES]
        path = tmp_path / "district.yaml"
        path.write_text(district_yaml(broker, database_url, list(SITES), DISTRICT))
        yield District(broker, database_url, path, [site_config(tmp_path, site) for site in SITES], site_brokers)


@asynccontextmanager
async def running_edges(district: District, tmp_path: Path) -> AsyncIterator[list[EdgeNode]]:
    """An edge node per site, in this test's loop, with its outbox in tmp_path."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(running_edge(config, broker, district.broker, outbox(tmp_path, config.site.id)))
            for config, broker in zip(district.sites, district.site_brokers, strict=True)
        ]


def outbox(tmp_path: Path, site: str) -> Path:
    return tmp_path / f"{site}.outbox.db"


def start_hub(spawn: Callable[..., subprocess.Popen], district: District, log: Path) -> subprocess.Popen:
    """A `guardlink hub` process (stopped after the test), once its persistent session is subscribed."""
    return bench_start_hub(district.file, log, lambda args, log: spawn(*args, stderr_path=log))


def press(district: District, count: int, rate_per_s: float) -> threading.Thread:
    """`count` SOS presses spread over the sites' wearables at `rate_per_s`, from a thread; each wearable's seq rises."""

    def run() -> None:
        with ExitStack() as stack:
            sims = [stack.enter_context(SiteSimulator(config, broker)) for config, broker in zip(district.sites, district.site_brokers, strict=True)]
            start = time.monotonic()
            for n in range(count):
                sims[n % len(sims)].press(WEARABLES[n // len(sims) % len(WEARABLES)])
                pause = start + (n + 1) / rate_per_s - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # pacing the presses, not waiting on a condition
            for sim in sims:
                sim.wait_published(timeout_s=60)

    thread = threading.Thread(target=run, name="presses")
    thread.start()
    return thread


def edge_revisions(tmp_path: Path) -> set[tuple[str, int]]:
    """Every (id, revision) the edges stored in their outboxes."""
    found: set[tuple[str, int]] = set()
    for site in SITES:
        with sqlite3.connect(f"file:{outbox(tmp_path, site)}?mode=ro", uri=True, timeout=10) as db:
            found.update((id_, revision) for id_, revision in db.execute("SELECT id, revision FROM outbox"))
    return found


def sos_escalations(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(EscalationRow).where(EscalationRow.kind == "sos")) or 0


def hub_revisions(engine: Engine) -> list[tuple[str, int]]:
    with Session(engine) as session:
        return [(id_, revision) for id_, revision in session.execute(select(RevisionRow.escalation_id, RevisionRow.revision))]


async def eventually(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` (off the loop: it reads databases) until true; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.2)


async def all_stored_once_and_receipted(engine: Engine, edges: list[EdgeNode], tmp_path: Path, escalations: int = ESCALATIONS) -> None:
    """Every press escalated, every revision of the edges stored by the hub exactly once, nothing unreceipted at any edge."""
    await eventually(lambda: sos_escalations(engine) == escalations, 90, f"the hub storing {escalations} SOS escalations")

    def settled() -> bool:
        return all(edge.outbox.unreceipted == 0 for edge in edges) and set(hub_revisions(engine)) == edge_revisions(tmp_path)

    await eventually(settled, 60, "every edge revision stored at the hub and receipted back at its edge")
    stored = hub_revisions(engine)
    assert len(stored) == len(set(stored)) == len(edge_revisions(tmp_path))
    with Session(engine) as session:  # a revision stored twice would have appended its change twice
        changes = session.scalar(select(func.count()).select_from(ChangeRow).where(ChangeRow.kind == ChangeKind.ESCALATION.value))
    assert changes == len(stored)
    assert [edge.status()["unreceipted"] for edge in edges] == [0, 0, 0]


async def through_a_fault_mid_stream(district: District, spawn, tmp_path: Path, fault: Callable[[subprocess.Popen], Awaitable[None]]) -> subprocess.Popen:
    """1000 escalations from the three edges to a hub process; `fault(hub)` strikes once a quarter of them is stored.
    Then every revision must be stored once and receipted. Returns the hub process."""
    hub = start_hub(spawn, district, tmp_path / "hub.log")
    engine = make_engine(district.database)
    try:
        async with running_edges(district, tmp_path) as edges:
            presses = press(district, ESCALATIONS, RATE_PER_S)
            await eventually(lambda: sos_escalations(engine) >= ESCALATIONS // 4, 60, "the hub storing the first escalations")
            assert sos_escalations(engine) < ESCALATIONS, "the fault was to strike mid-stream"
            await fault(hub)
            await asyncio.to_thread(presses.join)
            await all_stored_once_and_receipted(engine, edges, tmp_path)
    finally:
        engine.dispose()
    return hub


async def test_hub_killed_mid_stream_stores_every_revision_of_three_edges_once_and_receipts_all(district: District, spawn, tmp_path: Path) -> None:
    async def kill_and_restart(hub: subprocess.Popen) -> None:
        hub.send_signal(signal.SIGKILL)
        await asyncio.to_thread(hub.wait)
        start_hub(spawn, district, tmp_path / "hub.log")

    await through_a_fault_mid_stream(district, spawn, tmp_path, kill_and_restart)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_everything_the_edges_send_while_the_hub_is_down_arrives_after_and_is_receipted(district: District, spawn, tmp_path: Path) -> None:
    log = tmp_path / "hub.log"
    hub = start_hub(spawn, district, log)  # the district broker keeps the hub's session from now on
    hub.send_signal(signal.SIGTERM)
    assert hub.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    down_at = time.monotonic()
    engine = make_engine(district.database)
    try:
        async with running_edges(district, tmp_path) as edges:
            presses = press(district, OUTAGE_ESCALATIONS, OUTAGE_ESCALATIONS / max(1.0, OUTAGE_S - 1))
            await asyncio.to_thread(presses.join)
            await eventually(lambda: sum(edge.outbox.unreceipted for edge in edges) == OUTAGE_ESCALATIONS, 30, "every escalation at the broker")
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
            assert sos_escalations(engine) == 0 and all(edge.outbox.unreceipted > 0 for edge in edges)
            start_hub(spawn, district, log)
            await all_stored_once_and_receipted(engine, edges, tmp_path, OUTAGE_ESCALATIONS)
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_nothing_is_lost_when_postgresql_restarts_mid_stream(district: District, postgres: Postgres, spawn, tmp_path: Path) -> None:
    async def crash_and_restart_postgres(hub: subprocess.Popen) -> None:
        await asyncio.to_thread(postgres.stop, "immediate")  # a crash: no checkpoint, recovery at the start
        await asyncio.sleep(2.0)  # presses keep coming; the hub holds them unacknowledged
        await asyncio.to_thread(postgres.start)

    hub = await through_a_fault_mid_stream(district, spawn, tmp_path, crash_and_restart_postgres)
    assert hub.poll() is None, "the hub rode out the restart"
    assert "event=commit_retry" in (tmp_path / "hub.log").read_text(), "the hub had commits to retry while PostgreSQL was down"
