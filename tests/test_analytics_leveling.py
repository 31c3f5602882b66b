"""Leveling at a stop: status from the zone sensors, offset from the last edge plus integrated travel."""

from __future__ import annotations

import numpy as np
import pytest
from liftwatch.edge_daemon.analytics.config import AnalyticsConfig
from liftwatch.edge_daemon.analytics.leveling import (
    LevelingStatus,
    ZoneEdge,
    edge_position_mm,
    estimate_leveling,
)
from liftwatch.edge_daemon.analytics.ride_quality import TripKinematics

CFG = AnalyticsConfig(vane_length_mm=200, zone_sensor_spacing_mm=170)


@pytest.mark.parametrize(
    "sensor,covered,up,want",
    [
        ("up", True, True, -185.0),  # going up, upper sensor reaches the vane bottom
        ("dn", True, True, -15.0),  # lower sensor reaches it: level band entered
        ("up", False, True, 15.0),  # upper sensor leaves the top: level band left
        ("dn", False, True, 185.0),
        ("dn", True, False, 185.0),  # going down, lower sensor reaches the vane top
        ("up", True, False, 15.0),
        ("dn", False, False, -15.0),
        ("up", False, False, -185.0),
    ],
)
def test_edge_positions(sensor, covered, up, want):
    assert edge_position_mm(ZoneEdge(0.0, sensor, covered), up, CFG) == pytest.approx(want)


def _creep(v_mps: float, seconds: float, rate=400.0):
    n = int(seconds * rate) + 1
    return TripKinematics(t0=0.0, rate_hz=rate, speed_mps=np.full(n, v_mps), accel_mps2=np.zeros(n))


def test_offset_from_last_edge_and_creep_speed():
    # lower sensor covered at t=0 going up (car at -15 mm), then 0.1 m/s for 0.2 s: +5 mm
    kin = _creep(0.1, 0.2)
    r = estimate_leveling(0.2, True, True, ZoneEdge(0.0, "dn", True), kin, CFG)
    assert r.status is LevelingStatus.LEVEL
    assert r.offset_mm == pytest.approx(5.0, abs=0.5)


def test_offset_is_clamped_to_what_the_sensors_allow():
    kin = _creep(0.1, 1.0)  # integration says +85 mm but both sensors covered: at most +15
    r = estimate_leveling(1.0, True, True, ZoneEdge(0.0, "dn", True), kin, CFG)
    assert r.offset_mm == pytest.approx(15.0)


def test_only_the_upper_sensor_covered_means_below_the_landing_and_off_level():
    kin = _creep(0.1, 0.5)  # upper sensor covered at -185 going up, then +50 mm: -135
    r = estimate_leveling(0.5, True, False, ZoneEdge(0.0, "up", True), kin, CFG)
    assert r.status is LevelingStatus.OFF_LEVEL
    assert r.offset_mm == pytest.approx(-135.0, abs=1.0)


def test_without_speed_the_status_comes_from_the_sensors_alone():
    assert estimate_leveling(0, True, True, None, None, CFG).status is LevelingStatus.LEVEL
    r = estimate_leveling(0, False, True, None, None, CFG)
    assert (r.status, r.offset_mm) == (LevelingStatus.OFF_LEVEL, None)
    assert estimate_leveling(0, False, False, None, None, CFG).status is LevelingStatus.OUTSIDE_DOOR_ZONE
    assert estimate_leveling(0, None, None, None, None, CFG).status is LevelingStatus.UNKNOWN
    assert estimate_leveling(0, True, True, None, None, CFG).to_message() == {"status": "level", "offset_mm": None}
