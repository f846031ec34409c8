"""Patrol tasks ("pushes"): the command centre sends guards to a hotspot cell or a patrol point for a time window.

Guards are chosen by role (what the task kind asks for), eligibility (the register's rosters, when the district keeps a
register), distance from where their edge last placed them, and fairness: among the guards near enough, those with the
fewest tasks in the last 30 days come first, so nobody gets every task. Each chosen guard gets a task of their own,
published retained to the guard's site (hub/field.py); the guard's answer comes back as a field report and makes the
task's next revision. A declined task is offered at once to the next guard by the same rules (in the declined task's
community, never to a guard who declined that target and window), as a new task. Every revision is also a `changes` row
of kind `task`, which the live stream carries.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from guardlink.districtconfig import DistrictConfig
from guardlink.geo import LatLon, haversine_m
from guardlink.ids import uuid7
from guardlink.models import GuardState, Location
from guardlink.patrol import PatrolTask, TaskAnswer, TaskKind, TaskState, TaskTarget
from hub.accounts import Principal
from hub.field_tables import TaskRow
from hub.hotspots_api import top_hotspots
from hub.register import district_today, site_rosters
from hub.register_tables import RegisteredGuard
from hub.tables import ChangeKind, ChangeRow, GuardRow

log = logging.getLogger(__name__)

FAIRNESS_DAYS = 30
REOFFER_MAX_DISTANCE_M = 3000  # how far the next guard may be when a declined task is offered again (a push's default)
ROLES: dict[TaskKind, frozenset[str]] = {  # any one of these; empty: any guard
    TaskKind.PATROL: frozenset({"patrol"}),
    TaskKind.HAZARD_INSPECTION: frozenset({"patrol", "grid_worker"}),
    TaskKind.INFORMATION_COLLECTION: frozenset({"information_collector", "grid_worker"}),
    TaskKind.DISPUTE_MEDIATION: frozenset({"mediator", "dispute_mediator"}),
    TaskKind.ANTI_FRAUD: frozenset(),
}
NEXT_STATE: dict[tuple[TaskState, str], TaskState] = {
    (TaskState.OFFERED, "accept"): TaskState.ACCEPTED,
    (TaskState.OFFERED, "decline"): TaskState.DECLINED,
    (TaskState.ACCEPTED, "decline"): TaskState.DECLINED,
    (TaskState.ACCEPTED, "done"): TaskState.DONE,
}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A guard who might be sent: where their edge last placed them, and how many tasks they had lately."""

    site: str
    guard: str
    roles: frozenset[str]
    point: LatLon | None
    recent_tasks: int
    available: bool  # on duty, not busy with an incident or an open task in the window


def choose(
    candidates: Collection[Candidate], target: LatLon, roles: frozenset[str], count: int, max_distance_m: float, exclude: Collection[tuple[str, str]] = (),
) -> list[tuple[Candidate, float]]:
    """The `count` guards to send, with their distances: available, of a wanted role, placed within `max_distance_m`, not
    in `exclude` ((site, guard) pairs); the fewest recent tasks first, then the nearest. Pure."""
    near = []
    for c in candidates:
        if not c.available or c.point is None or (roles and not roles & c.roles) or (c.site, c.guard) in exclude:
            continue
        distance = haversine_m(c.point, target)
        if distance <= max_distance_m:
            near.append((c, distance))
    near.sort(key=lambda pair: (pair[0].recent_tasks, pair[1], pair[0].guard))
    return near[:count]


class TargetRequest(BaseModel):
    """Where: a patrol point of the district file, or a place (a hotspot cell's centre) with a radius."""

    point: str | None = Field(default=None, description="a patrol point id")
    cell: str | None = Field(default=None, max_length=64, description="a hotspot cell id (with lat, lon)")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    radius_m: float = Field(default=150, gt=0, le=50_000)
    name: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _one_place(self) -> TargetRequest:
        if self.point is None and (self.lat is None or self.lon is None):
            raise ValueError("give a patrol point id, or lat and lon")
        return self


