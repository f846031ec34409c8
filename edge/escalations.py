"""Writing escalation documents: the first revision of an incident, later revisions, and the guard's offer."""

from __future__ import annotations

from guardlink.ids import uuid7
from guardlink.models import (
    Assignment,
    Escalation,
    EscalationStatus,
    Incident,
    Location,
    Offer,
    SiteRef,
    iso,
)
from guardlink.siteconfig import SiteConfig


def first_revision(
    config: SiteConfig,
    incident: Incident,
    assignments: list[Assignment],
    *,
    now: float,
    sequence: int,
    status: EscalationStatus | None = None,
) -> Escalation:
    """Revision 1 of a new escalation, with a fresh stable id; status follows the assignments unless given."""
    site = config.site
    if status is None:
        status = EscalationStatus.DISPATCHED if assignments else EscalationStatus.NO_GUARD_AVAILABLE
    return Escalation(
        id=uuid7(),
        revision=1,
        sequence=sequence,
        site=SiteRef(id=site.id, name=site.name, district=site.district, location=Location.of(site.location.point())),
        incident=incident,
        assignments=assignments,
        status=status,
        issued_at=iso(now),
    )


def next_revision(escalation: Escalation, *, status: EscalationStatus, now: float, sequence: int, detail: str | None = None) -> Escalation:
    """The same escalation (same id) one revision on, with a new status."""
    incident = escalation.incident.model_copy(update={"detail": detail}) if detail else escalation.incident
    return escalation.model_copy(
        update={"revision": escalation.revision + 1, "sequence": sequence, "status": status, "incident": incident, "issued_at": iso(now)}
    )


def offer_for(escalation: Escalation, assignment: Assignment) -> Offer:
    """The job offer a guard's wearable shows."""
    inc = escalation.incident
    return Offer(
        escalation=escalation.id,
        kind=inc.kind,
        severity=inc.severity,
        device=inc.device,
        zone=inc.zone,
        location=inc.location,
        distance_m=assignment.distance_m,
        offered_at=assignment.offered_at,
    )
