"""The guard app's server at the edge: a phone web app (edge/guard_app/, a PWA) on the site network, so a site with no
internet still dispatches.

It is one more client of the site broker, like a wearable: it hears the offers and pre-alarms the edge sends each
guard, and a guard's answer goes out as the same `Reply` a wearable publishes, into the same dispatch path. On the
district broker it hears the patrol tasks the command centre pushes to the site's guards and sends back task answers,
checkpoint scans and information tips (field reports), kept in order in SQLite next to the outbox (edge/guard_app_queue.py)
and sent again after a broken connection or an edge restart.
Guards log in with the PIN the site file gives them; the token is keyed, so it outlives an edge restart.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field, ValidationError

from edge.guard_app_queue import FieldQueue
from gateway.connection import Client, stay_connected
from guardlink import topics
from guardlink.models import Answer, Location, Offer, PreAlarm, Reply
from guardlink.patrol import TIP_CATEGORIES, TIP_PHOTO_MAX_BYTES, TIP_TEXT_MAX, PatrolTask, ScanCheckin, TaskAnswer, TaskState, Tip
from guardlink.siteconfig import BrokerUrl, GuardApp, SiteConfig, parse_listen

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "guard_app"
STATIC_FILES = {
    "index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css", "sw.js": "text/javascript",
    "manifest.webmanifest": "application/manifest+json", "icon.svg": "image/svg+xml",
}
BODY_MAX_BYTES = (TIP_PHOTO_MAX_BYTES * 4) // 3 + 16 * 1024  # a tip with the largest photo, base64, and its fields
SEEN_IDS = 10_000  # the app's answer ids remembered, so a resent one is not sent twice


def tokens_key(site: str, settings: GuardApp) -> bytes:
    """What keys the login tokens: the secret file's content, else a digest of the site and its PINs."""
    if settings.secret_file:
        return Path(settings.secret_file).expanduser().read_bytes().strip()
    return hashlib.sha256(json.dumps([site, sorted(settings.pins.items())]).encode()).digest()


def token_for(key: bytes, guard: str) -> str:
    return f"{guard}.{hmac.new(key, guard.encode(), hashlib.sha256).hexdigest()}"


def guard_of(key: bytes, token: str) -> str | None:
    """The guard a token was given to; None for a forged one."""
    guard, _, _ = token.partition(".")
    return guard if guard and hmac.compare_digest(token_for(key, guard), token) else None


class Login(BaseModel):
    guard: str = Field(min_length=1, max_length=64)
    pin: str = Field(min_length=1, max_length=12)


class JobAnswer(BaseModel):
    """An answer to an incident offer (or a pre-alarm cancel), with the app's id for it."""

    id: str = Field(min_length=8, max_length=64)
    answer: Answer
    escalation: str | None = Field(default=None, max_length=64)


class TaskReply(BaseModel):
    id: str = Field(min_length=8, max_length=64)
    answer: Literal["accept", "decline", "done"]


class Scan(BaseModel):
    id: str = Field(min_length=8, max_length=64)
    code: str = Field(min_length=1, max_length=200)
    location: Location | None = None


class TipForm(BaseModel):
    id: str = Field(min_length=8, max_length=64)
    category: Literal[TIP_CATEGORIES]  # type: ignore[valid-type]
    text: str = Field(min_length=1, max_length=TIP_TEXT_MAX)
    location: Location | None = None
    photo: str | None = Field(default=None, description="a data: URL (image/jpeg, image/png or image/webp, base64)")


