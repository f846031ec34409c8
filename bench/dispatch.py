"""`guardlink bench dispatch`: nearest available guard among 100k guards while positions stream in.

A district of 40 km x 40 km around Hohhot: most guards in a few hundred km-scale clusters (sites,
events) of very different sizes and densities, the rest spread out; five roles; 85 % available.
Incidents happen where people are, so queries are drawn like guard positions.

Measured in one run:
- guardlink.spatial.GuardIndex: query latency with `updates_per_query` position reports (and one
  availability change) applied between consecutive queries; a quarter of the queries filter by
  role, a fifth ask for k=3, a tenth exclude the guards who declined (the previous nearest two);
- the sustained update rate (moves in a tight loop);
- scipy cKDTree over 3D unit vectors of all guards (static, built once, no filters), k=1 queries;
- numpy brute force: vectorised haversine over all guards with the availability mask, k=1 queries;
- exactness: the index against a numpy brute force (all guards' chord distances, then
  guardlink.geo.haversine_m on every guard within a float-error margin of the k-th) over random
  queries with role filters, k > 1 and exclusions, on the final state.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from guardlink.geo import EARTH_RADIUS_M, LatLon, haversine_m
from guardlink.spatial import GuardIndex

CENTRE = (40.8420, 111.7510)  # Hohhot
HALF_SIDE_M = 20_000.0
ROLES = ("patrol", "first_aid", "mediator", "info_collector", "grid_worker")
ROLE_SHARE = (0.6, 0.15, 0.1, 0.2, 0.1)
AVAILABLE_SHARE = 0.85
CLUSTERS = 300
CLUSTERED_SHARE = 0.85
GOAL_P99_US = 50.0
# Chord-based h = (1 - dot)/2 from float64 unit vectors is within ~1e-15 of the haversine h;
# every guard within this margin of the k-th is re-checked with haversine_m itself.
H_MARGIN = 1e-12


class District:
    """Random guards and incident points, reproducible from a seed."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.deg_lat = HALF_SIDE_M / (EARTH_RADIUS_M * math.pi / 180)
        self.deg_lon = self.deg_lat / math.cos(math.radians(CENTRE[0]))
        self.cluster_lat = CENTRE[0] + rng.uniform(-self.deg_lat, self.deg_lat, CLUSTERS)
        self.cluster_lon = CENTRE[1] + rng.uniform(-self.deg_lon, self.deg_lon, CLUSTERS)
        # Spreads from ~100 m (a school) to ~2 km (a big event), sizes varying as much.
        self.cluster_sigma_m = np.clip(rng.lognormal(math.log(400), 0.7, CLUSTERS), 80, 2500)
        weights = rng.lognormal(0, 1.0, CLUSTERS)
        self.cluster_p = weights / weights.sum()

    def points(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        lat = CENTRE[0] + rng.uniform(-self.deg_lat, self.deg_lat, n)
        lon = CENTRE[1] + rng.uniform(-self.deg_lon, self.deg_lon, n)
        clustered = rng.random(n) < CLUSTERED_SHARE
        c = rng.choice(CLUSTERS, size=int(clustered.sum()), p=self.cluster_p)
        sigma_deg = self.cluster_sigma_m[c] / (EARTH_RADIUS_M * math.pi / 180)
        lat[clustered] = self.cluster_lat[c] + rng.normal(0, 1, c.size) * sigma_deg
        lon[clustered] = self.cluster_lon[c] + rng.normal(0, 1, c.size) * sigma_deg / np.cos(np.radians(self.cluster_lat[c]))
        return lat, lon

    def roles(self, n: int) -> np.ndarray:
        has = self.rng.random((n, len(ROLES))) < np.array(ROLE_SHARE)
        has[~has.any(axis=1), 0] = True  # everyone can at least patrol
        return has


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(
    json_output: bool = False,
    *,
    guards: int = 100_000,
    queries: int = 10_000,
    updates_per_query: int = 10,
    rate_updates: int | None = None,
    baseline_queries: int = 2_000,
    brute_queries: int = 300,
    exact_queries: int = 10_000,
    seed: int = 1,
) -> dict[str, object]:
    """Measure everything, print a table (or one JSON object with `json_output`) and return the figures."""
    started = time.perf_counter()
    rate_updates = 2 * guards if rate_updates is None else rate_updates
    rng = np.random.default_rng(seed)
    district = District(rng)
    ids = [f"g{i:06d}" for i in range(guards)]
    lat, lon = district.points(guards)
    has_role = district.roles(guards)
    available = rng.random(guards) < AVAILABLE_SHARE

    _progress(f"loading {guards} guards")
    index = GuardIndex()
    t = time.perf_counter()
    for gid, la, lo, roles_row, av in zip(ids, lat.tolist(), lon.tolist(), has_role.tolist(), available.tolist()):
        index.upsert(gid, la, lo, {r for r, has in zip(ROLES, roles_row) if has}, av)
    load_s = time.perf_counter() - t

    # The streaming phase, prepared up front so the loop times only the index.
    _progress(f"{queries} queries with {updates_per_query} position updates and one availability change before each")
    q_lat, q_lon = (a.tolist() for a in district.points(queries))
    q_role = [ROLES[i] if f < 0.25 else None for i, f in zip(rng.integers(0, len(ROLES), queries), rng.random(queries))]
    q_k = [3 if f < 0.2 else 1 for f in rng.random(queries)]
    q_declined = (rng.random(queries) < 0.1).tolist()
    walkers = rng.integers(0, guards, (queries, updates_per_query)).tolist()
    steps_m = rng.normal(0, 5, (queries, updates_per_query, 2)).tolist()  # ~5 m between reports
    # Availability changes alternate: a free guard takes a job, a busy one finishes.
    flips, flip_to = [], []
    state = available.tolist()
    for qi in range(queries):
        to = qi % 2 == 1
        g = int(rng.integers(0, guards))
        while state[g] == to:
            g = int(rng.integers(0, guards))
        state[g] = to
        flips.append(g)
        flip_to.append(to)
    cur_lat, cur_lon = lat.tolist(), lon.tolist()
    moves = []
    for qi in range(queries):
        batch = []
        for g, (north_m, east_m) in zip(walkers[qi], steps_m[qi]):
            cur_lat[g] += north_m / 111_195.0
            cur_lon[g] += east_m / (111_195.0 * math.cos(math.radians(cur_lat[g])))
            batch.append((ids[g], cur_lat[g], cur_lon[g]))
        moves.append(batch)
    query_ns: list[int] = []
    filtered_ns: list[int] = []
    move_ns = flip_ns = 0
    move = index.move
    clock = time.perf_counter_ns
    declined: list[str] = []
    for qi in range(queries):
        t0 = clock()
        for gid, la, lo in moves[qi]:
            move(gid, la, lo)
        t1 = clock()
        index.set_available(ids[flips[qi]], flip_to[qi])
        t2 = clock()
        exclude = declined if q_declined[qi] else ()
        t3 = clock()
        found = index.nearest(q_lat[qi], q_lon[qi], k=q_k[qi], role=q_role[qi], exclude=exclude)
        t4 = clock()
        move_ns += t1 - t0
        flip_ns += t2 - t1
        query_ns.append(t4 - t3)
        if q_role[qi] is not None:
            filtered_ns.append(t4 - t3)
        available[flips[qi]] = flip_to[qi]
        declined = [gid for gid, _ in found[:2]]

    _progress(f"{rate_updates} position updates in a tight loop")
    picks = rng.integers(0, guards, rate_updates)
    jitter = rng.normal(0, 5 / 111_195.0, (rate_updates, 2))
    rate_moves = []
    for g, (dlat, dlon) in zip(picks.tolist(), jitter.tolist()):
        cur_lat[g] += dlat
        cur_lon[g] += dlon / math.cos(math.radians(cur_lat[g]))
        rate_moves.append((ids[g], cur_lat[g], cur_lon[g]))
    t = time.perf_counter()
    for gid, la, lo in rate_moves:
        move(gid, la, lo)
    updates_per_s = rate_updates / (time.perf_counter() - t)
    lat, lon = np.array(cur_lat), np.array(cur_lon)

    b_lat, b_lon = district.points(max(baseline_queries, brute_queries))
    kdtree = _kdtree_baseline(lat, lon, b_lat[:baseline_queries].tolist(), b_lon[:baseline_queries].tolist())
    brute = _brute_baseline(lat, lon, available, b_lat[:brute_queries].tolist(), b_lon[:brute_queries].tolist())

    _progress(f"checking {exact_queries} queries against a numpy brute force")
    mismatches, checked = _exactness(index, district, rng, ids, lat, lon, available, has_role, exact_queries)

    query_ns.sort()
    filtered_ns.sort()
    us = 1e-3
    result: dict[str, object] = {
        "guards": guards,
        "available": int(available.sum()),
        "queries": queries,
        "updates_per_query": updates_per_query,
        "load_s": round(load_s, 2),
        "query_p50_us": round(percentile(query_ns, 0.5) * us, 1),
        "query_p99_us": round(percentile(query_ns, 0.99) * us, 1),
        "query_max_us": round(query_ns[-1] * us, 1),
        "role_filtered_p99_us": round(percentile(filtered_ns, 0.99) * us, 1) if filtered_ns else None,
        "updates_per_s": round(updates_per_s),
        "interleaved_updates_per_s": round(queries * updates_per_query / (move_ns / 1e9)),
        "availability_changes_per_s": round(queries / (flip_ns / 1e9)),
        "kdtree_build_ms": kdtree["build_ms"],
        "kdtree_p50_us": kdtree["p50_us"],
        "kdtree_p99_us": kdtree["p99_us"],
        "brute_p50_us": brute["p50_us"],
        "brute_p99_us": brute["p99_us"],
        "p99_vs_kdtree": round(percentile(query_ns, 0.99) * us / kdtree["p99_us"], 2),
        "p99_vs_brute": round(percentile(query_ns, 0.99) * us / brute["p99_us"], 4),
        "exact": mismatches == 0,
        "exact_queries": checked,
        "mismatches": mismatches,
        "goal_p99_us": GOAL_P99_US,
        "goal_met": mismatches == 0 and percentile(query_ns, 0.99) * us <= GOAL_P99_US,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if json_output:
        print(json.dumps(result))
    else:
        _print_table(result)
    return result


def _kdtree_baseline(lat: np.ndarray, lon: np.ndarray, q_lat: list[float], q_lon: list[float]) -> dict[str, float]:
    try:
        from scipy.spatial import cKDTree
    except ImportError as exc:
        raise SystemExit("the dispatch benchmark compares against scipy: pip install -e '.[test]'") from exc
    _progress(f"scipy cKDTree: build, then {len(q_lat)} k=1 queries")
    t = time.perf_counter()
    tree = cKDTree(_unit_vectors(lat, lon))
    build_ms = (time.perf_counter() - t) * 1e3
    times = []
    clock = time.perf_counter_ns
    cos, sin, radians = math.cos, math.sin, math.radians
    for la, lo in zip(q_lat, q_lon):
        t0 = clock()
        # The conversion from degrees is part of a query, as it is for the index.
        phi, lam = radians(la), radians(lo)
        tree.query((cos(phi) * cos(lam), cos(phi) * sin(lam), sin(phi)), k=1)
        times.append(clock() - t0)
    times.sort()
    return {"build_ms": round(build_ms, 1), "p50_us": round(percentile(times, 0.5) / 1e3, 1), "p99_us": round(percentile(times, 0.99) / 1e3, 1)}


def _brute_baseline(lat: np.ndarray, lon: np.ndarray, available: np.ndarray, q_lat: list[float], q_lon: list[float]) -> dict[str, float]:
    _progress(f"numpy brute force: {len(q_lat)} k=1 queries over all guards")
    lat_r = np.radians(lat)
    cos_lat = np.cos(lat_r)
    unavailable = ~available
    times = []
    clock = time.perf_counter_ns
    for la, lo in zip(q_lat, q_lon):
        t0 = clock()
        q = math.radians(la)
        h = np.sin((lat_r - q) / 2) ** 2 + math.cos(q) * cos_lat * np.sin(np.radians(lon - lo) / 2) ** 2
        h[unavailable] = np.inf
        best = int(np.argmin(h))
        _ = 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h[best])))
        times.append(clock() - t0)
    times.sort()
    return {"p50_us": round(percentile(times, 0.5) / 1e3, 1), "p99_us": round(percentile(times, 0.99) / 1e3, 1)}


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    phi, lam = np.radians(lat), np.radians(lon)
    return np.column_stack((np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)))


