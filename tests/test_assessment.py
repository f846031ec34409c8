"""The assessment report: figures against hand-computed ones on a small fixed history, CSV, the API, the command line,
the report in Chinese, and the HTML report rendered in Chromium in both languages (screenshot kept as docs/assessment.png
when ASSESSMENT_SHOT is set)."""

from __future__ import annotations

import csv
import io
import os
import random
import re
import shutil
import subprocess
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from guardlink.districtconfig import DistrictConfig
from guardlink.models import (
    Assignment,
    AssignmentState,
    Escalation,
    EscalationStatus,
    Incident,
    IncidentKind,
    Location,
    Severity,
    SiteRef,
)
from hub.accounts import Accounts, Role
from hub.api import create_app
from hub.assessment import assess, parse_period, percentile
from hub.assessment_report import histogram, to_csv, to_html, words_for
from hub.database import make_engine, migrate
from hub.field_tables import CheckinRow, PatrolWindowRow, TipRow
from hub.register_tables import CompanyRow, RegisteredGuard, TrainingRow
from hub.store import Revision, store

from conftest import GUARDLINK, REPO, chromium, needs_chromium

CONFIG = DistrictConfig.model_validate({
    "district": {"id": "assess", "name": "Assessment test district"},
    "communities": [
        {"id": "north", "name": "North", "chief": "N", "outline": [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], "sites": ["site-a"]},
        {"id": "south", "name": "South", "chief": "S", "outline": [[39.0, 111.0], [39.1, 111.0], [39.1, 111.1]], "sites": ["site-b"]},
    ],
})
HERE = Location(lat=40.05, lon=111.05)


def escalation(site: str, eid: str, detected: datetime, revision: int, status: str, assignments: list[tuple[str, str, float, float | None]], test: bool = False) -> Escalation:
    """Revision `revision`; assignments (guard, state, offered +s, answered +s) counted from `detected`."""
    kind = IncidentKind.TEST if test else IncidentKind.PANIC
    return Escalation(
        id=eid, revision=revision, sequence=revision, site=SiteRef(id=site, name=site, district="assess", location=HERE),
        incident=Incident(kind=kind, severity=Severity.CRITICAL, device="btn", location=HERE, detected_at=detected),
        assignments=[Assignment(guard=g, name=g.upper(), roles=["patrol"], state=AssignmentState(state), distance_m=10, eta_s=10, guard_location=HERE,
                                position_age_s=1, offered_at=detected + timedelta(seconds=offered),
                                answered_at=detected + timedelta(seconds=answered) if answered is not None else None)
                     for g, state, offered, answered in assignments],
        status=EscalationStatus(status), guards_needed=1, issued_at=detected + timedelta(seconds=revision),
    )


def incident(site: str, eid: str, detected: datetime, steps: list[tuple[str, list[tuple[str, str, float, float | None]]]], test: bool = False) -> list[Revision]:
    community = CONFIG.community_of(site)
    return [Revision(escalation(site, eid, detected, n, status, a, test), community, detected) for n, (status, a) in enumerate(steps, start=1)]


def at(day: int, hour: int = 10, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=timezone.utc)


