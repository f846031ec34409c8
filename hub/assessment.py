"""Assessment of guards, companies, sites and communities over a period, from what the hub has recorded.

Per guard: incidents handled (escalations the guard accepted), offer -> accept and accept -> on scene times (median and
90th percentile), declines and timeouts, false alarms (incidents the guard handled that ended as one), patrol check-ins
(those that made a patrol window on time, of all), tips (submitted, accepted), training hours in the period, vetting
state at the period's end. Companies, sites and communities pool their guards' times (a median of all their times, not
a median of medians) and add up the counts; an incident counts for the site and community where it happened.

Times come from the `revisions` table: every revision lists each assignment with `offered_at` and `answered_at` (when
its state last changed); one offer (escalation, guard, offered_at) is accepted at the `answered_at` of the first revision
showing it `assigned` (or later), on scene at that of the first showing it `on_scene` (or done after on scene).
Percentiles interpolate linearly between the nearest ranks (as numpy's default): p90 of [1, 2, ..., 10] is 9.1.
Test presses are left out. Incidents belong to the period by their detection time, in the district's time zone.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, case, func, inspect, select
from sqlalchemy.orm import Session

from guardlink.districtconfig import DistrictConfig
from hub.register_tables import CompanyRow, RegisteredGuard, TrainingRow
from hub.tables import EscalationRow, RevisionRow

ACCEPTED = ("assigned", "on_scene", "done")
NOT_RECORDED = None  # a figure the hub has no table for yet: shown as "not recorded"


class PeriodProblem(ValueError):
    """A period that cannot be read; the message says which forms are understood."""


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) in UTC, named as asked (`2026-11`)."""

    name: str
    start: datetime
    end: datetime


def parse_period(text: str, zone: str = "UTC") -> Period:
    """`2026-11` (a month) or `2026` (a year), in the district's time zone."""
    tz = ZoneInfo(zone)
    if m := re.fullmatch(r"(\d{4})-(\d{2})", text.strip()):
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise PeriodProblem(f"period {text!r}: month {month} is not 01..12")
        start = datetime(year, month, 1, tzinfo=tz)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    elif m := re.fullmatch(r"(\d{4})", text.strip()):
        start, end = datetime(int(m[1]), 1, 1, tzinfo=tz), datetime(int(m[1]) + 1, 1, 1, tzinfo=tz)
    else:
        raise PeriodProblem(f"period {text!r}: write a month as 2026-11 or a year as 2026")
    return Period(text.strip(), start.astimezone(timezone.utc), end.astimezone(timezone.utc))


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation between closest ranks; None for no values. Pure."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- the figures --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    """What is counted for one guard, company, site or community."""

    incidents: set[str] = field(default_factory=set)
    accept_s: list[float] = field(default_factory=list)
    on_scene_s: list[float] = field(default_factory=list)
    declines: int = 0
    timeouts: int = 0
    false_alarms: set[str] = field(default_factory=set)
    checkins: int | None = NOT_RECORDED
    checkins_on_time: int | None = NOT_RECORDED
    tips: int | None = NOT_RECORDED
    tips_accepted: int | None = NOT_RECORDED
    training_hours: float = 0.0
    guards: set[str] = field(default_factory=set)

    def add(self, other: Figures) -> None:
        self.incidents |= other.incidents
        self.accept_s += other.accept_s
        self.on_scene_s += other.on_scene_s
        self.declines += other.declines
        self.timeouts += other.timeouts
        self.false_alarms |= other.false_alarms
        self.training_hours += other.training_hours
        self.guards |= other.guards
        for name in ("checkins", "checkins_on_time", "tips", "tips_accepted"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is not None:
                setattr(self, name, (mine or 0) + theirs)

    def row(self) -> dict[str, Any]:
        """The figures as a report's columns (times in seconds, rounded to 0.1 s)."""
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        offers = len(self.accept_s) + self.declines + self.timeouts
        return {
            "guards": len(self.guards), "incidents": len(self.incidents), "offers": offers,
            "accept_median_s": r(percentile(self.accept_s, 0.5)), "accept_p90_s": r(percentile(self.accept_s, 0.9)),
            "on_scene_median_s": r(percentile(self.on_scene_s, 0.5)), "on_scene_p90_s": r(percentile(self.on_scene_s, 0.9)),
            "declines": self.declines, "timeouts": self.timeouts, "false_alarms": len(self.false_alarms),
            "checkins": self.checkins, "checkins_on_time": self.checkins_on_time, "tips": self.tips, "tips_accepted": self.tips_accepted,
            "training_hours": round(self.training_hours, 1),
        }


