"""The figures of a car's report, computed from upstream messages by pure functions.

Nothing here draws or formats: `car_figures()` turns messages into a `CarFigures` that the HTML,
the PDF and the tests read. Every rule an insurer could dispute is written down here and in
docs/report.md, with its contract target in `ContractTargets`:

- Judged faults (需响应故障): faults raised in the period that a technician must answer: every
  entrapment, and any other elevator fault still active when the response target (30 min) had
  passed. A door held open by a passenger for two minutes is listed, not judged. Kit faults
  (`sensor_fault`, `board_offline`) say how well the car was watched, not how it was kept, so
  they are never judged.
- Response time: raised -> the first sign of a response. The daemon's own `response_s` wins when it
  sent one (`response_sign`: the inspection switch, or a rescue-speed move while the fault was
  open); else 0 when raised during a maintenance visit, else the start of the first visit at or
  after the raise within `response_lookback_s`.
- No response recorded: a judged fault with none of these counts against the response target
  (shown in red, never "met"), unless it is one that may clear by itself (`SELF_CLEARING`: door,
  vibration, leveling, position and stopped-outside-zone faults, which a controller or passenger
  can end) and it did clear; an entrapment never clears by itself. A fault still open at the end
  of the data within the response target is not judged on its response yet.
- Repair time: raised -> cleared (normal service resumed). Targets: at least 60 % within half a
  working day (4 hours of the site's working calendar, `workhours.WorkCalendar`: weekly periods,
  holidays, make-up days), none beyond 3 days (3 x 24 h, or 3 working days when the calendar says
  `repair_max_days = "working"`). A fault still open at the end of the data counts with the time
  elapsed so far.
- Availability: share of the period not inside an out-of-service fault (`OUT_OF_SERVICE`); for a
  period the data do not cover to its end (still running), share of the days covered.
- Maintenance visits shorter than 40 minutes are flagged, and so is a gap over 15 days between
  visits (TSG T5002: half-monthly maintenance).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Iterable, Mapping, Sequence

from .records import (  # the records are re-exported: figures is the report's one import for callers
    KIT_FAULTS,
    RQ_UNJUDGED,
    ContractTargets,
    FaultCase,
    Period,
    TripPoint,
    Visit,
    fault_cases,
    finite_number,
    trips_of,
    visits_of,
)
from . import records as _records
from .source import parse_ts

__all__ = [  # the records' names, re-exported, then this module's own
    *_records.__all__,
    "DayFigures",
    "Severity",
    "Finding",
    "Verdict",
    "CarFigures",
    "PASSENGER_SIGNALS",
    "FAULT_NAMES_ZH",
    "OUT_OF_SERVICE",
    "SELF_CLEARING",
    "judge_faults",
    "union_s",
    "linear_slope",
    "dropped_in_period",
    "day_figures",
    "verdict_of",
    "car_figures",
]

PASSENGER_SIGNALS = frozenset({"door_open_too_long", "alarm_button"})
"""Signals passengers cause as often as faults do (movers holding the door, a child at the alarm
button). Listed, never judged: when they hide a real fault, that fault is detected and judged on its
own (`door_reopen_loop` for a door that cannot close, `entrapment` for someone trapped)."""

OUT_OF_SERVICE = frozenset(
    {
        "entrapment",
        "stopped_outside_door_zone",
        "moving_with_door_open",
        "overspeed",
        "floor_position_lost",
        "door_reopen_loop",
        "power_loss",
        "overtravel_top",
        "overtravel_bottom",
        "door_fails_to_open",
    }
)
"""Fault types during which passengers cannot use the car (the safety chain has stopped it, or the
door cannot close). Vibration and leveling faults degrade the ride but the car still serves."""

SELF_CLEARING = frozenset(
    {
        "stopped_outside_door_zone",  # the controller re-levels after a safety-chain reset
        "door_open_too_long",  # a passenger lets go of the door
        "door_reopen_loop",  # the obstruction is taken away
        "abnormal_vibration",  # judged over trips: a load or weather effect passes
        "leveling_fault",  # judged over stops: a load effect passes
        "alarm_button",  # released
        "floor_position_lost",  # re-anchored once the car spans the building again
        "power_loss",  # the supply comes back: an outage is the utility's, not the maintainer's
    }
)
"""Faults whose cause can go away with nobody attending. One that cleared before anyone was seen
answering it "cleared by itself" and does not count against the response target; every other fault
(an entrapment above all) without a recorded response does."""

FAULT_NAMES_ZH = {
    "entrapment": "困人",
    "stopped_outside_door_zone": "非平层停梯",
    "moving_with_door_open": "开门走梯",
    "door_open_too_long": "长时间开门",
    "door_reopen_loop": "反复开关门",
    "abnormal_vibration": "运行振动异常",
    "leveling_fault": "平层异常",
    "overspeed": "超速",
    "alarm_button": "报警按钮",
    "floor_position_lost": "楼层位置丢失",
    "sensor_fault": "传感器故障",
    "board_offline": "监测设备离线",
    "power_loss": "停电",
    "overtravel_top": "冲顶",
    "overtravel_bottom": "蹲底",
    "door_fails_to_open": "开门故障（有人）",
}
"""Chinese names of the upstream fault types; an unknown type is shown by its upstream name."""


@dataclass(frozen=True, slots=True)
class DayFigures:
    """One local day of the period; None where the day has no data for a figure."""

    day: str
    trips: int | None
    door_cycles: int | None
    door_reopenings: int | None
    run_hours: float | None
    z_a95_p50_mg: float | None
    z_a95_p95_mg: float | None
    z_max_pp_mg: float | None
    offset_p95_mm: float | None
    off_level_stops: int | None
    stops: int | None


class Severity(str, Enum):
    OK = "ok"
    ATTENTION = "attention"  # worth a look: the car is degrading, or passengers were affected
    BREACH = "breach"  # a contract target was missed


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    zh: str
    en: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """Worst severity and the findings behind it; the summary page's last line."""

    severity: Severity
    findings: tuple[Finding, ...]

    @property
    def zh(self) -> str:
        return {Severity.OK: "合格", Severity.ATTENTION: "需关注", Severity.BREACH: "未达合同要求"}[self.severity]

    @property
    def short_en(self) -> str:
        return {Severity.OK: "compliant", Severity.ATTENTION: "attention", Severity.BREACH: "targets missed"}[
            self.severity
        ]

    @property
    def en(self) -> str:
        return {
            Severity.OK: "Compliant",
            Severity.ATTENTION: "Needs attention",
            Severity.BREACH: "Contract targets missed",
        }[self.severity]


