"""The district register of guards: ID numbers (keyed hash and mask only), who may be sent (eligibility), the register's
reads and edits, and each site's roster derived from it.

Eligibility, for a guard posted at a site: status active, background vetting passed and not past its `valid until` day,
pre-job training done, and at least the district's minimum hours of periodic training in the last 12 months
(`registry.training_hours_min` in the district file). Only eligible guards are on a site's roster.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, Table, func, insert, select, update
from sqlalchemy.orm import Session

from guardlink.districtconfig import DistrictConfig, RegisterSettings
from guardlink.roster import RosterGuard
from hub.accounts import AuditAction, AuditEntry
from hub.database import Base
from hub.register_tables import CompanyRow, RegisteredGuard, RegisterState, TrainingRow

ID_KEY_ENV = "GUARDLINK_ID_KEY"
TRAINING_WINDOW = timedelta(days=365)
PUBLIC_SECURITY_ROLES = ("security_propagandist", "mediator", "information_collector", "grid_worker")  # besides site roles (patrol, first_aid, gate ...)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_NUMBER = re.compile(r"^\d{17}[\dX]$")


class RegisterError(Exception):
    """A register operation that cannot be done as asked; the message says why and what to do."""


class Employment(StrEnum):
    """A guard's standing with their company."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    LEFT = "left"


class Vetting(StrEnum):
    """The public-security background review."""

    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


# --- national ID numbers ------------------------------------------------------------------------------------------


def normalise_id(text: str) -> str:
    """An ID number as written (spaces, lower-case x) in its stored form."""
    return re.sub(r"\s+", "", text).upper()


def id_number_problem(number: str) -> str | None:
    """Why `number` is not a resident ID number (18 characters, GB 11643 check digit), or None. Never quotes the number."""
    if not _ID_NUMBER.match(number):
        return f"an ID number has 17 digits and a check digit (0-9 or X); this one has {len(number)} characters"
    check = _ID_CHECK[sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True)) % 11]
    if number[17] != check:
        return f"the ID number {mask_id(number)} fails its check digit: a digit is mistyped"
    return None


def mask_id(number: str) -> str:
    """The only form an ID number is shown in: first 4 and last 4 characters, `1501**********1234`."""
    return number[:4] + "*" * max(len(number) - 8, 0) + number[-4:]


class IdHasher:
    """The keyed hash an ID number is stored as (HMAC-SHA256 with the district's secret): equal numbers match, and
    nobody without the key can test guesses against the database."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise RegisterError("the ID-number key is shorter than 16 bytes: make one with `guardlink registry keys`")
        self._key = key

    def digest(self, number: str) -> str:
        return hmac.new(self._key, number.encode(), hashlib.sha256).hexdigest()


def load_id_key(settings: RegisterSettings, base: Path | None = None) -> IdHasher:
    """The district's ID-number hasher: `registry.id_key_file` (relative to `base`), else $GUARDLINK_ID_KEY."""
    if settings.id_key_file:
        path = Path(settings.id_key_file).expanduser()
        path = path if path.is_absolute() or base is None else base / path
        try:
            return IdHasher(path.read_bytes().strip())
        except OSError as exc:
            raise RegisterError(f"registry.id_key_file {path}: {exc.strerror}; make one with `guardlink registry keys --dir DIR`") from None
    key = os.environ.get(ID_KEY_ENV)
    if not key:
        raise RegisterError(f"no ID-number key: set registry.id_key_file in the district file or the {ID_KEY_ENV} environment variable"
                            " (`guardlink registry keys --dir DIR` makes one)")
    return IdHasher(key.strip().encode())


# --- eligibility ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Standing:
    """What eligibility looks at."""

    status: str
    vetting: str
    vetting_until: date | None
    pre_job_training: bool
    training_hours: float  # periodic training in the 12 months up to the day asked about