@dataclass(slots=True)
class Offer:
    """One offer to one guard, as its revisions showed it."""

    escalation: str
    guard: str
    name: str
    site: str
    offered_at: datetime
    accepted_at: datetime | None = None
    on_scene_at: datetime | None = None
    outcome: str = "offered"  # the latest state seen


def offers_of(revisions: Iterable[tuple[str, str, dict[str, Any]]]) -> list[Offer]:
    """Every offer in `(escalation, site, document)` revisions, in revision order per escalation. Pure."""
    found: dict[tuple[str, str, str], Offer] = {}
    for escalation, site, doc in revisions:
        for a in doc.get("assignments", []):
            key = (escalation, a["guard"], a["offered_at"])
            offer = found.get(key)
            if offer is None:
                offer = found[key] = Offer(escalation, a["guard"], a.get("name", a["guard"]), site, _when(a["offered_at"]))
            state, answered = a["state"], _when(a["answered_at"]) if a.get("answered_at") else None
            if state in ACCEPTED and offer.accepted_at is None:
                offer.accepted_at = answered
            if state in ("on_scene", "done") and offer.on_scene_at is None and (state == "on_scene" or offer.outcome == "on_scene"):
                offer.on_scene_at = answered
            offer.outcome = state
    return list(found.values())


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def guard_figures(offers: Iterable[Offer], final_status: dict[str, str]) -> dict[str, Figures]:
    """Per guard: incidents handled, times, declines, timeouts, false alarms. Pure."""
    figures: dict[str, Figures] = defaultdict(Figures)
    for offer in offers:
        f = figures[offer.guard]
        f.guards.add(offer.guard)
        if offer.accepted_at is not None:
            f.incidents.add(offer.escalation)
            f.accept_s.append((offer.accepted_at - offer.offered_at).total_seconds())
            if offer.on_scene_at is not None:
                f.on_scene_s.append((offer.on_scene_at - offer.accepted_at).total_seconds())
            if final_status.get(offer.escalation) == "false_alarm":
                f.false_alarms.add(offer.escalation)
        elif offer.outcome == "declined":
            f.declines += 1
        elif offer.outcome == "timed_out":
            f.timeouts += 1
    return dict(figures)


# --- the report -----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Assessment:
    """The period's figures at every level, the weekly trend, and every time (for the distributions)."""

    period: Period
    community: str | None
    district: str
    guards: list[dict[str, Any]]
    companies: list[dict[str, Any]]
    sites: list[dict[str, Any]]
    communities: list[dict[str, Any]]
    weeks: list[dict[str, Any]]
    accept_s: list[float]
    on_scene_s: list[float]
    total: dict[str, Any]
    recorded: dict[str, bool]  # whether the hub has check-ins and tips at all


