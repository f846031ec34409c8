"""`guardlink hotspots`: synthetic histories (`synth`), replaying a history to score the methods (`evaluate`), and the
top cells for the coming hours (`show`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardlink.districtconfig import DistrictConfig
    from hub.hotspots.evaluate import Evaluation
    from hub.hotspots.records import Incidents

DEFAULT_CELL_M = 150.0


def register(commands: argparse._SubParsersAction) -> None:
    hotspots = commands.add_parser("hotspots", help="where incidents will cluster in the coming hours: evaluate the methods, show the top cells")
    actions = hotspots.add_subparsers(dest="hotspots_command", required=True, metavar="ACTION")

    records = argparse.ArgumentParser(add_help=False)
    records.add_argument("--timezone", help="clock of times without an offset, and of hours of the day (default: the district's, else the first offset in the file, else UTC)")
    records.add_argument("--skip-bad-rows", action="store_true", help="report bad CSV rows and go on without them (default: report them and stop)")
    records.add_argument("--cell-m", type=float, default=None, help=f"cell size in metres (default: the district file's hotspots.cell_m, else {DEFAULT_CELL_M:g})")

    synth = actions.add_parser("synth", help="write a synthetic self-exciting incident history (CSV) with known hot spots and key hours")
    synth.add_argument("--out", type=Path, required=True, help="CSV file to write (time, lat, lon, category)")
    synth.add_argument("--days", type=int, default=365)
    synth.add_argument("--per-day", type=float, default=20.0, help="incidents a day on average, follow-ups included")
    synth.add_argument("--side-m", type=float, default=10_000.0, help="side of the square district, in metres")
    synth.add_argument("--start", type=date.fromisoformat, default=date(2025, 1, 1), help="first day (YYYY-MM-DD)")
    synth.add_argument("--seed", type=int, default=1)
    synth.set_defaults(run=run_synth)

    evaluate = actions.add_parser("evaluate", parents=[records], help="replay a history day by day and score each method against the naive baseline")
    evaluate.add_argument("--data", type=Path, required=True, help="incident records CSV: time, lat, lon, category")
    evaluate.add_argument("--district", type=Path, help="district file (its time zone and cell size)")
    evaluate.add_argument("--hours", type=float, default=8.0, help="window length; the day is cut into windows of this many hours (default 8)")
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.set_defaults(run=run_evaluate)

    show = actions.add_parser("show", parents=[records], help="the top cells for the next hours, from the hub's incidents or a CSV")
    show.add_argument("--district", type=Path, help="district file (its database, time zone, cell size and communities)")
    show.add_argument("--database", help="database URL (default: the district file's)")
    show.add_argument("--data", type=Path, help="incident records CSV instead of the hub's database")
    show.add_argument("--hours", type=float, default=4.0, help="how far ahead (default 4)")
    show.add_argument("--at", type=datetime.fromisoformat, default=None, help="start of the window (ISO 8601; default: now)")
    show.add_argument("--top", type=int, default=20, help="how many cells (default 20)")
    show.add_argument("--method", choices=("hawkes", "kde", "baseline"), default="hawkes")
    show.add_argument("--geojson", action="store_true", help="print a GeoJSON FeatureCollection instead of a table")
    show.set_defaults(run=run_show)


def run_synth(args: argparse.Namespace) -> int:
    from hub.hotspots.records import write_csv
    from hub.hotspots.synth import Spec, synthesize

    incidents, spots = synthesize(Spec(days=args.days, per_day=args.per_day, side_m=args.side_m, start=args.start, seed=args.seed))
    write_csv(args.out, incidents)
    print(f"wrote {len(incidents)} incidents over {args.days} days to {args.out}; hot spots:", file=sys.stderr)
    for s in spots:
        hours = ", ".join(f"{h:04.1f}h" for h in s.key_hours)
        print(f"  {s.place:18s} {s.category:9s} {s.lat:.5f},{s.lon:.5f} sigma {s.sigma_m:5.0f} m  share {s.share:.3f}  key hours {hours}  trend {s.trend[0]}->{s.trend[1]}", file=sys.stderr)
    return 0


def _district(path: Path | None) -> DistrictConfig | None:
    from guardlink.districtconfig import load_district

    return load_district(path) if path else None


def _zone(args: argparse.Namespace, config: DistrictConfig | None) -> str | None:
    return args.timezone or (config.district.timezone if config else None)


def _cell_m(args: argparse.Namespace, config: DistrictConfig | None) -> float:
    return args.cell_m or (config.hotspots.cell_m if config else DEFAULT_CELL_M)


def load_records(path: Path, zone: str | None, skip_bad_rows: bool) -> Incidents:
    """A CSV's incidents; its problems on stderr, and ConfigError (exit 1) unless `skip_bad_rows`."""
    from guardlink.yamlconfig import ConfigError
    from hub.hotspots.records import read_csv

    incidents, problems = read_csv(path, zone)
    if problems and not skip_bad_rows:
        raise ConfigError(problems + [f"{path}: {len(problems)} problem(s); fix them, or --skip-bad-rows to go on without those rows"])
    for problem in problems:
        print(f"{problem} (skipped)", file=sys.stderr)
    return incidents


