"""`guardlink schema DOCUMENT`: print the JSON Schema of a guardlink document."""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction) -> None:
    schema = commands.add_parser("schema", help="print the JSON Schema of a guardlink document")
    schema.add_argument("document", choices=["escalation"], help="which document")
    schema.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from guardlink.models import escalation_json_schema

    print(json.dumps(escalation_json_schema(), indent=2, sort_keys=True))
    return 0
