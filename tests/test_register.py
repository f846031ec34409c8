"""The district register: eligibility, ID numbers, bulk import (10,000 guards, broken files) on SQLite and PostgreSQL, and
who sees and edits what through the API."""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

import hub.accounts
import hub.register_tables  # noqa: F401 - the register's tables are part of the declared schema
from bench.registry import COMPANY_HEADER, GUARD_HEADER, companies, guards, id_number, write_csv, write_xlsx
from guardlink.districtconfig import DistrictConfig
from hub.accounts import Accounts, AuditAction, AuditEntry, Role
from hub.api import create_app
from hub.database import Base
from hub.register import IdHasher, Standing, id_number_problem, ineligible, mask_id, site_rosters
from hub.register_import import import_files
from hub.register_tables import CompanyRow, RegisteredGuard, TrainingRow

TODAY = date(2026, 6, 1)
KEY = IdHasher(b"test-only-id-key-0123456789")
CONFIG = DistrictConfig.model_validate({
    "district": {"id": "regtest", "name": "Register test district"},
    "communities": [
        {"id": "north", "name": "North", "chief": "Chief N", "outline": [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], "sites": ["n-school", "n-mall"]},
        {"id": "south", "name": "South", "chief": "Chief S", "outline": [[39.0, 111.0], [39.1, 111.0], [39.1, 111.1]], "sites": ["s-factory"]},
    ],
    "registry": {"training_hours_min": 16},
})
SITES = CONFIG.sites()


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=timezone.utc)


# --- pure rules ------------------------------------------------------------------------------------------------------


def test_eligibility_needs_vetting_in_date_pre_job_training_and_the_minimum_training_hours() -> None:
    good = Standing("active", "passed", TODAY, True, 16.0)
    assert ineligible(good, TODAY, 16) == []  # the last valid day still counts
    assert ineligible(good, TODAY + timedelta(days=1), 16) == [f"vetting expired on {TODAY}"]
    assert ineligible(Standing("active", "pending", None, True, 20), TODAY, 16) == ["vetting is pending"]
    assert ineligible(Standing("active", "failed", TODAY, True, 20), TODAY, 16) == ["vetting is failed"]
    assert ineligible(Standing("suspended", "passed", TODAY, True, 20), TODAY, 16) == ["status is suspended"]
    assert ineligible(Standing("active", "passed", TODAY, False, 20), TODAY, 16) == ["no pre-job training"]
    assert ineligible(Standing("active", "passed", TODAY, True, 15.5), TODAY, 16) == ["periodic training 15.5 h in the last 12 months (minimum 16 h)"]
    assert len(ineligible(Standing("left", "pending", None, False, 0), TODAY, 16)) == 4


def test_id_numbers_are_checked_hashed_with_the_key_and_only_shown_masked() -> None:
    number = id_number(7)
    assert id_number_problem(number) is None
    wrong = number[:-1] + ("0" if number[-1] != "0" else "1")
    assert "check digit" in id_number_problem(wrong) and number not in id_number_problem(wrong)
    assert mask_id(number) == number[:4] + "*" * 10 + number[-4:]
    assert KEY.digest(number) == KEY.digest(number) != IdHasher(b"another-district-key-000").digest(number)
    assert number not in KEY.digest(number)


# --- import ----------------------------------------------------------------------------------------------------------


