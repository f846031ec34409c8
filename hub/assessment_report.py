"""The assessment as a chief reads it: one self-contained HTML file (inline SVG charts drawn here, no script, no CDN;
prints on A4), or CSV (one row per guard, company, site and community, a `level` column saying which)."""

from __future__ import annotations

import csv
import html
import io
import math
from datetime import datetime, timezone
from typing import Any

from hub.assessment import Assessment, percentile

COLUMNS = [
    ("incidents", "Incidents"), ("offers", "Offers"), ("accept_median_s", "Accept median"), ("accept_p90_s", "Accept p90"),
    ("on_scene_median_s", "On scene median"), ("on_scene_p90_s", "On scene p90"), ("declines", "Declined"), ("timeouts", "Timed out"),
    ("false_alarms", "False alarms"), ("checkins_on_time", "Check-ins on time"), ("checkins", "Check-ins"), ("tips_accepted", "Tips accepted"),
    ("tips", "Tips"), ("training_hours", "Training h"),
]
FAST, SLOW, MID, INK, MUTED, GRID = "#1b7f4d", "#c0392b", "#d68910", "#1f2933", "#66727f", "#e3e7eb"
ACCEPT_COLOUR, SCENE_COLOUR = "#2f6db5", "#8e44ad"


def to_csv(report: Assessment) -> str:
    """Every level's rows in one CSV table; a figure the hub does not record is left empty."""
    out = io.StringIO()
    names = ["level", "name", "company", "site", "community", "vetting", "guards", *(key for key, _ in COLUMNS)]
    writer = csv.DictWriter(out, names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for level, rows, key in (("community", report.communities, "community"), ("company", report.companies, "company"), ("site", report.sites, "site"),
                             ("guard", report.guards, "guard")):
        for row in rows:
            writer.writerow({**row, "level": level, "name": row[key] if level != "guard" else f"{row['guard']} ({row['name']})"})
    return out.getvalue()


# --- small formatting ---------------------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """42 s, 3 min 5 s, 1 h 02 min; an em dash for none."""
    if seconds is None:
        return "—"
    if round(seconds) < 60:
        return f"{seconds:.0f} s"
    if round(seconds) % 60 == 0 and seconds < 3600:
        return f"{round(seconds) // 60} min"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200)


def nice_step(largest: float, count: int) -> float:
    """The smallest round step (seconds) dividing `largest` into at most `count` parts."""
    return next((step for step in STEPS if step * count >= largest), STEPS[-1] * max(1, math.ceil(largest / (STEPS[-1] * count))))


def _e(text: object) -> str:
    return html.escape(str(text))


TABLE_COLUMNS = [
    ("incidents", "Incidents"), ("offers", "Offers"), ("accept_median_s", "Accept median"), ("accept_p90_s", "Accept p90"),
    ("on_scene_median_s", "On scene median"), ("on_scene_p90_s", "On scene p90"), ("declines", "Declined"), ("timeouts", "Timed out"),
    ("false_alarms", "False alarms"), ("checkins", "Check-ins on time"), ("tips", "Tips accepted"), ("training_hours", "Training h"),
]


def _cell(key: str, value: object, row: dict[str, Any] | None = None) -> str:
    if key in ("checkins", "tips") and row is not None and value is not None:
        part = row["checkins_on_time" if key == "checkins" else "tips_accepted"]
        return f"<td>{part} of {value}</td>" if value else "<td>—</td>"
    if value is None:
        return '<td class="nr">not recorded</td>' if key in ("checkins", "checkins_on_time", "tips", "tips_accepted") else "<td>—</td>"
    if key.endswith("_s"):
        return f"<td>{duration(value)}</td>"  # type: ignore[arg-type]
    return f"<td>{_e(value)}</td>"


# --- charts (inline SVG) -------------------------------------------------------------------------------------------


