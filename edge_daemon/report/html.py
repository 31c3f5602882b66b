"""HTML rendering of the car report and the fleet report: one self-contained file each.

The plots are inline SVG (text drawn as paths), the CSS is inline, nothing is fetched: the file
can be mailed, archived with the policy, or printed to PDF by a headless browser. Page one is
the summary an insurer reads; `.page` breaks keep it on its own A4 sheet when printed.
"""

from __future__ import annotations

import html
from datetime import datetime, timedelta, timezone
from typing import Sequence

import matplotlib.pyplot as plt

from liftwatch import __version__

from .figures import FAULT_NAMES_ZH, RQ_UNJUDGED, CarFigures, FaultCase
from .fleet import RULES, rank_fleet
from .plots import Labels, car_figures_plots, fleet_figure, to_svg

__all__ = ["render_car_html", "render_fleet_html", "fmt_minutes", "fmt_hours", "fmt_pct"]

_CSS = """
@page { size: A4; margin: 13mm 14mm; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans CJK SC", "Noto Sans", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei",
       sans-serif; color: #1a202c; font-size: 10pt; line-height: 1.35; margin: 0 auto; max-width: 190mm; }
.page { page-break-after: always; break-after: page; padding: 2mm 0; }
.page:last-child { page-break-after: auto; break-after: auto; }
header { border-bottom: 2px solid #2b6cb0; padding-bottom: 2mm; margin-bottom: 3mm; }
h1 { font-size: 15pt; margin: 0; color: #2b6cb0; }
h1 small { display: block; font-size: 10pt; color: #4a5568; font-weight: normal; }
h2 { font-size: 11.5pt; margin: 4mm 0 1.5mm; color: #2d3748; border-left: 3px solid #2b6cb0; padding-left: 2mm; }
.meta { display: grid; grid-template-columns: repeat(3, 1fr); gap: 1mm 4mm; font-size: 8.5pt; color: #4a5568;
        margin-top: 2mm; }
.meta b { color: #1a202c; }
.verdict { border-radius: 2mm; padding: 2mm 4mm; margin: 2.5mm 0; font-size: 11.5pt; font-weight: bold; }
.verdict.ok { background: #f0fff4; border: 1px solid #2f855a; color: #22543d; }
.verdict.attention { background: #fffaf0; border: 1px solid #dd6b20; color: #7b341e; }
.verdict.breach { background: #fff5f5; border: 1px solid #c53030; color: #742a2a; }
.verdict ul { margin: 0.5mm 0 0; padding-left: 5mm; font-size: 8.5pt; font-weight: normal; line-height: 1.3; }
.tiles { display: grid; grid-template-columns: repeat(4, 1fr); gap: 2mm; margin: 2mm 0; }
.tile { border: 1px solid #e2e8f0; border-radius: 1.5mm; padding: 1mm 2.5mm; }
.tile .v { font-size: 14pt; font-weight: bold; line-height: 1.2; }
.tile .k { font-size: 7.5pt; color: #4a5568; }
.tile.bad .v { color: #c53030; } .tile.warn .v { color: #dd6b20; } .tile.good .v { color: #2f855a; }
table { width: 100%; border-collapse: collapse; font-size: 8.5pt; margin: 1mm 0 2mm; }
th, td { border-bottom: 1px solid #e2e8f0; padding: 0.8mm 1.5mm; text-align: left; vertical-align: top; }
#targets td:first-child { width: 30%; } #targets td:last-child { white-space: nowrap; width: 16%; }
th { background: #edf2f7; font-weight: bold; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #2f855a; font-weight: bold; } .fail { color: #c53030; font-weight: bold; }
.na { color: #a0aec0; }
td.t, td.num, #ranking td:nth-child(2), #ranking td:nth-child(4), #ranking td:nth-child(n+10) { white-space: nowrap; }
#ranking { font-size: 8pt; }
figure { margin: 0 0 2mm; break-inside: avoid; page-break-inside: avoid; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { font-size: 8pt; color: #4a5568; margin-top: 0.5mm; }
.note { font-size: 7.5pt; color: #718096; }
tr { break-inside: avoid; page-break-inside: avoid; }
"""


def fmt_minutes(seconds: float | None) -> str:
    """Minutes, or hours from 2 h on (a response of "1340 min" reads worse than "22.3 h")."""
    if seconds is None:
        return "—"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def fmt_hours(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds / 3600:.1f} h" if seconds < 72 * 3600 else f"{seconds / 86400:.1f} d"


