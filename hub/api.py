"""The command centre's HTTP API (FastAPI on uvicorn): login, incidents, sites, guards, police commands and the live stream."""

from __future__ import annotations

import asyncio
import html
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from gateway.metrics_endpoint import CONTENT_TYPE
from guardlink.districtconfig import DistrictConfig
from guardlink.ids import uuid7
from guardlink.models import EscalationStatus, IncidentKind, PoliceCommand, Severity
from hub.accounts import SESSION_LIFETIME, Accounts, AuditAction, Principal
from hub.assessment_api import assessment_router
from hub.cap_feed import cap_router
from hub.checkins import patrol_router
from hub.console import console_router
from hub.events_api import events_router
from hub.evidence import evidence_router, uploaded_evidence
from hub.hotspots_api import hotspots_router
from hub.login_limits import LoginLimits, retry_after
from hub.register_api import register_router
from hub.stream import Change, ChangeFeed
from hub.tables import ChangeKind, ChangeRow, EscalationRow, GuardRow, RevisionRow, SiteRow
from hub.tasks import tasks_router
from hub.tips import tips_router
from hub.views import (
    CommandEntry,
    CommandRequest,
    CommandSent,
    GuardView,
    IncidentDetail,
    IncidentPage,
    Me,
    SiteView,
    guard_view,
    incident_detail,
    incident_summary,
    site_view,
)

log = logging.getLogger(__name__)

SESSION_COOKIE = "guardlink_session"
KEEPALIVE_S = 15.0
SWAGGER_UI = Path(__file__).resolve().parent / "static" / "swagger-ui"
SWAGGER_UI_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})
FINAL_STATUSES = [s.value for s in EscalationStatus if s.final]

PublishCommand = Callable[[str, PoliceCommand], Awaitable[None]]


