"""Large events' tables: each event (venue, time window, roll calls), its sectors (area, headcount needed per role), and
every guard called up for it (state, sector, role, what is still to be sent to them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.database import Base
from hub.tables import Document


class EventRow(Base):
    """A large event the district mobilises guards for."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    venue: Mapped[dict[str, Any]] = mapped_column(Document)  # a GeoJSON Polygon
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    briefing: Mapped[str] = mapped_column(String(4000))
    answer_within_s: Mapped[float] = mapped_column(Float)  # a call-up without an answer this long is "no answer"
    arrive_grace_s: Mapped[float] = mapped_column(Float)  # confirmed, not checked in this long after the start: a no-show
    state: Mapped[str] = mapped_column(String(16), index=True)  # open, ended
    roll_call: Mapped[int] = mapped_column(Integer)  # the number of the latest roll call (0: none yet)
    roll_call_at: Mapped[datetime | None]
    roll_call_due: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SectorRow(Base):
    """A sector of an event's venue and the guards it needs per role."""

    __tablename__ = "event_sectors"

    event_id: Mapped[str] = mapped_column(String(64), ForeignKey("events.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    area: Mapped[dict[str, Any]] = mapped_column(Document)  # a GeoJSON Polygon
    needs: Mapped[dict[str, int]] = mapped_column(Document)  # role -> headcount
    lat: Mapped[float] = mapped_column(Float)  # the sector's centre: guards report there
    lon: Mapped[float] = mapped_column(Float)


class EventGuardRow(Base):
    """A guard called up for an event: for which sector and role, where they stand, and what is still to be sent to them."""

    __tablename__ = "event_guards"
    __table_args__ = (Index("ix_event_guards_guard_state", "guard", "state"), Index("ix_event_guards_pending", "pending"))

    event_id: Mapped[str] = mapped_column(String(64), ForeignKey("events.id"), primary_key=True)
    guard: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str | None] = mapped_column(String(64))  # the guard's home post: call-ups go through its edge
    company: Mapped[str] = mapped_column(String(64))
    sector: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # called, confirmed, declined, no_answer, arrived, no_show, stood_down
    released: Mapped[bool] = mapped_column(Boolean)  # the event lets the guard take site jobs again
    distance_m: Mapped[float] = mapped_column(Float)  # home post -> sector centre when called up
    called_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]  # when the call-up went out to the district broker
    answered_at: Mapped[datetime | None]
    arrived_at: Mapped[datetime | None]
    pending: Mapped[str | None] = mapped_column(String(16))  # callup, stand_down or roll_call: still to be sent
    roll_call_asked: Mapped[int] = mapped_column(Integer)  # the latest roll call the guard was asked to answer
    roll_call_answered: Mapped[int] = mapped_column(Integer)  # the latest roll call the guard answered