@dataclass(frozen=True, slots=True)
class CarFigures:
    """Everything the report says about one car over one period."""

    car: str
    site: str | None
    boards: tuple[str, ...]
    period: Period
    targets: ContractTargets
    data_end_ts: float  # min(period end, last message): open faults are judged up to here
    availability: float | None  # 0..1; None without any message in the period
    downtime_s: float
    offline_s: float
    trips_total: int
    trips_per_day: float  # over the observed days
    observed_days: int  # days from the period start to the end of the data (all, for a past period)
    faults: tuple[FaultCase, ...]  # raised in the period, kit faults included, by raise time
    visits: tuple[Visit, ...]  # started in the period
    trips: tuple[TripPoint, ...]  # started in the period
    days: tuple[DayFigures, ...]
    entrapments: int
    entrapment_s_max: float | None
    judged_faults: int
    late_responses: int
    unanswered: int  # judged faults with no response recorded (counted in late_responses)
    response_s_max: float | None
    repairs_judged: int
    repairs_within_half_day: int
    repairs_over_max: int
    short_visits: int
    visit_gap_s_max: float | None
    maintenance_minutes: float
    rq_trips_judged: int
    rq_trips_over_limit: int
    z_a95_p95_mg: float | None
    z_max_pp_mg: float | None
    z_a95_trend_mg_per_30d: float | None
    leveling_stops: int
    off_level_stops: int
    offset_p95_mm: float | None
    door_cycles: int | None
    door_reopenings: int | None
    verdict: Verdict
    dropped: dict[str, int] = field(default_factory=dict)  # kind -> messages the Pi's outbox dropped in the period
    rq_unjudged: dict[str, int] = field(default_factory=dict)  # RQ_UNJUDGED reason -> trips without figures
    notes: tuple[str, ...] = field(default=())

    @property
    def repair_half_day_share(self) -> float | None:
        return self.repairs_within_half_day / self.repairs_judged if self.repairs_judged else None


