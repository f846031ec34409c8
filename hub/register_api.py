"""The register through the hub API: companies, guards (list, filter, show, add, edit, training), site rosters.

Who may do what: dispatchers see and edit every guard; a community police chief sees and edits only the guards posted at
sites of their communities (and may post guards only there); viewers read everything and edit nothing; site accounts
see nothing. Another community's guard answers 404, like one that does not exist. ID numbers are taken in full (to be
hashed) and only ever answered masked. Every change is in the audit table (action `register`, subject the guard).
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and `User` is local to the router.
import logging
from collections.abc import Callable, Collection
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from guardlink.districtconfig import DistrictConfig
from guardlink.yamlconfig import ID_PATTERN
from hub.accounts import Accounts, Principal, Role
from hub.register import (
    Employment,
    IdHasher,
    RegisterError,
    Vetting,
    add_training,
    audit_rows,
    bump,
    district_today,
    edit_guard,
    id_number_problem,
    ineligible,
    load_id_key,
    mask_id,
    normalise_id,
    plain,
    site_rosters,
    standing,
    training_hours,
)
from hub.register_tables import CompanyRow, RegisteredGuard, RosterRow, TrainingRow
from hub.tables import SiteRow

log = logging.getLogger(__name__)


class Company(BaseModel):
    """A security company."""

    licence: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    contact: str | None = Field(default=None, max_length=200)


class GuardFields(BaseModel):
    """A guard's editable fields; on an edit only those sent change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=128)
    company: str | None = Field(default=None, description="the company's licence number")
    phone: str | None = Field(default=None, max_length=32)
    roles: list[str] | None = Field(default=None, description="e.g. patrol, first_aid, mediator, information_collector, grid_worker, security_propagandist")
    status: Employment | None = None
    vetting: Vetting | None = None
    vetted_by: str | None = Field(default=None, max_length=128)
    vetted_on: date | None = None
    vetting_until: date | None = None
    pre_job_training: bool | None = None
    assessment_score: float | None = Field(default=None, ge=0, le=100)
    site: str | None = Field(default=None, description="where the guard is posted (a site of the district file)")
    posted_from: date | None = None
    wearable: str | None = Field(default=None, pattern=ID_PATTERN, description="device id of the guard's wearable at that site")


class NewGuard(GuardFields):
    """A guard to add: id, name, company and the national ID number (stored only as a keyed hash and a masked form)."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=128)
    company: str
    id_number: str = Field(min_length=15, max_length=24, description="the national ID number; never stored nor shown in full")


class GuardEdit(GuardFields):
    """Changes to a guard; `id_number` replaces the stored one (hashed)."""

    id_number: str | None = Field(default=None, min_length=15, max_length=24)


class Training(BaseModel):
    """A day's periodic training."""

    day: date
    hours: float = Field(gt=0, le=24)


class GuardEntry(BaseModel):
    """A guard as lists show it: the ID number masked, eligibility worked out for today."""

    id: str
    name: str
    company: str
    company_name: str | None
    phone: str | None
    id_masked: str
    roles: list[str]
    status: str
    vetting: str
    vetted_by: str | None
    vetted_on: date | None
    vetting_until: date | None
    pre_job_training: bool
    assessment_score: float | None
    site: str | None
    community: str | None
    posted_from: date | None
    wearable: str | None
    training_hours_12m: float
    eligible: bool
    reasons: list[str] = Field(description="why the guard may not be sent today (empty when eligible)")
    expiring: bool = Field(description="vetting ends within the district's `expiring_within_days`")


class GuardPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[GuardEntry]


class GuardDetail(GuardEntry):
    training: list[Training]


class SiteRoster(BaseModel):
    """A site's roster: the guards the register allows now, what was last published and what the edge says it applied."""

    site: str
    guards: list[dict[str, Any]]
    published_version: int | None
    published_at: datetime | None
    applied_version: int | None = Field(description="from the edge's status heartbeat; null when it has not reported one")


