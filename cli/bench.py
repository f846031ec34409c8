"""`guardlink bench NAME [--json]`: benchmarks, each next to a baseline measured in the same run."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "latency": "panic press -> police through the durable edge, vs a bare paho relay",
    "dispatch": "nearest available guard among 100k, vs scipy cKDTree and numpy brute force",
    "ingest": "device events decoded and evaluated by the edge, vs a raw paho subscriber on the same broker",
    "vision": "camera motion core vs a reference OpenCV pipeline, whole pipeline vs decode only, two cameras vs one",
    "hub": "escalation revisions stored by the hub into SQLite and PostgreSQL, vs a raw paho subscriber; publish -> committed p99",
    "console": "panic press -> row visible on the console's board in Chromium with 2,000 guards moving, vs the hub's own stream",
    "hotspots": "hotspots: the day-by-day replay of 100,000 incidents over a year (3 methods, CSV read included), goal <= 60 s",
    "dc09": "alarms acknowledged by a SIA DC-09 receiver (TCP, AES-256) through the edge, vs a bare socket loop; press -> ACK p99",
    "registry": "10,000 guards imported into the district register (SQLite, PostgreSQL); register change -> roster applied at a real edge, p99",
    "mobilise": "10,000 guards from 200 simulated sites called up for one event through a real broker: call-ups out, headcount settled, exact",
}


def register(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench", help="benchmarks, each next to a baseline measured in the same run",
        description="Run a benchmark; options after the name go to it (e.g. `guardlink bench latency --json`).",
    )
    bench.add_argument("name", choices=BENCHMARKS, help="; ".join(f"{k}: {v}" for k, v in BENCHMARKS.items()))
    bench.add_argument("options", nargs=argparse.REMAINDER, help="--json, and the benchmark's own options (see --help after the name)")
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(f"bench.{args.name}").main(args.options)
