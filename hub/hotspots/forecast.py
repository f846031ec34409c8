"""The top cells for the coming hours, as rows or as GeoJSON for the console's map layer and `guardlink hotspots show`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from guardlink.districtconfig import DistrictConfig
from hub.hotspots.evaluate import Method, top_cells
from hub.hotspots.grid import Grid
from hub.hotspots.hawkes import SelfExciting
from hub.hotspots.methods import Baseline, History, KernelDensity
from hub.hotspots.records import Incidents, wall_clock, zone_named

METHODS: dict[str, Callable[[], Method]] = {"hawkes": SelfExciting, "kde": KernelDensity, "baseline": Baseline}
DEFAULT_METHOD = "hawkes"


@dataclass(frozen=True, slots=True)
class HotCell:
    """One of the top cells: its rank (1 = hottest), id, expected incidents (or the method's score) and where it is."""

    rank: int
    cell: int
    score: float
    share: float  # of the whole district's score
    south: float
    west: float
    north: float
    east: float


def grid_for(incidents: Incidents, config: DistrictConfig | None, cell_m: float) -> Grid:
    """A grid covering the incidents and the district's communities."""
    lat, lon = incidents.lat, incidents.lon
    if config is not None:
        corners = [corner for community in config.communities for corner in community.outline]
        lat = np.concatenate([lat, [c[0] for c in corners]])
        lon = np.concatenate([lon, [c[1] for c in corners]])
    return Grid.covering(lat, lon, cell_m)


def forecast(incidents: Incidents, grid: Grid, start: float, hours: float, method: str = DEFAULT_METHOD, top: int = 20) -> list[HotCell]:
    """The `top` cells for [start, start + hours) (local days) by `method`, from the incidents before `start`."""
    history = History.of(incidents, grid)
    scores = METHODS[method]().predict(history, start, hours)
    total = float(scores.sum())
    if total <= 0:
        return []
    chosen = [int(c) for c in top_cells(scores, np.arange(grid.cells), top) if scores[c] > 0]
    return [HotCell(rank, cell, float(scores[cell]), float(scores[cell]) / total, *grid.bounds(cell)) for rank, cell in enumerate(chosen, 1)]


def geojson(cells: list[HotCell], incidents: Incidents, start: float, hours: float, method: str, cell_m: float) -> dict[str, Any]:
    """A FeatureCollection of the cells' squares (GeoJSON: [lon, lat]) with rank, cell, score and share."""
    zone = zone_named(incidents.zone)
    return {
        "type": "FeatureCollection",
        "properties": {
            "method": method,
            "from": wall_clock(start, zone).isoformat(timespec="seconds"),
            "to": wall_clock(start + hours / 24, zone).isoformat(timespec="seconds"),
            "hours": hours,
            "cell_m": cell_m,
            "incidents": len(incidents),
        },
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[[c.west, c.south], [c.east, c.south], [c.east, c.north], [c.west, c.north], [c.west, c.south]]]},
                "properties": {"rank": c.rank, "cell": c.cell, "score": round(c.score, 6), "share": round(c.share, 6),
                               "centre": [round((c.south + c.north) / 2, 6), round((c.west + c.east) / 2, 6)]},
            }
            for c in cells
        ],
    }
