"""The district register's tables: security companies, guards (vetting, training, posting), training records, the rosters
sent to each site, and the register's revision (bumped by every change, so the roster publisher sees imports made by
another process)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.database import Base
from hub.tables import Document


class CompanyRow(Base):
    """A security company, known by its licence number."""

    __tablename__ = "register_companies"

    licence: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    contact: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime]


class RegisteredGuard(Base):
    """A guard in the register. The national ID number is kept only as a keyed hash (HMAC-SHA256) and a masked form."""

    __tablename__ = "register_guards"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    company: Mapped[str] = mapped_column(String(64), ForeignKey("register_companies.licence"), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    id_masked: Mapped[str] = mapped_column(String(24))
    roles: Mapped[list[str]] = mapped_column(Document)
    status: Mapped[str] = mapped_column(String(16), index=True)  # active, suspended, left
    vetting: Mapped[str] = mapped_column(String(16), index=True)  # pending, passed, failed
    vetted_by: Mapped[str | None] = mapped_column(String(128))
    vetted_on: Mapped[date | None] = mapped_column(Date)
    vetting_until: Mapped[date | None] = mapped_column(Date, index=True)
    pre_job_training: Mapped[bool] = mapped_column(Boolean, default=False)
    assessment_score: Mapped[float | None] = mapped_column(Float)
    site: Mapped[str | None] = mapped_column(String(64), index=True)  # where the guard is posted
    posted_from: Mapped[date | None] = mapped_column(Date)
    wearable: Mapped[str | None] = mapped_column(String(64))  # the device id of the guard's wearable at that site
    updated_at: Mapped[datetime]


class TrainingRow(Base):
    """Hours of periodic training a guard did on a day."""

    __tablename__ = "register_training"

    guard: Mapped[str] = mapped_column(String(64), ForeignKey("register_guards.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    hours: Mapped[float] = mapped_column(Float)


class RosterRow(Base):
    """The roster last signed for a site: its version, digest of its guards, and whether someone asked to send it again."""

    __tablename__ = "register_rosters"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    guards: Mapped[int] = mapped_column(Integer)
    published_at: Mapped[datetime | None]
    requested: Mapped[bool] = mapped_column(Boolean, default=False)


class RegisterState(Base):
    """One row: the register's revision, bumped in every transaction that changes the register."""

    __tablename__ = "register_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[datetime]
