"""The lift registry: which cars the district insures, who maintains them and what they promise.

Imported from a file the district keeps (TOML `[[lift]]` tables or CSV with a header row), and the
file is the whole registry: an import replaces it in one transaction. Every code identifies one
lift, so a car id, registration code or 96333 rescue code that appears twice refuses the whole
file, naming both lines: a typo must not silently merge two lifts' records.

Fields (CSV header or TOML keys): car, registration_code, rescue_code, address, building,
maintenance_company, insurer, response_min, repair_h, visit_min_min, enrolled (YYYY-MM-DD).
Contract targets are optional and default to the usual Chinese contract (on site within 30 min,
repaired within 3 days, visits of at least 40 min), the car report's defaults.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

from liftwatch.errors import LiftwatchError

from .store import Lift

__all__ = ["RegistryError", "load_registry", "parse_registry"]

_REQUIRED = ("car", "registration_code", "rescue_code", "address", "building", "maintenance_company",
             "insurer", "enrolled")
_TARGETS = {"response_min": (60.0, 30.0), "repair_h": (3600.0, 72.0), "visit_min_min": (60.0, 40.0)}
"""Optional contract targets: field -> (seconds per unit, default in units)."""
_KNOWN = frozenset(_REQUIRED) | frozenset(_TARGETS)
_CAR = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # the upstream envelope's car id (a topic level)
_RESCUE = re.compile(r"^\d{5,8}$")  # 96333 plates carry a short number code


class RegistryError(LiftwatchError, ValueError):
    """The registry file is refused; `line` is where (1-based; 0 for the file as a whole)."""

    def __init__(self, path: Path | str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


def load_registry(path: Path) -> list[Lift]:
    """Parse a registry file (`.toml` or `.csv`); raises RegistryError naming the line at fault."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise RegistryError(path, 0, f"cannot read: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise RegistryError(path, 0, f"not UTF-8 text: {err}") from err
    return parse_registry(text, path, "toml" if path.suffix.lower() == ".toml" else "csv")


def parse_registry(text: str, path: Path | str = "<registry>", fmt: str = "csv") -> list[Lift]:
    entries = _toml_entries(text, path) if fmt == "toml" else _csv_entries(text, path)
    if not entries:
        raise RegistryError(path, 0, "no lifts in the registry")
    lifts: list[Lift] = []
    first_line: dict[tuple[str, str], int] = {}
    for line, entry in entries:
        lift = _lift(entry, path, line)
        for field in ("car", "registration_code", "rescue_code"):
            key = (field, getattr(lift, field))
            if key in first_line:
                raise RegistryError(path, line, f"duplicate {field} {key[1]!r} (first on line {first_line[key]})")
            first_line[key] = line
        lifts.append(lift)
    return lifts


def _csv_entries(text: str, path: Path | str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise RegistryError(path, 0, "empty file")
    header = [h.strip() for h in reader.fieldnames]
    unknown = [h for h in header if h not in _KNOWN]
    if unknown:
        raise RegistryError(path, 1, f"unknown column(s) {', '.join(unknown)} (known: {', '.join(sorted(_KNOWN))})")
    entries = []
    for row in reader:
        if row.get(None):  # more cells than the header has columns
            raise RegistryError(path, reader.line_num, f"{len(header) + len(row[None])} cells, header has {len(header)}")
        cells = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if any(cells.values()):
            entries.append((reader.line_num, {k: v for k, v in cells.items() if v != ""}))
    return entries


def _toml_entries(text: str, path: Path | str) -> list[tuple[int, dict[str, Any]]]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"line (\d+)", str(err))
        line = int(m.group(1)) if m else 0
        raise RegistryError(path, line, f"not TOML: {err}") from None
    extra = sorted(set(doc) - {"lift"})
    if extra:
        raise RegistryError(path, 0, f"unknown table(s) {', '.join(extra)}: lifts go in [[lift]] tables")
    tables = doc.get("lift", [])
    if not isinstance(tables, list):
        raise RegistryError(path, 0, "`lift` must be an array of tables ([[lift]])")
    # tomllib keeps no positions: the n-th [[lift]] header is where the n-th entry starts.
    headers = [i for i, raw in enumerate(text.splitlines(), start=1) if re.match(r"^\s*\[\[\s*lift\s*\]\]", raw)]
    for i, entry in enumerate(tables):
        unknown = sorted(set(entry) - _KNOWN)
        if unknown:
            raise RegistryError(path, headers[i] if i < len(headers) else 0, f"unknown key(s) {', '.join(unknown)}")
    return [(headers[i] if i < len(headers) else 0, entry) for i, entry in enumerate(tables)]


def _lift(entry: dict[str, Any], path: Path | str, line: int) -> Lift:
    missing = [f for f in _REQUIRED if f not in entry]
    if missing:
        raise RegistryError(path, line, f"missing {', '.join(missing)}")
    text = {f: str(entry[f]).strip() for f in _REQUIRED if f != "enrolled"}
    if not _CAR.match(text["car"]):
        raise RegistryError(path, line, f"car {text['car']!r} is not an upstream car id ([A-Za-z0-9_.:-], 1-64)")
    if not _RESCUE.match(text["rescue_code"]):
        raise RegistryError(path, line, f"rescue_code {text['rescue_code']!r} is not a 5-8 digit 96333 code")
    for f, value in text.items():
        if not value:
            raise RegistryError(path, line, f"{f} is empty")
    enrolled = entry["enrolled"]
    if not isinstance(enrolled, date):
        try:
            enrolled = date.fromisoformat(str(enrolled))
        except ValueError:
            raise RegistryError(path, line, f"enrolled {enrolled!r} is not a date like 2019-03-01") from None
    targets = {}
    for f, (unit_s, default) in _TARGETS.items():
        value = entry.get(f, default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RegistryError(path, line, f"{f} {value!r} is not a number") from None
        if not 0 < number < 1e6:
            raise RegistryError(path, line, f"{f} {value!r} must be a positive number")
        targets[f] = number * unit_s
    return Lift(
        car=text["car"],
        registration_code=text["registration_code"],
        rescue_code=text["rescue_code"],
        address=text["address"],
        building=text["building"],
        maintenance_company=text["maintenance_company"],
        insurer=text["insurer"],
        response_s=targets["response_min"],
        repair_s=targets["repair_h"],
        visit_min_s=targets["visit_min_min"],
        enrolled_on=enrolled.isoformat(),
    )
