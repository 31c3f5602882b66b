"""What a report is asked for (`Period`, `ContractTargets`) and the records it reads from upstream
messages: fault cases, maintenance visits and trips. Parsing only; the judgements and the figures
built on these are in figures.py.

Every reader is tolerant the way a subscriber must be: a field that is missing, of the wrong type or
not finite reads as None, and a message without its own time is skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

from .source import parse_ts
from .workhours import WorkCalendar

__all__ = [
    "ContractTargets",
    "Period",
    "FaultCase",
    "Visit",
    "TripPoint",
    "KIT_FAULTS",
    "RQ_UNJUDGED",
    "finite_number",
    "fault_cases",
    "visits_of",
    "trips_of",
]

KIT_FAULTS = frozenset({"sensor_fault", "board_offline"})
"""Faults of the monitoring kit itself: they limit what the report can see, not what the car did."""


@dataclass(frozen=True, slots=True)
class ContractTargets:
    """The maintenance contract's measurable promises, with their usual values in China."""

    response_s: float = 30 * 60  # technician on site within 30 minutes of a fault call
    repair_half_day_s: float = 4 * 3600  # "half a working day": 4 hours of the calendar's working time
    repair_half_day_share: float = 0.60  # at least 60 % of repairs within half a working day
    repair_max_s: float = 3 * 86400  # no repair takes longer than 3 days (clock or working: calendar)
    maintenance_min_s: float = 40 * 60  # a maintenance visit lasts at least 40 minutes
    maintenance_interval_max_s: float = 15 * 86400  # TSG T5002-2017: maintenance every 15 days
    response_lookback_s: float = 86400.0  # a visit more than a day after a fault did not answer it
    # GB/T 10058-2009 3.3.5 ride-quality limits, as mg (0.30 / 0.20 m/s^2 vertical, 0.20 / 0.15 horizontal)
    z_max_pp_limit_mg: float = 30.6
    z_a95_pp_limit_mg: float = 20.4
    xy_max_pp_limit_mg: float = 20.4
    xy_a95_pp_limit_mg: float = 15.3
    level_tolerance_mm: float = 20.0  # GB 7588 levelling accuracy +-20 mm
    utc_offset_h: float = 8.0  # local days (China Standard Time)
    calendar: WorkCalendar = WorkCalendar()  # the site's working hours (workhours.py)

    @property
    def repair_max_days(self) -> int:
        return round(self.repair_max_s / 86400)

    def repair_working_s(self, raised_ts: float, end_ts: float) -> float:
        """Working time between a raise and a clear (or the end of the data)."""
        return self.calendar.working_s(raised_ts, end_ts, self.utc_offset_h)

    def repair_over_max(self, raised_ts: float, end_ts: float) -> bool:
        if self.calendar.repair_max_days == "calendar":
            return end_ts - raised_ts > self.repair_max_s
        return end_ts > self.calendar.repair_deadline(raised_ts, self.repair_max_days, self.utc_offset_h)


@dataclass(frozen=True, slots=True)
class Period:
    """Local calendar days `first`..`last` inclusive, in a fixed UTC offset."""

    first: date
    last: date
    utc_offset_h: float = 8.0

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"period ends ({self.last}) before it starts ({self.first})")

    @property
    def start_ts(self) -> float:
        tz = timezone(timedelta(hours=self.utc_offset_h))
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=tz).timestamp()

    @property
    def end_ts(self) -> float:
        return self.start_ts + self.n_days * 86400

    @property
    def n_days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def days(self) -> list[str]:
        return [(self.first + timedelta(days=i)).isoformat() for i in range(self.n_days)]

    def day_of(self, ts: float) -> str:
        """Local YYYY-MM-DD of unix time `ts`."""
        return datetime.fromtimestamp(ts + self.utc_offset_h * 3600, tz=timezone.utc).date().isoformat()

    def contains(self, ts: float) -> bool:
        return self.start_ts <= ts < self.end_ts


