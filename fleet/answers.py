"""Answers from the fleet store, for any set of cars and period: what the insurance pilots measure.

Every figure is built on the car report's own figures (edge_daemon/report/figures.py: fault cases,
their judgement against the contract, visits), computed per car with the targets the registry gives
that car, so a district figure and the car report it summarises can never disagree.

- Fault rate per car-month before and after enrollment (the pilots report "faults down 20 %"): faults
  that needed a technician (judged faults; the monitoring kit's own excluded), over the months the car
  was observed on each side of its enrollment date.
- Repair time, mean and worst (the pilots: mean 1.06 days): judged faults, raise to clear.
- Major faults (entrapment, stop outside the door zone, overspeed) with their own 24 h target.
- Maintenance quality per contractor (visits really 40-70 min where 10 was common): visit length,
  short and missed visits, response times, repeat faults, ranked by points per car (RANKING_POINTS).
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Iterable, Sequence

from liftwatch.edge_daemon.report.figures import CarFigures, ContractTargets, Period, car_figures
from liftwatch.edge_daemon.report.plots import BLUE, GREEN, GREY, HEIGHT_IN, ORANGE, RED, WIDTH_IN, Labels, to_svg
from liftwatch.edge_daemon.report.records import FaultCase

from .store import FleetStore, Lift

__all__ = ["MAJOR_FAULTS", "RANKING_POINTS", "DistrictFigures", "district_figures", "figures_of", "period_messages",
           "render_district_sections", "targets_of"]

MAJOR_FAULTS = frozenset({"entrapment", "stopped_outside_door_zone", "overspeed"})
MAJOR_REPAIR_TARGET_S = 24 * 3600.0
MONTH_S = 30.4375 * 86400  # a mean calendar month
REPEAT_WINDOW_S = 30 * 86400.0  # the same fault again within 30 days of its repair: the repair did not hold
UNREGISTERED = "未登记 unregistered"
RANKING_POINTS = {"short_visits": 3.0, "missed_visits": 5.0, "late_responses": 5.0, "repeat_faults": 2.0}
"""Contractor points per occurrence; the ranking is by points per car, lowest first. Policy, like the
car risk score's weights (edge_daemon/report/fleet.py): named here so a district can publish its own."""


def targets_of(lift: Lift | None, utc_offset_h: float) -> ContractTargets:
    """The car's contract targets: the registry's where it has them, the report's defaults otherwise."""
    if lift is None:
        return ContractTargets(utc_offset_h=utc_offset_h)
    return ContractTargets(response_s=lift.response_s, repair_max_s=lift.repair_s,
                           maintenance_min_s=lift.visit_min_s, utc_offset_h=utc_offset_h)


@dataclass(frozen=True, slots=True)
class FaultRate:
    car_months_before: float
    faults_before: int
    car_months_after: float
    faults_after: int

    @property
    def before(self) -> float | None:
        return self.faults_before / self.car_months_before if self.car_months_before else None

    @property
    def after(self) -> float | None:
        return self.faults_after / self.car_months_after if self.car_months_after else None

    @property
    def change(self) -> float | None:
        """Relative change after enrollment (-0.2 = 20 % fewer faults per car-month)."""
        if self.before is None or self.after is None or self.before == 0:
            return None
        return self.after / self.before - 1.0


@dataclass(frozen=True, slots=True)
class RepairTimes:
    repairs: int
    mean_s: float | None
    worst_s: float | None
    still_open: int


@dataclass(frozen=True, slots=True)
class MajorFaults:
    count: int
    within_target: int  # cleared within MAJOR_REPAIR_TARGET_S
    still_open: int
    worst_s: float | None
    by_type: dict[str, int]


@dataclass(frozen=True, slots=True)
class ContractorRow:
    company: str
    cars: int
    visits: int
    visit_min_mean: float | None
    short_visits: int
    missed_visits: int
    judged_faults: int
    late_responses: int
    response_s_mean: float | None
    response_s_max: float | None
    repeat_faults: int

    @property
    def points_per_car(self) -> float:
        total = sum(w * getattr(self, name) for name, w in RANKING_POINTS.items())
        return round(total / self.cars, 2) if self.cars else 0.0


