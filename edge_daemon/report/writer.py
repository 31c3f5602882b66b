"""Load, compute, render and write a car report or a fleet report: what the CLI commands do."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from liftwatch.errors import LiftwatchError
from liftwatch.output import atomic_path

from .figures import CarFigures, ContractTargets, Period, car_figures
from .html import render_car_html, render_fleet_html
from .pdf import PdfError, find_chromium, html_to_pdf, pdf_with_matplotlib
from .plots import Labels
from .source import LoadedMessages, load_messages, message_time

__all__ = ["ReportError", "WrittenReport", "load_period", "write_car_report", "write_fleet_report", "write_fleet_figures"]

_LOG = logging.getLogger(__name__)


class ReportError(LiftwatchError):
    """The report cannot be made as asked (unknown car, no data); the message says what to change."""


@dataclass(frozen=True, slots=True)
class WrittenReport:
    path: Path
    format: str
    pdf_engine: str | None  # "chromium" | "matplotlib" for PDFs
    cars: tuple[CarFigures, ...]
    loaded: LoadedMessages


def load_period(sources: Sequence[Path], period: Period, car: str | None) -> LoadedMessages:
    loaded = load_messages(
        sources, car=car, start_ts=period.start_ts, end_ts=period.end_ts, days=(period.days[0], period.days[-1])
    )
    for s in loaded.skipped[:20]:
        _LOG.warning("skipped %s:%s: %s", s.path, s.where, s.reason)
    if len(loaded.skipped) > 20:
        _LOG.warning("skipped %d more unreadable records", len(loaded.skipped) - 20)
    return loaded


def _source_note(loaded: LoadedMessages) -> str:
    names = ", ".join(str(p) for p in loaded.sources)
    note = f"数据来源 Source: {names}; {len(loaded.messages)} messages"
    if loaded.duplicates:
        note += f", {loaded.duplicates} duplicate ids ignored"
    if loaded.skipped:
        note += f", {len(loaded.skipped)} unreadable records skipped"
    return note + "."


def _write(html: str, out: Path, fmt: str, cars: Sequence[CarFigures], fleet: bool, lab: Labels) -> str | None:
    """Render into a file beside `out` and rename it over `out` only when rendering succeeded."""
    with atomic_path(out) as tmp:
        return _render(html, tmp, fmt, cars, fleet, lab)


def _render(html: str, out: Path, fmt: str, cars: Sequence[CarFigures], fleet: bool, lab: Labels) -> str | None:
    if fmt == "html":
        out.write_text(html, encoding="utf-8")
        return None
    chromium = find_chromium()
    if chromium is None:
        pdf_with_matplotlib(out, cars, fleet, lab)
        return "matplotlib"
    with tempfile.TemporaryDirectory(prefix="liftwatch-report-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        try:
            html_to_pdf(page, out, chromium)
        except PdfError as err:
            _LOG.warning("%s; falling back to matplotlib", err)
            pdf_with_matplotlib(out, cars, fleet, lab)
            return "matplotlib"
    return "chromium"


def _has_facts(loaded: LoadedMessages, car: str, period: Period) -> bool:
    """Whether the car has a message of its own in the period: the Pi's car-less status messages are
    loaded with every car, and the load keeps a day's margin either side, but neither is a fact of
    this car in this period (a report of them would read all green)."""
    for m in loaded.messages:
        if m.get("car") != car:
            continue
        t = message_time(m)
        if m.get("kind") == "daily" or t is None or period.start_ts <= t < period.end_ts:
            return True  # a daily record was already filtered by its day
    return False


def write_car_report(
    sources: Sequence[Path],
    car: str,
    period: Period,
    out: Path,
    fmt: str = "html",
    targets: ContractTargets | None = None,
) -> WrittenReport:
    targets = targets or ContractTargets(utc_offset_h=period.utc_offset_h)
    loaded = load_period(sources, period, car)
    if not _has_facts(loaded, car, period):
        everything = load_messages(sources)
        known = ", ".join(everything.cars) or "none"
        if car not in everything.cars:
            raise ReportError(f"no car {car!r} in {', '.join(map(str, sources))} (cars there: {known})")
        raise ReportError(f"no messages of car {car!r} between {period.first} and {period.last} "
                          f"in {', '.join(map(str, sources))}")
    lab = Labels()
    figures = car_figures(car, loaded.messages, period, targets)
    html = render_car_html(figures, lab, source_note=_source_note(loaded))
    engine = _write(html, out, fmt, [figures], False, lab)
    return WrittenReport(out, fmt, engine, (figures,), loaded)


def write_fleet_report(
    sources: Sequence[Path],
    period: Period,
    out: Path,
    fmt: str = "html",
    cars: Sequence[str] | None = None,
    targets: ContractTargets | None = None,
) -> WrittenReport:
    targets = targets or ContractTargets(utc_offset_h=period.utc_offset_h)
    loaded = load_period(sources, period, None)
    names = list(cars) if cars else loaded.cars
    if not names:
        raise ReportError(f"no car messages between {period.first} and {period.last} in {', '.join(map(str, sources))}")
    missing = [c for c in names if c not in loaded.cars]
    if missing:
        raise ReportError(f"no messages of car(s) {', '.join(missing)} in the period (found: {', '.join(loaded.cars)})")
    figures = [car_figures(c, loaded.messages, period, targets) for c in names]
    engine = write_fleet_figures(figures, out, fmt, _source_note(loaded))
    return WrittenReport(out, fmt, engine, tuple(figures), loaded)


def write_fleet_figures(
    figures: Sequence[CarFigures], out: Path, fmt: str = "html", source_note: str = "", extra_sections: str = ""
) -> str | None:
    """Render the fleet report of figures already computed (here, or from the fleet service's store)
    and write it atomically; returns the PDF engine used, if any."""
    lab = Labels()
    html = render_fleet_html(figures, lab, source_note=source_note, extra_sections=extra_sections)
    return _write(html, out, fmt, figures, True, lab)
