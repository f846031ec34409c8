"""Synthetic self-exciting incident histories with known hot spots and key hours (seeded), to test the methods on.

Background incidents come from hot spots (Gaussian blobs of 80-250 m, each with its own key hours of the day, some
warming up or cooling down over the period) and from scattered incidents anywhere in the square. Every incident then
has Poisson(`branching`) follow-ups, each an exponential `follow_up_days` later on average and a Gaussian
`near_repeat_m` away: the near-repeat effect, generation after generation (a Hawkes process with branching < 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np

from hub.hotspots.grid import M_PER_DEG_LAT
from hub.hotspots.records import Incidents

# (kind of place, category, key hours of the day)
ARCHETYPES = (
    ("market", "theft", (11.0, 18.0)),
    ("nightlife street", "dispute", (22.5, 1.0)),
    ("school gate", "dispute", (7.5, 16.5)),
    ("bus station", "theft", (8.0, 18.5)),
    ("residential block", "burglary", (14.0,)),
    ("car park", "vandalism", (2.0,)),
    ("shopping street", "fraud", (15.0, 20.0)),
)
CATEGORIES = ("theft", "burglary", "dispute", "fraud", "vandalism", "assault")
HOUR_WIDTH = 1.5  # hours: how sharp a key hour is
BINS = 96


@dataclass(frozen=True, slots=True)
class Spec:
    """What to generate; defaults: a 10 km square of Hohhot, a year from 2025-01-01, 20 incidents a day."""

    days: int = 365
    per_day: float = 20.0
    hotspots: int = 20
    side_m: float = 10000.0
    branching: float = 0.45
    follow_up_days: float = 2.0
    near_repeat_m: float = 60.0
    scattered_share: float = 0.4
    lat: float = 40.845
    lon: float = 111.758
    start: date = date(2025, 1, 1)
    zone: str = "+08:00"
    seed: int = 1


@dataclass(frozen=True, slots=True)
class Hotspot:
    """A known hot spot: where, how wide, its share of the background, its key hours and how it changes over the period."""

    place: str
    category: str
    lat: float
    lon: float
    sigma_m: float
    share: float
    key_hours: tuple[float, ...]
    trend: tuple[float, float]  # rate multiplier at the first and the last day


def synthesize(spec: Spec) -> tuple[Incidents, list[Hotspot]]:
    """A history following `spec`, and its hot spots."""
    rng = np.random.default_rng(spec.seed)
    m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(spec.lat))
    spots = _hotspots(spec, rng, m_per_deg_lon)
    background = spec.per_day * (1 - spec.branching)
    day0 = (spec.start - date(1970, 1, 1)).days
    days = np.arange(spec.days)
    t_parts, x_parts, y_parts, cat_parts = [], [], [], []
    for spot in spots:  # a few hot spots, each vectorised over its days and incidents
        ramp = spot.trend[0] + (spot.trend[1] - spot.trend[0]) * days / max(spec.days - 1, 1)
        counts = rng.poisson(background * (1 - spec.scattered_share) * spot.share * ramp)
        n = int(counts.sum())
        t_parts.append(day0 + np.repeat(days, counts) + _hours_of_day(rng, spot.key_hours, n) / 24)
        x_parts.append((spot.lon - spec.lon) * m_per_deg_lon + rng.normal(0, spot.sigma_m, n))
        y_parts.append((spot.lat - spec.lat) * M_PER_DEG_LAT + rng.normal(0, spot.sigma_m, n))
        cat_parts.append(np.where(rng.random(n) < 0.7, spot.category, rng.choice(CATEGORIES, n)))
    n = rng.poisson(background * spec.scattered_share * spec.days)
    t_parts.append(day0 + rng.integers(0, spec.days, n) + _hours_of_day(rng, (19.0,), n, floor=1.0) / 24)
    x_parts.append(rng.uniform(-spec.side_m / 2, spec.side_m / 2, n))
    y_parts.append(rng.uniform(-spec.side_m / 2, spec.side_m / 2, n))
    cat_parts.append(rng.choice(CATEGORIES, n))
    t, x, y, cat = (np.concatenate(p) for p in (t_parts, x_parts, y_parts, cat_parts))
    t, x, y, cat = _with_follow_ups(spec, rng, t, x, y, cat, day0 + spec.days)
    half = spec.side_m / 2
    inside = (np.abs(x) <= half) & (np.abs(y) <= half)
    lat = spec.lat + y[inside] / M_PER_DEG_LAT
    lon = spec.lon + x[inside] / m_per_deg_lon
    seconds = np.round(t[inside] * 86400) / 86400
    return Incidents.of(seconds, lat, lon, cat[inside].tolist(), spec.zone), spots


def _hotspots(spec: Spec, rng: np.random.Generator, m_per_deg_lon: float) -> list[Hotspot]:
    shares = rng.dirichlet(np.full(spec.hotspots, 1.5))
    spots = []
    for i in range(spec.hotspots):
        place, category, hours = ARCHETYPES[i % len(ARCHETYPES)]
        x, y = rng.uniform(-0.4, 0.4, 2) * spec.side_m
        trend = ((1.0, 1.0), (0.3, 1.7), (1.7, 0.3))[int(rng.integers(0, 3))]
        spots.append(Hotspot(place, category, round(spec.lat + y / M_PER_DEG_LAT, 6), round(spec.lon + x / m_per_deg_lon, 6),
                             round(float(rng.uniform(80, 250)), 1), round(float(shares[i]), 4), hours, trend))
    return spots


def _hours_of_day(rng: np.random.Generator, key_hours: tuple[float, ...], n: int, floor: float = 0.15) -> np.ndarray:
    """`n` hours of the day (0..24), peaking at the key hours (wrapped Gaussians), with a `floor` share spread evenly."""
    centres = (np.arange(BINS) + 0.5) * 24 / BINS
    density = np.full(BINS, floor / BINS)
    for hour in key_hours:
        gap = (centres - hour + 12) % 24 - 12
        bump = np.exp(-0.5 * (gap / HOUR_WIDTH) ** 2)
        density += (1 - floor) / len(key_hours) * bump / bump.sum()
    bins = rng.choice(BINS, size=n, p=density / density.sum())
    return (bins + rng.random(n)) * 24 / BINS


def _with_follow_ups(spec: Spec, rng: np.random.Generator, t: np.ndarray, x: np.ndarray, y: np.ndarray, cat: np.ndarray, end: float) -> tuple[np.ndarray, ...]:
    keep = t < end
    generation = [a[keep] for a in (t, x, y, cat)]
    parts = [generation]
    while generation[0].size:  # one pass per generation; branching < 1 ends it
        children = rng.poisson(spec.branching, generation[0].size)
        parent_t, parent_x, parent_y, parent_cat = (np.repeat(a, children) for a in generation)
        n = parent_t.size
        child_t = parent_t + rng.exponential(spec.follow_up_days, n)
        keep = child_t < end
        generation = [child_t[keep], (parent_x + rng.normal(0, spec.near_repeat_m, n))[keep],
                      (parent_y + rng.normal(0, spec.near_repeat_m, n))[keep], parent_cat[keep]]
        parts.append(generation)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))
