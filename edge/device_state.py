"""Each device as the edge sees it (online, last seen, battery, link quality), for installers' status views.

Published retained on `guardlink/<site>/devices/<device>/state`: at once when a device goes offline or
comes back; when its battery or link quality changes, at most every `min_interval_s` (a flood of
reports must not become a flood of publishes); and at least every `every_s` while it is heard, so a
status query always finds a recent last-seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from guardlink.models import Event, iso


@dataclass(slots=True)
class _State:
    online: bool = True
    last_seen: float | None = None
    battery: float | None = None
    linkquality: int | None = None
    published_at: float | None = None
    published: tuple | None = None  # (online, battery, linkquality) last published


class DeviceStates:
    """Pure bookkeeping; the caller publishes the documents it is given."""

    def __init__(self, devices: list[str], every_s: float = 60.0, min_interval_s: float = 10.0) -> None:
        self.every_s = every_s
        self.min_interval_s = min_interval_s
        self.states = {d: _State() for d in devices}

    def heard(self, event: Event, now: float) -> dict[str, object] | None:
        """Take any event from a device; the document to publish, if one is due."""
        state = self.states.get(event.device)
        if state is None:
            return None
        state.last_seen = event.at
        if event.battery is not None:
            state.battery = event.battery
        if event.linkquality is not None:
            state.linkquality = event.linkquality
        return self._due(state, now, urgent=False)

    def online(self, device: str, online: bool, now: float) -> dict[str, object] | None:
        """The device went offline or came back."""
        state = self.states.get(device)
        if state is None:
            return None
        state.online = online
        return self._due(state, now, urgent=True)

    def _due(self, state: _State, now: float, *, urgent: bool) -> dict[str, object] | None:
        key = (state.online, state.battery, state.linkquality)
        if state.published_at is not None and not urgent:
            since = now - state.published_at
            if since < self.min_interval_s or (key == state.published and since < self.every_s):
                return None
        state.published, state.published_at = key, now
        return {
            "online": state.online,
            "last_seen": iso(state.last_seen).isoformat() if state.last_seen else None,
            "battery": state.battery,
            "linkquality": state.linkquality,
        }