class TaskRequest(BaseModel):
    """A push made by hand."""

    kind: TaskKind
    target: TargetRequest
    start: datetime | None = Field(default=None, description="default: now")
    end: datetime | None = Field(default=None, description="default: two hours after the start")
    guards: int = Field(default=1, ge=1, le=20, description="how many guards to send")
    roles: list[str] | None = Field(default=None, description="any of these roles; default: what the kind asks for")
    max_distance_m: float = Field(default=3000, gt=0, le=100_000)
    note: str = Field(default="", max_length=500)


class HotspotPush(BaseModel):
    """Pushes to the top hotspot cells of the coming hours."""

    kind: TaskKind = TaskKind.PATROL
    hours: float = Field(default=4, gt=0, le=48)
    top: int = Field(default=3, ge=1, le=50)
    guards_per_cell: int = Field(default=1, ge=1, le=10)
    max_distance_m: float = Field(default=3000, gt=0, le=100_000)
    note: str = Field(default="", max_length=500)


class Pushed(BaseModel):
    """What a push made: the tasks offered, and how many guards could not be found."""

    tasks: list[dict[str, Any]]
    unfilled: int


def task_change(row: TaskRow, at: datetime) -> ChangeRow:
    """The `changes` row of a task revision."""
    doc = row.document
    payload = {"site": row.site, "community": row.community, "id": row.id, "revision": row.revision, "guard": row.guard, "kind": row.kind,
               "state": row.state, "target": doc["target"], "start": doc["start"], "end": doc["end"]}
    return ChangeRow(at=at, kind=ChangeKind.TASK, key=row.id, payload=payload)


def candidates(session: Session, config: DistrictConfig, sites: Collection[str] | None, start: datetime, end: datetime, now: datetime) -> list[Candidate]:
    """The guards the sites' edges report, with eligibility, recent task counts and open tasks in the window."""
    query = select(GuardRow)
    if sites is not None:
        query = query.where(GuardRow.site.in_(list(sites)))
    guards = list(session.scalars(query))
    eligible: set[tuple[str, str]] | None = None
    if session.scalar(select(func.count()).select_from(RegisteredGuard)):  # a district with a register sends only eligible guards
        rosters = site_rosters(session, config, district_today(config, now))
        eligible = {(site, g.id) for site, roster in rosters.items() for g in roster}
    recent = dict(session.execute(
        select(TaskRow.guard, func.count()).where(TaskRow.created_at >= now - timedelta(days=FAIRNESS_DAYS)).group_by(TaskRow.guard)
    ).all())
    busy = set()
    for row in session.scalars(select(TaskRow).where(TaskRow.state.in_([TaskState.OFFERED.value, TaskState.ACCEPTED.value]))):
        if datetime.fromisoformat(row.document["start"]) < end and start < datetime.fromisoformat(row.document["end"]):
            busy.add((row.site, row.guard))
    return [
        Candidate(
            site=g.site, guard=g.guard_id, roles=frozenset(g.roles or ()),
            point=LatLon(g.lat, g.lon) if g.lat is not None and g.lon is not None else None,
            recent_tasks=recent.get(g.guard_id, 0),
            available=g.state == GuardState.AVAILABLE.value and (g.site, g.guard_id) not in busy and (eligible is None or (g.site, g.guard_id) in eligible),
        )
        for g in guards
    ]


def push(
    session: Session, config: DistrictConfig, *, kind: TaskKind, target: TaskTarget, start: datetime, end: datetime, count: int,
    roles: frozenset[str], max_distance_m: float, note: str, by: str, sites: Collection[str] | None, now: datetime,
    exclude: Collection[tuple[str, str]] = (),
) -> tuple[list[TaskRow], int]:
    """Choose guards and make one offered task for each (rows and changes added to `session`); also how many were not found."""
    pool = candidates(session, config, sites, start, end, now)
    chosen = choose(pool, LatLon(target.location.lat, target.location.lon), roles, count, max_distance_m, exclude)
    rows = []
    for candidate, distance in chosen:
        doc = PatrolTask(
            id=uuid7(), revision=1, site=candidate.site, guard=candidate.guard, kind=kind, state=TaskState.OFFERED, target=target,
            start=start, end=end, note=note, distance_m=round(distance, 1), issued_at=now,
        )
        row = TaskRow(
            id=doc.id, revision=1, published=0, site=candidate.site, community=config.community_of(candidate.site), guard=candidate.guard,
            kind=kind.value, state=doc.state.value, document=doc.model_dump(mode="json", by_alias=True), created_by=by, created_at=now, updated_at=now,
        )
        session.add(row)
        session.add(task_change(row, now))
        rows.append(row)
    return rows, count - len(rows)


