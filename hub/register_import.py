"""Bulk import and export of the register: CSV and XLSX files from security companies.

Every row of every file is checked and every problem reported as `file:row:column: message` (row 1 is the header);
when there is any, nothing is imported. Otherwise the whole import is one transaction. A file is a companies file when
its header has `licence` and no `guard`, else a guards file; an XLSX workbook may hold one of each as sheets (companies
are taken first). Columns are described in README "The district register"; firmware_configs/register/ has examples.

A guards column present with an empty cell clears that field; a column left out keeps what the register has (new
guards get the defaults). An empty `id_number` keeps the stored hash of an existing guard, so an export (which has only
the masked number) can be edited and imported back. ID numbers never appear in messages, only their masked form.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from guardlink.yamlconfig import ID_PATTERN
from hub.register import (
    GUARD_FIELDS,
    Employment,
    IdHasher,
    RegisterError,
    Vetting,
    audit_rows,
    bump,
    changed_fields,
    id_number_problem,
    ineligible,
    insert_many,
    mask_id,
    normalise_id,
    plain,
    standing,
    training_hours,
)
from hub.register_tables import CompanyRow, RegisteredGuard, TrainingRow

COMPANY_COLUMNS = {"licence": True, "name": True, "contact": False}  # column -> required in the header
GUARD_COLUMNS = {
    "guard": True, "name": True, "id_number": True, "company_licence": True, "phone": False, "roles": False, "status": False,
    "vetting": True, "vetted_by": False, "vetted_on": False, "vetting_until": False, "pre_job_training": True, "assessment_score": False,
    "site": False, "posted_from": False, "wearable": False, "training_on": False, "training_hours": False,
}
EXPORTED_ONLY = ("id_masked", "community", "training_hours_12m", "eligible")  # written by export, ignored by import
EXPORT_COLUMNS = [
    "guard", "name", "id_number", "id_masked", "company_licence", "phone", "roles", "status", "vetting", "vetted_by", "vetted_on",
    "vetting_until", "pre_job_training", "assessment_score", "site", "community", "posted_from", "wearable", "training_hours_12m", "eligible",
]
_ID = re.compile(ID_PATTERN)
_PHONE = re.compile(r"^\+?[0-9][0-9 -]{2,30}$")
_YES = {"yes", "y", "true", "1", "是"}
_NO = {"no", "n", "false", "0", "否"}


@dataclass(slots=True)
class Sheet:
    """One table read from a file: where it came from, its header, its rows by spreadsheet row number."""

    source: str
    header: list[str]
    rows: list[tuple[int, list[str]]]

    @property
    def kind(self) -> str:
        return "companies" if "licence" in self.header and "guard" not in self.header else "guards"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_sheets(path: Path) -> list[Sheet]:
    """The tables of a CSV file (UTF-8, a BOM allowed) or of every sheet of an XLSX workbook; RegisterError when unreadable."""
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            return _read_xlsx(path)
        with path.open(newline="", encoding="utf-8-sig") as f:
            return [_sheet(str(path), ((n, [c.strip() for c in cells]) for n, cells in enumerate(csv.reader(f), start=1)))]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RegisterError(f"{path}: cannot read it ({exc}); give a CSV file (UTF-8) or an XLSX workbook") from None


def _read_xlsx(path: Path) -> list[Sheet]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, KeyError, ValueError) as exc:
        raise RegisterError(f"{path}: not an XLSX workbook ({exc})") from None
    try:
        sheets = [(ws.title, _sheet("", ((n, [_cell(v) for v in row]) for n, row in enumerate(ws.iter_rows(values_only=True), start=1)))) for ws in book.worksheets]
    finally:
        book.close()
    sheets = [(title, sheet) for title, sheet in sheets if sheet.header]  # empty sheets are no tables
    for title, sheet in sheets:
        sheet.source = str(path) if len(sheets) == 1 else f"{path}#{title}"
    return [sheet for _, sheet in sheets]


def _sheet(source: str, numbered: Iterable[tuple[int, list[str]]]) -> Sheet:
    header: list[str] | None = None
    rows = []
    for number, cells in numbered:
        if not any(cells):
            continue  # blank lines, trailing rows a spreadsheet keeps
        if header is None:
            header = [c.lower().replace(" ", "_") for c in cells]
            continue
        rows.append((number, cells))
    return Sheet(source, header or [], rows)


# --- checking -------------------------------------------------------------------------------------------------------


class _Row:
    """One row's cells by column, with checks that record `file:row:column: message` problems."""

    def __init__(self, source: str, number: int, cells: dict[str, str], problems: list[str]) -> None:
        self.source, self.number, self.cells, self.problems = source, number, cells, problems
        self.bad: set[str] = set()  # columns with a problem

    def problem(self, column: str, message: str) -> None:
        self.bad.add(column)
        self.problems.append(f"{self.source}:{self.number}:{column}: {message}")

    def has(self, column: str) -> bool:
        return column in self.cells

    def text(self, column: str, *, required: bool = False, max_len: int = 200, pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
        value = self.cells.get(column, "")
        if not value:
            if required:
                self.problem(column, "is empty; it is required")
            return None
        if len(value) > max_len:
            self.problem(column, f"is {len(value)} characters long (at most {max_len})")
            return None
        if pattern is not None and not pattern.match(value):
            self.problem(column, f"{value!r} is not {what}")
            return None
        return value

    def day(self, column: str, *, required: bool = False) -> date | None:
        value = self.text(column, required=required)
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.problem(column, f"{value!r} is not a date like 2025-03-31")
            return None

    def decimal(self, column: str, low: float, high: float) -> float | None:
        value = self.text(column)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            self.problem(column, f"{value!r} is not a number")
            return None
        if not low <= number <= high:
            self.problem(column, f"{number:g} is outside {low:g}..{high:g}")
            return None
        return number

    def flag(self, column: str) -> bool | None:
        value = self.text(column, required=True)
        if value is None:
            return None
        if value.lower() in _YES:
            return True
        if value.lower() in _NO:
            return False
        self.problem(column, f"{value!r} is not yes or no")
        return None

    def choice(self, column: str, allowed: type[Employment] | type[Vetting], *, required: bool = False) -> str | None:
        value = self.text(column, required=required)
        if value is None:
            return None
        value = value.lower()
        if value not in allowed.__members__.values():
            self.problem(column, f"{value!r} is not one of {', '.join(a.value for a in allowed)}")
            return None
        return value


def _header_problems(sheet: Sheet, columns: dict[str, bool]) -> list[str]:
    problems = []
    seen: set[str] = set()
    for name in sheet.header:
        if name in seen:
            problems.append(f"{sheet.source}:1:{name}: the column appears twice")
        elif name not in columns and name not in EXPORTED_ONLY:
            problems.append(f"{sheet.source}:1:{name}: unknown column (known: {', '.join(columns)})")
        seen.add(name)
    problems += [
        f"{sheet.source}:1:{name}: missing column '{name}' (the header has: {', '.join(sheet.header) or 'nothing'})"
        for name, required in columns.items() if required and name not in sheet.header
    ]
    return problems


@dataclass(slots=True)
class ImportPlan:
    """What an import would do, or every problem that stops it."""

    problems: list[str] = field(default_factory=list)
    companies_new: list[dict[str, Any]] = field(default_factory=list)
    companies_changed: list[dict[str, Any]] = field(default_factory=list)
    guards_new: list[dict[str, Any]] = field(default_factory=list)
    guards_changed: list[dict[str, Any]] = field(default_factory=list)
    training: list[dict[str, Any]] = field(default_factory=list)
    audit: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    unchanged: int = 0
    rows: int = 0

    @property
    def changes(self) -> int:
        return len(self.companies_new) + len(self.companies_changed) + len(self.guards_new) + len(self.guards_changed) + len(self.training)

    def summary(self) -> str:
        return (
            f"{self.rows} rows: companies {len(self.companies_new)} new, {len(self.companies_changed)} changed; "
            f"guards {len(self.guards_new)} new, {len(self.guards_changed)} changed, {self.unchanged} unchanged; training records {len(self.training)}"
        )


def plan_import(session: Session, sheets: list[Sheet], hasher: IdHasher, sites: Collection[str], now: datetime) -> ImportPlan:
    """Check every row against the file and the register; what would change. Reads only."""
    plan = ImportPlan()
    companies = {row.licence: row for row in session.scalars(select(CompanyRow))}
    for sheet in sorted(sheets, key=lambda s: s.kind != "companies"):  # companies first: guards refer to them
        columns = COMPANY_COLUMNS if sheet.kind == "companies" else GUARD_COLUMNS
        header = _header_problems(sheet, columns)
        plan.problems += header
        plan.rows += len(sheet.rows)
        if any(": missing column" in p for p in header):
            continue  # every row would repeat the same complaint
        if sheet.kind == "companies":
            _plan_companies(sheet, companies, plan, now)
    known = set(companies) | {c["licence"] for c in plan.companies_new}
    existing = {row.id: row for row in session.execute(select(RegisteredGuard.__table__))}  # plain rows: 10x faster than ORM objects
    trained = {(guard, day): hours for guard, day, hours in session.execute(select(TrainingRow.guard, TrainingRow.day, TrainingRow.hours))}
    owners = {row.id_hash: row.id for row in existing.values()}
    seen_guards: dict[str, str] = {}  # guard id -> where first seen
    seen_ids: dict[str, tuple[str, str]] = {}  # ID hash -> (where first seen, guard)
    for sheet in sheets:
        if sheet.kind == "guards" and not any(f"{sheet.source}:1:" in p and ": missing column" in p for p in plan.problems):
            for number, cells in sheet.rows:
                row = _Row(sheet.source, number, dict(zip(sheet.header, cells, strict=False)), plan.problems)
                _plan_guard(row, plan, hasher, sites, known, existing, trained, owners, seen_guards, seen_ids, now)
    return plan


def _plan_companies(sheet: Sheet, companies: dict[str, CompanyRow], plan: ImportPlan, now: datetime) -> None:
    seen: dict[str, int] = {}
    for number, cells in sheet.rows:
        row = _Row(sheet.source, number, dict(zip(sheet.header, cells, strict=False)), plan.problems)
        licence = row.text("licence", required=True, max_len=64)
        name = row.text("name", required=True)
        contact = row.text("contact")
        if licence is None or name is None:
            continue
        if licence in seen:
            row.problem("licence", f"company {licence!r} is also on row {seen[licence]}")
            continue
        seen[licence] = number
        values = {"licence": licence, "name": name, "contact": contact if row.has("contact") else None}
        old = companies.get(licence)
        if old is None:
            plan.companies_new.append({**values, "updated_at": now})
            plan.audit.append((f"company:{licence}", {"created": values, "source": f"{sheet.source}:{number}"}))
            continue
        if not row.has("contact"):
            values["contact"] = old.contact
        diff = changed_fields({"name": old.name, "contact": old.contact}, {"name": name, "contact": values["contact"]})
        if diff:
            plan.companies_changed.append({**values, "updated_at": now})
            plan.audit.append((f"company:{licence}", {"changed": diff, "source": f"{sheet.source}:{number}"}))


def _plan_guard(
    row: _Row, plan: ImportPlan, hasher: IdHasher, sites: Collection[str], companies: set[str], existing: dict[str, Any],
    trained: dict[tuple[str, date], float], owners: dict[str, str], seen_guards: dict[str, str], seen_ids: dict[str, tuple[str, str]], now: datetime,
) -> None:
    where = f"row {row.number}"
    guard = row.text("guard", required=True, max_len=64, pattern=_ID, what="a guard id (lowercase letters, digits, '-' and '_')")
    if guard is not None:
        if guard in seen_guards:
            row.problem("guard", f"guard {guard!r} is also on {seen_guards[guard]}")
        seen_guards.setdefault(guard, where)
    old = existing.get(guard or "")
    values: dict[str, Any] = {"name": row.text("name", required=True, max_len=128)}
    id_hash = None
    number = normalise_id(row.cells.get("id_number", ""))
    if number:
        problem = id_number_problem(number)
        if problem:
            row.problem("id_number", problem)
        else:
            id_hash = hasher.digest(number)
            masked = mask_id(number)
            if id_hash in seen_ids and seen_ids[id_hash][1] != guard:
                row.problem("id_number", f"duplicate ID number {masked}: also on {seen_ids[id_hash][0]} (guard {seen_ids[id_hash][1]!r})")
            elif owners.get(id_hash, guard) != guard:
                row.problem("id_number", f"ID number {masked} is already registered to guard {owners[id_hash]!r}")
            seen_ids.setdefault(id_hash, (where, guard or "?"))
            values["id_hash"], values["id_masked"] = id_hash, masked
    elif old is None:
        row.problem("id_number", "is empty; a new guard needs their ID number")
    licence = row.text("company_licence", required=True, max_len=64)
    if licence is not None and licence not in companies:
        row.problem("company_licence", f"unknown company {licence!r}: add it in a companies file (licence,name,contact) imported first or with this one")
    values["company"] = licence
    if row.has("phone"):
        values["phone"] = row.text("phone", max_len=32, pattern=_PHONE, what="a phone number")
    if row.has("roles"):
        roles = [r for r in re.split(r"[;,|\s]+", row.cells["roles"].lower()) if r]
        bad = [r for r in roles if not _ID.match(r)]
        if bad:
            row.problem("roles", f"{', '.join(map(repr, bad))}: a role is lowercase letters, digits, '-' and '_' (separate roles with ';')")
        values["roles"] = roles
    if row.has("status"):
        values["status"] = row.choice("status", Employment) or Employment.ACTIVE.value
    values["vetting"] = row.choice("vetting", Vetting, required=True)
    for column in ("vetted_by",):
        if row.has(column):
            values[column] = row.text(column, max_len=128)
    for column in ("vetted_on", "vetting_until", "posted_from"):
        if row.has(column):
            values[column] = row.day(column)
    values["pre_job_training"] = row.flag("pre_job_training")
    if row.has("assessment_score"):
        values["assessment_score"] = row.decimal("assessment_score", 0, 100)
    if row.has("site"):
        site = row.text("site", max_len=64)
        if site is not None and site not in sites:
            row.problem("site", f"no site {site!r} in the district file" + (f" (e.g. {', '.join(list(sites)[:5])})" if sites else ""))
        values["site"] = site
    if row.has("wearable"):
        values["wearable"] = row.text("wearable", max_len=64, pattern=_ID, what="a device id")
    merged = {**_defaults(old), **{k: v for k, v in values.items() if k in GUARD_FIELDS}}
    if merged["vetting"] == Vetting.PASSED and merged.get("vetting_until") is None and "vetting_until" not in row.bad:
        row.problem("vetting_until", "a passed vetting needs the day it is valid until")
    if merged.get("vetted_on") and merged.get("vetting_until") and merged["vetting_until"] < merged["vetted_on"]:
        row.problem("vetting_until", f"{merged['vetting_until']} is before vetted_on {merged['vetted_on']}")
    if merged.get("wearable") and not merged.get("site"):
        row.problem("wearable", "a wearable belongs to the site the guard is posted at: give the site too")
    training_on = row.day("training_on") if row.has("training_on") else None
    hours = row.decimal("training_hours", 0, 2000) if row.has("training_hours") else None
    if (training_on is None) != (hours is None) and not row.bad & {"training_on", "training_hours"}:
        row.problem("training_hours" if hours is None else "training_on", "training_on and training_hours go together")
    if row.bad or guard is None:
        return
    source = f"{row.source}:{row.number}"
    if training_on is not None and hours is not None and trained.get((guard, training_on)) != hours:
        plan.training.append({"guard": guard, "day": training_on, "hours": hours})
    else:
        training_on = None  # nothing new
    if old is None:
        plan.guards_new.append({**merged, "id": guard, "id_hash": id_hash, "id_masked": values["id_masked"], "updated_at": now})
        plan.audit.append((guard, {"created": {k: plain(v) for k, v in merged.items()}, "source": source}))
        return
    diff = changed_fields({**_defaults(old), "id_hash": old.id_hash}, {**merged, "id_hash": id_hash or old.id_hash})
    if "id_hash" in diff:
        diff["id_number"] = [old.id_masked, values["id_masked"]]
        del diff["id_hash"]
    if diff:
        plan.guards_changed.append({**merged, "id": guard, "id_hash": id_hash or old.id_hash, "id_masked": values.get("id_masked", old.id_masked), "updated_at": now})
        plan.audit.append((guard, {"changed": diff, "source": source}))
    elif training_on is None:
        plan.unchanged += 1
    else:
        plan.audit.append((guard, {"training": {"day": training_on.isoformat(), "hours": hours}, "source": source}))


def _defaults(old: Any) -> dict[str, Any]:
    """A guard's fields as stored, or a new guard's defaults."""
    if old is not None:
        return {name: getattr(old, name) for name in GUARD_FIELDS}
    return {
        "name": None, "company": None, "phone": None, "roles": ["patrol"], "status": Employment.ACTIVE.value, "vetting": Vetting.PENDING.value,
        "vetted_by": None, "vetted_on": None, "vetting_until": None, "pre_job_training": False, "assessment_score": None, "site": None,
        "posted_from": None, "wearable": None,
    }


# --- applying ------------------------------------------------------------------------------------------------------


def apply_import(session: Session, plan: ImportPlan, *, actor: str | None, address: str | None, now: datetime) -> None:
    """Write a plan without problems, inside the caller's transaction."""
    if plan.problems:
        raise RegisterError(f"{len(plan.problems)} problems: nothing is imported")
    if not plan.changes:
        return
    insert_many(session, CompanyRow, plan.companies_new)
    if plan.companies_changed:
        session.execute(update(CompanyRow), plan.companies_changed)
    insert_many(session, RegisteredGuard, plan.guards_new)
    if plan.guards_changed:
        session.execute(update(RegisteredGuard), plan.guards_changed)
    if plan.training:
        dialect = postgresql if session.connection().dialect.name == "postgresql" else sqlite
        statement = dialect.insert(TrainingRow.__table__)
        statement = statement.on_conflict_do_update(index_elements=["guard", "day"], set_={"hours": statement.excluded.hours})
        session.connection().execute(statement, plan.training)
        touched = {t["guard"] for t in plan.training} - {g["id"] for g in plan.guards_changed} - {g["id"] for g in plan.guards_new}
        if touched:
            session.execute(update(RegisteredGuard), [{"id": g, "updated_at": now} for g in touched])
    audit_rows(session, plan.audit, actor=actor, address=address, now=now)
    bump(session, now)


def import_files(
    engine: Engine, paths: list[Path], hasher: IdHasher, sites: Collection[str], *, dry_run: bool = False, actor: str | None = None,
    address: str | None = "cli", now: Callable[[], datetime] = lambda: datetime.now().astimezone(),
) -> ImportPlan:
    """Read, check and (unless `dry_run` or a problem was found) import files in one transaction."""
    sheets = [sheet for path in paths for sheet in read_sheets(path)]
    with Session(engine) as session, session.begin():
        moment = now()
        plan = plan_import(session, sheets, hasher, sites, moment)
        if not plan.problems and not dry_run:
            apply_import(session, plan, actor=actor, address=address, now=moment)
    return plan


# --- export ---------------------------------------------------------------------------------------------------------


def export_rows(session: Session, today: date, minimum_hours: float, community_of: Callable[[str], str | None], guards: Collection[str] | None = None) -> list[dict[str, Any]]:
    """Every guard (or those given) as export rows: the import's columns, the masked ID number, community, training hours and eligibility."""
    query = select(RegisteredGuard).order_by(RegisteredGuard.id)
    if guards is not None:
        query = query.where(RegisteredGuard.id.in_(list(guards)))
    hours = training_hours(session, today)
    rows = []
    for g in session.scalars(query):
        reasons = ineligible(standing(g, hours.get(g.id, 0.0)), today, minimum_hours)
        rows.append({
            "guard": g.id, "name": g.name, "id_number": "", "id_masked": g.id_masked, "company_licence": g.company, "phone": g.phone or "",
            "roles": ";".join(g.roles), "status": g.status, "vetting": g.vetting, "vetted_by": g.vetted_by or "",
            "vetted_on": plain(g.vetted_on) or "", "vetting_until": plain(g.vetting_until) or "", "pre_job_training": "yes" if g.pre_job_training else "no",
            "assessment_score": "" if g.assessment_score is None else f"{g.assessment_score:g}", "site": g.site or "",
            "community": (community_of(g.site) if g.site else None) or "", "posted_from": plain(g.posted_from) or "", "wearable": g.wearable or "",
            "training_hours_12m": f"{hours.get(g.id, 0.0):g}", "eligible": "yes" if not reasons else "no: " + "; ".join(reasons),
        })
    return rows


def company_rows(session: Session) -> list[dict[str, Any]]:
    return [{"licence": c.licence, "name": c.name, "contact": c.contact or ""} for c in session.scalars(select(CompanyRow).order_by(CompanyRow.licence))]


def write_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_xlsx(path: Path, sheets: dict[str, tuple[list[str], list[dict[str, Any]]]]) -> None:
    """A workbook with one sheet per table (write-only mode: fast for 10,000s of rows)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for title, (columns, rows) in sheets.items():
        ws = book.create_sheet(title)
        ws.append(columns)
        for row in rows:
            ws.append([row.get(c, "") for c in columns])
    book.save(path)
