"""The assessment as a chief reads it: one self-contained HTML file (inline SVG charts drawn here, no script, no CDN;
prints on A4) in English or Chinese (every visible word from `WORDS`), or CSV (one row per guard, company, site and
community, a `level` column saying which; English machine column names, whatever the language)."""

from __future__ import annotations

import csv
import html
import io
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from hub.assessment import Assessment, percentile

COLUMNS = ("incidents", "offers", "accept_median_s", "accept_p90_s", "on_scene_median_s", "on_scene_p90_s", "declines", "timeouts", "false_alarms",
           "checkins_on_time", "checkins", "tips_accepted", "tips", "training_hours")
FAST, SLOW, MID, INK, MUTED, GRID = "#1b7f4d", "#c0392b", "#d68910", "#1f2933", "#66727f", "#e3e7eb"
ACCEPT_COLOUR, SCENE_COLOUR = "#2f6db5", "#8e44ad"


def to_csv(report: Assessment) -> str:
    """Every level's rows in one CSV table; a figure the hub does not record is left empty."""
    out = io.StringIO()
    names = ["level", "name", "company", "site", "community", "vetting", "guards", *COLUMNS]
    writer = csv.DictWriter(out, names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for level, rows, key in (("community", report.communities, "community"), ("company", report.companies, "company"), ("site", report.sites, "site"),
                             ("guard", report.guards, "guard")):
        for row in rows:
            writer.writerow({**row, "level": level, "name": row[key] if level != "guard" else f"{row['guard']} ({row['name']})"})
    return out.getvalue()


# --- the words, one table per language ----------------------------------------------------------------------------

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Guard assessment {period} · {district}",
        "heading": "Guard assessment · {period}",
        "sub": "{district} · {scope} · incidents detected {start} to {end} (UTC) · generated {generated}",
        "scope.community": "community {community}",
        "scope.all": "all communities",
        # durations: 42 s, 3 min, 3 min 05 s, 1 h 02 min
        "seconds": "{s:.0f} s",
        "minutes": "{m} min",
        "minutes_seconds": "{m} min {s:02d} s",
        "hours_minutes": "{h} h {m:02d} min",
        "percent": "{p:.0f} %",
        "hours": "{h:g} h",
        "tile.incidents": "incidents handled",
        "tile.incidents_note": "{guards} guards assessed",
        "tile.accept": "offer → accept, median",
        "tile.on_scene": "accept → on scene, median",
        "tile.p90": "p90 {duration}",
        "tile.refused": "offers declined or timed out",
        "tile.refused_note": "{declines} declined, {timeouts} timed out of {offers}",
        "tile.false_alarms": "false alarms",
        "tile.false_alarms_note": "incidents found to be nothing on scene",
        "tile.checkins": "patrol check-ins on time",
        "tile.checkins_of": "of {n} check-ins",
        "tile.checkins_none": "no check-ins in the period",
        "tile.tips": "tips accepted",
        "tile.tips_of": "of {n} tips submitted",
        "tile.tips_none": "no tips submitted in the period",
        "tile.training": "training in the period",
        "tile.training_note": "periodic training recorded in the register",
        "tile.not_recorded": "not recorded by this hub",
        "chart.accept": "How fast guards accept an offer",
        "chart.on_scene": "How fast guards reach the scene after accepting",
        "chart.communities": "Communities, fastest to the scene first",
        "chart.companies": "Security companies, fastest to the scene first",
        "chart.weeks": "Week by week",
        "chart.empty": "no incidents in the period",
        "histogram.bin": "{span}: {count}",
        "histogram.median": "median {duration}",
        "histogram.p90": "p90 {duration}",
        "histogram.axis": "number of responses ({n}) by time taken",
        "ranking.tooltip": "{name}: median {median}, p90 {p90}, {incidents}",
        "ranking.value": "· {incidents}",
        "incidents.one": "1 incident",
        "incidents.other": "{n} incidents",
        "ranking.legend": "bar: median · whisker: 90th percentile",
        "ranking.colours": "green / red: 8 % or more faster / slower than the district",
        "ranking.silent": "no incidents: {names}",
        "week": "week of {day}",
        "week.days": "{week} ({days} days)",
        "week.day": "{week} (1 day)",
        "week.tooltip": "week of {day}: {incidents}",
        "trend.incidents": "incidents (right scale)",
        "trend.accept": "median offer → accept",
        "trend.on_scene": "median accept → on scene",
        "highlight.slowest": "Slowest to the scene: {slow}, median {slow_time} after accepting ({share} slower than {fast}, {fast_time}).",
        "highlight.refusing": "Most offers declined or unanswered: {company}, {share} of {offers} offers.",
        "table.communities": "Communities",
        "table.companies": "Security companies",
        "table.sites": "Sites",
        "table.guards": "Guards",
        "column.community": "Community",
        "column.company": "Company",
        "column.site": "Site",
        "column.who": "Guard",
        "column.vetting": "Vetting",
        "column.guards": "Guards",
        "column.incidents": "Incidents",
        "column.offers": "Offers",
        "column.accept_median_s": "Accept median",
        "column.accept_p90_s": "Accept p90",
        "column.on_scene_median_s": "On scene median",
        "column.on_scene_p90_s": "On scene p90",
        "column.declines": "Declined",
        "column.timeouts": "Timed out",
        "column.false_alarms": "False alarms",
        "column.checkins": "Check-ins on time",
        "column.tips": "Tips accepted",
        "column.training_hours": "Training h",
        "cell.of": "{part} of {whole}",
        "cell.not_recorded": "not recorded",
        "vetting.passed_until": "passed until {day}",
        "vetting.expired": "expired {day}",
        "vetting.passed, no end date": "passed, no end date",
        "vetting.not in the register": "not in the register",
        "vetting.passed": "passed",
        "vetting.pending": "pending",
        "vetting.failed": "failed",
        "note": "Times: offer → accept from the offer to the guard's acceptance; accept → on scene from the acceptance to the guard reporting on "
                "scene. Medians and 90th percentiles pool every response of the unit. Check-ins on time: check-ins that made a patrol window on "
                "time. Test presses are left out.",
    },
    "zh-CN": {
        "title": "保安员考核报告 {period} · {district}",
        "heading": "保安员考核报告 · {period}",
        "sub": "{district} · {scope} · 警情发生时间 {start} 至 {end}（UTC）· 生成于 {generated}",
        "scope.community": "社区：{community}",
        "scope.all": "全部社区",
        "seconds": "{s:.0f} 秒",
        "minutes": "{m} 分钟",
        "minutes_seconds": "{m} 分 {s} 秒",
        "hours_minutes": "{h} 小时 {m:02d} 分",
        "percent": "{p:.0f}%",
        "hours": "{h:g} 小时",
        "tile.incidents": "处置警情（起）",
        "tile.incidents_note": "参与考核保安员 {guards} 名",
        "tile.accept": "接单用时中位数（派单 → 接单）",
        "tile.on_scene": "到场用时中位数（接单 → 到场）",
        "tile.p90": "第90百分位 {duration}",
        "tile.refused": "派单被拒绝或超时未应答",
        "tile.refused_note": "共派单 {offers} 次：拒绝 {declines} 次，超时 {timeouts} 次",
        "tile.false_alarms": "误报（起）",
        "tile.false_alarms_note": "到场核实无警情",
        "tile.checkins": "巡逻签到准时率",
        "tile.checkins_of": "共签到 {n} 次",
        "tile.checkins_none": "本期无巡逻签到",
        "tile.tips": "线索采纳率",
        "tile.tips_of": "共提交线索 {n} 条",
        "tile.tips_none": "本期无提交线索",
        "tile.training": "本期培训时长",
        "tile.training_note": "登记在册的定期培训",
        "tile.not_recorded": "本中心未记录",
        "chart.accept": "保安员接单用时分布",
        "chart.on_scene": "保安员接单后到场用时分布",
        "chart.communities": "各社区到场用时（由快到慢）",
        "chart.companies": "各保安公司到场用时（由快到慢）",
        "chart.weeks": "逐周趋势",
        "chart.empty": "本期无警情",
        "histogram.bin": "{span}：{count} 次",
        "histogram.median": "中位数 {duration}",
        "histogram.p90": "第90百分位 {duration}",
        "histogram.axis": "按用时分组的响应次数（共 {n} 次）",
        "ranking.tooltip": "{name}：中位数 {median}，第90百分位 {p90}，{incidents}",
        "ranking.value": "· {incidents}",
        "incidents.one": "警情 1 起",
        "incidents.other": "警情 {n} 起",
        "ranking.legend": "条形：中位数 · 须线：第90百分位",
        "ranking.colours": "绿色 / 红色：比全区中位数快 / 慢 8% 及以上",
        "ranking.silent": "无警情：{names}",
        "week": "{day} 当周",
        "week.days": "{week}（{days} 天）",
        "week.day": "{week}（1 天）",
        "week.tooltip": "{day} 当周：{incidents}",
        "trend.incidents": "警情数（右轴）",
        "trend.accept": "接单用时中位数",
        "trend.on_scene": "到场用时中位数",
        "highlight.slowest": "到场最慢的社区：{slow}，接单后到场用时中位数 {slow_time}，比最快的 {fast}（{fast_time}）慢 {share}。",
        "highlight.refusing": "派单被拒绝或未应答比例最高的保安公司：{company}，{offers} 次派单中占 {share}。",
        "table.communities": "社区",
        "table.companies": "保安公司",
        "table.sites": "站点",
        "table.guards": "保安员",
        "column.community": "社区",
        "column.company": "保安公司",
        "column.site": "站点",
        "column.who": "保安员",
        "column.vetting": "背景审查",
        "column.guards": "保安员数",
        "column.incidents": "警情",
        "column.offers": "派单",
        "column.accept_median_s": "接单中位数",
        "column.accept_p90_s": "接单第90百分位",
        "column.on_scene_median_s": "到场中位数",
        "column.on_scene_p90_s": "到场第90百分位",
        "column.declines": "拒绝",
        "column.timeouts": "超时",
        "column.false_alarms": "误报",
        "column.checkins": "巡逻签到准时",
        "column.tips": "线索采纳",
        "column.training_hours": "培训时长（小时）",
        "cell.of": "{part} / {whole}",
        "cell.not_recorded": "未记录",
        "vetting.passed_until": "有效期至 {day}",
        "vetting.expired": "已过期（{day}）",
        "vetting.passed, no end date": "已通过，无截止日期",
        "vetting.not in the register": "未在登记册中",
        "vetting.passed": "已通过",
        "vetting.pending": "审查中",
        "vetting.failed": "未通过",
        "note": "用时说明：接单用时自派单起至保安员接单止；到场用时自接单起至保安员报告到场止。中位数和第90百分位按单位的全部响应合并计算。"
                "巡逻签到准时：在巡逻时间窗内准时完成的签到。测试按键不计入统计。",
    },
}
LANGUAGES = tuple(WORDS)


