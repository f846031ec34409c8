"""The police console: a single page (the files in hub/console/, no build step) and the reads it needs beyond the API.

The page logs in through the API, lists what `/api/console/snapshot` gives, then follows `/api/stream` from the change
id that snapshot was read after; it never polls for incidents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVarTuple

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import QueryableAttribute, Session

from guardlink.districtconfig import Community, DistrictConfig
from guardlink.models import Assignment, EscalationStatus
from hub.accounts import Principal
from hub.tables import ChangeRow, EscalationRow, RevisionRow
from hub.views import IncidentSummary, incident_summary

log = logging.getLogger(__name__)
Columns = TypeVarTuple("Columns")  # what a query selects, kept through `visible`

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json", ".png": "image/png", ".svg": "image/svg+xml"}
FINAL_STATUSES = [s.value for s in EscalationStatus if s.final]
BOARD_LIMIT = 2000  # open incidents on the board at most; a district with more has bigger problems than a long list


class ConsoleSettingsView(BaseModel):
    """What the page needs to know about its district."""

    district: str
    name: str
    timezone: str
    ack_within_s: float
    tiles: str | None
    tile_attribution: str


class BoardRow(IncidentSummary):
    """An incident as the live board shows it: its latest state, the site's name and the guards of its latest revision."""

    site_name: str | None
    assignments: list[Assignment]
    evidence: int


class Snapshot(BaseModel):
    """Open incidents as of change `after`: follow `/api/stream?after=` from there and nothing is missed."""

    after: int
    incidents: list[BoardRow]


