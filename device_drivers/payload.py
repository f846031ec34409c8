"""Defensive reading of device payloads: size, JSON shape and field checks with named reasons."""

from __future__ import annotations

import json
import math
from typing import Any

MAX_PAYLOAD_BYTES = 16 * 1024  # devices send a few hundred bytes; anything near this is broken or hostile
MAX_JSON_DEPTH = 8


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
    if _depth(doc) > MAX_JSON_DEPTH:
        raise PayloadError("too_deep", f"nesting deeper than {MAX_JSON_DEPTH}")
    return doc


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


def integer(doc: dict[str, Any], key: str, lo: int, hi: int, *, required: bool = False) -> int | None:
    """An integer field within [lo, hi]; None when absent and optional."""
    value = doc.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise PayloadError("wrong_type", f"{key!r} must be an integer, got {type(value).__name__}")
    result = number(doc, key, lo, hi, required=required)
    return None if result is None else int(result)


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
