"""The hub's HTTP API on a real uvicorn, over SQLite and a real PostgreSQL: who may see and command what, the audit trail,
commands reaching a real mosquitto, and the live stream resuming after a disconnect."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiomqtt
import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bench.hub import revision
from bench.servers import running_mosquitto, running_postgres
from edge.embedded_broker import free_tcp_port
from guardlink import topics
from guardlink.districtconfig import DistrictConfig
from guardlink.models import (
    Assignment,
    AssignmentState,
    EscalationStatus,
    GuardReport,
    GuardsReport,
    GuardState,
    Location,
    PoliceCommand,
)
from guardlink.siteconfig import BrokerUrl
from hub.accounts import Accounts, AuditAction, Role
from hub.api import SESSION_COOKIE, create_app
from hub.database import make_engine, migrate
from hub.store import Guards, Item, Revision, SiteStatus, store
from hub.stream import ChangeFeed
from hub.tables import ChangeKind, ChangeRow

DISTRICT = "apitest"
NORTH, SOUTH = "n-school", "s-factory"
PASSWORD = "correct horse battery"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # tests log in often; production uses the defaults
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
CONFIG = DistrictConfig.model_validate({
    "district": {"id": DISTRICT, "name": "API test district"},
    "communities": [
        {"id": "north", "name": "North", "chief": "Chief N", "outline": [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], "sites": [NORTH, "n-quiet"]},
        {"id": "south", "name": "South", "chief": "Chief S", "outline": [[39.0, 111.0], [39.1, 111.0], [39.1, 111.1]], "sites": [SOUTH]},
    ],
})
USERS = {"disp": (Role.DISPATCHER, []), "north_chief": (Role.CHIEF, ["north"]), "south_chief": (Role.CHIEF, ["south"]), "watcher": (Role.VIEWER, [])}


# --- a real server -------------------------------------------------------------------------------------------------


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` on a real uvicorn on a free loopback port, in a thread; its base URL."""
    port = free_tcp_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def publisher(broker: BrokerUrl) -> Callable[[str, PoliceCommand], object]:
    async def publish(site: str, command: PoliceCommand) -> None:
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.publish(topics.police_commands(DISTRICT, site), command.to_json(), qos=1)

    return publish


def commit(engine: Engine, items: list[Item], now: datetime | None = None) -> int:
    """Store items as the intake does; the id of the last `changes` row."""
    with Session(engine) as db, db.begin():
        store(db, items, now or datetime.now(timezone.utc))
    return last_change(engine)


def last_change(engine: Engine) -> int:
    with Session(engine) as db:
        return db.scalar(select(func.max(ChangeRow.id))) or 0


def rev(site: str, escalation_id: str, number: int, status: EscalationStatus = EscalationStatus.DISPATCHED, at: datetime = T0, **changes: object) -> Revision:
    doc = revision(site, escalation_id, number, number, district_id=DISTRICT, at=at.timestamp(), status=status)
    if changes:
        doc = doc.model_copy(update=changes)
    return Revision(doc, CONFIG.community_of(site), at)


def assignment(guard: str, state: AssignmentState) -> Assignment:
    return Assignment(
        guard=guard, name=f"Guard {guard}", roles=["patrol"], state=state, distance_m=40, eta_s=30,
        guard_location=Location(lat=40.05, lon=111.05), position_age_s=2, offered_at=T0,
    )


# --- the district under test: one per database, shared by this module's tests ------------------------------------------


@dataclass
class Hub:
    url: str
    engine: Engine
    accounts: Accounts
    broker: BrokerUrl

    @contextmanager
    def client(self, user: str | None = None) -> Iterator[httpx.Client]:
        """A client logged in as `user` (its session cookie), or anonymous."""
        with httpx.Client(base_url=self.url, timeout=10) as client:
            if user is not None:
                response = client.post("/api/login", json={"name": user, "password": PASSWORD})
                assert response.status_code == 200, response.text
            yield client


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    workdir = tmp_path_factory.mktemp(f"hub-{request.param}")
    with running_mosquitto(workdir / "mosquitto") as broker, _database(request.param, workdir) as url:
        engine = make_engine(url)
        migrate(engine)
        accounts = Accounts(engine, hasher=FAST_HASHER)
        for name, (role, communities) in USERS.items():
            accounts.add_user(name, role, communities=communities, password=PASSWORD)
        seed(engine)
        app = create_app(engine=engine, config=CONFIG, publish_command=publisher(broker), accounts=accounts)
        with serving(app) as base:
            yield Hub(base, engine, accounts, broker)
        engine.dispose()


