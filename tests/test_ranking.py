"""Great-circle distances and choosing the nearest guard."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardlink.geo import EARTH_RADIUS_M, LatLon, haversine_m
from guardlink.ranking import Candidate, rank_nearest

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


# --- rank_nearest -------------------------------------------------------------------------------


def near(metres_north: float) -> LatLon:
    """A point `metres_north` of the school."""
    return LatLon(SCHOOL.lat + math.degrees(metres_north / EARTH_RADIUS_M), SCHOOL.lon)


def test_nearest_guard_comes_first() -> None:
    candidates = [Candidate("g-far", near(300)), Candidate("g-near", near(20)), Candidate("g-mid", near(-120))]
    ranked = rank_nearest(SCHOOL, candidates)
    assert [r.guard for r in ranked] == ["g-near", "g-mid", "g-far"]
    assert [round(r.distance_m) for r in ranked] == [20, 120, 300]
    assert ranked[0].point == near(20)


def test_equally_near_guards_are_ordered_by_id() -> None:
    same = near(50)
    candidates = [Candidate("g-zhang", same), Candidate("g-li", same), Candidate("g-wang", near(10))]
    assert [r.guard for r in rank_nearest(SCHOOL, candidates)] == ["g-wang", "g-li", "g-zhang"]


def test_excluded_guards_are_left_out() -> None:
    candidates = [Candidate("g-li", near(10)), Candidate("g-zhang", near(20)), Candidate("g-wang", near(30))]
    ranked = rank_nearest(SCHOOL, candidates, exclude={"g-li", "g-nobody"})
    assert [r.guard for r in ranked] == ["g-zhang", "g-wang"]


def test_excluding_every_guard_leaves_nobody() -> None:
    assert rank_nearest(SCHOOL, [Candidate("g-li", near(10))], exclude=["g-li"]) == []


def test_no_candidates_gives_an_empty_ranking() -> None:
    assert rank_nearest(SCHOOL, []) == []
    assert rank_nearest(SCHOOL, iter(())) == []


def test_candidates_may_be_a_generator() -> None:
    ranked = rank_nearest(SCHOOL, (Candidate(f"g-{i}", near(100 - i)) for i in range(3)))
    assert [r.guard for r in ranked] == ["g-2", "g-1", "g-0"]


def reference_haversine_m(a: LatLon, b: LatLon) -> float:
    """The textbook haversine formula, written out independently of guardlink.geo."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi, dlambda = phi2 - phi1, math.radians(b.lon - a.lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * 6_371_008.8 * math.atan2(math.sqrt(h), math.sqrt(max(0.0, 1 - h)))


guard_ids = st.text(alphabet="abcdefgh-", min_size=1, max_size=6)
candidate_maps = st.dictionaries(guard_ids, points, max_size=12)


@settings(max_examples=300, deadline=None)
@given(target=points, by_guard=candidate_maps, exclude=st.sets(guard_ids, max_size=4))
def test_ranking_matches_brute_force_nearest(target: LatLon, by_guard: dict[str, LatLon], exclude: set[str]) -> None:
    candidates = [Candidate(g, p) for g, p in by_guard.items()]
    ranked = rank_nearest(target, candidates, exclude=exclude)

    eligible = {g: p for g, p in by_guard.items() if g not in exclude}
    assert sorted(r.guard for r in ranked) == sorted(eligible)
    assert all(r.point == eligible[r.guard] for r in ranked)
    if not eligible:
        return
    nearest_m = min(reference_haversine_m(target, p) for p in eligible.values())
    assert reference_haversine_m(target, ranked[0].point) == pytest.approx(nearest_m, rel=1e-7, abs=1e-6)
    for r in ranked:
        assert r.distance_m == pytest.approx(reference_haversine_m(target, r.point), rel=1e-7, abs=1e-6)
    for first, second in zip(ranked, ranked[1:]):
        assert (first.distance_m, first.guard) < (second.distance_m, second.guard)