@dataclass(frozen=True, slots=True)
class DistrictFigures:
    period: Period
    cars: tuple[CarFigures, ...]
    unregistered: tuple[str, ...]  # cars with facts but no registry entry
    fault_rate: FaultRate
    repairs: RepairTimes
    major: MajorFaults
    contractors: tuple[ContractorRow, ...] = field(default=())  # best (fewest points per car) first

    def to_json(self) -> dict[str, Any]:
        rate = self.fault_rate
        return {
            "period": [self.period.first.isoformat(), self.period.last.isoformat()],
            "cars": len(self.cars),
            "unregistered": list(self.unregistered),
            "fault_rate": asdict(rate) | {"before": rate.before, "after": rate.after, "change": rate.change},
            "repairs": asdict(self.repairs),
            "major": asdict(self.major) | {"target_s": MAJOR_REPAIR_TARGET_S},
            "contractors": [asdict(c) | {"points_per_car": c.points_per_car} for c in self.contractors],
        }


def period_messages(store: FleetStore, period: Period, cars: Sequence[str] | None) -> list[dict[str, Any]]:
    """The cars' messages the period's figures need: the period plus a day's margin (a fault raised
    just before it, the visit that answered one just after), daily records by their own day."""
    messages = store.facts(cars, period.start_ts - 86400.0, period.end_ts + 86400.0)
    days = (period.days[0], period.days[-1])
    return [m for m in messages if m.get("kind") != "daily" or days[0] <= str(m.get("day", "")) <= days[1]]


def district_figures(store: FleetStore, period: Period, cars: Sequence[str] | None = None) -> DistrictFigures:
    """Every figure for `cars` (all cars with facts if None) over `period`, from the store."""
    return figures_of(period_messages(store, period, cars), store.lifts(), period, cars)


def figures_of(messages: Sequence[dict[str, Any]], registry: Iterable[Lift], period: Period,
               cars: Sequence[str] | None = None) -> DistrictFigures:
    """The district figures of messages already read (`period_messages`): the computing half, which
    needs no store connection (the dashboard computes without holding its store lock)."""
    lifts = {lift.car: lift for lift in registry}
    by_car: dict[str, list[dict[str, Any]]] = defaultdict(list)
    statuses: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in messages:
        if m.get("car") is not None:
            by_car[m["car"]].append(m)
        elif m.get("kind") == "status":
            statuses[m["site"]].append(m)
    names = sorted(by_car) if cars is None else [c for c in dict.fromkeys(cars) if c in by_car]
    figures = []
    for car in names:
        mine = by_car[car]
        site = mine[0].get("site")
        figures.append(car_figures(car, mine + statuses.get(site, []), period,
                                   targets_of(lifts.get(car), period.utc_offset_h)))
    return DistrictFigures(
        period=period,
        cars=tuple(figures),
        unregistered=tuple(f.car for f in figures if f.car not in lifts),
        fault_rate=_fault_rate(figures, lifts, by_car, period),
        repairs=_repairs(figures),
        major=_major(figures),
        contractors=tuple(sorted(_contractors(figures, lifts), key=lambda c: (c.points_per_car, c.company))),
    )


def _observed(messages: Iterable[dict[str, Any]]) -> tuple[float, float] | None:
    from liftwatch.edge_daemon.report.source import message_time

    times = [t for m in messages if (t := message_time(m)) is not None]
    return (min(times), max(times)) if times else None


def _fault_rate(figures: Sequence[CarFigures], lifts: dict[str, Lift], by_car: dict[str, list[dict[str, Any]]],
                period: Period) -> FaultRate:
    months_before = months_after = 0.0
    before = after = 0
    for f in figures:
        lift = lifts.get(f.car)
        span = _observed(by_car[f.car])
        if lift is None or span is None:
            continue
        enrolled_day = date.fromisoformat(lift.enrolled_on)
        enrolled = Period(enrolled_day, enrolled_day, period.utc_offset_h).start_ts
        lo, hi = max(period.start_ts, span[0]), min(period.end_ts, span[1])
        months_before += max(0.0, min(enrolled, hi) - lo) / MONTH_S
        months_after += max(0.0, hi - max(enrolled, lo)) / MONTH_S
        for c in f.faults:
            if c.judged:
                before += c.raised_ts < enrolled
                after += c.raised_ts >= enrolled
    return FaultRate(round(months_before, 3), before, round(months_after, 3), after)


def _repairs(figures: Sequence[CarFigures]) -> RepairTimes:
    judged = [c for f in figures for c in f.faults if c.judged]
    done = [c.repair_s for c in judged if not c.open and c.repair_s is not None]
    return RepairTimes(len(done), sum(done) / len(done) if done else None, max(done, default=None),
                       sum(c.open for c in judged))