@contextmanager
def _database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'hub.db'}"
        return
    with running_postgres(workdir / "postgres") as server:
        yield server.url


def seed(engine: Engine) -> None:
    """Incidents, sites and guards in both communities."""
    commit(engine, [
        rev(NORTH, "n-open", 1),
        rev(SOUTH, "s-open", 1, at=T0 + timedelta(minutes=1)),
        rev(NORTH, "n-closed", 1, EscalationStatus.CLOSED, at=T0 - timedelta(hours=1)),
        SiteStatus(NORTH, DISTRICT, "north", {"state": "online", "every_s": 10, "backlog": 0, "unreceipted": 2, "oldest_unreceipted_s": 1.5}, None, T0),
        SiteStatus(SOUTH, DISTRICT, "south", {"state": "online", "every_s": 10, "backlog": 4, "unreceipted": 0}, None, T0),
        *(Guards(GuardsReport(site=site, guards=[GuardReport(id=f"{site}-g1", name="Guard", roles=["patrol"], state=GuardState.AVAILABLE,
                                                            location=Location(lat=40.05, lon=111.05), position_at=T0)], at=T0), T0)
          for site in (NORTH, SOUTH)),
    ], now=T0)
    commit(engine, [rev(NORTH, "n-open", 2, EscalationStatus.ASSIGNED, at=T0 + timedelta(seconds=20),
                        assignments=[assignment("g1", AssignmentState.ASSIGNED)], acknowledged_by="desk-1")], now=T0 + timedelta(seconds=21))


# --- nobody anonymous ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/incidents"), ("GET", "/api/incidents/n-open"), ("GET", "/api/sites"), ("GET", "/api/guards"),
    ("GET", "/api/stream"), ("GET", "/api/me"), ("GET", "/openapi.json"), ("POST", "/api/logout"),
    ("POST", "/api/incidents/n-open/commands"),
])
def test_without_a_session_or_token_the_api_answers_401(hub: Hub, method: str, path: str) -> None:
    with hub.client() as client:
        response = client.request(method, path, json={"command": "acknowledge"} if method == "POST" else None)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"
        assert "log in" in response.json()["detail"]
        assert client.get("/api/incidents", headers={"Authorization": "Bearer glk_not-a-token"}).status_code == 401
        assert client.get("/api/incidents", headers={"Cookie": f"{SESSION_COOKIE}=forged"}).status_code == 401


def test_only_the_login_page_and_health_are_served_anonymously(hub: Hub) -> None:
    with hub.client() as client:
        assert client.get("/health").json() == {"status": "ok", "district": DISTRICT}
        page = client.get("/login")
        assert page.status_code == 200 and '<form method="post" action="/login">' in page.text
        docs = client.get("/docs")
        assert docs.status_code == 303 and docs.headers["location"] == "/login?next=/docs"
        assert client.get("/docs/static/swagger-ui.css").status_code == 401


def test_login_sets_an_httponly_samesite_strict_cookie_and_logout_ends_the_session(hub: Hub) -> None:
    with hub.client() as client:
        response = client.post("/api/login", json={"name": "watcher", "password": PASSWORD})
        assert response.json() == {"name": "watcher", "role": "viewer", "communities": [], "can_command": False}
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/" in cookie
        session = client.cookies[SESSION_COOKIE]
        assert client.get("/api/me").json()["name"] == "watcher"
        docs = client.get("/docs")
        assert docs.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in docs.text and "https://" not in docs.text  # no CDN
        assert client.get("/docs/static/swagger-ui-bundle.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/openapi.json").json()["paths"]["/api/incidents"]
        assert client.post("/api/logout").status_code == 204
    with hub.client() as replay:
        assert replay.get("/api/me", headers={"Cookie": f"{SESSION_COOKIE}={session}"}).status_code == 401
    actions = [(e.action, e.subject) for e in hub.accounts.entries(limit=5)]
    assert ("logout", "watcher") in actions and ("login", "watcher") in actions


