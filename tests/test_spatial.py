"""The district guard index answers exactly what a brute-force haversine search answers."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from guardlink.geo import LatLon, haversine_m
from guardlink.spatial import GuardIndex

HOHHOT = (40.8420, 111.7510)
ROLES = ("patrol", "first_aid", "mediator")
M_PER_DEG = 111_195.0


@dataclass
class Known:
    lat: float
    lon: float
    roles: frozenset[str]
    available: bool


def brute_force(guards: dict[str, Known], lat: float, lon: float, k: int = 1, role: str | None = None, exclude=()) -> list[tuple[str, float]]:
    """Every eligible guard's haversine distance, sorted by (distance, id), first k."""
    target = LatLon(lat, lon)
    ranked = sorted(
        (haversine_m(target, LatLon(g.lat, g.lon)), gid)
        for gid, g in guards.items()
        if g.available and (role is None or role in g.roles) and gid not in exclude
    )
    return [(gid, d) for d, gid in ranked[:k]]


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return lat + north_m / M_PER_DEG, lon + east_m / (M_PER_DEG * math.cos(math.radians(lat)))


def district(seed: int, n: int, clusters: int, spread_m: float, duplicates: float, available: float) -> dict[str, Known]:
    """Guards in km-scale clusters around Hohhot (some exactly on top of others), random roles."""
    rng = random.Random(seed)
    centres = [offset(*HOHHOT, rng.uniform(-20_000, 20_000), rng.uniform(-20_000, 20_000)) for _ in range(clusters)]
    guards: dict[str, Known] = {}
    for i in range(n):
        if guards and rng.random() < duplicates:
            twin = rng.choice(list(guards.values()))
            lat, lon = twin.lat, twin.lon
        else:
            lat, lon = offset(*rng.choice(centres), rng.gauss(0, spread_m), rng.gauss(0, spread_m))
        roles = frozenset(r for r in ROLES if rng.random() < 0.4)
        guards[f"g{rng.randrange(10**6):06d}-{i}"] = Known(lat, lon, roles, rng.random() < available)
    return guards


def index_of(guards: dict[str, Known]) -> GuardIndex:
    index = GuardIndex()
    for gid, g in guards.items():
        index.upsert(gid, g.lat, g.lon, g.roles, g.available)
    return index


layouts = st.builds(
    district,
    seed=st.integers(0, 2**32),
    n=st.integers(0, 400),
    clusters=st.integers(1, 6),
    spread_m=st.sampled_from([3.0, 40.0, 400.0, 2_000.0]),
    duplicates=st.sampled_from([0.0, 0.1, 0.5]),
    available=st.sampled_from([1.0, 0.8, 0.3]),
)
query_points = st.tuples(st.floats(-25_000, 25_000), st.floats(-25_000, 25_000)).map(lambda ne: offset(*HOHHOT, *ne))
roles_or_any = st.sampled_from([None, *ROLES, "nobody-has-this"])


@settings(max_examples=200, deadline=None)
@given(guards=layouts, data=st.data())
def test_nearest_equals_brute_force(guards: dict[str, Known], data: st.DataObject) -> None:
    index = index_of(guards)
    ids = sorted(guards)
    for _ in range(5):
        if ids and data.draw(st.booleans()):
            # Right next to (or on) a guard: where incidents are, and where ties happen.
            g = guards[data.draw(st.sampled_from(ids))]
            lat, lon = offset(g.lat, g.lon, data.draw(st.floats(-50, 50)), data.draw(st.floats(-50, 50)))
        else:
            lat, lon = data.draw(query_points)
        k = data.draw(st.integers(1, 12))
        role = data.draw(roles_or_any)
        exclude = set(data.draw(st.lists(st.sampled_from(ids), max_size=3))) if ids else set()
        assert index.nearest(lat, lon, k=k, role=role, exclude=exclude) == brute_force(guards, lat, lon, k, role, exclude)


