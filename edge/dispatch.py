"""Local dispatch: pick the nearest on-duty guard for an incident and write the escalation."""

from __future__ import annotations

from edge.guards import GuardBoard
from guardlink.geo import LatLon
from guardlink.ids import uuid7
from guardlink.models import (
    Assignment,
    AssignmentState,
    Escalation,
    EscalationStatus,
    Incident,
    Location,
    Offer,
    SiteRef,
    iso,
)
from guardlink.ranking import rank_nearest
from guardlink.siteconfig import SiteConfig


def assign_nearest(incident: Incident, board: GuardBoard, fallback: LatLon, now: float) -> list[Assignment]:
    """The nearest on-duty guard (never the one who raised it), as an offered assignment; [] if none."""
    target = LatLon(incident.location.lat, incident.location.lon) if incident.location else fallback
    exclude = {incident.raised_by_guard} if incident.raised_by_guard else set()
    ranked = rank_nearest(target, board.candidates(), exclude)
    if not ranked:
        return []
    best = ranked[0]
    status = board.guards[best.guard]
    return [
        Assignment(
            guard=best.guard,
            name=status.guard.name,
            roles=list(status.guard.roles),
            state=AssignmentState.OFFERED,
            distance_m=round(best.distance_m, 1),
            guard_location=Location.of(best.point),
            position_age_s=round(max(0.0, now - (status.seen_at or now)), 3),
            offered_at=iso(now),
        )
    ]


def first_revision(config: SiteConfig, incident: Incident, assignments: list[Assignment], now: float) -> Escalation:
    """Revision 1 of a new escalation, with a fresh stable id."""
    site = config.site
    return Escalation(
        id=uuid7(),
        revision=1,
        site=SiteRef(id=site.id, name=site.name, district=site.district, location=Location.of(site.location.point())),
        incident=incident,
        assignments=assignments,
        status=EscalationStatus.DISPATCHED if assignments else EscalationStatus.NO_GUARD_AVAILABLE,
        issued_at=iso(now),
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
