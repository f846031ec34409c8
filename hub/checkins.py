"""Patrol points and routes: check-ins (a guard's reported position dwelling inside a point's radius, or a scan of the
point's QR code in the guard app), and each route window judged on time, late or missed; late and missed ones alert the
community police chief (a `changes` row of kind `alert` the live stream carries).

Positions are read from the hub's `guards` table (the sites' GuardsReports, as the intake stores them); an edge reports
a guard again only when something changes, so a guard standing still inside a radius keeps the first position's time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from guardlink.districtconfig import DistrictConfig, PatrolPoint, PatrolRoute
from guardlink.geo import LatLon, haversine_m
from guardlink.ids import uuid7
from guardlink.siteconfig import Shift
from hub.accounts import Principal
from hub.field_tables import CheckinRow, PatrolWindowRow
from hub.tables import ChangeKind, ChangeRow, GuardRow

log = logging.getLogger(__name__)

QR_PREFIX = "GLCP"
STALE_POSITION_S = 600  # a position older than this does not keep a guard "inside"


def qr_text(point: PatrolPoint) -> str | None:
    """What the point's QR code says: `GLCP:<point>:<secret>`."""
    return f"{QR_PREFIX}:{point.id}:{point.qr}" if point.qr else None


def scanned_point(code: str, points: Iterable[PatrolPoint]) -> PatrolPoint | None:
    """The point whose QR code this is; None for anything else (a wrong secret, another code)."""
    prefix, _, rest = code.strip().partition(":")
    point_id, _, secret = rest.partition(":")
    if prefix != QR_PREFIX:
        return None
    point = next((p for p in points if p.id == point_id), None)
    if point is None or point.qr is None or not hmac.compare_digest(point.qr.encode(), secret.encode()):
        return None
    return point


@dataclass(slots=True)
class DwellWatch:
    """Since when each guard has been inside each point's radius; a stay long enough is one check-in. Pure."""

    points: list[PatrolPoint]
    dwell_s: float
    inside_since: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (site, guard, point) -> epoch s
    counted: set[tuple[str, str, str]] = field(default_factory=set)  # stays already checked in

    def observe(self, positions: Iterable[tuple[str, str, LatLon, float]], now: float) -> list[tuple[str, str, PatrolPoint, float]]:
        """`positions` (site, guard, point, reported at) -> the check-ins they complete: (site, guard, patrol point, at)."""
        inside: set[tuple[str, str, str]] = set()
        done = []
        for site, guard, where, reported_at in positions:
            if now - reported_at > STALE_POSITION_S:
                continue
            for point in self.points:
                if haversine_m(where, LatLon(point.lat, point.lon)) > point.radius_m:
                    continue
                key = (site, guard, point.id)
                inside.add(key)
                since = self.inside_since.setdefault(key, min(reported_at, now))
                if key not in self.counted and now - since >= self.dwell_s:
                    self.counted.add(key)
                    done.append((site, guard, point, since + self.dwell_s))
        for key in set(self.inside_since) - inside:  # left (or no longer known): a new stay starts again
            del self.inside_since[key]
            self.counted.discard(key)
        return done


@dataclass(frozen=True, slots=True)
class Verdict:
    """A route window's point, judged."""

    route: PatrolRoute
    point: PatrolPoint
    start: datetime
    end: datetime
    outcome: str  # on_time, late, missed
    checked_in_at: datetime | None


def windows(route: PatrolRoute, zone: ZoneInfo, now: datetime, days_back: int = 2) -> list[tuple[datetime, datetime]]:
    """The route's window occurrences that started in the last `days_back` days, up to `now` (aware UTC)."""
    local = now.astimezone(zone)
    found = []
    for back in range(days_back, -1, -1):
        day = (local - timedelta(days=back)).date()
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
        for shift in (Shift.parse(s) for s in route.windows):
            if day.weekday() not in shift.days:
                continue
            length = (shift.end_min - shift.start_min) % (24 * 60) or 24 * 60
            start = midnight + timedelta(minutes=shift.start_min)
            if start <= now:
                found.append((start.astimezone(timezone.utc), (start + timedelta(minutes=length)).astimezone(timezone.utc)))
    return found


