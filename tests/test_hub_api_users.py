"""Users of the hub: failed logins counted and rate-limited, `guardlink hub user ...` against the API, pure login and stream rules."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from test_hub_api import CONFIG, FAST_HASHER, NORTH, PASSWORD, commit, last_change, rev, serving

from hub.accounts import AccountError, Accounts, AuditAction, Role
from hub.api import create_app
from hub.database import make_engine, migrate
from hub.login_limits import LoginLimits, retry_after
from hub.stream import GapWait

from conftest import GUARDLINK, REPO


async def never_publish(site: str, command: object) -> None:
    raise AssertionError("no command is sent in these tests")


class Clock:
    """Epoch seconds that a test moves by hand."""

    def __init__(self, now: float = 1_780_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def login(base: str, name: str, password: str) -> httpx.Response:
    return httpx.post(f"{base}/api/login", json={"name": name, "password": password}, timeout=10)


def test_failed_logins_for_one_user_are_counted_then_refused_with_retry_after_until_the_window_passes(engine: Engine) -> None:
    clock = Clock()
    accounts = Accounts(engine, hasher=FAST_HASHER, clock=clock)
    accounts.add_user("disp", Role.DISPATCHER, password=PASSWORD)
    app = create_app(engine=engine, config=CONFIG, publish_command=never_publish, accounts=accounts, login_limits=LoginLimits(per_user=3, per_address=100, window_s=60))
    with serving(app) as base:
        assert [login(base, "disp", "guess").status_code for _ in range(3)] == [401, 401, 401]
        clock.now += 10
        refused = login(base, "disp", PASSWORD)  # even the right password: the account is being guessed at
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "50"
        assert [e.action for e in accounts.entries(limit=4)] == ["login_limited", "login_failed", "login_failed", "login_failed"]
        assert {(e.subject, e.address) for e in accounts.entries(action=AuditAction.LOGIN_FAILED)} == {("disp", "127.0.0.1")}
        clock.now += 50
        assert login(base, "disp", PASSWORD).status_code == 200


def test_failed_logins_from_one_address_are_limited_across_user_names(engine: Engine) -> None:
    accounts = Accounts(engine, hasher=FAST_HASHER, clock=Clock())
    accounts.add_user("disp", Role.DISPATCHER, password=PASSWORD)
    app = create_app(engine=engine, config=CONFIG, publish_command=never_publish, accounts=accounts, login_limits=LoginLimits(per_user=100, per_address=3, window_s=300))
    with serving(app) as base:
        assert [login(base, name, "guess").status_code for name in ("ann", "bob", "cyd")] == [401, 401, 401]
        refused = login(base, "disp", PASSWORD)
        assert refused.status_code == 429 and refused.json() == {"detail": "too many failed logins: try again later"}
        assert refused.headers["Retry-After"] == "300"


def test_a_stream_ends_when_its_user_is_disabled(engine: Engine) -> None:
    accounts = Accounts(engine, hasher=FAST_HASHER)
    accounts.add_user("feed", Role.VIEWER)
    token = accounts.issue_token("feed")
    app = create_app(engine=engine, config=CONFIG, publish_command=never_publish, accounts=accounts, keepalive_s=0.1)
    with serving(app) as base, httpx.stream("GET", f"{base}/api/stream", headers={"Authorization": f"Bearer {token}"}, timeout=10) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 1000"
        assert ": keepalive" in lines  # reads up to the first keepalive
        accounts.disable_user("feed")
        assert set(list(lines)) <= {"", ": keepalive"}  # the stream ends (a read timeout would fail the test)


def test_a_command_the_broker_does_not_take_answers_503_and_is_audited_as_not_sent(engine: Engine) -> None:
    async def broker_down(site: str, command: object) -> None:
        raise ConnectionError("district broker unreachable")

    accounts = Accounts(engine, hasher=FAST_HASHER)
    accounts.add_user("disp", Role.DISPATCHER, password=PASSWORD)
    before = commit(engine, [rev(NORTH, "n-1", 1)])
    app = create_app(engine=engine, config=CONFIG, publish_command=broker_down, accounts=accounts)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        client.post("/api/login", json={"name": "disp", "password": PASSWORD})
        refused = client.post("/api/incidents/n-1/commands", json={"command": "acknowledge"})
    assert refused.status_code == 503 and "try again" in refused.json()["detail"]
    (entry,) = accounts.entries(action=AuditAction.COMMAND)
    assert (entry.actor, entry.subject, entry.detail["sent"], entry.detail["error"]) == ("disp", "n-1", False, "ConnectionError('district broker unreachable')")
    assert last_change(engine) == before  # no change row: nothing was sent


def test_accounts_refuse_what_does_not_fit_a_role_and_store_no_secret_in_clear(engine: Engine) -> None:
    accounts = Accounts(engine, hasher=FAST_HASHER)
    with pytest.raises(AccountError, match="a chief needs at least one --community"):
        accounts.add_user("zhao", Role.CHIEF, password=PASSWORD)
    with pytest.raises(AccountError, match="only chiefs belong to communities"):
        accounts.add_user("desk", Role.DISPATCHER, communities=["north"], password=PASSWORD)
    with pytest.raises(AccountError, match="shorter than 8"):
        accounts.add_user("desk", Role.DISPATCHER, password="short")
    with pytest.raises(AccountError, match="user name"):
        accounts.add_user("bad name", Role.VIEWER, password=PASSWORD)
    accounts.add_user("desk", Role.DISPATCHER, password=PASSWORD)
    with pytest.raises(AccountError, match="exists already"):
        accounts.add_user("desk", Role.VIEWER, password=PASSWORD)
    token = accounts.issue_token("desk")
    with engine.connect() as connection:
        dump = "\n".join(str(row) for table in ("users", "api_tokens") for row in connection.exec_driver_sql(f"SELECT * FROM {table}"))
    assert PASSWORD not in dump and token not in dump and "$argon2id$" in dump


def guardlink(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*GUARDLINK, *args], input=stdin, capture_output=True, text=True, cwd=REPO, timeout=60)


def test_hub_user_commands_make_accounts_the_api_accepts(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'hub.db'}"
    district = REPO / "firmware_configs" / "districts" / "hohhot-xincheng.yaml"
    unknown = guardlink("hub", "user", "add", "zhao", "--role", "chief", "--community", "nowhere", "--password-file", "-", "--config", str(district), stdin=PASSWORD)
    assert unknown.returncode == 1 and "no community 'nowhere' (defined: dongjie, hailar-east)" in unknown.stderr
    added = guardlink("hub", "user", "add", "zhao", "--role", "chief", "--community", "dongjie", "--password-file", "-", "--database", database, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert guardlink("hub", "user", "add", "feed", "--role", "viewer", "--no-password", "--database", database).returncode == 0
    issued = guardlink("hub", "user", "token", "feed", "--database", database)
    token = issued.stdout.strip()
    assert issued.returncode == 0 and token.startswith("glk_") and "shown this once" in issued.stderr
    listing = guardlink("hub", "user", "list", "--database", database).stdout.splitlines()
    assert listing[0].split() == ["NAME", "ROLE", "COMMUNITIES", "STATE", "TOKENS", "CREATED"]
    assert [line.split()[:5] for line in listing[1:]] == [["feed", "viewer", "-", "enabled", "1"], ["zhao", "chief", "dongjie", "enabled", "0"]]

    engine = make_engine(database)
    app = create_app(engine=engine, config=CONFIG, publish_command=never_publish, accounts=Accounts(engine, hasher=FAST_HASHER))
    with serving(app) as base:
        assert login(base, "zhao", PASSWORD).json()["communities"] == ["dongjie"]
        assert login(base, "feed", "").status_code == 422
        assert httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {token}"}).json()["role"] == "viewer"
        assert guardlink("hub", "user", "disable", "feed", "--database", database).returncode == 0
        assert httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    engine.dispose()
    missing = guardlink("hub", "user", "disable", "nobody", "--database", database)
    assert missing.returncode == 1 and "no user 'nobody'" in missing.stderr


def test_retry_after_counts_only_failures_inside_the_window() -> None:
    assert retry_after([], limit=3, window_s=60, now=100) is None
    assert retry_after([10, 50, 60], limit=3, window_s=60, now=100) is None  # 10 has left the window
    assert retry_after([50, 60, 90], limit=3, window_s=60, now=100) == 10  # allowed again when 50 leaves it
    assert retry_after([50, 60, 90, 95], limit=3, window_s=60, now=100) == 20


def test_a_missing_change_id_holds_later_ones_back_until_it_commits_or_the_grace_passes() -> None:
    gaps = GapWait(grace_s=1.0)
    assert gaps.deliverable(0, [1, 2, 4, 5], now=0.0) == 2  # 3 may still commit (concurrent writer)
    assert gaps.deliverable(2, [4, 5], now=0.5) == 0
    assert gaps.deliverable(2, [3, 4, 5], now=0.6) == 3  # it did
    assert gaps.deliverable(5, [7], now=1.0) == 0
    assert gaps.deliverable(5, [7, 8], now=2.1) == 2  # 6 never came: a rolled-back insert


def test_the_committed_command_schema_matches_the_model() -> None:
    from cli.schema import SCHEMAS, render

    assert SCHEMAS["command"][1].read_text() == render("command"), "run `make schemas` and commit"
