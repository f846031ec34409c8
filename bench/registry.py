"""`guardlink bench registry`: the district register's import rate and the time from a register change to the roster applied.

- import: 50 companies and 10,000 guards (a generated CSV, as a security company would send) read, checked row by row,
  hashed and committed in one transaction by `guardlink registry import`'s code, into SQLite and into PostgreSQL
  (fresh databases), as rows per second.
- roster: a hub's roster publisher (PostgreSQL, the 10,000 guards imported; 40 of them posted at the bench site) and a
  real edge on a real mosquitto. A guard's vetting is ended through the register's edit (as the API does it), again
  and again; each time, from that commit to the edge reporting the new roster applied (its `roster/applied` report).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

COMPANY_HEADER = ["licence", "name", "contact"]
GUARD_HEADER = [
    "guard", "name", "id_number", "company_licence", "phone", "roles", "status", "vetting", "vetted_by", "vetted_on", "vetting_until",
    "pre_job_training", "assessment_score", "site", "posted_from", "wearable", "training_on", "training_hours",
]
ROLES = ["patrol", "first_aid", "gate", "mediator", "information_collector", "grid_worker", "security_propagandist"]
GOAL_ROWS_PER_S = 5000.0
GOAL_APPLY_P99_MS = 500.0
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(i: int, region: str = "150102") -> str:
    """A valid, unique (per `i` below 15,000,000) resident ID number: region, birth day, sequence, check digit."""
    born = date(1965, 1, 1) + timedelta(days=i % 15000)
    body = f"{region}{born:%Y%m%d}{100 + i // 15000:03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11]


def companies(count: int) -> list[dict[str, str]]:
    return [{"licence": f"LIC-{c:03d}", "name": f"Security Company {c}", "contact": f"+86 471 555 {c:04d}"} for c in range(count)]


def guards(count: int, companies_count: int, sites: list[str], today: date, *, seed: int = 1) -> list[dict[str, str]]:
    """`count` guards spread over the companies and sites, almost all eligible today (vetting valid a year, 20 h training)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        rows.append({
            "guard": f"g-{i:05d}", "name": f"Guard {i}", "id_number": id_number(i), "company_licence": f"LIC-{i % companies_count:03d}",
            "phone": f"+86 138 {i:08d}", "roles": ";".join(rng.sample(ROLES, 2)), "status": "active", "vetting": "passed",
            "vetted_by": "Officer Liu", "vetted_on": (today - timedelta(days=30)).isoformat(), "vetting_until": (today + timedelta(days=365)).isoformat(),
            "pre_job_training": "yes", "assessment_score": str(60 + i % 40), "site": sites[i % len(sites)] if sites else "",
            "posted_from": (today - timedelta(days=10)).isoformat(), "wearable": "", "training_on": (today - timedelta(days=20)).isoformat(),
            "training_hours": "20",
        })
    return rows


def write_csv(path: Path, header: list[str], rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_xlsx(path: Path, company_rows: list[dict[str, str]], guard_rows: list[dict[str, str]]) -> Path:
    """A workbook as companies send it: a companies sheet and a guards sheet."""
    from hub.register_import import write_xlsx as write

    write(path, {"companies": (COMPANY_HEADER, company_rows), "guards": (GUARD_HEADER, guard_rows)})
    return path


def _import_rate(url: str, workdir: Path, sites: list[str]) -> tuple[float, Any]:
    """Rows of guards a second for a fresh import of 50 companies and 10,000 guards; the engine, left open."""
    from hub.database import make_engine, migrate
    from hub.register import IdHasher
    from hub.register_import import import_files

    today = date.today()
    company_file = write_csv(workdir / "companies.csv", COMPANY_HEADER, companies(50))
    guard_file = write_csv(workdir / "guards.csv", GUARD_HEADER, guards(10_000, 50, sites, today))
    engine = make_engine(url)
    migrate(engine)
    started = time.perf_counter()
    plan = import_files(engine, [company_file, guard_file], IdHasher(b"bench-only-id-key-0123456789"), sites)
    elapsed = time.perf_counter() - started
    if plan.problems or len(plan.guards_new) != 10_000:
        raise RuntimeError(f"the bench import did not go through: {plan.problems[:3]}")
    return 10_000 / elapsed, engine


async def _roster_latencies(engine: Any, school: Any, sites: list[str], workdir: Path, rounds: int) -> list[float]:
    """Register change committed -> the edge reports the new roster applied, `rounds` times (ms)."""
    import asyncio
    from datetime import datetime, timezone

    import paho.mqtt.client as mqtt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from sqlalchemy.orm import Session

    from bench.hub import district
    from bench.servers import running_mosquitto
    from edge.node import EdgeNode
    from guardlink.provisioning import public_key_text
    from hub.register import edit_guard
    from hub.register_publisher import RosterPublisher

    key = Ed25519PrivateKey.generate()
    site = sites[0]
    config = school.model_copy(update={
        "site": school.site.model_copy(update={"id": site, "district": "bench"}),
        "police": school.police.model_copy(update={"roster_key": public_key_text(key.public_key())}),
    })
    hub_config = district(sites)  # the district file's default debounce and cycle
    with running_mosquitto(workdir / "mosquitto") as broker:
        publisher_client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        publisher_client.connect(broker.host, broker.port)
        publisher_client.loop_start()

        async def publish(topic: str, payload: bytes) -> None:
            info = publisher_client.publish(topic, payload, qos=1, retain=True)
            await asyncio.to_thread(info.wait_for_publish, 10)

        node = EdgeNode(config, site_broker=broker, police_broker=broker, outbox_path=workdir / "edge" / "outbox.db")
        applied: dict[int, float] = {}
        handle = node.roster.handle

        async def timed(payload: bytes) -> bytes:
            report = await handle(payload)
            applied.setdefault(node.roster.version, time.perf_counter())
            return report

        node.uplink.on_roster = timed
        publisher = RosterPublisher(hub_config, engine, key, publish)
        tasks = [asyncio.create_task(node.run()), asyncio.create_task(publisher.run())]
        latencies = []
        try:
            deadline = time.monotonic() + 30
            while node.roster.version < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the edge never applied its first roster")
                await asyncio.sleep(0.01)
            while publisher.published < len(sites):  # the hub's start-up publication of every site's roster is not a change
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the hub published {publisher.published} of {len(sites)} rosters at start")
                await asyncio.sleep(0.01)
            guard = next(g.id for g in node.roster.applied.guards)
            for n in range(rounds):
                version = node.roster.version
                until = date.today() + timedelta(days=100 + n)  # each change moves the guard's vetting end: a new roster

                def change(until: date = until) -> float:
                    with Session(engine) as session, session.begin():
                        edit_guard(session, guard, {"vetting_until": until}, sites=sites, actor="bench", address=None, now=datetime.now(timezone.utc))
                    return time.perf_counter()

                committed = await asyncio.to_thread(change)
                deadline = time.monotonic() + 10
                while version + 1 not in applied:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"round {n}: roster version {version + 1} never applied")
                    await asyncio.sleep(0.002)
                latencies.append((applied[version + 1] - committed) * 1000)
                await asyncio.sleep(0.05)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            publisher_client.disconnect()
            publisher_client.loop_stop()
    return latencies