def test_migrations_build_the_register_tables(hub_engine: Engine) -> None:
    with hub_engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_a_spreadsheet_of_10000_guards_from_50_companies_is_imported_in_one_go(hub_engine: Engine, tmp_path: Path) -> None:
    rows = guards(10_000, 50, SITES, TODAY)
    rows[5]["vetting_until"] = (TODAY - timedelta(days=1)).isoformat()  # expired yesterday: registered, not on a roster
    workbook = write_xlsx(tmp_path / "register.xlsx", companies(50), rows)
    plan = import_files(hub_engine, [workbook], KEY, SITES, now=lambda: at(TODAY))
    assert plan.problems == []
    assert (len(plan.companies_new), len(plan.guards_new), len(plan.training)) == (50, 10_000, 10_000)
    with Session(hub_engine) as session:
        assert session.scalar(select(func.count()).select_from(RegisteredGuard)) == 10_000
        assert session.scalar(select(func.count()).select_from(CompanyRow)) == 50
        assert session.scalar(select(func.count()).select_from(TrainingRow)) == 10_000
        stored = session.get(RegisteredGuard, "g-00005")
        assert stored.id_masked == mask_id(id_number(5)) and stored.id_hash == KEY.digest(id_number(5))
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == AuditAction.REGISTER.value)) == 10_050
        rosters = site_rosters(session, CONFIG, TODAY)
    assert sum(len(r) for r in rosters.values()) == 9_999 and "g-00005" not in {g.id for r in rosters.values() for g in r}
    again = import_files(hub_engine, [workbook], KEY, SITES, now=lambda: at(TODAY))
    assert (again.problems, again.changes, again.unchanged) == ([], 0, 10_000)


def test_broken_spreadsheets_report_every_problem_with_its_position_and_import_nothing(hub_engine: Engine, tmp_path: Path) -> None:
    rows = guards(200, 3, SITES, TODAY)
    rows[9]["vetted_on"] = "2026-02-30"  # row 11 of the file (the header is row 1)
    rows[20]["id_number"] = rows[3]["id_number"]  # the same person twice
    rows[41]["company_licence"] = "LIC-999"
    rows[60]["site"] = "atlantis"
    rows[70]["id_number"] = rows[70]["id_number"][:-1] + ("1" if rows[70]["id_number"][-1] == "0" else "0")
    company_file = write_csv(tmp_path / "companies.csv", COMPANY_HEADER, companies(3))
    guard_file = write_csv(tmp_path / "guards.csv", GUARD_HEADER, rows)
    plan = import_files(hub_engine, [company_file, guard_file], KEY, SITES)
    source = str(guard_file)
    assert plan.problems[0] == f"{source}:11:vetted_on: '2026-02-30' is not a date like 2025-03-31"
    assert plan.problems[1].startswith(f"{source}:22:id_number: duplicate ID number {mask_id(rows[3]['id_number'])}: also on row 5")
    assert plan.problems[2].startswith(f"{source}:43:company_licence: unknown company 'LIC-999'")
    assert plan.problems[3].startswith(f"{source}:62:site: no site 'atlantis' in the district file")
    assert plan.problems[4].startswith(f"{source}:72:id_number: the ID number ") and "check digit" in plan.problems[4]
    assert len(plan.problems) == 5
    assert not any(row["id_number"] in problem for problem in plan.problems for row in rows)  # only ever masked

    missing = tmp_path / "missing.csv"
    with missing.open("w", newline="") as f:
        writer = csv.DictWriter(f, [c for c in GUARD_HEADER if c != "vetting"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows[:5])
    plan = import_files(hub_engine, [company_file, guard_file, missing], KEY, SITES)
    assert f"{missing}:1:vetting: missing column 'vetting'" in "\n".join(plan.problems)
    assert len(plan.problems) == 6
    with Session(hub_engine) as session:
        assert session.scalar(select(func.count()).select_from(RegisteredGuard)) == 0
        assert session.scalar(select(func.count()).select_from(CompanyRow)) == 0, "the good companies file is not imported either"


def test_an_export_edited_and_imported_back_changes_only_what_was_edited(hub_engine: Engine, tmp_path: Path) -> None:
    from hub.register_import import EXPORT_COLUMNS, export_rows

    import_files(hub_engine, [write_csv(tmp_path / "c.csv", COMPANY_HEADER, companies(2)), write_csv(tmp_path / "g.csv", GUARD_HEADER, guards(20, 2, SITES, TODAY))], KEY, SITES)
    with Session(hub_engine) as session:
        exported = export_rows(session, TODAY, 16, CONFIG.community_of)
    assert all(row["id_number"] == "" and "*" in row["id_masked"] for row in exported)
    exported[3]["status"] = "suspended"
    plan = import_files(hub_engine, [write_csv(tmp_path / "export.csv", EXPORT_COLUMNS, exported)], KEY, SITES)
    assert plan.problems == [] and len(plan.guards_changed) == 1 and plan.unchanged == 19
    with Session(hub_engine) as session:
        assert session.get(RegisteredGuard, exported[3]["guard"]).status == "suspended"


# --- the API: who sees and edits what --------------------------------------------------------------------------------


@pytest.fixture
def api(hub_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, TestClient]:
    monkeypatch.setenv("GUARDLINK_ID_KEY", "test-only-id-key-0123456789")
    rows = guards(9, 2, SITES, TODAY + timedelta(days=10))  # n-school, n-mall, s-factory, in turn
    import_files(hub_engine, [write_csv(tmp_path / "c.csv", COMPANY_HEADER, companies(2)), write_csv(tmp_path / "g.csv", GUARD_HEADER, rows)], KEY, SITES)
    accounts = Accounts(hub_engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    app = create_app(engine=hub_engine, config=CONFIG, publish_command=None, accounts=accounts)  # type: ignore[arg-type]
    clients = {}
    for name, role, communities in (("disp", Role.DISPATCHER, []), ("north_chief", Role.CHIEF, ["north"]), ("watcher", Role.VIEWER, [])):
        accounts.add_user(name, role, communities=communities)
        clients[name] = TestClient(app, headers={"Authorization": f"Bearer {accounts.issue_token(name)}"})
    return clients


def test_a_chief_sees_and_edits_only_the_guards_of_their_communities(api: dict[str, TestClient], hub_engine: Engine) -> None:
    chief, dispatcher = api["north_chief"], api["disp"]
    everyone = dispatcher.get("/api/register/guards").json()
    assert everyone["total"] == 9
    seen = chief.get("/api/register/guards").json()
    assert seen["total"] == 6 and {g["site"] for g in seen["items"]} == {"n-school", "n-mall"}
    south = next(g["id"] for g in everyone["items"] if g["site"] == "s-factory")
    assert chief.get(f"/api/register/guards/{south}").status_code == 404
    assert chief.patch(f"/api/register/guards/{south}", json={"status": "suspended"}).status_code == 404
    assert chief.get("/api/register/guards", params={"community": "south"}).json()["total"] == 0
    north = seen["items"][0]["id"]
    assert chief.patch(f"/api/register/guards/{north}", json={"site": "s-factory"}).status_code == 403, "a chief cannot post a guard away to another community"
    changed = chief.patch(f"/api/register/guards/{north}", json={"status": "suspended"})
    assert changed.status_code == 200 and changed.json()["eligible"] is False and changed.json()["reasons"] == ["status is suspended"]
    with Session(hub_engine) as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.subject == north, AuditEntry.actor == "north_chief")).one()
    assert entry.action == "register" and entry.detail == {"changed": {"status": ["active", "suspended"]}}