def revise(session: Session, row: TaskRow, state: TaskState, now: datetime) -> None:
    """The task's next revision in `state` (to be published to its site again)."""
    doc = PatrolTask.model_validate(row.document).model_copy(update={"revision": row.revision + 1, "state": state, "issued_at": now})
    row.revision, row.state, row.updated_at = doc.revision, state.value, now
    row.document = doc.model_dump(mode="json", by_alias=True)
    session.add(task_change(row, now))


def apply_answer(session: Session, config: DistrictConfig, site: str, answer: TaskAnswer, now: datetime) -> TaskRow | None:
    """A guard's answer from `site`: the task's next revision, or None when it does not fit (another guard's, a repeat, too
    late). A decline also offers the task to the next guard (`reoffer`)."""
    row = session.get(TaskRow, answer.task, with_for_update=True)
    if row is None or row.site != site or row.guard != answer.guard:
        return None
    state = NEXT_STATE.get((TaskState(row.state), answer.answer))
    if state is None:
        return None
    revise(session, row, state, now)
    if state is TaskState.DECLINED:
        reoffer(session, config, row, now)
    return row


def reoffer(session: Session, config: DistrictConfig, declined: TaskRow, now: datetime) -> TaskRow | None:
    """Offer a declined task to the next guard: same kind, target, window and note, among the sites of its community, to
    nobody who declined this target and window before; None when the window is over or no guard fits."""
    doc = PatrolTask.model_validate(declined.document)
    if now >= doc.end:
        return None
    session.flush()  # the decline counts for fairness and frees its guard
    decliners = {
        (r.site, r.guard) for r in session.scalars(select(TaskRow).where(TaskRow.state == TaskState.DECLINED.value, TaskRow.kind == declined.kind))
        if r.document["target"]["id"] == doc.target.id and r.document["start"] == declined.document["start"]
    }
    sites = next((c.sites for c in config.communities if c.id == declined.community), None)
    rows, _ = push(session, config, kind=doc.kind, target=doc.target, start=doc.start, end=doc.end, count=1, roles=ROLES[doc.kind],
                   max_distance_m=max(REOFFER_MAX_DISTANCE_M, doc.distance_m or 0), note=doc.note, by=declined.created_by, sites=sites, now=now,
                   exclude=decliners)
    if rows:
        log.info("event=task_reoffered declined=%s task=%s guard=%s site=%s", declined.id, rows[0].id, rows[0].guard, rows[0].site)
    else:
        log.warning("event=task_unfilled declined=%s target=%s", declined.id, doc.target.id)
    return rows[0] if rows else None


