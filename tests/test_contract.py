"""The escalation contract: committed JSON Schema, document round trip, ids."""

from __future__ import annotations

import json
import time
import uuid

import jsonschema
import pytest

from edge.escalations import first_revision
from guardlink.ids import uuid7
from guardlink.models import (
    Escalation,
    Incident,
    IncidentKind,
    Severity,
    iso,
)

from conftest import REPO

COMMITTED = json.loads((REPO / "guardlink" / "schemas" / "escalation.schema.json").read_text())


def sample(school) -> Escalation:
    incident = Incident(
        kind=IncidentKind.PANIC, severity=Severity.CRITICAL, device="btn-gate", zone="main-gate",
        location=None, detected_at=iso(1_763_800_000.0),
    )
    return first_revision(school, incident, 1, now=1_763_800_000.01, sequence=1)


def test_escalation_document_is_schema_valid_and_round_trips(school):
    escalation = sample(school)
    doc = json.loads(escalation.to_json())
    jsonschema.validate(doc, COMMITTED)
    assert doc["schema"] == "guardlink.escalation/1"
    assert Escalation.from_json(escalation.to_json()) == escalation


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("id"),
        lambda d: d.update(schema="guardlink.escalation/2"),
        lambda d: d.update(revision=0),
        lambda d: d["incident"].update(kind="picnic"),
        lambda d: d.update(surprise=True),
    ],
)
def test_schema_rejects_documents_that_break_the_contract(school, mutate):
    doc = json.loads(sample(school).to_json())
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, COMMITTED)
    with pytest.raises(ValueError):
        Escalation.model_validate(doc)


def test_uuid7_ids_are_unique_version_7_and_sorted_in_creation_order():
    ids = [uuid7() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert {uuid.UUID(i).version for i in ids} == {7}
    assert {uuid.UUID(i).variant for i in ids} == {uuid.RFC_4122}


def test_uuid7_carries_its_creation_time_in_milliseconds():
    before = int(time.time() * 1000)
    value = uuid.UUID(uuid7())
    after = int(time.time() * 1000)
    assert before <= value.int >> 80 <= after + 1


@pytest.mark.parametrize("document", ["escalation", "site", "template", "device-config", "district"])
def test_committed_schemas_match_the_models(document):
    from cli.schema import SCHEMAS, render

    path = SCHEMAS[document][1]
    assert path.read_text() == render(document), f"{path} drifted from the model: run `make schemas` and commit"


def test_the_example_site_and_templates_satisfy_the_committed_schemas():
    import yaml

    from cli.schema import SCHEMAS

    site_schema = json.loads(SCHEMAS["site"][1].read_text())
    template_schema = json.loads(SCHEMAS["template"][1].read_text())
    for template in (REPO / "firmware_configs" / "templates").glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(template.read_text()), template_schema)
    # A site file uses templates, so it is checked as the loader completes it.
    from cli import load_checked_site

    site = load_checked_site(REPO / "firmware_configs" / "sites" / "school.yaml")
    jsonschema.validate(site.model_dump(mode="json", by_alias=True), site_schema)
