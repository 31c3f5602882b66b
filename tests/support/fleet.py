"""Fleet test facts: valid upstream messages of any car, built through the daemon's own envelope."""

from __future__ import annotations

from typing import Any

from liftwatch.edge_daemon.envelope import make_message, utc_iso

T0 = 1_764_000_000.0  # 2025-11-24 16:00 UTC


def event(car: str, ftype: str, state: str, t: float, site: str = "hz-gongshu-1", key: str | None = None,
          raised_t: float | None = None, **extra: Any) -> dict[str, Any]:
    """A fault `event` (raised, or cleared with its raise `raised_t`), schema-valid."""
    fields: dict[str, Any] = {"type": ftype, "state": state, "event_ts": utc_iso(t), "gbt24476_code": None,
                              "detail": {}}
    if state == "cleared":
        r = t - 600 if raised_t is None else raised_t
        fields.update(raised_ts=utc_iso(r), duration_s=t - r, response_s=None, repair_s=None)
    fields.update(extra)
    return make_message("event", site, car, f"b-{car}", utc_iso(t), key or f"{ftype}/{state}/{t}", fields)


def visit(car: str, start: float, minutes: float, site: str = "hz-gongshu-1") -> dict[str, Any]:
    """A `maintenance` visit of `minutes`."""
    fields = {"start_ts": utc_iso(start), "end_ts": utc_iso(start + 60 * minutes), "duration_s": 60.0 * minutes,
              "inspection_runs": 2, "too_short": minutes < 40, "faults_responded": []}
    return make_message("maintenance", site, car, f"b-{car}", utc_iso(start + 60 * minutes), f"visit/{start}", fields)