class _QuietServer(uvicorn.Server):
    """uvicorn that leaves signals alone: the edge handles them (uvicorn's own handlers would take SIGTERM from it)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class GuardAppServer:
    """The app's HTTP server and its two broker connections; `run()` until cancelled. `ready` is set once it listens."""

    def __init__(
        self, config: SiteConfig, *, site_broker: BrokerUrl, police_broker: BrokerUrl, clock: Callable[[], float] = time.time, queue_path: Path | None = None,
    ) -> None:
        assert config.guard_app is not None
        self.config, self.settings = config, config.guard_app
        self.site_broker, self.police_broker, self.clock = site_broker, police_broker, clock
        self.site, self.district = config.site.id, config.site.district
        self.key = tokens_key(self.site, self.settings)
        self.offers: dict[str, dict[str, dict[str, Any]]] = {}  # guard -> escalation -> offer (with the guard's own progress)
        self.prealarms: dict[str, dict[str, Any]] = {}  # guard -> pre-alarm (with its deadline)
        self.tasks: dict[str, PatrolTask] = {}  # task id -> latest revision
        self.outgoing = FieldQueue(queue_path, clock)  # field reports waiting for the district broker (None: in memory)
        self.police_changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._site_client: Client | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.url: str | None = None
        self.ready = asyncio.Event()

    async def run(self) -> None:
        host, port = parse_listen(self.settings.listen)
        server = _QuietServer(uvicorn.Config(self.app(), host=host, port=port, log_level="warning", lifespan="off"))
        self._loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(stay_connected(self.site_broker, self._site_session, identifier=f"guardlink-guard-app-{self.site}"))
            tasks.create_task(stay_connected(self.police_broker, self._police_session, identifier=f"guardlink-guard-app-{self.site}-police"))
            serving = tasks.create_task(server.serve())
            while not server.started and not serving.done():  # noqa: ASYNC110  # uvicorn sets a flag, it has no event to wait on
                await asyncio.sleep(0.02)
            if server.started:
                bound = server.servers[0].sockets[0].getsockname()
                self.url = f"http://{bound[0]}:{bound[1]}"
                log.info("event=guard_app_listening url=%s", self.url)
                self.ready.set()
            try:
                await serving
            finally:
                server.should_exit = True

    # -- the brokers ----------------------------------------------------------------------------

    async def _site_session(self, client: Client) -> None:
        await client.subscribe(topics.guard_offer(self.site, "+"), qos=1)
        await client.subscribe(topics.guard_alert(self.site, "+"), qos=1)
        self._site_client = client
        try:
            async for message in client.messages:
                self.heard_site(message.topic.value, message.payload if isinstance(message.payload, bytes) else str(message.payload).encode())
        finally:
            self._site_client = None

    def heard_site(self, topic: str, payload: bytes) -> None:
        """An offer or a pre-alarm for one of the site's guards."""
        guard = topic.split("/")[-2]
        try:
            if topic.endswith("/offer"):
                offer = Offer.model_validate_json(payload)
                jobs = self.offers.setdefault(guard, {})
                if offer.state == "withdrawn":
                    jobs.pop(offer.escalation, None)
                else:
                    jobs[offer.escalation] = {**offer.model_dump(mode="json"), "progress": "offered"}
            else:
                alarm = PreAlarm.model_validate_json(payload)
                self.prealarms[guard] = {**alarm.model_dump(mode="json"), "until": self.clock() + alarm.cancel_within_s}
        except ValidationError as exc:
            log.warning("event=guard_app_ignored topic=%s error=%r", topic, str(exc)[:200])

    async def _police_session(self, client: Client) -> None:
        await client.subscribe(topics.police_tasks_filter(self.district, self.site), qos=1)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._send_reports(client))
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                self.heard_task(message.topic.value.split("/")[-1], payload)

    def heard_task(self, task_id: str, payload: bytes) -> None:
        if not payload:
            self.tasks.pop(task_id, None)
            return
        try:
            task = PatrolTask.model_validate_json(payload)
        except ValidationError as exc:
            log.warning("event=task_ignored task=%s error=%r", task_id, str(exc)[:200])
            return
        known = self.tasks.get(task.id)
        if task.site == self.site and (known is None or known.revision <= task.revision):
            self.tasks[task.id] = task

    async def _send_reports(self, client: Client) -> None:
        """Field reports in order; one is dropped from the queue only once the broker took it."""
        while True:
            self.police_changed.clear()
            while (head := await asyncio.to_thread(self.outgoing.first)) is not None:
                sequence, topic, payload = head
                await client.publish(topic, payload, qos=1)
                await asyncio.to_thread(self.outgoing.remove, sequence)
            await self.police_changed.wait()

    def report(self, report_id: str, document: bytes) -> None:
        """Queue a field report (on disk when this returns) and wake the sender; called from the HTTP worker threads."""
        self.outgoing.put(report_id, topics.police_field(self.district, self.site), document)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.police_changed.set)

    def first_time(self, answer_id: str) -> bool:
        """False for an answer id already handled (the app resends what it is not sure went out)."""
        if answer_id in self._seen:
            return False
        self._seen[answer_id] = None
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        return True

    # -- what a guard sees ----------------------------------------------------------------------

    def state(self, guard: str) -> dict[str, Any]:
        now = self.clock()
        prealarm = self.prealarms.get(guard)
        if prealarm and prealarm["until"] < now:
            self.prealarms.pop(guard, None)
            prealarm = None
        name = next((g.name for g in self.config.guards if g.id == guard), guard)
        tasks = [t.model_dump(mode="json", by_alias=True) for t in self.tasks.values() if t.guard == guard and not t.state.final]
        return {"guard": guard, "name": name, "site": self.config.site.name, "offers": list(self.offers.get(guard, {}).values()),
                "tasks": tasks, "prealarm": prealarm, "at": now}

    async def publish_reply(self, guard: str, reply: Reply) -> None:
        client = self._site_client
        if client is None:
            raise HTTPException(503, "the edge's site broker is not reachable; the app will try again")
        await client.publish(topics.guard_reply(self.site, guard), reply.model_dump_json(exclude_none=True), qos=1)

    # -- HTTP -----------------------------------------------------------------------------------

    def app(self) -> FastAPI:
        app = FastAPI(title=f"guardlink guard app: {self.config.site.name}", docs_url=None, redoc_url=None, openapi_url=None)

        @app.middleware("http")
        async def limits(request: Request, call_next: Callable) -> Any:
            length = request.headers.get("content-length")
            if length and (not length.isdigit() or int(length) > BODY_MAX_BYTES):
                return JSONResponse({"detail": f"too large: at most {BODY_MAX_BYTES} bytes"}, status_code=413)
            response = await call_next(request)
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; object-src 'none'; base-uri 'none'"
            return response

        def who(authorization: Annotated[str | None, Header()] = None) -> str:
            scheme, _, token = (authorization or "").partition(" ")
            guard = guard_of(self.key, token.strip()) if scheme.lower() == "bearer" else None
            if guard is None or guard not in self.settings.pins:
                raise HTTPException(401, "log in with your guard id and PIN")
            return guard

        signed_in = Depends(who)

        @app.get("/")
        def index() -> FileResponse:
            return static("index.html")

        @app.get("/{name}")
        def static(name: str) -> FileResponse:
            if name not in STATIC_FILES:
                raise HTTPException(404, f"no file {name!r}")
            return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

        @app.post("/api/login")
        def login(body: Login) -> dict[str, str]:
            pin = self.settings.pins.get(body.guard)
            if pin is None or not hmac.compare_digest(pin.encode(), body.pin.encode()):
                log.warning("event=guard_app_login_failed guard=%s", body.guard)
                raise HTTPException(401, "wrong guard id or PIN")
            return {"token": token_for(self.key, body.guard), "guard": body.guard}

        @app.get("/api/state")
        def state(guard: str = signed_in) -> dict[str, Any]:
            return self.state(guard)

        @app.post("/api/reply")
        async def reply(body: JobAnswer, guard: str = signed_in) -> dict[str, str]:
            """An answer to an offer, into the same path as a wearable's."""
            if body.answer is not Answer.CANCEL_PREALARM and body.escalation is None:
                raise HTTPException(422, "which escalation does this answer?")
            if self.first_time(body.id):
                try:
                    await self.publish_reply(guard, Reply(answer=body.answer, escalation=body.escalation))
                except HTTPException:
                    self._seen.pop(body.id, None)
                    raise
                if body.answer is Answer.CANCEL_PREALARM:
                    self.prealarms.pop(guard, None)
                elif (job := self.offers.get(guard, {}).get(body.escalation or "")) is not None:
                    if body.answer in (Answer.DECLINE, Answer.RESOLVED, Answer.FALSE_ALARM):
                        self.offers[guard].pop(body.escalation or "", None)
                    else:
                        job["progress"] = body.answer.value
            return {"status": "sent"}

        @app.post("/api/tasks/{task_id}")
        def task_answer(task_id: str, body: TaskReply, guard: str = signed_in) -> dict[str, str]:
            task = self.tasks.get(task_id)
            if task is None or task.guard != guard:
                raise HTTPException(404, f"no task {task_id!r} for you")
            if self.first_time(body.id):
                at = datetime.now(timezone.utc)
                self.report(body.id, TaskAnswer(id=body.id, task=task_id, guard=guard, answer=body.answer, at=at).to_json())
                state = {"accept": TaskState.ACCEPTED, "decline": TaskState.DECLINED, "done": TaskState.DONE}[body.answer]
                self.tasks[task_id] = task.model_copy(update={"state": state})  # until the command centre's revision comes back
            return {"status": "queued"}

        @app.post("/api/checkin")
        def checkin(body: Scan, guard: str = signed_in) -> dict[str, str]:
            if self.first_time(body.id):
                self.report(body.id, ScanCheckin(id=body.id, guard=guard, code=body.code, location=body.location, at=datetime.now(timezone.utc)).to_json())
            return {"status": "queued"}

        @app.post("/api/tips")
        def tip(body: TipForm, guard: str = signed_in) -> dict[str, str]:
            photo, photo_type = None, None
            if body.photo:
                header, _, data = body.photo.partition(",")
                photo_type = header.removeprefix("data:").removesuffix(";base64")
                if photo_type not in ("image/jpeg", "image/png", "image/webp") or not header.endswith(";base64"):
                    raise HTTPException(422, "the photo must be a JPEG, PNG or WebP image")
                if len(data) * 3 // 4 > TIP_PHOTO_MAX_BYTES:
                    raise HTTPException(413, f"the photo is too large: at most {TIP_PHOTO_MAX_BYTES // 1024} KiB")
                try:
                    base64.b64decode(data, validate=True)
                except ValueError:
                    raise HTTPException(422, "the photo is not base64") from None
                photo = data
            if self.first_time(body.id):
                self.report(body.id, Tip(id=body.id, guard=guard, category=body.category, text=body.text, location=body.location,
                                photo=photo, photo_type=photo_type, at=datetime.now(timezone.utc)).to_json())  # type: ignore[arg-type]
            return {"status": "queued"}

        return app
