"""Site rosters out to the edges: derived from the register, signed with the district key, published retained (QoS 1).

The publisher watches the register's revision (bumped by every change, made by the API or by `guardlink registry
import` in another process); after a burst of changes settles (`registry.roster_debounce_s`) it derives every placed
site's roster and publishes those whose guards changed, each with the next version. Every `registry.roster_every_s`
it derives them again without a change (a vetting ends with the passing of a day). A site asked for by the API
(`POST /api/register/sites/{site}/roster`) is published again as it is. At start every site's roster goes out once, so
the broker's retained copy is the register's whatever happened while the hub was away.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from guardlink import topics
from guardlink.districtconfig import DistrictConfig
from guardlink.provisioning import load_private_key
from guardlink.roster import RosterGuard, sign_roster
from hub.register import district_today, revision, site_rosters
from hub.register_tables import RegisteredGuard, RosterRow

log = logging.getLogger(__name__)

CHANGE_MARGIN = timedelta(seconds=10)
Publish = Callable[[str, bytes], Awaitable[None]]  # (topic, payload): retained, QoS 1; raises when the broker did not take it


def digest(guards: list[RosterGuard]) -> str:
    """What identifies a roster's content (its version and signature aside)."""
    return hashlib.sha256(json.dumps([g.model_dump() for g in guards], sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class RosterPublisher:
    """Derives, signs and publishes site rosters; `run()` until cancelled. The clock is passed in (tests move days)."""

    def __init__(
        self, config: DistrictConfig, engine: Engine, key: Ed25519PrivateKey, publish: Publish, *, clock: Callable[[], float] = time.time, poll_s: float = 0.05,
    ) -> None:
        self.config = config
        self.engine = engine
        self.key = key
        self.publish = publish
        self.clock = clock
        self.poll_s = poll_s
        self.published = 0
        self.derived_sites = 0  # how many sites' rosters the last derivation read from the register
        self.versions: dict[str, int] = {}  # the version last published per site
        self._pending: dict[str, bytes] = {}  # signed, not yet taken by the broker
        self._listed: dict[str, str] = {}  # guard -> the site whose last roster lists them
        self._site_lists: dict[str, set[str]] = {}  # site -> the guards its last roster lists
        self._derived: dict[str, datetime] = {}  # guards changed within the margin whose change was derived: their updated_at
        self._changed_since: datetime | None = None  # guards changed after this were not derived yet (None: derive every site)

    async def run(self) -> None:
        seen: int | None = None
        cycle_at = float("-inf")
        force = True  # at start: every site once
        while True:
            current, requested = await asyncio.to_thread(self._poll)
            if current != seen and seen is not None:
                current = await self._settle(current)
            every = force or self.clock() - cycle_at >= self.config.registry.roster_every_s  # every site, not only the changed ones
            if every or requested or current != seen:
                if every:
                    cycle_at = self.clock()
                try:
                    self._pending.update(await asyncio.to_thread(self.derive, every, requested))
                except Exception:
                    log.exception("event=rosters_not_derived")
                else:
                    seen, force = current, False
            if self._pending:
                await self._send()
            await asyncio.sleep(self.poll_s)

    async def _settle(self, current: int) -> int:
        """Wait until the register stops changing for the debounce time (at most 5 of them): one roster for a burst."""
        debounce = self.config.registry.roster_debounce_s
        deadline = self.clock() + 5 * debounce
        while debounce > 0 and self.clock() < deadline:
            await asyncio.sleep(debounce)
            later, _ = await asyncio.to_thread(self._poll)
            if later == current:
                break
            current = later
        return current

    def _poll(self) -> tuple[int, list[str]]:
        with Session(self.engine) as session:
            return revision(session), list(session.scalars(select(RosterRow.site).where(RosterRow.requested.is_(True))))

    def derive(self, every: bool = False, requested: list[str] | None = None) -> dict[str, bytes]:
        """Every site's roster; those whose guards changed get the next version and are signed (`every`: all of them)."""
        now = datetime.fromtimestamp(self.clock(), tz=timezone.utc)
        district = self.config.district.id
        signed: dict[str, bytes] = {}
        with Session(self.engine) as session, session.begin():
            if every or self._changed_since is None:
                self._derive_all(session, now)
                sites = None
            else:
                sites = self._changed_sites(session, self._changed_since) | set(requested or ())
            rosters = site_rosters(session, self.config, district_today(self.config, now), sites)
            self.derived_sites = len(rosters)
            rows = {row.site: row for row in session.scalars(select(RosterRow))}
            for site, guards in rosters.items():
                self._list(site, {g.id for g in guards})
                row, sha = rows.get(site), digest(guards)
                if row is None:
                    row = RosterRow(site=site, version=0, sha256="", guards=0, requested=False)
                    session.add(row)
                changed = row.sha256 != sha
                if not (changed or every or site in (requested or ())):
                    continue
                if changed:
                    row.version, row.sha256, row.guards = row.version + 1, sha, len(guards)
                row.published_at, row.requested = now, False
                roster = sign_roster(self.key, district, site, row.version, guards, now.isoformat())
                signed[site] = roster.to_json()
                self.versions[site] = row.version
                if changed:
                    log.info("event=roster_signed site=%s version=%d guards=%d", site, row.version, len(guards))
            if requested:  # a site no longer placed: nothing to send, nothing more asked
                session.execute(update(RosterRow).where(RosterRow.site.in_(requested)).values(requested=False))
        return signed

    def _list(self, site: str, guards: set[str]) -> None:
        """Remember that `site`'s roster now lists `guards`."""
        for guard in self._site_lists.pop(site, set()) - guards:
            if self._listed.get(guard) == site:
                del self._listed[guard]
        self._site_lists[site] = guards
        self._listed.update(dict.fromkeys(guards, site))

    def _derive_all(self, session: Session, now: datetime) -> None:
        """Every guard counts as derived (read before the rosters are, so nothing committed meanwhile is taken as seen)."""
        self._changed_since = session.scalar(select(func.max(RegisteredGuard.updated_at))) or now
        recent = select(RegisteredGuard.id, RegisteredGuard.updated_at).where(RegisteredGuard.updated_at >= self._changed_since - CHANGE_MARGIN)
        self._derived = {row.id: row.updated_at for row in session.execute(recent)}

    def _changed_sites(self, session: Session, derived_until: datetime) -> set[str]:
        """Sites whose roster a guard changed since the last derivation may change: where the guard is posted now, and
        where the last roster listed them. Timestamps are the writers'; a margin covers a transaction committed late
        (and the full cycle every `roster_every_s` covers anything else). A change already derived is not derived again
        while it stays within the margin, so a bulk import costs one derivation of its sites, not one per poll."""
        since = derived_until - CHANGE_MARGIN
        recent = session.execute(select(RegisteredGuard.id, RegisteredGuard.site, RegisteredGuard.updated_at).where(RegisteredGuard.updated_at >= since)).all()
        changed = [row for row in recent if self._derived.get(row.id) != row.updated_at]
        self._derived = {row.id: row.updated_at for row in recent}
        self._changed_since = max([derived_until, *(row.updated_at for row in changed)])
        placed = set(self.config.sites())
        return {site for row in changed for site in (row.site, self._listed.get(row.id)) if site in placed}

    async def _send(self) -> None:
        district = self.config.district.id
        for site, payload in list(self._pending.items()):
            try:
                await self.publish(topics.police_roster(district, site), payload)
            except Exception as exc:  # kept: sent with the next try
                log.warning("event=roster_not_published site=%s error=%r", site, str(exc))
                return
            if self._pending.get(site) is payload:
                del self._pending[site]
            self.published += 1


def roster_key(config: DistrictConfig) -> Ed25519PrivateKey | None:
    """The district's roster signing key, when the district file names one."""
    path = config.registry.signing_key
    return load_private_key(Path(path).expanduser()) if path else None


def roster_service(config: DistrictConfig, engine: Engine, client: Callable[[], object | None]) -> RosterPublisher | None:
    """The publisher over a district broker connection (`client()`: the MQTT client, None while disconnected); None when
    the district file names no signing key. A key that cannot be loaded raises here, before the hub starts."""
    key = roster_key(config)
    if key is None:
        log.info("event=rosters_off reason=no_signing_key (registry.signing_key in the district file)")
        return None

    async def publish(topic: str, payload: bytes) -> None:
        connected = client()
        if connected is None:
            raise ConnectionError("the hub is not connected to the district broker")
        await connected.publish(topic, payload, qos=1, retain=True)  # type: ignore[attr-defined]

    return RosterPublisher(config, engine, key, publish)