def _exactness(
    index: GuardIndex, district: District, rng: np.random.Generator, ids: list[str],
    lat: np.ndarray, lon: np.ndarray, available: np.ndarray, has_role: np.ndarray, count: int,
) -> tuple[int, int]:
    """Compare the index with a brute force over every guard; returns (mismatches, queries checked)."""
    q_lat, q_lon = district.points(count)
    # A few queries far from everyone (outside the district) too.
    far = rng.random(count) < 0.02
    q_lat[far] += rng.choice([-1, 1], int(far.sum())) * district.deg_lat * 3
    role_of = rng.integers(-1, len(ROLES), count)  # -1: any role; otherwise one role in five times in six
    role_of[rng.random(count) < 0.7] = -1
    ks = rng.choice([1, 1, 1, 2, 3, 5, 10], count)
    excluding = rng.random(count) < 0.1
    units = _unit_vectors(lat, lon)
    q_units = _unit_vectors(q_lat, q_lon)
    mismatches = 0
    for role in range(-1, len(ROLES)):
        eligible = available if role < 0 else available & has_role[:, role]
        members = np.flatnonzero(eligible)
        g_units = units[members]
        rows = np.flatnonzero(role_of == role)
        for start in range(0, rows.size, 32):
            block = rows[start : start + 32]
            # h = sin^2(angle / 2) = (1 - cos(angle)) / 2 for every (query, eligible guard)
            h = (1.0 - q_units[block] @ g_units.T) / 2
            for row, qi in zip(h, block.tolist()):
                k = int(ks[qi])
                exclude: set[str] = set()
                if excluding[qi] and members.size:
                    # Exclude the nearest two, as a re-offer after they declined would.
                    nearest_two = members[np.argsort(row)[:2]] if members.size <= 2 else members[np.argpartition(row, 2)[:2]]
                    exclude = {ids[i] for i in nearest_two.tolist()}
                    row = row.copy()
                    row[np.isin(members, nearest_two)] = np.inf
                expected = _brute_k(row, members, k, ids, lat, lon, float(q_lat[qi]), float(q_lon[qi]), exclude)
                got = index.nearest(float(q_lat[qi]), float(q_lon[qi]), k=k, role=None if role < 0 else ROLES[role], exclude=exclude)
                if got != expected:
                    mismatches += 1
                    if mismatches <= 3:
                        _progress(f"MISMATCH query {qi} k={k} role={role}: index {got} brute force {expected}")
    return mismatches, count


