"""Large events in the hub database: defining one, calling guards up from the register, taking their answers and
check-ins, the checks that run with time (no answer, no-show, arrival by position, the end), roll calls, stand-downs,
and the headcount the API and the live stream show. Every function works in the caller's transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import date, datetime, timedelta
from typing import Any, cast

from pydantic import BaseModel, Field
from sqlalchemy import CursorResult, Table, Update, and_, bindparam, func, select, update
from sqlalchemy.orm import Session

from guardlink.callup import Answer, GuardAnswer
from guardlink.districtconfig import DistrictConfig
from guardlink.geo import LatLon
from guardlink.models import GuardState
from guardlink.yamlconfig import ID_PATTERN
from hub.events import (
    FILLING,
    HOLDING,
    Candidate,
    EventGuardState,
    EventProblem,
    SectorCount,
    answered,
    centre,
    headcount,
    inside,
    plan_callups,
    ring,
)
from hub.events_tables import EventGuardRow, EventRow, SectorRow
from hub.register import Employment, Vetting, district_today, ineligible, insert_many, standing, training_hours
from hub.register_tables import RegisteredGuard
from hub.tables import ChangeRow, GuardRow

OPEN, ENDED = "open", "ended"
CHANGE_KIND = "event"  # `changes` rows of an event's headcount (key: the event id)
ENGAGED = (GuardState.OFFERED.value, GuardState.ASSIGNED.value, GuardState.ON_SCENE.value)
POSITION_MAX_AGE = timedelta(minutes=10)  # a position older than this does not check a guard in


class SectorSpec(BaseModel):
    """A sector of the venue: its area and how many guards of each role it needs."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    area: dict[str, Any] = Field(description="GeoJSON Polygon, [lon, lat] corners")
    needs: dict[str, int] = Field(min_length=1, description="role -> guards needed, e.g. {\"patrol\": 40, \"first_aid\": 4}")


