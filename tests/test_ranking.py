"""Great-circle distances and choosing the nearest guard."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardlink.geo import EARTH_RADIUS_M, LatLon, haversine_m
from guardlink.ranking import Placed, best_by_eta, rank
from guardlink.siteconfig import DispatchSettings
from guardlink.spatial import GuardIndex

ONE_DEGREE_M = 111_195.0  # 2 * pi * 6371.0088 km / 360
SCHOOL = LatLon(40.8421, 111.7512)


# --- haversine_m --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (LatLon(0, 0), LatLon(1, 0)),
        (LatLon(40, 111.75), LatLon(41, 111.75)),
        (LatLon(-89, -30), LatLon(-90, -30)),
        (LatLon(0, 179.5), LatLon(0, -179.5)),  # across the antimeridian
        (LatLon(0, 0), LatLon(0, 1)),  # a degree of longitude is a degree of arc on the equator
    ],
)
def test_one_degree_of_arc_is_about_111_195_km(a: LatLon, b: LatLon) -> None:
    assert haversine_m(a, b) == pytest.approx(ONE_DEGREE_M, rel=1e-3)


def test_a_degree_of_longitude_shrinks_with_latitude() -> None:
    assert haversine_m(LatLon(60, 10), LatLon(60, 11)) == pytest.approx(ONE_DEGREE_M * math.cos(math.radians(60)), rel=1e-3)


def test_antipodes_are_half_the_circumference_apart() -> None:
    assert haversine_m(LatLon(0, 0), LatLon(0, 180)) == pytest.approx(math.pi * EARTH_RADIUS_M, rel=1e-9)
    assert haversine_m(LatLon(90, 0), LatLon(-90, 0)) == pytest.approx(math.pi * EARTH_RADIUS_M, rel=1e-9)


def test_distance_from_a_point_to_itself_is_zero() -> None:
    assert haversine_m(SCHOOL, SCHOOL) == 0.0
    assert haversine_m(LatLon(90, 0), LatLon(90, 123)) == pytest.approx(0.0, abs=1e-6)  # every longitude meets at the pole


def test_short_distances_are_metre_accurate() -> None:
    # 0.0001 degree of latitude is about 11.12 m; a site's guards are tens of metres apart.
    assert haversine_m(SCHOOL, LatLon(SCHOOL.lat + 0.0001, SCHOOL.lon)) == pytest.approx(11.1195, abs=1e-3)


points = st.builds(
    LatLon,
    st.floats(min_value=-90, max_value=90, allow_nan=False),
    st.floats(min_value=-180, max_value=180, allow_nan=False),
)


@settings(max_examples=300, deadline=None)
@given(a=points, b=points)
def test_distance_is_symmetric_and_bounded(a: LatLon, b: LatLon) -> None:
    d = haversine_m(a, b)
    assert d == pytest.approx(haversine_m(b, a), abs=1e-6)
    assert 0 <= d <= math.pi * EARTH_RADIUS_M


# --- rank and best_by_eta -------------------------------------------------------------------------

NOW = 1_800_000_000.0
SETTINGS = DispatchSettings()  # 1.4 m/s, stale after 60 s at 0.5 s/s, unplaceable after 600 s


def near(metres_north: float) -> LatLon:
    """A point `metres_north` of the school."""
    return LatLon(SCHOOL.lat + math.degrees(metres_north / EARTH_RADIUS_M), SCHOOL.lon)


def placed(guard: str, point: LatLon, accuracy_m: float = 0.0, age_s: float = 0.0) -> Placed:
    return Placed(guard, point, accuracy_m, NOW - age_s)


def test_nearest_fresh_guard_comes_first_with_walking_eta() -> None:
    ranked = rank(SCHOOL, [placed("g-far", near(300)), placed("g-near", near(21)), placed("g-mid", near(-120))], NOW, SETTINGS)
    assert [r.guard for r in ranked] == ["g-near", "g-mid", "g-far"]
    assert [round(r.distance_m) for r in ranked] == [21, 120, 300]
    assert ranked[0].eta_s == pytest.approx(ranked[0].distance_m / 1.4)


def test_a_stale_or_coarse_position_costs_time() -> None:
    candidates = [placed("g-fresh", near(60)), placed("g-stale", near(50), age_s=130), placed("g-coarse", near(50), accuracy_m=70), placed("g-far", near(140))]
    ranked = rank(SCHOOL, candidates, NOW, SETTINGS)
    # fresh 60/1.4 = 42.9 s; stale 50/1.4 + (130-60)*0.5 = 70.7 s; coarse (50+70)/1.4 = 85.7 s; far 140/1.4 = 100 s
    assert [r.guard for r in ranked] == ["g-fresh", "g-stale", "g-coarse", "g-far"]
    assert [round(r.eta_s, 1) for r in ranked] == [42.9, 70.7, 85.7, 100.0]


def test_a_guard_whose_position_is_too_old_cannot_be_placed() -> None:
    assert [r.guard for r in rank(SCHOOL, [placed("g-old", near(5), age_s=601), placed("g-ok", near(500))], NOW, SETTINGS)] == ["g-ok"]


def test_equally_placed_guards_are_ordered_by_id() -> None:
    same = near(50)
    ranked = rank(SCHOOL, [placed("g-zhang", same), placed("g-li", same), placed("g-wang", near(10))], NOW, SETTINGS)
    assert [r.guard for r in ranked] == ["g-wang", "g-li", "g-zhang"]


def test_excluded_guards_are_left_out() -> None:
    candidates = [placed("g-li", near(10)), placed("g-zhang", near(20)), placed("g-wang", near(30))]
    assert [r.guard for r in rank(SCHOOL, candidates, NOW, SETTINGS, exclude={"g-li", "g-nobody"})] == ["g-zhang", "g-wang"]
    assert rank(SCHOOL, [], NOW, SETTINGS) == []


def index_of(guards: dict[str, tuple[LatLon, float, float, str]], unavailable: set[str]) -> tuple[GuardIndex, dict[str, Placed]]:
    index, by_id = GuardIndex(), {}
    for g, (point, accuracy, age, role) in guards.items():
        index.upsert(g, point.lat, point.lon, {role}, g not in unavailable)
        by_id[g] = placed(g, point, accuracy, age)
    return index, by_id


def test_best_by_eta_looks_past_a_near_but_stale_guard() -> None:
    guards = {"g-stale": (near(5), 0.0, 500.0, "patrol")} | {f"g-{i}": (near(200 + 30 * i), 0.0, 0.0, "patrol") for i in range(20)}
    index, by_id = index_of(guards, set())
    [best] = best_by_eta(index, by_id, SCHOOL, 1, NOW, SETTINGS)
    assert best.guard == "g-0", "5 m away but 500 s old costs 224 s; 200 m away and fresh costs 143 s"


guard_ids = st.text(alphabet="abcdefgh-", min_size=1, max_size=6)
cluster_points = st.builds(lambda dn, de: LatLon(SCHOOL.lat + dn, SCHOOL.lon + de), st.floats(-0.02, 0.02), st.floats(-0.02, 0.02))
guard_maps = st.dictionaries(
    guard_ids,
    st.tuples(cluster_points, st.sampled_from([0.0, 5.0, 80.0]), st.sampled_from([0.0, 30.0, 200.0, 700.0]), st.sampled_from(["patrol", "first_aid", "mediator"])),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    target=cluster_points,
    guards=guard_maps,
    count=st.integers(1, 4),
    roles=st.lists(st.sampled_from(["patrol", "first_aid", "mediator"]), max_size=2, unique=True),
    exclude=st.sets(guard_ids, max_size=4),
    unavailable=st.sets(guard_ids, max_size=6),
)
def test_best_by_eta_equals_brute_force(target, guards, count, roles, exclude, unavailable) -> None:
    index, by_id = index_of(guards, unavailable)
    eligible = [p for g, p in by_id.items() if g not in unavailable and (not roles or guards[g][3] in roles)]
    expected = rank(target, eligible, NOW, SETTINGS, exclude)[:count]
    assert best_by_eta(index, by_id, target, count, NOW, SETTINGS, roles=roles, exclude=exclude) == expected
    for r in expected:
        assert r.distance_m == pytest.approx(reference_haversine_m(target, r.point), rel=1e-7, abs=1e-6)


def reference_haversine_m(a: LatLon, b: LatLon) -> float:
    """The textbook haversine formula, written out independently of guardlink.geo."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi, dlambda = phi2 - phi1, math.radians(b.lon - a.lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * 6_371_008.8 * math.atan2(math.sqrt(h), math.sqrt(max(0.0, 1 - h)))
