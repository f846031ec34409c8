"""CAP 1.2: every alert guardlink produces (library, `guardlink cap render`, the hub's feed and alert endpoints), for every
incident kind and status, validates against OASIS's CAP 1.2 XML Schema with a real XML Schema validator."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway import cap
from guardlink.districtconfig import DistrictConfig
from guardlink.models import (
    Assignment,
    AssignmentState,
    Escalation,
    EscalationStatus,
    Evidence,
    Incident,
    IncidentKind,
    Location,
    Severity,
    SiteRef,
)

xmlschema = pytest.importorskip("xmlschema")

REPO = Path(__file__).resolve().parents[1]
CAP_XSD = REPO / ".." / "shared" / "data" / "cap" / "CAP-v1.2.xsd"  # OASIS's published schema, beside the checkout
NS = {"cap": cap.CAP_NS}
T0 = datetime(2026, 5, 1, 8, 0, 0, 123456, tzinfo=timezone.utc)
SITE = SiteRef(id="n-school", name="North School", district="capdist", location=Location(lat=40.05, lon=111.05))


@pytest.fixture(scope="module")
def schema():
    return xmlschema.XMLSchema(str(CAP_XSD))


def assignment(guard: str, state: AssignmentState) -> Assignment:
    return Assignment(guard=guard, name=f"Guard <{guard}> & co", roles=["patrol"], state=state, distance_m=40.4, eta_s=31,
                      guard_location=Location(lat=40.05, lon=111.05), position_age_s=2, offered_at=T0)


def history(kind: IncidentKind, final: EscalationStatus, escalation_id: str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b") -> list[Escalation]:
    """Revision 1 (dispatched), 2 (every assignment state, evidence, acknowledged), 3 (`final`)."""
    incident = Incident(kind=kind, severity=Severity.WARNING if kind is IncidentKind.LOW_BATTERY else Severity.CRITICAL, device="btn-gate",
                        zone="gate" if kind is not IncidentKind.TEST else None, location=None if kind is IncidentKind.DEVICE_OFFLINE else Location(lat=40.0512, lon=111.0498),
                        raised_by_guard="g-li" if kind in (IncidentKind.SOS, IncidentKind.MAN_DOWN) else None, detected_at=T0, detail="pressed twice")
    first = Escalation(id=escalation_id, revision=1, sequence=1, site=SITE, incident=incident, assignments=[assignment("g1", AssignmentState.OFFERED)],
                       status=EscalationStatus.DISPATCHED, guards_needed=1, issued_at=T0)
    evidence = Evidence(kind="clip", camera="cam-gate", path="/var/lib/guardlink/evidence/x.mp4", media_type="video/mp4", bytes=1024, sha256="ab" * 32, start=T0, end=T0 + timedelta(seconds=30))
    second = first.model_copy(update={
        "revision": 2, "sequence": 2, "issued_at": T0 + timedelta(seconds=20), "acknowledged_by": "desk-1", "evidence": [evidence],
        "assignments": [assignment(f"g-{s.value}", s) for s in AssignmentState],
    })
    third = second.model_copy(update={"revision": 3, "sequence": 3, "issued_at": T0 + timedelta(seconds=300), "status": final})
    return [first, second, third]


@pytest.mark.parametrize("kind", list(IncidentKind))
@pytest.mark.parametrize("status", list(EscalationStatus))
def test_every_revision_of_every_kind_and_status_is_a_valid_cap_alert(schema, kind, status):
    revisions = history(kind, status)
    identifiers = set()
    for escalation in revisions:
        document = cap.render(escalation, revisions)
        schema.validate(document.decode())
        root = ET.fromstring(document)
        identifiers.add(root.findtext("cap:identifier", namespaces=NS))
        assert root.findtext("cap:status", namespaces=NS) == ("Test" if kind is IncidentKind.TEST else "Actual")
        assert root.findtext("cap:scope", namespaces=NS) == "Restricted" and root.findtext("cap:restriction", namespaces=NS)
        assert root.findtext("cap:info/cap:area/cap:circle", namespaces=NS).endswith(f" {cap.AREA_RADIUS_KM:g}")
        references = root.findtext("cap:references", namespaces=NS)
        assert (len(references.split()) if references else 0) == escalation.revision - 1
    kinds = [ET.fromstring(cap.render(e, revisions)).findtext("cap:msgType", namespaces=NS) for e in revisions]
    assert kinds == ["Alert", "Update", "Cancel" if status in (EscalationStatus.CLOSED, EscalationStatus.FALSE_ALARM) else "Update"]
    assert len(identifiers) == 3, "each revision its own identifier"


def test_guards_and_their_states_are_parameters_and_references_name_earlier_alerts():
    revisions = history(IncidentKind.PANIC, EscalationStatus.CLOSED)
    root = ET.fromstring(cap.render(revisions[2], revisions))
    parameters = {p.findtext("cap:valueName", namespaces=NS): p.findtext("cap:value", namespaces=NS) for p in root.iterfind("cap:info/cap:parameter", NS)}
    assert parameters["guardlink:guard:g-on_scene"].startswith("on_scene; Guard <g-on_scene> & co; 40 m")
    assert parameters["guardlink:status"] == "closed" and parameters["guardlink:acknowledged_by"] == "desk-1"
    first_two = [f"{cap.sender(e)},{cap.identifier(e)},{cap.cap_time(e.issued_at)}" for e in revisions[:2]]
    assert root.findtext("cap:references", namespaces=NS).split() == first_two
    assert root.findtext("cap:sent", namespaces=NS) == "2026-05-01T08:05:00+00:00"
    assert cap.render(revisions[2], revisions) == cap.render(revisions[2], revisions), "stable: the same revision renders the same alert"


def test_cap_render_writes_every_revision_of_an_outbox_as_valid_cap(schema, tmp_path):
    import asyncio

    from gateway.outbox import Outbox

    async def fill() -> None:
        outbox = Outbox(tmp_path / "outbox.db", receipt_timeout_s=None)
        await outbox.open()
        sequence = 0
        for n, kind in enumerate(IncidentKind):
            for escalation in history(kind, EscalationStatus.RESOLVED, escalation_id=f"esc-{n:02d}"):
                sequence += 1
                await outbox.append(escalation.model_copy(update={"sequence": sequence}))
        await outbox.close()

    asyncio.run(fill())
    out = tmp_path / "cap"
    done = subprocess.run([sys.executable, "-m", "cli", "cap", "render", str(tmp_path / "outbox.db"), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    files = sorted(out.glob("*.xml"))
    assert len(files) == 3 * len(IncidentKind)
    for path in files:
        schema.validate(str(path))
    one = subprocess.run([sys.executable, "-m", "cli", "cap", "render", str(tmp_path / "outbox.db"), "--escalation", "esc-00"],
                         cwd=REPO, capture_output=True, timeout=60)
    assert one.returncode == 0 and ET.fromstring(one.stdout).findtext("cap:msgType", namespaces=NS) == "Update"
    schema.validate(one.stdout.decode())


def test_the_hub_serves_open_alerts_as_atom_and_each_alert_as_valid_cap(schema, tmp_path):
    from fastapi.testclient import TestClient
    from sqlalchemy.orm import Session

    from hub.accounts import Accounts, Role
    from hub.api import create_app
    from hub.database import make_engine, migrate
    from hub.store import Revision, store

    config = DistrictConfig.model_validate({
        "district": {"id": "capdist", "name": "CAP district"},
        "communities": [
            {"id": "north", "name": "North", "chief": "N", "outline": [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], "sites": ["n-school"]},
            {"id": "south", "name": "South", "chief": "S", "outline": [[39.0, 111.0], [39.1, 111.0], [39.1, 111.1]], "sites": ["s-factory"]},
        ],
    })
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate(engine)
    accounts = Accounts(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    accounts.add_user("disp", Role.DISPATCHER, communities=[], password="pw-disp-long")
    accounts.add_user("south_chief", Role.CHIEF, communities=["south"], password="pw-chief-long")
    open_one, closed = history(IncidentKind.PANIC, EscalationStatus.CLOSED, "open-1")[:2], history(IncidentKind.SMOKE, EscalationStatus.CLOSED, "closed-1")
    with Session(engine) as db, db.begin():
        store(db, [Revision(e, "north", T0) for e in [*open_one, *closed]], T0)

    async def publish(site: str, command: object) -> None:
        raise AssertionError("no commands here")

    app = create_app(engine=engine, config=config, publish_command=publish, accounts=accounts)
    with TestClient(app) as client:
        assert client.get("/api/cap/alerts.atom").status_code == 401
        assert client.post("/api/login", json={"name": "disp", "password": "pw-disp-long"}).status_code == 200
        feed = client.get("/api/cap/alerts.atom")
        assert feed.status_code == 200 and feed.headers["content-type"].startswith("application/atom+xml")
        root = ET.fromstring(feed.content)
        atom = {"a": "http://www.w3.org/2005/Atom"}
        entries = root.findall("a:entry", atom)
        assert [e.findtext("a:id", namespaces=atom) for e in entries] == [cap.identifier(open_one[1])], "only the open incident"
        for alert in root.iterfind("a:entry/a:content/cap:alert", {**atom, **NS}):
            schema.validate(ET.tostring(alert, encoding="unicode"))
        for incident, revision in (("open-1", None), ("closed-1", None), ("closed-1", 1)):
            response = client.get(f"/api/cap/alerts/{incident}.xml", params={"revision": revision} if revision else None)
            assert response.status_code == 200 and response.headers["content-type"] == cap.CAP_MEDIA_TYPE
            schema.validate(response.text)
        assert ET.fromstring(client.get("/api/cap/alerts/closed-1.xml").content).findtext("cap:msgType", namespaces=NS) == "Cancel"
        assert client.get("/api/cap/alerts/closed-1.xml", params={"revision": 9}).status_code == 404
        client.post("/api/logout")
        client.cookies.clear()
        assert client.post("/api/login", json={"name": "south_chief", "password": "pw-chief-long"}).status_code == 200
        assert client.get("/api/cap/alerts/open-1.xml").status_code == 404, "another community's incident looks like none"
        assert ET.fromstring(client.get("/api/cap/alerts.atom").content).findall("a:entry", atom) == []
    engine.dispose()
