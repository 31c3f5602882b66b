"""The insurer's fleet view: cars ranked by a risk score anyone can recompute by hand.

The score is a sum of points, each tied to one figure of the car's report, so a maintenance
company that disputes its rank can see exactly which fact cost it how much (docs/report.md has
the same table):

| component            | points                                     | why |
|----------------------|--------------------------------------------|-----|
| entrapments          | 10 each                                    | passengers harmed or frightened; the insurer's largest claims |
| late responses       | 5 each                                     | contract breach; delay turns a fault into an entrapment or a claim |
| repairs over 3 days  | 5 each                                     | contract breach; the car is out for residents who need it |
| half-day repair rate | 5 if below 60 %                            | contract breach |
| short maintenance    | 3 each visit under 40 min                  | the "10-minute visit": maintenance paid for, not done |
| maintenance gap      | 5 if a gap exceeds 15 days                 | TSG T5002 half-monthly maintenance missed |
| judged faults        | 2 each                                     | faults that needed a technician: the car's condition |
| ride quality         | 10 x share of trips over GB/T 10058 limits | worn guides, rollers, ropes |
| ride-quality trend   | 5 if vertical A95 rises >= 10 % of its limit per 30 days | wear in progress, before it crosses the limit |
| availability         | 2 per percentage point below 100 %         | time residents could not use the car |

Bands: below 10 low, below 30 medium, else high; a car that missed a contract target is at least
medium, however few its points. The weights are policy, not physics: they are
named constants here so an insurer can publish its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .figures import CarFigures, Severity

__all__ = ["RiskComponent", "CarRisk", "risk_of", "rank_fleet", "RISK_BANDS", "RULES"]

ENTRAPMENT_POINTS = 10.0
LATE_RESPONSE_POINTS = 5.0
REPAIR_OVER_MAX_POINTS = 5.0
HALF_DAY_RATE_POINTS = 5.0
SHORT_VISIT_POINTS = 3.0
VISIT_GAP_POINTS = 5.0
JUDGED_FAULT_POINTS = 2.0
RIDE_QUALITY_POINTS = 10.0  # times the share of judged trips over a limit
RQ_TREND_POINTS = 5.0
RQ_TREND_SHARE_OF_LIMIT = 0.10  # per 30 days
AVAILABILITY_POINTS_PER_PCT = 2.0

RULES = (
    ("entrapments", "困人", "10 分/次", "10 each"),
    ("late responses", "响应超时", "5 分/次", "5 each"),
    ("repairs over 3 days", "修复超3天", "5 分/次", "5 each"),
    ("half-day repair rate below target", "半日修复率不足", "低于 60% 加 5 分", "+5 if below 60 %"),
    ("short maintenance visits", "维保时长不足", "不足 40 分钟 3 分/次", "3 per visit under 40 min"),
    ("maintenance gap over 15 days", "维保间隔超15天", "加 5 分", "+5"),
    ("judged faults", "需响应故障", "2 分/次", "2 each"),
    ("trips over ride-quality limits (share)", "振动超限比例", "超限运行比例 × 10", "10 x share of trips over limits"),
    (
        "ride quality worsening",
        "振动上升趋势",
        "A95 每30天上升 ≥ 限值10% 加 5 分",
        "+5 if vertical A95 rises >= 10 % of its limit per 30 days",
    ),
    ("availability shortfall", "可用率不足", "每低于 100% 一个百分点 2 分", "2 per percentage point below 100 %"),
)
"""(name, Chinese name, rule in Chinese, rule in English), in the order `risk_of` lists components."""

RISK_BANDS = ((10.0, "low", "低"), (30.0, "medium", "中"), (float("inf"), "high", "高"))
"""(upper bound exclusive, English, Chinese)."""


@dataclass(frozen=True, slots=True)
class RiskComponent:
    name: str
    zh: str
    count: float  # the figure the points come from (availability: percentage points below 100 %)
    points: float


@dataclass(frozen=True, slots=True)
class CarRisk:
    figures: CarFigures
    components: tuple[RiskComponent, ...]

    @property
    def score(self) -> float:
        return round(sum(c.points for c in self.components), 1)

    @property
    def band(self) -> tuple[str, str]:
        """(English, Chinese) band of the score; a car that missed a contract target is at least medium."""
        for i, (upper, en, zh) in enumerate(RISK_BANDS):
            if self.score < upper:
                if i == 0 and self.figures.verdict.severity is Severity.BREACH:
                    return RISK_BANDS[1][1], RISK_BANDS[1][2]
                return en, zh
        raise AssertionError("unreachable: the last band is unbounded")


def risk_of(f: CarFigures) -> CarRisk:
    """The car's risk components (all of them, zero ones included, so the table is complete)."""
    t = f.targets
    share = f.repair_half_day_share
    rq_share = f.rq_trips_over_limit / f.rq_trips_judged if f.rq_trips_judged else 0.0
    trend = f.z_a95_trend_mg_per_30d
    rising = trend is not None and trend >= RQ_TREND_SHARE_OF_LIMIT * t.z_a95_pp_limit_mg
    gap_over = f.visit_gap_s_max is not None and f.visit_gap_s_max > t.maintenance_interval_max_s
    below_pct = 0.0 if f.availability is None else max(0.0, 100.0 * (1.0 - f.availability))
    half_day_missed = share is not None and share < t.repair_half_day_share
    comps = (
        RiskComponent("entrapments", "困人", f.entrapments, ENTRAPMENT_POINTS * f.entrapments),
        RiskComponent("late responses", "响应超时", f.late_responses, LATE_RESPONSE_POINTS * f.late_responses),
        RiskComponent(
            "repairs over 3 days", "修复超3天", f.repairs_over_max, REPAIR_OVER_MAX_POINTS * f.repairs_over_max
        ),
        RiskComponent(
            "half-day repair rate below target",
            "半日修复率不足",
            int(half_day_missed),
            HALF_DAY_RATE_POINTS * half_day_missed,
        ),
        RiskComponent("short maintenance visits", "维保时长不足", f.short_visits, SHORT_VISIT_POINTS * f.short_visits),
        RiskComponent("maintenance gap over 15 days", "维保间隔超15天", int(gap_over), VISIT_GAP_POINTS * gap_over),
        RiskComponent("judged faults", "需响应故障", f.judged_faults, JUDGED_FAULT_POINTS * f.judged_faults),
        RiskComponent(
            "trips over ride-quality limits (share)",
            "振动超限比例",
            round(rq_share, 3),
            round(RIDE_QUALITY_POINTS * rq_share, 2),
        ),
        RiskComponent("ride quality worsening", "振动上升趋势", int(rising), RQ_TREND_POINTS * rising),
        RiskComponent(
            "availability shortfall",
            "可用率不足",
            round(below_pct, 2),
            round(AVAILABILITY_POINTS_PER_PCT * below_pct, 2),
        ),
    )
    return CarRisk(f, comps)


def rank_fleet(cars: Sequence[CarFigures]) -> list[CarRisk]:
    """Highest risk first; ties by car id so the order is stable."""
    return sorted((risk_of(f) for f in cars), key=lambda r: (-r.score, r.figures.car))
