"""Incident records for hotspots: police CSV exports (time, lat, lon, category) and the hub's own incident store.

Times become days on the local clock of the district (`Incidents.t`), so whole days and hours of the day are plain
arithmetic; every problem in a CSV is reported as `file:row:column: message` (row = the file's line number).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from hub.tables import EscalationRow

COLUMNS = ("time", "lat", "lon", "category")
ALIASES = {"datetime": "time", "timestamp": "time", "occurred_at": "time", "latitude": "lat", "longitude": "lon", "lng": "lon", "type": "category", "kind": "category"}
DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class Incidents:
    """Incidents sorted by time: `t` in days since 1970-01-01 on the district's local clock, position, category."""

    t: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    category: np.ndarray
    zone: str

    @classmethod
    def of(cls, t: np.ndarray, lat: np.ndarray, lon: np.ndarray, category: Iterable[str], zone: str) -> Incidents:
        """Sorted by time (ties keep their order)."""
        order = np.argsort(t, kind="stable")
        categories = np.asarray(list(category), dtype=object)
        return cls(np.asarray(t, np.float64)[order], np.asarray(lat, np.float64)[order], np.asarray(lon, np.float64)[order], categories[order], zone)

    def __len__(self) -> int:
        return int(self.t.size)


def zone_named(name: str) -> tzinfo:
    """An IANA zone (`Asia/Shanghai`), `UTC`, or a fixed offset (`+08:00`)."""
    if name.upper() in ("UTC", "Z"):
        return timezone.utc
    if name[:1] in "+-":
        sign = -1 if name[0] == "-" else 1
        hours, _, minutes = name[1:].partition(":")
        return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)), name)
    return ZoneInfo(name)


def local_days(moment: datetime, zone: tzinfo) -> float:
    """An aware moment as days since 1970-01-01 on `zone`'s wall clock."""
    wall = moment.astimezone(zone).replace(tzinfo=timezone.utc)
    return wall.timestamp() / DAY_S


def wall_clock(days: float, zone: tzinfo) -> datetime:
    """The aware moment whose wall clock on `zone` reads `days` since 1970-01-01 (inverse of local_days)."""
    wall = datetime.fromtimestamp(days * DAY_S, timezone.utc).replace(tzinfo=None)
    return wall.replace(tzinfo=zone)


def read_csv(path: Path, zone: str | None = None) -> tuple[Incidents, list[str]]:
    """The good rows of a CSV with columns time, lat, lon, category (any order, more allowed), and a problem per bad field.

    Times are ISO 8601 (`2025-03-01T21:05:00+08:00`, `2025-03-01 21:05`); times without an offset are on `zone`'s clock.
    `zone` defaults to the offset of the file's first time that has one, else UTC.
    """
    problems: list[str] = []
    times: list[datetime] = []
    lats: list[float] = []
    lons: list[float] = []
    categories: list[str] = []
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        return Incidents.of(np.empty(0), np.empty(0), np.empty(0), [], zone or "UTC"), [f"{path}: cannot read incident records: {exc.strerror or exc}"]
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                problems.append(f"{path}:1:1: the file is empty; it needs a header row with {', '.join(COLUMNS)}")
            else:
                columns = _columns(header, path, problems)
                if columns is not None:
                    _rows(reader, columns, len(header), path, problems, times, lats, lons, categories)
        except (csv.Error, UnicodeDecodeError) as exc:
            problems.append(f"{path}:{reader.line_num + 1}:1: unreadable CSV: {exc}")
    zone_name = zone or next((_offset_name(m) for m in times if m.tzinfo is not None), "UTC")
    tz = zone_named(zone_name)
    days = np.array([local_days(m if m.tzinfo else m.replace(tzinfo=tz), tz) for m in times], dtype=np.float64)
    return Incidents.of(days, np.array(lats), np.array(lons), categories, zone_name), problems