def register_router(engine: Engine, config: DistrictConfig, principal: Callable[..., Principal], accounts: Accounts) -> APIRouter:
    """The register's routes; `principal` is the API's who-is-asking dependency, `accounts` its audit trail's clock."""
    router = APIRouter(prefix="/api/register", tags=["register"])
    User = Annotated[Principal, Depends(principal)]
    community_sites: dict[str, Collection[str]] = {c.id: c.sites for c in config.communities}
    all_sites = config.sites()
    hasher: list[IdHasher] = []  # loaded on first use: a hub without a key still serves the rest

    def id_hasher() -> IdHasher:
        if not hasher:
            try:
                hasher.append(load_id_key(config.registry))
            except RegisterError as exc:
                raise HTTPException(503, str(exc)) from None
        return hasher[0]

    def today() -> date:
        return district_today(config, accounts.now())

    def may_see(user: Principal) -> Callable[[str | None], bool]:
        sites = user.visible_sites(community_sites)
        return lambda site: sites is None or (site is not None and site in sites)

    def editor(user: Principal) -> Callable[[str | None], bool]:
        if user.role not in (Role.DISPATCHER, Role.CHIEF):
            raise HTTPException(403, f"user {user.name!r} is a {user.role.value}: only dispatchers and community chiefs edit the register")
        return may_see(user)

    def client(request: Request) -> str | None:
        return request.client.host if request.client else None

    def entries(db: Session, rows: list[RegisteredGuard]) -> list[GuardEntry]:
        day = today()
        hours = training_hours(db, day, [r.id for r in rows])
        names = dict(db.execute(select(CompanyRow.licence, CompanyRow.name).where(CompanyRow.licence.in_({r.company for r in rows}))).all())
        soon = day + timedelta(days=config.registry.expiring_within_days)
        out = []
        for r in rows:
            reasons = ineligible(standing(r, hours.get(r.id, 0.0)), day, config.registry.training_hours_min)
            out.append(GuardEntry(
                id=r.id, name=r.name, company=r.company, company_name=names.get(r.company), phone=r.phone, id_masked=r.id_masked, roles=list(r.roles),
                status=r.status, vetting=r.vetting, vetted_by=r.vetted_by, vetted_on=r.vetted_on, vetting_until=r.vetting_until,
                pre_job_training=r.pre_job_training, assessment_score=r.assessment_score, site=r.site, community=config.community_of(r.site) if r.site else None,
                posted_from=r.posted_from, wearable=r.wearable, training_hours_12m=hours.get(r.id, 0.0), eligible=not reasons, reasons=reasons,
                expiring=r.vetting == Vetting.PASSED and r.vetting_until is not None and day <= r.vetting_until <= soon,
            ))
        return out

    def visible_guard(db: Session, guard_id: str, user: Principal) -> RegisteredGuard:
        row = db.get(RegisteredGuard, guard_id)
        if row is None or not may_see(user)(row.site):
            raise HTTPException(404, f"no guard {guard_id!r}")  # another community's guard looks the same as none
        return row

    def hashed(number: str) -> tuple[str, str]:
        number = normalise_id(number)
        if problem := id_number_problem(number):
            raise HTTPException(422, f"id_number: {problem}")
        return id_hasher().digest(number), mask_id(number)

    # --- companies ----------------------------------------------------------------------------------------------

    @router.get("/companies", response_model=list[Company])
    def companies(_user: User) -> list[Company]:
        """Every security company."""
        with Session(engine) as db:
            return [Company(licence=c.licence, name=c.name, contact=c.contact) for c in db.scalars(select(CompanyRow).order_by(CompanyRow.name))]

    @router.put("/companies/{licence}", response_model=Company, responses={403: {}})
    def put_company(licence: str, body: Company, request: Request, user: User) -> Company:
        """Add or change a company (dispatchers only: companies serve the whole district)."""
        if user.role is not Role.DISPATCHER:
            raise HTTPException(403, "only dispatchers add or change security companies")
        if body.licence != licence:
            raise HTTPException(422, f"the body's licence {body.licence!r} is not the path's {licence!r}")
        now = accounts.now()
        with Session(engine) as db, db.begin():
            row = db.get(CompanyRow, licence)
            before = {"name": row.name, "contact": row.contact} if row else {}
            if row is None:
                row = CompanyRow(licence=licence)
                db.add(row)
            row.name, row.contact, row.updated_at = body.name, body.contact, now
            audit_rows(db, [(f"company:{licence}", {"changed" if before else "created": body.model_dump()})], actor=user.name, address=client(request), now=now)
            bump(db, now)
        return body

    # --- guards ---------------------------------------------------------------------------------------------------

    @router.get("/guards", response_model=GuardPage)
    def guards(
        user: User,
        company: Annotated[list[str] | None, Query(description="company licence numbers")] = None,
        community: Annotated[list[str] | None, Query()] = None,
        site: Annotated[list[str] | None, Query()] = None,
        role: Annotated[list[str] | None, Query(description="guards having any of these roles")] = None,
        vetting: Annotated[list[Vetting] | None, Query()] = None,
        status: Annotated[list[Employment] | None, Query()] = None,
        expiring: Annotated[bool, Query(description="only guards whose vetting ends within the district's expiring_within_days")] = False,
        eligible: Annotated[bool | None, Query(description="only guards who may (true) or may not (false) be sent today")] = None,
        q: Annotated[str | None, Query(max_length=64, description="id or name contains")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> GuardPage:
        """Guards of the register the user may see, filtered and paged (by id), with the total matching."""
        query = select(RegisteredGuard)
        sites = user.visible_sites(community_sites)
        if sites is not None:
            query = query.where(RegisteredGuard.site.in_(sites))
        if community:
            query = query.where(RegisteredGuard.site.in_([s for c in community for s in community_sites.get(c, ())]))
        for column, values in ((RegisteredGuard.company, company), (RegisteredGuard.site, site), (RegisteredGuard.vetting, vetting), (RegisteredGuard.status, status)):
            if values:
                query = query.where(column.in_([str(v) for v in values]))
        if expiring:
            day = today()
            query = query.where(RegisteredGuard.vetting == Vetting.PASSED.value, RegisteredGuard.vetting_until.between(day, day + timedelta(days=config.registry.expiring_within_days)))
        if q:
            pattern = f"%{q.lower()}%"
            query = query.where(func.lower(RegisteredGuard.id).like(pattern) | func.lower(RegisteredGuard.name).like(pattern))
        with Session(engine) as db:
            if role or eligible is not None:  # roles live in a JSON list, eligibility needs training sums: filtered here
                rows = [r for r in db.scalars(query.order_by(RegisteredGuard.id)) if not role or set(role) & set(r.roles)]
                items = [e for e in entries(db, rows) if eligible is None or e.eligible == eligible]
                return GuardPage(total=len(items), limit=limit, offset=offset, items=items[offset : offset + limit])
            total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = list(db.scalars(query.order_by(RegisteredGuard.id).limit(limit).offset(offset)))
            return GuardPage(total=total, limit=limit, offset=offset, items=entries(db, rows))

    @router.get("/guards/{guard_id}", response_model=GuardDetail, responses={404: {}})
    def guard(guard_id: str, user: User) -> GuardDetail:
        """One guard with eligibility and training records."""
        with Session(engine) as db:
            row = visible_guard(db, guard_id, user)
            training = [Training(day=t.day, hours=t.hours) for t in db.scalars(select(TrainingRow).where(TrainingRow.guard == guard_id).order_by(TrainingRow.day))]
            return GuardDetail(**entries(db, [row])[0].model_dump(), training=training)

    @router.post("/guards", response_model=GuardDetail, status_code=201, responses={403: {}, 409: {}})
    def add_guard(body: NewGuard, request: Request, user: User) -> GuardDetail:
        """Add a guard; a chief may add only guards posted at their communities' sites."""
        allowed = editor(user)
        if not allowed(body.site):
            raise HTTPException(403, f"site {body.site!r} is outside your communities" if body.site else "a chief adds guards posted at their communities' sites")
        if body.site is not None and body.site not in all_sites:
            raise HTTPException(422, f"no site {body.site!r} in the district file")
        id_hash, masked = hashed(body.id_number)
        now = accounts.now()
        fields = body.model_dump(exclude={"id", "id_number"}, exclude_none=True)
        try:
            with Session(engine) as db, db.begin():
                if db.get(RegisteredGuard, body.id) is not None:
                    raise HTTPException(409, f"guard {body.id!r} exists already: edit it with PATCH")
                if db.get(CompanyRow, body.company) is None:
                    raise HTTPException(422, f"no company with licence {body.company!r}")
                db.add(RegisteredGuard(**{
                    "roles": ["patrol"], "status": Employment.ACTIVE.value, "vetting": Vetting.PENDING.value, "pre_job_training": False, **fields,
                    "id": body.id, "id_hash": id_hash, "id_masked": masked, "updated_at": now,
                }))
                audit_rows(db, [(body.id, {"created": {k: plain(v) for k, v in fields.items()}})], actor=user.name, address=client(request), now=now)
                bump(db, now)
        except IntegrityError:
            raise HTTPException(409, f"ID number {masked} is already registered to another guard") from None
        log.info("event=register_guard_added guard=%s by=%s", body.id, user.name)
        return guard(body.id, user)

    @router.patch("/guards/{guard_id}", response_model=GuardDetail, responses={403: {}, 404: {}, 409: {}})
    def patch_guard(guard_id: str, body: GuardEdit, request: Request, user: User) -> GuardDetail:
        """Change some of a guard's fields (those sent; `null` clears an optional one)."""
        allowed = editor(user)
        changes = body.model_dump(exclude_unset=True, exclude={"id_number"})
        for name in ("name", "company", "roles", "status", "vetting", "pre_job_training"):
            if name in changes and changes[name] is None:
                raise HTTPException(422, f"{name} cannot be cleared")
        now = accounts.now()
        try:
            with Session(engine) as db, db.begin():
                if body.id_number is not None:
                    row = visible_guard(db, guard_id, user)
                    id_hash, masked = hashed(body.id_number)
                    if row.id_hash != id_hash:
                        row.id_hash, row.id_masked = id_hash, masked
                        audit_rows(db, [(guard_id, {"changed": {"id_number": ["(masked)", masked]}})], actor=user.name, address=client(request), now=now)
                        bump(db, now)
                edit_guard(db, guard_id, changes, sites=all_sites, actor=user.name, address=client(request), now=now, allowed=allowed)
        except LookupError:
            raise HTTPException(404, f"no guard {guard_id!r}") from None
        except PermissionError as exc:
            raise HTTPException(403, str(exc)) from None
        except RegisterError as exc:
            raise HTTPException(422, str(exc)) from None
        except IntegrityError:
            raise HTTPException(409, "that ID number is already registered to another guard") from None
        log.info("event=register_guard_changed guard=%s by=%s fields=%s", guard_id, user.name, ",".join(sorted(changes)) or "-")
        return guard(guard_id, user)

    @router.post("/guards/{guard_id}/training", response_model=GuardDetail, responses={403: {}, 404: {}})
    def training(guard_id: str, body: Training, request: Request, user: User) -> GuardDetail:
        """Record a day's periodic training (the same day again corrects its hours)."""
        allowed = editor(user)
        now = accounts.now()
        with Session(engine) as db, db.begin():
            row = visible_guard(db, guard_id, user)
            if not allowed(row.site):
                raise HTTPException(404, f"no guard {guard_id!r}")
            add_training(db, guard_id, body.day, body.hours, actor=user.name, address=client(request), now=now)
        return guard(guard_id, user)

    # --- rosters --------------------------------------------------------------------------------------------------

    def visible_site(site: str, user: Principal) -> None:
        if site not in all_sites or not may_see(user)(site):
            raise HTTPException(404, f"no site {site!r}")

    @router.get("/sites/{site}/roster", response_model=SiteRoster, responses={404: {}})
    def roster(site: str, user: User) -> SiteRoster:
        """The site's roster as the register has it now, the version last published, and the version its edge applied."""
        visible_site(site, user)
        with Session(engine) as db:
            guards = site_rosters(db, config, today(), [site])[site]
            row = db.get(RosterRow, site)
            status = db.get(SiteRow, site)
        applied = ((status.status or {}).get("roster") or {}).get("version") if status is not None else None
        return SiteRoster(
            site=site, guards=[g.model_dump() for g in guards], published_version=row.version if row else None,
            published_at=row.published_at if row else None, applied_version=applied if isinstance(applied, int) else None,
        )

    @router.post("/sites/{site}/roster", status_code=202, responses={403: {}, 404: {}})
    async def publish_roster(site: str, request: Request, user: User) -> dict[str, str]:
        """Ask for the site's roster to be published again now (the hub's roster publisher sends it within a moment)."""
        editor(user)
        visible_site(site, user)

        def ask() -> None:
            now = accounts.now()
            with Session(engine) as db, db.begin():
                row = db.get(RosterRow, site) or RosterRow(site=site, version=0, sha256="", guards=0)
                row.requested = True
                db.add(row)
                audit_rows(db, [(f"roster:{site}", {"requested": True})], actor=user.name, address=client(request), now=now)
                bump(db, now)

        await run_in_threadpool(ask)
        return {"site": site, "status": "requested"}

    return router
