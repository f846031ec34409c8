"""What the HTTP API returns: response documents (they make the OpenAPI schema) and how database rows become them."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from guardlink.models import Assignment, CommandKind, Evidence, Incident
from hub.evidence import evidence_url
from hub.tables import EscalationRow, GuardRow, RevisionRow, SiteRow


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class Me(_View):
    """The logged-in user."""

    name: str
    role: str
    communities: list[str]
    can_command: bool


class IncidentSummary(_View):
    """An escalation's latest state."""

    id: str
    site: str
    community: str | None
    revision: int
    status: str
    kind: str
    severity: str
    device: str
    zone: str | None
    lat: float | None
    lon: float | None
    test: bool
    guards_needed: int
    acknowledged_by: str | None
    detected_at: datetime
    issued_at: datetime = Field(description="when the edge made the latest revision")
    updated_at: datetime = Field(description="when the hub committed the latest revision")


class IncidentPage(_View):
    """One page of incidents, newest detected first, with how many match in all."""

    total: int
    limit: int
    offset: int
    items: list[IncidentSummary]


class TimelineEntry(_View):
    """One revision as the edge sent it and when the hub committed it."""

    revision: int
    status: str
    issued_at: datetime
    committed_at: datetime
    acknowledged_by: str | None
    assignments: list[Assignment]


class CommandEntry(_View):
    """A police command sent about the incident."""

    change_id: int
    at: datetime
    command: CommandKind
    by: str
    count: int | None = None
    note: str | None = None


class EvidenceItem(Evidence):
    """A snapshot or clip the edge listed, and where police users fetch it once the site uploaded it."""

    url: str = Field(description="the file at the hub (HTTP Range for seeking): 404 until uploaded")
    uploaded: bool = Field(description="the hub holds the whole file, its SHA-256 checked")


class IncidentDetail(IncidentSummary):
    """One incident: the latest state, what happened, every revision, its evidence and the commands sent about it."""

    incident: Incident | None = Field(description="what happened, from the latest revision")
    timeline: list[TimelineEntry]
    evidence: list[EvidenceItem]
    commands: list[CommandEntry]


class SiteView(_View):
    """A site's liveness as the hub sees it; a site of the district file never heard from is offline with no times."""

    id: str
    community: str | None
    online: bool
    since: datetime | None = None
    last_heartbeat: datetime | None = None
    backlog: int | None = None
    unreceipted: int | None = None
    oldest_unreceipted_s: float | None = None
    detail: str | None = None


class GuardView(_View):
    """A guard's last reported state and position."""

    site: str
    id: str
    name: str
    roles: list[str]
    state: str
    job: str | None
    lat: float | None
    lon: float | None
    accuracy_m: float | None
    position_at: datetime | None
    updated_at: datetime


class CommandRequest(BaseModel):
    """A police command about one incident; the user sending it is recorded as `by`."""

    model_config = ConfigDict(extra="forbid")

    command: CommandKind
    count: int = Field(default=1, ge=1, le=20, description="more_guards: how many more")
    note: str | None = Field(default=None, max_length=500, description="close: why it is closed")


class CommandSent(_View):
    """A command the site's broker has accepted."""

    change_id: int
    site: str
    command: dict[str, Any]


def incident_summary(row: EscalationRow) -> IncidentSummary:
    return IncidentSummary.model_validate(row, from_attributes=True)


def incident_detail(row: EscalationRow, revisions: list[RevisionRow], commands: list[CommandEntry], uploaded: Collection[str] = ()) -> IncidentDetail:
    """The incident from its latest row and every stored revision (oldest first); evidence from all of them, once each
    (`uploaded`: the SHA-256 of the files the hub holds)."""
    timeline = [
        TimelineEntry(
            revision=r.revision,
            status=r.status,
            issued_at=r.issued_at,
            committed_at=r.committed_at,
            acknowledged_by=r.document.get("acknowledged_by"),
            assignments=r.document.get("assignments", []),
        )
        for r in revisions
    ]
    evidence: dict[str, EvidenceItem] = {}
    for r in revisions:
        for item in r.document.get("evidence", []):
            if item["sha256"] not in evidence:
                evidence[item["sha256"]] = EvidenceItem(**item, url=evidence_url(row.id, item["sha256"]), uploaded=item["sha256"] in uploaded)
    latest = max(revisions, key=lambda r: r.revision).document if revisions else None
    incident = Incident.model_validate(latest["incident"]) if latest else None
    return IncidentDetail(
        **incident_summary(row).model_dump(), incident=incident, timeline=timeline, evidence=list(evidence.values()), commands=commands
    )


def site_view(site: str, community: str | None, row: SiteRow | None) -> SiteView:
    if row is None:
        return SiteView(id=site, community=community, online=False, detail="never heard from")
    view = SiteView.model_validate(row, from_attributes=True)
    return view if view.community else view.model_copy(update={"community": community})


def guard_view(row: GuardRow) -> GuardView:
    return GuardView(
        site=row.site, id=row.guard_id, name=row.name, roles=list(row.roles), state=row.state, job=row.job,
        lat=row.lat, lon=row.lon, accuracy_m=row.accuracy_m, position_at=row.position_at, updated_at=row.updated_at,
    )