def _brute_k(
    h: np.ndarray, members: np.ndarray, k: int, ids: list[str], lat: np.ndarray, lon: np.ndarray,
    q_lat: float, q_lon: float, exclude: set[str],
) -> list[tuple[str, float]]:
    """The k nearest of `members` by haversine_m, ties by id, using approximate h only to skip far guards."""
    usable = np.isfinite(h)
    if not usable.any():
        return []
    kth = np.partition(h[usable], min(k, int(usable.sum())) - 1)[min(k, int(usable.sum())) - 1]
    near = members[np.flatnonzero(h <= kth + 2 * H_MARGIN)]
    target = LatLon(q_lat, q_lon)
    ranked = sorted(
        (haversine_m(target, LatLon(float(lat[i]), float(lon[i]))), ids[i]) for i in near.tolist() if ids[i] not in exclude
    )
    return [(gid, d) for d, gid in ranked[:k]]


def _print_table(r: dict[str, object]) -> None:
    print(f"nearest available guard: {r['guards']} guards ({r['available']} available), {r['queries']} queries, "
          f"{r['updates_per_query']} position updates + 1 availability change before each")
    print(f"{'method':<44}{'p50 us':>10}{'p99 us':>10}")
    print(f"{'guardlink GuardIndex (exact, filters, live)':<44}{r['query_p50_us']:>10}{r['query_p99_us']:>10}")
    print(f"{'  role-filtered queries only':<44}{'':>10}{r['role_filtered_p99_us'] or '-':>10}")
    print(f"{'scipy cKDTree (static, no filters)':<44}{r['kdtree_p50_us']:>10}{r['kdtree_p99_us']:>10}")
    print(f"{'numpy brute force (availability mask)':<44}{r['brute_p50_us']:>10}{r['brute_p99_us']:>10}")
    print(f"p99 index / cKDTree: {r['p99_vs_kdtree']}x   index / brute force: {r['p99_vs_brute']}x   max {r['query_max_us']} us")
    print(f"position updates: {r['updates_per_s']}/s in a tight loop, {r['interleaved_updates_per_s']}/s between queries; "
          f"availability changes: {r['availability_changes_per_s']}/s")
    print(f"load: {r['load_s']} s for {r['guards']} upserts (cKDTree build {r['kdtree_build_ms']} ms)")
    print(f"exact against brute force: {'yes' if r['exact'] else 'NO'} ({r['mismatches']} mismatches in {r['exact_queries']} queries)")
    print(f"goal p99 <= {r['goal_p99_us']} us, exact: {'met' if r['goal_met'] else 'NOT met'}   ({r['seconds']} s)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `guardlink bench dispatch`; exit status 1 if the index was not exact."""
    parser = argparse.ArgumentParser(prog="guardlink bench dispatch", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--guards", type=int, default=100_000, help="guards in the district (default 100000)")
    parser.add_argument("--queries", type=int, default=10_000, help="timed queries while updates stream (default 10000)")
    parser.add_argument("--exact-queries", type=int, default=10_000, help="queries checked against brute force (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args(argv)
    result = run(args.json, guards=args.guards, queries=args.queries, exact_queries=args.exact_queries, seed=args.seed)
    return 0 if result["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
