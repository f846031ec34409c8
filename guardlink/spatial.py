"""District-scale index of guard positions: exact "nearest available guard" under streaming updates.

Available guards are bucketed into latitude/longitude cells, one grid for all of them and one
per role. A query scans the query's cell, then grows a box one row or column at a time on
whichever side has the smallest great-circle lower bound, and stops once the k-th best
distance found is below the bound of everything outside the box (cheap latitude, longitude and
h windows around the k-th best skip most guards in the cells it scans). Distances are computed
operation for operation as `guardlink.geo.haversine_m(query, guard)` does, so results are
exactly those of a brute-force search with that function, ties broken by guard id.

Each grid sizes its cells for the crowding its own guards see (a rare role gets larger cells)
and re-sizes itself when its guard count doubles or halves or its crowding drifts, which keeps
updates amortised O(1). Cells live in a dense row-major list over a frame around the guards, so
a row or column of cells is one list slice; the few guards outside the frame (a stray fix, a
patrol far out) share one overflow bucket that a query scans only when the frame's edge is
nearer than what it found. A cell keeps its guards' coordinates unboxed in one array, so a query
reads a few contiguous buffers instead of chasing an object per guard.

Not thread-safe: use it from one thread (the hub's event loop). Longitude wrap at the
antimeridian is not handled: guards and queries are assumed to lie on one side of it.
"""

from __future__ import annotations

import math
from array import array
from bisect import insort
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from math import asin, cos, floor, radians, sin, sqrt

from guardlink.geo import EARTH_RADIUS_M

_R = EARTH_RADIUS_M
_RAD_PER_DEG = math.pi / 180
_M_PER_DEG = _R * _RAD_PER_DEG
_TWO_R = 2 * EARTH_RADIUS_M
_INF = math.inf
_FAR = -1  # the cell key of guards outside the frame
# A frame has at most this many cells, or this many per guard; beyond it, cells grow instead.
_FRAME_CELLS = 1 << 16
_FRAME_CELLS_PER_GUARD = 8
_MIN_STEP_DEG = 1e-5  # about 1 m
_MAX_STEP_DEG = 1.0
_DEFAULT_STEP_DEG = 0.01  # about 1 km; used until a grid holds enough guards to size its cells
_MIN_COS = 0.05  # keeps longitude cells finite near the poles
# Up to this many guards a query just scans them all: cheaper than walking cells.
_SCAN_ALL_UP_TO = 48
# Crowding is the average number of guards in a guard's own cell (sum of squared cell counts over
# guards); a grid sizes its cells for this. On the dispatch benchmark query times are flat from 5
# to 10 and worse beyond: fewer, fuller cells trade lookups and steps for guards to skip.
_TARGET_CROWDING = 8.0
# A grid re-sizes its cells when its guard count doubles or halves, or its crowding drifts this much.
_RECROWD = 1.5
# Stop only when the k-th distance is this far below the bound of everything unscanned. Float error
# in the distances and cell edges is about 1e-9 m at district scale; a millimetre is generous.
_SLACK_M = 1e-3

# Per guard in a cell: latitude in radians, its cosine, longitude in degrees, and the guard's number.
_STRIDE = 4


