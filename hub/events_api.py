"""Large events through the hub API: define one (guards are called up at once), watch the headcount per sector against
need, call up more, roll calls, release guards for site jobs, stand everyone down.

Who may do what: dispatchers run events (a district-wide mobilisation); chiefs and viewers watch them; site accounts see
nothing. Every change also appends a `changes` row of kind `event` (key: the event id; payload: the headcount), so the
live stream (`/api/stream`) shows the headcount as it moves.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations.
import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from guardlink.districtconfig import DistrictConfig
from hub.accounts import Principal, Role
from hub.events import EventGuardState, EventProblem
from hub.events_store import (
    OPEN,
    EventSpec,
    counts,
    create_event,
    fill,
    record_change,
    release,
    roll_call,
    stand_down,
    start_roll_call,
)
from hub.events_tables import EventGuardRow, EventRow, SectorRow

log = logging.getLogger(__name__)


class RollCallRequest(BaseModel):
    """Ask every guard on the event to confirm within this long."""

    within_s: float = Field(default=300, gt=0, le=3600)


class GuardsRequest(BaseModel):
    """Some of the event's guards; for a stand-down, none means everyone (and the event ends)."""

    guards: list[str] | None = Field(default=None, max_length=20000)
    released: bool = Field(default=True, description="release: true lets them take site jobs, false holds them again")


