"""Defensive reading of device payloads: size, JSON shape and field checks with named reasons."""

from __future__ import annotations

import json
import math
from typing import Any, Literal, overload

MAX_PAYLOAD_BYTES = 16 * 1024  # devices send a few hundred bytes; anything near this is broken or hostile
MAX_JSON_DEPTH = 8
# Device clocks (NTP-synced firmware, phones, an NVR) may run a little ahead; a report older than an hour is a
# replay or a device that buffered it so long it no longer describes the present.
MAX_CLOCK_AHEAD_S = 300.0
MAX_REPORT_AGE_S = 3600.0


class PayloadError(ValueError):
    """A payload was rejected; `reason` is a short stable code used for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def json_object(payload: bytes, max_bytes: int = MAX_PAYLOAD_BYTES) -> dict[str, Any]:
    """Parse a payload that must be a small JSON object."""
    if len(payload) > max_bytes:
        raise PayloadError("too_large", f"{len(payload)} bytes, limit {max_bytes}")
    try:
        doc = json.loads(payload)
    except ValueError as exc:  # bad UTF-8, bad JSON, or an integer longer than Python will convert
        raise PayloadError("malformed_json", str(exc)) from None
    except RecursionError:
        raise PayloadError("too_deep", "nesting too deep to parse") from None
    if not isinstance(doc, dict):
        raise PayloadError("not_an_object", f"expected a JSON object, got {type(doc).__name__}")
    # Nesting needs brackets: a payload with few of them cannot be too deep, and counting bytes is cheap.
    if payload.count(b"[") + payload.count(b"{") > MAX_JSON_DEPTH and _depth(doc) > MAX_JSON_DEPTH:
        raise PayloadError("too_deep", f"nesting deeper than {MAX_JSON_DEPTH}")
    return doc


# A field read with `required=True` is never None: the overloads tell the type checker so.
@overload
def number(doc: dict[str, Any], key: str, lo: float, hi: float, *, required: Literal[True]) -> float: ...
@overload
def number(doc: dict[str, Any], key: str, lo: float, hi: float, *, required: bool = False) -> float | None: ...
def number(doc: dict[str, Any], key: str, lo: float, hi: float, *, required: bool = False) -> float | None:
    """A finite number field within [lo, hi]; None when absent and optional."""
    value = doc.get(key)
    if value is None:
        if required:
            raise PayloadError("missing_field", f"{key!r} is required")
        return None
    # math.isfinite would overflow on a huge JSON integer; integers are always finite anyway
    if isinstance(value, bool) or not isinstance(value, int | float) or (isinstance(value, float) and not math.isfinite(value)):
        raise PayloadError("wrong_type", f"{key!r} must be a number, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise PayloadError("out_of_range", f"{key!r}={value} outside [{lo}, {hi}]")
    return float(value)


@overload
def integer(doc: dict[str, Any], key: str, lo: int, hi: int, *, required: Literal[True]) -> int: ...
@overload
def integer(doc: dict[str, Any], key: str, lo: int, hi: int, *, required: bool = False) -> int | None: ...
def integer(doc: dict[str, Any], key: str, lo: int, hi: int, *, required: bool = False) -> int | None:
    """An integer field within [lo, hi]; None when absent and optional."""
    value = doc.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise PayloadError("wrong_type", f"{key!r} must be an integer, got {type(value).__name__}")
    result = number(doc, key, lo, hi, required=required)
    return None if result is None else int(result)


@overload
def text(doc: dict[str, Any], key: str, *, required: Literal[True], max_len: int = 64) -> str: ...
@overload
def text(doc: dict[str, Any], key: str, *, required: bool = False, max_len: int = 64) -> str | None: ...
def text(doc: dict[str, Any], key: str, *, required: bool = False, max_len: int = 64) -> str | None:
    """A short string field; None when absent and optional."""
    value = doc.get(key)
    if value is None:
        if required:
            raise PayloadError("missing_field", f"{key!r} is required")
        return None
    if not isinstance(value, str):
        raise PayloadError("wrong_type", f"{key!r} must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise PayloadError("out_of_range", f"{key!r} longer than {max_len} characters")
    return value


@overload
def flag(doc: dict[str, Any], key: str, *, required: Literal[True]) -> bool: ...
@overload
def flag(doc: dict[str, Any], key: str, *, required: bool = False) -> bool | None: ...
def flag(doc: dict[str, Any], key: str, *, required: bool = False) -> bool | None:
    """A true/false field; None when absent and optional."""
    value = doc.get(key)
    if value is None:
        if required:
            raise PayloadError("missing_field", f"{key!r} is required")
        return None
    if not isinstance(value, bool):
        raise PayloadError("wrong_type", f"{key!r} must be true or false, got {type(value).__name__}")
    return value


@overload
def obj(doc: dict[str, Any], key: str, *, required: Literal[True]) -> dict[str, Any]: ...
@overload
def obj(doc: dict[str, Any], key: str, *, required: bool = False) -> dict[str, Any] | None: ...
def obj(doc: dict[str, Any], key: str, *, required: bool = False) -> dict[str, Any] | None:
    """A nested JSON object field; None when absent and optional."""
    value = doc.get(key)
    if value is None:
        if required:
            raise PayloadError("missing_field", f"{key!r} is required")
        return None
    if not isinstance(value, dict):
        raise PayloadError("wrong_type", f"{key!r} must be an object, got {type(value).__name__}")
    return value


def texts(doc: dict[str, Any], key: str, *, max_items: int = 32, max_len: int = 64) -> list[str]:
    """A list of short strings; [] when absent."""
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PayloadError("wrong_type", f"{key!r} must be a list of strings")
    if len(value) > max_items or any(len(item) > max_len for item in value):
        raise PayloadError("out_of_range", f"{key!r} has more than {max_items} items or one longer than {max_len} characters")
    return value


def timestamp(doc: dict[str, Any], key: str, now: float, *, required: bool = False) -> float | None:
    """An epoch-seconds field that must lie near `now`: at most 5 min ahead, at most 1 h behind."""
    value = number(doc, key, 0, 2**34, required=required)
    if value is None:
        return None
    if value > now + MAX_CLOCK_AHEAD_S:
        raise PayloadError("future_timestamp", f"{key!r}={value:.0f} is {value - now:.0f} s ahead of the edge's clock")
    if value < now - MAX_REPORT_AGE_S:
        raise PayloadError("stale_timestamp", f"{key!r}={value:.0f} is {now - value:.0f} s old (limit {MAX_REPORT_AGE_S:.0f} s)")
    return value


def _depth(value: Any) -> int:
    """Nesting depth, iteratively so hostile nesting cannot exhaust the stack."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((child, depth) for child in item)
    return deepest
