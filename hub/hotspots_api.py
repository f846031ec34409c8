"""`GET /api/hotspots`: the console's map layer of the top cells for the coming hours, as GeoJSON.

Same rules as the rest of the API: a session or a bearer token; a chief's map is computed from their communities'
incidents only. Computed on request from the stored incidents (a year back), off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.engine import Engine

from guardlink.districtconfig import DistrictConfig
from hub.accounts import Principal
from hub.hotspots.forecast import DEFAULT_METHOD, METHODS, HotCell, forecast, geojson, grid_for
from hub.hotspots.records import Incidents, from_store, local_days, zone_named

HISTORY_DAYS = 365


def hotspots_router(engine: Engine, config: DistrictConfig, principal: Callable[[Request], Principal]) -> APIRouter:
    """`GET /api/hotspots?hours=4&top=20&method=hawkes`."""
    router = APIRouter(prefix="/api", tags=["hotspots"])
    community_sites: dict[str, Collection[str]] = {c.id: c.sites for c in config.communities}
    signed_in = Depends(principal)

    @router.get("/hotspots")
    def hotspots(
        hours: Annotated[float, Query(gt=0, le=168, description="how far ahead from now")] = 4,
        top: Annotated[int, Query(ge=1, le=500, description="how many cells")] = 20,
        method: Annotated[str, Query(pattern=f"^({'|'.join(METHODS)})$", description="hawkes (default), kde or baseline")] = DEFAULT_METHOD,
        user: Principal = signed_in,
    ) -> dict[str, Any]:
        """The top cells for the next `hours`: a GeoJSON FeatureCollection of squares, each with `rank`, `cell`,
        `score` (expected incidents in the window), `share` (of the district's) and `centre` [lat, lon]."""
        cells, incidents, start = top_hotspots(engine, config, user.visible_sites(community_sites), hours, top, method)
        return geojson(cells, incidents, start, hours, method, config.hotspots.cell_m)

    return router


def top_hotspots(
    engine: Engine, config: DistrictConfig, sites: frozenset[str] | None, hours: float, top: int, method: str = DEFAULT_METHOD,
) -> tuple[list[HotCell], Incidents, float]:
    """The `top` cells for the next `hours` from the stored incidents of `sites` (None: all), the incidents, and the start (local days)."""
    now = datetime.now(timezone.utc)
    zone = config.district.timezone
    incidents = from_store(engine, zone, sites, since=now - timedelta(days=HISTORY_DAYS))
    start = local_days(now, zone_named(zone))
    if len(incidents) == 0 and not config.communities:
        return [], incidents, start
    return forecast(incidents, grid_for(incidents, config, config.hotspots.cell_m), start, hours, method, top), incidents, start