def judge(
    routes: Iterable[PatrolRoute], points: dict[str, PatrolPoint], checkins: dict[str, list[datetime]], judged: Collection[tuple[str, str, datetime]],
    zone: ZoneInfo, now: datetime, late_s: float,
) -> list[Verdict]:
    """Each route window's points not judged yet that can be now: on time (a check-in inside the window), late (one
    within `late_s` after it) or missed (none by then). Pure."""
    verdicts = []
    for route in routes:
        for start, end in windows(route, zone, now):
            for point_id in route.points:
                if (route.id, point_id, start) in judged:
                    continue
                times = sorted(t for t in checkins.get(point_id, ()) if start <= t < end + timedelta(seconds=late_s))
                on_time = next((t for t in times if t < end), None)
                if on_time is not None:
                    verdicts.append(Verdict(route, points[point_id], start, end, "on_time", on_time))
                elif times and now >= end:
                    verdicts.append(Verdict(route, points[point_id], start, end, "late", times[0]))
                elif now >= end + timedelta(seconds=late_s):
                    verdicts.append(Verdict(route, points[point_id], start, end, "missed", None))
    return verdicts


def record_checkin(session: Session, config: DistrictConfig, point: PatrolPoint, site: str | None, guard: str, method: str, at: datetime, checkin_id: str | None = None) -> bool:
    """Store a check-in and its `changes` row; False when this id is already stored (a resent scan)."""
    checkin_id = checkin_id or uuid7()
    if session.get(CheckinRow, checkin_id) is not None:
        return False
    session.add(CheckinRow(id=checkin_id, point=point.id, site=site, guard=guard, method=method, at=at))
    community = point.community or (config.community_of(site) if site else None)
    session.add(ChangeRow(at=datetime.now(timezone.utc), kind=ChangeKind.CHECKIN, key=point.id, payload={
        "site": site, "community": community, "point": point.id, "point_name": point.name, "guard": guard, "method": method, "at": at.isoformat(),
    }))
    log.info("event=checkin point=%s guard=%s site=%s method=%s", point.id, guard, site, method)
    return True


def record_verdict(session: Session, config: DistrictConfig, verdict: Verdict, now: datetime) -> None:
    """Keep the verdict; a late or missed one is an alert for the point's community chief."""
    session.add(PatrolWindowRow(route=verdict.route.id, point=verdict.point.id, start=verdict.start, outcome=verdict.outcome, at=now))
    if verdict.outcome == "on_time":
        return
    community = verdict.point.community
    chief = next((c.chief for c in config.communities if c.id == community), None)
    when = f"checked in {verdict.checked_in_at:%H:%M} UTC, after the window" if verdict.checked_in_at else "nobody checked in"
    session.add(ChangeRow(at=now, kind=ChangeKind.ALERT, key=f"{verdict.route.id}/{verdict.point.id}", payload={
        "site": None, "community": community, "chief": chief, "alert": f"checkin_{verdict.outcome}", "route": verdict.route.id,
        "route_name": verdict.route.name, "point": verdict.point.id, "point_name": verdict.point.name,
        "window_start": verdict.start.isoformat(), "window_end": verdict.end.isoformat(),
        "checked_in_at": verdict.checked_in_at.isoformat() if verdict.checked_in_at else None,
        "detail": f"{verdict.point.name} on route {verdict.route.name}: {when}",
    }))
    log.warning("event=checkin_%s route=%s point=%s window_start=%s community=%s", verdict.outcome, verdict.route.id, verdict.point.id, verdict.start.isoformat(), community)