@dataclass(frozen=True, slots=True)
class Words:
    """One language's words of the report: `words("tile.p90", duration="3 min")` fills a phrase."""

    language: str
    phrases: dict[str, str]

    def __call__(self, key: str, **values: object) -> str:
        return self.phrases[key].format(**values)

    def duration(self, seconds: float | None) -> str:
        """42 s, 3 min, 3 min 05 s, 1 h 02 min (42 秒, 3 分钟, 3 分 5 秒, 1 小时 02 分); an em dash for none."""
        if seconds is None:
            return "—"
        if round(seconds) < 60:
            return self("seconds", s=seconds)
        if round(seconds) % 60 == 0 and seconds < 3600:
            return self("minutes", m=round(seconds) // 60)
        if seconds < 3600:
            return self("minutes_seconds", m=int(seconds // 60), s=int(seconds % 60))
        return self("hours_minutes", h=int(seconds // 3600), m=int(seconds % 3600 // 60))

    def incidents(self, count: int) -> str:
        """1 incident, 5 incidents (警情 1 起)."""
        return self("incidents.one") if count == 1 else self("incidents.other", n=count)

    def percent(self, share: float) -> str:
        return self("percent", p=share)

    def vetting(self, state: str) -> str:
        """The vetting state as hub.assessment words it (passed until 2027-01-01, expired 2026-11-15, pending ...)."""
        dated = re.fullmatch(r"(passed until|expired) (\d{4}-\d{2}-\d{2})", state)
        if dated:
            return self("vetting.passed_until" if dated[1] == "passed until" else "vetting.expired", day=dated[2])
        return self.phrases.get(f"vetting.{state}", state)


def words_for(language: str) -> Words:
    """The report's words in `language` (one of LANGUAGES)."""
    if language not in WORDS:
        raise ValueError(f"no assessment report in language {language!r} (supported: {', '.join(LANGUAGES)})")
    return Words(language, WORDS[language])


ENGLISH = words_for("en")


# --- small formatting ---------------------------------------------------------------------------------------------


STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200)


def nice_step(largest: float, count: int) -> float:
    """The smallest round step (seconds) dividing `largest` into at most `count` parts."""
    return next((step for step in STEPS if step * count >= largest), STEPS[-1] * max(1, math.ceil(largest / (STEPS[-1] * count))))


def _e(text: object) -> str:
    return html.escape(str(text))


TABLE_COLUMNS = ("incidents", "offers", "accept_median_s", "accept_p90_s", "on_scene_median_s", "on_scene_p90_s", "declines", "timeouts", "false_alarms",
                 "checkins", "tips", "training_hours")


def _cell(key: str, value: object, row: dict[str, Any], w: Words) -> str:
    if key in ("checkins", "tips") and value is not None:
        part = row["checkins_on_time" if key == "checkins" else "tips_accepted"]
        return f"<td>{_e(w('cell.of', part=part, whole=value))}</td>" if value else "<td>—</td>"
    if value is None:
        return f'<td class="nr">{_e(w("cell.not_recorded"))}</td>' if key in ("checkins", "tips") else "<td>—</td>"
    if key.endswith("_s"):
        return f"<td>{w.duration(value)}</td>"  # type: ignore[arg-type]
    return f"<td>{_e(value)}</td>"


# --- charts (inline SVG) -------------------------------------------------------------------------------------------


def histogram(values: list[float], title: str, colour: str, w: Words = ENGLISH, width: int = 460, height: int = 210) -> str:
    """How the times spread: round-width bins up to the 97th percentile (longer ones in the last, marked "+"), median and p90 marked."""
    left, right, top, bottom = 40, 24, 34, 40
    if not values:
        return _empty(title, w, width, height)
    step = nice_step(max(percentile(values, 0.97) or 1.0, 1.0), 12)
    bins = max(1, min(12, math.ceil((percentile(values, 0.97) or step) / step)))
    top_value = step * bins
    counts = [0] * bins
    for v in values:
        counts[min(int(v // step), bins - 1)] += 1
    count_step = max(1, math.ceil(max(counts) / 4))  # whole numbers on the axis, never one repeated
    axis_top = count_step * 4
    plot_w, plot_h = width - left - right, height - top - bottom
    bar_w = plot_w / bins
    parts = [_title(title)]
    for i in range(5):
        y = top + plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{count_step * (4 - i)}</text>')
    for i, count in enumerate(counts):
        h = plot_h * count / axis_top
        span = f"{w.duration(i * step)}–{w.duration((i + 1) * step)}"
        parts.append(f'<rect x="{left + i * bar_w + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" fill="{colour}" opacity=".8">'
                     f"<title>{_e(w('histogram.bin', span=span, count=count))}</title></rect>")
    every = 2 if bins > 6 else 1
    for i in range(0, bins + 1, every):
        label = w.duration(i * step) + ("+" if i == bins else "")
        parts.append(f'<text x="{left + i * bar_w:.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">{label}</text>')
    marks = []
    for q, key in ((0.5, "histogram.median"), (0.9, "histogram.p90")):
        v = percentile(values, q) or 0
        marks.append((left + min(v / top_value, 1) * plot_w, w(key, duration=w.duration(v))))
    for (x, text), (dx, y), dash in zip(marks, _mark_places(marks, left + plot_w * 0.75, (left, width), top + 8), ("", ' stroke-dasharray="5 3"'), strict=True):
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{top + plot_h}" stroke="{INK}" stroke-width="2"{dash}/>'
                     f'<text x="{x + dx:.1f}" y="{y}" text-anchor="{"end" if dx < 0 else "start"}" class="mark">{_e(text)}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" class="axis">{_e(w("histogram.axis", n=len(values)))}</text>')
    return _svg(width, height, parts)


def _mark_places(marks: list[tuple[float, str]], turn: float, room: tuple[float, float], y: float) -> list[tuple[float, float]]:
    """Where the median's and the p90's labels go (offset from their line, baseline): beside their line, on its left
    past `turn`; when the two would run into each other, the median's left of its line and the p90's right of its line
    if `room` (from, to) allows, else the p90's a line lower."""
    beside = [(-4.0 if x > turn else 4.0, y) for x, _ in marks]
    first, second = (_reach(x, dx, text) for (x, text), (dx, _) in zip(marks, beside, strict=True))
    if first[1] + 4 <= second[0] or second[1] + 4 <= first[0]:
        return beside
    (median_x, median_text), (p90_x, p90_text) = marks
    if median_x - 4 - _text_width(median_text) >= room[0] and p90_x + 4 + _text_width(p90_text) <= room[1]:
        return [(-4.0, y), (4.0, y)]
    return [beside[0], (beside[1][0], y + 13)]


def _reach(x: float, dx: float, text: str) -> tuple[float, float]:
    """From where to where a label `dx` beside the line at `x` reaches (left of the line when `dx` is negative)."""
    return (x + dx, x + dx + _text_width(text)) if dx > 0 else (x + dx - _text_width(text), x + dx)


def _text_width(text: str, size: float = 11) -> float:
    """A generous guess of how wide `text` is at `size` px, bold: a Chinese character is a square, anything else under two thirds."""
    return sum(size if unicodedata.east_asian_width(char) in "WF" else 0.64 * size for char in text)


def ranking(rows: list[dict[str, Any]], key: str, title: str, reference: float | None, w: Words = ENGLISH, width: int = 470) -> str:
    """Units ranked by median accept -> on scene, fastest first: bar to the median, whisker to p90; green 8 % or more
    under `reference` (the district's median), red 8 % or more over it."""
    ranked = sorted((r for r in rows if r["on_scene_median_s"] is not None), key=lambda r: r["on_scene_median_s"])
    silent = [r for r in rows if r["on_scene_median_s"] is None]
    label_w, text_w, top, row_h = 128, 150, 30, 24
    height = top + row_h * max(len(ranked), 1) + 42 + (16 if silent else 0)
    if not ranked:
        return _empty(title, w, width, height)
    longest = max(r["on_scene_p90_s"] or r["on_scene_median_s"] for r in ranked) or 1.0
    medians = [r["on_scene_median_s"] for r in ranked]
    middle = reference or percentile(medians, 0.5) or 1.0
    plot_w = width - label_w - text_w - 8
    parts = [_title(title)]
    for i, r in enumerate(ranked):
        y = top + i * row_h
        median, p90 = r["on_scene_median_s"], r["on_scene_p90_s"] or r["on_scene_median_s"]
        colour = FAST if median <= middle * 0.92 else SLOW if median >= middle * 1.08 else MID
        x_median, x_p90 = label_w + plot_w * median / longest, label_w + plot_w * p90 / longest
        tooltip = w("ranking.tooltip", name=r[key], median=w.duration(median), p90=w.duration(p90), incidents=w.incidents(r["incidents"]))
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" class="label">{_e(_short(r[key], 17))}</text>'
                     f'<line x1="{x_median:.1f}" x2="{x_p90:.1f}" y1="{y + row_h / 2:.1f}" y2="{y + row_h / 2:.1f}" stroke="{MUTED}" stroke-width="1.5"/>'
                     f'<line x1="{x_p90:.1f}" x2="{x_p90:.1f}" y1="{y + 6}" y2="{y + row_h - 6}" stroke="{MUTED}" stroke-width="1.5"/>'
                     f'<rect x="{label_w}" y="{y + 4}" width="{x_median - label_w:.1f}" height="{row_h - 9}" rx="2" fill="{colour}">'
                     f"<title>{_e(tooltip)}</title></rect>"
                     f'<text x="{width - text_w + 6}" y="{y + 15}" class="value"><tspan font-weight="600">{w.duration(median)}</tspan> '
                     f'{_e(w("ranking.value", incidents=w.incidents(r["incidents"])))}</text>')
    bottom = top + row_h * len(ranked)
    parts.append(f'<text x="{label_w}" y="{bottom + 16}" class="axis">{_e(w("ranking.legend"))}</text>'
                 f'<text x="{label_w}" y="{bottom + 31}" class="axis">{_e(w("ranking.colours"))}</text>')
    if silent:
        names = ", ".join(_short(r[key], 18) for r in silent[:6]) + (" …" if len(silent) > 6 else "")
        parts.append(f'<text x="{label_w}" y="{bottom + 46}" class="axis">{_e(w("ranking.silent", names=names))}</text>')
    return _svg(width, height, parts)


def trend(weeks: list[dict[str, Any]], title: str, w: Words = ENGLISH, width: int = 940, height: int = 230) -> str:
    """Per week: incidents (grey bars, right scale), median offer -> accept and accept -> on scene (lines, left scale)."""
    left, right, top, bottom = 70, 44, 34, 44
    if not weeks:
        return _empty(title, w, width, height)
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(weeks)
    step = nice_step(max([week[k] or 0 for week in weeks for k in ("accept_median_s", "on_scene_median_s")] + [1.0]), 4)
    longest = step * 4
    most = max([week["incidents"] for week in weeks] + [1])
    count_step = max(1, math.ceil(most / 4))
    parts = [_title(title)]
    for i in range(5):
        y = top + plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{w.duration(step * (4 - i))}</text>'
                     f'<text x="{width - right + 6}" y="{y + 4:.1f}" class="tick">{count_step * (4 - i)}</text>')
    for i, week in enumerate(weeks):
        h = plot_h * week["incidents"] / (count_step * 4)
        x = left + i * slot
        days = week.get("days", 7)
        label = w("week", day=week["week"][5:])
        if days < 7:
            label = w("week.days" if days != 1 else "week.day", week=label, days=days)
        parts.append(f'<rect x="{x + slot * 0.2:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.6:.1f}" height="{h:.1f}" fill="#cfd6dd">'
                     f"<title>{_e(w('week.tooltip', day=week['week'], incidents=w.incidents(week['incidents'])))}</title></rect>"
                     f'<text x="{x + slot / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">{_e(label)}</text>')
    for key, colour in (("accept_median_s", ACCEPT_COLOUR), ("on_scene_median_s", SCENE_COLOUR)):
        points = [(left + (i + 0.5) * slot, top + plot_h * (1 - week[key] / longest), week[key]) for i, week in enumerate(weeks) if week[key] is not None]
        if points:
            parts.append(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"><title>{w.duration(v)}</title></circle>'
                      f'<text x="{x:.1f}" y="{y - 7:.1f}" text-anchor="middle" class="value">{w.duration(v)}</text>' for x, y, v in points]
    legend_y = height - 8
    parts.append(f'<rect x="{left}" y="{legend_y - 9}" width="12" height="10" fill="#cfd6dd"/>'
                 f'<text x="{left + 16}" y="{legend_y}" class="axis">{_e(w("trend.incidents"))}</text>'
                 f'<line x1="{left + 180}" x2="{left + 200}" y1="{legend_y - 4}" y2="{legend_y - 4}" stroke="{ACCEPT_COLOUR}" stroke-width="3"/>'
                 f'<text x="{left + 204}" y="{legend_y}" class="axis">{_e(w("trend.accept"))}</text>'
                 f'<line x1="{left + 370}" x2="{left + 390}" y1="{legend_y - 4}" y2="{legend_y - 4}" stroke="{SCENE_COLOUR}" stroke-width="3"/>'
                 f'<text x="{left + 394}" y="{legend_y}" class="axis">{_e(w("trend.on_scene"))}</text>')
    return _svg(width, height, parts)


def _title(text: str) -> str:
    return f'<text x="0" y="16" class="chart-title">{_e(text)}</text>'


def _empty(title: str, w: Words, width: int, height: int) -> str:
    return _svg(width, height, [_title(title), f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="axis">{_e(w("chart.empty"))}</text>'])


def _svg(width: int, height: int, parts: list[str]) -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">{"".join(parts)}</svg>'


def _short(text: object, size: int) -> str:
    """At most `size` narrow characters wide, cut with "…"; a Chinese character is as wide as two."""
    text = str(text)
    widths = [2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text]
    if sum(widths) <= size:
        return text
    kept, used = 0, 0
    while used + widths[kept] <= size - 1:
        used += widths[kept]
        kept += 1
    return text[:kept] + "…"


# --- the page -------------------------------------------------------------------------------------------------------


STYLE = f"""
body{{font:14px/1.4 system-ui,"Noto Sans CJK SC","Segoe UI",sans-serif;color:{INK};margin:24px auto;max-width:980px;padding:0 16px}}
h1{{font-size:22px;margin:0}} h2{{font-size:17px;margin:28px 0 8px;border-bottom:2px solid {GRID};padding-bottom:4px}}
.sub{{color:{MUTED};margin:2px 0 10px}} .lead{{margin:2px 0;font-size:15px}} .lead:last-of-type{{margin-bottom:14px}}
.tiles{{display:grid;grid-template-columns:repeat(4,1fr);gap:10px}}
.tile{{border:1px solid {GRID};border-radius:6px;padding:8px 10px}} .tile b{{display:block;font-size:22px}} .tile span{{color:{MUTED};font-size:12px}}
.charts{{display:grid;grid-template-columns:1fr 1fr;gap:16px 24px;margin-top:16px}} .wide{{grid-column:1/3}}
svg{{max-width:100%;height:auto}} svg text{{font-family:inherit}}
.chart-title{{font-size:14px;font-weight:600;fill:{INK}}} .tick,.axis{{font-size:11px;fill:{MUTED}}} .label{{font-size:12px;fill:{INK}}}
.value{{font-size:11px;fill:{INK}}} .mark{{font-size:11px;font-weight:600;fill:{INK}}}
table{{border-collapse:collapse;width:100%;font-size:10.5px}} th,td{{padding:3px 4px;border-bottom:1px solid {GRID};text-align:right;white-space:nowrap}}
th{{white-space:normal;vertical-align:bottom;font-weight:600}} td.wrap,td.text{{white-space:normal}} .date{{white-space:nowrap}} td.text{{min-width:6em}}
th:first-child,td:first-child,td.text,th.text{{text-align:left}} th{{background:#f4f6f8;position:sticky;top:0}}
td.nr{{color:{MUTED};font-style:italic}} .note{{color:{MUTED};font-size:12px}}
@page{{size:A4;margin:12mm}}
@media print{{body{{margin:0;max-width:none;font-size:11px}} h2{{break-after:avoid}} .charts,.tiles,svg,tr{{break-inside:avoid}} th{{position:static}}}}
"""


def to_html(report: Assessment, generated_at: datetime | None = None, language: str = "en") -> str:
    """The whole report as one HTML document, in `language` (one of LANGUAGES)."""
    w = words_for(language)
    t = report.total
    scope = w("scope.community", community=report.community) if report.community else w("scope.all")
    offers = t["offers"] or 0
    refused = t["declines"] + t["timeouts"]
    tiles = [
        (str(t["incidents"]), w("tile.incidents"), w("tile.incidents_note", guards=t["guards"])),
        (w.duration(t["accept_median_s"]), w("tile.accept"), w("tile.p90", duration=w.duration(t["accept_p90_s"]))),
        (w.duration(t["on_scene_median_s"]), w("tile.on_scene"), w("tile.p90", duration=w.duration(t["on_scene_p90_s"]))),
        (w.percent(100 * refused / offers) if offers else "—", w("tile.refused"),
         w("tile.refused_note", declines=t["declines"], timeouts=t["timeouts"], offers=offers)),
        (str(t["false_alarms"]), w("tile.false_alarms"), w("tile.false_alarms_note")),
        (_share(t["checkins_on_time"], t["checkins"], w), w("tile.checkins"), _of(t["checkins"], "checkins", w)),
        (_share(t["tips_accepted"], t["tips"], w), w("tile.tips"), _of(t["tips"], "tips", w)),
        (w("hours", h=t["training_hours"]), w("tile.training"), w("tile.training_note")),
    ]
    charts = [
        histogram(report.accept_s, w("chart.accept"), ACCEPT_COLOUR, w),
        histogram(report.on_scene_s, w("chart.on_scene"), SCENE_COLOUR, w),
        ranking(report.communities, "community", w("chart.communities"), t["on_scene_median_s"], w),
        ranking(report.companies, "company", w("chart.companies"), t["on_scene_median_s"], w),
    ]
    generated = (generated_at or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    guards = sorted(({**g, "who": f"{g['guard']} {g['name']}", "vetting": w.vetting(g["vetting"])} for g in report.guards), key=lambda g: (-g["incidents"], g["guard"]))
    return "".join([
        f'<!doctype html><html lang="{w.language}"><head><meta charset="utf-8"><title>{_e(w("title", period=report.period.name, district=report.district))}</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{_e(w('heading', period=report.period.name))}</h1>",
        f'<p class="sub">{_e(w("sub", district=report.district, scope=scope, start=f"{report.period.start:%Y-%m-%d}", end=f"{report.period.end:%Y-%m-%d}", generated=generated))}</p>',
        *(f'<p class="lead">{_e(line)}</p>' for line in highlights(report, w)),
        '<div class="tiles">', *(f'<div class="tile"><b>{_e(v)}</b>{_e(label)}<br><span>{_e(note)}</span></div>' for v, label, note in tiles), "</div>",
        '<div class="charts">', *(f"<div>{c}</div>" for c in charts), f'<div class="wide">{trend(report.weeks, w("chart.weeks"), w)}</div>', "</div>",
        _table(w("table.communities"), report.communities, ["community"], w),
        _table(w("table.companies"), report.companies, ["company"], w),
        _table(w("table.sites"), report.sites, ["site", "community"], w),
        _table(w("table.guards"), guards, ["who", "company", "site", "vetting"], w, guards_column=False),
        f'<p class="note">{_e(w("note"))}</p>',
        "</body></html>",
    ])


def highlights(report: Assessment, w: Words = ENGLISH) -> list[str]:
    """What a chief should notice first: the slowest and fastest community to the scene, the company refusing most offers."""
    lines = []
    timed = sorted((c for c in report.communities if c["on_scene_median_s"] is not None), key=lambda c: c["on_scene_median_s"])
    if len(timed) >= 2:
        fast, slow = timed[0], timed[-1]
        lines.append(w("highlight.slowest", slow=slow["community"], slow_time=w.duration(slow["on_scene_median_s"]), fast=fast["community"],
                       fast_time=w.duration(fast["on_scene_median_s"]), share=w.percent(100 * (slow["on_scene_median_s"] / fast["on_scene_median_s"] - 1))))
    refusing = [(100 * (c["declines"] + c["timeouts"]) / c["offers"], c) for c in report.companies if c["offers"]]
    if refusing:
        share, worst = max(refusing, key=lambda x: x[0])
        lines.append(w("highlight.refusing", company=worst["company"], share=w.percent(share), offers=worst["offers"]))
    return lines


def _of(whole: int | None, what: str, w: Words) -> str:
    return w("tile.not_recorded") if whole is None else w(f"tile.{what}_of", n=whole) if whole else w(f"tile.{what}_none")


def _share(part: int | None, whole: int | None, w: Words) -> str:
    if part is None or whole is None:
        return w("cell.not_recorded")
    return w.percent(100 * part / whole) if whole else "—"


DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _unbroken_dates(text: str) -> str:
    """A date in a wrapping cell stays on one line (a line break after "2027-06-" reads as another date)."""
    return DATE.sub(lambda m: f'<span class="date">{m.group(0)}</span>', text)


def _table(title: str, rows: list[dict[str, Any]], first: list[str], w: Words, guards_column: bool = True) -> str:
    head = ([f'<th class="text">{_e(w(f"column.{key}"))}</th>' for key in first] + ([f"<th>{_e(w('column.guards'))}</th>"] if guards_column else [])
            + [f"<th>{_e(w(f'column.{key}'))}</th>" for key in TABLE_COLUMNS])
    body = []
    for row in rows:
        cells = [f'<td class="text">{_unbroken_dates(_e(row.get(key) if row.get(key) is not None else "—"))}</td>' for key in first]
        cells += [f"<td>{row['guards']}</td>"] if guards_column else []
        cells += [_cell(key, row.get(key), row, w) for key in TABLE_COLUMNS]
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<h2>{_e(title)}</h2><table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>"
