"""Writing escalation documents: the first revision of an incident, later revisions, and the guard's offer."""

from __future__ import annotations

from guardlink.ids import uuid7
from guardlink.models import (
    Assignment,
    Escalation,
    EscalationStatus,
    Evidence,
    Incident,
    Location,
    Offer,
    SiteRef,
    iso,
)
from guardlink.siteconfig import SiteConfig


def first_revision(config: SiteConfig, incident: Incident, guards_needed: int, *, now: float, sequence: int) -> Escalation:
    """Revision 1 of a new escalation, with a fresh stable id and nobody assigned yet."""
    site = config.site
    return Escalation(
        id=uuid7(),
        revision=1,
        sequence=sequence,
        site=SiteRef(id=site.id, name=site.name, district=site.district, location=Location.of(site.location.point())),
        incident=incident,
        assignments=[],
        status=EscalationStatus.DISPATCHED if guards_needed else EscalationStatus.REPORTED,
        guards_needed=guards_needed,
        issued_at=iso(now),
    )


def revised(
    escalation: Escalation,
    *,
    status: EscalationStatus,
    now: float,
    sequence: int,
    assignments: list[Assignment] | None = None,
    acknowledged_by: str | None = None,
    detail: str | None = None,
    evidence: list[Evidence] | None = None,
) -> Escalation:
    """The same escalation (same id) one revision on."""
    update: dict[str, object] = {"revision": escalation.revision + 1, "sequence": sequence, "status": status, "issued_at": iso(now)}
    if assignments is not None:
        update["assignments"] = assignments
    if evidence is not None:
        update["evidence"] = evidence
    if acknowledged_by is not None:
        update["acknowledged_by"] = acknowledged_by
    if detail is not None:
        update["incident"] = escalation.incident.model_copy(update={"detail": detail})
    return escalation.model_copy(update=update)


def offer_for(escalation: Escalation, assignment: Assignment, answer_within_s: float, *, withdrawn: bool = False) -> Offer:
    """The job offer a guard's wearable shows (or its withdrawal)."""
    inc = escalation.incident
    return Offer(
        escalation=escalation.id,
        state="withdrawn" if withdrawn else "offered",
        kind=inc.kind,
        severity=inc.severity,
        device=inc.device,
        zone=inc.zone,
        location=inc.location,
        distance_m=assignment.distance_m,
        offered_at=assignment.offered_at,
        answer_within_s=answer_within_s,
    )