def test_the_login_form_redirects_with_a_session_or_shows_the_error(hub: Hub) -> None:
    with hub.client() as client:
        wrong = client.post("/login", data={"name": "watcher", "password": "nope", "next": "/docs"})
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text and SESSION_COOKIE not in wrong.cookies
        right = client.post("/login", data={"name": "watcher", "password": PASSWORD, "next": "https://elsewhere.example/"})
        assert right.status_code == 303 and right.headers["location"] == "/docs"  # never redirected off the hub
        assert client.get("/api/me").json()["name"] == "watcher"


def test_a_bearer_token_works_until_its_user_is_disabled(hub: Hub) -> None:
    hub.accounts.add_user("integration", Role.VIEWER)
    token = hub.accounts.issue_token("integration")
    with hub.client() as client:
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/me", headers=auth).json()["name"] == "integration"
        hub.accounts.disable_user("integration")
        assert client.get("/api/me", headers=auth).status_code == 401


# --- who sees what ----------------------------------------------------------------------------------------------------


def test_a_chief_sees_only_the_incidents_sites_and_guards_of_their_communities(hub: Hub) -> None:
    with hub.client("north_chief") as client:
        page = client.get("/api/incidents").json()
        assert {i["site"] for i in page["items"]} == {NORTH} and page["total"] == len(page["items"]) >= 2
        assert client.get("/api/incidents", params={"site": SOUTH}).json() == {"total": 0, "limit": 50, "offset": 0, "items": []}
        assert client.get("/api/incidents", params={"community": "south"}).json()["total"] == 0
        assert client.get("/api/incidents/s-open").status_code == 404
        assert client.get("/api/incidents/no-such").status_code == 404
        sites = client.get("/api/sites").json()
        assert [(s["id"], s["online"], s["detail"]) for s in sites][1:] == [("n-quiet", False, "never heard from")]
        assert [s["id"] for s in sites] == [NORTH, "n-quiet"] and sites[0]["online"]
        assert {g["site"] for g in client.get("/api/guards").json()} == {NORTH}
        assert client.get("/api/guards", params={"site": SOUTH}).json() == []


@pytest.mark.parametrize("user", ["disp", "watcher"])
def test_dispatchers_and_viewers_see_the_whole_district(hub: Hub, user: str) -> None:
    with hub.client(user) as client:
        assert {NORTH, SOUTH} <= {i["site"] for i in client.get("/api/incidents").json()["items"]}
        sites = {s["id"]: s for s in client.get("/api/sites").json()}
        assert sites[NORTH]["online"] and sites[NORTH]["unreceipted"] == 2 and sites[NORTH]["oldest_unreceipted_s"] == 1.5
        assert sites[SOUTH]["backlog"] == 4 and sites[SOUTH]["community"] == "south"
        assert {g["id"]: g["state"] for g in client.get("/api/guards").json()} == {f"{NORTH}-g1": "available", f"{SOUTH}-g1": "available"}
        assert client.get("/api/incidents/s-open").json()["site"] == SOUTH


def test_incidents_filter_by_status_kind_time_and_open_and_page_with_a_total(hub: Hub) -> None:
    with hub.client("disp") as client:
        def ids(**params: object) -> list[str]:
            return [i["id"] for i in client.get("/api/incidents", params=params).json()["items"]]

        assert "n-closed" in ids() and "n-closed" not in ids(open="true")
        assert ids(status="closed") == ["n-closed"]
        assert set(ids(status=["assigned", "closed"])) == {"n-open", "n-closed"}
        assert ids(kind="smoke") == [] and "s-open" in ids(kind="panic", severity="critical", community="south")
        window = {"from": (T0 - timedelta(minutes=5)).isoformat(), "to": (T0 + timedelta(seconds=30)).isoformat()}
        assert ids(**window, site=[NORTH, SOUTH]) == ["n-open"]
        first, second = (client.get("/api/incidents", params={"site": NORTH, "limit": 1, "offset": o}).json() for o in (0, 1))
        assert first["total"] == second["total"] >= 2 and first["items"][0]["id"] != second["items"][0]["id"]
        assert client.get("/api/incidents", params={"status": "nonsense"}).status_code == 422