def fmt_pct(share: float | None, digits: int = 1) -> str:
    return "—" if share is None else f"{100 * share:.{digits}f} %"


def _e(text: object) -> str:
    return html.escape(str(text))


def _local(ts: float, utc_offset_h: float, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return (datetime.fromtimestamp(ts, tz=timezone.utc) + timedelta(hours=utc_offset_h)).strftime(fmt)


def _tz_name(utc_offset_h: float) -> str:
    return f"UTC{utc_offset_h:+g}"


def _unjudged(f: CarFigures) -> str:
    """The trips without ride-quality figures, by reason: a bare "—" per trip says nothing."""
    if not f.rq_unjudged:
        return ""
    parts = [f"{n} {RQ_UNJUDGED[k][0]} {RQ_UNJUDGED[k][1]}" for k, n in sorted(f.rq_unjudged.items())]
    return f"; 未评 not judged: {', '.join(parts)}"


def _check(ok: bool | None) -> str:
    if ok is None:
        return '<span class="na">— 无数据 / n/a</span>'
    return '<span class="pass">✔ 达标 / met</span>' if ok else '<span class="fail">✘ 未达标 / missed</span>'


def _tile(value: str, zh: str, en: str, tone: str = "") -> str:
    return f'<div class="tile {tone}"><div class="v">{_e(value)}</div><div class="k">{_e(zh)}<br>{_e(en)}</div></div>'


def _verdict_block(f: CarFigures) -> str:
    v = f.verdict
    items = "".join(f"<li>{_e(x.zh)} — {_e(x.en)}</li>" for x in v.findings)
    body = f"<ul>{items}</ul>" if items else ""
    return f'<div class="verdict {v.severity.value}" id="verdict">结论 Verdict: {_e(v.zh)} / {_e(v.en)}{body}</div>'


def _targets_table(f: CarFigures) -> str:
    t = f.targets
    share = f.repair_half_day_share
    gap = f.visit_gap_s_max
    longest = max((c.repair_s for c in f.faults if c.judged and c.repair_s is not None), default=None)
    rows = [
        (
            "故障响应",
            "Fault response",
            f"≤ {t.response_s / 60:.0f} min",
            f"{f.late_responses} / {f.judged_faults} 超时 late"
            + (f" ({f.unanswered} 无人到场 no visit)" if f.unanswered else "")
            + f"; max {fmt_minutes(f.response_s_max)}",
            None if not f.judged_faults else f.late_responses == 0,
        ),
        (
            "半个工作日内修复",
            "Repaired within half a working day",
            f"≥ {t.repair_half_day_share:.0%} in ≤ {fmt_hours(t.repair_half_day_s)}",
            f"{fmt_pct(share, 0)} ({f.repairs_within_half_day}/{f.repairs_judged})",
            None if share is None else share >= t.repair_half_day_share,
        ),
        (
            "最长修复时间",
            "Longest repair",
            f"≤ {t.repair_max_s / 86400:.0f} d",
            f"{f.repairs_over_max} 超过 over; max {fmt_hours(longest)}",
            None if not f.judged_faults else f.repairs_over_max == 0,
        ),
        (
            "维保时长",
            "Maintenance visit duration",
            f"≥ {t.maintenance_min_s / 60:.0f} min",
            f"{f.short_visits} / {len(f.visits)} 不足 short",
            None if not f.visits else f.short_visits == 0,
        ),
        (
            "维保间隔",
            "Maintenance interval",
            f"≤ {t.maintenance_interval_max_s / 86400:.0f} d",
            "—" if gap is None else f"max {gap / 86400:.1f} d",
            None if gap is None else gap <= t.maintenance_interval_max_s,
        ),
        (
            "乘运质量 (GB/T 10058)",
            "Ride quality (GB/T 10058)",
            f"A95 ≤ {t.z_a95_pp_limit_mg:g} mg, max ≤ {t.z_max_pp_limit_mg:g} mg",
            f"{f.rq_trips_over_limit} / {f.rq_trips_judged} 次超限 over" + _unjudged(f),
            None if not f.rq_trips_judged else f.rq_trips_over_limit == 0,
        ),
    ]
    body = "".join(
        f"<tr><td>{_e(zh)} <span class='note'>{_e(en)}</span></td><td>{_e(req)}</td><td>{_e(act)}</td>"
        f"<td>{_check(ok)}</td></tr>"
        for zh, en, req, act, ok in rows
    )
    return (
        "<table id='targets'><tr><th>合同指标 Contract target</th><th>要求 Required</th><th>实际 Actual</th>"
        f"<th>结果 Result</th></tr>{body}</table>"
    )


def _summary_tiles(f: CarFigures) -> str:
    avail_tone = "" if f.availability is None else ("good" if f.availability >= 0.99 else "warn")
    share = f.repair_half_day_share
    return "".join(
        [
            '<div class="tiles">',
            _tile(fmt_pct(f.availability, 2), "可用率", "availability", avail_tone),
            _tile(f"{f.trips_per_day:.0f}", "日均运行次数", "trips per day"),
            _tile(
                f"{f.judged_faults}", "需响应故障", "faults needing a technician", "warn" if f.judged_faults else "good"
            ),
            _tile(
                f"{f.late_responses}",
                "响应超时",
                f"late responses (> {f.targets.response_s / 60:.0f} min)",
                "bad" if f.late_responses else "good",
            ),
            _tile(
                fmt_pct(share, 0),
                "半日内修复率",
                "repaired within half a day",
                "" if share is None else ("good" if share >= f.targets.repair_half_day_share else "bad"),
            ),
            _tile(
                f"{len(f.visits)} / {f.short_visits}",
                "维保次数 / 不足40分钟",
                "visits / shorter than 40 min",
                "bad" if f.short_visits else "good",
            ),
            _tile(f"{f.entrapments}", "困人次数", "entrapments", "bad" if f.entrapments else "good"),
            _tile(
                "—" if f.z_a95_p95_mg is None else f"{f.z_a95_p95_mg:.1f} mg",
                "垂直振动 A95 (P95)",
                "vertical A95, 95th percentile",
                "" if f.z_a95_p95_mg is None else ("good" if f.z_a95_p95_mg <= f.targets.z_a95_pp_limit_mg else "warn"),
            ),
            "</div>",
        ]
    )


def _faults_table(f: CarFigures) -> str:
    if not f.faults:
        return "<p class='note'>本期无故障 / No faults in this period.</p>"
    off = f.period.utc_offset_h

    def row(c: FaultCase) -> str:
        cleared = _local(c.cleared_ts, off) if c.cleared_ts is not None else "未恢复 open"
        judged = "需响应 judged" if c.judged else ("监测设备 kit" if c.kit else "—")
        late = (
            "<span class='fail'>超时 late</span>"
            if c.response_late
            else ("<span class='pass'>OK</span>" if c.judged else "")
        )
        name = (
            f"{FAULT_NAMES_ZH[c.type]}<br><span class='note'>{_e(c.type)}</span>"
            if c.type in FAULT_NAMES_ZH
            else _e(c.type)
        )
        return (
            f"<tr><td>{name}</td><td class='num'>{_e(c.gbt24476_code if c.gbt24476_code is not None else '—')}</td>"
            f"<td class='t'>{_e(_local(c.raised_ts, off))}</td><td class='t'>{_e(cleared)}</td>"
            f"<td class='num'>{_e(fmt_minutes(c.response_s))}</td><td class='num'>{_e(fmt_hours(c.repair_s))}</td>"
            f"<td>{_e(judged)} {late}</td></tr>"
        )

    return (
        "<table id='faults'><tr><th>类型 Type</th><th class='num'>GB/T 24476</th><th>发生 Raised</th>"
        "<th>恢复 Cleared</th><th class='num'>响应 Response</th><th class='num'>修复 Repair</th><th>评定 Judged</th></tr>"
        + "".join(row(c) for c in f.faults)
        + "</table>"
    )


def _visits_table(f: CarFigures) -> str:
    if not f.visits:
        return "<p class='note'>本期无维保记录 / No maintenance visits in this period.</p>"
    off = f.period.utc_offset_h
    rows = "".join(
        f"<tr><td class='t'>{_e(_local(v.start_ts, off))}</td><td class='t'>{_e(_local(v.end_ts, off))}</td>"
        f"<td class='num'>{v.duration_s / 60:.0f} min</td><td class='num'>{v.inspection_runs}</td>"
        f"<td>{'<span class=fail>不足 short</span>' if v.too_short else '<span class=pass>OK</span>'}</td></tr>"
        for v in f.visits
    )
    return (
        "<table id='visits'><tr><th>开始 Start</th><th>结束 End</th><th class='num'>时长 Duration</th>"
        f"<th class='num'>检修运行 Inspection runs</th><th>评定 Result</th></tr>{rows}</table>"
    )


def _header(title_zh: str, title_en: str, meta: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f"<div>{_e(k)}: <b>{_e(v)}</b></div>" for k, v in meta)
    return f"<header><h1>{_e(title_zh)}<small>{_e(title_en)}</small></h1><div class='meta'>{cells}</div></header>"


def _document(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html>\n<html lang='zh-CN'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<meta name='generator' content='liftwatch {__version__}'><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )


_CAPTIONS = {
    "trips": ("每日运行次数（来自日报或单次运行记录）。", "Trips per local day (daily record, else counted trips)."),
    "trips-hourly": ("每小时运行次数（单次运行记录）。", "Trips per local hour (counted trips)."),
    "ride-quality": (
        "每次运行的垂直振动 A95 峰峰值与每日最大峰峰值，按 ISO 18738-1 方法，对照 GB/T 10058 限值。",
        "Vertical A95 peak-to-peak per trip and the daily maximum peak-to-peak (ISO 18738-1 method) "
        "against the GB/T 10058 limits.",
    ),
    "doors": (
        "每日门循环次数与重开门比例；重开门增多常见于门机、光幕或门刀问题。",
        "Door cycles per day and the share with reopenings; a rise points to the door operator, light "
        "curtain or door coupler.",
    ),
    "leveling": (
        "每次停靠的平层偏差估计（绿色带为允许范围）。",
        "Leveling offset estimate per stop (green band: tolerance).",
    ),
    "maintenance": (
        "每次维保的时长（检修开关），红色为不足最低时长。",
        "Duration of each maintenance visit (inspection switch); red: shorter than the minimum.",
    ),
    "faults": (
        "故障持续区间（红色：停梯故障，橙色：其他故障，灰色：监测设备），▼ 表示响应超时；最下一行为维保。",
        "Fault spans (red: car out of service, orange: other faults, grey: monitoring kit); ▼ marks a "
        "late response; the bottom lane shows maintenance visits.",
    ),
}


def render_car_html(
    f: CarFigures, lab: Labels | None = None, generated_ts: float | None = None, source_note: str = ""
) -> str:
    """The car's one-lift-one-file record (一梯一档) for the period, as one HTML document."""
    lab = lab or Labels()
    off = f.period.utc_offset_h
    gen = datetime.now(timezone.utc).timestamp() if generated_ts is None else generated_ts
    meta = [
        ("电梯 Car", f.car),
        ("地点 Site", f.site or "—"),
        ("监测板 Board", ", ".join(f.boards) or "—"),
        ("期间 Period", f"{f.period.first} — {f.period.last}"),
        ("天数 Days", f"{f.period.n_days} ({_tz_name(off)})"),
        ("生成 Generated", _local(gen, off) + f" {_tz_name(off)}"),
    ]
    facts = [
        ("运行总次数", "trips in period", str(f.trips_total)),
        ("停梯时间", "out-of-service time", fmt_hours(f.downtime_s)),
        ("监测中断", "monitoring offline", fmt_hours(f.offline_s)),
        ("维保总时长", "maintenance total", f"{f.maintenance_minutes:.0f} min"),
        ("最长困人", "longest entrapment", fmt_minutes(f.entrapment_s_max)),
        (
            "门循环 / 重开门",
            "door cycles / reopenings",
            "—" if f.door_cycles is None else f"{f.door_cycles} / {f.door_reopenings}",
        ),
        ("平层超差停靠", "stops off level", f"{f.off_level_stops} / {f.leveling_stops}"),
        ("平层偏差 P95", "leveling offset P95", "—" if f.offset_p95_mm is None else f"{f.offset_p95_mm:.1f} mm"),
        ("最大峰峰值", "vertical max peak-to-peak", "—" if f.z_max_pp_mg is None else f"{f.z_max_pp_mg:.1f} mg"),
        (
            "振动趋势",
            "vertical A95 trend",
            "—" if f.z_a95_trend_mg_per_30d is None else f"{f.z_a95_trend_mg_per_30d:+.1f} mg / 30 d",
        ),
    ]
    half = len(facts) // 2
    rows_html = [
        f"<tr><td>{_e(zh)} <span class='note'>{_e(en)}</span></td><td class='num'>{_e(v)}</td></tr>"
        for zh, en, v in facts
    ]
    facts_table = (
        "<div style='display:grid;grid-template-columns:1fr 1fr;gap:4mm' id='facts'>"
        f"<table>{''.join(rows_html[:half])}</table><table>{''.join(rows_html[half:])}</table></div>"
    )
    notes = "".join(f"<p class='note'>{_e(n)}</p>" for n in f.notes)
    summary = (
        "<section class='page' id='summary'>"
        + _header(
            "电梯运行与维保报告 · 一梯一档", "Elevator operation and maintenance record (one lift, one file)", meta
        )
        + _verdict_block(f)
        + _summary_tiles(f)
        + "<h2>合同指标 Contract targets</h2>"
        + _targets_table(f)
        + "<h2>其他指标 Other figures</h2>"
        + facts_table
        + notes
        + "<p class='note'>需响应故障：困人，或超过响应时限仍未恢复的电梯故障（监测设备故障与乘客触发信号仅列出）；"
        "响应时间 = 故障发生至维保人员到达（检修开关）；修复时间 = 故障发生至恢复正常运行。Judged faults: entrapments, "
        "and elevator faults still active when the response target passed (kit faults and passenger signals are "
        "listed only); response = fault raised to technician on site (inspection switch on); "
        "repair = raised to normal service resumed. See docs/report.md.</p>" + "</section>"
    )
    figures = []
    with plt.rc_context(lab.rc()):
        for name, fig in car_figures_plots(f, lab):
            zh, en = _CAPTIONS["trips-hourly" if name == "trips" and f.period.n_days == 1 else name]
            figures.append(f"<figure id='plot-{name}'>{to_svg(fig)}<figcaption>{_e(zh)} {_e(en)}</figcaption></figure>")
    page2 = "<section class='page' id='trends'><h2>运行趋势 Trends</h2>" + "".join(figures[:3]) + "</section>"
    page3 = (
        "<section class='page' id='maintenance-faults'><h2>维保与故障 Maintenance and faults</h2>"
        + "".join(figures[3:])
        + "</section>"
    )
    page4 = (
        "<section class='page' id='records'><h2>故障记录 Fault records</h2>"
        + _faults_table(f)
        + "<h2>维保记录 Maintenance visits</h2>"
        + _visits_table(f)
        + f"<p class='note'>{_e(source_note)} liftwatch {__version__}.</p></section>"
    )
    return _document(f"{f.car} {f.period.first}..{f.period.last}", summary + page2 + page3 + page4)


FLEET_PLOT_CARS = 40
"""Bars in the fleet report's risk plot: a district's 500 cars would make a plot 4 m tall that takes
half a minute to draw; the ranking table below it lists every car."""


def render_fleet_html(
    cars: Sequence[CarFigures],
    lab: Labels | None = None,
    generated_ts: float | None = None,
    source_note: str = "",
    extra_sections: str = "",
) -> str:
    """The insurer's fleet report: cars ranked by the explainable risk score (fleet.py).

    `extra_sections` (HTML `<section>`s) go between the ranking and the method: the fleet service's
    district figures (liftwatch.fleet.answers)."""
    lab = lab or Labels()
    ranked = rank_fleet(cars)
    if not ranked:
        raise ValueError("a fleet report needs at least one car")
    period = ranked[0].figures.period
    off = period.utc_offset_h
    gen = datetime.now(timezone.utc).timestamp() if generated_ts is None else generated_ts
    meta = [
        ("电梯数 Cars", str(len(ranked))),
        ("期间 Period", f"{period.first} — {period.last}"),
        ("生成 Generated", _local(gen, off) + f" {_tz_name(off)}"),
        ("地点 Sites", ", ".join(sorted({r.figures.site for r in ranked if r.figures.site})) or "—"),
        ("天数 Days", f"{period.n_days} ({_tz_name(off)})"),
    ]
    high = sum(r.band[0] == "high" for r in ranked)
    tiles = "".join(
        [
            '<div class="tiles">',
            _tile(str(high), "高风险电梯", "high-risk cars", "bad" if high else "good"),
            _tile(str(sum(r.figures.entrapments for r in ranked)), "困人次数", "entrapments"),
            _tile(str(sum(r.figures.late_responses for r in ranked)), "响应超时", "late responses"),
            _tile(str(sum(r.figures.short_visits for r in ranked)), "维保不足40分钟", "visits shorter than 40 min"),
            "</div>",
        ]
    )
    plotted = ranked[:FLEET_PLOT_CARS]
    with plt.rc_context(lab.rc()):
        fig = fleet_figure([r.figures.car for r in plotted], [r.score for r in plotted], [r.band[0] for r in plotted], lab)
        fleet_svg = to_svg(fig)
    if len(ranked) > len(plotted):
        fleet_svg += (f"<figcaption class='note'>风险最高的 {len(plotted)} 台（共 {len(ranked)} 台，全部见下表）。"
                      f"The {len(plotted)} highest-risk of {len(ranked)} cars; the table lists all.</figcaption>")
    rows = []
    for i, r in enumerate(ranked, start=1):
        f = r.figures
        # two lines at most, like the car and verdict cells: the full breakdown is the points table below
        top = sorted((c for c in r.components if c.points > 0), key=lambda c: -c.points)[:2]
        why = "<br>".join(f"{_e(c.zh)} {_e(c.name.replace('_', ' '))} +{c.points:g}" for c in top) or "—"
        rows.append(
            f"<tr class='car' data-car='{_e(f.car)}'><td class='num'>{i}</td><td><b>{_e(f.car)}</b><br>"
            f"<span class='note'>{_e(f.site or '')}</span></td>"
            f"<td class='num'><b>{r.score:g}</b></td><td>{_e(r.band[1])} {_e(r.band[0])}</td>"
            f"<td class='num'>{fmt_pct(f.availability, 1).replace(' ', '')}</td><td class='num'>{f.entrapments}</td>"
            f"<td class='num'>{f.late_responses}/{f.judged_faults}</td><td class='num'>{f.short_visits}/{len(f.visits)}</td>"
            f"<td class='num'>{f.rq_trips_over_limit}/{f.rq_trips_judged}</td><td>{_e(f.verdict.zh)}<br><span class='note'>{_e(f.verdict.short_en)}</span></td>"
            f"<td class='note'>{why}</td></tr>"
        )
    table = (
        "<table id='ranking'><tr><th class='num'>#</th><th>电梯 Car</th><th class='num'>风险分 Score</th>"
        "<th>等级 Band</th><th class='num'>可用率 Avail.</th><th class='num'>困人 Entrap.</th>"
        "<th class='num'>超时/需响应 Late/judged</th><th class='num'>维保不足 Short visits</th>"
        "<th class='num'>振动超限 RQ over</th><th>结论 Verdict</th><th>主要扣分 Main points</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    rules = "".join(
        f"<tr><td>{_e(zh)}<br><span class='note'>{_e(name)}</span></td><td>{_e(rzh)}<br>"
        f"<span class='note'>{_e(ren)}</span></td></tr>"
        for name, zh, rzh, ren in RULES
    )
    heads = "".join(f"<th class='num'>{_e(zh)}</th>" for _, zh, _, _ in RULES)
    points = "".join(
        f"<tr><td><b>{_e(r.figures.car)}</b></td>"
        + "".join(
            f"<td class='num'>{c.points:g}<br><span class='note'>{c.count:g}</span></td>"
            if c.points
            else "<td class='num na'>0</td>"
            for c in r.components
        )
        + f"<td class='num'><b>{r.score:g}</b></td></tr>"
        for r in ranked
    )
    method = (
        "<h2>扣分明细 Points by component</h2>"
        "<p class='note'>每格：分数，下方为对应事实（次数、比例或百分点）。Each cell: points, and below them the "
        "fact they come from (count, share or percentage points).</p>"
        f"<table id='points' style='font-size:7.5pt'><tr><th>电梯 Car</th>{heads}<th class='num'>合计 Total</th></tr>"
        f"{points}</table>"
        "<h2>评分方法 How the score is computed</h2><p class='note'>风险分为下列各项扣分之和，每项对应电梯报告中的一个事实；"
        "等级：&lt;10 低，&lt;30 中，其余高；未达合同要求的电梯至少为中。The score is the sum of these points, each "
        "tied to one fact of the car report; bands: below 10 low, below 30 medium, else high; a car that missed a "
        "contract target is at least medium. The weights are policy and can be changed "
        "(liftwatch.edge_daemon.report.fleet).</p>"
        f"<table><tr><th>项目 Component</th><th>规则 Rule</th></tr>{rules}</table>"
    )
    body = (
        "<section class='page' id='fleet'>"
        + _header("电梯风险排名 · 保险报告", "Fleet risk ranking for the insurer", meta)
        + tiles
        + f"<figure id='plot-fleet'>{fleet_svg}</figure>"
        + table
        + "</section>"
        + extra_sections
        + "<section class='page' id='method'>"
        + method
        + f"<p class='note'>{_e(source_note)} liftwatch {__version__}.</p></section>"
    )
    return _document(f"fleet {period.first}..{period.last}", body)