class EventSpec(BaseModel):
    """A large event: where (the venue and its sectors), when, and the briefing guards receive with their call-up."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    venue: dict[str, Any] = Field(description="GeoJSON Polygon, [lon, lat] corners")
    starts_at: datetime
    ends_at: datetime
    sectors: list[SectorSpec] = Field(min_length=1, max_length=200)
    briefing: str = Field(default="", max_length=4000)
    answer_within_s: float = Field(default=900, gt=0, le=86400, description="a call-up not answered this long is 'no answer' and the place goes to another guard")
    arrive_grace_s: float = Field(default=900, ge=0, le=86400, description="confirmed but not checked in this long after the start: a no-show, replaced")


# --- defining and calling up ---------------------------------------------------------------------------------------


def create_event(session: Session, spec: EventSpec, now: datetime, actor: str | None) -> EventRow:
    """Store a new event and its sectors; EventProblem when the definition is unusable."""
    if spec.ends_at <= spec.starts_at:
        raise EventProblem(f"event {spec.id!r}: ends_at {spec.ends_at.isoformat()} is not after starts_at {spec.starts_at.isoformat()}")
    if session.get(EventRow, spec.id) is not None:
        raise EventProblem(f"event {spec.id!r} exists already: choose another id")
    ring(spec.venue, "venue")
    seen: set[str] = set()
    for index, sector in enumerate(spec.sectors):
        if sector.id in seen:
            raise EventProblem(f"sectors[{index}]: sector id {sector.id!r} is used twice")
        seen.add(sector.id)
        if any(count < 0 for count in sector.needs.values()):
            raise EventProblem(f"sectors[{index}] ({sector.id}): a headcount is negative")
    row = EventRow(
        id=spec.id, name=spec.name, venue=spec.venue, starts_at=spec.starts_at, ends_at=spec.ends_at, briefing=spec.briefing,
        answer_within_s=spec.answer_within_s, arrive_grace_s=spec.arrive_grace_s, state=OPEN, roll_call=0, created_by=actor,
        created_at=now, updated_at=now,
    )
    session.add(row)
    for index, sector in enumerate(spec.sectors):
        middle = centre(ring(sector.area, f"sectors[{index}] ({sector.id}).area"))
        session.add(SectorRow(event_id=spec.id, id=sector.id, name=sector.name, area=sector.area, needs=dict(sector.needs), lat=middle.lat, lon=middle.lon))
    session.flush()
    return row


def home_positions(session: Session, config: DistrictConfig) -> tuple[dict[str, LatLon], dict[str, LatLon]]:
    """Where guards are (their last reported position) and where sites are (the mean of their guards' positions, else
    the centre of the site's community outline)."""
    guards: dict[str, LatLon] = {}
    per_site: dict[str, list[LatLon]] = defaultdict(list)
    for row in session.execute(select(GuardRow.site, GuardRow.guard_id, GuardRow.lat, GuardRow.lon).where(GuardRow.lat.is_not(None))):
        point = LatLon(row.lat, row.lon)
        guards[row.guard_id] = point
        per_site[row.site].append(point)
    sites = {site: centre(points) for site, points in per_site.items()}
    for community in config.communities:
        middle = centre([LatLon(lat, lon) for lat, lon in community.outline])
        for site in community.sites:
            sites.setdefault(site, middle)
    return guards, sites


def candidates(session: Session, config: DistrictConfig, event: EventRow, today: date) -> list[Candidate]:
    """Guards who may be called up for `event`: eligible today, not yet asked for this event, not held by another open
    event whose time overlaps, and not on a site job right now."""
    held = select(EventGuardRow.guard).join(EventRow, EventRow.id == EventGuardRow.event_id).where(
        EventRow.state == OPEN, EventRow.id != event.id, EventRow.starts_at < event.ends_at, EventRow.ends_at > event.starts_at,
        EventGuardRow.state.in_([s.value for s in FILLING]), EventGuardRow.released.is_(False),
    )
    asked = select(EventGuardRow.guard).where(EventGuardRow.event_id == event.id)
    engaged = select(GuardRow.guard_id).where(GuardRow.state.in_(ENGAGED))
    g = RegisteredGuard
    query = select(g.id, g.company, g.site, g.roles, g.status, g.vetting, g.vetting_until, g.pre_job_training).where(
        g.status == Employment.ACTIVE.value, g.vetting == Vetting.PASSED.value, g.vetting_until >= today,
        g.id.not_in(held), g.id.not_in(asked), g.id.not_in(engaged),
    )
    rows = session.execute(query).all()
    hours = training_hours(session, today)
    minimum = config.registry.training_hours_min
    guards, sites = home_positions(session, config)
    return [
        Candidate(row.id, row.company, row.site, frozenset(row.roles), guards.get(row.id) or sites.get(row.site or ""))
        for row in rows
        if not ineligible(standing(row, hours.get(row.id, 0.0)), today, minimum)
    ]


def counts(session: Session, event_id: str) -> list[SectorCount]:
    """The event's headcount per sector and role."""
    needs = {s.id: s.needs for s in session.scalars(select(SectorRow).where(SectorRow.event_id == event_id).order_by(SectorRow.id))}
    rows = session.execute(
        select(EventGuardRow.sector, EventGuardRow.role, EventGuardRow.state, func.count())
        .where(EventGuardRow.event_id == event_id).group_by(EventGuardRow.sector, EventGuardRow.role, EventGuardRow.state)
    ).all()
    return headcount(needs, [(sector, role, state, count) for sector, role, state, count in rows])


def fill(session: Session, config: DistrictConfig, event: EventRow, now: datetime) -> int:
    """Call up guards for every gap of an open event (needed minus called, coming or there); how many were called."""
    if event.state != OPEN or now >= event.ends_at:
        return 0
    gaps = [c for c in counts(session, event.id) if c.gap > 0]
    if not gaps:
        return 0
    sectors = {s.id: LatLon(s.lat, s.lon) for s in session.scalars(select(SectorRow).where(SectorRow.event_id == event.id))}
    found = candidates(session, config, event, district_today(config, now))
    picks = plan_callups(found, [(c.sector, c.role, c.gap, sectors[c.sector]) for c in gaps if c.sector in sectors], set())
    insert_many(session, EventGuardRow, [
        {"event_id": event.id, "guard": p.candidate.guard, "site": p.candidate.site, "company": p.candidate.company, "sector": p.sector,
         "role": p.role, "state": EventGuardState.CALLED.value, "released": False, "distance_m": min(p.distance_m, 1e9), "called_at": now,
         "sent_at": None, "answered_at": None, "arrived_at": None, "pending": "callup", "roll_call_asked": 0, "roll_call_answered": 0}
        for p in picks
    ])
    return len(picks)


# --- answers and checks --------------------------------------------------------------------------------------------


def apply_answers(session: Session, answers: Iterable[GuardAnswer], now: datetime) -> set[str]:
    """Guards' answers, check-ins and roll-call replies; the events whose headcount or roll call changed. One executemany
    UPDATE per event (10,000 check-ins in one batch are one statement)."""
    by_event: dict[str, list[GuardAnswer]] = defaultdict(list)
    for answer in answers:
        by_event[answer.event].append(answer)
    table = cast(Table, EventGuardRow.__table__)  # a declarative class's table (typed as any FromClause)
    changed: set[str] = set()
    for event_id, given in by_event.items():
        event = session.get(EventRow, event_id)
        if event is None or event.state != OPEN:
            continue
        c = table.c
        rows = {r.guard: dict(r._mapping) for r in session.execute(
            select(c.guard, c.state, c.sector, c.answered_at, c.arrived_at, c.roll_call_asked, c.roll_call_answered)
            .where(c.event_id == event_id, c.guard.in_({a.guard for a in given}))
        )}
        sectors = set(session.scalars(select(SectorRow.id).where(SectorRow.event_id == event_id)))
        touched: set[str] = set()
        for answer in given:
            row = rows.get(answer.guard)
            if row is None:
                continue
            if answer.answer is Answer.PRESENT:
                if answer.roll_call is not None and row["roll_call_asked"] == answer.roll_call > row["roll_call_answered"]:
                    row["roll_call_answered"] = answer.roll_call
                    touched.add(answer.guard)
                continue
            state = answered(EventGuardState(row["state"]), answer.answer)
            if state is None:
                continue
            row["state"], row["answered_at"] = state.value, row["answered_at"] or answer.at
            if state is EventGuardState.ARRIVED:
                row["arrived_at"] = answer.at
                if answer.sector in sectors:
                    row["sector"] = answer.sector  # checked in where the event needs them, not where called: counted there
            touched.add(answer.guard)
        if touched:
            statement = update(table).where(c.event_id == bindparam("e"), c.guard == bindparam("g")).values(
                state=bindparam("s"), sector=bindparam("c"), answered_at=bindparam("a"), arrived_at=bindparam("r"), roll_call_answered=bindparam("n"))
            session.connection().execute(statement, [
                {"e": event_id, "g": g, "s": rows[g]["state"], "c": rows[g]["sector"], "a": rows[g]["answered_at"], "r": rows[g]["arrived_at"],
                 "n": rows[g]["roll_call_answered"]} for g in touched
            ])
            changed.add(event_id)
    return changed


def check(session: Session, config: DistrictConfig, now: datetime) -> set[str]:
    """What time does to open events: unanswered call-ups, no-shows, arrivals by position, the end; then gaps are filled.
    The events whose headcount changed."""
    changed: set[str] = set()
    for event in session.scalars(select(EventRow).where(EventRow.state == OPEN)).all():
        if now >= event.ends_at:
            stand_down(session, event, now)
            changed.add(event.id)
            continue
        eg = EventGuardRow
        late = _updated(session, update(eg).where(
            eg.event_id == event.id, eg.state == EventGuardState.CALLED.value, eg.sent_at.is_not(None),
            eg.sent_at < now - timedelta(seconds=event.answer_within_s),
        ).values(state=EventGuardState.NO_ANSWER.value, pending=None))
        absent = 0
        if now >= event.starts_at + timedelta(seconds=event.arrive_grace_s):
            absent = _updated(session, update(eg).where(eg.event_id == event.id, eg.state == EventGuardState.CONFIRMED.value)
                              .values(state=EventGuardState.NO_SHOW.value))
        came = arrivals_by_position(session, event, now)
        called = fill(session, config, event, now)
        if late or absent or came or called:
            changed.add(event.id)
    return changed


def arrivals_by_position(session: Session, event: EventRow, now: datetime) -> int:
    """Guards called up or coming whose last reported position (from their site's guards report) lies in a sector:
    checked in there."""
    eg = EventGuardRow
    rows = session.execute(
        select(eg, GuardRow.lat, GuardRow.lon, GuardRow.position_at)
        .join(GuardRow, and_(GuardRow.guard_id == eg.guard, GuardRow.site == eg.site))
        .where(eg.event_id == event.id, eg.state.in_([EventGuardState.CALLED.value, EventGuardState.CONFIRMED.value, EventGuardState.NO_SHOW.value]),
               GuardRow.lat.is_not(None), GuardRow.position_at >= max(event.starts_at - timedelta(hours=2), now - POSITION_MAX_AGE))
    ).all()
    if not rows:
        return 0
    areas = [(s.id, ring(s.area, s.id)) for s in session.scalars(select(SectorRow).where(SectorRow.event_id == event.id).order_by(SectorRow.id))]
    came = 0
    for row, lat, lon, position_at in rows:
        if lat is None or lon is None:  # the query takes placed guards only
            continue
        point = LatLon(lat, lon)
        here = next((sector for sector, corners in areas if inside(point, corners)), None)
        if here is not None:
            row.state, row.arrived_at, row.sector = EventGuardState.ARRIVED.value, position_at, here
            came += 1
    return came


# --- roll calls, stand-downs, releases ------------------------------------------------------------------------------


def start_roll_call(session: Session, event: EventRow, within_s: float, now: datetime) -> int:
    """Ask every guard on the event (coming or there) to confirm within `within_s`; the roll call's number."""
    if event.state != OPEN:
        raise EventProblem(f"event {event.id!r} is {event.state}: no roll call")
    event.roll_call += 1
    event.roll_call_at, event.roll_call_due, event.updated_at = now, now + timedelta(seconds=within_s), now
    eg = EventGuardRow
    session.execute(update(eg).where(eg.event_id == event.id, eg.state.in_([s.value for s in HOLDING]))
                    .values(roll_call_asked=event.roll_call, pending="roll_call"))
    return event.roll_call


def roll_call(session: Session, event: EventRow, now: datetime) -> dict[str, Any]:
    """The latest roll call: who was asked, who answered, and who did not (final once it is due)."""
    eg = EventGuardRow
    asked = session.execute(select(eg.guard, eg.sector, eg.site, eg.roll_call_answered).where(eg.event_id == event.id, eg.roll_call_asked == event.roll_call)
                            .order_by(eg.guard)).all() if event.roll_call else []
    silent = [{"guard": r.guard, "sector": r.sector, "site": r.site} for r in asked if r.roll_call_answered != event.roll_call]
    return {
        "event": event.id, "number": event.roll_call, "started_at": event.roll_call_at, "due_at": event.roll_call_due,
        "open": event.roll_call_due is not None and now < event.roll_call_due, "asked": len(asked), "answered": len(asked) - len(silent),
        "silent": silent,
    }


def stand_down(session: Session, event: EventRow, now: datetime, guards: Collection[str] | None = None) -> int:
    """Stand down the event's guards still called, coming or there (`guards`: only those; None: everyone, and the event
    ends). How many."""
    eg = EventGuardRow
    query = update(eg).where(eg.event_id == event.id, eg.state.in_([*(s.value for s in FILLING), EventGuardState.NO_SHOW.value]))
    if guards is not None:
        query = query.where(eg.guard.in_(list(guards)))
    count = _updated(session, query.values(state=EventGuardState.STOOD_DOWN.value, pending="stand_down"))
    if guards is None:
        event.state, event.updated_at = ENDED, now
    return count


def release(session: Session, event: EventRow, guards: Collection[str], released: bool = True) -> int:
    """Let these guards of the event take site jobs again (or hold them again); how many."""
    eg = EventGuardRow
    return _updated(session, update(eg).where(eg.event_id == event.id, eg.guard.in_(list(guards))).values(released=released))


def _updated(session: Session, statement: Update) -> int:
    """Run an UPDATE; how many rows it changed."""
    return cast("CursorResult[Any]", session.execute(statement)).rowcount


def held_by_site(session: Session) -> dict[str, list[str]]:
    """Per home site, the guards open events hold (coming or there, not released): they get no site offers."""
    eg = EventGuardRow
    held: dict[str, list[str]] = defaultdict(list)
    rows = session.execute(select(eg.site, eg.guard).join(EventRow, EventRow.id == eg.event_id).where(
        EventRow.state == OPEN, eg.state.in_([s.value for s in HOLDING]), eg.released.is_(False), eg.site.is_not(None),
    ).order_by(eg.site, eg.guard))
    for site, guard in rows:
        if site is not None:  # the query takes guards with a home site only
            held[site].append(guard)
    return dict(held)


def record_change(session: Session, event_id: str, now: datetime) -> None:
    """A `changes` row with the event's headcount, for the live stream."""
    event = session.get(EventRow, event_id)
    if event is None:
        return
    rows = counts(session, event_id)
    session.add(ChangeRow(at=now, kind=CHANGE_KIND, key=event_id, payload={
        "event": event_id, "state": event.state, "needed": sum(c.needed for c in rows), "arrived": sum(c.arrived for c in rows),
        "sectors": [c.as_dict() for c in rows], "roll_call": event.roll_call,
    }))
