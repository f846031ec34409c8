"""Tables of the command centre's tasking (migration 0006): patrol tasks, check-ins, judged patrol windows, tips."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.database import Base
from hub.tables import Document


class TaskRow(Base):
    """A patrol task for one guard; `document` is its latest revision (a PatrolTask), `published` the revision the site has."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    published: Mapped[int] = mapped_column(Integer, default=0)
    site: Mapped[str] = mapped_column(String(64), index=True)
    community: Mapped[str | None] = mapped_column(String(64), index=True)
    guard: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    document: Mapped[dict[str, Any]] = mapped_column(Document)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]


class CheckinRow(Base):
    """A guard checked in at a patrol point: by dwelling inside its radius, or by scanning its QR code."""

    __tablename__ = "checkins"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    point: Mapped[str] = mapped_column(String(64), index=True)
    site: Mapped[str | None] = mapped_column(String(64))
    guard: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))  # dwell or qr
    at: Mapped[datetime] = mapped_column(index=True)


class PatrolWindowRow(Base):
    """A route window's point once judged: on time, late or missed (so an alert goes out once)."""

    __tablename__ = "patrol_windows"

    route: Mapped[str] = mapped_column(String(64), primary_key=True)
    point: Mapped[str] = mapped_column(String(64), primary_key=True)
    start: Mapped[datetime] = mapped_column(primary_key=True)
    outcome: Mapped[str] = mapped_column(String(8))  # on_time, late, missed
    at: Mapped[datetime]


class TipRow(Base):
    """An information tip from a guard, waiting in the command centre's queue until police accept or reject it."""

    __tablename__ = "tips"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    community: Mapped[str | None] = mapped_column(String(64), index=True)
    guard: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    photo: Mapped[bytes | None] = mapped_column(LargeBinary)
    photo_type: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)  # new, accepted, rejected
    decided_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(500))
    at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(index=True)
    decided_at: Mapped[datetime | None]
