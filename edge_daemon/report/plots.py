"""The report's plots, drawn with matplotlib (Agg, no display) from `CarFigures` / fleet risks.

Each `*_figure` function builds one matplotlib Figure from already computed figures and draws
nothing else, so the HTML (inline SVG, text as paths: no font needed by the reader) and the
PdfPages fallback share the same pictures. Times on the x axes are local (the period's UTC offset),
because that is the clock the building and the contract use.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: a daemon host has no display

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .figures import FAULT_NAMES_ZH, OUT_OF_SERVICE, CarFigures, FaultCase  # noqa: E402
from .fonts import bilingual, cjk_font_family  # noqa: E402

__all__ = [
    "Labels",
    "trips_figure",
    "ride_quality_figure",
    "doors_figure",
    "leveling_figure",
    "maintenance_figure",
    "fault_timeline_figure",
    "fleet_figure",
    "car_figures_plots",
    "to_svg",
]

WIDTH_IN = 7.4  # fits an A4 page with 18 mm margins
HEIGHT_IN = 2.7

BLUE = "#2b6cb0"
LIGHT_BLUE = "#90cdf4"
RED = "#c53030"
ORANGE = "#dd6b20"
GREEN = "#2f855a"
GREY = "#718096"


class Labels:
    """Bilingual label maker bound to the font situation of this process."""

    def __init__(self) -> None:
        self.family = cjk_font_family()

    def __call__(self, zh: str, en: str) -> str:
        return bilingual(zh, en, self.family is not None)

    def rc(self) -> dict[str, object]:
        # Concrete names, not "sans-serif": a Text keeps its family list from creation, so figures
        # saved outside this context still find the CJK font.
        fonts = ([self.family] if self.family else []) + ["DejaVu Sans"]
        return {
            "font.family": fonts,
            "font.sans-serif": fonts,
            "font.size": 8.5,
            "axes.titlesize": 9.5,
            "axes.titleweight": "bold",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.color": "#e2e8f0",
            "grid.linewidth": 0.6,
            "axes.unicode_minus": False,  # CJK fonts lack U+2212
            "svg.fonttype": "path",
            "legend.fontsize": 7.5,
            "legend.frameon": False,
        }


def _local(ts: float, utc_offset_h: float) -> datetime:
    """Naive local datetime for plotting (matplotlib would otherwise show UTC)."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).replace(tzinfo=None) + timedelta(hours=utc_offset_h)


def _new(lab: Labels, title: str, height_in: float = HEIGHT_IN) -> tuple[Figure, object]:
    """A one-axes figure; call inside `plt.rc_context(lab.rc())` (text takes its font when made)."""
    fig = Figure(figsize=(WIDTH_IN, height_in), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, loc="left")
    return fig, ax


def _day_axis(ax: object, f: CarFigures) -> None:
    """Local time axis over the period: hours for a one-day period (every tick of a day-formatted
    axis would read the same date), days otherwise."""
    off = f.period.utc_offset_h
    ax.set_xlim(_local(f.period.start_ts, off), _local(f.period.end_ts, off))
    if f.period.n_days == 1:
        ax.xaxis.set_major_locator(mdates.HourLocator(byhour=range(0, 24, 3)))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        return
    locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator) if f.period.n_days <= 3
                                 else mdates.DateFormatter("%m-%d"))


def _no_data(ax: object, lab: Labels) -> None:
    ax.text(0.5, 0.5, lab("无数据", "no data"), transform=ax.transAxes, ha="center", va="center", color=GREY)


def _day_centres(f: CarFigures) -> list[datetime]:
    off = f.period.utc_offset_h
    return [_local(f.period.start_ts + (i + 0.5) * 86400, off) for i in range(f.period.n_days)]