def histogram(values: list[float], title: str, colour: str, width: int = 460, height: int = 210) -> str:
    """How the times spread: round-width bins up to the 97th percentile (longer ones in the last, marked "+"), median and p90 marked."""
    left, right, top, bottom = 40, 24, 34, 40
    if not values:
        return _empty(title, width, height)
    step = nice_step(max(percentile(values, 0.97) or 1.0, 1.0), 12)
    bins = max(1, min(12, math.ceil((percentile(values, 0.97) or step) / step)))
    top_value = step * bins
    counts = [0] * bins
    for v in values:
        counts[min(int(v // step), bins - 1)] += 1
    peak = max(counts)
    plot_w, plot_h = width - left - right, height - top - bottom
    bar_w = plot_w / bins
    parts = [_title(title, width)]
    for i in range(5):
        y = top + plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{round(peak * (4 - i) / 4)}</text>')
    for i, count in enumerate(counts):
        h = plot_h * count / peak if peak else 0
        parts.append(f'<rect x="{left + i * bar_w + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" fill="{colour}" opacity=".8">'
                     f"<title>{duration(i * step)}–{duration((i + 1) * step)}: {count}</title></rect>")
    every = 2 if bins > 6 else 1
    for i in range(0, bins + 1, every):
        label = duration(i * step) + ("+" if i == bins else "")
        parts.append(f'<text x="{left + i * bar_w:.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">{label}</text>')
    for q, label, dash in ((0.5, "median", ""), (0.9, "p90", ' stroke-dasharray="5 3"')):
        v = percentile(values, q) or 0
        x = left + min(v / top_value, 1) * plot_w
        anchor, dx = ("end", -4) if x > left + plot_w * 0.75 else ("start", 4)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{top + plot_h}" stroke="{INK}" stroke-width="2"{dash}/>'
                     f'<text x="{x + dx:.1f}" y="{top + 8}" text-anchor="{anchor}" class="mark">{label} {duration(v)}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" class="axis">number of responses ({len(values)}) by time taken</text>')
    return _svg(width, height, parts)


def ranking(rows: list[dict[str, Any]], key: str, title: str, reference: float | None, width: int = 470) -> str:
    """Units ranked by median accept -> on scene, fastest first: bar to the median, whisker to p90; green 8 % or more
    under `reference` (the district's median), red 8 % or more over it."""
    ranked = sorted((r for r in rows if r["on_scene_median_s"] is not None), key=lambda r: r["on_scene_median_s"])
    silent = [r for r in rows if r["on_scene_median_s"] is None]
    label_w, text_w, top, row_h = 128, 150, 30, 24
    height = top + row_h * max(len(ranked), 1) + 42 + (16 if silent else 0)
    if not ranked:
        return _empty(title, width, height)
    longest = max(r["on_scene_p90_s"] or r["on_scene_median_s"] for r in ranked) or 1.0
    medians = [r["on_scene_median_s"] for r in ranked]
    middle = reference or percentile(medians, 0.5) or 1.0
    plot_w = width - label_w - text_w - 8
    parts = [_title(title, width)]
    for i, r in enumerate(ranked):
        y = top + i * row_h
        median, p90 = r["on_scene_median_s"], r["on_scene_p90_s"] or r["on_scene_median_s"]
        colour = FAST if median <= middle * 0.92 else SLOW if median >= middle * 1.08 else MID
        x_median, x_p90 = label_w + plot_w * median / longest, label_w + plot_w * p90 / longest
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" class="label">{_e(_short(r[key], 17))}</text>'
                     f'<line x1="{x_median:.1f}" x2="{x_p90:.1f}" y1="{y + row_h / 2:.1f}" y2="{y + row_h / 2:.1f}" stroke="{MUTED}" stroke-width="1.5"/>'
                     f'<line x1="{x_p90:.1f}" x2="{x_p90:.1f}" y1="{y + 6}" y2="{y + row_h - 6}" stroke="{MUTED}" stroke-width="1.5"/>'
                     f'<rect x="{label_w}" y="{y + 4}" width="{x_median - label_w:.1f}" height="{row_h - 9}" rx="2" fill="{colour}">'
                     f"<title>{_e(r[key])}: median {duration(median)}, p90 {duration(p90)}, {r['incidents']} incidents</title></rect>"
                     f'<text x="{width - text_w + 6}" y="{y + 15}" class="value"><tspan font-weight="600">{duration(median)}</tspan> · {r["incidents"]} incidents</text>')
    bottom = top + row_h * len(ranked)
    parts.append(f'<text x="{label_w}" y="{bottom + 16}" class="axis">bar: median · whisker: 90th percentile</text>'
                 f'<text x="{label_w}" y="{bottom + 31}" class="axis">green / red: 8 % or more faster / slower than the district</text>')
    if silent:
        parts.append(f'<text x="{label_w}" y="{bottom + 46}" class="axis">no incidents: {_e(", ".join(_short(r[key], 18) for r in silent[:6]))}{" …" if len(silent) > 6 else ""}</text>')
    return _svg(width, height, parts)


def trend(weeks: list[dict[str, Any]], title: str, width: int = 940, height: int = 230) -> str:
    """Per week: incidents (grey bars, right scale), median offer -> accept and accept -> on scene (lines, left scale)."""
    left, right, top, bottom = 70, 44, 34, 44
    if not weeks:
        return _empty(title, width, height)
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(weeks)
    step = nice_step(max([w[k] or 0 for w in weeks for k in ("accept_median_s", "on_scene_median_s")] + [1.0]), 4)
    longest = step * 4
    most = max([w["incidents"] for w in weeks] + [1])
    count_step = max(1, math.ceil(most / 4))
    parts = [_title(title, width)]
    for i in range(5):
        y = top + plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{duration(step * (4 - i))}</text>'
                     f'<text x="{width - right + 6}" y="{y + 4:.1f}" class="tick">{count_step * (4 - i)}</text>')
    for i, w in enumerate(weeks):
        h = plot_h * w["incidents"] / (count_step * 4)
        x = left + i * slot
        days = w.get("days", 7)
        label = f"week of {w['week'][5:]}" + (f" ({days} day{'s' if days != 1 else ''})" if days < 7 else "")
        parts.append(f'<rect x="{x + slot * 0.2:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.6:.1f}" height="{h:.1f}" fill="#cfd6dd">'
                     f"<title>week of {w['week']}: {w['incidents']} incidents</title></rect>"
                     f'<text x="{x + slot / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">{label}</text>')
    for key, colour in (("accept_median_s", ACCEPT_COLOUR), ("on_scene_median_s", SCENE_COLOUR)):
        points = [(left + (i + 0.5) * slot, top + plot_h * (1 - w[key] / longest), w[key]) for i, w in enumerate(weeks) if w[key] is not None]
        if points:
            parts.append(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"><title>{duration(v)}</title></circle>'
                      f'<text x="{x:.1f}" y="{y - 7:.1f}" text-anchor="middle" class="value">{duration(v)}</text>' for x, y, v in points]
    legend_y = height - 8
    parts.append(f'<rect x="{left}" y="{legend_y - 9}" width="12" height="10" fill="#cfd6dd"/><text x="{left + 16}" y="{legend_y}" class="axis">incidents (right scale)</text>'
                 f'<line x1="{left + 180}" x2="{left + 200}" y1="{legend_y - 4}" y2="{legend_y - 4}" stroke="{ACCEPT_COLOUR}" stroke-width="3"/>'
                 f'<text x="{left + 204}" y="{legend_y}" class="axis">median offer → accept</text>'
                 f'<line x1="{left + 370}" x2="{left + 390}" y1="{legend_y - 4}" y2="{legend_y - 4}" stroke="{SCENE_COLOUR}" stroke-width="3"/>'
                 f'<text x="{left + 394}" y="{legend_y}" class="axis">median accept → on scene</text>')
    return _svg(width, height, parts)