def _major(figures: Sequence[CarFigures]) -> MajorFaults:
    major = [c for f in figures for c in f.faults if c.type in MAJOR_FAULTS]
    by_type: dict[str, int] = defaultdict(int)
    for c in major:
        by_type[c.type] += 1
    return MajorFaults(
        count=len(major),
        within_target=sum(not c.open and (c.repair_s or 0.0) <= MAJOR_REPAIR_TARGET_S for c in major),
        still_open=sum(c.open for c in major),
        worst_s=max((c.repair_s for c in major if c.repair_s is not None), default=None),
        by_type=dict(sorted(by_type.items())),
    )


def _missed_visits(f: CarFigures) -> int:
    """Maintenance intervals (TSG T5002: every 15 days) that passed without a visit."""
    interval = f.targets.maintenance_interval_max_s
    bounds = [f.period.start_ts] + [v.start_ts for v in f.visits] + [max(f.data_end_ts, f.period.start_ts)]
    return sum(max(0, math.ceil((b - a) / interval) - 1) for a, b in zip(bounds, bounds[1:]))


def _repeats(faults: Sequence[FaultCase]) -> int:
    last_clear: dict[str, float] = {}
    repeats = 0
    for c in sorted(faults, key=lambda c: c.raised_ts):
        if c.kit:
            continue
        cleared = last_clear.get(c.type)
        repeats += cleared is not None and c.raised_ts - cleared <= REPEAT_WINDOW_S
        if c.cleared_ts is not None:
            last_clear[c.type] = c.cleared_ts
    return repeats


def _contractors(figures: Sequence[CarFigures], lifts: dict[str, Lift]) -> list[ContractorRow]:
    groups: dict[str, list[CarFigures]] = defaultdict(list)
    for f in figures:
        lift = lifts.get(f.car)
        groups[lift.maintenance_company if lift else UNREGISTERED].append(f)
    rows = []
    for company, cars in groups.items():
        visits = [v for f in cars for v in f.visits]
        responses = [c.response_s for f in cars for c in f.faults if c.judged and c.response_s is not None]
        rows.append(ContractorRow(
            company=company,
            cars=len(cars),
            visits=len(visits),
            visit_min_mean=round(sum(v.duration_s for v in visits) / 60 / len(visits), 1) if visits else None,
            short_visits=sum(f.short_visits for f in cars),
            missed_visits=sum(_missed_visits(f) for f in cars),
            judged_faults=sum(f.judged_faults for f in cars),
            late_responses=sum(f.late_responses for f in cars),
            response_s_mean=sum(responses) / len(responses) if responses else None,
            response_s_max=max(responses, default=None),
            repeat_faults=sum(_repeats(f.faults) for f in cars),
        ))
    return rows


# -- bilingual HTML sections for the fleet report -------------------------------------------------

CONTRACTORS_PLOTTED = 20  # the plot's bars; the table below it lists every contractor


