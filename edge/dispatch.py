"""Local dispatch: pick the nearest on-duty guard for an incident."""

from __future__ import annotations

from edge.guards import GuardBoard
from guardlink.geo import LatLon
from guardlink.models import Assignment, AssignmentState, Incident, Location, iso
from guardlink.ranking import rank_nearest


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
