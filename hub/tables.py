"""The intake's tables: escalations and their revisions, sites, guards, rejections, and the change log the live stream reads."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from hub.database import Base

Document = JSON().with_variant(JSONB(), "postgresql")
ChangeId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite: an AUTOINCREMENT rowid, never reused


class ChangeKind(StrEnum):
    """What a `changes` row is about; its `key` names the escalation, site, site (guards) or escalation (command)."""

    ESCALATION = "escalation"
    SITE = "site"
    GUARDS = "guards"
    COMMAND = "command"
    TASK = "task"  # a patrol task's revision (hub/tasks.py)
    CHECKIN = "checkin"  # a guard checked in at a patrol point (hub/checkins.py)
    ALERT = "alert"  # a late or missed check-in, for the community police chief (hub/checkins.py)
    TIP = "tip"  # an information tip arrived or was decided (hub/tips.py)


class EscalationRow(Base):
    """An escalation's latest state (the highest revision stored), for lists and filters."""

    __tablename__ = "escalations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    community: Mapped[str | None] = mapped_column(String(64), index=True)
    district: Mapped[str] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    severity: Mapped[str] = mapped_column(String(16), index=True)
    device: Mapped[str] = mapped_column(String(64))
    zone: Mapped[str | None] = mapped_column(String(64))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    test: Mapped[bool] = mapped_column(Boolean, default=False)
    guards_needed: Mapped[int] = mapped_column(Integer, default=0)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    detected_at: Mapped[datetime] = mapped_column(index=True)
    issued_at: Mapped[datetime]  # of the latest revision
    updated_at: Mapped[datetime]  # when the hub committed the latest revision


class RevisionRow(Base):
    """Every revision of every escalation as received, exactly once (the timeline and the evidence list)."""

    __tablename__ = "revisions"

    escalation_id: Mapped[str] = mapped_column(String(64), ForeignKey("escalations.id"), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    issued_at: Mapped[datetime]
    received_at: Mapped[datetime]  # when the intake took the message from the broker
    committed_at: Mapped[datetime]
    document: Mapped[dict[str, Any]] = mapped_column(Document)


class SiteRow(Base):
    """A site's liveness and the last status its edge sent."""

    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    district: Mapped[str] = mapped_column(String(64))
    community: Mapped[str | None] = mapped_column(String(64), index=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    since: Mapped[datetime | None]  # online or offline since
    last_heartbeat: Mapped[datetime | None]
    backlog: Mapped[int | None] = mapped_column(Integer)
    unreceipted: Mapped[int | None] = mapped_column(Integer)
    oldest_unreceipted_s: Mapped[float | None] = mapped_column(Float)
    status: Mapped[dict[str, Any] | None] = mapped_column(Document)
    detail: Mapped[str | None] = mapped_column(String(200))  # why it went offline or came back


class GuardRow(Base):
    """A guard's last reported state and position (from the site's GuardsReport)."""

    __tablename__ = "guards"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    guard_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    roles: Mapped[list[str]] = mapped_column(Document)
    state: Mapped[str] = mapped_column(String(16))
    job: Mapped[str | None] = mapped_column(String(64))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    position_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]  # the `at` of the report that set it


class RejectionRow(Base):
    """Documents the intake refused, counted per site and reason."""

    __tablename__ = "rejections"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    last_at: Mapped[datetime]
    last_detail: Mapped[str | None] = mapped_column(String(300))


class ChangeRow(Base):
    """One committed change, appended in the same transaction; the live stream resumes after a change id."""

    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_kind_key", "kind", "key"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(ChangeId, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(Document)


class EvidenceRow(Base):
    """An evidence file (snapshot or clip) a site uploads for one of its escalations; complete once its SHA-256 checked out."""

    __tablename__ = "evidence"

    escalation_id: Mapped[str] = mapped_column(String(64), ForeignKey("escalations.id"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    camera: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # snapshot or clip
    media_type: Mapped[str] = mapped_column(String(32))
    bytes_expected: Mapped[int] = mapped_column(BigInteger)
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)
    path: Mapped[str] = mapped_column(String(512))  # relative to the district's evidence directory
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class ForwardingCursorRow(Base):
    """How far an alarm receiving centre got (hub/forwarding.py): the last `changes` id done with, its next DC-09 sequence number."""

    __tablename__ = "forwarding_cursors"

    centre: Mapped[str] = mapped_column(String(64), primary_key=True)
    after: Mapped[int] = mapped_column(ChangeId)
    sequence: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]
