"""The site's roster from the district register: verified, applied to the guard board without a restart, kept on disk.

Which guards win: a site whose file has no `police.roster_key` uses the guards of its site file, always. A site with a
key uses its site file's guards only until the first roster is applied (or loaded from disk at start); from then on the
roster decides who may be sent, with what name, roles and wearable. A site-file guard with the same id still gives its
local details (schedule, post, on_duty switch); a site-file guard missing from the roster is not sent. The last good
roster is saved next to the outbox, so an edge restarted while the hub is unreachable keeps using it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from edge.guards import GuardBoard
from gateway.durable import replace_durably
from guardlink.models import iso
from guardlink.provisioning import load_public_key
from guardlink.roster import Roster, RosterRefused, RosterReport, offered_version, verify_roster
from guardlink.siteconfig import Guard, SiteConfig

log = logging.getLogger(__name__)


def roster_guards(roster: Roster, site_guards: list[Guard]) -> tuple[list[Guard], dict[str, float]]:
    """The site's guards under a roster, and when each one's eligibility ends (epoch seconds). Pure.

    The roster gives who, name, roles and wearable; a site-file guard of the same id adds schedule, post and on_duty."""
    local = {g.id: g for g in site_guards}
    guards, until = [], {}
    for entry in roster.guards:
        base = local.get(entry.id)
        fields = {"id": entry.id, "name": entry.name, "roles": entry.roles, "wearable": entry.wearable}
        guards.append(base.model_copy(update=fields) if base else Guard.model_validate(fields))
        if entry.until is not None:
            until[entry.id] = datetime.fromisoformat(entry.until).timestamp()
    return guards, until


def roster_path(outbox_path: Path) -> Path:
    """Where the last good roster is kept: next to the outbox database."""
    return outbox_path.with_name(f"{outbox_path.stem}.roster.json")


class RosterSync:
    """Takes the site's roster documents: verifies each with the district key, applies it to the board, keeps it on disk,
    and says what it did (a `RosterReport`, also the `roster` part of the status heartbeat)."""

    def __init__(self, config: SiteConfig, board: GuardBoard, path: Path, clock: Callable[[], float]) -> None:
        self.config = config
        self.board = board
        self.path = path
        self.clock = clock
        self.key = load_public_key(config.police.roster_key) if config.police.roster_key else None
        self.applied: Roster | None = None
        self.refused: Counter[str] = Counter()  # by reason
        self.last_refusal: RosterReport | None = None
        self._unsaved: bytes | None = None  # applied, not yet on disk
        self._saving: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """True when the site file trusts a district key: only then are rosters taken."""
        return self.key is not None

    @property
    def version(self) -> int:
        return self.applied.version if self.applied else 0

    def load(self) -> None:
        """At start: apply the roster kept on disk, checked again like one just received (a file edited by hand is refused)."""
        if not self.enabled or not self.path.exists():
            return
        report = self.receive(self.path.read_bytes())
        log.info("event=roster_loaded path=%s status=%s version=%s", self.path, report.status, report.version)

    def receive(self, payload: bytes) -> RosterReport:
        """Verify and apply one roster document; a refused one changes nothing."""
        now = self.clock()
        site = self.config.site
        try:
            if self.key is None:
                raise RosterRefused("no_key", "the site file trusts no district key (police.roster_key)")
            roster = verify_roster(payload, self.key, district=site.district, site=site.id, applied_version=self.version)
        except RosterRefused as exc:
            self.refused[exc.reason] += 1
            self.last_refusal = RosterReport(
                site=site.id, status="refused", version=self.applied.version if self.applied else None, offered_version=offered_version(payload),
                reason=exc.reason, detail=exc.detail, at=iso(now),
            )
            log.warning("event=roster_refused site=%s reason=%s detail=%r applied=%d", site.id, exc.reason, exc.detail, self.version)
            return self.last_refusal
        if self.applied is not None and roster.version == self.applied.version:
            return RosterReport(site=site.id, status="current", version=roster.version, guards=len(roster.guards), at=iso(now))
        guards, until = roster_guards(roster, self.config.guards)
        self.board.replace_guards(guards, until, now)
        self.applied = roster
        log.info("event=roster_applied site=%s version=%d guards=%d leaving=%d", site.id, roster.version, len(guards), len(self.board.guards) - len(guards))
        return RosterReport(site=site.id, status="applied", version=roster.version, guards=len(guards), at=iso(now))

    async def handle(self, payload: bytes) -> bytes:
        """A roster from the district broker: applied, then saved (off the loop); the report to send back."""
        try:
            report = self.receive(payload)
        except Exception as exc:  # a bug must not take the police uplink down with it: the roster is refused and reported
            log.exception("event=roster_failed site=%s", self.config.site.id)
            self.refused["error"] += 1
            report = self.last_refusal = RosterReport(
                site=self.config.site.id, status="refused", version=self.applied.version if self.applied else None, reason="error",
                detail=f"{type(exc).__name__}: {exc}"[:300], at=iso(self.clock()),
            )
        if report.status == "applied":  # in effect now; saved right after, off the loop (the newest wins a race)
            self._unsaved = payload
            if self._saving is None or self._saving.done():
                self._saving = asyncio.create_task(self._save_latest())
        return report.to_json()

    async def _save_latest(self) -> None:
        while self._unsaved is not None:
            payload, self._unsaved = self._unsaved, None
            try:
                await asyncio.to_thread(self._save, payload)
            except OSError as exc:  # applied all the same: the retained roster comes back after a restart
                log.error("event=roster_not_saved path=%s error=%r", self.path, exc)

    def status(self) -> dict[str, object]:
        """The `roster` part of the status heartbeat."""
        doc: dict[str, object] = {"version": self.version, "guards": len(self.applied.guards) if self.applied else None}
        if self.refused:
            doc["refused"] = dict(self.refused)
            doc["last_refusal"] = self.last_refusal.model_dump(mode="json", by_alias=True, exclude_none=True) if self.last_refusal else None
        return doc

    def _save(self, payload: bytes) -> None:
        partial = self.path.with_suffix(".partial")
        with partial.open("wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        replace_durably(partial, self.path)
