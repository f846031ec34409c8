"""Choosing guards for an incident: pure code shared by a site's dispatcher and a district hub.

A guard's cost is the walking time to the incident, plus the walking time across the position's
accuracy radius, plus a penalty for every second the position is older than `stale_after_s`.
Guards whose position is older than `max_position_age_s` cannot be placed at all.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from guardlink.geo import LatLon, haversine_m
from guardlink.siteconfig import DispatchSettings
from guardlink.spatial import GuardIndex


@dataclass(frozen=True, slots=True)
class Placed:
    """Where a guard last was, how precisely, and when."""

    guard: str
    point: LatLon
    accuracy_m: float
    seen_at: float


@dataclass(frozen=True, slots=True)
class Ranked:
    """A guard's distance and ETA to an incident."""

    guard: str
    point: LatLon
    distance_m: float
    eta_s: float
    age_s: float


def eta_s(distance_m: float, placed: Placed, now: float, settings: DispatchSettings) -> float:
    """Seconds for the guard to walk there, penalised for a coarse or stale position."""
    age = max(0.0, now - placed.seen_at)
    stale = max(0.0, age - settings.stale_after_s) * settings.stale_penalty
    return (distance_m + placed.accuracy_m) / settings.walking_speed_mps + stale


def rank(target: LatLon, candidates: Iterable[Placed], now: float, settings: DispatchSettings, exclude: Collection[str] = ()) -> list[Ranked]:
    """Every placeable candidate by ETA, best first; ties broken by distance, then guard id. Brute force."""
    ranked = []
    for p in candidates:
        if p.guard in exclude or now - p.seen_at > settings.max_position_age_s:
            continue
        distance = haversine_m(target, p.point)
        ranked.append(Ranked(p.guard, p.point, distance, eta_s(distance, p, now, settings), max(0.0, now - p.seen_at)))
    ranked.sort(key=lambda r: (r.eta_s, r.distance_m, r.guard))
    return ranked


def best_by_eta(
    index: GuardIndex,
    placed: Mapping[str, Placed],
    target: LatLon,
    count: int,
    now: float,
    settings: DispatchSettings,
    *,
    roles: Collection[str] = (),
    exclude: Collection[str] = (),
) -> list[Ranked]:
    """The `count` best available guards by ETA (having one of `roles`, if given), exactly as `rank` orders them.

    The index yields guards nearest first; penalties only add time, so once the walking time of the
    next-nearest guard exceeds the count-th best ETA found, nobody further can do better.
    """
    if count <= 0:
        return []
    k = max(8, 2 * count)
    while True:
        nearest: dict[str, float] = {}
        horizon = float("inf")  # every candidate nearer than this has been looked at
        for role in roles or (None,):
            found = index.nearest(target.lat, target.lon, k=k, role=role, exclude=exclude)
            nearest.update(found)
            if len(found) == k:
                horizon = min(horizon, found[-1][1])
        best = rank(target, (placed[g] for g in nearest), now, settings, exclude)[:count]
        if horizon == float("inf") or (len(best) == count and best[-1].eta_s < horizon / settings.walking_speed_mps):
            return best
        k *= 4