class _Grid:
    """Available guards of one kind (all, or one role), bucketed into cells."""

    __slots__ = (
        "cells", "flat", "far", "slots", "count", "crowding_sum", "lat_step", "lon_step", "inv_lat", "inv_lon",
        "fx0", "fy0", "fw", "fh", "min_cx", "max_cx", "min_cy", "max_cy",
        "sized_for", "crowding_low", "crowding_high", "far_limit",
    )

    def __init__(self) -> None:
        # No frame yet: until it is sized, a grid keeps everyone in the overflow bucket.
        self.reset(_DEFAULT_STEP_DEG, _DEFAULT_STEP_DEG, 0, 0, 0, 0)
        self.sized_for = 0
        self.crowding_low = 0.0
        self.crowding_high = _INF
        self.far_limit = _INF

    def reset(self, lat_step: float, lon_step: float, fx0: int, fy0: int, fw: int, fh: int) -> None:
        """Empty the grid; set its cell size in degrees and its frame in cells (absolute column/row, width, height)."""
        # Cell (cx, cy) is at index (cy - fy0) * fw + (cx - fx0) of `flat`, None while empty;
        # `cells` maps the indexes of occupied cells to the same arrays.
        self.flat: list[array[float] | None] = [None] * (fw * fh)
        self.cells: dict[int, array[float]] = {}
        self.far: array[float] = array("d")  # guards outside the frame, laid out like a cell
        # guard number -> [cell index or _FAR, index in the cell]; the same list is the guard's own record of it
        self.slots: dict[int, list[int]] = {}
        self.count = 0
        self.crowding_sum = 0  # over cells in the frame
        self.lat_step = lat_step
        self.lon_step = lon_step
        self.inv_lat = 1.0 / lat_step
        self.inv_lon = 1.0 / lon_step
        self.fx0, self.fy0, self.fw, self.fh = fx0, fy0, fw, fh
        # Bounding box of occupied cells in the frame (absolute column/row); it only grows between
        # re-sizes, which keeps it a safe bound.
        self.min_cx = self.min_cy = 1 << 40
        self.max_cx = self.max_cy = -(1 << 40)

    def key_of(self, lat: float, lon: float) -> int:
        """The index of the cell holding this point, or _FAR outside the frame."""
        cx = floor(lon * self.inv_lon) - self.fx0
        cy = floor(lat * self.inv_lat) - self.fy0
        return cy * self.fw + cx if 0 <= cx < self.fw and 0 <= cy < self.fh else _FAR

    def add(self, num: int, slot: list[int], key: int, lat_r: float, cos_lat: float, lon: float) -> None:
        """Put guard number `num` in cell `key`, recording where in `slot`."""
        cell: array[float] | None
        if key == _FAR:
            cell = self.far
        else:
            cell = self.cells.get(key)
            if cell is None:
                cell = self.cells[key] = self.flat[key] = array("d")
                cy, cx = divmod(key, self.fw)
                cx += self.fx0
                cy += self.fy0
                self.min_cx, self.max_cx = min(self.min_cx, cx), max(self.max_cx, cx)
                self.min_cy, self.max_cy = min(self.min_cy, cy), max(self.max_cy, cy)
            self.crowding_sum += 2 * (len(cell) // _STRIDE) + 1
        slot[0] = key
        slot[1] = len(cell) // _STRIDE
        cell.append(lat_r)
        cell.append(cos_lat)
        cell.append(lon)
        cell.append(num)
        self.slots[num] = slot
        self.count += 1

    def discard(self, num: int) -> None:
        """Take guard number `num` out of its cell."""
        key, i = self.slots.pop(num)
        cell = self.far if key == _FAR else self.cells[key]
        last = len(cell) // _STRIDE - 1
        if i != last:
            # Move the cell's last guard into the hole, so cells stay dense.
            j = _STRIDE * i
            cell[j : j + _STRIDE] = cell[-_STRIDE:]
            self.slots[int(cell[j + 3])][1] = i
        del cell[-_STRIDE:]
        if key != _FAR:
            if not cell:
                del self.cells[key]
                self.flat[key] = None
            self.crowding_sum -= 2 * last + 1
        self.count -= 1

    def fill(self, members: list[_Guard], lat_step: float, lon_step: float, frame: tuple[int, int, int, int]) -> None:
        """Empty the grid, set its cell size and frame, and put `members` back in."""
        self.reset(lat_step, lon_step, *frame)
        for guard in members:
            lat_r = radians(guard.lat)
            self.add(guard.num, guard.slots[self], self.key_of(guard.lat, guard.lon), lat_r, cos(lat_r), guard.lon)

    def needs_resizing(self) -> bool:
        """Whether the cells no longer suit the number, crowding or spread of the guards held."""
        n = self.count
        if n <= _SCAN_ALL_UP_TO:
            return False
        if n > 2 * self.sized_for or 2 * n < self.sized_for or len(self.far) > self.far_limit:
            return True
        return not self.crowding_low * n <= self.crowding_sum <= self.crowding_high * n


@dataclass(slots=True, eq=False)
class _Guard:
    num: int  # a small integer standing for the guard id inside cells
    lat: float
    lon: float
    roles: frozenset[str]
    available: bool
    # The grids holding this guard (none while unavailable) and its [cell key, index] in each.
    slots: dict[_Grid, list[int]] = field(default_factory=dict)


def _check_point(lat: float, lon: float) -> None:
    # Written so that NaN fails too.
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError(f"position ({lat}, {lon}) is not a latitude/longitude in degrees (lat in [-90, 90], lon in [-180, 180])")


class GuardIndex:
    """Guards' last positions, roles and availability; answers exact k-nearest-available queries."""

    def __init__(self) -> None:
        self._guards: dict[str, _Guard] = {}
        self._ids: list[str | None] = []  # guard number -> id
        self._free_nums: list[int] = []
        # None -> every available guard; a role -> the available guards having it.
        self._grids: dict[str | None, _Grid] = {}

    def __len__(self) -> int:
        return len(self._guards)

    def __contains__(self, guard_id: object) -> bool:
        return guard_id in self._guards

    def upsert(self, guard_id: str, lat: float, lon: float, roles: Iterable[str], available: bool) -> None:
        """Add a guard, or replace everything known about one."""
        _check_point(lat, lon)
        if isinstance(roles, str):
            raise TypeError(f"guard {guard_id!r}: roles must be a set of strings, got the string {roles!r}")
        roles = frozenset(roles)
        for role in roles:
            if not isinstance(role, str):
                raise TypeError(f"guard {guard_id!r}: roles must be strings, got {role!r}")
        if guard_id in self._guards:
            self.remove(guard_id)
        if self._free_nums:
            num = self._free_nums.pop()
            self._ids[num] = guard_id
        else:
            num = len(self._ids)
            self._ids.append(guard_id)
        guard = self._guards[guard_id] = _Guard(num, float(lat), float(lon), roles, bool(available))
        if guard.available:
            self._enter_grids(guard)

    def move(self, guard_id: str, lat: float, lon: float) -> None:
        """Record a guard's new position (the hot path: position reports stream in)."""
        guard = self._guards.get(guard_id)
        if guard is None:
            raise KeyError(f"unknown guard {guard_id!r}: upsert it before moving it")
        _check_point(lat, lon)
        lat = guard.lat = float(lat)
        lon = guard.lon = float(lon)
        if not guard.slots:
            return
        lat_r = radians(lat)
        cos_lat = cos(lat_r)
        for grid, slot in guard.slots.items():
            cx = floor(lon * grid.inv_lon) - grid.fx0
            cy = floor(lat * grid.inv_lat) - grid.fy0
            key = cy * grid.fw + cx if 0 <= cx < grid.fw and 0 <= cy < grid.fh else _FAR
            if key == slot[0]:
                cell = grid.far if key == _FAR else grid.flat[key]
                assert cell is not None, "the guard's slot names an occupied cell"
                j = _STRIDE * slot[1]
                cell[j] = lat_r
                cell[j + 1] = cos_lat
                cell[j + 2] = lon
            else:
                grid.discard(guard.num)
                grid.add(guard.num, slot, key, lat_r, cos_lat, lon)
                if grid.needs_resizing():
                    self._resize(grid)  # rewrites slots in place: safe while iterating

    def set_available(self, guard_id: str, available: bool) -> None:
        """Mark a guard available (on duty, free) or not; only available guards are returned."""
        guard = self._guards.get(guard_id)
        if guard is None:
            raise KeyError(f"unknown guard {guard_id!r}: upsert it first")
        available = bool(available)
        if available == guard.available:
            return
        guard.available = available
        if available:
            self._enter_grids(guard)
        else:
            self._leave_grids(guard)

    def remove(self, guard_id: str) -> None:
        """Forget a guard."""
        guard = self._guards.pop(guard_id, None)
        if guard is None:
            raise KeyError(f"unknown guard {guard_id!r}: nothing to remove")
        if guard.available:
            self._leave_grids(guard)
        self._ids[guard.num] = None
        self._free_nums.append(guard.num)

    def nearest(
        self, lat: float, lon: float, *, k: int = 1, role: str | None = None, exclude: Collection[str] = ()
    ) -> list[tuple[str, float]]:
        """The k nearest available guards (with `role`, not in `exclude`) as (id, metres), nearest first, ties by id."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        _check_point(lat, lon)
        grid = self._grids.get(role)
        if grid is None:
            return []
        lat = float(lat)
        lon = float(lon)
        if exclude and not isinstance(exclude, (set, frozenset, dict)):
            if isinstance(exclude, str):
                raise TypeError(f"exclude must be a collection of guard ids, not the string {exclude!r}")
            exclude = set(exclude)
        qlat_r = radians(lat)
        qcos = cos(qlat_r)
        cells = grid.cells
        flat = grid.flat
        far = grid.far
        ids = self._ids
        found: list[tuple[float, str]] = []  # the best so far, sorted, at most k
        worst = _INF  # the k-th best distance so far
        # Cheap tests that a guard cannot beat `worst`: its latitude (radians) and longitude
        # (degrees) within windows around the query's, then h (haversine of the angle), before
        # the distance itself.
        lat_lo = lon_lo = -_INF
        lat_hi = lon_hi = h_limit = windows_for = _INF
        batch: Iterable[array | None]
        if grid.count <= _SCAN_ALL_UP_TO:
            batch = [*cells.values(), far]
            north = south = east = west = beyond = _INF
        else:
            lat_step, lon_step = grid.lat_step, grid.lon_step
            min_cx, max_cx, min_cy, max_cy = grid.min_cx, grid.max_cx, grid.min_cy, grid.max_cy
            fx0, fy0, fw, fh = grid.fx0, grid.fy0, grid.fw, grid.fh
            origin = fy0 * fw + fx0  # cell (cx, cy) is flat[cy * fw + cx - origin]
            y0 = y1 = floor(lat * grid.inv_lat)
            x0 = x1 = floor(lon * grid.inv_lon)
            batch = (flat[y0 * fw + x0 - origin] if fx0 <= x0 < fx0 + fw and fy0 <= y0 < fy0 + fh else None,)
            # Cells looked up; past the number of occupied cells (guards far apart, query in the
            # void between them) scanning every guard once is cheaper.
            looked = 1
            give_up_at = len(cells)
            # Lower bounds on the distance to any guard beyond each side of the box searched so far.
            # Beyond a parallel: R times the latitude difference. Beyond a meridian dx radians away:
            # R asin(cos(lat) sin(dx)) (distance to its great circle) >= R cos(lat) (dx - dx**3 / 6).
            qcos_r = qcos * _R
            north = _INF if y1 >= max_cy else ((y1 + 1) * lat_step - lat) * _M_PER_DEG
            south = _INF if y0 <= min_cy else (lat - y0 * lat_step) * _M_PER_DEG
            dx = ((x1 + 1) * lon_step - lon) * _RAD_PER_DEG
            east = _INF if x1 >= max_cx else qcos_r * dx * (1 - dx * dx / 6)
            dx = (lon - x0 * lon_step) * _RAD_PER_DEG
            west = _INF if x0 <= min_cx else qcos_r * dx * (1 - dx * dx / 6)
            # Guards outside the frame are at least as far as the frame's nearest edge; their bucket
            # is scanned when that bound is the smallest (at once if the query is outside the frame).
            beyond = _INF
            if far:
                dx_east = ((fx0 + fw) * lon_step - lon) * _RAD_PER_DEG
                dx_west = (lon - fx0 * lon_step) * _RAD_PER_DEG
                beyond = min(
                    ((fy0 + fh) * lat_step - lat) * _M_PER_DEG,
                    (lat - fy0 * lat_step) * _M_PER_DEG,
                    qcos_r * dx_east * (1 - dx_east * dx_east / 6),
                    qcos_r * dx_west * (1 - dx_west * dx_west / 6),
                )
        while True:
            for cell in batch:
                if cell is None:
                    continue
                it = iter(cell)
                for lat_r, cos_lat, glon, num in zip(it, it, it, it):
                    if not lat_lo <= lat_r <= lat_hi or not lon_lo <= glon <= lon_hi:
                        continue
                    # Exactly guardlink.geo.haversine_m(LatLon(lat, lon), guard), with the guard's terms cached.
                    h = sin((lat_r - qlat_r) / 2) ** 2 + qcos * cos_lat * sin(radians(glon - lon) / 2) ** 2
                    if h > h_limit:
                        continue
                    d = _TWO_R * asin(min(1.0, sqrt(h)))
                    if d <= worst:
                        guard_id = ids[int(num)]
                        assert guard_id is not None, "a guard in a cell has an id"
                        if guard_id in exclude:
                            continue
                        insort(found, (d, guard_id))
                        if len(found) > k:
                            del found[k]
                        if len(found) == k:
                            worst = found[-1][0]
                            # Windows made for a larger `worst` stay valid, just looser: redo them
                            # only when `worst` has shrunk by an eighth.
                            if worst < windows_for:
                                windows_for = worst * 0.875
                                lat_lo, lat_hi, lon_lo, lon_hi, h_limit = _windows(worst, qlat_r, qcos, lon)
            bound = min(north, south, east, west, beyond)
            if bound == _INF or worst < bound - _SLACK_M:
                return [(guard_id, d) for d, guard_id in found]
            if bound == beyond:
                batch = (far,)
                beyond = _INF
                continue
            if looked > give_up_at:
                found.clear()
                worst = _INF
                lat_lo = lon_lo = -_INF
                lat_hi = lon_hi = h_limit = windows_for = _INF
                batch = [*cells.values(), far]
                north = south = east = west = beyond = _INF
                continue
            # Grow the box on the side with the smallest bound; rows and columns are clipped to the
            # occupied bounding box (an empty clip must not reach the slice: negative indexes wrap),
            # and empty space before it is jumped over. (Conditional expressions, not min/max: this
            # is the per-query hot path.)
            if bound == north:
                y1 = y1 + 1 if y1 >= min_cy else min_cy
                xa, xb, row = (x0 if x0 > min_cx else min_cx), (x1 if x1 < max_cx else max_cx), y1 * fw - origin
                span = flat[row + xa : row + xb + 1] if xa <= xb else ()
                north = _INF if y1 >= max_cy else ((y1 + 1) * lat_step - lat) * _M_PER_DEG
            elif bound == south:
                y0 = y0 - 1 if y0 <= max_cy else max_cy
                xa, xb, row = (x0 if x0 > min_cx else min_cx), (x1 if x1 < max_cx else max_cx), y0 * fw - origin
                span = flat[row + xa : row + xb + 1] if xa <= xb else ()
                south = _INF if y0 <= min_cy else (lat - y0 * lat_step) * _M_PER_DEG
            elif bound == east:
                x1 = x1 + 1 if x1 >= min_cx else min_cx
                ya, yb, column = (y0 if y0 > min_cy else min_cy), (y1 if y1 < max_cy else max_cy), x1 - origin
                span = flat[ya * fw + column : yb * fw + column + 1 : fw] if ya <= yb else ()
                dx = ((x1 + 1) * lon_step - lon) * _RAD_PER_DEG
                east = _INF if x1 >= max_cx else qcos_r * dx * (1 - dx * dx / 6)
            else:
                x0 = x0 - 1 if x0 <= max_cx else max_cx
                ya, yb, column = (y0 if y0 > min_cy else min_cy), (y1 if y1 < max_cy else max_cy), x0 - origin
                span = flat[ya * fw + column : yb * fw + column + 1 : fw] if ya <= yb else ()
                dx = (lon - x0 * lon_step) * _RAD_PER_DEG
                west = _INF if x0 <= min_cx else qcos_r * dx * (1 - dx * dx / 6)
            looked += len(span)
            batch = span

    def _enter_grids(self, guard: _Guard) -> None:
        lat_r = radians(guard.lat)
        cos_lat = cos(lat_r)
        for kind in (None, *guard.roles):
            grid = self._grids.get(kind)
            if grid is None:
                grid = self._grids[kind] = _Grid()
            slot = guard.slots[grid] = [0, 0]
            grid.add(guard.num, slot, grid.key_of(guard.lat, guard.lon), lat_r, cos_lat, guard.lon)
            if grid.needs_resizing():
                self._resize(grid)

    def _leave_grids(self, guard: _Guard) -> None:
        for kind in (None, *guard.roles):
            grid = self._grids[kind]
            grid.discard(guard.num)
            del guard.slots[grid]
            if grid.count == 0:
                del self._grids[kind]
            elif grid.needs_resizing():
                self._resize(grid)

    def _resize(self, grid: _Grid) -> None:
        """Re-bucket a grid's guards into cells sized for their crowding, in a frame around them."""
        members = [self._guards[guard_id] for num in grid.slots if (guard_id := self._ids[num]) is not None]
        n = len(members)
        lats = [g.lat for g in members]
        lons = [g.lon for g in members]
        ref_cos = max(_MIN_COS, cos(radians((max(lats) + min(lats)) / 2)))
        # First guess: one guard per cell if they were spread evenly over their bounding box ...
        lat_span = max(max(lats) - min(lats), _MIN_STEP_DEG)
        lon_span = max((max(lons) - min(lons)) * ref_cos, _MIN_STEP_DEG)
        step = _clamp_step(sqrt(lat_span * lon_span / n))
        # ... then, as guards cluster, scale cells to the crowding they actually see ...
        step = _clamp_step(step * sqrt(_TARGET_CROWDING / _crowding(lats, lons, step, step / ref_cos)))
        # ... and frame all but the farthest 0.1 % on each side, with room to move; should that
        # take too many cells, the cells grow instead.
        lats.sort()
        lons.sort()
        cut = n // 1000
        while True:
            y_lo, y_hi = floor(lats[cut] / step), floor(lats[-1 - cut] / step)
            x_lo, x_hi = floor(lons[cut] * ref_cos / step), floor(lons[-1 - cut] * ref_cos / step)
            margin_y, margin_x = 2 + (y_hi - y_lo) // 4, 2 + (x_hi - x_lo) // 4
            fw, fh = x_hi - x_lo + 1 + 2 * margin_x, y_hi - y_lo + 1 + 2 * margin_y
            too_many = fw * fh / max(_FRAME_CELLS, _FRAME_CELLS_PER_GUARD * n)
            if too_many <= 1 or step >= _MAX_STEP_DEG:
                break
            step = _clamp_step(step * sqrt(too_many) * 1.01)
        grid.fill(members, step, step / ref_cos, (x_lo - margin_x, y_lo - margin_y, fw, fh))
        crowding = grid.crowding_sum / n
        grid.sized_for = n
        grid.crowding_low = crowding / _RECROWD
        grid.crowding_high = crowding * _RECROWD
        # Re-frame once the overflow bucket holds over ~3 % of the guards and has doubled since
        # (it may not shrink: a frame stops growing at its cell budget). In doubles, like len(far).
        grid.far_limit = max(_STRIDE * 8, _STRIDE * (n >> 5), 2 * len(grid.far))


def _windows(worst: float, qlat_r: float, qcos: float, qlon: float) -> tuple[float, float, float, float, float]:
    """Latitude (radians) and longitude (degrees) windows, and a limit on h, outside which a guard is farther than `worst`."""
    angle = (worst + _SLACK_M) / _R  # the slack is a safe margin over float error in all three tests
    h_limit = sin(min(angle / 2, math.pi / 2)) ** 2 * (1 + 1e-9)
    # Within the latitude window cos(guard lat) >= qcos - angle, and a guard dlon away in longitude
    # is at least asin(cos(guard lat) sin(dlon)) away (its distance to the query's meridian circle).
    low_cos = qcos - angle
    if angle >= math.pi / 2 or low_cos <= sin(angle):
        return qlat_r - angle, qlat_r + angle, -_INF, _INF, h_limit
    reach = math.degrees(asin(sin(angle) / low_cos)) * (1 + 1e-9)
    return qlat_r - angle, qlat_r + angle, qlon - reach, qlon + reach, h_limit


def _clamp_step(step: float) -> float:
    return min(max(step, _MIN_STEP_DEG), _MAX_STEP_DEG)


def _crowding(lats: list[float], lons: list[float], lat_step: float, lon_step: float) -> float:
    """Average number of guards in a guard's own cell, were cells this size."""
    counts = Counter([(floor(lat / lat_step), floor(lon / lon_step)) for lat, lon in zip(lats, lons)])
    return sum(c * c for c in counts.values()) / len(lats)