def fixed_history(engine) -> None:
    """Four incidents of November at two sites, a test press and an October incident (both left out), the register."""
    revisions = [
        *incident("site-a", "e1", at(3), [("dispatched", [("g1", "offered", 0, None)]), ("assigned", [("g1", "assigned", 0, 20)]),
                                           ("on_scene", [("g1", "on_scene", 0, 200)]), ("resolved", [("g1", "done", 0, 500)])]),
        *incident("site-a", "e2", at(10, 12), [("dispatched", [("g2", "offered", 0, None)]),
                                               ("dispatched", [("g2", "declined", 0, 10), ("g1", "offered", 10, None)]),
                                               ("assigned", [("g2", "declined", 0, 10), ("g1", "assigned", 10, 40)]),
                                               ("on_scene", [("g2", "declined", 0, 10), ("g1", "on_scene", 10, 340)]),
                                               ("false_alarm", [("g2", "declined", 0, 10), ("g1", "done", 10, 400)])]),
        *incident("site-b", "e3", at(17, 8), [("dispatched", [("g3", "offered", 0, None)]),
                                              ("dispatched", [("g3", "timed_out", 0, 30), ("g2", "offered", 30, None)]),
                                              ("assigned", [("g3", "timed_out", 0, 30), ("g2", "assigned", 30, 90)]),
                                              ("on_scene", [("g3", "timed_out", 0, 30), ("g2", "on_scene", 30, 190)])]),
        *incident("site-b", "e4", at(20), [("dispatched", [("g3", "offered", 0, None)]), ("assigned", [("g3", "assigned", 0, 5)]),
                                           ("on_scene", [("g3", "on_scene", 0, 65)])]),
        *incident("site-a", "e5", at(21), [("dispatched", [("g1", "offered", 0, None)]), ("assigned", [("g1", "assigned", 0, 1)])], test=True),
        *incident("site-a", "e6", at(30, month=10), [("dispatched", [("g1", "offered", 0, None)]), ("assigned", [("g1", "assigned", 0, 99)])]),
    ]
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    with Session(engine) as session, session.begin():
        store(session, revisions, now)
        session.add_all([CompanyRow(licence="lic-1", name="Alpha Security", updated_at=now), CompanyRow(licence="lic-2", name="Beta Guards", updated_at=now)])
        session.flush()
        for n, (guard, company, site, vetting, until) in enumerate([("g1", "lic-1", "site-a", "passed", date(2027, 1, 1)), ("g2", "lic-1", "site-a", "passed", date(2026, 11, 15)),
                                                                   ("g3", "lic-2", "site-b", "pending", None)]):
            session.add(RegisteredGuard(id=guard, name=guard.upper(), company=company, id_hash=f"{n:064x}", id_masked="x", roles=["patrol"], status="active",
                                        vetting=vetting, vetting_until=until, pre_job_training=True, site=site, updated_at=now))
        session.flush()
        session.add_all([TrainingRow(guard="g1", day=date(2026, 11, 5), hours=8), TrainingRow(guard="g1", day=date(2026, 10, 30), hours=4),
                         TrainingRow(guard="g3", day=date(2026, 11, 28), hours=2.5)])
        session.add_all([TipRow(id=f"t{i}", site="site-a", community="north", guard="g1", category="other", text="x", state=state, at=at(4 + i), received_at=at(4 + i))
                         for i, state in enumerate(["accepted", "rejected"])])
        session.add_all([CheckinRow(id="c1", point="p1", site="site-a", guard="g2", method="qr", at=at(12, 9) + timedelta(minutes=30)),
                         CheckinRow(id="c2", point="p2", site="site-a", guard="g2", method="qr", at=at(13, 9)),
                         PatrolWindowRow(route="r1", point="p1", start=at(12, 9), outcome="on_time", at=at(12, 10))])


