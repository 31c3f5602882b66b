"""PDF output: the HTML printed by headless Debian Chromium, else matplotlib's PdfPages.

Chromium prints exactly what the HTML shows (fonts, tables, page breaks), so it is preferred.
It is only ever the system package (`apt-get install chromium`); nothing downloads a browser.
Where it is absent (a minimal Pi image) `pdf_with_matplotlib` writes a plainer PDF with the
same summary figures and plots, and a warning says which path was taken.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from .figures import CarFigures
from .fleet import rank_fleet
from .html import fmt_hours, fmt_minutes, fmt_pct
from .plots import Labels, car_figures_plots, fleet_figure

from liftwatch.errors import LiftwatchError

__all__ = ["PdfError", "find_chromium", "html_to_pdf", "pdf_with_matplotlib"]

_LOG = logging.getLogger(__name__)

CHROMIUM_TIMEOUT_S = 90.0
"""A report prints in 2-5 s; a cold start on a Pi 4 from an SD card is slower, never a minute."""

_CHROMIUM_NAMES = ("chromium", "chromium-browser")

_A4_IN = (8.27, 11.69)


class PdfError(LiftwatchError):
    """Chromium ran but produced no PDF; `stderr` holds its last words."""

    def __init__(self, reason: str, stderr: str = "") -> None:
        super().__init__(f"PDF printing failed: {reason}" + (f"\n{stderr.strip()[-2000:]}" if stderr.strip() else ""))
        self.reason = reason
        self.stderr = stderr


def find_chromium() -> str | None:
    """Path of the system Chromium; LIFTWATCH_CHROMIUM overrides (empty string = pretend absent)."""
    override = os.environ.get("LIFTWATCH_CHROMIUM")
    if override is not None:
        return override or None
    for name in _CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


def html_to_pdf(html_path: Path, pdf_path: Path, chromium: str) -> None:
    """Print `html_path` to `pdf_path` with headless Chromium (A4 from the page's @page rule)."""
    pdf_path = pdf_path.resolve()
    with tempfile.TemporaryDirectory(prefix="liftwatch-chromium-") as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",  # runs as root in containers and CI, where the sandbox cannot start
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-pdf-header-footer",
            f"--user-data-dir={profile}",  # a fresh profile: no lock clash with a running browser
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        ]
        if pdf_path.exists():
            pdf_path.unlink()
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, env={**os.environ, "HOME": profile}
            )
        except subprocess.TimeoutExpired as err:
            raise PdfError(f"chromium did not finish within {CHROMIUM_TIMEOUT_S:.0f} s") from err
        except OSError as err:
            raise PdfError(f"cannot run {chromium}: {err}") from err
    if not pdf_path.exists() or pdf_path.stat().st_size == 0:
        raise PdfError(f"chromium exited with {proc.returncode} and wrote no PDF", proc.stderr)


def _text_page(lines: Sequence[tuple[str, float, str, str]], lab: Labels) -> Figure:
    """An A4 page of text lines: (text, font size, weight, colour)."""
    with plt.rc_context(lab.rc()):
        fig = Figure(figsize=_A4_IN)
        y = 0.95
        for text, size, weight, colour in lines:
            fig.text(0.08, y, text, fontsize=size, fontweight=weight, color=colour, va="top")
            y -= size / 72 / _A4_IN[1] * 1.6
    return fig


def _car_summary_lines(f: CarFigures, lab: Labels) -> list[tuple[str, float, str, str]]:
    t = f.targets
    colour = {"ok": "#2f855a", "attention": "#dd6b20", "breach": "#c53030"}[f.verdict.severity.value]
    title = [("电梯运行与维保报告 · 一梯一档", 15, "bold", "#2b6cb0")] if lab.family else []
    lines = title + [
        ("Elevator operation and maintenance record (one lift, one file)", 11, "bold", "#2b6cb0"),
        (f"{f.car}  {f.site or ''}  {f.period.first} — {f.period.last}", 10, "normal", "#4a5568"),
        ("", 6, "normal", "black"),
        (lab(f"结论：{f.verdict.zh}", f"Verdict: {f.verdict.en}"), 13, "bold", colour),
    ]
    lines += [("  • " + lab(x.zh, x.en), 9, "normal", colour) for x in f.verdict.findings]
    lines += [("", 6, "normal", "black")]
    facts = [
        (lab("可用率", "Availability"), fmt_pct(f.availability, 2)),
        (lab("日均运行次数", "Trips per day"), f"{f.trips_per_day:.0f}"),
        (lab("需响应故障 / 响应超时", "Judged faults / late responses"), f"{f.judged_faults} / {f.late_responses}"),
        (lab("最长响应", "Longest response"), fmt_minutes(f.response_s_max)),
        (
            lab("半日内修复率", "Repaired within half a day"),
            f"{fmt_pct(f.repair_half_day_share, 0)} (≥ {t.repair_half_day_share:.0%})",
        ),
        (lab("修复超3天", "Repairs over 3 days"), str(f.repairs_over_max)),
        (lab("维保次数 / 不足40分钟", "Visits / shorter than 40 min"), f"{len(f.visits)} / {f.short_visits}"),
        (lab("困人次数", "Entrapments"), str(f.entrapments)),
        (lab("停梯时间", "Out-of-service time"), fmt_hours(f.downtime_s)),
        (lab("振动超限运行", "Trips over ride-quality limits"), f"{f.rq_trips_over_limit} / {f.rq_trips_judged}"),
        (lab("平层超差停靠", "Stops off level"), f"{f.off_level_stops} / {f.leveling_stops}"),
    ]
    lines += [(f"{k}:  {v}", 10, "normal", "#1a202c") for k, v in facts]
    return lines


def pdf_with_matplotlib(pdf_path: Path, cars: Sequence[CarFigures], fleet: bool, lab: Labels | None = None) -> None:
    """The fallback PDF: a text summary page, then the plots, one car after another (or the fleet)."""
    lab = lab or Labels()
    _LOG.warning("chromium not found: writing a plain matplotlib PDF (install Debian chromium for the full layout)")
    with PdfPages(pdf_path) as pdf, plt.rc_context(lab.rc()):
        if fleet:
            ranked = rank_fleet(cars)
            lines = [(lab("电梯风险排名", "Fleet risk ranking"), 15, "bold", "#2b6cb0")]
            lines += [
                (
                    f"{i}. {r.figures.car}  {r.score:g}  {lab(r.band[1], r.band[0])}  "
                    f"{lab(r.figures.verdict.zh, r.figures.verdict.en)}",
                    10,
                    "normal",
                    "#1a202c",
                )
                for i, r in enumerate(ranked, start=1)
            ]
            pdf.savefig(_text_page(lines, lab))
            pdf.savefig(
                fleet_figure(
                    [r.figures.car for r in ranked], [r.score for r in ranked], [r.band[0] for r in ranked], lab
                )
            )
            return
        for f in cars:
            pdf.savefig(_text_page(_car_summary_lines(f, lab), lab))
            for _, fig in car_figures_plots(f, lab):
                pdf.savefig(fig)
