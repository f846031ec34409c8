"""The guard board: who is on duty and where each guard's wearable last placed them."""

from __future__ import annotations

from dataclasses import dataclass

from guardlink.geo import LatLon
from guardlink.models import Event, EventKind
from guardlink.ranking import Candidate
from guardlink.siteconfig import Guard, SiteConfig


@dataclass(slots=True)
class GuardStatus:
    """A guard and their last known position."""

    guard: Guard
    point: LatLon | None = None
    accuracy_m: float | None = None
    seen_at: float | None = None


class GuardBoard:
    """Live state of a site's guards, fed by wearable and phone position events."""

    def __init__(self, config: SiteConfig) -> None:
        self.guards = {g.id: GuardStatus(g) for g in config.guards}
        self._by_wearable = {g.wearable: g.id for g in config.guards if g.wearable}

    def wearer(self, device: str) -> GuardStatus | None:
        """The guard wearing this device, if any."""
        guard = self._by_wearable.get(device)
        return self.guards[guard] if guard else None

    def observe(self, event: Event) -> None:
        """Take a position report from a guard's wearable or phone."""
        if event.kind is not EventKind.POSITION or event.location is None:
            return
        status = self.wearer(event.device)
        if status is not None:
            status.point, status.accuracy_m, status.seen_at = event.location, event.accuracy_m, event.at

    def candidates(self) -> list[Candidate]:
        """On-duty guards with a known position."""
        return [Candidate(s.guard.id, s.point) for s in self.guards.values() if s.guard.on_duty and s.point is not None]