@pytest.fixture
def engine(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate(engine)
    fixed_history(engine)
    return engine


def by(rows: list[dict], key: str) -> dict[str, dict]:
    return {r[key]: r for r in rows}


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([float(v) for v in range(1, 11)], 0.9) == pytest.approx(9.1)
    assert percentile([20.0, 30.0], 0.5) == 25.0 and percentile([], 0.5) is None


def test_figures_match_the_hand_computed_ones(engine) -> None:
    report = assess(engine, CONFIG, parse_period("2026-11"))
    guards = by(report.guards, "guard")
    assert {k: guards["g1"][k] for k in ("incidents", "accept_median_s", "accept_p90_s", "on_scene_median_s", "on_scene_p90_s", "declines", "timeouts",
                                          "false_alarms", "training_hours", "tips", "tips_accepted", "checkins", "checkins_on_time", "vetting", "company")} == {
        "incidents": 2, "accept_median_s": 25.0, "accept_p90_s": 29.0, "on_scene_median_s": 240.0, "on_scene_p90_s": 288.0, "declines": 0, "timeouts": 0,
        "false_alarms": 1, "training_hours": 8.0, "tips": 2, "tips_accepted": 1, "checkins": 0, "checkins_on_time": 0, "vetting": "passed until 2027-01-01",
        "company": "Alpha Security"}
    assert (guards["g2"]["incidents"], guards["g2"]["accept_median_s"], guards["g2"]["on_scene_median_s"], guards["g2"]["declines"]) == (1, 60.0, 100.0, 1)
    assert (guards["g2"]["checkins"], guards["g2"]["checkins_on_time"], guards["g2"]["vetting"]) == (2, 1, "expired 2026-11-15")
    assert (guards["g3"]["incidents"], guards["g3"]["accept_median_s"], guards["g3"]["on_scene_median_s"], guards["g3"]["timeouts"], guards["g3"]["vetting"],
            guards["g3"]["training_hours"]) == (1, 5.0, 60.0, 1, "pending", 2.5)
    companies = by(report.companies, "company")
    assert {k: companies["Alpha Security"][k] for k in ("guards", "incidents", "accept_median_s", "accept_p90_s", "on_scene_median_s", "on_scene_p90_s", "declines", "false_alarms")} == {
        "guards": 2, "incidents": 3, "accept_median_s": 30.0, "accept_p90_s": 54.0, "on_scene_median_s": 180.0, "on_scene_p90_s": 276.0, "declines": 1, "false_alarms": 1}
    sites = by(report.sites, "site")
    assert {k: sites["site-b"][k] for k in ("incidents", "accept_median_s", "accept_p90_s", "on_scene_median_s", "on_scene_p90_s", "timeouts", "guards")} == {
        "incidents": 2, "accept_median_s": 32.5, "accept_p90_s": 54.5, "on_scene_median_s": 80.0, "on_scene_p90_s": 96.0, "timeouts": 1, "guards": 1}
    communities = by(report.communities, "community")
    assert (communities["north"]["incidents"], communities["north"]["declines"], communities["north"]["false_alarms"], communities["north"]["guards"]) == (2, 1, 1, 2)
    assert report.total["incidents"] == 4 and sorted(report.accept_s) == [5.0, 20.0, 30.0, 60.0]
    assert [(w["week"], w["incidents"]) for w in report.weeks] == [("2026-10-26", 0), ("2026-11-02", 1), ("2026-11-09", 1), ("2026-11-16", 2), ("2026-11-23", 0), ("2026-11-30", 0)]
    south = assess(engine, CONFIG, parse_period("2026-11"), community="south")
    assert [g["guard"] for g in south.guards] == ["g2", "g3"] and south.total["incidents"] == 2  # g2 handled e3 in the south


def test_csv_has_a_row_per_community_company_site_and_guard(engine) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(assess(engine, CONFIG, parse_period("2026-11"))))))
    assert [(r["level"], r["name"]) for r in rows] == [("community", "north"), ("community", "south"), ("company", "Alpha Security"), ("company", "Beta Guards"),
                                                     ("site", "site-a"), ("site", "site-b"), ("guard", "g1 (G1)"), ("guard", "g2 (G2)"), ("guard", "g3 (G3)")]
    assert rows[-1]["on_scene_median_s"] == "60.0" and rows[-1]["timeouts"] == "1"