def _offset_name(moment: datetime) -> str:
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    return "UTC" if minutes == 0 else f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _columns(header: list[str], path: Path, problems: list[str]) -> dict[str, int] | None:
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        key = name.strip().lower()
        key = ALIASES.get(key, key)
        if key in COLUMNS and key not in found:
            found[key] = index
    missing = [c for c in COLUMNS if c not in found]
    if missing:
        problems.append(f"{path}:1:1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (the header has: {', '.join(header)})")
        return None
    return found


def _rows(reader: Any, columns: dict[str, int], width: int, path: Path, problems: list[str],
          times: list[datetime], lats: list[float], lons: list[float], categories: list[str]) -> None:
    need = max(columns.values()) + 1
    for row in reader:
        line = reader.line_num  # the line where the record just read ends
        if not row or not any(field.strip() for field in row):
            continue
        if len(row) < need:
            problems.append(f"{path}:{line}:{len(row) + 1}: the row has {len(row)} fields, the header {width}")
            continue
        bad = len(problems)
        moment = _time(row[columns["time"]], f"{path}:{line}:{columns['time'] + 1}", problems)
        lat = _degrees(row[columns["lat"]], 90, "lat", f"{path}:{line}:{columns['lat'] + 1}", problems)
        lon = _degrees(row[columns["lon"]], 180, "lon", f"{path}:{line}:{columns['lon'] + 1}", problems)
        if lat == 0 and lon == 0:
            problems.append(f"{path}:{line}:{columns['lat'] + 1}: lat, lon 0, 0 is a missing geocode, not a place")
        if len(problems) > bad or moment is None or lat is None or lon is None:
            continue
        times.append(moment)
        lats.append(lat)
        lons.append(lon)
        categories.append(row[columns["category"]].strip() or "unspecified")


def _time(text: str, where: str, problems: list[str]) -> datetime | None:
    text = text.strip()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{where}: time {text!r} is not ISO 8601 (e.g. 2025-03-01T21:05:00+08:00 or 2025-03-01 21:05)")
        return None


def _degrees(text: str, limit: float, name: str, where: str, problems: list[str]) -> float | None:
    try:
        value = float(text)
    except ValueError:
        problems.append(f"{where}: {name} {text.strip()!r} is not a number of degrees")
        return None
    if not (math.isfinite(value) and -limit <= value <= limit):
        problems.append(f"{where}: {name} {text.strip()} is out of range (-{limit:g}..{limit:g})")
        return None
    return value


def write_csv(path: Path, incidents: Incidents) -> None:
    """Write incidents as a CSV with time (ISO 8601 with the zone's offset), lat, lon, category."""
    tz = zone_named(incidents.zone)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for t, lat, lon, category in zip(incidents.t.tolist(), incidents.lat.tolist(), incidents.lon.tolist(), incidents.category.tolist()):
            writer.writerow((wall_clock(t, tz).isoformat(timespec="seconds"), f"{lat:.6f}", f"{lon:.6f}", category))


def from_store(engine: Engine, zone: str, sites: frozenset[str] | None = None, since: datetime | None = None) -> Incidents:
    """The hub's incidents with a position (test alarms left out), on `zone`'s clock; `sites` narrows to those sites."""
    query = select(EscalationRow.detected_at, EscalationRow.lat, EscalationRow.lon, EscalationRow.kind).where(
        EscalationRow.lat.is_not(None), EscalationRow.lon.is_not(None), EscalationRow.test.is_(False)
    )
    if sites is not None:
        query = query.where(EscalationRow.site.in_(sites))
    if since is not None:
        query = query.where(EscalationRow.detected_at >= since)
    with Session(engine) as db:
        rows = db.execute(query).all()
    tz = zone_named(zone)
    days = np.array([local_days(row.detected_at, tz) for row in rows], dtype=np.float64)
    return Incidents.of(days, np.array([r.lat for r in rows], np.float64), np.array([r.lon for r in rows], np.float64), [r.kind for r in rows], zone)