def test_viewers_read_but_cannot_edit_and_id_numbers_never_leave_unmasked(api: dict[str, TestClient]) -> None:
    viewer = api["watcher"]
    page = viewer.get("/api/register/guards", params={"limit": 3})
    assert page.status_code == 200 and page.json()["total"] == 9 and len(page.json()["items"]) == 3
    guard = page.json()["items"][0]["id"]
    assert viewer.patch(f"/api/register/guards/{guard}", json={"status": "left"}).status_code == 403
    assert viewer.post(f"/api/register/guards/{guard}/training", json={"day": "2026-06-01", "hours": 4}).status_code == 403
    created = api["disp"].post("/api/register/guards", json={"id": "g-new", "name": "New Guard", "company": "LIC-000", "id_number": id_number(4242), "site": "n-mall"})
    assert created.status_code == 201 and created.json()["id_masked"] == mask_id(id_number(4242))
    duplicate = api["disp"].post("/api/register/guards", json={"id": "g-twin", "name": "Twin", "company": "LIC-000", "id_number": id_number(4242)})
    assert duplicate.status_code == 409
    for client in api.values():
        for path in ("/api/register/guards", "/api/register/guards/g-new", "/openapi.json"):
            body = client.get(path).text
            assert id_number(4242) not in body and all(id_number(i) not in body for i in range(9))
