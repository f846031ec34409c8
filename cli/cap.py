"""`guardlink cap render SOURCE`: escalation revisions as OASIS CAP 1.2 alerts, from an edge's outbox or JSON documents."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections import defaultdict
from pathlib import Path

from pydantic import ValidationError

from gateway import cap
from guardlink.models import Escalation


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("cap", help="OASIS CAP 1.2 alerts of escalation revisions")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    render = actions.add_parser(
        "render", help="write the CAP alert of every revision (Alert, Update, Cancel) found in an outbox or JSON file",
        description="SOURCE is an edge's outbox database (*.db) or a JSON file: one escalation document, a list of them, or one per line.",
    )
    render.add_argument("source", type=Path, help="outbox.db, escalation.json, or revisions.jsonl")
    render.add_argument("--out", type=Path, default=None, help="directory for <escalation>-r<revision>.xml files (default: print the newest alert)")
    render.add_argument("--escalation", default=None, help="only this escalation (full id or its last characters)")
    render.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        revisions = read_revisions(args.source)
    except (OSError, sqlite3.Error, ValueError, ValidationError) as exc:
        print(f"guardlink cap render: cannot read {args.source}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    if args.escalation:
        revisions = [r for r in revisions if r.id.endswith(args.escalation)]
    if not revisions:
        print(f"guardlink cap render: no escalation revisions in {args.source}" + (f" for {args.escalation!r}" if args.escalation else ""), file=sys.stderr)
        return 1
    history: dict[str, list[Escalation]] = defaultdict(list)
    for escalation in sorted(revisions, key=lambda e: (e.id, e.revision)):
        history[escalation.id].append(escalation)
    if args.out is None:
        newest = max(revisions, key=lambda e: (e.issued_at, e.sequence))
        sys.stdout.buffer.write(cap.render(newest, history[newest.id]) + b"\n")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for escalation in revisions:
        (args.out / f"{escalation.id}-r{escalation.revision}.xml").write_bytes(cap.render(escalation, history[escalation.id]))
    print(f"wrote {len(revisions)} CAP alerts of {len(history)} escalations to {args.out}", file=sys.stderr)
    return 0


def read_revisions(source: Path) -> list[Escalation]:
    """Every escalation revision in an outbox database or a JSON / JSON Lines file."""
    if source.suffix == ".db":
        if not source.is_file():
            raise OSError(f"no such outbox {source}")
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as db:
            return [Escalation.from_json(doc) for (doc,) in db.execute("SELECT document FROM outbox ORDER BY sequence")]
    text = source.read_text()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return [Escalation.from_json(line) for line in text.splitlines() if line.strip()]
    return [Escalation.model_validate(doc) for doc in (parsed if isinstance(parsed, list) else [parsed])]
