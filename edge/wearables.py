"""Guard wearables: man-down (fall or tilt, then stillness, then an unanswered pre-alarm), heart rate, post geofence.

Pure state per wearable; times come from the events and from the caller's clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.supervision import Change
from guardlink.geo import LatLon, haversine_m
from guardlink.models import Event, IncidentKind
from guardlink.siteconfig import Post, WearableRules

HEART_RATE_HYSTERESIS = 5.0  # beats per minute back inside the band before the alarm clears
SUMMARY_WINDOW_S = 1.0  # a motion summary describes the second before it (see device_drivers/guardlink_wearable.py)


@dataclass(slots=True)
class _Motion:
    freefall_at: float | None = None
    fallen_at: float | None = None  # impact right after a free fall
    tilted_since: float | None = None
    still_since: float | None = None
    prealarm_until: float | None = None
    cause: str = ""


@dataclass(frozen=True, slots=True)
class PreAlarmStarted:
    """A guard seems down: the wearable is asked to let them cancel before the alarm goes out."""

    device: str
    detail: str
    cancel_within_s: float


class WearableWatch:
    """Turns wearable reports into man-down pre-alarms and alarms, heart-rate and left-post conditions."""

    def __init__(self, rules: WearableRules) -> None:
        self.rules = rules
        self._motion: dict[str, _Motion] = {}
        self._heart_alarm: set[str] = set()
        self._off_post: set[str] = set()

    def shift(self, seconds: float) -> None:
        """The wall clock stepped by `seconds` (NTP): fall, stillness and pre-alarm timers keep their length."""
        for m in self._motion.values():
            for name in ("freefall_at", "fallen_at", "tilted_since", "still_since", "prealarm_until"):
                if (at := getattr(m, name)) is not None:
                    setattr(m, name, at + seconds)

    # -- man-down --------------------------------------------------------------------------------

    def motion(self, event: Event) -> PreAlarmStarted | None:
        """Take an accelerometer summary (attrs min_g, max_g, tilt_deg, still)."""
        rules, t = self.rules, event.at
        m = self._motion.setdefault(event.device, _Motion())
        if m.prealarm_until is not None:
            return None  # already waiting for the guard to cancel
        min_g, max_g = _number(event, "min_g"), _number(event, "max_g")
        if min_g < rules.freefall_g:
            m.freefall_at = t
        if max_g > rules.impact_g and m.freefall_at is not None and t - m.freefall_at <= rules.impact_within_s:
            m.fallen_at = t
        if _number(event, "tilt_deg") < rules.tilt_deg:
            m.tilted_since = None
        elif m.tilted_since is None:
            m.tilted_since = t
        if not event.attrs["still"]:
            m.still_since = None
            if m.fallen_at is not None and t > m.fallen_at:
                m.fallen_at = None  # moving again after the fall: the guard is up
            return None
        if m.still_since is None:
            m.still_since = t - SUMMARY_WINDOW_S
        down = m.fallen_at if m.fallen_at is not None else m.tilted_since
        if down is None:
            return None
        down_since = max(down, m.still_since)
        if t - down_since >= rules.still_s:
            m.cause = "fall, then no movement" if m.fallen_at is not None else f"lying past {rules.tilt_deg:.0f} degrees, no movement"
            m.prealarm_until = t + rules.prealarm_s
            return PreAlarmStarted(event.device, f"{m.cause} for {t - down_since:.0f} s", rules.prealarm_s)
        return None

    def cancel(self, device: str) -> bool:
        """The guard pressed "I am fine" during the pre-alarm; True if one was pending."""
        m = self._motion.get(device)
        if m is None or m.prealarm_until is None:
            return False
        self._motion[device] = _Motion()
        return True

    def man_down(self, now: float) -> list[tuple[str, str]]:
        """(device, detail) for pre-alarms that ran out without a cancel."""
        due = []
        for device, m in self._motion.items():
            if m.prealarm_until is not None and now >= m.prealarm_until:
                due.append((device, f"{m.cause}; pre-alarm not cancelled within {self.rules.prealarm_s:.0f} s"))
                self._motion[device] = _Motion()
        return due

    # -- conditions ------------------------------------------------------------------------------

    def vitals(self, event: Event) -> list[Change]:
        """Take a heart-rate reading; raises or clears abnormal_heart_rate."""
        rate = _number(event, "heart_rate")
        low, high = self.rules.heart_rate_low, self.rules.heart_rate_high
        outside = rate < low or rate > high
        inside = low + HEART_RATE_HYSTERESIS <= rate <= high - HEART_RATE_HYSTERESIS
        if outside and event.device not in self._heart_alarm:
            self._heart_alarm.add(event.device)
            return [Change(event.device, IncidentKind.ABNORMAL_HEART_RATE, True, f"heart rate {rate:.0f}/min outside {low:.0f}-{high:.0f}")]
        if inside and event.device in self._heart_alarm:
            self._heart_alarm.discard(event.device)
            return [Change(event.device, IncidentKind.ABNORMAL_HEART_RATE, False, f"heart rate {rate:.0f}/min")]
        return []

    def reopen(self, device: str, kind: IncidentKind) -> None:
        """A condition was still open when the edge stopped: its clearing must still be noticed."""
        if kind is IncidentKind.ABNORMAL_HEART_RATE:
            self._heart_alarm.add(device)
        elif kind is IncidentKind.LEFT_POST:
            self._off_post.add(device)

    def position(self, device: str, point: LatLon, accuracy_m: float, post: Post | None, free: bool) -> list[Change]:
        """Check a free guard against the geofence of their post (not while sent somewhere)."""
        if post is None:
            return []
        distance = haversine_m(point, post.point())
        if free and distance - accuracy_m > post.radius_m and device not in self._off_post:
            self._off_post.add(device)
            return [Change(device, IncidentKind.LEFT_POST, True, f"{distance:.0f} m from post (radius {post.radius_m:.0f} m)")]
        if (distance + accuracy_m <= post.radius_m or not free) and device in self._off_post:
            self._off_post.discard(device)
            return [Change(device, IncidentKind.LEFT_POST, False, "back at post" if free else "sent on a job")]
        return []


def _number(event: Event, name: str) -> float:
    """A numeric attribute the wearable's driver checked (device_drivers/guardlink_wearable.py)."""
    value = event.attrs[name]
    if not isinstance(value, int | float):
        raise TypeError(f"{event.kind.value} attribute {name!r} is {type(value).__name__}, not a number")
    return float(value)