# -- judgements ----------------------------------------------------------------------------------


def judge_faults(
    cases: Sequence[FaultCase], visits: Sequence[Visit], targets: ContractTargets, data_end_ts: float
) -> list[FaultCase]:
    """Mark the judged faults and their response and repair verdicts (rules: module docstring)."""
    out = []
    starts = sorted(v.start_ts for v in visits)
    for c in cases:
        on_site = any(v.start_ts <= c.raised_ts <= v.end_ts for v in visits)
        active_at_target = c.open or (c.cleared_ts - c.raised_ts) >= targets.response_s
        judged = not c.kit and c.type not in PASSENGER_SIGNALS and (c.type == "entrapment" or active_at_target)
        if not judged:
            out.append(c)
            continue
        response, sign = c.response_s, c.response_sign
        if response is None and on_site:
            response, sign = 0.0, "on_site"  # raised while a technician was already at the car
        if response is None:
            later = [s for s in starts if c.raised_ts <= s <= c.raised_ts + targets.response_lookback_s]
            response, sign = (later[0] - c.raised_ts, "visit") if later else (None, None)
        self_cleared = response is None and not c.open and c.type in SELF_CLEARING
        # Still open and still within the target: its response cannot be judged yet.
        pending = response is None and c.open and data_end_ts - c.raised_ts <= targets.response_s
        no_response = response is None and not self_cleared and not pending
        late = no_response or (response is not None and response > targets.response_s)
        repair = c.repair_s if c.repair_s is not None else 0.0
        working = targets.repair_working_s(c.raised_ts, c.raised_ts + repair)
        out.append(
            replace(
                c,
                response_s=response,
                response_sign=sign if response is not None else None,
                no_response=no_response,
                self_cleared=self_cleared,
                repair_s=repair,
                judged=True,
                response_late=late,
                repair_working_s=working,
                repair_within_half_day=not c.open and working <= targets.repair_half_day_s,
                repair_over_max=targets.repair_over_max(c.raised_ts, c.raised_ts + repair),
            )
        )
    return out