def trips_figure(f: CarFigures, lab: Labels) -> Figure:
    if f.period.n_days == 1:
        return _trips_per_hour_figure(f, lab)
    with plt.rc_context(lab.rc()):
        fig, ax = _new(lab, lab("每日运行次数", "Trips per day"))
        xs = _day_centres(f)
        ys = [d.trips if d.trips is not None else 0 for d in f.days]
        ax.bar(xs, ys, width=0.8, color=BLUE)
        missing = [x for x, d in zip(xs, f.days) if d.trips is None]
        if missing:
            ax.plot(missing, [0] * len(missing), "x", color=GREY, label=lab("无数据日", "day without data"))
        ax.axhline(
            f.trips_per_day,
            color=ORANGE,
            lw=1,
            ls="--",
            label=lab(f"日均 {f.trips_per_day:.0f}", f"mean {f.trips_per_day:.0f} per day"),
        )
        ax.legend(loc="upper left", ncols=2)
        ax.set_ylim(0, max(ys + [1]) * 1.3)  # room for the legend above the bars
        ax.set_ylabel(lab("次", "trips"))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        _day_axis(ax, f)
    return fig


def _trips_per_hour_figure(f: CarFigures, lab: Labels) -> Figure:
    """A one-day period: trips per local hour (one bar per day would fill the chart and say nothing)."""
    with plt.rc_context(lab.rc()):
        fig, ax = _new(lab, lab("每小时运行次数", "Trips per hour"))
        off = f.period.utc_offset_h
        counts = [0] * 24
        for t in f.trips:
            counts[min(23, int((t.start_ts - f.period.start_ts) // 3600))] += 1
        if f.trips:
            ax.bar([_local(f.period.start_ts + (h + 0.5) * 3600, off) for h in range(24)], counts,
                   width=0.8 / 24, color=BLUE)
        else:
            _no_data(ax, lab)
        ax.set_ylim(0, max(counts + [1]) * 1.15)
        ax.set_ylabel(lab("次", "trips"))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        _day_axis(ax, f)
    return fig


def ride_quality_figure(f: CarFigures, lab: Labels) -> Figure:
    t = f.targets
    with plt.rc_context(lab.rc()):
        fig, ax = _new(lab, lab("乘运质量趋势（垂直振动峰峰值）", "Ride quality trend (vertical peak-to-peak)"), 3.0)
        off = f.period.utc_offset_h
        pts = [(_local(p.start_ts, off), p.z_a95_pp_mg) for p in f.trips if p.z_a95_pp_mg is not None]
        if pts:
            ax.scatter(
                [p[0] for p in pts],
                [p[1] for p in pts],
                s=4,
                color=LIGHT_BLUE,
                alpha=0.6,
                label=lab("单次 A95", "A95 per trip"),
                rasterized=len(pts) > 2000,
            )
        xs = _day_centres(f)
        daily_series = (
            ("z_a95_p50_mg", "-o", BLUE, {}, lab("A95 日中位数", "A95 daily median")),
            ("z_max_pp_mg", "-^", ORANGE, {"lw": 1}, lab("最大峰峰值 日最大", "max peak-to-peak, daily max")),
        )
        daily: dict[str, list] = {}
        for attr, style, color, line, label in daily_series:
            daily[attr] = [(x, getattr(d, attr)) for x, d in zip(xs, f.days) if getattr(d, attr) is not None]
            if daily[attr]:
                xy = daily[attr]
                ax.plot([p[0] for p in xy], [p[1] for p in xy], style, ms=2.5, color=color, label=label, **line)
        p50, mx = daily["z_a95_p50_mg"], daily["z_max_pp_mg"]
        if not (pts or p50 or mx):
            _no_data(ax, lab)
        for limit_mg, name, color in ((t.z_a95_pp_limit_mg, "A95", BLUE), (t.z_max_pp_limit_mg, "max", RED)):
            ax.axhline(limit_mg, color=color, ls="--", lw=1)
            ax.annotate(f"GB/T 10058 {name} ≤ {limit_mg:g} mg", (0.0, limit_mg), xycoords=("axes fraction", "data"),
                        va="bottom", fontsize=7, color=color)
        top = max([t.z_max_pp_limit_mg * 1.25] + [p[1] * 1.1 for p in pts + mx])
        ax.set_ylim(0, top)
        ax.set_ylabel("mg")
        if pts or p50 or mx:
            ax.legend(loc="upper right", ncols=3)
        _day_axis(ax, f)
    return fig


def doors_figure(f: CarFigures, lab: Labels) -> Figure:
    with plt.rc_context(lab.rc()):
        fig, ax = _new(lab, lab("门开关次数与重开门", "Door cycles and reopenings"))
        xs = _day_centres(f)
        have = [(x, d) for x, d in zip(xs, f.days) if d.door_cycles is not None]
        if not have:
            _no_data(ax, lab)
        else:
            ax.bar(
                [x for x, _ in have],
                [d.door_cycles for _, d in have],
                width=0.8,
                color=BLUE,
                label=lab("门循环", "door cycles"),
            )
            ax.set_ylabel(lab("门循环", "door cycles"))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(0, max(d.door_cycles for _, d in have) * 1.3 or 1)
            ax2 = ax.twinx()
            ax2.grid(False)
            ax2.spines["right"].set_visible(True)
            rate = [100.0 * (d.door_reopenings or 0) / d.door_cycles if d.door_cycles else 0.0 for _, d in have]
            ax2.plot([x for x, _ in have], rate, "-o", ms=2.5, color=RED, label=lab("重开门率 %", "reopenings %"))
            ax2.set_ylabel(lab("重开门率 %", "reopenings %"))
            ax2.set_ylim(0, max(rate + [5.0]) * 1.3)
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, loc="upper left", ncols=2)
        _day_axis(ax, f)
    return fig


def leveling_figure(f: CarFigures, lab: Labels) -> Figure:
    tol = f.targets.level_tolerance_mm
    with plt.rc_context(lab.rc()):
        fig, ax = _new(lab, lab("平层偏差（每次停靠）", "Leveling offset per stop"))
        off = f.period.utc_offset_h
        pts = [(_local(p.start_ts, off), p.offset_mm) for p in f.trips if p.offset_mm is not None]
        if pts:
            colours = [RED if abs(v) > tol else GREEN for _, v in pts]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=5, c=colours, rasterized=len(pts) > 2000)
            lim = max([tol * 1.6] + [abs(v) * 1.15 for _, v in pts])
            ax.set_ylim(-lim, lim)
        else:
            _no_data(ax, lab)
            ax.set_ylim(-tol * 1.6, tol * 1.6)
        ax.axhspan(-tol, tol, color=GREEN, alpha=0.07)
        for y in (-tol, tol):
            ax.axhline(y, color=GREEN, ls="--", lw=0.8)
        ax.annotate(
            lab(f"允许 ±{tol:g} mm", f"tolerance ±{tol:g} mm"),
            (0.0, tol),
            xycoords=("axes fraction", "data"),
            va="bottom",
            fontsize=7,
            color=GREEN,
        )
        ax.set_ylabel("mm")
        _day_axis(ax, f)
    return fig


def maintenance_figure(f: CarFigures, lab: Labels) -> Figure:
    minimum = f.targets.maintenance_min_s / 60
    with plt.rc_context(lab.rc()):
        fig, ax = _new(lab, lab("维保时长与最低要求", "Maintenance visit durations vs minimum"))
        if not f.visits:
            _no_data(ax, lab)
            ax.set_ylim(0, minimum * 2)
            ax.set_xticks([])  # no visits: a numeric 0..1 axis would only confuse
        else:
            off = f.period.utc_offset_h
            names = [_local(v.start_ts, off).strftime("%m-%d %H:%M") for v in f.visits]
            mins = [v.duration_s / 60 for v in f.visits]
            colours = [RED if v.too_short else GREEN for v in f.visits]
            ax.bar(range(len(mins)), mins, color=colours, width=0.6)
            for i, m in enumerate(mins):
                ax.text(i, m, f"{m:.0f}", ha="center", va="bottom", fontsize=7)
            ax.set_xticks(
                range(len(mins)), names, rotation=30 if len(mins) > 6 else 0, ha="right" if len(mins) > 6 else "center"
            )
            ax.set_ylim(0, max(mins + [minimum]) * 1.35)
            ax.grid(axis="x", visible=False)
        ax.axhline(minimum, color=RED, ls="--", lw=1, label=lab(f"最低 {minimum:g} 分钟", f"minimum {minimum:g} min"))
        ax.legend(loc="upper right")
        ax.set_ylabel(lab("分钟", "minutes"))
    return fig


def _fault_colour(c: FaultCase) -> str:
    if c.kit:
        return GREY
    if c.type in OUT_OF_SERVICE:
        return RED
    return ORANGE


def fault_timeline_figure(f: CarFigures, lab: Labels) -> Figure:
    types = sorted({c.type for c in f.faults}, key=lambda t: (t in {"sensor_fault", "board_offline"}, t))
    height = max(1.6, 0.9 + 0.32 * (len(types) + 1))
    with plt.rc_context(lab.rc()):
        fig, ax = _new(lab, lab("故障与维保时间线", "Fault and maintenance timeline"), height)
        off = f.period.utc_offset_h
        lanes = types + ["maintenance"]
        for y, ftype in enumerate(lanes):
            if ftype == "maintenance":
                for v in f.visits:
                    ax.barh(
                        y,
                        timedelta(seconds=max(v.duration_s, f.period.n_days * 864.0)),
                        left=_local(v.start_ts, off),
                        height=0.6,
                        color=RED if v.too_short else GREEN,
                    )
                continue
            for c in f.faults:
                if c.type != ftype:
                    continue
                end = c.cleared_ts if c.cleared_ts is not None else f.data_end_ts
                # At least ~1 % of the period wide, so a 2-minute fault is still visible.
                width = max(end - c.raised_ts, f.period.n_days * 864.0)
                ax.barh(y, timedelta(seconds=width), left=_local(c.raised_ts, off), height=0.6, color=_fault_colour(c))
                if c.judged and c.response_late:
                    ax.plot(_local(c.raised_ts, off), y - 0.45, "v", color=RED, ms=4)  # above the bar (axis inverted)
        names = [
            lab("维保", "maintenance")
            if n == "maintenance"
            else (lab(FAULT_NAMES_ZH[n], n) if n in FAULT_NAMES_ZH else n)
            for n in lanes
        ]
        ax.set_yticks(range(len(lanes)), names)
        ax.set_ylim(-0.6, len(lanes) - 0.4)
        ax.invert_yaxis()
        ax.grid(axis="y", visible=False)
        if not f.faults:
            ax.text(
                0.5,
                0.75,
                lab("本期无故障", "no faults in this period"),
                transform=ax.transAxes,
                ha="center",
                color=GREY,
            )
        _day_axis(ax, f)
    return fig


def fleet_figure(names: Sequence[str], scores: Sequence[float], bands: Sequence[str], lab: Labels) -> Figure:
    colours = {"low": GREEN, "medium": ORANGE, "high": RED}
    height = max(1.8, 0.8 + 0.28 * len(names))
    with plt.rc_context(lab.rc()):
        fig, ax = _new(lab, lab("电梯风险评分", "Risk score by car"), height)
        ax.barh(range(len(names)), scores, color=[colours.get(b, GREY) for b in bands], height=0.6)
        for i, s in enumerate(scores):
            ax.text(s, i, f" {s:g}", va="center", fontsize=7.5)
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlim(0, max(list(scores) + [10.0]) * 1.15)
        ax.axvline(10, color=ORANGE, ls=":", lw=0.8)
        ax.axvline(30, color=RED, ls=":", lw=0.8)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(lab("风险分", "risk points"))
    return fig


def car_figures_plots(f: CarFigures, lab: Labels) -> list[tuple[str, Figure]]:
    """The report's plots in reading order, each with its anchor name."""
    return [
        ("trips", trips_figure(f, lab)),
        ("ride-quality", ride_quality_figure(f, lab)),
        ("doors", doors_figure(f, lab)),
        ("leveling", leveling_figure(f, lab)),
        ("maintenance", maintenance_figure(f, lab)),
        ("faults", fault_timeline_figure(f, lab)),
    ]


def to_svg(fig: Figure) -> str:
    """The figure as an inline <svg> element (XML prolog and DOCTYPE stripped)."""
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "path"}):  # glyphs as paths: the reader needs no CJK font
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]
