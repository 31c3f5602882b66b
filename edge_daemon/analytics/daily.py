"""The daily record of one car ("one lift, one file"): what happened on one local day."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .common import day_string, iso_utc, round_or_none, ts_ms
from .doors import DoorCycle
from .faults import FaultEvent
from .leveling import LevelingResult, LevelingStatus
from .maintenance import MaintenanceVisit
from .trips import Trip

__all__ = ["DailyAccumulator", "DailyRecord"]

_RQ_FIELDS = ("z_max_pp_mg", "z_a95_pp_mg", "x_a95_pp_mg", "y_a95_pp_mg", "accel_max_mps2", "jerk_max_mps3")


@dataclass(frozen=True, slots=True)
class DailyRecord:
    """Upstream kind `daily`. Partial (with `until_ts`) when the stream ended before the day did."""

    car_id: str
    day: str  # local date YYYY-MM-DD
    trips: int
    trips_up: int
    trips_down: int
    run_s: float  # car moving, passenger trips, re-levelling and inspection runs
    relevels: int
    door_cycles: int
    door_reopenings: int
    door_open_s: float
    faults_by_type: dict[str, int]  # raised on this day
    maintenance_visits: int
    maintenance_minutes: float
    ride_quality: dict[str, dict[str, float] | None]  # per figure: p50, p95, max over trips
    leveling: dict[str, Any]
    offline_minutes: float
    boots: int
    counters: dict[str, int] | None  # last board COUNTERS seen that day
    until_ts: float | None = None  # set for a partial record: the stream ended here
    # 0 when first issued; each re-issue (late facts from the board's journal changed the day) is
    # one higher, under the same id: a reader keeps the highest revision of an id.
    revision: int = 0

    kind = "daily"

    @property
    def partial(self) -> bool:
        return self.until_ts is not None

    @property
    def key(self) -> str:
        # a partial record has its own key per end time, so a later, fuller one is not taken
        # for a re-send of it
        suffix = f":partial:{ts_ms(self.until_ts)}" if self.until_ts is not None else ""
        return f"{self.car_id}:daily:{self.day}{suffix}"

    def to_message(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "partial": self.partial,
            "until_ts": iso_utc(self.until_ts) if self.until_ts is not None else None,
            "trips": self.trips,
            "trips_up": self.trips_up,
            "trips_down": self.trips_down,
            "run_hours": round(float(self.run_s) / 3600, 4),
            "relevels": self.relevels,
            "door_cycles": self.door_cycles,
            "door_reopenings": self.door_reopenings,
            "door_open_s": round(float(self.door_open_s), 1),
            "faults_by_type": dict(self.faults_by_type),
            "maintenance_visits": self.maintenance_visits,
            "maintenance_minutes": round(float(self.maintenance_minutes), 2),
            "ride_quality": {k: (dict(v) if v is not None else None) for k, v in self.ride_quality.items()},
            "leveling": dict(self.leveling),
            "offline_minutes": round(float(self.offline_minutes), 2),
            "boots": self.boots,
            "counters": dict(self.counters) if self.counters is not None else None,
            "revision": self.revision,
        }


@dataclass(slots=True)
class DailyAccumulator:
    """Running totals for the day in progress."""

    car_id: str
    day: int
    trips: int = 0
    trips_up: int = 0
    trips_down: int = 0
    run_s: float = 0.0
    relevels: int = 0
    door_cycles: int = 0
    door_reopenings: int = 0
    door_open_s: float = 0.0
    faults: Counter = field(default_factory=Counter)
    visits: int = 0
    maintenance_s: float = 0.0
    rq: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in _RQ_FIELDS})
    level_status: Counter = field(default_factory=Counter)
    offsets_mm: list[float] = field(default_factory=list)
    offline_s: float = 0.0
    boots: int = 0
    counters: dict[str, int] | None = None

    def add_trip(self, trip: Trip) -> None:
        self.trips += 1
        self.trips_up += trip.direction == "up"
        self.trips_down += trip.direction == "down"
        if trip.ride_quality is not None:
            for k in _RQ_FIELDS:
                v = getattr(trip.ride_quality, k)
                if v is not None:
                    self.rq[k].append(v)
        self.add_stop(trip.leveling)

    def add_stop(self, leveling: LevelingResult) -> None:
        self.level_status[leveling.status] += 1
        if leveling.offset_mm is not None:
            self.offsets_mm.append(abs(leveling.offset_mm))

    def add_door_cycle(self, cycle: DoorCycle) -> None:
        self.door_cycles += 1
        self.door_reopenings += cycle.reopenings
        self.door_open_s += cycle.open_s

    def add_fault(self, event: FaultEvent) -> None:
        if event.state == "raised":
            self.faults[event.type.value] += 1

    def add_visit(self, visit: MaintenanceVisit) -> None:
        self.visits += 1
        self.maintenance_s += visit.duration_s

    def record(self, until_ts: float | None = None) -> DailyRecord:
        """The day's record; `until_ts` makes it a partial one (the stream ended before the day)."""
        rq = {k: _percentiles(v) for k, v in self.rq.items()}
        offs = np.asarray(self.offsets_mm)
        leveling = {
            "stops": int(sum(self.level_status.values())),
            "level": self.level_status[LevelingStatus.LEVEL],
            "off_level": self.level_status[LevelingStatus.OFF_LEVEL],
            "outside_door_zone": self.level_status[LevelingStatus.OUTSIDE_DOOR_ZONE],
            "unknown": self.level_status[LevelingStatus.UNKNOWN],
            "abs_offset_mm_p50": round_or_none(float(np.median(offs)), 1) if len(offs) else None,
            "abs_offset_mm_p95": round_or_none(float(np.quantile(offs, 0.95)), 1) if len(offs) else None,
            "abs_offset_mm_max": round_or_none(float(offs.max()), 1) if len(offs) else None,
        }
        return DailyRecord(
            car_id=self.car_id,
            day=day_string(self.day),
            trips=self.trips,
            trips_up=self.trips_up,
            trips_down=self.trips_down,
            run_s=self.run_s,
            relevels=self.relevels,
            door_cycles=self.door_cycles,
            door_reopenings=self.door_reopenings,
            door_open_s=self.door_open_s,
            faults_by_type=dict(sorted(self.faults.items())),
            maintenance_visits=self.visits,
            maintenance_minutes=self.maintenance_s / 60,
            ride_quality=rq,
            leveling=leveling,
            offline_minutes=self.offline_s / 60,
            boots=self.boots,
            counters=self.counters,
            until_ts=until_ts,
        )


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values)
    return {
        "p50": round(float(np.median(a)), 2),
        "p95": round(float(np.quantile(a, 0.95)), 2),
        "max": round(float(a.max()), 2),
        "n": len(values),
    }
