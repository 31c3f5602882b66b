"""BoardClock (edge_daemon/board_clock.py): a boot's t_ms unwrapped and mapped to UTC.

The session's tests (test_session.py) drive it through frames; these pin its own rules."""

from __future__ import annotations

import pytest

from liftwatch.edge_daemon.board_clock import MAX_SYNC_RTT_MS, T_MS_MODULO, TRIP_OFFSET_HOLD_MAX_MS, BoardClock


def test_unwrap_takes_the_nearest_wrap_and_a_late_frame_does_not_move_it_back() -> None:
    c = BoardClock()
    assert c.unwrap(T_MS_MODULO - 100) == T_MS_MODULO - 100
    assert c.unwrap(50) == T_MS_MODULO + 50  # wrapped
    assert c.unwrap(T_MS_MODULO - 10) == T_MS_MODULO - 10  # sent before the last one
    assert c.last_unwrapped == T_MS_MODULO + 50
    assert c.peek(60) == T_MS_MODULO + 60 and c.last_unwrapped == T_MS_MODULO + 50


def test_after_days_of_silence_the_host_time_decides_how_many_wraps_passed() -> None:
    c = BoardClock()
    c.unwrap(1000, host_ms=0.0)
    silence_ms = 2 * T_MS_MODULO + 5000  # the board ran on for 2 wraps and 5 s
    assert c.unwrap(6000, host_ms=silence_ms) == 2 * T_MS_MODULO + 6000


def test_offset_from_the_earliest_arrival_then_from_the_best_sync() -> None:
    c = BoardClock()
    c.observe_arrival(1000, 5_000_050.0)
    c.observe_arrival(2000, 5_001_080.0)  # more delayed: not better
    assert c.offset_ms == 5_000_050.0 - 1000 and c.to_utc_s(3000) == pytest.approx((5_000_050.0 + 2000) / 1000)
    assert not c.observe_sync(10_000.0, 500, 10_000.0 + MAX_SYNC_RTT_MS + 1)  # too slow to tell the offset
    assert c.observe_sync(10_000.0, 500, 10_040.0)
    assert c.offset_ms == 10_020.0 - 500 and c.synced
    c.observe_arrival(0, 0.0)  # once synced, arrivals no longer move it
    assert c.offset_ms == 10_020.0 - 500
    c.forget_offset()  # the host's wall clock was stepped
    assert (c.offset_ms, c.synced, c.sync_rtt_ms) == (None, False, None)


def test_a_trip_keeps_its_offset_until_it_ends_or_has_lasted_too_long() -> None:
    c = BoardClock(offset_ms=1000.0)
    c.unwrap(0)
    c.hold_for_trip(0)
    c.offset_ms = 9000.0  # a TIME_SYNC lands mid-trip
    assert c.to_utc_s(500) == 1.5
    c.unwrap(TRIP_OFFSET_HOLD_MAX_MS)
    c.expire_trip_hold()
    assert c.to_utc_s(500) == 1.5  # not yet too long
    c.unwrap(TRIP_OFFSET_HOLD_MAX_MS + 1)
    c.expire_trip_hold()
    assert c.to_utc_s(500) == 9.5


def test_a_payload_time_after_its_frame_takes_the_frame_time_and_replay_is_fixed() -> None:
    c = BoardClock.fixed(1_000_000.0)
    assert c.synced
    c.unwrap(5000)
    frame_ts = c.to_utc_s(5000)
    assert c.payload_utc_s(4000, frame_ts) == 1005.0 - 1.0
    assert c.payload_utc_s(9000, frame_ts) == frame_ts  # a previous boot's clock