def test_an_incident_shows_its_revision_timeline(hub: Hub) -> None:
    with hub.client("north_chief") as client:
        detail = client.get("/api/incidents/n-open").json()
    assert (detail["revision"], detail["status"], detail["acknowledged_by"]) == (2, "assigned", "desk-1")
    assert [(t["revision"], t["status"], t["acknowledged_by"]) for t in detail["timeline"]] == [(1, "dispatched", None), (2, "assigned", "desk-1")]
    assert detail["timeline"][1]["assignments"][0]["guard"] == "g1" and detail["timeline"][0]["assignments"] == []
    assert detail["incident"]["kind"] == "panic" and detail["evidence"] == []


# --- commands ---------------------------------------------------------------------------------------------------------


def test_a_viewer_cannot_command_and_a_chief_cannot_command_another_community(hub: Hub) -> None:
    with hub.client("watcher") as viewer, hub.client("south_chief") as chief, hub.client("disp") as dispatcher:
        assert viewer.post("/api/incidents/n-open/commands", json={"command": "acknowledge"}).status_code == 403
        assert chief.post("/api/incidents/n-open/commands", json={"command": "acknowledge"}).status_code == 404
        assert dispatcher.post("/api/incidents/n-closed/commands", json={"command": "acknowledge"}).status_code == 409
        assert dispatcher.post("/api/incidents/n-open/commands", json={"command": "more_guards", "count": 99}).status_code == 422
    commanded = [e for e in hub.accounts.entries(action=AuditAction.COMMAND) if e.actor in ("watcher", "south_chief")]
    assert commanded == []


def test_a_command_reaches_the_site_on_the_broker_and_lands_in_the_audit_table(hub: Hub, recorder) -> None:
    witness = recorder(hub.broker, topics.police_commands(DISTRICT, NORTH))
    with hub.client("north_chief") as client:
        sent = client.post("/api/incidents/n-open/commands", json={"command": "more_guards", "count": 2})
        closed = client.post("/api/incidents/n-open/commands", json={"command": "close", "note": "handed to patrol car 12"})
    assert sent.status_code == closed.status_code == 202, sent.text
    deadline = time.monotonic() + 10
    while len(witness.payloads()) < 2:
        assert time.monotonic() < deadline, "the commands did not reach the broker"
        time.sleep(0.01)
    more, close = (PoliceCommand.model_validate_json(p) for p in witness.payloads())
    assert (more.command, more.escalation, more.by, more.count) == ("more_guards", "n-open", "north_chief", 2)
    assert (close.command, close.note) == ("close", "handed to patrol car 12") and more.id and more.id != close.id
    audit = [e for e in hub.accounts.entries(action=AuditAction.COMMAND) if e.detail and e.detail.get("id") in (more.id, close.id)]
    assert {(e.actor, e.subject, e.address, e.detail["sent"]) for e in audit} == {("north_chief", "n-open", "127.0.0.1", True)}
    with Session(hub.engine) as db:
        rows = list(db.scalars(select(ChangeRow).where(ChangeRow.kind == ChangeKind.COMMAND.value, ChangeRow.id.in_([sent.json()["change_id"], closed.json()["change_id"]]))))
    assert [(r.key, r.payload["site"], r.payload["by"]) for r in rows] == [("n-open", NORTH, "north_chief")] * 2
    with hub.client("disp") as client:
        commands = client.get("/api/incidents/n-open").json()["commands"]
    assert [(c["command"], c["by"], c.get("note")) for c in commands[-2:]] == [("more_guards", "north_chief", None), ("close", "north_chief", "handed to patrol car 12")]


# --- the live stream --------------------------------------------------------------------------------------------------


