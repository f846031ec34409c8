"""`guardlink bench hub --engine nats`: hub workers on a three-node NATS JetStream cluster storing into PostgreSQL.

- Scaling: a backlog of escalation revisions waits in the cluster (published over MQTT) while the shared consumer is
  paused and the workers (`guardlink hub --broker nats://...` processes) are up; the consumer resumes and the workers
  drain it. Revisions stored per second by 1 worker, then by 2 on the next backlog, twice over: `scaling_2_workers` is the
  ratio of the medians.
  Rates are from the database's own commit times, first commit to last.
- City: `--sites` simulated sites (bench/city.py) over a few MQTT connections spread over the three nodes send their
  heartbeats, guard reports and escalations for `--seconds` to 2 workers; `lag_p99_ms` is publish -> receipt back at the
  site (the receipt leaves after the commit: an upper bound of publish -> committed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.city import CityPlan, Fleet, escalation, run_city, site_name
from bench.hub import percentile
from bench.servers import NatsCluster, running_nats_cluster, running_postgres, stop_process

DISTRICT = "bench"
GOAL_SCALING = 1.3
ROUNDS = 2  # scaling rounds; the rates reported are the medians
GOAL_SITES = 5000
GOAL_LAG_P99_MS = 1000.0


def _district_file(path: Path, database: str, sites: list[str]) -> Path:
    path.write_text(
        f"district: {{id: {DISTRICT}, name: Bench}}\ndatabase: {database}\nlisten: 127.0.0.1:0\n"
        f"communities:\n  - {{id: c1, name: One, chief: Chief, outline: [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], sites: [{', '.join(sites)}]}}\n"
    )
    return path


def start_workers(count: int, district_file: Path, cluster: NatsCluster, logs: Path) -> list[subprocess.Popen]:
    """`count` hub worker processes, returned once each has subscribed."""
    procs = []
    for n in range(count):
        log = logs / f"worker-{len(list(logs.glob('worker-*.log')))}-{n}.log"
        with log.open("w") as err:
            procs.append(subprocess.Popen([sys.executable, "-m", "cli", "hub", "--config", str(district_file), "--broker", cluster.nats_url],
                                          stdout=subprocess.DEVNULL, stderr=err))
        deadline = time.monotonic() + 60
        while "event=intake_subscribed" not in log.read_text():
            if procs[-1].poll() is not None or time.monotonic() > deadline:
                for proc in procs:
                    stop_process(proc)
                raise RuntimeError(f"a hub worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
    return procs


async def _consumer(cluster: NatsCluster, action: str) -> dict[str, int]:
    """Pause or resume the escalations consumer, or read its counts."""
    import nats

    from hub.intake_nats import STREAM, consumer_name

    connection = await nats.connect(cluster.nats_url[len("nats://"):].split(","))
    try:
        manager = connection.jetstream(timeout=10)
        name = consumer_name(DISTRICT, "escalations")
        if action == "pause":
            await manager.pause_consumer(STREAM, name, datetime(2100, 1, 1, tzinfo=timezone.utc).isoformat())
        elif action == "resume":
            await manager.resume_consumer(STREAM, name)
        info = await manager.consumer_info(STREAM, name)
        return {"pending": info.num_pending or 0, "ack_pending": info.num_ack_pending or 0}
    finally:
        await connection.close()


def _stored(database: str, tag: str) -> int:
    import psycopg

    with psycopg.connect(database) as connection:
        return connection.execute("SELECT count(*) FROM revisions WHERE escalation_id LIKE %s", (f"{tag}-%",)).fetchone()[0]


def _commit_rate(database: str, tag: str) -> float:
    """Revisions/s from the first commit to the last, by the database's commit times: the rate of the drain once running,
    without the workers' first pull after the resume (up to a second, a large share of a drain of a few seconds)."""
    import psycopg

    with psycopg.connect(database) as connection:
        first, last, after_first = connection.execute(
            "WITH r AS (SELECT committed_at FROM revisions WHERE escalation_id LIKE %s) "
            "SELECT min(committed_at), max(committed_at), count(*) FILTER (WHERE committed_at > (SELECT min(committed_at) FROM r)) FROM r",
            (f"{tag}-%",),
        ).fetchone()
    return after_first / (last - first).total_seconds()


