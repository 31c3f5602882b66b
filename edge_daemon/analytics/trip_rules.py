"""Fault rules judged once per finished trip, and the streaks they count from trip to trip.

The engine's rules on the inputs (engine.py, `_RULES`) run on every state change against the car's
current state; these run when a trip's record is complete (kinematics, ride quality, levelling)
and need a run of trips to raise or to clear, so one odd trip neither raises nor clears a fault.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .config import AnalyticsConfig
from .faults import FaultBook, FaultEvent, FaultType
from .leveling import LevelingStatus
from .ride_quality import RideQuality, TripKinematics


class TripRules:
    """Overspeed, abnormal vibration, levelling and stuck zone sensors of one car."""

    def __init__(self, faults: FaultBook, config: AnalyticsConfig) -> None:
        self._faults = faults
        self.config = config
        self._vib_bad_run = self._vib_good_run = 0
        self._level_window: deque[bool] = deque(maxlen=config.leveling_window_stops)
        self._level_good_run = 0
        self._zone_stuck_run = 0

    def overspeed(self, kin: TripKinematics) -> list[FaultEvent]:
        """Raised where the speed first passed the limit and cleared where it fell back below; never
        without a rated speed (`None`: a guessed one raised false faults on every faster car)."""
        if self.config.rated_speed_mps is None:
            return []
        limit = self.config.rated_speed_mps * self.config.overspeed_ratio
        over = np.abs(kin.speed_mps) > limit
        if not over.any():
            return []
        i = int(np.argmax(over))
        j = i + int(np.argmin(over[i:])) if not over[i:].all() else len(over) - 1
        t_on, t_off = kin.t0 + i / kin.rate_hz, kin.t0 + j / kin.rate_hz
        detail = {"peak_speed_mps": round(float(kin.peak_speed_mps), 3), "limit_mps": round(float(limit), 3)}
        return self._faults.raise_(FaultType.OVERSPEED, t_on, "trip", **detail) + self._faults.clear(
            FaultType.OVERSPEED, t_off, "trip"
        )

    def vibration(self, start_ts: float, rq: RideQuality) -> list[FaultEvent]:
        over = rq.over_limits(self.config)
        if over:
            self._vib_bad_run += 1
            self._vib_good_run = 0
            if self._vib_bad_run >= self.config.abnormal_vibration_trips:
                return self._faults.raise_(FaultType.ABNORMAL_VIBRATION, start_ts, "trip", over_limits=",".join(over))
            return []
        self._vib_good_run += 1
        self._vib_bad_run = 0
        if self._vib_good_run >= self.config.abnormal_vibration_clear_trips:
            return self._faults.clear(FaultType.ABNORMAL_VIBRATION, start_ts, "trip")
        return []

    def leveling(self, status: LevelingStatus, ts: float, offset_mm: float | None) -> list[FaultEvent]:
        if status == LevelingStatus.UNKNOWN or status == LevelingStatus.OUTSIDE_DOOR_ZONE:
            return []  # outside the zone is its own fault (stopped_outside_door_zone)
        off = status == LevelingStatus.OFF_LEVEL
        self._level_window.append(off)
        self._level_good_run = 0 if off else self._level_good_run + 1
        if sum(self._level_window) >= self.config.leveling_fault_stops:
            offset = None if offset_mm is None else round(float(offset_mm), 1)
            return self._faults.raise_(FaultType.LEVELING_FAULT, ts, "trip", offset_mm=offset)
        if self._level_good_run >= self.config.leveling_clear_stops:
            return self._faults.clear(FaultType.LEVELING_FAULT, ts, "trip")
        return []

    def zone_sensors(self, start_ts: float, end_ts: float, zone_activity: int) -> list[FaultEvent]:
        """A trip long enough to pass a door zone that saw no zone sensor change: stuck sensors."""
        if zone_activity:
            self._zone_stuck_run = 0
            return self._faults.clear(FaultType.SENSOR_FAULT, end_ts, "zone_stuck")
        if end_ts - start_ts >= self.config.zone_stuck_min_s:
            self._zone_stuck_run += 1
            if self._zone_stuck_run >= self.config.zone_stuck_trips:
                return self._faults.raise_(FaultType.SENSOR_FAULT, end_ts, "zone_stuck", reason="zone_sensor_stuck")
        return []