def run(rounds: int = 30) -> dict[str, Any]:
    import asyncio

    from bench.servers import running_postgres
    from device_drivers.registry import DRIVERS
    from guardlink.siteconfig import load_site

    school = load_site(Path(__file__).resolve().parents[1] / "firmware_configs" / "sites" / "school.yaml", DRIVERS.keys())
    sites = [f"site-{i:03d}" for i in range(250)]  # 40 guards at each site
    with tempfile.TemporaryDirectory(prefix="guardlink-bench-registry-") as tmp:
        workdir = Path(tmp)
        sqlite_rate, sqlite_engine = _import_rate(f"sqlite:///{workdir / 'hub.db'}", workdir, sites)
        sqlite_engine.dispose()
        with running_postgres(workdir / "postgres") as postgres:
            postgres_rate, engine = _import_rate(postgres.url, workdir, sites)
            try:
                latencies = asyncio.run(_roster_latencies(engine, school, sites, workdir, rounds))
            finally:
                engine.dispose()
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    result = {
        "rows": 10_000,
        "companies": 50,
        "import_rows_per_s_sqlite": round(sqlite_rate),
        "import_rows_per_s_postgres": round(postgres_rate),
        "import_rows_per_s": round(postgres_rate),
        "roster_rounds": len(latencies),
        "roster_register_guards": 10_000,
        "roster_apply_p50_ms": round(statistics.median(latencies), 1),
        "roster_apply_p99_ms": round(p99, 1),
        "goal_rows_per_s": GOAL_ROWS_PER_S,
        "goal_apply_p99_ms": GOAL_APPLY_P99_MS,
    }
    result["goal_met"] = result["import_rows_per_s_postgres"] >= GOAL_ROWS_PER_S and result["roster_apply_p99_ms"] <= GOAL_APPLY_P99_MS
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of `guardlink bench registry`."""
    parser = argparse.ArgumentParser(prog="guardlink bench registry", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--rounds", type=int, default=30, help="register changes timed to the edge (default 30)")
    args = parser.parse_args(argv)
    result = run(args.rounds)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"import of {result['rows']} guards from {result['companies']} companies (CSV, checked, one transaction)")
    print(f"{'  into SQLite':<44}{result['import_rows_per_s_sqlite']:>10} rows/s")
    print(f"{'  into PostgreSQL':<44}{result['import_rows_per_s_postgres']:>10} rows/s   goal >= {GOAL_ROWS_PER_S:.0f}")
    print(f"register change -> roster applied at a real edge ({result['roster_rounds']} changes, {result['roster_register_guards']} guards registered, PostgreSQL):")
    print(f"{'  p50':<44}{result['roster_apply_p50_ms']:>10} ms")
    print(f"{'  p99':<44}{result['roster_apply_p99_ms']:>10} ms   goal <= {GOAL_APPLY_P99_MS:.0f}")
    print(f"goals {'met' if result['goal_met'] else 'NOT met'}")
    return 0
