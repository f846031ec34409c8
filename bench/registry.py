"""`guardlink bench registry`: the district register's import rate and the time from a register change to the roster applied.

- import: 50 companies and 10,000 guards (a generated CSV, as a security company would send) read, checked row by row,
  hashed and committed in one transaction by `guardlink registry import`'s code, into SQLite and into PostgreSQL
  (fresh databases), as rows per second.
- roster: a hub's roster publisher (PostgreSQL, the 10,000 guards imported; 40 of them posted at the bench site) and a
  real edge on a real mosquitto. A guard's vetting is ended through the register's edit (as the API does it), again
  and again; each time, from that commit to the edge reporting the new roster applied (its `roster/applied` report).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

COMPANY_HEADER = ["licence", "name", "contact"]
GUARD_HEADER = [
    "guard", "name", "id_number", "company_licence", "phone", "roles", "status", "vetting", "vetted_by", "vetted_on", "vetting_until",
    "pre_job_training", "assessment_score", "site", "posted_from", "wearable", "training_on", "training_hours",
]
ROLES = ["patrol", "first_aid", "gate", "mediator", "information_collector", "grid_worker", "security_propagandist"]
GOAL_ROWS_PER_S = 5000.0
GOAL_APPLY_P99_MS = 500.0
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(i: int, region: str = "150102") -> str:
    """A valid, unique (per `i` below 15,000,000) resident ID number: region, birth day, sequence, check digit."""
    born = date(1965, 1, 1) + timedelta(days=i % 15000)
    body = f"{region}{born:%Y%m%d}{100 + i // 15000:03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11]


def companies(count: int) -> list[dict[str, str]]:
    return [{"licence": f"LIC-{c:03d}", "name": f"Security Company {c}", "contact": f"+86 471 555 {c:04d}"} for c in range(count)]


def guards(count: int, companies_count: int, sites: list[str], today: date, *, seed: int = 1) -> list[dict[str, str]]:
    """`count` guards spread over the companies and sites, almost all eligible today (vetting valid a year, 20 h training)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        rows.append({
            "guard": f"g-{i:05d}", "name": f"Guard {i}", "id_number": id_number(i), "company_licence": f"LIC-{i % companies_count:03d}",
            "phone": f"+86 138 {i:08d}", "roles": ";".join(rng.sample(ROLES, 2)), "status": "active", "vetting": "passed",
            "vetted_by": "Officer Liu", "vetted_on": (today - timedelta(days=30)).isoformat(), "vetting_until": (today + timedelta(days=365)).isoformat(),
            "pre_job_training": "yes", "assessment_score": str(60 + i % 40), "site": sites[i % len(sites)] if sites else "",
            "posted_from": (today - timedelta(days=10)).isoformat(), "wearable": "", "training_on": (today - timedelta(days=20)).isoformat(),
            "training_hours": "20",
        })
    return rows


def write_csv(path: Path, header: list[str], rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_xlsx(path: Path, company_rows: list[dict[str, str]], guard_rows: list[dict[str, str]]) -> Path:
    """A workbook as companies send it: a companies sheet and a guards sheet."""
    from hub.register_import import write_xlsx as write

    write(path, {"companies": (COMPANY_HEADER, company_rows), "guards": (GUARD_HEADER, guard_rows)})
    return path
