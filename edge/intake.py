"""Intake: route each site-broker message to its device's driver; reject and count what is bad.

What the intake drops, each counted per device (or shared topic) and reason, and logged at most once per
10 s per device and reason:
- messages on topics no configured device uses (`unknown_device`, one counter for all of them);
- payloads a driver rejects (`too_large`, `malformed_json`, `wrong_type`, `out_of_range`, `stale_timestamp` ...);
- native devices' replays (`replayed_seq`, `replayed_boot`; see edge/replay.py): a message whose (boot, seq)
  was taken before, or cannot be told apart from one, is dropped, except an alarm, which goes on with only
  its alarm events so that the edge can drop it only when it is provably a copy of one it stored (the
  outbox knows stored alarms by device, boot and seq). Messages arrive out of order after a broker restart
  or a resend: an older seq that was never taken is a real message and is taken;
- alarms in retained messages (`retained_alarm`): a broker hands those out on every subscription, so they
  tell of a press in the past, never of one now;
- a device's messages beyond its token bucket (`rate_limited`; site file `intake`, by default 50 a second,
  bursts of 500; a shared topic
  gets that per device on it). Alarms are never rate-limited: a message over the budget is still read when
  it is small enough to be a press (4 KiB), and kept when it holds one. A flooding device therefore costs
  the edge one bucket check and, for small payloads, one parse per message, and a press from any other
  device waits behind nothing more.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from device_drivers.driver import DecodeShared
from device_drivers.payload import PayloadError
from device_drivers.registry import driver
from edge.ratelimit import TokenBucket
from edge.replay import ReplayGuard, Verdict
from edge.rules import ALARM_EVENTS
from gateway.connection import topic_matches
from guardlink.models import Event
from guardlink.siteconfig import Device, IntakeLimits, SiteConfig

log = logging.getLogger(__name__)

UNKNOWN_DEVICE = "(unknown)"  # one counter for every unconfigured sender, so hostile topics cannot grow the table
RATE_PER_S = IntakeLimits().rate_per_s  # far above any real device (a wearable sends ~3 a second), far below a flood
BURST = IntakeLimits().burst
ALARM_PROBE_BYTES = 4096  # over its budget, a message this small is still read in case it is an alarm


class Rejections:
    """Counts rejected messages per (device, reason) and logs them without flooding the log."""

    def __init__(self, log_every_s: float = 10.0) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.log_every_s = log_every_s
        self._last_logged: dict[tuple[str, str], tuple[float, int]] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def record(self, device: str, reason: str, detail: str, now: float) -> None:
        """Count one rejection; log it unless the same (device, reason) was logged recently."""
        key = (device, reason)
        self.counts[key] += 1
        last_at, last_count = self._last_logged.get(key, (float("-inf"), 0))
        if now - last_at >= self.log_every_s:
            suppressed = self.counts[key] - last_count - 1
            log.warning(
                "event=payload_rejected device=%s reason=%s detail=%r suppressed_since_last=%d",
                device, reason, detail[:200], suppressed,
            )
            self._last_logged[key] = (now, self.counts[key])


@dataclass(slots=True)
class Route:
    """Which devices a topic belongs to, how to read it, and how much of it the edge takes."""

    label: str  # the device, or the topic when several devices share it: what rejections are counted under
    devices: tuple[Device, ...]
    decode: DecodeShared
    driver_name: str
    sequenced: bool
    bucket: TokenBucket


class Intake:
    """Knows which topic belongs to which configured device and decodes it with that device's driver."""

    def __init__(self, config: SiteConfig, *, rate_per_s: float | None = None, burst: float | None = None, now: float = 0.0) -> None:
        """Limits from the site file (`intake`), unless given here."""
        rate_per_s = config.intake.rate_per_s if rate_per_s is None else rate_per_s
        burst = config.intake.burst if burst is None else burst
        self.rejections = Rejections()
        self.replays = ReplayGuard()
        self.messages = 0  # messages that gave events
        self.events = 0
        site = config.site.id
        found: dict[str, tuple[DecodeShared, str, bool, list[Device]]] = {}
        filters: set[str] = set()
        for device in config.devices:
            drv = driver(device.driver)
            own_topic = drv.topic_for(site, device)
            for topic, decode in drv.routes(site, device).items():
                # Only the device's own reports carry seq and boot: its availability (a Last Will) does not.
                sequenced = drv.sequenced and topic == own_topic
                found.setdefault(topic, (decode, drv.name, sequenced, []))[3].append(device)
            filters.update(drv.watch(site))
        self.routes: dict[str, Route] = {}
        for topic, (decode, name, sequenced, devices) in found.items():
            label = devices[0].id if len(devices) == 1 else topic
            bucket = TokenBucket.full(rate_per_s * len(devices), burst * len(devices), now)
            self.routes[topic] = Route(label, tuple(devices), decode, name, sequenced, bucket)
        # Topics outside their family's usual filters are subscribed exactly.
        filters.update(t for t in self.routes if not any(topic_matches(f, t) for f in filters))
        self.filters = sorted(filters)

    def shift(self, seconds: float) -> None:
        """The wall clock stepped by `seconds` (NTP): flood budgets and reboot silences keep counting from the same moments."""
        for route in self.routes.values():
            route.bucket.updated += seconds
        self.replays.shift(seconds)

    def decode(self, topic: str, payload: bytes, now: float, *, retained: bool = False) -> list[Event]:
        """Events in one message; [] (counted and logged) when the sender is unknown, the payload bad or unwanted."""
        route = self.routes.get(topic)
        if route is None:
            self.rejections.record(UNKNOWN_DEVICE, "unknown_device", f"topic {topic!r}", now)
            return []
        within_budget = route.bucket.take(now)
        if not within_budget and len(payload) > ALARM_PROBE_BYTES:
            self.rejections.record(route.label, "rate_limited", f"over {route.bucket.rate_per_s:.0f} messages/s", now)
            return []
        try:
            events = route.decode(payload, route.devices, now)
        except PayloadError as exc:
            self.rejections.record(route.label, exc.reason, exc.detail, now)
            return []
        if not events:
            return events
        if not within_budget and not any(e.kind in ALARM_EVENTS for e in events):
            self.rejections.record(route.label, "rate_limited", f"over {route.bucket.rate_per_s:.0f} messages/s", now)
            return []
        if route.sequenced:
            events = self._sequenced(route, events, now)
        if retained and any(e.kind in ALARM_EVENTS for e in events):
            self.rejections.record(route.label, "retained_alarm", "an alarm in a retained message is a past one", now)
            events = [e for e in events if e.kind not in ALARM_EVENTS]
        if events:
            self.messages += 1
            self.events += len(events)
        return events

    def _sequenced(self, route: Route, events: list[Event], now: float) -> list[Event]:
        """A native device's message judged against the (boot, seq) already taken from it (see edge/replay.py)."""
        first = events[0]
        seq, boot = first.attrs["seq"], first.attrs.get("boot")
        assert isinstance(seq, int) and (boot is None or isinstance(boot, int)), "the native envelope checked them (device_drivers/native.py)"
        verdict = self.replays.check(first.device, seq, boot, now)
        if verdict is Verdict.NEW:
            return events
        alarms = [e for e in events if e.kind in ALARM_EVENTS]
        if alarms and verdict is not Verdict.OLD_BOOT and (boot is not None or verdict is Verdict.UNKNOWN):
            return alarms  # the edge drops it only if the outbox holds it (see EdgeNode)
        reason = "replayed_boot" if verdict is Verdict.OLD_BOOT else "replayed_seq"
        self.rejections.record(route.label, reason, f"seq {seq} boot {boot} ({verdict.value})", now)
        return []
