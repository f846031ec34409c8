"""What a driver entry is: one declarative description of a device family, like a Zigbee2MQTT converter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from guardlink.models import Event
from guardlink.siteconfig import Device


@dataclass(frozen=True, slots=True)
class Driver:
    """How guardlink speaks to one device family."""

    name: str
    summary: str
    watch: Callable[[str], tuple[str, ...]]  # site id -> topic filters the family's devices publish under
    default_topic: Callable[[str, str], str]  # (site id, device id) -> the device's topic when the config has none
    decode: Callable[[bytes, Device, float], list[Event]]  # (payload, device, now) -> events; raises PayloadError

    def topic_for(self, site: str, device: Device) -> str:
        """The topic this device publishes on."""
        return device.topic or self.default_topic(site, device.id)