@dataclass(frozen=True, slots=True)
class FaultCase:
    """One fault instance, raised and (maybe) cleared, with the contract judgement when judged."""

    type: str
    raised_ts: float
    cleared_ts: float | None  # None: still open at the end of the data
    gbt24476_code: int | None
    response_s: float | None = None  # None: no response recorded
    repair_s: float | None = None  # raised -> cleared, or raised -> end of data when open
    repair_working_s: float | None = None  # the same in the calendar's working time (judged faults)
    # What the first sign of a response was: the daemon's (`inspection`, `rescue_move`), or the
    # report's own finding: `on_site` (raised during a visit), `visit` (a later visit's start).
    response_sign: str | None = None
    alarm_ts: float | None = None  # entrapment: first alarm-button press of the trapped passengers
    release_ts: float | None = None  # entrapment: the door opened (or the car was seen empty)
    released_at_landing: bool | None = None  # entrapment: that door opening was in a door zone
    emptied_ts: float | None = None  # entrapment: presence went off after the release
    floor: str | None = None  # where it was raised: the landing's name (B1, G...) or number, if known
    occupied: bool | None = None  # power loss: someone was inside during the outage
    judged: bool = False
    response_late: bool = False  # counts against the response target (late, or no response recorded)
    no_response: bool = False  # judged, and nobody was seen answering it
    self_cleared: bool = False  # judged, no response, and it cleared by itself (a SELF_CLEARING type)
    repair_within_half_day: bool = False
    repair_over_max: bool = False

    @property
    def open(self) -> bool:
        return self.cleared_ts is None

    @property
    def kit(self) -> bool:
        return self.type in KIT_FAULTS


@dataclass(frozen=True, slots=True)
class Visit:
    """One maintenance visit (inspection switch periods joined by the daemon)."""

    start_ts: float
    end_ts: float
    duration_s: float
    inspection_runs: int
    too_short: bool


@dataclass(frozen=True, slots=True)
class TripPoint:
    """What the plots need of one trip."""

    start_ts: float
    z_a95_pp_mg: float | None
    z_max_pp_mg: float | None
    xy_a95_pp_mg: float | None  # the worse horizontal axis
    leveling_status: str | None
    offset_mm: float | None
    rq_unjudged: str | None = None  # why no ride-quality figures: one of RQ_UNJUDGED's keys; None if judged



# -- messages -> records -------------------------------------------------------------------------


def finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fault_cases(events: Iterable[Mapping[str, Any]], data_end_ts: float) -> list[FaultCase]:
    """Pair `event` messages into fault instances (kit faults included), by raise time.

    A cleared message names its raise (`raised_ts`, else `event_ts - duration_s`); a cleared
    message whose raise is not in the data still gives a case. An unmatched raise is open.
    """
    raised: dict[tuple[str, int], Mapping[str, Any]] = {}
    cleared: dict[tuple[str, int], tuple[float, Mapping[str, Any]]] = {}
    for m in events:
        ftype = m.get("type")
        t = parse_ts(m.get("event_ts"))
        if not isinstance(ftype, str) or t is None:
            continue
        if m.get("state") == "raised":
            raised[(ftype, round(t * 1000))] = m
        elif m.get("state") == "cleared":
            r = parse_ts(m.get("raised_ts"))
            if r is None and (d := finite_number(m.get("duration_s"))) is not None:
                r = t - d
            if r is None:
                # Unknown raise: attach to the latest earlier open raise of the type, if any.
                earlier = [k for k in raised if k[0] == ftype and k[1] <= t * 1000 and k not in cleared]
                r = max(earlier)[1] / 1000 if earlier else t
            cleared[(ftype, round(r * 1000))] = (t, m)
    cases = []
    for key in sorted(set(raised) | set(cleared), key=lambda k: (k[1], k[0])):
        ftype, r_ms = key
        r = r_ms / 1000
        c = cleared.get(key)
        src = c[1] if c else raised[key]
        code = src.get("gbt24476_code")
        detail = c[1].get("detail") if c else None
        detail = detail if isinstance(detail, Mapping) else {}
        sign = c[1].get("response_sign") if c else None
        landing = detail.get("released_at_landing")
        r_detail = raised[key].get("detail") if key in raised else None
        r_detail = r_detail if isinstance(r_detail, Mapping) else {}
        floor = r_detail.get("floor_label", r_detail.get("floor"))
        occupied = detail.get("occupied", r_detail.get("occupied"))
        cases.append(
            FaultCase(
                type=ftype,
                raised_ts=r,
                cleared_ts=c[0] if c else None,
                gbt24476_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
                response_s=finite_number(c[1].get("response_s")) if c else None,
                repair_s=(c[0] - r) if c else max(0.0, data_end_ts - r),
                response_sign=sign if isinstance(sign, str) else None,
                alarm_ts=parse_ts(detail.get("alarm_ts")),
                release_ts=parse_ts(detail.get("release_ts")),
                released_at_landing=landing if isinstance(landing, bool) else None,
                emptied_ts=parse_ts(detail.get("emptied_ts")),
                floor=str(floor) if isinstance(floor, (str, int)) and not isinstance(floor, bool) else None,
                occupied=occupied if isinstance(occupied, bool) else None,
            )
        )
    return cases


