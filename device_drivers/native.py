"""The envelope every message of guardlink's native firmware carries: sequence number, boot counter, clock.

    {"seq": 42, "boot": 17, "ts": 1700000000.25, "type": ..., ...}

- `seq` (required, 0..2^32-1) counts the device's messages, from 0 after each boot.
- `boot` (optional, 0..2^53-1) counts the device's boots; the firmware keeps it in flash and adds one at
  every start, so (boot, seq) only ever grows. Without it a reboot can only be guessed (edge/replay.py).
- `ts` (optional) is the device's epoch time in seconds; when present it must be within 5 min ahead and
  1 h behind the edge's clock.

The edge drops a message whose (boot, seq) is not newer than the last one it accepted from the device.
"""

from __future__ import annotations

from typing import Any

from device_drivers.payload import integer, text, timestamp

MAX_SEQ = 2**32 - 1
MAX_BOOT = 2**53 - 1  # JSON-safe integer; firmware counts boots, simulators use milliseconds since the epoch


def envelope(doc: dict[str, Any], now: float) -> tuple[str, dict[str, object]]:
    """The message type and the attributes every event of the message carries (`seq`, and `boot` when sent)."""
    seq = integer(doc, "seq", 0, MAX_SEQ, required=True)
    boot = integer(doc, "boot", 0, MAX_BOOT)
    timestamp(doc, "ts", now)
    kind = text(doc, "type", required=True)
    return kind, ({"seq": seq} if boot is None else {"seq": seq, "boot": boot})


def stamped(doc: dict[str, object], seq: int, boot: int | None) -> dict[str, object]:
    """A message document with its envelope, as the firmware sends it."""
    return {"seq": seq, **({"boot": boot} if boot is not None else {}), **doc}
