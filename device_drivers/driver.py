"""What a driver entry is: one declarative description of a device family, like a Zigbee2MQTT converter."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from device_drivers.payload import PayloadError
from guardlink.models import Event, EventKind
from guardlink.siteconfig import Device


def _no_availability(site: str, device_id: str, topic: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Driver:
    """How guardlink speaks to one device family."""

    name: str
    summary: str
    watch: Callable[[str], tuple[str, ...]]  # site id -> topic filters the family's devices publish under
    default_topic: Callable[[str, str], str]  # (site id, device id) -> the device's topic when the config has none
    decode: Callable[[bytes, Device, float], list[Event]]  # (payload, device, now) -> events; raises PayloadError
    heartbeat_s: float  # a healthy device of this family is heard from at least this often
    # (site id, device id, device topic) -> where the family announces online/offline (Last Will), if it does
    availability_topic: Callable[[str, str, str], str | None] = _no_availability

    def topic_for(self, site: str, device: Device) -> str:
        """The topic this device publishes on."""
        return device.topic or self.default_topic(site, device.id)


AVAILABILITY_STATES = {"online": True, "offline": False}


def decode_availability(payload: bytes, device: Device, now: float) -> list[Event]:
    """`online` / `offline`, plain or as {"state": ...} (Zigbee2MQTT's two formats; guardlink firmware uses plain)."""
    if len(payload) > 256:
        raise PayloadError("too_large", f"{len(payload)} bytes for an availability message")
    text = payload.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        try:
            text = json.loads(text).get("state", "")
        except (ValueError, AttributeError):
            raise PayloadError("malformed_json", "availability is neither online/offline nor {\"state\": ...}") from None
    if text not in AVAILABILITY_STATES:
        raise PayloadError("unknown_state", f"availability {str(text)[:32]!r} is not online or offline")
    return [Event(EventKind.AVAILABILITY, device.id, now, online=AVAILABILITY_STATES[text])]
