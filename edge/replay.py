"""Replay protection for native guardlink devices: an old or repeated (boot, seq) is dropped.

The rule, per device, against the last message accepted from it:
- with a boot counter (`boot`): a higher boot is a reboot (accepted, whatever its seq); a lower boot is a
  replay from an earlier life; the same boot must bring a higher `seq`.
- a message without `boot` counts as the same boot as the last one, so its `seq` must be higher, except
  that a device restarting without a boot counter is recognised when its `seq` starts again low
  (below 16) after it was silent for at least 5 s: a reboot takes longer than that, while a replay
  injected between the reports of a live device comes within seconds of them. A device that sends
  `boot` for the first time is taken as rebooted (new firmware).
- the first message heard from a device is accepted; the state lives in memory, so after an edge restart
  the broker's redeliveries are accepted again and the outbox recognises those already escalated.
"""

from __future__ import annotations

from dataclasses import dataclass

REBOOT_SEQ_BELOW = 16
REBOOT_SILENCE_S = 5.0


@dataclass(slots=True)
class _Last:
    boot: int | None
    seq: int
    at: float


class ReplayGuard:
    """Remembers the newest (boot, seq) accepted from each device."""

    def __init__(self) -> None:
        self._last: dict[str, _Last] = {}

    def check(self, device: str, seq: int, boot: int | None, now: float) -> str | None:
        """None when the message is new (and remembers it); otherwise why it is dropped."""
        last = self._last.get(device)
        if last is None or (boot is not None and (last.boot is None or boot > last.boot)):
            self._last[device] = _Last(boot, seq, now)
            return None
        if boot is not None and boot < last.boot:
            return "replayed_boot"
        if seq > last.seq:
            last.seq, last.at = seq, now
            return None
        if boot is None and seq < REBOOT_SEQ_BELOW and now - last.at >= REBOOT_SILENCE_S:
            self._last[device] = _Last(None, seq, now)  # restarted without a boot counter
            return None
        return "replayed_seq"