class LoginRequest(BaseModel):
    """A user name and password."""

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TooManyFailures(Exception):
    """Logins for this name or from this address are refused for `retry_after_s`."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s


def principal(request: Request) -> Principal:
    """The user behind a bearer token or a session cookie; 401 otherwise."""
    accounts: Accounts = request.app.state.accounts
    found = None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        found = accounts.by_token(token.strip())
    elif cookie := request.cookies.get(SESSION_COOKIE):
        found = accounts.by_session(cookie)
    if found is None:
        raise HTTPException(401, "log in at /login, or send Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
    return found


User = Annotated[Principal, Depends(principal)]


def create_app(
    *,
    engine: Engine,
    config: DistrictConfig,
    publish_command: PublishCommand,
    notify: asyncio.Event | None = None,
    accounts: Accounts | None = None,
    login_limits: LoginLimits = LoginLimits(),
    poll_s: float = 0.1,
    keepalive_s: float = KEEPALIVE_S,
    metrics: Callable[[], bytes] | None = None,
) -> FastAPI:
    """The API over the hub database. `publish_command(site, command)` sends a command to a site (raising when the broker
    refuses it); `notify` is set by whoever commits `changes` rows, to wake the live stream before its next poll."""
    accounts = accounts or Accounts(engine)
    feed = ChangeFeed(engine, notify=notify, poll_s=poll_s)
    community_sites = {c.id: c.sites for c in config.communities}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(feed.run(), name="change-feed")
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title=f"guardlink command centre: {config.district.name}",
        description="Incidents, sites and guards of the district, police commands and a live stream of changes. "
        "Log in at /login (browsers: a session cookie) or send `Authorization: Bearer <token>` (`guardlink hub user token NAME`).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.feed = feed
    app.state.accounts = accounts
    app.include_router(evidence_router(engine, config, principal))
    app.include_router(console_router(engine=engine, config=config, user=principal))
    app.include_router(cap_router(engine, config, principal))
    app.include_router(register_router(engine, config, principal, accounts))
    app.include_router(hotspots_router(engine, config, principal))
    app.include_router(tasks_router(engine, config, principal))
    app.include_router(patrol_router(engine, config, principal))
    app.include_router(tips_router(engine, config, principal))
    app.include_router(events_router(engine, config, principal, feed.notify))
    app.include_router(assessment_router(engine, config, principal))

    # --- who is asking ---------------------------------------------------------------------------------------------

    def visible_sites(user: Principal) -> frozenset[str] | None:
        return user.visible_sites(community_sites)

    def scoped(query: Select, column: Any, user: Principal) -> Select:
        sites = visible_sites(user)
        return query if sites is None else query.where(column.in_(sites))

    def address(request: Request) -> str | None:
        return request.client.host if request.client else None

    # --- public: health and logging in -----------------------------------------------------------------------------

    @app.get("/health", tags=["public"])
    def health() -> JSONResponse:
        """Whether the hub can reach its database (no login needed)."""
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("event=health_failed error=%r", exc)
            return JSONResponse({"status": "database unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "district": config.district.id})

    if metrics is not None:
        @app.get("/metrics", tags=["public"])
        def prometheus_metrics() -> Response:
            """This worker's figures in the Prometheus text format (no login: counts only; hub/metrics.py)."""
            return Response(metrics(), media_type=CONTENT_TYPE)

    @app.get("/login", response_class=HTMLResponse, tags=["public"])
    def login_page(next: str = "/docs", error: str | None = None) -> HTMLResponse:
        """A minimal login form (the console comes later)."""
        return HTMLResponse(_login_html(config.district.name, _local_path(next), error))

    def attempt_login(name: str, password: str, client: str | None) -> Principal | None:
        now = accounts.clock()
        since = now - login_limits.window_s
        waits = [
            retry_after(accounts.failure_times(subject=name, since=since), login_limits.per_user, login_limits.window_s, now),
            retry_after(accounts.failure_times(address=client, since=since), login_limits.per_address, login_limits.window_s, now) if client else None,
        ]
        if wait := max((w for w in waits if w is not None), default=None):
            accounts.audit(AuditAction.LOGIN_LIMITED, actor=None, subject=name, address=client, detail={"retry_after_s": round(wait, 1)})
            log.warning("event=login_limited user=%s address=%s retry_after_s=%.0f", name, client, wait)
            raise TooManyFailures(wait)
        user = accounts.check_password(name, password)
        if user is None:
            accounts.audit(AuditAction.LOGIN_FAILED, actor=None, subject=name, address=client)
            log.warning("event=login_failed user=%s address=%s", name, client)
        return user

    def start_session(request: Request, response: Response, user: Principal) -> None:
        token, _expires = accounts.open_session(user, address(request))
        response.set_cookie(
            SESSION_COOKIE, token, max_age=int(SESSION_LIFETIME.total_seconds()), path="/",
            httponly=True, samesite="strict", secure=request.url.scheme == "https",
        )
        log.info("event=login user=%s address=%s", user.name, address(request))

    @app.post("/api/login", response_model=Me, tags=["session"], responses={401: {}, 429: {}})
    def login(body: LoginRequest, request: Request, response: Response) -> Me | JSONResponse:
        """Log in: sets an HttpOnly, SameSite=Strict session cookie. Repeated failures answer 429 with Retry-After."""
        try:
            user = attempt_login(body.name, body.password, address(request))
        except TooManyFailures as exc:
            return JSONResponse({"detail": "too many failed logins: try again later"}, status_code=429, headers={"Retry-After": str(math.ceil(exc.retry_after_s))})
        if user is None:
            return JSONResponse({"detail": "wrong user name or password"}, status_code=401)
        start_session(request, response, user)
        return _me(user)

    @app.post("/login", include_in_schema=False)
    def login_form(request: Request, name: Annotated[str, Form(max_length=64)], password: Annotated[str, Form(max_length=1024)], next: Annotated[str, Form()] = "/docs") -> Response:
        try:
            user = attempt_login(name, password, address(request))
        except TooManyFailures as exc:
            page = _login_html(config.district.name, _local_path(next), f"Too many failed logins: try again in {math.ceil(exc.retry_after_s)} s.")
            return HTMLResponse(page, status_code=429, headers={"Retry-After": str(math.ceil(exc.retry_after_s))})
        if user is None:
            return HTMLResponse(_login_html(config.district.name, _local_path(next), "Wrong user name or password."), status_code=401)
        response = RedirectResponse(_local_path(next), status_code=303)
        start_session(request, response, user)
        return response

    @app.post("/api/logout", status_code=204, tags=["session"])
    def logout(request: Request, user: User) -> Response:
        """End this browser's session."""
        response = Response(status_code=204)
        if cookie := request.cookies.get(SESSION_COOKIE):
            accounts.close_session(cookie, user, address(request))
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/api/me", response_model=Me, tags=["session"])
    def me(user: User) -> Me:
        """Who is logged in, with which role and communities."""
        return _me(user)

    # --- documentation (behind the login too) ----------------------------------------------------------------------

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_user: User) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> Response:
        try:
            principal(request)
        except HTTPException:
            return RedirectResponse("/login?next=/docs", status_code=303)
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=app.title, swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css", swagger_favicon_url="/docs/static/favicon-32x32.png",
        )

    @app.get("/docs/static/{name}", include_in_schema=False)
    def docs_static(name: str, _user: User) -> FileResponse:
        """Swagger UI, vendored (no CDN at run time)."""
        if name not in SWAGGER_UI_FILES:
            raise HTTPException(404, f"no file {name!r}")
        return FileResponse(SWAGGER_UI / name, headers={"Cache-Control": "private, max-age=86400"})

    # --- reading ---------------------------------------------------------------------------------------------------

    @app.get("/api/incidents", response_model=IncidentPage, tags=["incidents"])
    def incidents(
        user: User,
        status: Annotated[list[EscalationStatus] | None, Query(description="any of these statuses")] = None,
        site: Annotated[list[str] | None, Query()] = None,
        community: Annotated[list[str] | None, Query()] = None,
        kind: Annotated[list[IncidentKind] | None, Query()] = None,
        severity: Annotated[list[Severity] | None, Query()] = None,
        detected_from: Annotated[datetime | None, Query(alias="from", description="detected at or after (ISO 8601; UTC when no zone)")] = None,
        detected_to: Annotated[datetime | None, Query(alias="to", description="detected before")] = None,
        open_only: Annotated[bool, Query(alias="open", description="only incidents not resolved, false alarm or closed")] = False,
        test: Annotated[bool | None, Query(description="only test presses (true) or none of them (false)")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> IncidentPage:
        """Incidents (latest state of each escalation), newest detected first, filtered and paged, with the total matching."""
        query = scoped(select(EscalationRow), EscalationRow.site, user)
        for column, values in ((EscalationRow.status, status), (EscalationRow.site, site), (EscalationRow.community, community), (EscalationRow.kind, kind), (EscalationRow.severity, severity)):
            if values:
                query = query.where(column.in_([str(v) for v in values]))
        if detected_from is not None:
            query = query.where(EscalationRow.detected_at >= _aware(detected_from))
        if detected_to is not None:
            query = query.where(EscalationRow.detected_at < _aware(detected_to))
        if open_only:
            query = query.where(EscalationRow.status.not_in(FINAL_STATUSES))
        if test is not None:
            query = query.where(EscalationRow.test.is_(test))
        with Session(engine) as db:
            total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = db.scalars(query.order_by(EscalationRow.detected_at.desc(), EscalationRow.id.desc()).limit(limit).offset(offset))
            return IncidentPage(total=total, limit=limit, offset=offset, items=[incident_summary(r) for r in rows])

    def visible_incident(db: Session, incident_id: str, user: Principal) -> EscalationRow:
        row = db.get(EscalationRow, incident_id)
        sites = visible_sites(user)
        if row is None or (sites is not None and row.site not in sites):
            raise HTTPException(404, f"no incident {incident_id!r}")  # another community's incident looks the same as none
        return row

    @app.get("/api/incidents/{incident_id}", response_model=IncidentDetail, tags=["incidents"], responses={404: {}})
    def incident(incident_id: str, user: User) -> IncidentDetail:
        """One incident with every revision (status, time, assignments, who acknowledged), its evidence and the commands sent."""
        with Session(engine) as db:
            row = visible_incident(db, incident_id, user)
            revisions = list(db.scalars(select(RevisionRow).where(RevisionRow.escalation_id == incident_id).order_by(RevisionRow.revision)))
            commands = [
                CommandEntry(change_id=c.id, at=c.at, **{k: v for k, v in c.payload.items() if k in ("command", "by", "count", "note")})
                for c in db.scalars(select(ChangeRow).where(ChangeRow.kind == ChangeKind.COMMAND.value, ChangeRow.key == incident_id).order_by(ChangeRow.id))
            ]
            return incident_detail(row, revisions, commands, uploaded_evidence(db, incident_id))

    @app.get("/api/sites", response_model=list[SiteView], tags=["sites"])
    def sites(user: User) -> list[SiteView]:
        """Every site with its liveness: online or offline since when, last heartbeat, backlog, unreceipted revisions."""
        with Session(engine) as db:
            rows = {r.id: r for r in db.scalars(scoped(select(SiteRow), SiteRow.id, user))}
        visible = visible_sites(user)
        placed = [s for s in config.sites() if visible is None or s in visible]
        ordered = placed + sorted(rows.keys() - set(placed))
        return [site_view(s, config.community_of(s), rows.get(s)) for s in ordered]

    @app.get("/api/guards", response_model=list[GuardView], tags=["guards"])
    def guards(user: User, site: Annotated[list[str] | None, Query()] = None) -> list[GuardView]:
        """Every guard's last reported state and position."""
        query = scoped(select(GuardRow), GuardRow.site, user)
        if site:
            query = query.where(GuardRow.site.in_(site))
        with Session(engine) as db:
            return [guard_view(r) for r in db.scalars(query.order_by(GuardRow.site, GuardRow.guard_id))]

    # --- commanding ------------------------------------------------------------------------------------------------

    def load_commandable(incident_id: str, user: Principal) -> EscalationRow:
        with Session(engine, expire_on_commit=False) as db:
            row = visible_incident(db, incident_id, user)
            db.expunge(row)
            return row

    def record_command(command: PoliceCommand, site: str, user: Principal, client: str | None, error: str | None) -> int | None:
        """The audit entry and, when the command went out, its `changes` row: one transaction."""
        payload = {"site": site, **command.model_dump(mode="json", exclude_none=True)}
        with Session(engine) as db, db.begin():
            accounts.add_audit(db, AuditAction.COMMAND, actor=user.name, subject=command.escalation, address=client, detail={**payload, "sent": error is None, **({"error": error} if error else {})})
            if error is not None:
                return None
            change = ChangeRow(at=accounts.now(), kind=ChangeKind.COMMAND.value, key=command.escalation, payload=payload)
            db.add(change)
            db.flush()
            return change.id

    @app.post("/api/incidents/{incident_id}/commands", status_code=202, response_model=CommandSent, tags=["incidents"], responses={403: {}, 404: {}, 409: {}, 503: {}})
    async def command(incident_id: str, body: CommandRequest, request: Request, user: User) -> CommandSent:
        """Send a police command to the incident's site: acknowledge, more_guards (count) or close (note). Viewers may not."""
        if not user.can_command:
            raise HTTPException(403, f"user {user.name!r} is a {user.role.value}: viewers cannot command")
        row = await run_in_threadpool(load_commandable, incident_id, user)
        if EscalationStatus(row.status).final:
            raise HTTPException(409, f"incident {incident_id!r} is {row.status}: nothing more can be commanded")
        doc = PoliceCommand(command=body.command, escalation=incident_id, by=user.name, count=body.count, note=body.note, id=uuid7())
        client = address(request)
        try:
            await publish_command(row.site, doc)
        except Exception as exc:
            await run_in_threadpool(record_command, doc, row.site, user, client, repr(exc))
            log.error("event=command_not_sent escalation=%s site=%s command=%s by=%s error=%r", incident_id, row.site, doc.command.value, user.name, exc)
            raise HTTPException(503, f"the district broker did not take the command ({exc}); try again") from None
        change_id = await run_in_threadpool(record_command, doc, row.site, user, client, None)
        feed.notify.set()
        log.info("event=command_sent escalation=%s site=%s command=%s by=%s change=%s", incident_id, row.site, doc.command.value, user.name, change_id)
        return CommandSent(change_id=change_id or 0, site=row.site, command=doc.model_dump(mode="json", exclude_none=True))

    # --- the live stream -------------------------------------------------------------------------------------------

    @app.get("/api/stream", tags=["stream"], response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
    async def stream(
        request: Request,
        user: User,
        after: Annotated[int | None, Query(ge=0, description="resume after this change id (as Last-Event-ID); 0 for everything")] = None,
        last_event_id: Annotated[str | None, Header(description="set by EventSource when it reconnects")] = None,
    ) -> StreamingResponse:
        """Server-Sent Events, one per committed change (escalation, site, guards, command), `id:` the change id.
        Reconnecting with Last-Event-ID (or ?after=) sends every change missed, in order, then live ones."""
        start = int(last_event_id) if last_event_id and last_event_id.strip().isdigit() else after
        sites = visible_sites(user)

        def visible(change: Change) -> bool:  # a change of no site (a patrol alert) goes to its community's chief
            return sites is None or change.site in sites or (change.site is None and change.payload.get("community") in user.communities)

        async def events() -> AsyncIterator[bytes]:
            yield b"retry: 1000\n\n"
            async for change in feed.changes(start, visible, idle_s=keepalive_s):
                if change is not None:
                    yield change.event()
                    continue
                try:  # a user disabled (or logged out) meanwhile loses the stream within one keepalive
                    await run_in_threadpool(principal, request)
                except HTTPException:
                    log.info("event=stream_closed user=%s reason=credentials_revoked", user.name)
                    return
                yield b": keepalive\n\n"

        log.info("event=stream_opened user=%s after=%s", user.name, start)
        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def _me(user: Principal) -> Me:
    return Me(name=user.name, role=user.role.value, communities=list(user.communities), can_command=user.can_command)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _local_path(target: str) -> str:
    """Only a path on this server: a login form must not become an open redirect."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/docs"


def _login_html(district: str, next_path: str, error: str | None) -> str:
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · guardlink</title>
<style>body{{font:16px system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}}
label,input,button{{display:block;width:100%;box-sizing:border-box;margin:.3rem 0}}input,button{{padding:.5rem;font:inherit}}
.error{{color:#a00}}</style></head>
<body><h1>guardlink</h1><p>{html.escape(district)}</p>{message}
<form method="post" action="/login">
<label for="name">User name</label><input id="name" name="name" autocomplete="username" required maxlength="64" autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{html.escape(next_path)}">
<button type="submit">Log in</button></form></body></html>
"""
