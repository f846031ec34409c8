"""Device supervision: silence past the heartbeat, Last Will announcements, low battery. Pure state, clock passed in."""

from __future__ import annotations

from dataclasses import dataclass

from guardlink.models import Event, EventKind, IncidentKind

BATTERY_HYSTERESIS = 5.0  # percent above the threshold before low battery counts as cleared
# Sensor states that are conditions: raised while the sensor says so, resolved when it stops.
SENSOR_CONDITIONS = {EventKind.WATER_LEAK: IncidentKind.WATER_LEAK, EventKind.SMOKE: IncidentKind.SMOKE}


@dataclass(frozen=True, slots=True)
class Change:
    """A device condition that was raised or cleared."""

    device: str
    kind: IncidentKind
    raised: bool
    detail: str


@dataclass(slots=True)
class _Watched:
    heartbeat_s: float
    last_seen: float
    offline: bool = False
    battery_low: bool = False
    sensing: frozenset[IncidentKind] = frozenset()  # sensor conditions now raised


class Supervisor:
    """Tracks when each device was last heard from and which conditions are open."""

    def __init__(self, heartbeats: dict[str, float], *, missed: int, low_battery_percent: float, now: float) -> None:
        self.missed = missed
        self.low_battery_percent = low_battery_percent
        self.devices = {device: _Watched(heartbeat_s, now) for device, heartbeat_s in heartbeats.items()}

    def heard(self, event: Event) -> list[Change]:
        """Take any event from a device; returns the conditions it raises or clears."""
        watched = self.devices.get(event.device)
        if watched is None:
            return []
        changes: list[Change] = []
        if event.kind is EventKind.AVAILABILITY and event.online is False:
            if not watched.offline:
                watched.offline = True
                detail = event.attrs.get("detail") or ("its bridge went offline" if event.attrs.get("via") == "bridge" else "announced offline (Last Will)")
                changes.append(Change(event.device, IncidentKind.DEVICE_OFFLINE, True, str(detail)))
            return changes
        silent_s = event.at - watched.last_seen
        watched.last_seen = max(watched.last_seen, event.at)
        if watched.offline:
            watched.offline = False
            changes.append(Change(event.device, IncidentKind.DEVICE_OFFLINE, False, f"back after {silent_s:.0f} s"))
        if event.battery is not None:
            if not watched.battery_low and event.battery <= self.low_battery_percent:
                watched.battery_low = True
                changes.append(Change(event.device, IncidentKind.LOW_BATTERY, True, f"battery {event.battery:.0f}%"))
            elif watched.battery_low and event.battery >= self.low_battery_percent + BATTERY_HYSTERESIS:
                watched.battery_low = False
                changes.append(Change(event.device, IncidentKind.LOW_BATTERY, False, f"battery {event.battery:.0f}%"))
        condition = SENSOR_CONDITIONS.get(event.kind)
        if condition is not None:
            changes += self._sensing(watched, event.device, condition, bool(event.attrs.get("active")))
        tamper = event.attrs.get("tamper")  # the device's tamper switch, as reported with its status
        if isinstance(tamper, bool):
            changes += self._sensing(watched, event.device, IncidentKind.TAMPER, tamper)
        return changes

    @staticmethod
    def _sensing(watched: _Watched, device: str, condition: IncidentKind, active: bool) -> list[Change]:
        """A sensor condition as now reported: raised or cleared when it changed, nothing when it did not."""
        if active == (condition in watched.sensing):
            return []
        watched.sensing = watched.sensing | {condition} if active else watched.sensing - {condition}
        return [Change(device, condition, active, f"{condition.value.replace('_', ' ')} {'detected' if active else 'cleared'}")]

    def shift(self, seconds: float) -> None:
        """The wall clock stepped by `seconds` (NTP): silence is measured from the same moments as before."""
        for watched in self.devices.values():
            watched.last_seen += seconds

    def reopen(self, device: str, kind: IncidentKind) -> None:
        """A condition was still open when the edge stopped: its clearing must still be noticed."""
        watched = self.devices.get(device)
        if watched is not None and kind is IncidentKind.DEVICE_OFFLINE:
            watched.offline = True
        elif watched is not None and kind is IncidentKind.LOW_BATTERY:
            watched.battery_low = True
        elif watched is not None and (kind in SENSOR_CONDITIONS.values() or kind is IncidentKind.TAMPER):
            watched.sensing |= {kind}

    def overdue(self, now: float) -> list[Change]:
        """Devices silent for `missed` heartbeat intervals, newly offline."""
        changes = []
        for device, watched in self.devices.items():
            silent_s = now - watched.last_seen
            if not watched.offline and silent_s > self.missed * watched.heartbeat_s:
                watched.offline = True
                changes.append(
                    Change(device, IncidentKind.DEVICE_OFFLINE, True, f"silent for {silent_s:.0f} s (heartbeat {watched.heartbeat_s:.0f} s)")
                )
        return changes
