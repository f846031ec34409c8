"""`guardlink report assessment`: the assessment of guards, companies, sites and communities for a period."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="reports from the command centre's database")
    kinds = report.add_subparsers(dest="report", required=True, metavar="REPORT")
    assessment = kinds.add_parser(
        "assessment", help="guards, companies, sites and communities over a period: response times, declines, false alarms, check-ins, tips, training",
        description="Charts first (response-time distributions, rankings, week by week), tables below; HTML is one file that prints on A4.",
    )
    assessment.add_argument("--config", type=Path, required=True, help="district file (its communities, time zone and database)")
    assessment.add_argument("--database", help="database URL (default: the district file's)")
    assessment.add_argument("--period", required=True, help="a month (2026-11) or a year (2026), in the district's time zone")
    assessment.add_argument("--community", help="only this community (its id in the district file)")
    assessment.add_argument("--format", choices=("html", "csv"), default="html")
    # hub.assessment_report.LANGUAGES, not imported here: the command line starts without the hub's modules
    assessment.add_argument("--lang", choices=("en", "zh-CN"), default="en", help="the HTML report's language (CSV keeps English column names)")
    assessment.add_argument("--out", type=Path, help="file to write (default: standard output)")
    assessment.set_defaults(run=run_assessment)


def run_assessment(args: argparse.Namespace) -> int:
    from guardlink.districtconfig import load_district
    from hub.assessment import PeriodProblem, assess, parse_period
    from hub.assessment_report import to_csv, to_html
    from hub.database import make_engine, migrate

    config = load_district(args.config)
    if args.community is not None and args.community not in {c.id for c in config.communities}:
        print(f"{args.config}: no community {args.community!r} (known: {', '.join(c.id for c in config.communities)})", file=sys.stderr)
        return 2
    try:
        period = parse_period(args.period, config.district.timezone)
    except PeriodProblem as exc:
        print(f"--period: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(args.database or config.database_url())
    migrate(engine)
    report = assess(engine, config, period, args.community)
    text = to_csv(report) if args.format == "csv" else to_html(report, language=args.lang)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"{args.out}: {report.total['incidents']} incidents, {len(report.guards)} guards, period {period.name}", file=sys.stderr)
    return 0
