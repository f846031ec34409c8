"""Intake: route each site-broker message to its device's driver; reject and count what is bad."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from paho.mqtt.client import topic_matches_sub

from device_drivers.driver import decode_availability
from device_drivers.payload import PayloadError
from device_drivers.registry import driver
from guardlink.models import Event
from guardlink.siteconfig import Device, SiteConfig

log = logging.getLogger(__name__)

UNKNOWN_DEVICE = "(unknown)"  # one counter for every unconfigured sender, so hostile topics cannot grow the table


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


@dataclass(frozen=True, slots=True)
class Route:
    """Which device a topic belongs to, and how to read it."""

    device: Device
    driver_name: str
    decode: Callable[[bytes, Device, float], list[Event]]


class Intake:
    """Knows which topic belongs to which configured device and decodes it with that device's driver."""

    def __init__(self, config: SiteConfig) -> None:
        self.rejections = Rejections()
        self.routes: dict[str, Route] = {}
        filters: set[str] = set()
        site = config.site.id
        for device in config.devices:
            drv = driver(device.driver)
            topic = drv.topic_for(site, device)
            self.routes[topic] = Route(device, drv.name, drv.decode)
            availability = drv.availability_topic(site, device.id, topic)
            if availability:
                self.routes[availability] = Route(device, drv.name, decode_availability)
            filters.update(drv.watch(site))
        # Devices whose configured topic lies outside their family's usual filter are subscribed exactly.
        filters.update(t for t in self.routes if not any(topic_matches_sub(f, t) for f in filters))
        self.filters = sorted(filters)

    def decode(self, topic: str, payload: bytes, now: float) -> list[Event]:
        """Events in one message; [] (counted and logged) when the sender is unknown or the payload bad."""
        route = self.routes.get(topic)
        if route is None:
            self.rejections.record(UNKNOWN_DEVICE, "unknown_device", f"topic {topic!r}", now)
            return []
        try:
            return route.decode(payload, route.device, now)
        except PayloadError as exc:
            self.rejections.record(route.device.id, exc.reason, exc.detail, now)
        except Exception as exc:  # a decoder bug must not take the edge down with it
            log.exception("event=decoder_failed device=%s driver=%s", route.device.id, route.driver_name)
            self.rejections.record(route.device.id, "decoder_error", repr(exc), now)
        return []
