"""Users of the command centre: roles, argon2 passwords, API tokens, browser sessions and the audit trail."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.database import Base

log = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
SESSION_LIFETIME = timedelta(hours=12)
TOKEN_PREFIX = "glk_"  # makes a leaked token easy to recognise (secret scanners, logs)


class Role(StrEnum):
    """What a user may see and do."""

    DISPATCHER = "dispatcher"  # sees and commands the whole district
    CHIEF = "chief"  # a community police chief: sees and commands only the sites of their communities
    VIEWER = "viewer"  # reads everything, commands nothing
    SITE = "site"  # a site's edge node (token only): uploads its own incidents' evidence, sees and commands nothing


class AuditAction(StrEnum):
    """Closed set of things the audit table records."""

    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGIN_LIMITED = "login_limited"  # refused without checking the password: too many failures
    LOGOUT = "logout"
    COMMAND = "command"
    USER_ADDED = "user_added"
    USER_DISABLED = "user_disabled"
    TOKEN_ISSUED = "token_issued"
    REGISTER = "register"  # a change to the district register of guards (hub/register.py): subject is the guard or company


class AccountError(Exception):
    """A user operation that cannot be done as asked; the message says why and what to do."""


class User(Base):
    """An account; chiefs carry the communities they lead."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    communities: Mapped[list[str]] = mapped_column(JSON, default=list)
    site: Mapped[str | None] = mapped_column(String(64), nullable=True)  # role site: the one site it speaks for
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)  # None: token-only account
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class ApiToken(Base):
    """A bearer token for integrations; only its SHA-256 is kept (the token is shown once)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class BrowserSession(Base):
    """A logged-in browser, known by the SHA-256 of its cookie."""

    __tablename__ = "sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditEntry(Base):
    """Who did what, when, from where."""

    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_action_subject_at", "action", "subject", "at"),
        Index("ix_audit_action_address_at", "action", "address", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the user acting; None when unknown
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the user logging in, the escalation commanded ...
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the client's address, "cli" for the command line
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


@dataclass(frozen=True, slots=True)
class Principal:
    """The user behind a request."""

    name: str
    role: Role
    communities: tuple[str, ...] = ()
    site: str | None = None  # role site: the site it speaks for

    @property
    def can_command(self) -> bool:
        return self.role in (Role.DISPATCHER, Role.CHIEF)

    def visible_sites(self, community_sites: Mapping[str, Collection[str]]) -> frozenset[str] | None:
        """The sites this user may see, given each community's sites; None means every site."""
        if self.role is Role.SITE:
            return frozenset()  # an edge's upload token reads nothing of the police's
        if self.role is not Role.CHIEF:
            return None
        return frozenset(site for community in self.communities for site in community_sites.get(community, ()))


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user as `hub user list` shows it (never the password hash)."""

    name: str
    role: Role
    communities: tuple[str, ...]
    disabled: bool
    tokens: int
    created_at: datetime
    site: str | None = None


def sha256(token: str) -> str:
    """How sessions and API tokens are stored: they are random 256-bit secrets, so a plain hash suffices."""
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """The user store over the hub database; the password hasher and the clock are passed in so tests run fast."""

    def __init__(self, engine: Engine, *, hasher: PasswordHasher | None = None, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.hasher = hasher or PasswordHasher()
        self.clock = clock
        # Verified when the name is unknown, so a wrong name costs as long as a wrong password.
        self._decoy_hash = self.hasher.hash(secrets.token_urlsafe(16))

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=timezone.utc)

    # --- users -------------------------------------------------------------------------------------------------

    def add_user(
        self, name: str, role: Role, *, communities: Iterable[str] = (), password: str | None = None, actor: str | None = None, address: str = "cli",
        site: str | None = None,
    ) -> None:
        """Create a user; AccountError if the name is taken or the role and communities do not fit."""
        if not re.match(NAME_PATTERN, name):
            raise AccountError(f"user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
        communities = sorted(set(communities))
        if role is Role.CHIEF and not communities:
            raise AccountError(f"user {name!r}: a chief needs at least one --community")
        if role is not Role.CHIEF and communities:
            raise AccountError(f"user {name!r}: only chiefs belong to communities (role is {role.value})")
        if (role is Role.SITE) != (site is not None):
            raise AccountError(f"user {name!r}: " + ("a site account needs --site SITE" if role is Role.SITE else f"only site accounts speak for a site (role is {role.value})"))
        if role is Role.SITE and password is not None:
            raise AccountError(f"user {name!r}: a site account logs in with API tokens only, not a password")
        if password is not None and len(password) < 8:
            raise AccountError(f"user {name!r}: the password is shorter than 8 characters")
        password_hash = self.hasher.hash(password) if password is not None else None
        with Session(self.engine) as db, db.begin():
            if db.get(User, name) is not None:
                raise AccountError(f"user {name!r} exists already (`guardlink hub user list` shows every user)")
            db.add(User(name=name, role=role.value, communities=communities, site=site, password_hash=password_hash, disabled=False, created_at=self.now()))
            self._audit(db, AuditAction.USER_ADDED, actor=actor, subject=name, address=address, detail={"role": role.value, "communities": communities, "site": site})
        log.info("event=user_added user=%s role=%s communities=%s", name, role.value, ",".join(communities) or "-")

    def users(self) -> list[UserInfo]:
        """Every user, by name."""
        with Session(self.engine) as db:
            tokens = dict(db.execute(select(ApiToken.user, func.count()).group_by(ApiToken.user)).all())
            return [
                UserInfo(u.name, Role(u.role), tuple(u.communities or ()), u.disabled, tokens.get(u.name, 0), u.created_at, u.site)
                for u in db.scalars(select(User).order_by(User.name))
            ]

    def disable_user(self, name: str, *, actor: str | None = None, address: str = "cli") -> None:
        """Disable a user: their sessions end and their tokens stop working at once."""
        with Session(self.engine) as db, db.begin():
            if db.get(User, name) is None:
                raise AccountError(f"no user {name!r} (`guardlink hub user list` shows every user)")
            db.execute(update(User).where(User.name == name).values(disabled=True))
            db.execute(delete(BrowserSession).where(BrowserSession.user == name))
            db.execute(delete(ApiToken).where(ApiToken.user == name))
            self._audit(db, AuditAction.USER_DISABLED, actor=actor, subject=name, address=address)
        log.info("event=user_disabled user=%s", name)

    def issue_token(self, name: str, *, actor: str | None = None, address: str = "cli") -> str:
        """A new API token for an enabled user; only its hash is stored, so this is the one time it is seen."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with Session(self.engine) as db, db.begin():
            user = db.get(User, name)
            if user is None:
                raise AccountError(f"no user {name!r} (`guardlink hub user list` shows every user)")
            if user.disabled:
                raise AccountError(f"user {name!r} is disabled: add a new user instead")
            db.add(ApiToken(user=name, token_sha256=sha256(token), created_at=self.now()))
            self._audit(db, AuditAction.TOKEN_ISSUED, actor=actor, subject=name, address=address)
        log.info("event=token_issued user=%s", name)
        return token

    # --- logging in ----------------------------------------------------------------------------------------------

    def check_password(self, name: str, password: str) -> Principal | None:
        """The user if `password` is theirs and they are enabled; None otherwise (the caller records the outcome)."""
        with Session(self.engine) as db:
            user = db.get(User, name)
            stored = user.password_hash if user is not None and not user.disabled else None
            try:
                self.hasher.verify(stored or self._decoy_hash, password)
            except (VerificationError, InvalidHashError):
                return None
            if stored is None or user is None:
                return None
            principal = _principal(user)
        if self.hasher.check_needs_rehash(stored):  # the hasher's parameters were raised since this hash was made
            with Session(self.engine) as db, db.begin():
                db.execute(update(User).where(User.name == name).values(password_hash=self.hasher.hash(password)))
        return principal

    def open_session(self, principal: Principal, address: str | None) -> tuple[str, datetime]:
        """A new browser session for a logged-in user: the cookie value and when it expires."""
        token = secrets.token_urlsafe(32)
        now = self.now()
        expires = now + SESSION_LIFETIME
        with Session(self.engine) as db, db.begin():
            db.execute(delete(BrowserSession).where(BrowserSession.expires_at < now))
            db.add(BrowserSession(token_sha256=sha256(token), user=principal.name, created_at=now, expires_at=expires, address=address))
            self._audit(db, AuditAction.LOGIN, actor=principal.name, subject=principal.name, address=address)
        return token, expires

    def close_session(self, token: str, principal: Principal, address: str | None) -> None:
        """Log a browser out."""
        with Session(self.engine) as db, db.begin():
            db.execute(delete(BrowserSession).where(BrowserSession.token_sha256 == sha256(token)))
            self._audit(db, AuditAction.LOGOUT, actor=principal.name, subject=principal.name, address=address)

    def by_session(self, token: str) -> Principal | None:
        """The enabled user of an unexpired session cookie."""
        with Session(self.engine) as db:
            row = db.execute(
                select(User, BrowserSession.expires_at).join(BrowserSession, BrowserSession.user == User.name).where(BrowserSession.token_sha256 == sha256(token))
            ).first()
            if row is None or row[0].disabled or row[1] <= self.now():
                return None
            return _principal(row[0])

    def by_token(self, token: str) -> Principal | None:
        """The enabled user of an API token."""
        with Session(self.engine) as db:
            user = db.scalars(select(User).join(ApiToken, ApiToken.user == User.name).where(ApiToken.token_sha256 == sha256(token))).first()
            return None if user is None or user.disabled else _principal(user)

    # --- the audit trail -----------------------------------------------------------------------------------------

    def audit(self, action: AuditAction, *, actor: str | None, subject: str | None, address: str | None, detail: dict[str, Any] | None = None) -> None:
        """Record one entry in its own transaction."""
        with Session(self.engine) as db, db.begin():
            self._audit(db, action, actor=actor, subject=subject, address=address, detail=detail)

    def _audit(self, db: Session, action: AuditAction, *, actor: str | None, subject: str | None, address: str | None, detail: dict[str, Any] | None = None) -> None:
        db.add(AuditEntry(at=self.now(), actor=actor, action=action.value, subject=subject, address=address, detail=detail))

    def add_audit(self, db: Session, action: AuditAction, *, actor: str | None, subject: str | None, address: str | None, detail: dict[str, Any] | None = None) -> None:
        """Record one entry inside the caller's transaction (a command and its audit entry commit together)."""
        self._audit(db, action, actor=actor, subject=subject, address=address, detail=detail)

    def failure_times(self, *, subject: str | None = None, address: str | None = None, since: float) -> list[float]:
        """Epoch times of failed logins since `since`, for one user name or one client address."""
        query = select(AuditEntry.at).where(AuditEntry.action == AuditAction.LOGIN_FAILED.value, AuditEntry.at >= datetime.fromtimestamp(since, tz=timezone.utc))
        query = query.where(AuditEntry.subject == subject) if subject is not None else query.where(AuditEntry.address == address)
        with Session(self.engine) as db:
            return [at.timestamp() for at in db.scalars(query)]

    def entries(self, *, action: AuditAction | None = None, limit: int = 1000) -> list[AuditEntry]:
        """The latest audit entries, newest first."""
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if action is not None:
            query = query.where(AuditEntry.action == action.value)
        with Session(self.engine, expire_on_commit=False) as db:
            return list(db.scalars(query))


def _principal(user: User) -> Principal:
    return Principal(name=user.name, role=Role(user.role), communities=tuple(user.communities or ()), site=user.site)
