"""`liftwatch report` (one car's record for a period) and `liftwatch fleet-report` (cars by risk).

Both read the upstream messages the daemon produced: `--source` files (JSON Lines journal and/or
SQLite outbox, repeatable), or the two files named in the daemon's `--config`. Exit status 0 on
success, 2 for a usage problem (bad date, unknown car, unreadable source), with one line saying
what to change.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the report stack (matplotlib) loads only when a report command runs
    from .report.figures import ContractTargets, Period

__all__ = ["register"]

_DEFAULT_STATE_DIR = Path("/var/lib/liftwatch")
# What an --out suffix writes; any other suffix is refused (a .docx holding HTML misleads its reader).
_FORMAT_OF_SUFFIX = {".html": "html", ".htm": "html", ".pdf": "pdf"}


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-11-01, got {text!r}") from err


def _common(p: argparse.ArgumentParser) -> None:
    for flag, dest in (("--from", "first"), ("--to", "last")):
        p.add_argument(flag, dest=dest, type=_date, required=True, metavar="YYYY-MM-DD",
                       help=f"{dest} local day of the period (inclusive)")
    p.add_argument(
        "--format",
        choices=("html", "pdf"),
        default=None,
        help="output format (default: from --out's suffix, .html or .pdf; else html)",
    )
    p.add_argument("--out", type=Path, default=None, help="output file (default: derived from car and period)")
    p.add_argument(
        "--source",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="upstream journal (.jsonl) or outbox (.sqlite); repeatable; ids are de-duplicated",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="daemon TOML config: read its journal and outbox, and take the contract minimum, "
        "ride-quality limits and local UTC offset from its analytics settings",
    )
    p.add_argument(
        "--utc-offset-h",
        type=float,
        default=None,
        help="local time zone of the days (default: the config's, else 8 = China Standard Time)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="one car's operation and maintenance record for a period (HTML/PDF)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--car", required=True, help="car id as in the upstream messages")
    _common(p)
    p.set_defaults(func=_run_report)
    f = subparsers.add_parser(
        "fleet-report",
        help="cars ranked by risk for the insurer (HTML/PDF)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument("--car", action="append", default=[], help="limit to these cars (repeatable; default: all)")
    _common(f)
    f.set_defaults(func=_run_fleet)


def _resolve(args: argparse.Namespace, stem: str) -> tuple[list[Path], Period, ContractTargets, Path, str]:
    """Sources, period, targets, output path and format from the command line (and --config)."""
    from .report.figures import ContractTargets, Period

    sources = list(args.source)
    targets_kw: dict[str, Any] = {}
    if args.config is not None:
        from .config import load_config

        cfg = load_config(args.config)
        sources += [p for p in (cfg.upstream.journal_path, cfg.outbox_path) if p.exists()]
        # One car: its board's own analytics settings (a [[boards]] override), else the site's.
        car = getattr(args, "car", None)
        board = next((b for b in cfg.boards if isinstance(car, str) and b.car == car), None)
        a = board.analytics if board is not None else cfg.analytics
        targets_kw = {
            "calendar": board.calendar if board is not None else cfg.calendar,
            "maintenance_min_s": a.maintenance_min_s,
            "response_lookback_s": a.response_lookback_s,
            "z_max_pp_limit_mg": a.vib_z_max_pp_limit_mg,
            "z_a95_pp_limit_mg": a.vib_z_a95_pp_limit_mg,
            "xy_max_pp_limit_mg": a.vib_xy_max_pp_limit_mg,
            "xy_a95_pp_limit_mg": a.vib_xy_a95_pp_limit_mg,
            "level_tolerance_mm": a.level_tolerance_mm,
            "utc_offset_h": a.day_utc_offset_h,
        }
    if not sources:
        sources = [
            p for p in (_DEFAULT_STATE_DIR / "upstream.jsonl", _DEFAULT_STATE_DIR / "outbox.sqlite") if p.exists()
        ]
    if not sources:
        raise ValueError("no source: give --source FILE (journal .jsonl or outbox .sqlite) or --config")
    if args.utc_offset_h is not None:
        targets_kw["utc_offset_h"] = args.utc_offset_h
    targets = ContractTargets(**targets_kw)
    period = Period(args.first, args.last, targets.utc_offset_h)
    fmt = args.format
    if args.out is not None:
        by_suffix = _FORMAT_OF_SUFFIX.get(args.out.suffix.lower())
        if by_suffix is None:
            raise ValueError(f"--out {args.out}: a report is written as .html or .pdf, "
                             f"not {args.out.suffix or 'a file without a suffix'}")
        if fmt is not None and fmt != by_suffix:
            raise ValueError(f"--format {fmt} does not match --out {args.out}")
        fmt = by_suffix
    fmt = fmt or "html"
    out = args.out or Path(f"{stem}-{args.first}-{args.last}.{fmt}")
    return sources, period, targets, out, fmt


def _run(args: argparse.Namespace, fleet: bool) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from .report.source import ReportSourceError
    from .report.writer import ReportError, write_car_report, write_fleet_report

    try:
        stem = "fleet-report" if fleet else f"report-{args.car}"
        sources, period, targets, out, fmt = _resolve(args, stem)
        if fleet:
            written = write_fleet_report(sources, period, out, fmt, cars=args.car or None, targets=targets)
        else:
            written = write_car_report(sources, args.car, period, out, fmt, targets=targets)
    except (ReportError, ReportSourceError, ValueError) as err:
        print(f"liftwatch {'fleet-report' if fleet else 'report'}: {err}", file=sys.stderr)
        return 2
    engine = f" ({written.pdf_engine})" if written.pdf_engine else ""
    for f in written.cars:  # results, on stdout: stderr is for what went wrong
        print(f"{f.car}: {f.verdict.en} / {f.verdict.zh}")
    print(f"wrote {written.path}{engine}")
    return 0


def _run_report(args: argparse.Namespace) -> int:
    return _run(args, fleet=False)


def _run_fleet(args: argparse.Namespace) -> int:
    return _run(args, fleet=True)