def assess(engine: Engine, config: DistrictConfig, period: Period, community: str | None = None, sites: Iterable[str] | None = None) -> Assessment:
    """The assessment of a period (for one community, or the sites a user may see)."""
    site_community = {s: c.id for c in config.communities for s in c.sites}
    wanted: set[str] | None = set(sites) if sites is not None else None
    if community is not None:
        wanted = {s for s, c in site_community.items() if c == community} & (wanted if wanted is not None else set(site_community))
    with Session(engine) as session:
        query = (
            select(RevisionRow.escalation_id, EscalationRow.site, RevisionRow.document)
            .join(EscalationRow, EscalationRow.id == RevisionRow.escalation_id)
            .where(EscalationRow.detected_at >= period.start, EscalationRow.detected_at < period.end, EscalationRow.test.is_(False))
            .order_by(RevisionRow.escalation_id, RevisionRow.revision)
        )
        if wanted is not None:
            query = query.where(EscalationRow.site.in_(wanted))
        # Annotated: the JSON column leaves SQLAlchemy's rows untyped, which mypy unpacks to `object`.
        revision_rows: Iterable[tuple[str, str, dict[str, Any]]] = session.execute(query)
        revisions = [(e, s, d) for e, s, d in revision_rows]
        rows = session.execute(
            select(EscalationRow.id, EscalationRow.status, EscalationRow.detected_at).where(EscalationRow.id.in_({e for e, _, _ in revisions}))
        ).all() if revisions else []
        final = {e: status for e, status, _ in rows}
        detected = {e: when for e, _, when in rows}
        register = {g.id: g for g in session.scalars(select(RegisteredGuard))}
        companies = dict(session.execute(select(CompanyRow.licence, CompanyRow.name)).all())
        hours = dict(session.execute(
            select(TrainingRow.guard, func.sum(TrainingRow.hours)).where(TrainingRow.day >= _day(period.start, config), TrainingRow.day < _day(period.end, config))
            .group_by(TrainingRow.guard)
        ).all())
        checkins, tips, recorded = _field_figures(session, period)
    offers = offers_of(revisions)
    per_guard = guard_figures(offers, final)
    handled_at: dict[str, str] = {}  # guard -> the site of their latest offer (guards not in the register)
    for offer in offers:
        handled_at[offer.guard] = offer.site
    names = {o.guard: o.name for o in offers}
    last_day = _day(period.end, config) - timedelta(days=1)
    in_scope = set(per_guard) | {g for g, row in register.items() if wanted is None or row.site in wanted}
    guards: list[dict[str, Any]] = []
    by_company: defaultdict[str, Figures] = defaultdict(Figures)
    by_site: defaultdict[str, Figures] = defaultdict(Figures)
    by_community: defaultdict[str, Figures] = defaultdict(Figures)
    for guard in sorted(in_scope):
        f = per_guard.get(guard) or Figures(guards={guard})
        f.guards.add(guard)
        row = register.get(guard)
        f.training_hours = float(hours.get(guard, 0.0) or 0.0)
        if recorded["checkins"]:
            f.checkins, f.checkins_on_time = checkins.get(guard, (0, 0))
        if recorded["tips"]:
            f.tips, f.tips_accepted = tips.get(guard, (0, 0))
        site = (row.site if row is not None else None) or handled_at.get(guard)
        company = companies.get(row.company, row.company) if row is not None else "not in the register"
        guards.append({
            "guard": guard, "name": row.name if row is not None else names.get(guard, guard), "company": company, "site": site,
            "community": site_community.get(site or ""), "vetting": _vetting(row, last_day), **f.row(),
        })
        by_company[company].add(f)
    for offer_site, escalation_figures in _per_site(offers, per_guard, final).items():
        by_site[offer_site].add(escalation_figures)
    for posted in guards:  # guards posted at a site count there and in its community even with no incident
        if posted["site"] is not None and (wanted is None or posted["site"] in wanted):
            g = by_site[posted["site"]]
            g.guards.add(posted["guard"])
            g.training_hours += posted["training_hours"]
            for name in ("checkins", "checkins_on_time", "tips", "tips_accepted"):
                if posted[name] is not None:
                    setattr(g, name, (getattr(g, name) or 0) + posted[name])
    for site, f in by_site.items():
        by_community[site_community.get(site) or "(no community)"].add(f)
    total = Figures()
    for f in by_company.values():
        total.add(f)
    weeks = _weeks(offers, final, detected, period, config)
    return Assessment(
        period=period, community=community, district=config.district.name,
        guards=guards,
        companies=[{"company": k, **v.row()} for k, v in sorted(by_company.items())],
        sites=[{"site": k, "community": site_community.get(k), **v.row()} for k, v in sorted(by_site.items())],
        communities=[{"community": k, **v.row()} for k, v in sorted(by_community.items())],
        weeks=weeks, accept_s=total.accept_s, on_scene_s=total.on_scene_s, total=total.row(), recorded=recorded,
    )