class IndexMatchesBruteForce(RuleBasedStateMachine):
    """Guards come, go, move (a step, across town, onto another guard, into a crowd) and change availability."""

    guard_ids = Bundle("guard_ids")

    def __init__(self) -> None:
        super().__init__()
        self.index = GuardIndex()
        self.guards: dict[str, Known] = {}
        self.fresh = 0

    @initialize(target=guard_ids, layout=layouts)
    def start_with(self, layout: dict[str, Known]):
        for gid, g in layout.items():
            self.index.upsert(gid, g.lat, g.lon, g.roles, g.available)
        self.guards = dict(layout)
        return multiple(*layout)

    @rule(target=guard_ids, at=query_points, roles=st.frozensets(st.sampled_from(ROLES)), available=st.booleans())
    def add(self, at: tuple[float, float], roles: frozenset[str], available: bool) -> str:
        self.fresh += 1
        gid = f"new-{self.fresh}"
        self.index.upsert(gid, *at, roles, available)
        self.guards[gid] = Known(*at, roles, available)
        return gid

    @rule(gid=guard_ids, north=st.floats(-300, 300), east=st.floats(-300, 300))
    def step(self, gid: str, north: float, east: float) -> None:
        if gid in self.guards:
            g = self.guards[gid]
            g.lat, g.lon = offset(g.lat, g.lon, north, east)
            self.index.move(gid, g.lat, g.lon)

    @rule(gid=guard_ids, to=query_points)
    def jump(self, gid: str, to: tuple[float, float]) -> None:
        if gid in self.guards:
            g = self.guards[gid]
            g.lat, g.lon = to
            self.index.move(gid, *to)

    @rule(gid=guard_ids, other=guard_ids)
    def join(self, gid: str, other: str) -> None:
        if gid in self.guards and other in self.guards:
            g, o = self.guards[gid], self.guards[other]
            g.lat, g.lon = o.lat, o.lon
            self.index.move(gid, g.lat, g.lon)

    @rule(at=query_points, seed=st.integers(0, 2**32), share=st.sampled_from([0.3, 0.9]))
    def crowd(self, at: tuple[float, float], seed: int, share: float) -> None:
        # Many guards converging on one spot changes how crowded cells are: the grid re-sizes.
        rng = random.Random(seed)
        for gid in sorted(self.guards):
            if rng.random() < share:
                g = self.guards[gid]
                g.lat, g.lon = offset(*at, rng.gauss(0, 20), rng.gauss(0, 20))
                self.index.move(gid, g.lat, g.lon)

    @rule(gid=guard_ids, available=st.booleans())
    def set_available(self, gid: str, available: bool) -> None:
        if gid in self.guards:
            self.guards[gid].available = available
            self.index.set_available(gid, available)

    @rule(gid=consumes(guard_ids))
    def remove(self, gid: str) -> None:
        if gid in self.guards:
            del self.guards[gid]
            self.index.remove(gid)

    @rule(gid=guard_ids, roles=st.frozensets(st.sampled_from(ROLES)), available=st.booleans())
    def re_register(self, gid: str, roles: frozenset[str], available: bool) -> None:
        if gid in self.guards:
            g = self.guards[gid]
            g.roles, g.available = roles, available
            self.index.upsert(gid, g.lat, g.lon, roles, available)

    @rule(at=query_points, k=st.integers(1, 5), role=roles_or_any, data=st.data())
    def query(self, at: tuple[float, float], k: int, role: str | None, data: st.DataObject) -> None:
        ids = sorted(self.guards)
        exclude = frozenset(data.draw(st.lists(st.sampled_from(ids), max_size=2))) if ids else frozenset()
        assert self.index.nearest(*at, k=k, role=role, exclude=exclude) == brute_force(self.guards, *at, k, role, exclude)

    @rule(gid=guard_ids, k=st.integers(1, 5), role=roles_or_any)
    def query_at_a_guard(self, gid: str, k: int, role: str | None) -> None:
        if gid in self.guards:
            g = self.guards[gid]
            assert self.index.nearest(g.lat, g.lon, k=k, role=role) == brute_force(self.guards, g.lat, g.lon, k, role)

    @invariant()
    def same_guards(self) -> None:
        assert len(self.index) == len(self.guards)


IndexMatchesBruteForce.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_index_matches_brute_force_through_updates = IndexMatchesBruteForce.TestCase


