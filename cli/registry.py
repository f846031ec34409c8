"""`guardlink registry`: the district register of guards: import, export, show, and the district's register keys."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from cli.hub import _operator


def register(commands: argparse._SubParsersAction) -> None:
    registry = commands.add_parser("registry", help="the district register of guards: import, export, show; its keys")
    registry.set_defaults(log_level="WARNING")
    actions = registry.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--config", type=Path, required=True, help="district file (its sites, database and registry settings)")
    where.add_argument("--database", help="database URL (default: the district file's)")

    imports = actions.add_parser(
        "import", parents=[where], help="import companies and guards from CSV or XLSX files (all or nothing)",
        description="Check every row of every file; print each problem as file:row:column: message and import nothing when there is one. "
        "Companies files (licence,name,contact) are taken before guards files. See README 'The district register' for the columns.",
    )
    imports.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imports.add_argument("--dry-run", action="store_true", help="check and say what would change; change nothing")
    imports.set_defaults(run=run_import)

    export = actions.add_parser("export", parents=[where], help="write the register as CSV (guards) or XLSX (companies and guards)")
    export.add_argument("file", nargs="?", type=Path, help="output .csv or .xlsx (default: guards as CSV on standard output)")
    export.add_argument("--companies", action="store_true", help="companies instead of guards (CSV)")
    export.set_defaults(run=run_export)

    show = actions.add_parser("show", parents=[where], help="one guard: company, vetting, training, posting and whether they may be sent today")
    show.add_argument("guard")
    show.set_defaults(run=run_show)

    keys = actions.add_parser("keys", help="create the district's roster signing key and the ID-number hash key (readable by you only)")
    keys.add_argument("--dir", type=Path, required=True, help="where to put district-signing.key/.pub and register-id.key (keep it out of the repository)")
    keys.add_argument("--force", action="store_true", help="replace existing keys (edges then need the new public key; stored ID hashes stop matching)")
    keys.set_defaults(run=run_keys)


def _open(args: argparse.Namespace):
    from guardlink.districtconfig import load_district
    from hub.database import make_engine, migrate

    config = load_district(args.config)
    engine = make_engine(args.database or config.database_url())
    migrate(engine)
    return config, engine


def run_import(args: argparse.Namespace) -> int:
    from hub.register import RegisterError, load_id_key
    from hub.register_import import import_files

    config, engine = _open(args)
    try:
        plan = import_files(engine, args.files, load_id_key(config.registry), config.sites(), dry_run=args.dry_run, actor=_operator())
    except RegisterError as exc:
        print(f"guardlink registry import: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    for problem in plan.problems:
        print(problem, file=sys.stderr)
    if plan.problems:
        print(f"{len(plan.problems)} problems in {plan.rows} rows: nothing imported", file=sys.stderr)
        return 1
    print(("would import: " if args.dry_run else "imported: ") + plan.summary(), file=sys.stderr)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session

    from hub.register import district_today
    from hub.register_import import EXPORT_COLUMNS, company_rows, export_rows, write_csv, write_xlsx
    from hub.register_tables import CompanyRow

    config, engine = _open(args)
    with Session(engine) as session:
        today = district_today(config, datetime.now().astimezone())
        companies = company_rows(session)
        guards = [] if args.companies and (args.file is None or args.file.suffix != ".xlsx") else export_rows(
            session, today, config.registry.training_hours_min, config.community_of,
        )
    engine.dispose()
    company_columns = [c.name for c in CompanyRow.__table__.columns if c.name != "updated_at"]
    if args.file is not None and args.file.suffix.lower() == ".xlsx":
        write_xlsx(args.file, {"companies": (company_columns, companies), "guards": (EXPORT_COLUMNS, guards)})
    else:
        text = write_csv(companies, company_columns) if args.companies else write_csv(guards, EXPORT_COLUMNS)
        if args.file is None:
            sys.stdout.write(text)
            return 0
        args.file.write_text(text, encoding="utf-8")
    print(f"wrote {args.file}: {len(companies)} companies" + ("" if args.companies and args.file.suffix != ".xlsx" else f", {len(guards)} guards"), file=sys.stderr)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from hub.register import district_today
    from hub.register_import import export_rows
    from hub.register_tables import TrainingRow

    config, engine = _open(args)
    with Session(engine) as session:
        today = district_today(config, datetime.now().astimezone())
        rows = export_rows(session, today, config.registry.training_hours_min, config.community_of, [args.guard])
        training = list(session.execute(select(TrainingRow.day, TrainingRow.hours).where(TrainingRow.guard == args.guard).order_by(TrainingRow.day)))
    engine.dispose()
    if not rows:
        print(f"guardlink registry show: no guard {args.guard!r} in the register", file=sys.stderr)
        return 1
    row = rows[0]
    width = max(len(k) for k in row)
    for key, value in row.items():
        if key != "id_number":
            print(f"{key:<{width}}  {value}")
    for day, hours in training:
        print(f"{'training':<{width}}  {day.isoformat()}  {hours:g} h")
    return 0


def run_keys(args: argparse.Namespace) -> int:
    import os
    import secrets

    from guardlink.provisioning import create_keys

    try:
        private_path, public_path = create_keys(args.dir, force=args.force, stem="district-signing")
    except FileExistsError as exc:
        print(f"guardlink registry keys: {exc}", file=sys.stderr)
        return 1
    id_key = args.dir / "register-id.key"
    if id_key.exists() and not args.force:
        print(f"guardlink registry keys: {id_key} exists; keep it (the stored ID hashes depend on it)", file=sys.stderr)
    else:
        id_key.unlink(missing_ok=True)
        fd = os.open(id_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    print(f"roster signing key: {private_path} (district file: registry.signing_key)", file=sys.stderr)
    print(f"ID-number key:      {id_key} (district file: registry.id_key_file)", file=sys.stderr)
    print(f"public key:         {public_path} (each site file: police.roster_key)", file=sys.stderr)
    print(public_path.read_text().strip())
    return 0