def district_plot(d: DistrictFigures, lab: Labels) -> str:
    """Faults per car-month before and after enrollment, and contractors' points per car, as SVG."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    shown = d.contractors[:CONTRACTORS_PLOTTED]
    with plt.rc_context(lab.rc()):
        fig = Figure(figsize=(WIDTH_IN, max(HEIGHT_IN, 0.9 + 0.25 * len(shown))), layout="constrained")
        rate_ax, firm_ax = fig.subplots(1, 2, width_ratios=(1, 2))
        rates = [d.fault_rate.before or 0.0, d.fault_rate.after or 0.0]
        rate_ax.bar([0, 1], rates, color=[GREY, BLUE], width=0.6)
        rate_ax.set_xticks([0, 1], [lab("投保前", "before"), lab("投保后", "after")])
        rate_ax.set_title(lab("每台每月故障", "Faults per car-month"), loc="left")
        for x, value in enumerate(rates):
            rate_ax.text(x, value, f"{value:.2f}", ha="center", va="bottom", fontsize=7.5)
        points = [c.points_per_car for c in shown]
        firm_ax.barh(range(len(shown)), points, color=[GREEN if p < 5 else ORANGE if p < 15 else RED for p in points],
                     height=0.6)
        firm_ax.set_yticks(range(len(shown)), [c.company for c in shown])
        firm_ax.invert_yaxis()
        firm_ax.set_title(lab("维保单位每台扣分", "Contractor points per car"), loc="left")
        firm_ax.grid(axis="y", visible=False)
        return to_svg(fig)



def _e(value: object) -> str:
    return html.escape(str(value))


def _days(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 86400:.2f} 天 d"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def render_district_sections(d: DistrictFigures, lab: Labels | None = None) -> str:
    """The district's answers as report sections (Chinese first, English beside it), with a plot."""
    r, rep, major = d.fault_rate, d.repairs, d.major
    change = "—" if r.change is None else f"{100 * r.change:+.1f} %"
    within = "—" if not major.count else f"{major.within_target}/{major.count}"
    pilot = (
        "<section class='page' id='district'><h2>区域指标 District figures (insurance pilot)</h2>"
        f"<figure id='plot-district'>{district_plot(d, lab or Labels())}</figure>"
        "<table id='pilot'><tr><th>指标 Figure</th><th class='num'>投保前 Before enrollment</th>"
        "<th class='num'>投保后 After enrollment</th></tr>"
        f"<tr><td>每台每月故障 Faults per car-month</td><td class='num'>{_rate(r.before)}</td>"
        f"<td class='num'>{_rate(r.after)}</td></tr>"
        f"<tr><td>观测台月 Car-months observed</td><td class='num'>{r.car_months_before:g}</td>"
        f"<td class='num'>{r.car_months_after:g}</td></tr>"
        f"<tr><td>变化 Change</td><td class='num' colspan='2'>{_e(change)}</td></tr></table>"
        "<table id='repairs'><tr><th>维修 Repairs</th><th class='num'>次数 Count</th><th class='num'>平均 Mean</th>"
        "<th class='num'>最长 Worst</th><th class='num'>未修复 Open</th></tr>"
        f"<tr><td>需响应故障 Judged faults</td><td class='num'>{rep.repairs}</td><td class='num'>{_days(rep.mean_s)}</td>"
        f"<td class='num'>{_days(rep.worst_s)}</td><td class='num'>{rep.still_open}</td></tr>"
        f"<tr><td>重大故障（困人、非平层停梯、超速）24 小时内修复 Major faults repaired within 24 h</td>"
        f"<td class='num'>{_e(within)}</td><td class='num'>—</td><td class='num'>{_days(major.worst_s)}</td>"
        f"<td class='num'>{major.still_open}</td></tr></table>"
    )
    if d.unregistered:
        pilot += (f"<p class='note'>未登记电梯 Cars not in the registry: {_e(', '.join(d.unregistered))}"
                  "（数据已保存并标记 facts stored and flagged）</p>")
    rows = "".join(
        f"<tr><td class='num'>{i}</td><td>{_e(c.company)}</td><td class='num'>{c.cars}</td>"
        f"<td class='num'>{c.visits}</td><td class='num'>{'—' if c.visit_min_mean is None else c.visit_min_mean}</td>"
        f"<td class='num'>{c.short_visits}</td><td class='num'>{c.missed_visits}</td>"
        f"<td class='num'>{c.late_responses}/{c.judged_faults}</td>"
        f"<td class='num'>{'—' if c.response_s_mean is None else round(c.response_s_mean / 60, 1)}</td>"
        f"<td class='num'>{c.repeat_faults}</td><td class='num'><b>{c.points_per_car:g}</b></td></tr>"
        for i, c in enumerate(d.contractors, start=1)
    )
    weights = ", ".join(f"{name.replace('_', ' ')} {w:g}" for name, w in RANKING_POINTS.items())
    ranking = (
        "<h2>维保单位质量排名 Maintenance contractors</h2>"
        "<table id='contractors'><tr><th class='num'>#</th><th>维保单位 Contractor</th><th class='num'>电梯 Cars</th>"
        "<th class='num'>维保次数 Visits</th><th class='num'>平均时长(分) Mean min</th>"
        "<th class='num'>时长不足 Short</th><th class='num'>漏保 Missed</th><th class='num'>响应超时 Late/judged</th>"
        "<th class='num'>平均响应(分) Mean response min</th><th class='num'>重复故障 Repeats</th>"
        f"<th class='num'>每台扣分 Points/car</th></tr>{rows}</table>"
        f"<p class='note'>每台扣分越低越好。Points per car, lowest first: {_e(weights)} per occurrence.</p></section>"
    )
    return pilot + ranking