def union_s(intervals: Iterable[tuple[float, float]], lo: float, hi: float) -> float:
    """Total length of the union of [a, b) intervals clipped to [lo, hi)."""
    total = 0.0
    cur_a = cur_b = None
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b <= a:
            continue
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def linear_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope dy/dx; None with fewer than 3 points or no spread in x."""
    if len(xs) < 3:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def _quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated quantile (numpy's default), without numpy for a handful of values."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    i = int(math.floor(pos))
    j = min(i + 1, len(s) - 1)
    return s[i] + (s[j] - s[i]) * (pos - i)


def _daily_get(record: Mapping[str, Any] | None, *path: str) -> Any:
    cur: Any = record
    for name in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(name)
    return cur


def dropped_in_period(statuses: Iterable[Mapping[str, Any]], site: str | None, period: Period) -> dict[str, int]:
    """Messages the site's Pi(s) dropped (outbox budget) during the period, by kind.

    `status` drop counts are cumulative per Pi, so the period's drops are the last count before
    its end minus the last count before its start (the first one inside it when none precedes).
    """
    by_pi: dict[str, list[tuple[float, Mapping[str, Any]]]] = {}
    for m in statuses:
        t = parse_ts(m.get("ts"))
        if t is None or m.get("site") != site or not isinstance(m.get("drops"), Mapping):
            continue
        by_pi.setdefault(str(m.get("pi") or m.get("board") or ""), []).append((t, m["drops"]))
    out: dict[str, int] = {}

    def totals(drops: Mapping[str, Any]) -> dict[str, int]:
        acc: dict[str, int] = {}
        for per_kind in drops.values():
            if isinstance(per_kind, Mapping):
                for kind, n in per_kind.items():
                    if isinstance(n, int) and not isinstance(n, bool):
                        acc[kind] = acc.get(kind, 0) + n
        return acc

    for seq in by_pi.values():
        seq.sort(key=lambda x: x[0])
        inside = [d for t, d in seq if t < period.end_ts]
        before = [d for t, d in seq if t < period.start_ts]
        if not inside:
            continue
        end, start = totals(inside[-1]), totals(before[-1] if before else inside[0])
        for kind, n in end.items():
            if n - start.get(kind, 0) > 0:
                out[kind] = out.get(kind, 0) + n - start.get(kind, 0)
    return out


def _daily_rank(record: Mapping[str, Any] | None) -> float:
    """Order of preference among a day's records: complete > later partial > earlier partial."""
    if record is None:
        return -math.inf
    if not record.get("partial"):
        return math.inf
    until = parse_ts(record.get("until_ts"))
    return until if until is not None else -1e18  # a partial of unknown extent loses to any other


def day_figures(
    period: Period,
    trips: Sequence[TripPoint],
    dailies: Mapping[str, Mapping[str, Any]],
    door_cycles: Iterable[Mapping[str, Any]] = (),
) -> list[DayFigures]:
    """Per-day figures. The daily record gives the day's totals (it survives when the outbox
    budget forced individual trips out); the trips give the ride-quality and leveling detail;
    `door_cycle` messages (sent only when the daemon is asked to) stand in for a missing daily."""
    by_day: dict[str, list[TripPoint]] = {}
    for t in trips:
        by_day.setdefault(period.day_of(t.start_ts), []).append(t)
    doors: dict[str, list[int]] = {}  # day -> [cycles, reopenings]
    for m in door_cycles:
        t = parse_ts(m.get("open_ts"))
        if t is not None:
            d = doors.setdefault(period.day_of(t), [0, 0])
            d[0] += 1
            reopen = m.get("reopenings")
            d[1] += reopen if isinstance(reopen, int) and not isinstance(reopen, bool) else 0
    out = []
    for day in period.days:
        ts = by_day.get(day, [])
        rec = dailies.get(day)
        a95 = [t.z_a95_pp_mg for t in ts if t.z_a95_pp_mg is not None]
        mx = [t.z_max_pp_mg for t in ts if t.z_max_pp_mg is not None]
        offs = [abs(t.offset_mm) for t in ts if t.offset_mm is not None]
        statuses = [t.leveling_status for t in ts if t.leveling_status]

        n_trips = _daily_get(rec, "trips")
        out.append(
            DayFigures(
                day=day,
                trips=n_trips if isinstance(n_trips, int) else (len(ts) if ts or rec is not None else None),
                door_cycles=_daily_get(rec, "door_cycles") if rec is not None else doors.get(day, [None])[0],
                door_reopenings=(
                    _daily_get(rec, "door_reopenings") if rec is not None else doors.get(day, [None, None])[1]
                ),
                run_hours=finite_number(_daily_get(rec, "run_hours")),
                z_a95_p50_mg=_quantile(a95, 0.5)
                if a95
                else finite_number(_daily_get(rec, "ride_quality", "z_a95_pp_mg", "p50")),
                z_a95_p95_mg=_quantile(a95, 0.95)
                if a95
                else finite_number(_daily_get(rec, "ride_quality", "z_a95_pp_mg", "p95")),
                z_max_pp_mg=max(mx) if mx else finite_number(_daily_get(rec, "ride_quality", "z_max_pp_mg", "max")),
                offset_p95_mm=_quantile(offs, 0.95) if offs else finite_number(_daily_get(rec, "leveling", "abs_offset_mm_p95")),
                off_level_stops=(
                    sum(s == "off_level" for s in statuses) if statuses else _daily_get(rec, "leveling", "off_level")
                ),
                stops=len(statuses) if statuses else _daily_get(rec, "leveling", "stops"),
            )
        )
    return out