def _per_site(offers: list[Offer], per_guard: dict[str, Figures], final: dict[str, str]) -> dict[str, Figures]:
    """The figures of the offers made at each site (where the incident happened)."""
    by_site: dict[str, list[Offer]] = defaultdict(list)
    for offer in offers:
        by_site[offer.site].append(offer)
    result = {}
    for site, site_offers in by_site.items():
        pooled = Figures()
        for f in guard_figures(site_offers, final).values():
            f.guards = set()  # guards count where they are posted
            pooled.add(f)
        result[site] = pooled
    return result


def _weeks(offers: list[Offer], final: dict[str, str], detected: dict[str, datetime], period: Period, config: DistrictConfig) -> list[dict[str, Any]]:
    """Per week (starting Monday, district time) overlapping the period: incidents and response times."""
    tz = ZoneInfo(config.district.timezone)
    first = period.start.astimezone(tz).date()
    monday = first - timedelta(days=first.weekday())
    last = (period.end - timedelta(seconds=1)).astimezone(tz).date()
    weeks: list[dict[str, Any]] = []
    while monday <= last:
        in_week = [o for o in offers if monday <= detected.get(o.escalation, o.offered_at).astimezone(tz).date() < monday + timedelta(days=7)]
        pooled = Figures()
        for f in guard_figures(in_week, final).values():
            pooled.add(f)
        days = sum(1 for d in range(7) if first <= monday + timedelta(days=d) <= last)
        weeks.append({"week": monday.isoformat(), "days": days, **pooled.row()})
        monday += timedelta(days=7)
    return weeks


def _field_figures(session: Session, period: Period) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]], dict[str, bool]]:
    """Per guard (check-ins, of them on time) and (tips, of them accepted), when the hub has those tables."""
    tables = set(inspect(session.connection()).get_table_names())
    recorded = {"checkins": {"checkins", "patrol_windows"} <= tables, "tips": "tips" in tables}
    checkins: dict[str, tuple[int, int]] = {}
    tips: dict[str, tuple[int, int]] = {}
    if recorded["checkins"]:
        from hub.field_tables import CheckinRow, PatrolWindowRow

        on_time = (
            select(PatrolWindowRow.point).where(PatrolWindowRow.point == CheckinRow.point, PatrolWindowRow.outcome == "on_time",
                                                PatrolWindowRow.start <= CheckinRow.at, PatrolWindowRow.at >= CheckinRow.at).exists()
        )
        # Annotated: the untyped sum() leaves SQLAlchemy's rows untyped, which mypy unpacks to `object`.
        checkin_rows: Iterable[tuple[str, int, int | None]] = session.execute(
            select(CheckinRow.guard, func.count(), func.sum(case((on_time, 1), else_=0)))
            .where(CheckinRow.at >= period.start, CheckinRow.at < period.end).group_by(CheckinRow.guard)
        )
        checkins = {g: (int(n), int(ok or 0)) for g, n, ok in checkin_rows}
    if recorded["tips"]:
        from hub.field_tables import TipRow

        tip_rows: Iterable[tuple[str, int, int | None]] = session.execute(
            select(TipRow.guard, func.count(), func.sum(case((TipRow.state == "accepted", 1), else_=0)))
            .where(TipRow.at >= period.start, TipRow.at < period.end).group_by(TipRow.guard)
        )
        tips = {g: (int(n), int(ok or 0)) for g, n, ok in tip_rows}
    return checkins, tips, recorded


def _day(moment: datetime, config: DistrictConfig) -> date:
    return moment.astimezone(ZoneInfo(config.district.timezone)).date()


def _vetting(row: RegisteredGuard | None, on: date) -> str:
    if row is None:
        return "not in the register"
    if row.vetting != "passed":
        return row.vetting
    if row.vetting_until is None or row.vetting_until < on:
        return f"expired {row.vetting_until}" if row.vetting_until else "passed, no end date"
    return f"passed until {row.vetting_until}"