def _title(text: str, width: int) -> str:
    return f'<text x="0" y="16" class="chart-title">{_e(text)}</text>'


def _empty(title: str, width: int, height: int) -> str:
    return _svg(width, height, [_title(title, width), f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="axis">no incidents in the period</text>'])


def _svg(width: int, height: int, parts: list[str]) -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">{"".join(parts)}</svg>'


def _short(text: object, size: int) -> str:
    text = str(text)
    return text if len(text) <= size else text[: size - 1] + "…"


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
table{{border-collapse:collapse;width:100%;font-size:11.5px}} th,td{{padding:3px 5px;border-bottom:1px solid {GRID};text-align:right;white-space:nowrap}}
th{{white-space:normal;vertical-align:bottom;font-weight:600}} td.wrap{{white-space:normal}}
th:first-child,td:first-child,td.text,th.text{{text-align:left}} th{{background:#f4f6f8;position:sticky;top:0}}
td.nr{{color:{MUTED};font-style:italic}} .note{{color:{MUTED};font-size:12px}}
@page{{size:A4;margin:12mm}}
@media print{{body{{margin:0;max-width:none;font-size:11px}} h2{{break-after:avoid}} .charts,.tiles,svg,tr{{break-inside:avoid}} th{{position:static}}}}
"""


def to_html(report: Assessment, generated_at: datetime | None = None) -> str:
    """The whole report as one HTML document."""
    t = report.total
    scope = f"community {report.community}" if report.community else "all communities"
    offers = t["offers"] or 0
    refused = t["declines"] + t["timeouts"]
    tiles = [
        (str(t["incidents"]), "incidents handled", f"{t['guards']} guards assessed"),
        (duration(t["accept_median_s"]), "offer → accept, median", f"p90 {duration(t['accept_p90_s'])}"),
        (duration(t["on_scene_median_s"]), "accept → on scene, median", f"p90 {duration(t['on_scene_p90_s'])}"),
        (f"{100 * refused / offers:.0f} %" if offers else "—", "offers declined or timed out", f"{t['declines']} declined, {t['timeouts']} timed out of {offers}"),
        (str(t["false_alarms"]), "false alarms", "incidents found to be nothing on scene"),
        (_share(t["checkins_on_time"], t["checkins"]), "patrol check-ins on time", _of(t["checkins"], "check-ins")),
        (_share(t["tips_accepted"], t["tips"]), "tips accepted", _of(t["tips"], "tips submitted")),
        (f"{t['training_hours']:g} h", "training in the period", "periodic training recorded in the register"),
    ]
    charts = [
        histogram(report.accept_s, "How fast guards accept an offer", ACCEPT_COLOUR),
        histogram(report.on_scene_s, "How fast guards reach the scene after accepting", SCENE_COLOUR),
        ranking(report.communities, "community", "Communities, fastest to the scene first", t["on_scene_median_s"]),
        ranking(report.companies, "company", "Security companies, fastest to the scene first", t["on_scene_median_s"]),
    ]
    generated = (generated_at or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    return "".join([
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Guard assessment {_e(report.period.name)} · {_e(report.district)}</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Guard assessment · {_e(report.period.name)}</h1>",
        f'<p class="sub">{_e(report.district)} · {_e(scope)} · incidents detected {report.period.start:%Y-%m-%d} to {report.period.end:%Y-%m-%d} (UTC) · generated {generated}</p>',
        *(f'<p class="lead">{_e(line)}</p>' for line in highlights(report)),
        '<div class="tiles">', *(f'<div class="tile"><b>{_e(v)}</b>{_e(label)}<br><span>{_e(note)}</span></div>' for v, label, note in tiles), "</div>",
        '<div class="charts">', *(f"<div>{c}</div>" for c in charts), f'<div class="wide">{trend(report.weeks, "Week by week")}</div>', "</div>",
        _table("Communities", report.communities, [("community", "Community")]),
        _table("Security companies", report.companies, [("company", "Company")]),
        _table("Sites", report.sites, [("site", "Site"), ("community", "Community")]),
        _table("Guards", sorted(({**g, "who": f"{g['guard']} {g['name']}"} for g in report.guards), key=lambda g: (-g["incidents"], g["guard"])),
               [("who", "Guard"), ("company", "Company"), ("site", "Site"), ("vetting", "Vetting")], guards_column=False),
        '<p class="note">Times: offer → accept from the offer to the guard\'s acceptance; accept → on scene from the acceptance to the '
        "guard reporting on scene. Medians and 90th percentiles pool every response of the unit. Check-ins on time: check-ins that made a "
        "patrol window on time. Test presses are left out.</p>",
        "</body></html>",
    ])


def highlights(report: Assessment) -> list[str]:
    """What a chief should notice first: the slowest and fastest community to the scene, the company refusing most offers."""
    lines = []
    timed = sorted((c for c in report.communities if c["on_scene_median_s"] is not None), key=lambda c: c["on_scene_median_s"])
    if len(timed) >= 2:
        fast, slow = timed[0], timed[-1]
        lines.append(f"Slowest to the scene: {slow['community']}, median {duration(slow['on_scene_median_s'])} after accepting "
                     f"({100 * (slow['on_scene_median_s'] / fast['on_scene_median_s'] - 1):.0f} % slower than {fast['community']}, {duration(fast['on_scene_median_s'])}).")
    refusing = [(100 * (c["declines"] + c["timeouts"]) / c["offers"], c) for c in report.companies if c["offers"]]
    if refusing:
        share, worst = max(refusing, key=lambda x: x[0])
        lines.append(f"Most offers declined or unanswered: {worst['company']}, {share:.0f} % of {worst['offers']} offers.")
    return lines


def _of(whole: int | None, what: str) -> str:
    return "not recorded by this hub" if whole is None else f"of {whole} {what}" if whole else f"no {what} in the period"


def _share(part: int | None, whole: int | None) -> str:
    if part is None or whole is None:
        return "not recorded"
    return f"{100 * part / whole:.0f} %" if whole else "—"


def _table(title: str, rows: list[dict[str, Any]], first: list[tuple[str, str]], guards_column: bool = True) -> str:
    head = [f'<th class="text">{_e(label)}</th>' for _, label in first] + (["<th>Guards</th>"] if guards_column else []) + [f"<th>{_e(label)}</th>" for _, label in TABLE_COLUMNS]
    body = []
    for row in rows:
        cells = [f'<td class="text">{_e(row.get(key) if row.get(key) is not None else "—")}</td>' for key, _ in first]
        cells += [f"<td>{row['guards']}</td>"] if guards_column else []
        cells += [_cell(key, row.get(key), row) for key, _ in TABLE_COLUMNS]
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<h2>{_e(title)}</h2><table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>"
