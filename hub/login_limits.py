"""How many failed logins a user name or a client address may have before logins are refused for a while."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """At most `per_user` failures for one name and `per_address` from one address within `window_s`."""

    per_user: int = 5
    per_address: int = 20
    window_s: float = 300.0


def retry_after(failures: Iterable[float], limit: int, window_s: float, now: float) -> float | None:
    """Seconds until one more attempt is allowed, given the epoch times of earlier failures; None when allowed now."""
    recent = sorted(t for t in failures if t > now - window_s)
    if len(recent) < limit:
        return None
    # Allowed again once the limit-th most recent failure has left the window.
    return max(recent[-limit] + window_s - now, 0.001)