@pytest.mark.parametrize(
    "layout",
    [
        {"seed": 1, "n": 1_500, "clusters": 3, "spread_m": 40.0, "duplicates": 0.05, "available": 0.8},
        {"seed": 2, "n": 1_500, "clusters": 6, "spread_m": 400.0, "duplicates": 0.0, "available": 1.0},
        {"seed": 3, "n": 800, "clusters": 2, "spread_m": 2_000.0, "duplicates": 0.3, "available": 0.5},
    ],
)
def test_many_queries_at_cell_scale_match_brute_force(layout: dict) -> None:
    # Queries right around guards and at the edges of where guards are, with k up to 8: the k-th
    # nearest then often sits just across a cell edge, where a wrong bound would show.
    guards = district(**layout)
    index = index_of(guards)
    rng = random.Random(layout["seed"])
    points = [(g.lat, g.lon) for g in guards.values()]
    extremes = [min(points), max(points), min(points, key=lambda p: p[1]), max(points, key=lambda p: p[1])]
    spread = layout["spread_m"]
    for i in range(400):
        lat, lon = rng.choice(extremes if i % 4 == 0 else points)
        lat, lon = offset(lat, lon, rng.gauss(0, spread), rng.gauss(0, spread))
        k, role = rng.choice([1, 2, 3, 5, 8, 13, 21]), rng.choice([None, None, *ROLES])
        assert index.nearest(lat, lon, k=k, role=role) == brute_force(guards, lat, lon, k, role), (i, lat, lon, k, role)


# --- behaviour, by example -------------------------------------------------------------------------


def test_ties_in_distance_are_broken_by_guard_id() -> None:
    index = GuardIndex()
    for gid in ("c", "a", "d", "b"):
        index.upsert(gid, *HOHHOT, {"patrol"}, True)
    assert [gid for gid, _ in index.nearest(*offset(*HOHHOT, 100, 0), k=3)] == ["a", "b", "c"]


def test_distances_are_exactly_haversine_m() -> None:
    guards = district(seed=7, n=300, clusters=3, spread_m=400, duplicates=0.1, available=1.0)
    index = index_of(guards)
    lat, lon = offset(*HOHHOT, 1234, -567)
    for gid, d in index.nearest(lat, lon, k=20):
        assert d == haversine_m(LatLon(lat, lon), LatLon(guards[gid].lat, guards[gid].lon))


def test_unavailable_guards_are_not_returned_until_available_again() -> None:
    index = GuardIndex()
    index.upsert("near", *offset(*HOHHOT, 10, 0), {"patrol"}, True)
    index.upsert("far", *offset(*HOHHOT, 900, 0), {"patrol"}, True)
    index.set_available("near", False)
    assert [gid for gid, _ in index.nearest(*HOHHOT)] == ["far"]
    index.set_available("near", True)
    assert [gid for gid, _ in index.nearest(*HOHHOT)] == ["near"]


def test_role_filter_and_exclusions_pick_the_next_suitable_guard() -> None:
    index = GuardIndex()
    index.upsert("patrol-1", *offset(*HOHHOT, 10, 0), {"patrol"}, True)
    index.upsert("medic-1", *offset(*HOHHOT, 50, 0), {"first_aid", "patrol"}, True)
    index.upsert("medic-2", *offset(*HOHHOT, 80, 0), {"first_aid"}, True)
    assert [gid for gid, _ in index.nearest(*HOHHOT, role="first_aid")] == ["medic-1"]
    assert [gid for gid, _ in index.nearest(*HOHHOT, role="first_aid", exclude=["medic-1"])] == ["medic-2"]
    assert [gid for gid, _ in index.nearest(*HOHHOT, k=5, exclude={"medic-1"})] == ["patrol-1", "medic-2"]


def test_nothing_is_found_in_an_empty_index_or_for_a_role_nobody_has() -> None:
    index = GuardIndex()
    assert index.nearest(*HOHHOT, k=3) == []
    index.upsert("g", *HOHHOT, {"patrol"}, True)
    assert index.nearest(*HOHHOT, role="dog_handler") == []
    index.remove("g")
    assert index.nearest(*HOHHOT) == [] and len(index) == 0


def test_guards_far_from_the_query_are_still_found() -> None:
    guards = district(seed=3, n=2_000, clusters=4, spread_m=300, duplicates=0.0, available=1.0)
    index = index_of(guards)
    far_away = [offset(*HOHHOT, north, east) for north in (-200_000, -30_000, 0, 30_000, 200_000) for east in (-300_000, -30_000, 0, 30_000, 300_000)]
    for lat, lon in [*far_away, (-33.9, 151.2)]:
        for k in (1, 4, 12):
            assert index.nearest(lat, lon, k=k) == brute_force(guards, lat, lon, k)


