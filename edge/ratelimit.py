"""Token buckets: each device may send a steady rate and a burst; beyond that its messages are dropped."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """`rate_per_s` tokens a second, holding at most `burst`; each message takes one."""

    rate_per_s: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate_per_s: float, burst: float, now: float) -> TokenBucket:
        return cls(rate_per_s, burst, burst, now)

    def take(self, now: float) -> bool:
        """Take a token if there is one."""
        tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate_per_s)
        self.updated = max(self.updated, now)
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False