def verdict_of(f: CarFigures) -> Verdict:
    """Findings in the order an insurer reads them: contract breaches, then things to watch."""
    t = f.targets
    out: list[Finding] = []
    B, A = Severity.BREACH, Severity.ATTENTION
    if f.unanswered:
        out.append(
            Finding(
                B,
                f"{f.unanswered} 次故障无响应记录",
                f"{f.unanswered} fault(s) with no response recorded",
            )
        )
    if f.late_responses - f.unanswered:
        n = f.late_responses - f.unanswered
        out.append(
            Finding(
                B,
                f"{n} 次故障响应超过 {t.response_s / 60:.0f} 分钟",
                f"{n} fault response(s) later than {t.response_s / 60:.0f} min",
            )
        )
    share = f.repair_half_day_share
    if share is not None and share < t.repair_half_day_share:
        out.append(
            Finding(
                B,
                f"半个工作日内修复 {share:.0%}（要求 ≥{t.repair_half_day_share:.0%}）",
                f"{share:.0%} repaired within half a working day (target ≥{t.repair_half_day_share:.0%})",
            )
        )
    if f.repairs_over_max:
        working = t.calendar.repair_max_days == "working"
        out.append(
            Finding(
                B,
                f"{f.repairs_over_max} 次修复超过 {t.repair_max_days} 个{'工作日' if working else '自然日'}",
                f"{f.repairs_over_max} repair(s) longer than {t.repair_max_days} {'working' if working else 'calendar'} days",
            )
        )
    if f.short_visits:
        out.append(
            Finding(
                B,
                f"{f.short_visits} 次维保不足 {t.maintenance_min_s / 60:.0f} 分钟",
                f"{f.short_visits} maintenance visit(s) shorter than {t.maintenance_min_s / 60:.0f} min",
            )
        )
    if f.visit_gap_s_max is not None and f.visit_gap_s_max > t.maintenance_interval_max_s:
        out.append(
            Finding(
                B,
                f"维保间隔 {f.visit_gap_s_max / 86400:.1f} 天，超过 {t.maintenance_interval_max_s / 86400:.0f} 天",
                f"maintenance gap of {f.visit_gap_s_max / 86400:.1f} days exceeds "
                f"{t.maintenance_interval_max_s / 86400:.0f} days",
            )
        )
    if f.entrapments:
        out.append(Finding(A, f"困人 {f.entrapments} 次", f"{f.entrapments} entrapment(s)"))
    if f.rq_trips_over_limit:
        out.append(
            Finding(
                A,
                f"{f.rq_trips_over_limit}/{f.rq_trips_judged} 次运行振动超 GB/T 10058 限值",
                f"{f.rq_trips_over_limit}/{f.rq_trips_judged} trips above the GB/T 10058 vibration limits",
            )
        )
    if f.z_a95_trend_mg_per_30d is not None and f.z_a95_trend_mg_per_30d >= 0.1 * t.z_a95_pp_limit_mg:
        out.append(
            Finding(
                A,
                f"垂直振动 A95 上升 {f.z_a95_trend_mg_per_30d:.1f} mg/30天",
                f"vertical A95 rising {f.z_a95_trend_mg_per_30d:.1f} mg per 30 days",
            )
        )
    if f.off_level_stops:
        out.append(
            Finding(
                A,
                f"{f.off_level_stops}/{f.leveling_stops} 次停靠平层超差",
                f"{f.off_level_stops}/{f.leveling_stops} stops off level",
            )
        )
    if f.availability is not None and f.availability < 0.99:
        out.append(Finding(A, f"可用率 {f.availability:.1%}", f"availability {f.availability:.1%}"))
    severity = max((x.severity for x in out), default=Severity.OK, key=[Severity.OK, A, B].index)
    return Verdict(severity, tuple(out))