def drain_rate(cluster: NatsCluster, database: str, district_file: Path, fleet: Fleet, workers: int, revisions: int, tag: str, logs: Path) -> float:
    """Revisions/s that `workers` workers store from a backlog of `revisions` waiting in the cluster."""
    asyncio.run(_consumer(cluster, "pause"))
    procs = start_workers(workers, district_file, cluster, logs)
    try:
        for n in range(revisions):
            site = fleet.sites[n % len(fleet.sites)]
            fleet.revision(escalation(site, DISTRICT, f"{tag}-{n // (4 * len(fleet.sites))}-{site}", (n // len(fleet.sites)) % 4 + 1, time.time()))
        deadline = time.monotonic() + 120
        while asyncio.run(_consumer(cluster, "info"))["pending"] < revisions:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the backlog of {revisions} did not reach the cluster")
            time.sleep(0.2)
        asyncio.run(_consumer(cluster, "resume"))
        deadline = time.monotonic() + 300
        while (done := _stored(database, tag)) < revisions:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{done} of {revisions} stored by {workers} worker(s): logs in {logs}")
            time.sleep(0.1)
        return _commit_rate(database, tag)
    finally:
        for proc in procs:
            stop_process(proc)


def run(revisions: int = 20_000, sites: int = 5000, seconds: float = 60.0, connections: int = 16) -> dict[str, object]:
    """Scaling on two backlogs, then the city at a steady load."""
    with tempfile.TemporaryDirectory(prefix="guardlink-bench-hub-nats-") as tmp:
        tmp_path = Path(tmp)
        logs = tmp_path / "logs"
        logs.mkdir()
        with running_nats_cluster(tmp_path / "nats") as cluster, running_postgres(tmp_path / "postgres") as postgres:
            from hub.database import migrate

            migrate(postgres.url)
            names = [site_name(n) for n in range(sites)]
            district_file = _district_file(tmp_path / "district.yaml", postgres.url, names)
            brokers = [cluster.mqtt_url(name) for name in cluster.names]
            for proc in start_workers(1, district_file, cluster, logs):  # creates the shared consumers: the backlog waits for them
                stop_process(proc)
            database = postgres.url
            backlog_sites = Fleet(brokers, names[:50], district=DISTRICT, connections=8, resend_after_s=3600)
            rounds: dict[int, list[float]] = {1: [], 2: []}
            try:
                for attempt in range(ROUNDS):  # 1, 2, 1, 2 ...: the other work on the machine drifts, alike for both
                    for workers in (1, 2):
                        print(f"scaling, round {attempt + 1}: a backlog of {revisions} revisions, {workers} worker(s)", file=sys.stderr, flush=True)
                        rounds[workers].append(drain_rate(cluster, database, district_file, backlog_sites, workers, revisions, f"r{attempt}w{workers}", logs))
            finally:
                backlog_sites.close()
            print(f"city: {sites} sites for {seconds:.0f} s over {connections} connections, 2 workers", file=sys.stderr, flush=True)
            procs = start_workers(2, district_file, cluster, logs)
            fleet = Fleet(brokers, names, district=DISTRICT, connections=connections, resend_after_s=30)
            try:
                plan = CityPlan(sites=sites, district=DISTRICT)
                started = time.monotonic()
                counts = run_city(fleet, plan, seconds)
                sent_for_s = time.monotonic() - started
                deadline = time.monotonic() + 60
                while fleet.unreceipted() and time.monotonic() < deadline:
                    time.sleep(0.1)
                load = os.getloadavg()
            finally:
                fleet.close()
                for proc in procs:
                    stop_process(proc)
    lags = [(counts.receipted_at[key] - at) * 1000 for key, at in counts.published_at.items() if key in counts.receipted_at]
    missing = len(counts.published_at) - len(lags)
    rates = {workers: statistics.median(values) for workers, values in rounds.items()}
    scaling = rates[2] / rates[1]
    lag_p99 = percentile(lags, 99) if lags else float("inf")
    return {
        "revisions": revisions,
        "stored_per_s_1": round(rates[1]),
        "stored_per_s_2": round(rates[2]),
        "scaling_2_workers": round(scaling, 3),
        "rounds_stored_per_s": {str(workers): [round(v) for v in values] for workers, values in rounds.items()},
        "sites_simulated": sites,
        "connections": connections,
        "seconds": round(sent_for_s, 1),
        "messages": counts.messages,
        "messages_per_s": round(counts.messages / sent_for_s, 1),
        "escalation_revisions": len(counts.published_at),
        "unreceipted": missing,
        "lag_p50_ms": round(statistics.median(lags), 1) if lags else None,
        "lag_p99_ms": round(lag_p99, 1),
        "load_average": [round(x, 2) for x in load],
        "goal_scaling": GOAL_SCALING,
        "goal_sites": GOAL_SITES,
        "goal_lag_p99_ms": GOAL_LAG_P99_MS,
        "goal_met": scaling >= GOAL_SCALING and sites >= GOAL_SITES and lag_p99 <= GOAL_LAG_P99_MS and missing == 0,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of `guardlink bench hub --engine nats`."""
    parser = argparse.ArgumentParser(prog="guardlink bench hub --engine nats", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--revisions", type=int, default=20_000, help="revisions in each scaling backlog (default 20000)")
    parser.add_argument("--sites", type=int, default=5000, help="simulated sites in the city run (default 5000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the city run (default 60)")
    parser.add_argument("--connections", type=int, default=16, help="MQTT connections the city's sites share (default 16)")
    args = parser.parse_args(argv)
    result = run(args.revisions, args.sites, args.seconds, args.connections)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"stored/s by 1 worker {result['stored_per_s_1']}, by 2 workers {result['stored_per_s_2']}: "
          f"scaling {result['scaling_2_workers']}  goal >= {GOAL_SCALING}")
    print(f"city: {result['sites_simulated']} sites, {result['messages_per_s']} messages/s for {result['seconds']} s, "
          f"{result['escalation_revisions']} escalation revisions ({result['unreceipted']} without receipt): "
          f"publish -> receipt p50 {result['lag_p50_ms']} ms, p99 {result['lag_p99_ms']} ms  goal <= {GOAL_LAG_P99_MS:.0f}")
    print(f"load average {result['load_average']}; goals {'met' if result['goal_met'] else 'NOT met'}")
    return 0