def run_evaluate(args: argparse.Namespace) -> int:
    from hub.hotspots.evaluate import AREAS, replay
    from hub.hotspots.forecast import grid_for

    began = time.perf_counter()
    config = _district(args.district)
    incidents = load_records(args.data, _zone(args, config), args.skip_bad_rows)
    if len(incidents) == 0:
        print(f"guardlink hotspots: {args.data} holds no incidents", file=sys.stderr)
        return 1
    grid = grid_for(incidents, config, _cell_m(args, config))
    evaluation, figures = replay(incidents, grid, args.hours, began, progress=_progress("replaying", time.perf_counter()))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(table(evaluation, figures, AREAS))
    return 0


def table(evaluation: Evaluation, figures: dict[str, Any], areas: tuple[float, ...]) -> str:
    lines = [
        f"{figures['incidents']} incidents predicted in {figures['windows']} windows of {evaluation.hours:g} h over {figures['days']} days "
        f"(each from the incidents before it), {figures['cells']} cells",
        f"{'method':10s}" + "".join(f"  hit@{a:.0%}  PAI@{a:.0%}" for a in areas),
    ]
    rows = {"baseline": figures["baseline"], **figures["methods"]}
    for name, row in rows.items():
        lines.append(f"{name:10s}" + "".join(f"  {row[f'hit_rate_{round(a * 100)}pct']:6.3f}  {row[f'pai_{round(a * 100)}pct']:6.2f}" for a in areas))
    lines.append(f"best: {figures['best_method']}, PAI@5% {figures['pai_gain_5pct']}x the baseline's (goal >= 1.5); {figures['hotspots_eval_s']} s")
    return "\n".join(lines)


def _progress(what: str, began: float) -> Any:
    last = [began]

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= 2 or done == total:
            last[0] = now
            print(f"{what}: day {done}/{total} ({now - began:.0f} s)", file=sys.stderr, flush=True)

    return report


def run_show(args: argparse.Namespace) -> int:
    from hub.hotspots.forecast import forecast, geojson, grid_for
    from hub.hotspots.records import local_days, zone_named

    config = _district(args.district)
    if args.data:
        incidents = load_records(args.data, _zone(args, config), args.skip_bad_rows)
    elif config or args.database:
        from hub.database import make_engine
        from hub.hotspots.records import from_store

        engine = make_engine(args.database or config.database_url())  # type: ignore[union-attr]
        incidents = from_store(engine, _zone(args, config) or "UTC")
    else:
        print("guardlink hotspots show: give --data FILE, or --district FILE (and/or --database URL)", file=sys.stderr)
        return 2
    if len(incidents) == 0 and config is None:
        print("guardlink hotspots show: no incidents with a position yet", file=sys.stderr)
        return 1
    zone = zone_named(incidents.zone)
    at = args.at or datetime.now(timezone.utc)
    start = local_days(at if at.tzinfo else at.replace(tzinfo=zone), zone)
    cell_m = _cell_m(args, config)
    grid = grid_for(incidents, config, cell_m)
    cells = forecast(incidents, grid, start, args.hours, args.method, args.top)
    if args.geojson:
        print(json.dumps(geojson(cells, incidents, start, args.hours, args.method, cell_m), indent=1))
        return 0
    print(f"top cells ({cell_m:g} m) for the {args.hours:g} h from {at.isoformat(timespec='minutes')}, by {args.method}, from {len(incidents)} incidents")
    print(f"{'rank':>4}  {'centre (lat, lon)':22s}  {'expected':>8}  {'share':>6}")
    for c in cells:
        print(f"{c.rank:4d}  {(c.south + c.north) / 2:10.5f}, {(c.west + c.east) / 2:10.5f}  {c.score:8.3f}  {c.share:6.1%}")
    if not cells:
        print("(no incidents before the window)")
    return 0
