"""`guardlink bench hotspots`: the day-by-day replay of 100,000 incidents over a year, end to end (CSV read included).

A synthetic self-exciting history (hub.hotspots.synth, 274 incidents a day in a 10 km square) is written as a CSV, then
read and replayed with the baseline, the kernel density and the self-exciting method in windows of 8 h.
Goal: `hotspots_eval_s` <= 60 on the shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from hub.hotspots.evaluate import replay
from hub.hotspots.forecast import grid_for
from hub.hotspots.records import read_csv, write_csv
from hub.hotspots.synth import Spec, synthesize

GOAL_S = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="guardlink bench hotspots", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--incidents", type=int, default=100_000, help="about this many over the year")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.csv"
        write_csv(path, synthesize(Spec(days=365, per_day=args.incidents / 365))[0])
        began = time.perf_counter()
        incidents, problems = read_csv(path)
        assert not problems, problems[:5]
        read_s = time.perf_counter() - began
        _, figures = replay(incidents, grid_for(incidents, None, 150.0), 8.0, began, progress=_progress)
    figures["read_s"] = round(read_s, 2)
    figures["goal_s"] = GOAL_S
    figures["goal_met"] = figures["hotspots_eval_s"] <= GOAL_S
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{len(incidents)} incidents read in {read_s:.1f} s, replayed in {figures['windows']} windows of 8 h over {figures['cells']} cells")
        for name in ("baseline", "kde", "hawkes"):
            print(f"{name:9s} predicting {figures[f'{name}_predict_s']:6.1f} s   PAI@5% {figures[f'{name}_pai_5pct']:.2f}")
        print(f"hotspots_eval_s {figures['hotspots_eval_s']:.1f}  goal <= {GOAL_S:g}  {'met' if figures['goal_met'] else 'NOT met'}")
    return 0 if figures["goal_met"] else 1


def _progress(done: int, total: int) -> None:
    if done % 30 == 0 or done == total:
        print(f"replaying: day {done}/{total}", file=sys.stderr, flush=True)
