"""Leveling of the car at each stop, from the two door-zone sensors and, when VIB allows, the speed.

Geometry (positions in mm, car reference = midpoint between the sensors, 0 = level with the
landing, positive = car sill above the landing sill): the vane spans [-L/2, L/2], the upper
sensor sits at y + d/2, the lower one at y - d/2 (L = vane length, d = sensor spacing).
Both covered: |y| <= (L-d)/2. Only the upper one: the car is below the landing. Only the lower
one: above. Neither: outside the door zone. A zone edge happens at a known y, so the offset at
the stop is that y plus the travel integrated from the edge to the stop, clamped to what the
sensors still allow.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .common import round_or_none
from .config import AnalyticsConfig
from .ride_quality import TripKinematics

__all__ = ["LevelingResult", "LevelingStatus", "ZoneEdge", "edge_position_mm", "estimate_leveling"]


class LevelingStatus(str, enum.Enum):
    LEVEL = "level"
    OFF_LEVEL = "off_level"
    OUTSIDE_DOOR_ZONE = "outside_door_zone"
    UNKNOWN = "unknown"  # zone inputs not known (e.g. just after a board reboot)


@dataclass(frozen=True, slots=True)
class ZoneEdge:
    """One zone sensor changed. `sensor` is "up" or "dn"; `covered` its state after the change."""

    ts: float
    sensor: str
    covered: bool


@dataclass(frozen=True, slots=True)
class LevelingResult:
    ts: float  # the stop
    status: LevelingStatus
    offset_mm: float | None  # positive: car above the landing

    def to_message(self) -> dict[str, Any]:
        return {"status": self.status.value, "offset_mm": round_or_none(self.offset_mm, 1)}


def edge_position_mm(edge: ZoneEdge, moving_up: bool, config: AnalyticsConfig) -> float:
    """Car position when `edge` happened. Moving up, a sensor gets covered at the vane's bottom
    and uncovered at its top; moving down the other way round."""
    half_l = config.vane_length_mm / 2
    half_d = config.zone_sensor_spacing_mm / 2
    at_bottom = edge.covered == moving_up
    vane_end = -half_l if at_bottom else half_l
    return vane_end - half_d if edge.sensor == "up" else vane_end + half_d


def _feasible(zone_up: bool, zone_dn: bool, config: AnalyticsConfig) -> tuple[float, float]:
    half_l = config.vane_length_mm / 2
    half_d = config.zone_sensor_spacing_mm / 2
    if zone_up and zone_dn:
        return -(half_l - half_d), half_l - half_d
    if zone_up:
        return -(half_l + half_d), -(half_l - half_d)
    if zone_dn:
        return half_l - half_d, half_l + half_d
    return float("-inf"), float("inf")


def estimate_leveling(
    stop_ts: float,
    zone_up: bool | None,
    zone_dn: bool | None,
    last_edge: ZoneEdge | None,
    kinematics: TripKinematics | None,
    config: AnalyticsConfig,
) -> LevelingResult:
    """Leveling status at a stop, with an offset estimate when a zone edge and the speed allow."""
    if zone_up is None or zone_dn is None:
        return LevelingResult(stop_ts, LevelingStatus.UNKNOWN, None)
    if not zone_up and not zone_dn:
        return LevelingResult(stop_ts, LevelingStatus.OUTSIDE_DOOR_ZONE, None)
    offset = None
    if last_edge is not None and kinematics is not None and last_edge.ts <= stop_ts:
        v_edge = float(kinematics.speed_mps[kinematics.index(last_edge.ts)])
        if abs(v_edge) > 0.005:  # the sensor's direction of travel must be known at the edge
            y = edge_position_mm(last_edge, v_edge > 0, config)
            y += kinematics.displacement_m(last_edge.ts, stop_ts) * 1000.0
            lo, hi = _feasible(zone_up, zone_dn, config)
            offset = min(max(y, lo), hi)
    if zone_up and zone_dn:
        level = offset is None or abs(offset) <= config.level_tolerance_mm
    else:
        level = offset is not None and abs(offset) <= config.level_tolerance_mm
    return LevelingResult(stop_ts, LevelingStatus.LEVEL if level else LevelingStatus.OFF_LEVEL, offset)