def console_router(*, engine: Engine, config: DistrictConfig, user: Callable[[Request], Principal]) -> APIRouter:
    """The console's page, files and reads; `user` is the API's dependency that finds who is asking (401 otherwise)."""
    router = APIRouter()
    community_sites: dict[str, Collection[str]] = {c.id: c.sites for c in config.communities}
    asking = Depends(user)  # a default value, not an annotation: annotations are strings here, resolved at module level

    def visible(query: Select[*Columns], column: QueryableAttribute[str], who: Principal) -> Select[*Columns]:
        sites = who.visible_sites(community_sites)
        return query if sites is None else query.where(column.in_(sites))

    # --- the page and its files (public: they hold no data; the page asks the API, which wants a login) --------------

    @router.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=303)

    @router.get("/console", include_in_schema=False)
    def console_bare() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=303)

    @router.get("/console/{path:path}", include_in_schema=False)
    def console_file(path: str) -> FileResponse:
        """index.html for the page itself, else one of its files (the page's own code is never cached stale)."""
        target = (CONSOLE_DIR / (path or "index.html")).resolve()
        if not target.is_relative_to(CONSOLE_DIR) or not target.is_file() or target.suffix not in MEDIA_TYPES:
            raise HTTPException(404, f"no console file {path!r}")
        cache = "public, max-age=86400" if "vendor" in target.relative_to(CONSOLE_DIR).parts else "no-cache"
        return FileResponse(target, media_type=MEDIA_TYPES[target.suffix], headers={"Cache-Control": cache})

    # --- reads -------------------------------------------------------------------------------------------------------

    @router.get("/api/console/settings", response_model=ConsoleSettingsView, tags=["console"])
    def settings(_user: Principal = asking) -> ConsoleSettingsView:
        """The district's name and time zone, when an incident counts as unacknowledged, and the map's tiles (if any)."""
        return ConsoleSettingsView(
            district=config.district.id, name=config.district.name, timezone=config.district.timezone,
            ack_within_s=config.console.ack_within_s, tiles=config.console.tiles, tile_attribution=config.console.tile_attribution,
        )

    def board_rows(db: Session, who: Principal, ids: list[str] | None) -> list[BoardRow]:
        query = visible(
            select(EscalationRow, RevisionRow.document).join(
                RevisionRow, (RevisionRow.escalation_id == EscalationRow.id) & (RevisionRow.revision == EscalationRow.revision)
            ),
            EscalationRow.site, who,
        )
        query = query.where(EscalationRow.id.in_(ids)) if ids is not None else query.where(EscalationRow.status.not_in(FINAL_STATUSES))
        # Annotated: the JSON column leaves SQLAlchemy's rows untyped, which mypy unpacks to `object`.
        rows: Iterable[tuple[EscalationRow, dict[str, Any]]] = db.execute(query.order_by(EscalationRow.detected_at).limit(BOARD_LIMIT))
        return [_board_row(row, document) for row, document in rows]

    @router.get("/api/console/snapshot", response_model=Snapshot, tags=["console"])
    def snapshot(request: Request, who: Principal = asking) -> Snapshot:
        """Every open incident the user may see, as board rows, and the change id they were read after."""
        feed = request.app.state.feed
        with Session(engine) as db:
            # Read first, so whatever commits later comes on the stream. The live feed's position, not the newest id: on
            # PostgreSQL a lower id can still be committing, and the feed has not passed it yet.
            after = feed.upto if feed.started.is_set() else db.scalar(select(func.max(ChangeRow.id))) or 0
            return Snapshot(after=after, incidents=board_rows(db, who, None))

    @router.get("/api/console/incidents", response_model=list[BoardRow], tags=["console"])
    def incidents(incident_id: Annotated[list[str], Query(alias="id", max_length=200)], who: Principal = asking) -> list[BoardRow]:
        """These incidents as board rows, open or not (the page asks after each change); unknown or invisible ones are left out."""
        with Session(engine) as db:
            return board_rows(db, who, incident_id)

    @router.get("/api/console/map", tags=["console"])
    def district_map(who: Principal = asking) -> dict[str, Any]:
        """GeoJSON of the communities the user may see (their outlines) and their sites. A site is placed where its latest
        escalation says it is; one never heard from sits at its community's centre (`approximate`)."""
        visible_sites = who.visible_sites(community_sites)
        communities = [c for c in config.communities if visible_sites is None or c.id in who.communities]
        with Session(engine) as db:
            latest = visible(select(EscalationRow.site, func.max(EscalationRow.id).label("id")), EscalationRow.site, who).group_by(EscalationRow.site).subquery()
            documents: Iterable[tuple[str, dict[str, Any]]] = db.execute(  # annotated: as in board_rows
                select(latest.c.site, RevisionRow.document)
                .join(EscalationRow, EscalationRow.id == latest.c.id)
                .join(RevisionRow, (RevisionRow.escalation_id == EscalationRow.id) & (RevisionRow.revision == EscalationRow.revision))
            )
            placed = {site: document.get("site", {}) for site, document in documents}
        features = [_community_feature(c) for c in communities]
        for community in communities:
            for site in community.sites:
                features.append(_site_feature(site, community, placed.get(site)))
        for site in sorted(placed.keys() - set(config.sites())):  # a site the district file does not place: only if it told us where
            if placed[site].get("location"):
                features.append(_site_feature(site, None, placed[site]))
        return {"type": "FeatureCollection", "features": features}

    return router


def _board_row(row: EscalationRow, document: dict[str, Any]) -> BoardRow:
    return BoardRow(
        **incident_summary(row).model_dump(), site_name=(document.get("site") or {}).get("name"),
        assignments=document.get("assignments", []), evidence=len(document.get("evidence", [])),
    )


def _community_feature(community: Community) -> dict[str, Any]:
    ring = [[lon, lat] for lat, lon in community.outline]
    return {
        "type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
        "properties": {"kind": "community", "id": community.id, "name": community.name, "chief": community.chief, "sites": community.sites},
    }


def _site_feature(site: str, community: Community | None, reported: dict[str, Any] | None) -> dict[str, Any]:
    location = (reported or {}).get("location")
    if location:
        point, approximate = [location["lon"], location["lat"]], False
    else:
        corners = community.outline if community else [(0.0, 0.0)]
        point, approximate = [sum(lon for _, lon in corners) / len(corners), sum(lat for lat, _ in corners) / len(corners)], True
    return {
        "type": "Feature", "geometry": {"type": "Point", "coordinates": point},
        "properties": {"kind": "site", "id": site, "name": (reported or {}).get("name") or site, "community": community.id if community else None, "approximate": approximate},
    }
