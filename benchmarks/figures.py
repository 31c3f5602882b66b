"""How a benchmark reports: a table of its figures, and with ``--json`` one JSON object line last."""

from __future__ import annotations

import json
from typing import Any


def print_figures(figures: dict[str, Any], as_json: bool) -> None:
    """One figure a line, names aligned; then the JSON line CI or a report parses."""
    width = max(len(k) for k in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    if as_json:
        print(json.dumps(figures))
