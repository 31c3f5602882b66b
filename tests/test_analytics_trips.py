"""Trip segmentation: door-zone pulses -> floors and direction; floor numbers once anchored."""

from __future__ import annotations

import pytest
from liftwatch.edge_daemon.analytics.trips import FloorTracker, edges_of, zone_passes


def _pass_up(t0: float):
    """The car passes one landing going up: the upper sensor leads in and out of the vane."""
    return [(t0, True, False), (t0 + 0.1, True, True), (t0 + 0.2, False, True), (t0 + 0.3, False, False)]


def _pass_down(t0: float):
    return [(t0, False, True), (t0 + 0.1, True, True), (t0 + 0.2, True, False), (t0 + 0.3, False, False)]


def _leave_up(t0):
    return [(t0, False, True), (t0 + 0.1, False, False)]


def _arrive_up(t0):
    return [(t0, True, False), (t0 + 0.1, True, True)]


def test_three_floors_up_from_level_to_level():
    changes = _leave_up(0) + _pass_up(1) + _pass_up(2) + _arrive_up(3)
    p = zone_passes(True, True, changes)
    assert (p.entries, p.direction, p.down_votes, p.ambiguous) == (3, 1, 0, 0)


def test_two_floors_down():
    changes = [(0, True, False), (0.1, False, False)] + _pass_down(1) + [(2, False, True), (2.1, True, True)]
    p = zone_passes(True, True, changes)
    assert (p.entries, p.direction) == (2, -1)


def test_simultaneous_changes_count_the_landing_but_cast_no_vote():
    changes = [(0, False, False), (1, True, True)]
    p = zone_passes(True, True, changes)
    assert (p.entries, p.up_votes, p.down_votes, p.ambiguous) == (1, 0, 0, 2)
    assert p.direction == 0


def test_edges_of_lists_each_sensor_change():
    e = edges_of(True, True, _leave_up(0))
    assert [(x.sensor, x.covered) for x in e] == [("up", False), ("dn", False)]


def test_floor_tracker_anchors_when_the_car_has_spanned_the_building():
    f = FloorTracker(floor_count=5, lowest_floor=-1)
    assert f.on_trip(1, 2, True, True).to_floor is None  # tracking starts here
    assert f.on_trip(1, 2, True, True).to_floor is None  # span 2
    u = f.on_trip(-1, 4, True, True)  # span 4 = 5 landings: this is the bottom, -1
    assert (u.from_floor, u.to_floor, u.anchored) == (3, -1, True)
    assert f.on_trip(1, 1, True, True).to_floor == 0


def test_floor_tracker_stop_between_floors_then_continue():
    f = FloorTracker(floor_count=3, lowest_floor=1)
    f.on_trip(1, 2, True, True)
    f.on_trip(-1, 2, True, True)  # anchored: floor 1
    u = f.on_trip(1, 0, True, False)  # left floor 1, stopped before floor 2
    assert u.to_floor is None and f.floor() is None
    assert f.on_trip(-1, 1, False, True).to_floor == 1  # back down: the first landing is 1
    f.on_trip(1, 0, True, False)
    assert f.on_trip(1, 1, False, True).to_floor == 2  # on up: the first landing is 2


def test_floor_tracker_relevel_inside_the_zone_keeps_the_floor():
    f = FloorTracker(floor_count=2, lowest_floor=1)
    f.on_trip(1, 1, True, True)
    f.on_trip(-1, 1, True, True)
    assert f.on_trip(0, 0, True, True).to_floor == 1


def test_floor_tracker_unknown_direction_drops_the_anchor():
    f = FloorTracker(floor_count=2, lowest_floor=1)
    f.on_trip(1, 1, True, True)
    f.on_trip(-1, 1, True, True)
    u = f.on_trip(0, 1, True, True)
    assert u.lost and not f.anchored and f.floor() is None


def test_floor_tracker_without_floor_count_never_numbers_floors():
    f = FloorTracker(floor_count=None, lowest_floor=1)
    for _ in range(5):
        assert f.on_trip(1, 3, True, True).to_floor is None
        assert f.on_trip(-1, 3, True, True).to_floor is None


@pytest.mark.parametrize("count", [2, 7])
def test_floor_tracker_detects_a_missed_pulse(count):
    f = FloorTracker(floor_count=count, lowest_floor=1)
    f.on_trip(1, count - 1, True, True)
    f.on_trip(-1, count - 1, True, True)
    assert f.anchored
    assert f.on_trip(-1, 1, True, True).lost  # below the bottom landing


def test_a_trip_without_ride_quality_says_why() -> None:
    """The status page showed "—" for many trips; the reason is one of: no VIB, one floor, too short."""
    from dataclasses import replace

    from liftwatch.edge_daemon.analytics.leveling import LevelingResult, LevelingStatus
    from liftwatch.edge_daemon.analytics.ride_quality import RideQuality
    from liftwatch.edge_daemon.analytics.trips import Trip

    judged = RideQuality(20.0, 12.0, 9.0, 6.0, 8.0, 5.0, 0.6, 0.9)
    no_plateau = RideQuality(None, None, None, None, None, None, 0.5, 0.8)
    trip = Trip("car-1", 0.0, 12.0, "up", 3, None, None, 1.0, 9.0, judged,
                LevelingResult(12.0, LevelingStatus.LEVEL, 2.0))
    assert trip.ride_quality_unjudged is None
    assert replace(trip, ride_quality=None).ride_quality_unjudged == "no_vib"
    assert replace(trip, ride_quality=no_plateau, floors=1).ride_quality_unjudged == "one_floor"
    assert replace(trip, ride_quality=no_plateau, floors=2).ride_quality_unjudged == "short"