def read_events(lines: Iterator[str], until: Callable[[list[dict]], bool]) -> list[dict]:
    """Server-Sent Events from a stream's lines until `until(events)` holds (the client's read timeout bounds the wait)."""
    events: list[dict] = []
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                events.append({"id": int(fields["id"]), "event": fields["event"], **json.loads(fields["data"])})
                if until(events):
                    return events
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    raise AssertionError(f"the stream ended after {events}")


def test_the_stream_resumes_after_a_disconnect_with_last_event_id_missing_and_repeating_nothing(hub: Hub) -> None:
    start = last_change(hub.engine)
    with hub.client("disp") as client:
        with client.stream("GET", "/api/stream", params={"after": start}) as stream:
            first_last = commit(hub.engine, [rev(NORTH, "stream-a", 1), rev(SOUTH, "stream-b", 1)])
            seen = read_events(stream.iter_lines(), lambda events: events[-1]["id"] >= first_last)
        # Disconnected: these are committed while nobody listens.
        missed_last = commit(hub.engine, [rev(NORTH, "stream-a", 2, EscalationStatus.ASSIGNED), rev(SOUTH, "stream-c", 1)])
        with client.stream("GET", "/api/stream", headers={"Last-Event-ID": str(seen[-1]["id"])}) as stream:
            lines = stream.iter_lines()
            resumed = read_events(lines, lambda events: events[-1]["id"] >= missed_last)
            live_last = commit(hub.engine, [rev(NORTH, "stream-d", 1)])
            resumed += read_events(lines, lambda events: events[-1]["id"] >= live_last)
    ids = [e["id"] for e in seen + resumed]
    assert ids == list(range(start + 1, live_last + 1)), "every change once, in order"
    assert [(e["key"], e["payload"]["revision"]) for e in seen + resumed] == [("stream-a", 1), ("stream-b", 1), ("stream-a", 2), ("stream-c", 1), ("stream-d", 1)]
    assert seen[0]["event"] == "escalation" and seen[0]["site"] == NORTH


async def test_the_change_feed_moves_on_without_reading_rows_while_nobody_listens_and_hands_out_every_row_once_one_does(hub: Hub) -> None:
    feed = ChangeFeed(hub.engine)
    feed.start_position()
    unread = commit(hub.engine, [rev(NORTH, "feed-a", 1), rev(SOUTH, "feed-b", 1)])
    rows_read: list[int] = []
    read = feed.read
    feed.read = lambda after, upto, limit: rows_read.append(after) or read(after, upto, limit)  # type: ignore[method-assign]
    await feed._deliver()
    assert feed.upto == unread and rows_read == [], "nobody listens: ids only"
    async with feed.subscribe() as (upto, queue):
        assert upto == unread
        last = commit(hub.engine, [rev(NORTH, "feed-a", 2, EscalationStatus.ASSIGNED)])
        await feed._deliver()
        change = queue.get_nowait()
        assert (change.id, change.key, change.payload["revision"]) == (last, "feed-a", 2) and queue.empty()
    assert rows_read == [unread]


def test_a_chief_stream_carries_only_their_communities(hub: Hub) -> None:
    start = last_change(hub.engine)
    south_first = commit(hub.engine, [rev(SOUTH, "chief-s1", 1)])
    north_marker = commit(hub.engine, [rev(NORTH, "chief-n1", 1)])
    with hub.client("north_chief") as client, client.stream("GET", "/api/stream", params={"after": start}) as stream:
        lines = stream.iter_lines()
        backlog = read_events(lines, lambda events: events[-1]["id"] >= north_marker)
        commit(hub.engine, [rev(SOUTH, "chief-s2", 1)])
        live_marker = commit(hub.engine, [rev(NORTH, "chief-n2", 1)])
        live = read_events(lines, lambda events: events[-1]["id"] >= live_marker)
    assert [e["key"] for e in backlog + live] == ["chief-n1", "chief-n2"]
    assert south_first not in [e["id"] for e in backlog]
    with hub.client("south_chief") as client, client.stream("GET", "/api/stream", params={"after": start}) as stream:
        assert [e["key"] for e in read_events(stream.iter_lines(), lambda events: events[-1]["key"] == "chief-s2")] == ["chief-s1", "chief-s2"]
