"""Choosing the nearest guard: pure code shared by a site's dispatcher and a district hub."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from guardlink.geo import LatLon, haversine_m


@dataclass(frozen=True, slots=True)
class Candidate:
    """A guard that could be sent, where they last were."""

    guard: str
    point: LatLon


@dataclass(frozen=True, slots=True)
class Ranked:
    """A candidate and its great-circle distance to the incident."""

    guard: str
    point: LatLon
    distance_m: float


def rank_nearest(target: LatLon, candidates: Iterable[Candidate], exclude: Collection[str] = ()) -> list[Ranked]:
    """Candidates by great-circle distance to `target`, nearest first; ties broken by guard id."""
    ranked = [Ranked(c.guard, c.point, haversine_m(target, c.point)) for c in candidates if c.guard not in exclude]
    ranked.sort(key=lambda r: (r.distance_m, r.guard))
    return ranked