def ineligible(standing: Standing, today: date, minimum_hours: float) -> list[str]:
    """Why a guard may not be sent today; empty when they may. Pure."""
    reasons = []
    if standing.status != Employment.ACTIVE:
        reasons.append(f"status is {standing.status}")
    if standing.vetting != Vetting.PASSED:
        reasons.append(f"vetting is {standing.vetting}")
    elif standing.vetting_until is None or standing.vetting_until < today:
        reasons.append(f"vetting expired on {standing.vetting_until}" if standing.vetting_until else "vetting has no end date")
    if not standing.pre_job_training:
        reasons.append("no pre-job training")
    if standing.training_hours < minimum_hours:
        reasons.append(f"periodic training {standing.training_hours:g} h in the last 12 months (minimum {minimum_hours:g} h)")
    return reasons


def training_hours(session: Session, today: date, guards: Collection[str] | Any | None = None) -> dict[str, float]:
    """Hours of periodic training per guard in the 12 months up to `today`."""
    query = select(TrainingRow.guard, func.sum(TrainingRow.hours)).where(TrainingRow.day > today - TRAINING_WINDOW, TrainingRow.day <= today)
    if guards is not None:
        query = query.where(TrainingRow.guard.in_(guards if not isinstance(guards, Collection) else list(guards)))
    return {guard: float(hours or 0) for guard, hours in session.execute(query.group_by(TrainingRow.guard))}


def standing(row: Any, hours: float) -> Standing:
    return Standing(row.status, row.vetting, row.vetting_until, row.pre_job_training, hours)


# --- reading and editing ----------------------------------------------------------------------------------------------


GUARD_FIELDS = (
    "name", "company", "phone", "roles", "status", "vetting", "vetted_by", "vetted_on", "vetting_until",
    "pre_job_training", "assessment_score", "site", "posted_from", "wearable",
)


def guard_values(row: RegisteredGuard) -> dict[str, Any]:
    """A guard's editable fields (never the ID hash)."""
    return {name: getattr(row, name) for name in GUARD_FIELDS}


def bump(session: Session, now: datetime) -> None:
    """Count one more change of the register (the roster publisher polls this revision)."""
    statement = update(RegisterState).where(RegisterState.id == 1).values(revision=RegisterState.revision + 1, changed_at=now)
    if cast("CursorResult[Any]", session.execute(statement)).rowcount == 0:  # an UPDATE's result (typed as any Result)
        session.add(RegisterState(id=1, revision=1, changed_at=now))


def revision(session: Session) -> int:
    """The register's revision: it changes with every committed change."""
    return session.scalar(select(RegisterState.revision).where(RegisterState.id == 1)) or 0


def insert_many(session: Session, table: type[Base], rows: list[dict[str, Any]]) -> None:
    """Insert rows in as few round trips as each driver allows (measured: bench/registry.py): psycopg pipelines an
    executemany (4x faster than multi-row INSERTs with RETURNING); sqlite3 runs one row by row, where RETURNING makes
    SQLAlchemy batch them into multi-row INSERTs ("insertmanyvalues")."""
    if not rows:
        return
    connection = session.connection()
    target = cast(Table, table.__table__)  # a declarative class's table (typed as any FromClause)
    if connection.dialect.name == "sqlite":
        connection.execute(insert(target).returning(*target.primary_key.columns), rows).all()
    else:
        connection.execute(insert(target), rows)


def audit_rows(session: Session, entries: Iterable[tuple[str, dict[str, Any]]], *, actor: str | None, address: str | None, now: datetime) -> None:
    """One audit entry per changed guard or company, `(subject, detail)`, in the caller's transaction."""
    insert_many(session, AuditEntry, [
        {"at": now, "actor": actor, "action": AuditAction.REGISTER.value, "subject": subject[:128], "address": address, "detail": detail}
        for subject, detail in entries
    ])


def plain(value: Any) -> Any:
    """A value as JSON takes it (days as ISO text)."""
    return value.isoformat() if isinstance(value, date) else value


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """`{field: [old, new]}` for every field that differs (for the audit trail)."""
    return {k: [plain(before.get(k)), plain(v)] for k, v in after.items() if before.get(k) != v}