def events_router(engine: Engine, config: DistrictConfig, principal: Callable[[Request], Principal], notify: asyncio.Event) -> APIRouter:
    """`/api/events...`."""
    router = APIRouter(prefix="/api/events", tags=["events"])

    def watcher(user: Annotated[Principal, Depends(principal)]) -> Principal:
        if user.role is Role.SITE:
            raise HTTPException(403, "site accounts do not see events")
        return user

    def runner(user: Annotated[Principal, Depends(principal)]) -> Principal:
        if user.role is not Role.DISPATCHER:
            raise HTTPException(403, f"user {user.name!r} is a {user.role.value}: only dispatchers run events")
        return user

    Watcher = Annotated[Principal, Depends(watcher)]
    Runner = Annotated[Principal, Depends(runner)]

    def now() -> datetime:
        return datetime.now(timezone.utc)

    def loaded(session: Session, event_id: str) -> EventRow:
        event = session.get(EventRow, event_id)
        if event is None:
            raise HTTPException(404, f"no event {event_id!r}")
        return event

    def summary(session: Session, event: EventRow) -> dict[str, Any]:
        rows = counts(session, event.id)
        return {
            "id": event.id, "name": event.name, "state": event.state, "starts_at": event.starts_at, "ends_at": event.ends_at,
            "needed": sum(c.needed for c in rows), "arrived": sum(c.arrived for c in rows),
            "called": sum(c.states.get(EventGuardState.CALLED, 0) for c in rows), "confirmed": sum(c.states.get(EventGuardState.CONFIRMED, 0) for c in rows),
            "gap": sum(c.gap for c in rows), "roll_call": event.roll_call,
        }

    def detail(session: Session, event: EventRow) -> dict[str, Any]:
        sectors = {s.id: s for s in session.scalars(select(SectorRow).where(SectorRow.event_id == event.id))}
        return {
            **summary(session, event), "venue": event.venue, "briefing": event.briefing, "answer_within_s": event.answer_within_s,
            "arrive_grace_s": event.arrive_grace_s,
            "sectors": [{"id": s.id, "name": s.name, "area": s.area, "needs": s.needs, "centre": [s.lat, s.lon]} for s in sectors.values()],
            "headcount": [c.as_dict() for c in counts(session, event.id)],
        }

    @router.post("", status_code=201)
    def create(spec: EventSpec, user: Runner) -> dict[str, Any]:
        """Define an event and call up guards for every sector and role at once (eligible, free at that time, nearest home
        post first, fair across companies). Answers how many were called; the call-ups go out within a moment."""
        at = now()
        with Session(engine) as session, session.begin():
            try:
                event = create_event(session, spec, at, user.name)
            except EventProblem as exc:
                raise HTTPException(422, str(exc)) from None
            called = fill(session, config, event, at)
            record_change(session, event.id, at)
            result = {**detail(session, event), "called_now": called}
        notify.set()
        log.info("event=event_created id=%s by=%s called=%d", spec.id, user.name, called)
        return result

    @router.get("")
    def listing(_user: Watcher, state: Annotated[str | None, Query(pattern="^(open|ended)$")] = None) -> list[dict[str, Any]]:
        """Every event (newest start first) with its headcount against need."""
        with Session(engine) as session:
            query = select(EventRow).order_by(EventRow.starts_at.desc())
            if state:
                query = query.where(EventRow.state == state)
            return [summary(session, e) for e in session.scalars(query)]

    @router.get("/{event_id}")
    def show(event_id: str, _user: Watcher) -> dict[str, Any]:
        """One event: venue, sectors, and the live headcount per sector and role (needed, called, confirmed, arrived, ...)."""
        with Session(engine) as session:
            return detail(session, loaded(session, event_id))

    @router.get("/{event_id}/guards")
    def guards(event_id: str, _user: Watcher, state: Annotated[list[EventGuardState] | None, Query()] = None,
               sector: Annotated[str | None, Query()] = None) -> list[dict[str, Any]]:
        """The event's guards: sector, role, state, home site and company, times."""
        eg = EventGuardRow
        with Session(engine) as session:
            loaded(session, event_id)
            query = select(eg).where(eg.event_id == event_id).order_by(eg.sector, eg.guard)
            if state:
                query = query.where(eg.state.in_([s.value for s in state]))
            if sector:
                query = query.where(eg.sector == sector)
            return [
                {"guard": r.guard, "sector": r.sector, "role": r.role, "state": r.state, "released": r.released, "site": r.site,
                 "company": r.company, "distance_m": round(r.distance_m, 1), "called_at": r.called_at, "sent_at": r.sent_at,
                 "answered_at": r.answered_at, "arrived_at": r.arrived_at}
                for r in session.scalars(query)
            ]

    @router.post("/{event_id}/fill")
    def call_up_more(event_id: str, user: Runner) -> dict[str, Any]:
        """Call up guards for the gaps now (the hub also does it by itself as declines, timeouts and no-shows come)."""
        at = now()
        with Session(engine) as session, session.begin():
            event = loaded(session, event_id)
            called = fill(session, config, event, at)
            if called:
                record_change(session, event_id, at)
        notify.set()
        log.info("event=event_filled id=%s by=%s called=%d", event_id, user.name, called)
        return {"called_now": called}

    @router.post("/{event_id}/roll-calls", status_code=201)
    def roll_call_start(event_id: str, body: RollCallRequest, user: Runner) -> dict[str, Any]:
        """Ask every guard on the event (coming or there) to confirm within `within_s`."""
        at = now()
        with Session(engine) as session, session.begin():
            event = loaded(session, event_id)
            try:
                start_roll_call(session, event, body.within_s, at)
            except EventProblem as exc:
                raise HTTPException(409, str(exc)) from None
            record_change(session, event_id, at)
            result = roll_call(session, event, at)
        notify.set()
        log.info("event=roll_call id=%s number=%d by=%s asked=%d", event_id, result["number"], user.name, result["asked"])
        return result

    @router.get("/{event_id}/roll-call")
    def roll_call_show(event_id: str, _user: Watcher) -> dict[str, Any]:
        """The latest roll call: asked, answered, and the guards who did not answer (final once `open` is false)."""
        with Session(engine) as session:
            return roll_call(session, loaded(session, event_id), now())

    @router.post("/{event_id}/release")
    def release_guards(event_id: str, body: GuardsRequest, user: Runner) -> dict[str, Any]:
        """Let these guards take site jobs again while on the event (`released: false` holds them again)."""
        if not body.guards:
            raise HTTPException(422, "name the guards to release")
        with Session(engine) as session, session.begin():
            count = release(session, loaded(session, event_id), body.guards, body.released)
        log.info("event=event_release id=%s by=%s guards=%d released=%s", event_id, user.name, count, body.released)
        return {"guards": count, "released": body.released}

    @router.post("/{event_id}/stand-down")
    def stand_down_guards(event_id: str, body: GuardsRequest, user: Runner) -> dict[str, Any]:
        """Stand down some guards, or everyone (no `guards`): the event ends and every guard is told."""
        at = now()
        with Session(engine) as session, session.begin():
            event = loaded(session, event_id)
            if event.state != OPEN:
                raise HTTPException(409, f"event {event_id!r} has ended already")
            count = stand_down(session, event, at, body.guards)
            record_change(session, event_id, at)
        notify.set()
        log.info("event=stand_down id=%s by=%s guards=%d", event_id, user.name, count)
        return {"stood_down": count, "ended": body.guards is None}

    return router