class PatrolWatch:
    """Every `patrol.check_every_s`: dwell check-ins from the guards' reported positions, then the route windows judged."""

    def __init__(self, config: DistrictConfig, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.config, self.engine, self.clock = config, engine, clock
        self.dwell = DwellWatch(list(config.patrol.points), config.patrol.dwell_s)
        self.points = {p.id: p for p in config.patrol.points}
        self.zone = ZoneInfo(config.district.timezone)

    @property
    def enabled(self) -> bool:
        return bool(self.config.patrol.points)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.check)
            except Exception:
                log.exception("event=patrol_check_failed")
            await asyncio.sleep(self.config.patrol.check_every_s)

    def check(self) -> None:
        """One look at positions and windows."""
        now_s = self.clock()
        now = datetime.fromtimestamp(now_s, tz=timezone.utc)
        with Session(self.engine) as session, session.begin():
            rows = session.execute(select(GuardRow.site, GuardRow.guard_id, GuardRow.lat, GuardRow.lon, GuardRow.position_at)
                                   .where(GuardRow.lat.is_not(None), GuardRow.lon.is_not(None), GuardRow.position_at.is_not(None))).all()
            positions = [(r.site, r.guard_id, LatLon(r.lat, r.lon), r.position_at.timestamp()) for r in rows]
            for site, guard, point, at in self.dwell.observe(positions, now_s):
                record_checkin(session, self.config, point, site, guard, "dwell", datetime.fromtimestamp(at, tz=timezone.utc))
            if not self.config.patrol.routes:
                return
            since = now - timedelta(days=3)
            session.flush()
            checkins: dict[str, list[datetime]] = {}
            for point_id, checked_at in session.execute(select(CheckinRow.point, CheckinRow.at).where(CheckinRow.at >= since)).all():
                checkins.setdefault(point_id, []).append(checked_at)
            judged = {(route, point_id, start) for route, point_id, start in session.execute(
                select(PatrolWindowRow.route, PatrolWindowRow.point, PatrolWindowRow.start).where(PatrolWindowRow.start >= since)
            )}
            for verdict in judge(self.config.patrol.routes, self.points, checkins, judged, self.zone, now, self.config.patrol.late_s):
                record_verdict(session, self.config, verdict, now)


def patrol_router(engine: Engine, config: DistrictConfig, principal: Callable[[Request], Principal]) -> APIRouter:
    """`/api/patrol`: the points (with their QR text), check-ins and judged windows."""
    router = APIRouter(prefix="/api/patrol", tags=["patrol"])
    signed_in = Depends(principal)

    def mine(user: Principal) -> Callable[[str | None], bool]:
        return lambda community: user.visible_sites({}) is None or community in user.communities

    @router.get("/points")
    def points(user: Principal = signed_in) -> list[dict[str, Any]]:
        """Patrol points and the routes through them; commanders also get each point's QR text to print."""
        visible = mine(user)
        routes = config.patrol.routes
        return [
            {**p.model_dump(exclude={"qr"}), "routes": [r.id for r in routes if p.id in r.points], **({"qr_text": qr_text(p)} if user.can_command else {})}
            for p in config.patrol.points if visible(p.community)
        ]

    @router.get("/checkins")
    def checkins(point: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100, user: Principal = signed_in) -> list[dict[str, Any]]:
        """Check-ins, newest first."""
        visible = mine(user)
        query = select(CheckinRow).order_by(CheckinRow.at.desc()).limit(limit)
        if point:
            query = query.where(CheckinRow.point == point)
        with Session(engine) as session:
            return [
                {"id": r.id, "point": r.point, "site": r.site, "guard": r.guard, "method": r.method, "at": r.at.isoformat()}
                for r in session.scalars(query) if r.point in {p.id for p in config.patrol.points if visible(p.community)}
            ]

    @router.get("/windows")
    def judged(outcome: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100, user: Principal = signed_in) -> list[dict[str, Any]]:
        """Route windows judged on time, late or missed, newest first."""
        visible = mine(user)
        query = select(PatrolWindowRow).order_by(PatrolWindowRow.start.desc()).limit(limit)
        if outcome:
            query = query.where(PatrolWindowRow.outcome == outcome)
        with Session(engine) as session:
            return [
                {"route": r.route, "point": r.point, "start": r.start.isoformat(), "outcome": r.outcome, "at": r.at.isoformat()}
                for r in session.scalars(query) if (p := config.patrol.point(r.point)) is not None and visible(p.community)
            ]

    return router
