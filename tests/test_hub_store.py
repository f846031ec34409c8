"""The hub's storage on SQLite and on a real PostgreSQL: idempotent revisions, late revisions, sites, guards, rejections, changes."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

import hub.accounts
import hub.register_tables  # noqa: F401 - so are the register's
from bench.hub import revision
from gateway.police import SiteNotice
from guardlink.models import EscalationStatus, GuardReport, GuardsReport, GuardState, Location, iso
from hub.database import Base
from hub.store import Guards, Item, Rejected, Revision, Rows, SiteSilent, SiteStatus, Stored, insert_rows, store
from hub.tables import ChangeRow, EscalationRow, GuardRow, RejectionRow, RevisionRow, SiteRow

NOW = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(hub_engine: Engine) -> Engine:
    return hub_engine


def commit(engine: Engine, items: list[Item], now: datetime = NOW) -> Stored:
    with Session(engine) as session, session.begin():
        return store(session, items, now)


def changes(engine: Engine) -> list[ChangeRow]:
    with Session(engine) as session:
        return list(session.scalars(select(ChangeRow).order_by(ChangeRow.id)))


def test_migrations_build_exactly_the_declared_tables(engine: Engine) -> None:
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_a_revision_is_stored_once_and_every_copy_is_receipted(engine: Engine) -> None:
    doc = revision("s1", "esc-1", 1, 1)
    first = commit(engine, [Revision(doc, "c1", NOW)])
    again = commit(engine, [Revision(doc, "c1", NOW), Revision(doc, "c1", NOW)])
    assert (first.new, first.duplicates, len(first.receipts)) == (1, 0, 1)
    assert (again.new, again.duplicates, len(again.receipts)) == (0, 2, 2)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(RevisionRow)) == 1
        row = session.get(EscalationRow, "esc-1")
        assert (row.site, row.community, row.revision, row.kind, row.severity, row.test) == ("s1", "c1", 1, "panic", "critical", False)
        assert row.detected_at.tzinfo is not None and row.updated_at == NOW
    assert [(c.kind, c.key, c.payload["revision"]) for c in changes(engine)] == [("escalation", "esc-1", 1)]


def test_a_late_older_revision_is_kept_but_does_not_replace_the_newer_state(engine: Engine) -> None:
    t0 = time.time()
    commit(engine, [Revision(revision("s1", "esc-1", 2, 2, at=t0 + 5, status=EscalationStatus.ON_SCENE), None, NOW)])
    commit(engine, [Revision(revision("s1", "esc-1", 1, 1, at=t0), None, NOW)])
    commit(engine, [Revision(revision("s1", "esc-1", 3, 3, at=t0 + 9, status=EscalationStatus.RESOLVED), None, NOW)])
    with Session(engine) as session:
        assert list(session.scalars(select(RevisionRow.revision).order_by(RevisionRow.revision))) == [1, 2, 3]
        row = session.get(EscalationRow, "esc-1")
        assert (row.revision, row.status) == (3, "resolved")
    assert [c.payload["latest"] for c in changes(engine)] == [True, False, True]


def test_an_older_state_written_blind_does_not_replace_the_newer_one(engine: Engine) -> None:
    """The upsert itself keeps the newer state: a writer that did not see the newer revision (another hub worker's
    commit in between) cannot overwrite it."""
    t0 = time.time()
    commit(engine, [Revision(revision("s1", "esc-1", 3, 3, at=t0 + 9, status=EscalationStatus.RESOLVED), None, NOW)])
    commit(engine, [Revision(revision("s1", "esc-1", 1, 1, at=t0), None, NOW)])
    with Session(engine) as session, session.begin():
        newer = session.get(EscalationRow, "esc-1")
        older = {c.name: getattr(newer, c.name) for c in EscalationRow.__table__.columns} | {"revision": 2, "status": "on_scene"}
        insert_rows(session, [Rows(EscalationRow, [older], newer_than="revision")])
    with Session(engine) as session:
        row = session.get(EscalationRow, "esc-1")
        assert (row.revision, row.status) == (3, "resolved")


def test_a_document_is_stored_as_received(engine: Engine) -> None:
    doc = revision("s1", "esc-1", 1, 1)
    commit(engine, [Revision(doc, "c1", NOW, doc.to_json())])
    with Session(engine) as session:
        assert session.scalar(select(RevisionRow.document)) == json.loads(doc.to_json())


def test_revisions_of_one_batch_and_several_escalations_commit_together(engine: Engine) -> None:
    items: list[Item] = [Revision(revision(f"s{n % 3}", f"esc-{n % 10}", n // 10 + 1, n + 1), None, NOW) for n in range(100)]
    stored = commit(engine, items)
    assert (stored.new, stored.duplicates, stored.changes) == (100, 0, 100)
    with Session(engine) as session:
        assert {(r.id, r.revision) for r in session.scalars(select(EscalationRow))} == {(f"esc-{n}", 10) for n in range(10)}
    ids = [c.id for c in changes(engine)]
    assert ids == sorted(ids) and len(set(ids)) == 100


def status(site: str, state: str, at: datetime, notice: SiteNotice | None = None, **doc: object) -> SiteStatus:
    return SiteStatus(site, "d1", "c1", {"state": state, "every_s": 10, **doc}, notice, at)


def test_site_liveness_is_recorded_with_each_change_as_a_change_row(engine: Engine) -> None:
    commit(engine, [status("s1", "online", NOW, backlog=0, unreceipted=0)])
    commit(engine, [status("s1", "online", NOW + timedelta(seconds=10), backlog=0, unreceipted=0)])  # a plain heartbeat: no change
    silent = SiteNotice("s1", False, "no heartbeat for 31 s (every 10 s)")
    commit(engine, [SiteSilent("s1", silent, NOW + timedelta(seconds=41))])
    back = SiteNotice("s1", True, "back; 7 escalations were waiting to be delivered", 7)
    commit(engine, [status("s1", "online", NOW + timedelta(seconds=60), back, backlog=7, unreceipted=7, oldest_unreceipted_s=50.5)])
    commit(engine, [status("s1", "offline", NOW + timedelta(seconds=70))])
    rows = [c.payload for c in changes(engine)]
    assert [(r["online"], r["backlog"]) for r in rows] == [(True, 0), (False, 0), (True, 7), (False, 7)]
    assert rows[2]["detail"].startswith("back; 7") and rows[2]["oldest_unreceipted_s"] == 50.5
    with Session(engine) as session:
        site = session.get(SiteRow, "s1")
        assert (site.online, site.since, site.last_heartbeat, site.unreceipted) == (False, NOW + timedelta(seconds=70), NOW + timedelta(seconds=60), 7)


def guards_report(site: str, at: datetime, *names: str) -> Guards:
    guards = [
        GuardReport(id=name, name=name.title(), roles=["patrol"], state=GuardState.AVAILABLE, location=Location(lat=40.0, lon=111.0), position_at=at)
        for name in names
    ]
    return Guards(GuardsReport(site=site, guards=guards, at=at), at)


def test_a_guards_report_replaces_the_site_roster_unless_it_is_older(engine: Engine) -> None:
    commit(engine, [guards_report("s1", NOW, "li", "wang")])
    commit(engine, [guards_report("s1", NOW + timedelta(seconds=5), "li", "zhao")])
    commit(engine, [guards_report("s1", NOW + timedelta(seconds=2), "wang")])  # late: ignored
    with Session(engine) as session:
        assert sorted(session.scalars(select(GuardRow.guard_id))) == ["li", "zhao"]
    assert [c.kind for c in changes(engine)] == ["guards", "guards"]


def test_rejections_are_counted_per_site_and_reason(engine: Engine) -> None:
    commit(engine, [Rejected("s1", "invalid_escalation", "bad", NOW)] * 3 + [Rejected("s1", "wrong_site", "spoof", NOW)])
    commit(engine, [Rejected("s1", "invalid_escalation", "worse", NOW)])
    with Session(engine) as session:
        counts = {(r.site, r.reason): (r.count, r.last_detail) for r in session.scalars(select(RejectionRow))}
    assert counts == {("s1", "invalid_escalation"): (4, "worse"), ("s1", "wrong_site"): (1, "spoof")}


def test_naive_timestamps_in_a_document_are_taken_as_utc(engine: Engine) -> None:
    doc = revision("s1", "esc-1", 1, 1, at=NOW.timestamp())
    naive = doc.model_copy(update={"issued_at": NOW.replace(tzinfo=None)})
    commit(engine, [Revision(naive, None, NOW)])
    with Session(engine) as session:
        assert session.get(EscalationRow, "esc-1").issued_at == NOW == iso(NOW.timestamp())
