"""The guard board: who is on duty, where each guard last was, and who is free to be sent."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from guardlink.geo import LatLon
from guardlink.models import Event, EventKind, GuardState
from guardlink.ranking import Placed, Ranked, best_by_eta
from guardlink.siteconfig import DispatchSettings, Guard, Shift, SiteConfig
from guardlink.spatial import GuardIndex

UNKNOWN_ACCURACY_M = 50.0  # assumed when a wearable does not say how precise its fix is


@dataclass(slots=True)
class GuardStatus:
    """A guard's dispatch state and last known position."""

    guard: Guard
    shifts: list[Shift]
    state: GuardState = GuardState.OFF_DUTY
    placed: Placed | None = None
    job: str | None = None  # the escalation the guard is offered or assigned
    reachable: bool = True  # false while the guard's wearable is offline: an offer could not reach them
    until: float | None = None  # no new offers from this moment (the roster's end of the guard's vetting)
    leaving: bool = False  # left off the roster: finishes the job in hand, gets no new offers, then leaves the board
    on_event: bool = False  # held by a large event (edge/callups.py): finishes the job in hand, gets no new offers

    @property
    def point(self) -> LatLon | None:
        return self.placed.point if self.placed else None


class GuardBoard:
    """Live state of a site's guards, fed by wearable and phone positions, kept in a spatial index."""

    def __init__(self, config: SiteConfig, now: float) -> None:
        self.tz = ZoneInfo(config.site.timezone)
        self.guards = {g.id: GuardStatus(g, g.shifts()) for g in config.guards}
        self._by_wearable = {g.wearable: g.id for g in config.guards if g.wearable}
        self.index = GuardIndex()
        self._placed: dict[str, Placed] = {}
        self.refresh_duty(now)

    def wearer(self, device: str) -> GuardStatus | None:
        """The guard wearing this device, if any."""
        guard = self._by_wearable.get(device)
        return self.guards[guard] if guard else None

    def observe(self, event: Event) -> GuardStatus | None:
        """Take an event from a guard's wearable or phone (any message says it is online, a Last Will that it is
        not); returns the guard a position report placed."""
        status = self.wearer(event.device)
        if status is None:
            return None
        online = not (event.kind is EventKind.AVAILABILITY and event.online is False)
        if online != status.reachable:
            self.wearable_online(event.device, online)
        if event.kind is not EventKind.POSITION or event.location is None:
            return None
        accuracy = event.accuracy_m if event.accuracy_m is not None else UNKNOWN_ACCURACY_M
        status.placed = self._placed[status.guard.id] = Placed(status.guard.id, event.location, accuracy, event.at)
        if status.guard.id in self.index:
            self.index.move(status.guard.id, event.location.lat, event.location.lon)
        else:
            self.index.upsert(status.guard.id, event.location.lat, event.location.lon, status.guard.roles, self._free(status))
        return status

    def shift(self, seconds: float) -> None:
        """The wall clock stepped by `seconds` (NTP): positions keep their age."""
        for guard, placed in list(self._placed.items()):
            self._placed[guard] = self.guards[guard].placed = replace(placed, seen_at=placed.seen_at + seconds)

    def on_duty(self, status: GuardStatus, now: float) -> bool:
        """On duty by the guard's switch and schedule (site local time)."""
        if not status.guard.on_duty or status.leaving or status.on_event or (status.until is not None and now >= status.until):
            return False
        if not status.shifts:
            return True
        local = datetime.fromtimestamp(now, self.tz)
        minute = local.hour * 60 + local.minute
        return any(shift.covers(local.weekday(), minute) for shift in status.shifts)

    def refresh_duty(self, now: float) -> None:
        """Move free guards on and off duty as their shifts start and end (a guard on a job keeps it)."""
        for status in self.guards.values():
            if status.state in (GuardState.OFF_DUTY, GuardState.AVAILABLE):
                self.set_state(status.guard.id, GuardState.AVAILABLE if self.on_duty(status, now) else GuardState.OFF_DUTY)

    def set_state(self, guard: str, state: GuardState, job: str | None = None) -> None:
        """Change a guard's dispatch state; only available guards can be chosen."""
        status = self.guards[guard]
        status.state, status.job = state, job
        if guard in self.index:
            self.index.set_available(guard, self._free(status))

    def wearable_online(self, device: str, online: bool) -> None:
        """The wearer of `device` can (again) or cannot receive offers (a silent wearable is declared offline by
        supervision); a guard whose wearable is offline is never offered a job."""
        status = self.wearer(device)
        if status is not None:
            status.reachable = online
            if status.guard.id in self.index:
                self.index.set_available(status.guard.id, self._free(status))

    def release(self, guard: str, now: float) -> None:
        """The guard's job is over: available again if on duty."""
        status = self.guards[guard]
        self.set_state(guard, GuardState.AVAILABLE if self.on_duty(status, now) else GuardState.OFF_DUTY)
        if status.leaving:
            self._drop(guard)

    def replace_guards(self, guards: list[Guard], until: dict[str, float], now: float) -> None:
        """Take a new list of guards (a roster, edge/roster.py): newcomers join, the others are updated; a guard left
        out finishes the job in hand, gets no new offers, and leaves the board when that job ends."""
        for guard in guards:
            status = self.guards.get(guard.id)
            if status is None:
                status = self.guards[guard.id] = GuardStatus(guard, guard.shifts())
            elif status.guard != guard:
                roles_changed = status.guard.roles != guard.roles
                status.guard, status.shifts = guard, guard.shifts()
                if roles_changed and guard.id in self.index and status.placed is not None:
                    self.index.upsert(guard.id, status.placed.point.lat, status.placed.point.lon, guard.roles, self._free(status))
            status.until, status.leaving = until.get(guard.id), False
        kept = {g.id for g in guards}
        for guard_id, status in list(self.guards.items()):
            if guard_id not in kept:
                status.leaving = True
                if status.job is None:
                    self._drop(guard_id)
        self._by_wearable = {s.guard.wearable: g for g, s in self.guards.items() if s.guard.wearable}
        self.refresh_duty(now)

    def _drop(self, guard: str) -> None:
        del self.guards[guard]
        self._placed.pop(guard, None)
        if guard in self.index:
            self.index.remove(guard)

    def choose(
        self, target: LatLon, count: int, now: float, settings: DispatchSettings, *, roles: list[str], exclude: set[str]
    ) -> list[Ranked]:
        """The best `count` available guards by ETA, having one of `roles` (any role when empty)."""
        return best_by_eta(self.index, self._placed, target, count, now, settings, roles=roles, exclude=exclude)

    @staticmethod
    def _free(status: GuardStatus) -> bool:
        return status.state is GuardState.AVAILABLE and status.reachable