def test_queries_all_around_and_outside_the_guards_area_match_brute_force() -> None:
    # A lattice of queries from ~10 km outside the guards' bounding box, across it, to ~10 km beyond:
    # the search box then starts outside the occupied cells on every side and in every corner.
    guards = district(seed=0, n=500, clusters=2, spread_m=1_500, duplicates=0.0, available=1.0)
    index = index_of(guards)
    lats, lons = [g.lat for g in guards.values()], [g.lon for g in guards.values()]
    for i in range(21):
        for j in range(21):
            lat = min(lats) - 0.1 + (max(lats) - min(lats) + 0.2) * i / 20
            lon = min(lons) - 0.13 + (max(lons) - min(lons) + 0.26) * j / 20
            for k in (1, 12):
                assert index.nearest(lat, lon, k=k) == brute_force(guards, lat, lon, k), (lat, lon, k)


def test_a_guard_far_from_all_others_is_found_near_it() -> None:
    guards = district(seed=4, n=300, clusters=1, spread_m=100, duplicates=0.0, available=1.0)
    index = index_of(guards)
    ranger = min(guards)
    for gid, (north, east) in {"outpost": (8_000, 0), ranger: (0, -9_000)}.items():
        lat, lon = offset(*HOHHOT, north, east)
        if gid == "outpost":  # a new guard joins out there
            index.upsert(gid, lat, lon, {"patrol"}, True)
            guards[gid] = Known(lat, lon, frozenset({"patrol"}), True)
        else:  # one of the crowd walks out there
            index.move(gid, lat, lon)
            guards[gid].lat, guards[gid].lon = lat, lon
        for q in (offset(lat, lon, 30, 30), offset(lat, lon, -2_000, 500)):
            assert index.nearest(*q, k=2) == brute_force(guards, *q, 2)
            assert index.nearest(*q, k=2, role="patrol") == brute_force(guards, *q, 2, "patrol")


def test_a_query_between_two_distant_tight_crowds_is_exact() -> None:
    guards: dict[str, Known] = {}
    rng = random.Random(5)
    for i in range(600):
        centre = offset(*HOHHOT, 0, -30_000 if i % 2 else 30_000)
        guards[f"g{i:04d}"] = Known(*offset(*centre, rng.gauss(0, 5), rng.gauss(0, 5)), frozenset({"patrol"}), True)
    index = index_of(guards)
    assert index.nearest(*HOHHOT, k=3) == brute_force(guards, *HOHHOT, 3)


def test_crowding_into_one_spot_and_dispersing_keeps_answers_exact() -> None:
    guards = district(seed=11, n=1_500, clusters=5, spread_m=1_000, duplicates=0.0, available=0.9)
    index = index_of(guards)
    rng = random.Random(2)
    stadium = offset(*HOHHOT, 3_000, 3_000)
    for gid in sorted(guards)[:1_000]:  # a big event: most guards converge
        g = guards[gid]
        g.lat, g.lon = offset(*stadium, rng.gauss(0, 30), rng.gauss(0, 30))
        index.move(gid, g.lat, g.lon)
    for lat, lon in (stadium, HOHHOT, offset(*stadium, 500, -200)):
        for role in (None, "first_aid"):
            assert index.nearest(lat, lon, k=5, role=role) == brute_force(guards, lat, lon, 5, role)
    for gid in sorted(guards)[:1_000]:  # and they leave again
        g = guards[gid]
        g.lat, g.lon = offset(*HOHHOT, rng.uniform(-20_000, 20_000), rng.uniform(-20_000, 20_000))
        index.move(gid, g.lat, g.lon)
    assert index.nearest(*stadium, k=5) == brute_force(guards, *stadium, 5)


def test_bad_input_is_rejected_with_what_to_fix() -> None:
    index = GuardIndex()
    with pytest.raises(ValueError, match="latitude/longitude"):
        index.upsert("g", 91.0, 0.0, {"patrol"}, True)
    with pytest.raises(ValueError, match="latitude/longitude"):
        index.upsert("g", math.nan, 0.0, {"patrol"}, True)
    with pytest.raises(TypeError, match="set of strings"):
        index.upsert("g", 0.0, 0.0, "patrol", True)
    with pytest.raises(KeyError, match="upsert it"):
        index.move("ghost", 0.0, 0.0)
    index.upsert("g", 0.0, 0.0, {"patrol"}, True)
    with pytest.raises(ValueError, match="latitude/longitude"):
        index.move("g", 0.0, 181.0)
    with pytest.raises(ValueError, match="k must be"):
        index.nearest(0.0, 0.0, k=0)
    with pytest.raises(TypeError, match="not the string"):
        index.nearest(0.0, 0.0, exclude="g")
    assert index.nearest(0.0, 0.0) == [("g", 0.0)]  # still intact