def task_view(row: TaskRow) -> dict[str, Any]:
    """A task as the API shows it: its latest document, and who pushed it when."""
    return {**row.document, "community": row.community, "created_by": row.created_by, "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(), "delivered": row.published >= row.revision}


def tasks_router(engine: Engine, config: DistrictConfig, principal: Callable[[Request], Principal]) -> APIRouter:
    """`/api/tasks`: push by hand or from the hotspots, list, withdraw (hub/field.py publishes each new revision to its site)."""
    router = APIRouter(prefix="/api/tasks", tags=["tasks"])
    community_sites: dict[str, Collection[str]] = {c.id: c.sites for c in config.communities}
    signed_in = Depends(principal)

    def commander(user: Principal) -> Principal:
        if not user.can_command:
            raise HTTPException(403, "only dispatchers and community chiefs push tasks")
        return user

    def made(rows: list[TaskRow], unfilled: int) -> Pushed:
        return Pushed(tasks=[task_view(r) for r in rows], unfilled=unfilled)

    @router.post("", response_model=Pushed, status_code=201)
    def create(body: TaskRequest, user: Principal = signed_in) -> Pushed:
        """Push a task to a patrol point or a place: the chosen guards are offered it at their sites."""
        commander(user)
        now = datetime.now(timezone.utc)
        start = _aware(body.start) if body.start else now
        end = _aware(body.end) if body.end else start + timedelta(hours=2)
        if end <= start:
            raise HTTPException(422, "the window ends before it starts")
        if body.target.point is not None:
            point = config.patrol.point(body.target.point)
            if point is None:
                raise HTTPException(422, f"no patrol point {body.target.point!r} (defined: {', '.join(p.id for p in config.patrol.points) or 'none'})")
            target = TaskTarget(kind="point", id=point.id, name=point.name, location=Location(lat=point.lat, lon=point.lon), radius_m=point.radius_m)
        else:
            assert body.target.lat is not None and body.target.lon is not None
            target = TaskTarget(kind="cell", id=body.target.cell or f"{body.target.lat:.5f},{body.target.lon:.5f}", name=body.target.name,
                                location=Location(lat=body.target.lat, lon=body.target.lon), radius_m=body.target.radius_m)
        roles = frozenset(body.roles) if body.roles is not None else ROLES[body.kind]
        with Session(engine) as session, session.begin():
            rows, unfilled = push(session, config, kind=body.kind, target=target, start=start, end=end, count=body.guards, roles=roles,
                                  max_distance_m=body.max_distance_m, note=body.note, by=user.name, sites=user.visible_sites(community_sites), now=now)
            session.flush()
            return made(rows, unfilled)

    @router.post("/hotspots", response_model=Pushed, status_code=201)
    def from_hotspots(body: HotspotPush, user: Principal = signed_in) -> Pushed:
        """Push a task to each of the top hotspot cells of the coming hours (the same cells as `GET /api/hotspots`)."""
        commander(user)
        sites = user.visible_sites(community_sites)
        cells, _, _ = top_hotspots(engine, config, sites, body.hours, body.top)
        now = datetime.now(timezone.utc)
        half_diagonal = config.hotspots.cell_m * math.sqrt(2) / 2
        rows, unfilled = [], 0
        with Session(engine) as session, session.begin():
            for cell in cells:
                centre = Location(lat=(cell.south + cell.north) / 2, lon=(cell.west + cell.east) / 2)
                target = TaskTarget(kind="cell", id=str(cell.cell), name=f"hotspot #{cell.rank}", location=centre, radius_m=half_diagonal)
                made_rows, missing = push(session, config, kind=body.kind, target=target, start=now, end=now + timedelta(hours=body.hours),
                                          count=body.guards_per_cell, roles=ROLES[body.kind], max_distance_m=body.max_distance_m, note=body.note,
                                          by=user.name, sites=sites, now=now)
                session.flush()  # the next cell's choice sees these tasks (fairness, busy guards)
                rows += made_rows
                unfilled += missing
            return made(rows, unfilled)

    @router.get("")
    def listing(
        state: Annotated[list[TaskState] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        user: Principal = signed_in,
    ) -> list[dict[str, Any]]:
        """Tasks, newest first, in the user's communities."""
        query = select(TaskRow).order_by(TaskRow.created_at.desc(), TaskRow.id.desc()).limit(limit)
        if state:
            query = query.where(TaskRow.state.in_([s.value for s in state]))
        if (sites := user.visible_sites(community_sites)) is not None:
            query = query.where(TaskRow.site.in_(list(sites)))
        with Session(engine) as session:
            return [task_view(r) for r in session.scalars(query)]

    @router.post("/{task_id}/withdraw")
    def withdraw(task_id: str, user: Principal = signed_in) -> dict[str, Any]:
        """Take a task back: the guard's app drops it."""
        commander(user)
        sites = user.visible_sites(community_sites)
        with Session(engine) as session, session.begin():
            row = session.get(TaskRow, task_id)
            if row is None or (sites is not None and row.site not in sites):
                raise HTTPException(404, f"no task {task_id!r}")
            if TaskState(row.state).final:
                raise HTTPException(409, f"the task is already {row.state}")
            revise(session, row, TaskState.WITHDRAWN, datetime.now(timezone.utc))
            return task_view(row)

    return router


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