def visits_of(messages: Iterable[Mapping[str, Any]], targets: ContractTargets) -> list[Visit]:
    """Maintenance visits by start; `too_short` judged here against the contract minimum."""
    out = []
    for m in messages:
        s, e = parse_ts(m.get("start_ts")), parse_ts(m.get("end_ts"))
        if s is None:
            continue
        d = finite_number(m.get("duration_s"))
        if d is None:
            d = (e - s) if e is not None else 0.0
        if e is None:
            e = s + d
        runs = m.get("inspection_runs")
        # A visit the data ended inside (`in_progress`) has no known length to judge.
        short = d < targets.maintenance_min_s and m.get("in_progress") is not True
        out.append(Visit(s, e, d, runs if isinstance(runs, int) else 0, short))
    return sorted(out, key=lambda v: v.start_ts)


RQ_UNJUDGED = {
    "one_floor": ("单层运行", "one-floor trip"),
    "short": ("运行过短", "too short to judge"),
    "no_vib": ("无振动数据", "no vibration data"),
}
"""Why a trip has no ride-quality figures (zh, en). ISO 18738-1 judges vibration over the
constant-speed stretch, which a one-floor or other short trip never reaches; `no_vib`: the trip's
VIB blocks were lost on the link or never sent."""


def trips_of(messages: Iterable[Mapping[str, Any]]) -> list[TripPoint]:
    out = []
    for m in messages:
        s = parse_ts(m.get("start_ts"))
        if s is None:
            continue
        rq = m.get("ride_quality") if isinstance(m.get("ride_quality"), Mapping) else {}
        lv = m.get("leveling") if isinstance(m.get("leveling"), Mapping) else {}
        xy = [v for v in (finite_number(rq.get("x_a95_pp_mg")), finite_number(rq.get("y_a95_pp_mg"))) if v is not None]
        z_a95 = finite_number(rq.get("z_a95_pp_mg"))
        unjudged = None
        if not isinstance(m.get("ride_quality"), Mapping):
            unjudged = "no_vib"
        elif z_a95 is None and not xy:
            unjudged = "one_floor" if m.get("floors") == 1 else "short"
        status = lv.get("status")
        out.append(
            TripPoint(
                start_ts=s,
                z_a95_pp_mg=z_a95,
                z_max_pp_mg=finite_number(rq.get("z_max_pp_mg")),
                xy_a95_pp_mg=max(xy) if xy else None,
                leveling_status=status if isinstance(status, str) else None,
                offset_mm=finite_number(lv.get("offset_mm")),
                rq_unjudged=unjudged,
            )
        )
    return sorted(out, key=lambda t: t.start_ts)