def test_api_and_command_line_give_the_report(engine, tmp_path: Path) -> None:
    accounts = Accounts(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    accounts.add_user("chief", Role.CHIEF, communities=["north"])

    async def publish(_site, _command) -> None:
        return None

    with TestClient(create_app(engine=engine, config=CONFIG, publish_command=publish, accounts=accounts)) as api:
        token = {"Authorization": f"Bearer {accounts.issue_token('chief')}"}
        shown = api.get("/api/reports/assessment", params={"period": "2026-11"}, headers=token).json()
        assert [c["community"] for c in shown["communities"]] == ["north"] and shown["total"]["incidents"] == 2  # a chief sees their community
        page = api.get("/api/reports/assessment", params={"period": "2026-11", "format": "html"}, headers=token)
        assert page.headers["content-type"].startswith("text/html") and "<svg" in page.text
        assert api.get("/api/reports/assessment", params={"period": "2026-13"}, headers=token).status_code == 422
        chinese = api.get("/api/reports/assessment", params={"period": "2026-11", "format": "html", "lang": "zh-CN"}, headers=token)
        assert chinese.status_code == 200 and '<html lang="zh-CN">' in chinese.text and "<h2>社区</h2>" in chinese.text
        refused = api.get("/api/reports/assessment", params={"period": "2026-11", "format": "html", "lang": "fr"}, headers=token)
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "lang"], refused.text
    district = tmp_path / "district.yaml"
    district.write_text(CONFIG.model_dump_json())
    out = tmp_path / "nov.csv"
    done = subprocess.run([*GUARDLINK, "report", "assessment", "--config", str(district), "--database", str(engine.url), "--period", "2026-11",
                           "--community", "south", "--format", "csv", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [r["name"] for r in csv.DictReader(out.open()) if r["level"] == "site"] == ["site-b"]
    page = tmp_path / "nov.html"
    done = subprocess.run([*GUARDLINK, "report", "assessment", "--config", str(district), "--database", str(engine.url), "--period", "2026-11",
                           "--lang", "zh-CN", "--out", str(page)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert '<html lang="zh-CN">' in page.read_text(encoding="utf-8")
    done = subprocess.run([*GUARDLINK, "report", "assessment", "--config", str(district), "--period", "2026-11", "--lang", "fr"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--lang" in done.stderr and "zh-CN" in done.stderr


ENGLISH_HEADINGS = ["Communities", "Security companies", "Sites", "Guards"]


def test_the_report_reads_in_chinese(engine) -> None:
    report = assess(engine, CONFIG, parse_period("2026-11"))
    page = to_html(report, generated_at=datetime(2026, 12, 1, 8, tzinfo=timezone.utc), language="zh-CN")
    assert page.startswith('<!doctype html><html lang="zh-CN">')
    assert re.findall(r"<h2>(.*?)</h2>", page) == ["社区", "保安公司", "站点", "保安员"]
    assert "<h1>保安员考核报告 · 2026-11</h1>" in page and "中位数" in page and "第90百分位" in page
    # g1: accept median 25 s, on scene median 4 min, p90 4 min 48 s; g2's vetting ran out, g3's is pending
    assert "<td>25 秒</td>" in page and "<td>4 分钟</td>" in page and "<td>4 分 48 秒</td>" in page
    cells = re.sub(r'<span class="date">([^<]*)</span>', r"\1", page)  # a date is kept on one line by a span
    assert "有效期至 2027-01-01" in cells and "已过期（2026-11-15）" in cells and "审查中" in cells
    assert "<td>1 / 2</td>" in page  # g1's tips: one of two accepted
    visible = re.sub(r"<style>.*?</style>", "", page)  # the data keeps its own names ("Beta Guards"): look for whole texts and words of ours
    for english in [*(f">{h}<" for h in ENGLISH_HEADINGS), "Guard assessment", "median", "p90", "not recorded", "incidents", "week of", " min", " s<"]:
        assert english not in visible, english
    english = to_html(report, generated_at=datetime(2026, 12, 1, 8, tzinfo=timezone.utc))
    assert '<html lang="en">' in english and re.findall(r"<h2>(.*?)</h2>", english) == ENGLISH_HEADINGS and "<td>4 min 48 s</td>" in english


def test_chinese_durations_read_as_chinese() -> None:
    words = words_for("zh-CN")
    assert [words.duration(s) for s in (42, 180, 185, 3720, None)] == ["42 秒", "3 分钟", "3 分 5 秒", "1 小时 02 分", "—"]
    assert [words_for("en").duration(s) for s in (42, 180, 185, 3720)] == ["42 s", "3 min", "3 min 05 s", "1 h 02 min"]
    assert [words_for("en").incidents(n) for n in (1, 2)] == ["1 incident", "2 incidents"]
    assert [words.incidents(n) for n in (1, 2)] == ["警情 1 起", "警情 2 起"]


@pytest.mark.parametrize("values", [[12.0, 30.0], [5.0, 9.0, 14.0, 14.5, 40.0], [float(n % 50) for n in range(320)]])
def test_histogram_axis_counts_are_whole_distinct_numbers_up_to_the_tallest_bar(values: list[float]) -> None:
    svg = histogram(values, "How fast", "#2f6db5", words_for("en"))
    ticks = [int(t) for t in re.findall(r'class="tick">(\d+)</text>', svg)[:5]]  # the y axis comes first
    assert ticks == sorted(set(ticks), reverse=True) and ticks[-1] == 0, ticks
    tallest = max(float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg))
    assert tallest <= 210 - 34 - 40 + 0.1, "no bar above the axis"


def test_an_unknown_language_is_refused_naming_the_known_ones(engine) -> None:
    with pytest.raises(ValueError, match=r"'fr'.*supported: en, zh-CN"):
        to_html(assess(engine, CONFIG, parse_period("2026-11")), language="fr")


ENGLISH_COMPANIES = ["Great Wall Security", "Qingcheng Guards", "Saihan Protection", "Northern Shield", "Hohhot Safety Services", "Jinqiao Security"]
CHINESE_COMPANIES = ["长城保安", "青城护卫", "赛罕安保", "北方之盾", "呼和浩特市安全保卫服务有限公司", "金桥保安"]


def synthetic_month(engine, seed: int = 7, companies: list[str] = ENGLISH_COMPANIES) -> DistrictConfig:
    """A month of a district of 4 communities, 6 companies, 12 sites and 60 guards, for looking at the report."""
    rng = random.Random(seed)
    names = ["Dongjie", "Hailar East", "Xilin South", "Zhongshan"]
    sites = [f"{n.split()[0].lower()}-{k}" for n in names for k in ("school", "mall", "works")]
    config = DistrictConfig.model_validate({"district": {"id": "xincheng", "name": "Xincheng District, Hohhot"}, "communities": [
        {"id": n.lower().replace(" ", "-"), "name": n, "chief": "chief", "outline": [[40.0, 111.0], [40.1, 111.0], [40.1, 111.1]], "sites": sites[i * 3:i * 3 + 3]}
        for i, n in enumerate(names)]})
    speed = {c: 0.7 + 0.15 * i for i, c in enumerate(companies)}
    guards = [(f"g-{i:02d}", companies[i % 6], sites[i % 12]) for i in range(60)]
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    revisions = []
    for n in range(320):
        detected = datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(minutes=rng.randrange(30 * 24 * 60))
        site = sites[rng.randrange(12)]
        local = [g for g in guards if g[2] == site]
        steps, done, offset = [], [], 0.0
        for guard, company, _ in rng.sample(local, len(local)):
            slow = speed[company] * (1.4 if site.startswith("xilin") else 1.0) * (0.8 + 0.02 * (detected.day // 7))
            fate = rng.random()
            if fate < 0.12:
                done.append((guard, "declined", offset, offset + rng.uniform(5, 25)))
                offset += 15
                continue
            if fate < 0.2:
                done.append((guard, "timed_out", offset, offset + 30))
                offset += 30
                continue
            accept = offset + rng.lognormvariate(3.0, 0.5) * slow
            scene = accept + rng.lognormvariate(5.2, 0.45) * slow
            steps = [("dispatched", done + [(guard, "offered", offset, None)]), ("assigned", done + [(guard, "assigned", offset, accept)]),
                     ("on_scene", done + [(guard, "on_scene", offset, scene)]),
                     ("false_alarm" if rng.random() < 0.1 else "resolved", done + [(guard, "done", offset, scene + 300)])]
            break
        if steps:
            revisions += incident_in(config, site, f"s{n:04d}", detected, steps)
    with Session(engine) as session, session.begin():
        store(session, revisions, now)
        session.add_all([CompanyRow(licence=f"lic-{i}", name=c, updated_at=now) for i, c in enumerate(companies)])
        session.flush()
        for i, (guard, company, site) in enumerate(guards):
            session.add(RegisteredGuard(id=guard, name=f"Guard {i}", company=f"lic-{companies.index(company)}", id_hash=f"{i:064x}", id_masked="x", roles=["patrol"],
                                        status="active", vetting="passed", vetting_until=date(2027, 6, 1), pre_job_training=True, site=site, updated_at=now))
            session.add(TrainingRow(guard=guard, day=date(2026, 11, 3 + i % 20), hours=float(2 + i % 5)))
    return config


def incident_in(config: DistrictConfig, site: str, eid: str, detected: datetime, steps) -> list[Revision]:
    return [Revision(escalation(site, eid, detected, n, status, a), config.community_of(site), detected) for n, (status, a) in enumerate(steps, start=1)]


@needs_chromium
def test_html_report_renders_in_chromium(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'month.db'}")
    migrate(engine)
    config = synthetic_month(engine)
    page_file = tmp_path / "assessment.html"
    page_file.write_text(to_html(assess(engine, config, parse_period("2026-11")), generated_at=datetime(2026, 12, 1, 8, tzinfo=timezone.utc)), encoding="utf-8")
    shot = tmp_path / "assessment.png"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1040, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: errors.append(f"request {r.url}") if not r.url.startswith(("file:", "data:")) else None)
        page.goto(page_file.as_uri())
        assert page.locator("svg").count() == 5
        assert page.locator("h2").all_inner_texts() == ["Communities", "Security companies", "Sites", "Guards"]
        page.screenshot(path=str(shot))
        pdf = page.pdf(format="A4")
        assert pdf[:4] == b"%PDF" and not errors
    if os.environ.get("ASSESSMENT_SHOT"):
        shutil.copy(shot, os.environ["ASSESSMENT_SHOT"])


@needs_chromium
def test_chinese_report_renders_in_chromium(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'month.db'}")
    migrate(engine)
    config = synthetic_month(engine, companies=CHINESE_COMPANIES)
    report = assess(engine, config, parse_period("2026-11"))
    page_file = tmp_path / "assessment-zh.html"
    page_file.write_text(to_html(report, generated_at=datetime(2026, 12, 1, 8, tzinfo=timezone.utc), language="zh-CN"), encoding="utf-8")
    shot = tmp_path / "assessment-zh.png"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1040, "height": 1100}, locale="zh-CN")
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: errors.append(f"request {r.url}") if not r.url.startswith(("file:", "data:")) else None)
        page.goto(page_file.as_uri())
        assert page.locator("svg").count() == 5
        assert page.locator("h2").all_inner_texts() == ["社区", "保安公司", "站点", "保安员"]
        # every chart's text stays inside its chart, and the marks and labels of a chart do not run into each other
        spill = page.evaluate("""() => [...document.querySelectorAll("svg")].flatMap((svg, n) => {
            const frame = svg.getBoundingClientRect();
            const boxes = [...svg.querySelectorAll("text")].map((t) => ({ text: t.textContent, cls: t.getAttribute("class"), box: t.getBoundingClientRect() }));
            const outside = boxes.filter((b) => b.box.left < frame.left - 0.5 || b.box.right > frame.right + 0.5).map((b) => `chart ${n}: ${b.text} outside`);
            const marks = boxes.filter((b) => b.cls === "mark" || b.cls === "label" || b.cls === "chart-title");
            const overlaps = marks.flatMap((a, i) => marks.slice(i + 1).filter((b) => a.box.left < b.box.right && b.box.left < a.box.right
                && a.box.top < b.box.bottom && b.box.top < a.box.bottom).map((b) => `chart ${n}: ${a.text} over ${b.text}`));
            return [...outside, ...overlaps];
        })""")
        assert not spill, spill
        page.screenshot(path=str(shot), full_page=True)
        pdf = page.pdf(format="A4")
        assert pdf[:4] == b"%PDF" and not errors
    assert shot.stat().st_size > 0
