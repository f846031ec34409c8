"""Replay protection for native guardlink devices: each (boot, seq) is taken once, in whatever order it comes.

A broker does not keep one device's messages in order across its own restart or a client's resend after
reconnecting: presses queued before a crash may arrive after newer ones. So the edge remembers, per device
and boot, which sequence numbers it has taken (the newest one and a window of `WINDOW` below it), not just
the newest, and a message is judged against that record:
- `NEW`: not taken before. It is taken, whatever its place in the order.
- `SEEN`: this (boot, seq) was taken before: a copy (a resend, a redelivery or a replay).
- `UNKNOWN`: older than the window, below the first seq heard of that boot, or at or below what was restored
  after an edge restart: the record cannot tell whether it was taken.
- `OLD_BOOT`: a boot older than every boot remembered for the device: a message from an earlier life.

What that means for a message is the caller's decision (edge/intake.py): a position or a battery report
that is not `NEW` is dropped and counted; an alarm is dropped only when it is provably a copy of one
already stored (the outbox knows each stored alarm by device, boot and seq), or when it comes from an
earlier boot. The last `BOOTS_KEPT` boots of a device are remembered, so a press queued just before a
reboot still counts when it arrives after the device's first messages from its new life.

A message without `boot` counts as the same life as the last one, except that a device restarting without
a boot counter is recognised when its `seq` starts again low (below 16) at a number already taken, after it
was silent for at least 5 s: a reboot takes longer than that, while a replay injected between the reports
of a live device comes within seconds of them. A device that sends `boot` for the first time is taken as
rebooted (new firmware).

The record survives an edge restart as each boot's newest seq (`snapshot` / `restore`): after a restart,
anything at or below it is `UNKNOWN` (an alarm then goes to the outbox's record), anything above is `NEW`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

WINDOW = 4096  # a wearable sends about 3 messages a second: more than 20 minutes of one device's traffic
BOOTS_KEPT = 4
REBOOT_SEQ_BELOW = 16
REBOOT_SILENCE_S = 5.0


class Verdict(StrEnum):
    """How a (boot, seq) compares with what was taken from the device before."""

    NEW = "new"
    SEEN = "seen"
    UNKNOWN = "unknown"
    OLD_BOOT = "old_boot"


@dataclass(slots=True)
class _Window:
    """The seqs taken in one boot: the newest, and a bit per seq for the `WINDOW` below it (bit i = newest - i)."""

    newest: int
    taken: int = 1
    floor: int = 0  # below this nothing is known (older than the window, or below what was restored)

    def take(self, seq: int) -> Verdict:
        if seq > self.newest:
            shift = seq - self.newest
            self.taken = ((self.taken << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.newest = seq
            self.floor = max(self.floor, seq - WINDOW + 1)
            return Verdict.NEW
        if seq < self.floor:
            return Verdict.UNKNOWN
        bit = 1 << (self.newest - seq)
        if self.taken & bit:
            return Verdict.SEEN
        self.taken |= bit
        return Verdict.NEW


@dataclass(slots=True)
class _Device:
    boots: dict[int | None, _Window] = field(default_factory=dict)  # by boot; None: a device without a boot counter
    at: float = float("-inf")  # when a message was last taken


class ReplayGuard:
    """Remembers which (boot, seq) each native device has had taken."""

    def __init__(self) -> None:
        self._devices: dict[str, _Device] = {}

    def check(self, device: str, seq: int, boot: int | None, now: float) -> Verdict:
        """Judge one message, and take it when NEW."""
        state = self._devices.setdefault(device, _Device())
        verdict = self._judge(state, seq, boot, now)
        if verdict is Verdict.NEW:
            state.at = now
        return verdict

    def _judge(self, state: _Device, seq: int, boot: int | None, now: float) -> Verdict:
        if boot is None:
            window = state.boots.get(None) if state.boots else None
            if window is None and state.boots:
                boot = max(b for b in state.boots if b is not None)  # no boot now, but there was one: the same life
                window = state.boots[boot]
            if window is None:
                state.boots[None] = _Window(seq, floor=seq)
                return Verdict.NEW
            verdict = window.take(seq)
            if verdict is not Verdict.NEW and seq < REBOOT_SEQ_BELOW and now - state.at >= REBOOT_SILENCE_S:
                state.boots[boot] = _Window(seq, floor=seq)  # restarted without a boot counter
                return Verdict.NEW
            return verdict
        window = state.boots.get(boot)
        if window is not None:
            return window.take(seq)
        counted = [b for b in state.boots if b is not None]
        if counted and boot < min(counted):
            return Verdict.OLD_BOOT
        state.boots.pop(None, None)  # the first message with a boot counter: new firmware, a new life
        state.boots[boot] = _Window(seq, floor=seq)
        for old in sorted(b for b in state.boots if b is not None)[:-BOOTS_KEPT]:
            del state.boots[old]
        return Verdict.NEW

    def shift(self, seconds: float) -> None:
        """The wall clock stepped by `seconds` (NTP): silences are measured from the same moments as before."""
        for state in self._devices.values():
            state.at += seconds

    def snapshot(self) -> dict[str, list[list[int | None]]]:
        """Per device, each remembered boot with its newest seq taken (JSON-ready), to restore after a restart."""
        return {device: [[boot, w.newest] for boot, w in state.boots.items()] for device, state in self._devices.items()}

    def restore(self, snapshot: dict[str, list[list[int | None]]]) -> None:
        """Take up a snapshot: each boot's newest seq and everything below it count as UNKNOWN, above it as NEW."""
        for device, boots in snapshot.items():
            state = self._devices.setdefault(device, _Device())
            for boot, newest in boots:
                if isinstance(newest, int) and (boot is None or isinstance(boot, int)):
                    state.boots[boot] = _Window(newest, taken=0, floor=newest + 1)