def edit_guard(
    session: Session, guard_id: str, changes: dict[str, Any], *, sites: Collection[str], actor: str | None, address: str | None, now: datetime,
    allowed: Callable[[str | None], bool] = lambda site: True,
) -> RegisteredGuard:
    """Change some of a guard's fields (validated by the caller's model); `allowed(site)` says whether the user may act
    on a guard posted at a site (before and after the change). RegisterError when it cannot be done."""
    row = session.get(RegisteredGuard, guard_id)
    if row is None or not allowed(row.site):
        raise LookupError(f"no guard {guard_id!r}")
    unknown = set(changes) - set(GUARD_FIELDS)
    if unknown:
        raise RegisterError(f"guard {guard_id!r}: {', '.join(sorted(unknown))} cannot be edited (editable: {', '.join(GUARD_FIELDS)})")
    if "site" in changes and changes["site"] is not None and changes["site"] not in sites:
        raise RegisterError(f"guard {guard_id!r}: no site {changes['site']!r} in the district file")
    if "site" in changes and not allowed(changes["site"]):
        raise PermissionError(f"guard {guard_id!r}: site {changes['site']!r} is outside your communities")
    if "company" in changes and session.get(CompanyRow, changes["company"]) is None:
        raise RegisterError(f"guard {guard_id!r}: no company with licence {changes['company']!r}")
    before = guard_values(row)
    diff = changed_fields(before, {**before, **changes})
    if not diff:
        return row
    for name, value in changes.items():
        setattr(row, name, value)
    row.updated_at = now
    audit_rows(session, [(guard_id, {"changed": diff})], actor=actor, address=address, now=now)
    bump(session, now)
    return row


def add_training(session: Session, guard_id: str, day: date, hours: float, *, actor: str | None, address: str | None, now: datetime) -> None:
    """Record (or correct) a day's periodic training of a guard."""
    row = session.get(TrainingRow, (guard_id, day))
    before = row.hours if row else None
    if row is None:
        session.add(TrainingRow(guard=guard_id, day=day, hours=hours))
    else:
        row.hours = hours
    session.execute(update(RegisteredGuard).where(RegisteredGuard.id == guard_id).values(updated_at=now))
    audit_rows(session, [(guard_id, {"training": {"day": day.isoformat(), "hours": [before, hours]}})], actor=actor, address=address, now=now)
    bump(session, now)


# --- rosters --------------------------------------------------------------------------------------------------------


def until_moment(day: date | None, tz: ZoneInfo) -> str | None:
    """The end of the last valid day (midnight after it, district time) as ISO 8601 UTC."""
    if day is None:
        return None
    return datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(timezone.utc).isoformat()


def district_today(config: DistrictConfig, now: datetime) -> date:
    """Today's date in the district's time zone."""
    return now.astimezone(ZoneInfo(config.district.timezone)).date()


def site_rosters(session: Session, config: DistrictConfig, today: date, sites: Collection[str] | None = None) -> dict[str, list[RosterGuard]]:
    """Each placed site's roster: the eligible guards posted there (a site with none gets an empty roster), by guard id."""
    wanted = list(sites) if sites is not None else config.sites()
    rosters: dict[str, list[RosterGuard]] = {site: [] for site in wanted}
    hours = training_hours(session, today, select(RegisteredGuard.id).where(RegisteredGuard.site.in_(wanted)).scalar_subquery() if sites is not None else None)
    companies = dict(session.execute(select(CompanyRow.licence, CompanyRow.name)).all())
    tz = ZoneInfo(config.district.timezone)
    minimum = config.registry.training_hours_min
    g = RegisteredGuard
    query = (
        select(g.id, g.name, g.roles, g.wearable, g.company, g.site, g.posted_from, g.status, g.vetting, g.vetting_until, g.pre_job_training)
        .where(g.site.in_(wanted), g.status == Employment.ACTIVE.value, g.vetting == Vetting.PASSED.value, g.vetting_until >= today)
        .order_by(g.id)
    )
    for row in session.execute(query):
        if row.posted_from is not None and row.posted_from > today:
            continue  # posted from a later day
        if ineligible(standing(row, hours.get(row.id, 0.0)), today, minimum):
            continue
        rosters[row.site].append(RosterGuard.model_construct(  # every field comes from a checked register row
            id=row.id, name=row.name, roles=list(row.roles), wearable=row.wearable, company=companies.get(row.company), until=until_moment(row.vetting_until, tz),
        ))
    return rosters
