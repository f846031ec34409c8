"""Large-event mobilisation, the pure part: venue geometry, choosing guards fairly across companies, what a guard's
answer does to their state, and the headcount per sector against need.

Choosing: for each sector and role in turn, among eligible guards with that role not yet chosen, companies take turns by
the share of their own pool they have given so far (the lowest share goes next, the nearest home post breaking a tie),
and within a company the guard nearest the sector comes first. So a company with a third of the eligible guards gives
about a third of each sector's guards, and nobody is sent across the city while a colleague of theirs lives next door.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from guardlink.callup import Answer
from guardlink.geo import LatLon, haversine_m


class EventGuardState(StrEnum):
    """Where a called-up guard stands."""

    CALLED = "called"  # the call-up is out, no answer yet
    CONFIRMED = "confirmed"  # coming
    DECLINED = "declined"
    NO_ANSWER = "no_answer"  # no answer within the event's answer_within_s
    ARRIVED = "arrived"  # checked in at the sector (a message, or a position inside it)
    NO_SHOW = "no_show"  # confirmed, not checked in by the start plus the grace time
    STOOD_DOWN = "stood_down"  # the event ended, or no longer needs them


FILLING = (EventGuardState.CALLED, EventGuardState.CONFIRMED, EventGuardState.ARRIVED)  # count against a sector's need
HOLDING = (EventGuardState.CONFIRMED, EventGuardState.ARRIVED)  # on the event: no site jobs unless released


class EventProblem(ValueError):
    """An event definition that cannot be used; the message says what and where."""


# --- geometry -------------------------------------------------------------------------------------------------------


def ring(polygon: dict[str, Any], where: str) -> list[LatLon]:
    """The outer ring of a GeoJSON Polygon ([lon, lat] pairs) as points; EventProblem when it is not one."""
    if not isinstance(polygon, dict) or polygon.get("type") != "Polygon" or not polygon.get("coordinates"):
        raise EventProblem(f"{where}: a GeoJSON Polygon is {{\"type\": \"Polygon\", \"coordinates\": [[[lon, lat], ...]]}}")
    try:
        points = [LatLon(float(lat), float(lon)) for lon, lat, *_ in polygon["coordinates"][0]]
    except (TypeError, ValueError):
        raise EventProblem(f"{where}: coordinates are [lon, lat] pairs of numbers") from None
    if points and points[0] == points[-1]:
        points = points[:-1]
    if len(points) < 3:
        raise EventProblem(f"{where}: a polygon needs at least 3 distinct corners, this one has {len(points)}")
    if not all(-90 <= p.lat <= 90 and -180 <= p.lon <= 180 for p in points):
        raise EventProblem(f"{where}: a corner is outside WGS-84 (lon -180..180, lat -90..90); GeoJSON puts lon first")
    return points


def inside(point: LatLon, corners: list[LatLon]) -> bool:
    """Whether `point` lies inside the polygon (even-odd rule; fine at a venue's scale)."""
    hit = False
    j = len(corners) - 1
    for i, a in enumerate(corners):
        b = corners[j]
        if (a.lat > point.lat) != (b.lat > point.lat) and point.lon < (b.lon - a.lon) * (point.lat - a.lat) / (b.lat - a.lat) + a.lon:
            hit = not hit
        j = i
    return hit


def centre(corners: list[LatLon]) -> LatLon:
    """The mean of the corners: where a sector's guards report."""
    return LatLon(sum(p.lat for p in corners) / len(corners), sum(p.lon for p in corners) / len(corners))


# --- choosing guards ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """An eligible guard free for the event's time: who, their company and home post, their roles and where they are."""

    guard: str
    company: str
    site: str | None
    roles: frozenset[str]
    home: LatLon | None  # the home post's position; None: unknown (ranked last, after every known one)


@dataclass(frozen=True, slots=True)
class Pick:
    """A guard chosen for a sector and role."""

    candidate: Candidate
    sector: str
    role: str
    distance_m: float


def distance(candidate: Candidate, target: LatLon) -> float:
    return haversine_m(candidate.home, target) if candidate.home is not None else math.inf


def choose_fairly(candidates: Iterable[Candidate], count: int, role: str, target: LatLon, taken: set[str]) -> list[tuple[Candidate, float]]:
    """Up to `count` guards with `role` not in `taken`, companies taking turns by share of their pool, nearest first within
    each. Pure; `taken` is not changed."""
    pools: dict[str, list[tuple[float, str, Candidate]]] = {}
    for c in candidates:
        if role in c.roles and c.guard not in taken:
            pools.setdefault(c.company, []).append((distance(c, target), c.guard, c))
    for pool in pools.values():
        pool.sort(key=lambda entry: (entry[0], entry[1]))
    turn = [(1 / len(pool), pool[0][0], company, 0) for company, pool in pools.items()]  # (share after the next pick, its distance, ...)
    heapq.heapify(turn)
    chosen: list[tuple[Candidate, float]] = []
    while turn and len(chosen) < count:
        _share, _d, company, index = heapq.heappop(turn)
        pool = pools[company]
        dist, _guard, candidate = pool[index]
        chosen.append((candidate, dist))
        if index + 1 < len(pool):
            heapq.heappush(turn, ((index + 2) / len(pool), pool[index + 1][0], company, index + 1))
    return chosen


def plan_callups(candidates: list[Candidate], gaps: list[tuple[str, str, int, LatLon]], taken: set[str]) -> list[Pick]:
    """Who to call up for each gap `(sector, role, count, sector centre)`; a guard is picked once, and roles few guards
    have are filled first (else a common role's picks use up the scarce one's guards). Pure."""
    taken = set(taken)
    holders: dict[str, int] = {}
    for c in candidates:
        for role in c.roles:
            holders[role] = holders.get(role, 0) + 1
    picks = []
    for sector, role, count, target in sorted(gaps, key=lambda gap: holders.get(gap[1], 0)):
        if count <= 0:
            continue
        for candidate, dist in choose_fairly(candidates, count, role, target, taken):
            taken.add(candidate.guard)
            picks.append(Pick(candidate, sector, role, dist))
    return picks


# --- answers --------------------------------------------------------------------------------------------------------


def answered(state: EventGuardState, answer: Answer) -> EventGuardState | None:
    """The state a call-up answer moves a guard to, or None when it changes nothing (late, repeated, after a stand-down).
    A check-in counts even without a confirmation before it, and from a guard marked no-show (late, but there)."""
    if answer is Answer.CONFIRM and state in (EventGuardState.CALLED, EventGuardState.NO_ANSWER):
        return EventGuardState.CONFIRMED
    if answer is Answer.DECLINE and state in (EventGuardState.CALLED, EventGuardState.CONFIRMED, EventGuardState.NO_ANSWER):
        return EventGuardState.DECLINED
    if answer is Answer.ARRIVED and state in (EventGuardState.CALLED, EventGuardState.CONFIRMED, EventGuardState.NO_ANSWER, EventGuardState.NO_SHOW):
        return EventGuardState.ARRIVED
    return None


# --- headcount ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SectorCount:
    """One sector and role: how many are needed, and how many guards are in each state."""

    sector: str
    role: str
    needed: int
    states: dict[str, int]

    @property
    def arrived(self) -> int:
        return self.states.get(EventGuardState.ARRIVED, 0)

    @property
    def filling(self) -> int:
        return sum(self.states.get(s, 0) for s in FILLING)

    @property
    def gap(self) -> int:
        """Guards still to call up: needed minus those called, coming or there."""
        return max(self.needed - self.filling, 0)

    def as_dict(self) -> dict[str, Any]:
        return {"sector": self.sector, "role": self.role, "needed": self.needed, "arrived": self.arrived, "gap": self.gap,
                **{s.value: self.states.get(s, 0) for s in EventGuardState}}


def headcount(needs: dict[str, dict[str, int]], counted: Iterable[tuple[str, str, str, int]]) -> list[SectorCount]:
    """Per sector and role (sectors in `needs` order): need and guards per state, from `(sector, role, state, count)`. Pure."""
    states: dict[tuple[str, str], dict[str, int]] = {}
    for sector, role, state, count in counted:
        states.setdefault((sector, role), {})[state] = states.get((sector, role), {}).get(state, 0) + count
    keys = [(s, r) for s, roles in needs.items() for r in roles]
    keys += sorted(k for k in states if k not in set(keys))  # a sector or role no longer needed still shows who came
    return [SectorCount(s, r, needs.get(s, {}).get(r, 0), states.get((s, r), {})) for s, r in keys]