def car_figures(
    car: str,
    messages: Sequence[Mapping[str, Any]],
    period: Period,
    targets: ContractTargets = ContractTargets(),
) -> CarFigures:
    """All figures of `car` over `period` from its upstream messages (other cars' are ignored).

    `messages` may extend beyond the period (see source.load_messages' margin): faults raised just
    before it and visits just after it are needed to judge what happened inside it.
    """
    mine = [m for m in messages if m.get("car") == car]
    lo, hi = period.start_ts, period.end_ts
    times = [t for m in mine if (t := parse_ts(m.get("ts"))) is not None]
    times += [t for m in mine for k in ("end_ts", "event_ts") if (t := parse_ts(m.get(k))) is not None]
    data_end = min(hi, max(times)) if times else lo
    in_period = [t for t in times if lo <= t < hi]

    all_visits = visits_of([m for m in mine if m.get("kind") == "maintenance"], targets)
    cases = fault_cases([m for m in mine if m.get("kind") == "event"], data_end)
    judged_all = judge_faults(cases, all_visits, targets, data_end)
    faults = [c for c in judged_all if period.contains(c.raised_ts)]
    visits = [v for v in all_visits if period.contains(v.start_ts)]
    trips = [t for t in trips_of(m for m in mine if m.get("kind") == "trip") if period.contains(t.start_ts)]

    # A day's complete record wins; without one, the partial record that reaches furthest (each
    # stream end writes one, `until_ts`, and a later one covers more of the day).
    dailies: dict[str, Mapping[str, Any]] = {}
    for m in mine:
        if m.get("kind") == "daily" and isinstance(m.get("day"), str):
            if _daily_rank(m) >= _daily_rank(dailies.get(m["day"])):
                dailies[m["day"]] = m
    days = day_figures(period, trips, dailies, (m for m in mine if m.get("kind") == "door_cycle"))

    def interval(c: FaultCase) -> tuple[float, float]:
        return c.raised_ts, c.cleared_ts if c.cleared_ts is not None else data_end

    downtime = union_s((interval(c) for c in judged_all if c.type in OUT_OF_SERVICE), lo, hi)
    offline = union_s((interval(c) for c in judged_all if c.type == "board_offline"), lo, hi)
    if offline == 0.0:
        offline = 60.0 * sum(finite_number(_daily_get(dailies.get(d), "offline_minutes")) or 0.0 for d in period.days)
    # A period still running (or a source that stops early) is judged over the days it covers, so
    # "this month so far" is not diluted by days that have not happened yet.
    observed_days = min(period.n_days, max(1, math.ceil((data_end - lo) / 86400)))
    observed_s = observed_days * 86400.0
    availability = (1.0 - downtime / observed_s) if (in_period or dailies) else None

    trips_total = sum(d.trips or 0 for d in days)
    judged = [c for c in faults if c.judged]
    repairs_judged = [c for c in judged if not c.open or (c.repair_working_s or 0.0) > targets.repair_half_day_s]
    entrapments = [c for c in faults if c.type == "entrapment"]
    starts = [v.start_ts for v in visits]
    gaps = [b - a for a, b in zip([lo] + starts, starts + [data_end if data_end > lo else hi])]
    rq = [t for t in trips if t.z_a95_pp_mg is not None]
    over = [
        t
        for t in rq
        if t.z_a95_pp_mg > targets.z_a95_pp_limit_mg
        or (t.z_max_pp_mg or 0.0) > targets.z_max_pp_limit_mg
        or (t.xy_a95_pp_mg or 0.0) > targets.xy_a95_pp_limit_mg
    ]
    trend_days = [(i, d.z_a95_p50_mg) for i, d in enumerate(days) if d.z_a95_p50_mg is not None]
    slope = linear_slope([float(i) for i, _ in trend_days], [v for _, v in trend_days])
    stops = [t for t in trips if t.leveling_status]
    offs = [abs(t.offset_mm) for t in trips if t.offset_mm is not None]
    door_days = [d for d in days if d.door_cycles is not None]
    boards = sorted({m["board"] for m in mine if isinstance(m.get("board"), str)})
    sites = sorted({m["site"] for m in mine if isinstance(m.get("site"), str)})
    dropped = dropped_in_period((m for m in messages if m.get("kind") == "status"), sites[0] if sites else None, period)
    notes = []
    if observed_days < period.n_days:
        notes.append(
            f"数据截至第 {observed_days} 天，按已覆盖天数计算 / data cover the first {observed_days} of "
            f"{period.n_days} days; per-day figures and availability use those days"
        )
    if not trips and trips_total:
        notes.append("无单次运行记录，运行次数取自日报 / trip messages missing: totals from daily records")
    if dropped:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(dropped.items()))
        notes.append(
            f"本期监测主机因存储预算丢弃了 {counts} 条消息（按主机统计，可能涉及同一地点其他电梯），"
            f"依赖这些消息的指标可能不完整 / the site's Pi dropped {counts} message(s) in this period "
            "(storage budget; counted per Pi, other cars of the site included): figures built on them "
            "may be incomplete"
        )

    partial = CarFigures(
        car=car,
        site=sites[0] if sites else None,
        boards=tuple(boards),
        period=period,
        targets=targets,
        data_end_ts=data_end,
        availability=availability,
        downtime_s=downtime,
        offline_s=offline,
        trips_total=trips_total,
        trips_per_day=trips_total / observed_days,
        observed_days=observed_days,
        faults=tuple(faults),
        visits=tuple(visits),
        trips=tuple(trips),
        days=tuple(days),
        entrapments=len(entrapments),
        entrapment_s_max=max((c.repair_s or 0.0 for c in entrapments), default=None),
        judged_faults=len(judged),
        late_responses=sum(c.response_late for c in judged),
        unanswered=sum(c.no_response for c in judged),
        response_s_max=max((c.response_s for c in judged if c.response_s is not None), default=None),
        repairs_judged=len(repairs_judged),
        repairs_within_half_day=sum(c.repair_within_half_day for c in repairs_judged),
        repairs_over_max=sum(c.repair_over_max for c in judged),
        short_visits=sum(v.too_short for v in visits),
        visit_gap_s_max=max(gaps) if visits else None,
        maintenance_minutes=sum(v.duration_s for v in visits) / 60,
        rq_trips_judged=len(rq),
        rq_trips_over_limit=len(over),
        z_a95_p95_mg=_quantile([t.z_a95_pp_mg for t in rq], 0.95),
        z_max_pp_mg=max((t.z_max_pp_mg for t in rq if t.z_max_pp_mg is not None), default=None),
        z_a95_trend_mg_per_30d=None if slope is None else slope * 30,
        leveling_stops=len(stops),
        off_level_stops=sum(t.leveling_status == "off_level" for t in stops),
        offset_p95_mm=_quantile(offs, 0.95),
        door_cycles=sum(d.door_cycles for d in door_days) if door_days else None,
        door_reopenings=sum(d.door_reopenings or 0 for d in door_days) if door_days else None,
        verdict=Verdict(Severity.OK, ()),
        dropped=dropped,
        rq_unjudged=dict(Counter(t.rq_unjudged for t in trips if t.rq_unjudged is not None)),
        notes=tuple(notes),
    )
    return replace(partial, verdict=verdict_of(partial))
