"""`guardlink schema DOCUMENT`: print the JSON Schema of a guardlink document or configuration file."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _escalation() -> dict[str, object]:
    from guardlink.models import escalation_json_schema

    return escalation_json_schema()


def _model(name: str, cls_path: str) -> Callable[[], dict[str, object]]:
    def schema() -> dict[str, object]:
        module, _, cls = cls_path.rpartition(".")
        model = getattr(__import__(module, fromlist=[cls]), cls)
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"guardlink.{name}/1", **model.model_json_schema(by_alias=True)}

    return schema


# document -> (how to make its schema, where it is committed)
SCHEMAS: dict[str, tuple[Callable[[], dict[str, object]], Path]] = {
    "escalation": (_escalation, REPO / "guardlink" / "schemas" / "escalation.schema.json"),
    "receipt": (_model("receipt", "guardlink.models.Receipt"), REPO / "guardlink" / "schemas" / "receipt.schema.json"),
    "guards": (_model("guards", "guardlink.models.GuardsReport"), REPO / "guardlink" / "schemas" / "guards.schema.json"),
    "command": (_model("command", "guardlink.models.PoliceCommand"), REPO / "guardlink" / "schemas" / "command.schema.json"),
    "roster": (_model("roster", "guardlink.roster.Roster"), REPO / "guardlink" / "schemas" / "roster.schema.json"),
    "roster-report": (_model("roster-report", "guardlink.roster.RosterReport"), REPO / "guardlink" / "schemas" / "roster-report.schema.json"),
    "site": (_model("site", "guardlink.siteconfig.SiteConfig"), REPO / "firmware_configs" / "schemas" / "site.schema.json"),
    "template": (_model("device-template", "guardlink.siteconfig.DeviceTemplate"), REPO / "firmware_configs" / "schemas" / "device-template.schema.json"),
    "device-config": (_model("device-config", "guardlink.provisioning.SignedConfig"), REPO / "firmware_configs" / "schemas" / "device-config.schema.json"),
    "district": (_model("district", "guardlink.districtconfig.DistrictConfig"), REPO / "firmware_configs" / "schemas" / "district.schema.json"),
}


def register(commands: argparse._SubParsersAction) -> None:
    schema = commands.add_parser("schema", help="print (or write) the JSON Schema of a guardlink document or configuration file")
    schema.add_argument("document", choices=[*SCHEMAS, "all"], help="which document; `all` with --write refreshes every committed schema")
    schema.add_argument("--write", action="store_true", help="write to the committed file instead of printing")
    schema.set_defaults(run=run)


def render(document: str) -> str:
    """The schema as committed: indented, keys sorted, newline at the end."""
    return json.dumps(SCHEMAS[document][0](), indent=2, sort_keys=True) + "\n"


def run(args: argparse.Namespace) -> int:
    documents = list(SCHEMAS) if args.document == "all" else [args.document]
    if not args.write:
        if args.document == "all":
            raise SystemExit("guardlink schema all: add --write (printing several schemas would mix them)")
        print(render(args.document), end="")
        return 0
    for document in documents:
        path = SCHEMAS[document][1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(document))
        print(f"wrote {path.relative_to(REPO)}")
    return 0
