"""Every fault type on synthetic observation streams with known answers; clean traffic raises nothing."""

from __future__ import annotations

import numpy as np
import pytest
from support.analytics_synth import CarStream
from liftwatch.edge_daemon.analytics import (
    AnalyticsConfig,
    CarAnalytics,
    FaultEvent,
    FaultType,
    MaintenanceVisit,
    Trip,
)
from liftwatch.edge_daemon.analytics.common import iso_utc
from liftwatch.edge_daemon.analytics.faults import ResponseSign
from liftwatch.edge_daemon.observations import (
    BoardBooted,
    BoardEvent,
    InputsChanged,
    LinkState,
    MotionChanged,
)


def _noise(seed=1, mg=1.0):
    rng = np.random.default_rng(seed)
    return lambda t: rng.normal(0.0, mg, len(t))


def events(out, ftype=None):
    return [o for o in out if isinstance(o, FaultEvent) and (ftype is None or o.type == ftype)]


def trips(out):
    return [o for o in out if isinstance(o, Trip)]


def states(out, ftype):
    return [e.state for e in events(out, ftype)]


def last_stop(stream) -> float:
    return [o.ts for o in stream.obs if isinstance(o, MotionChanged) and o.motion == 0][-1]


def door_opened(stream, n: int = -1) -> float:
    return [o.ts for o in stream.obs if hasattr(o, "inputs") and not o.inputs & 1][n]


def run(stream, cfg, car="car-1"):
    return stream.run(CarAnalytics(car, cfg))


CFG = AnalyticsConfig(floor_count=6)


def busy_stream(cfg=CFG, seed=3):
    """Normal service: passengers ride, doors cycle, the car visits both terminal floors."""
    s = CarStream(cfg)
    s.wait(5)
    for k, floors in enumerate([2, 3, -5, 1, 4, -2, -3, 1]):
        s.set(presence=True).door_cycle(open_s=3.0, reopen=[1.0] if k == 2 else ()).wait(1.5)
        s.trip(floors, vib_mg=_noise(seed + k)).wait(0.8)
        s.door_cycle(open_s=3.0).set(presence=False).wait(20)
    return s


def test_clean_traffic_raises_nothing_and_counts_trips():
    out = run(busy_stream(), CFG)
    assert events(out) == []
    got = trips(out)
    assert [t.floors for t in got] == [2, 3, 5, 1, 4, 2, 3, 1]
    assert [t.direction for t in got] == ["up", "up", "down", "up", "up", "down", "down", "up"]
    # anchored once the car has spanned 6 landings (trip 3 ends at the bottom)
    assert [t.to_floor for t in got] == [None, None, 1, 2, 6, 4, 1, 2]
    assert got[2].from_floor == 6
    assert all(t.leveling.status.value == "level" for t in got)
    assert all(t.peak_speed_mps == pytest.approx(1.0, abs=0.02) for t in got)
    daily = out[-1]
    assert daily.kind == "daily" and daily.partial
    assert daily.trips == 8 and daily.door_cycles == 16 and daily.door_reopenings == 1
    assert daily.faults_by_type == {}


def test_entrapment_between_floors_after_15_s_and_stopped_outside_zone_after_5_s():
    s = CarStream(CFG).wait(2).set(presence=True).wait(1)
    s.trip(1, offset_mm=1400)  # stops 1.4 m above the landing: outside any door zone
    stop = last_stop(s)
    s.wait(40)
    s.trip(-1).wait(1)  # rescue run down past that landing (in zone again) to the one below
    back = last_stop(s)
    s.door_cycle(open_s=5).set(presence=False).wait(5)
    out = run(s, CFG)
    ent = events(out, FaultType.ENTRAPMENT)
    assert [e.state for e in ent] == ["raised", "cleared"]
    assert ent[0].event_ts == pytest.approx(stop + 15.0, abs=1e-6)
    assert ent[0].gbt24476_code == 1 and ent[0].detail["in_door_zone"] is False
    zone_again = next(o.ts for o in s.obs if hasattr(o, "inputs") and o.inputs & 6 and o.ts > stop)
    assert back > zone_again
    assert ent[1].event_ts == pytest.approx(door_opened(s), abs=1e-6)  # released when the door opened
    sto = events(out, FaultType.STOPPED_OUTSIDE_DOOR_ZONE)
    assert [e.state for e in sto] == ["raised", "cleared"]
    assert sto[0].event_ts == pytest.approx(stop + 5.0, abs=1e-6)
    assert sto[0].gbt24476_code == 7
    assert sto[1].event_ts == pytest.approx(zone_again, abs=1e-6)


def test_entrapment_at_a_floor_needs_90_s_and_clears_when_the_door_opens():
    s = CarStream(CFG).wait(2).set(presence=True).wait(1)
    s.trip(2)
    stop = last_stop(s)
    s.wait(100).door_cycle(open_s=4)
    opened = door_opened(s)
    s.wait(3)
    out = run(s, CFG)
    ent = events(out, FaultType.ENTRAPMENT)
    assert [e.state for e in ent] == ["raised", "cleared"]
    assert ent[0].event_ts == pytest.approx(stop + 90.0, abs=1e-6)
    assert ent[1].event_ts == pytest.approx(opened, abs=1e-6)
    assert ent[1].duration_s == pytest.approx(opened - stop - 90.0, abs=1e-6)
    assert events(out, FaultType.STOPPED_OUTSIDE_DOOR_ZONE) == []


def test_no_entrapment_when_the_door_opens_in_time_or_nobody_is_inside():
    s = CarStream(CFG).wait(2).set(presence=True).wait(1)
    s.trip(2).wait(60).door_cycle().set(presence=False).wait(200)  # empty car parked 200 s
    # 60 s behind a shut door at the landing is no entrapment yet, but the door failed to open
    assert {e.type for e in events(run(s, CFG))} == {FaultType.DOOR_FAILS_TO_OPEN}


def test_moving_with_door_open_raised_after_debounce_and_cleared_when_the_car_stops():
    s = CarStream(CFG).wait(2)
    s.trip(3, door_open_during=True)
    s.wait(1).set(door_closed=True).wait(2)
    out = run(s, CFG)
    ev = events(out, FaultType.MOVING_WITH_DOOR_OPEN)
    assert [e.state for e in ev] == ["raised", "cleared"]
    assert ev[0].event_ts == pytest.approx(door_opened(s, 0) + 0.5, abs=1e-6)
    assert ev[1].event_ts == pytest.approx(last_stop(s), abs=1e-6)
    assert ev[0].gbt24476_code == 2


def test_doors_opening_in_advance_while_levelling_are_not_a_fault():
    s = CarStream(CFG).wait(2)
    s.trip(1)
    stop = [o for o in s.obs if isinstance(o, MotionChanged) and o.motion == 0][-1]
    s.obs.remove(stop)  # the door opens 0.2 s before the stop, in the zone, decelerating
    s.add(MotionChanged(stop.ts, 0))
    s.door_closed = False
    s.emit_inputs(ts=stop.ts - 0.2)
    s.wait(3).set(door_closed=True).wait(2)
    assert events(run(s, CFG), FaultType.MOVING_WITH_DOOR_OPEN) == []


def test_doors_open_at_the_landing_before_the_board_reports_rest_are_not_a_fault():
    s = CarStream(CFG).wait(2)
    s.trip(1)
    stop = [o for o in s.obs if isinstance(o, MotionChanged) and o.motion == 0][-1]
    decel = [o for o in s.obs if isinstance(o, MotionChanged) and o.motion == 3][-1]
    s.obs.remove(stop)
    s.obs.remove(decel)  # a gentle stop: the board never saw the deceleration, still "moving"
    s.add(MotionChanged(stop.ts + 1.0, 0))  # and says rest only a second after the stop
    s.door_closed = False
    s.emit_inputs(ts=stop.ts)
    s.wait(3).set(door_closed=True).wait(2)
    assert events(run(s, CFG), FaultType.MOVING_WITH_DOOR_OPEN) == []


def test_leaving_a_landing_with_the_door_open_is_a_fault_even_inside_its_zone():
    s = CarStream(CFG).wait(2).set(door_closed=False).wait(2)
    s.trip(1)  # the car creeps away from the landing, door open (unintended movement)
    s.wait(1).set(door_closed=True).wait(2)
    out = run(s, CFG)
    ev = events(out, FaultType.MOVING_WITH_DOOR_OPEN)
    start = next(o.ts for o in s.obs if isinstance(o, MotionChanged) and o.motion == 1)
    # Timed from the first door-zone edge after the start: the car has left where it stood (the
    # board, integrating the displacement, raises its own EVENT sooner).
    edge = next(o.ts for o in s.obs if isinstance(o, InputsChanged) and o.ts > start and o.changed & 0b110)
    assert ev[0].event_ts == pytest.approx(edge + 0.5, abs=1e-6)
    assert ev[0].detail["in_door_zone"] is True


def test_a_passenger_jumping_at_the_landing_with_the_door_open_is_not_a_fault():
    """The board reports motion for a jump (it crosses the acceleration threshold) but the car never
    leaves the door zone it stands in: no zone edge, no fault, however long the board says moving."""
    s = CarStream(CFG).wait(2).set(door_closed=False).wait(2)
    t0 = s.t
    s.add(MotionChanged(t0, 1))
    s.add(MotionChanged(t0 + 0.3, 3))
    s.add(MotionChanged(t0 + 1.5, 0))  # 1.5 s "moving": three times the debounce
    s.t = t0 + 1.5
    s.wait(3).set(door_closed=True).wait(2)
    assert events(run(s, CFG), FaultType.MOVING_WITH_DOOR_OPEN) == []


def test_door_open_too_long():
    s = CarStream(CFG).wait(2).door_cycle(open_s=130).wait(3)
    out = run(s, CFG)
    ev = events(out, FaultType.DOOR_OPEN_TOO_LONG)
    assert [e.state for e in ev] == ["raised", "cleared"]
    assert ev[0].event_ts == pytest.approx(door_opened(s) + 120.0, abs=1e-6)
    assert ev[1].duration_s == pytest.approx(10.0, abs=1e-6)


def test_door_reopen_loop_raised_at_the_fifth_reopening_and_cleared_with_the_cycle():
    s = CarStream(CFG).wait(2).door_cycle(open_s=2, reopen=[1.0] * 6).wait(10)
    out = run(s, CFG)
    ev = events(out, FaultType.DOOR_REOPEN_LOOP)
    assert [e.state for e in ev] == ["raised", "cleared"]
    assert ev[0].event_ts == pytest.approx(door_opened(s, 5), abs=1e-6)
    assert ev[1].event_ts == pytest.approx(s.obs[-1].ts, abs=1e-6)
    assert out[-1].door_reopenings == 6


def test_a_few_reopenings_are_normal():
    s = CarStream(CFG).wait(2).door_cycle(open_s=2, reopen=[1.0] * 3).wait(10)
    assert events(run(s, CFG)) == []


def test_abnormal_vibration_after_two_rough_trips_cleared_after_three_smooth_ones():
    s = CarStream(CFG).wait(2)
    rough = lambda t: 13.0 * np.sin(2 * np.pi * 6.3 * t)
    starts = []
    for floors, vib in [(3, rough), (-3, rough), (3, rough), (-3, None), (3, None), (-3, None)]:
        starts.append(s.t)
        s.trip(floors, vib_mg=vib).wait(5)
    out = run(s, CFG)
    ev = events(out, FaultType.ABNORMAL_VIBRATION)
    assert [e.state for e in ev] == ["raised", "cleared"]
    assert ev[0].event_ts == pytest.approx(starts[1], abs=1e-6)
    assert ev[1].event_ts == pytest.approx(starts[5], abs=1e-6)
    assert "z_a95_pp_mg" in ev[0].detail["over_limits"]


def test_leveling_fault_after_three_off_level_stops_in_five():
    s = CarStream(CFG).wait(2)
    for k in range(8):
        s.trip(1 if k % 2 == 0 else -1, offset_mm=45.0 if k < 3 else 0.0).wait(3)
    out = run(s, CFG)
    got = trips(out)
    assert [t.leveling.status.value for t in got[:3]] == ["off_level"] * 3
    offsets = [t.leveling.offset_mm for t in got[:3]]
    assert offsets == [pytest.approx(45.0, abs=3.0), pytest.approx(-45.0, abs=3.0), pytest.approx(45.0, abs=3.0)]
    ev = events(out, FaultType.LEVELING_FAULT)
    assert [e.state for e in ev] == ["raised", "cleared"]
    assert ev[0].event_ts == pytest.approx(got[2].end_ts, abs=1e-6)
    assert ev[1].event_ts == pytest.approx(got[7].end_ts, abs=1e-6)


def test_overspeed_above_115_percent_of_rated_speed():
    s = CarStream(CFG).wait(2).trip(4, v_max=1.25).wait(3).trip(-4, v_max=1.0).wait(3)
    out = run(s, CFG)
    ev = events(out, FaultType.OVERSPEED)
    assert [e.state for e in ev] == ["raised", "cleared"]
    assert ev[0].detail["peak_speed_mps"] == pytest.approx(1.25, abs=0.02)
    t0 = trips(out)[0]
    assert t0.start_ts < ev[0].event_ts < ev[1].event_ts < t0.end_ts
    assert ev[0].gbt24476_code == 3


def test_alarm_button_held_two_seconds():
    s = CarStream(CFG).wait(2).set(alarm=True).wait(1).set(alarm=False).wait(3)
    pressed = s.t
    s.set(alarm=True).wait(5).set(alarm=False).wait(2)
    out = run(s, CFG)
    ev = events(out, FaultType.ALARM_BUTTON)
    assert [e.state for e in ev] == ["raised", "cleared"]
    assert ev[0].event_ts == pytest.approx(pressed + 2.0, abs=1e-6)
    assert ev[1].duration_s == pytest.approx(3.0, abs=1e-6)


def test_floor_position_lost_when_pulses_contradict_the_anchor_and_cleared_on_re_anchoring():
    cfg = AnalyticsConfig(floor_count=4)
    s = CarStream(cfg).wait(2)
    s.trip(3).wait(3).trip(-3).wait(3)  # spans 4 landings: anchored, at floor 1
    s.trip(3).wait(3)  # floor 4
    s.trip(2).wait(3)  # two more landings above the top one: a pulse was counted wrongly
    s.trip(-3).wait(3)  # spans 4 landings again: anchored anew
    out = run(s, cfg)
    got = trips(out)
    assert [t.to_floor for t in got] == [None, 1, 4, None, 1]
    ev = events(out, FaultType.FLOOR_POSITION_LOST)
    assert [e.state for e in ev] == ["raised", "cleared"]
    assert ev[0].event_ts == pytest.approx(got[3].end_ts, abs=1e-6)
    assert ev[0].gbt24476_code == 14
    assert ev[1].event_ts == pytest.approx(got[4].end_ts, abs=1e-6)


def test_sensor_fault_from_uncalibrated_motion_board_events_and_a_dead_zone_sensor():
    s = CarStream(CFG).wait(2)
    s.add(MotionChanged(s.t, 255)).wait(CFG.uncalibrated_grace_s + 10).add(MotionChanged(s.t, 0)).wait(2)
    s.add(BoardEvent(s.t, 77, 4, 1, {"reason": "whoami"})).wait(5).add(BoardEvent(s.t, 77, 4, 0, {})).wait(2)
    s.zones_dead = True
    s.emit_inputs()
    for k in range(4):
        s.trip(3 if k % 2 == 0 else -3).wait(3)
    s.zones_dead = False
    s.emit_inputs()
    s.trip(-1).wait(3)  # the sensor is back: pulses again
    out = run(s, CFG)
    ev = events(out, FaultType.SENSOR_FAULT)
    assert [(e.state, e.detail.get("source") if e.state == "raised" else None) for e in ev] == [
        ("raised", "uncalibrated"),
        ("cleared", None),
        ("raised", "board"),
        ("cleared", None),
        ("raised", "zone_stuck"),
        ("cleared", None),
    ]
    assert ev[4].event_ts == pytest.approx(trips(out)[2].end_ts, abs=1e-6)


def test_a_new_board_calibrating_itself_within_the_grace_raises_nothing_a_longer_spell_is_timed():
    s = CarStream(CFG).wait(2)
    s.add(MotionChanged(s.t, 255)).wait(3).add(MotionChanged(s.t, 0)).wait(120)  # bench-fresh: calibrated in 3 s
    t_again = s.t
    s.add(MotionChanged(s.t, 255)).wait(CFG.uncalibrated_grace_s + 30).add(MotionChanged(s.t, 0)).wait(2)
    ev = events(run(s, CFG), FaultType.SENSOR_FAULT)
    assert [e.state for e in ev] == ["raised", "cleared"]
    assert ev[0].event_ts == pytest.approx(t_again + CFG.uncalibrated_grace_s, abs=1e-6)
    assert ev[1].event_ts == pytest.approx(t_again + CFG.uncalibrated_grace_s + 30, abs=1e-6)


def test_board_offline_raised_and_cleared_and_counted_in_minutes():
    s = CarStream(CFG).wait(2)
    s.add(LinkState(s.t, False)).wait(600)
    s.add(LinkState(s.t, True)).wait(5)
    out = run(s, CFG)
    ev = events(out, FaultType.BOARD_OFFLINE)
    assert [e.state for e in ev] == ["raised", "cleared"]
    assert ev[1].duration_s == pytest.approx(600.0)
    assert out[-1].offline_minutes == pytest.approx(10.0)


def test_one_fault_seen_by_the_board_and_the_daemon_is_reported_once():
    s = CarStream(CFG).wait(2)
    s.add(BoardEvent(s.t + 1.0, 5, 3, 1, {})).set(alarm=True).wait(4)
    s.set(alarm=False).add(BoardEvent(s.t + 0.5, 5, 3, 0, {})).wait(3)
    out = run(s, CFG)
    ev = events(out, FaultType.ALARM_BUTTON)
    assert [e.state for e in ev] == ["raised", "cleared"]
    assert ev[1].event_ts == pytest.approx(s.t - 3 + 0.5, abs=1e-6)  # the last source let go


def test_a_board_reboot_voids_its_events_and_the_trip_it_cut():
    s = CarStream(CFG).wait(2)
    s.add(BoardEvent(s.t, 9, 4, 1, {})).wait(2)
    s.trip(2)
    boot_at = [o.ts for o in s.obs if isinstance(o, MotionChanged)][-2]  # decelerating
    s.obs = [o for o in s.obs if (getattr(o, "ts_end", None) or o.ts) < boot_at]
    s.add(BoardBooted(boot_at + 0.1, 2, "wdt")).wait(5)
    out = run(s, CFG)
    assert trips(out) == []
    assert states(out, FaultType.SENSOR_FAULT) == ["raised", "cleared"]
    assert out[-1].boots == 1


def test_inspection_freezes_the_rules_and_a_fixed_fault_clears_when_service_resumes():
    s = CarStream(CFG).wait(2).set(door_closed=False).wait(130)  # door_open_too_long raised at 120 s
    s.set(inspection=True).wait(60)  # technician arrives
    s.set(door_closed=True).wait(300)
    s.set(door_closed=False).wait(200).set(door_closed=True).wait(30)  # door tests: no fault
    s.set(inspection=False)
    resumed = s.t
    s.wait(700)
    out = run(s, CFG)
    ev = events(out, FaultType.DOOR_OPEN_TOO_LONG)
    assert [e.state for e in ev] == ["raised", "cleared"]
    assert ev[1].event_ts == pytest.approx(resumed, abs=1e-6)
    assert ev[1].response_s == pytest.approx(10.0, abs=1e-6)
    assert ev[1].repair_s == pytest.approx(resumed - ev[0].event_ts, abs=1e-6)
    visit = [o for o in out if isinstance(o, MaintenanceVisit)]
    assert len(visit) == 1
    assert visit[0].faults_responded[0]["type"] == "door_open_too_long"
    assert visit[0].faults_responded[0]["response_s"] == pytest.approx(10.0)


def _trapped_then_moved(v_max: float):
    """Trapped between floors, the alarm pressed after 30 s; 10 min later the car moves to the
    landing below at `v_max`, the door opens and the passenger leaves."""
    s = CarStream(CFG).wait(2).set(presence=True).wait(1)
    s.trip(1, offset_mm=1400)
    s.wait(30).set(alarm=True).wait(3).set(alarm=False).wait(600)
    s.trip(-1, v_max=v_max, ramp_s=0.5, to_m=3.0)
    move = [o.ts for o in s.obs if isinstance(o, MotionChanged) and o.motion == 1][-1]
    s.wait(1).set(door_closed=False).wait(6).set(presence=False).wait(4).set(door_closed=True).wait(10)
    return s, move


def test_a_rescue_speed_move_is_the_response_and_the_entrapment_reports_alarm_release_and_empty_car():
    s, move = _trapped_then_moved(0.3)
    out = run(s, CFG)
    ent = events(out, FaultType.ENTRAPMENT)
    assert [e.state for e in ent] == ["raised", "cleared"]
    cleared = ent[1]
    assert cleared.response_sign == ResponseSign.RESCUE_MOVE
    assert cleared.response_s == pytest.approx(move - ent[0].event_ts, abs=1e-6)
    opened = next(o.ts for o in s.obs if hasattr(o, "inputs") and o.ts > move and not o.inputs & 1)
    assert cleared.event_ts == pytest.approx(opened, abs=1e-6)  # released when the door opened
    msg = cleared.to_message()
    assert msg["response_sign"] == "rescue_move"
    d = msg["detail"]
    assert d["released_at_landing"] is True and d["release_ts"] == msg["event_ts"]
    alarm = next(o.ts for o in s.obs if hasattr(o, "inputs") and o.inputs & 32)
    empty = next(o.ts for o in s.obs if hasattr(o, "inputs") and o.ts > opened and not o.inputs & 8)
    assert d["alarm_ts"] == iso_utc(alarm) and d["emptied_ts"] == iso_utc(empty)
    # the stopped-outside-zone fault cleared while the move's VIB was still on its way: same answer
    sto = events(out, FaultType.STOPPED_OUTSIDE_DOOR_ZONE)[1]
    assert sto.response_sign == ResponseSign.RESCUE_MOVE and sto.response_s is not None


def test_a_move_at_rated_speed_is_no_response():
    s, _ = _trapped_then_moved(1.0)
    ent = events(run(s, CFG), FaultType.ENTRAPMENT)
    assert [e.state for e in ent] == ["raised", "cleared"]
    assert ent[1].response_s is None and ent[1].response_sign is None and ent[1].repair_s is None
    assert ent[1].detail["released_at_landing"] is True


def test_a_released_car_that_does_not_empty_is_reported_released_not_empty():
    s = CarStream(CFG).wait(2).set(presence=True).wait(1)
    s.trip(1, offset_mm=1400).wait(40)
    s.set(door_closed=False).wait(120)  # the door forced open between floors; the sensor still sees someone
    out = run(s, CFG)
    (cleared,) = [e for e in events(out, FaultType.ENTRAPMENT) if e.state == "cleared"]
    assert cleared.event_ts == pytest.approx(door_opened(s), abs=1e-6)
    assert cleared.detail["released_at_landing"] is False and "emptied_ts" not in cleared.detail


def test_door_fails_to_open_at_a_landing_with_someone_inside():
    s = CarStream(CFG).wait(2).set(presence=True).wait(1)
    s.trip(2)
    stop = last_stop(s)
    s.wait(20).door_cycle(open_s=4).set(presence=False).wait(5)
    out = run(s, CFG)
    ev = events(out, FaultType.DOOR_FAILS_TO_OPEN)
    assert [e.state for e in ev] == ["raised", "cleared"]
    assert ev[0].event_ts == pytest.approx(stop + 15.0, abs=1e-6) and ev[0].gbt24476_code is None
    assert ev[1].event_ts == pytest.approx(door_opened(s), abs=1e-6)
    # the door opening within 15 s, an empty car, or a car that never ran: nothing
    for stream in (
        CarStream(CFG).wait(2).set(presence=True).wait(1).trip(2).wait(10).door_cycle().wait(30),
        CarStream(CFG).wait(2).trip(2).wait(60),
        CarStream(CFG).wait(2).set(presence=True).wait(60),
    ):
        assert events(run(stream, CFG)) == []


def test_overtravel_at_the_top_and_bottom_terminals():
    s = CarStream(CFG).wait(2).trip(5).wait(2).trip(-5).wait(2)  # spans the 6 landings: anchored
    s.trip(5, offset_mm=400).wait(10)  # 400 mm past the top landing
    top = last_stop(s)
    s.trip(-1).wait(3)
    s.trip(-4, offset_mm=300).wait(10)  # 300 mm below the bottom landing
    bottom = last_stop(s)
    s.trip(1, to_m=0.0).wait(3)
    out = run(s, CFG)
    up, down = events(out, FaultType.OVERTRAVEL_TOP), events(out, FaultType.OVERTRAVEL_BOTTOM)
    assert [e.state for e in up] == [e.state for e in down] == ["raised", "cleared"]
    assert up[0].event_ts == pytest.approx(top, abs=1e-6) and down[0].event_ts == pytest.approx(bottom, abs=1e-6)
    assert up[0].detail["past_landing_mm"] == pytest.approx(400, abs=5)
    assert down[0].detail["past_landing_mm"] == pytest.approx(300, abs=5)
    # a stop 250 mm past the top: beyond the door zone, below the 300 mm configured
    s = CarStream(CFG).wait(2).trip(5).wait(2).trip(-5).wait(2).trip(5, offset_mm=250).wait(10)
    assert events(run(s, AnalyticsConfig(floor_count=6, overtravel_mm=300)), FaultType.OVERTRAVEL_TOP) == []
    assert events(run(s, CFG), FaultType.OVERTRAVEL_TOP)  # 150 mm by default
    # not anchored (floor_count unknown): which landing is the terminal is unknown, nothing is said
    assert events(run(s, AnalyticsConfig()), FaultType.OVERTRAVEL_TOP) == []


def test_power_loss_from_the_mains_input_with_who_was_inside():
    s = CarStream(CFG).wait(2).set(mains=True).wait(5).set(presence=True).wait(1)
    s.set(mains=False).wait(4).set(presence=False).wait(300).set(mains=True).wait(5)
    out = run(s, CFG)
    ev = events(out, FaultType.POWER_LOSS)
    assert [e.state for e in ev] == ["raised", "cleared"]
    cut = next(o.ts for o in s.obs if hasattr(o, "inputs") and o.ts > s.obs[0].ts + 3 and not o.inputs & 64)
    assert ev[0].event_ts == pytest.approx(cut + 1.0, abs=1e-6) and ev[0].detail["occupied"] is True
    assert ev[1].duration_s == pytest.approx(304.0 - 1.0, abs=1e-6) and ev[1].detail["occupied"] is True
    s = CarStream(CFG).wait(2).set(mains=True).wait(5).set(mains=False).wait(60).set(mains=True).wait(5)
    (cleared,) = [e for e in events(run(s, CFG), FaultType.POWER_LOSS) if e.state == "cleared"]
    assert cleared.detail["occupied"] is False


def test_an_unwired_mains_input_is_never_a_power_loss():
    s = CarStream(CFG).wait(2).set(presence=True).wait(600)  # the input never read "present"
    assert events(run(s, CFG), FaultType.POWER_LOSS) == []


def test_a_re_levelling_with_the_door_open_owes_no_door_opening():
    """The car re-levels at the landing with the door open; passengers board, the door closes and
    nobody has pressed a button yet: the door did open, nothing failed."""
    s = CarStream(CFG).wait(2).trip(2, offset_mm=10).wait(1).set(door_closed=False).wait(2)
    s.trip(-1, to_m=6.0, ramp_s=0.6, v_max=0.05).wait(2)  # a 1.2 s creep back to level, door open
    s.set(presence=True).wait(3).set(door_closed=True).wait(40)
    assert events(run(s, CFG), FaultType.DOOR_FAILS_TO_OPEN) == []


def test_a_link_gap_inside_a_door_open_move_is_one_fault_not_two():
    """Found over BLE (hil_tests/test_ble.py, the link dropped a second after the door opened on the
    move): the board raised door_open_while_moving, the link dropped before the host's 0.5 s debounce
    ran out, the car arrived and stopped unseen, the board cleared its event; at the reconnect the host
    judged its rules on the inputs of before the gap (moving, door open, outside any zone) and raised
    the fault a second time. After a gap no rule is judged until the session says what the inputs
    are now (its next STATE or HEARTBEAT)."""
    eng = CarAnalytics("car-1", CFG)
    out = []
    for o in (
        InputsChanged(100.0, 0b111, 0xFF), MotionChanged(100.0, 0),  # at a landing, door shut
        MotionChanged(110.0, 1),  # leaves
        InputsChanged(110.3, 0b011, 0b100), InputsChanged(110.7, 0b001, 0b010),  # out of its zone
        InputsChanged(112.3, 0b000, 0b001),  # the door opens on the move
        BoardEvent(112.35, 1, 1, 1),  # the board's door_open_while_moving
        MotionChanged(112.5, 2),
        LinkState(112.6, False),  # the link drops before the host's debounce ran out
        LinkState(120.0, True),  # back: the car arrived and stopped meanwhile
        BoardEvent(118.0, 2, 1, 0),  # the board's clear, sent after the gap
    ):
        out += eng.feed(o)
    for t in (120.2, 120.6, 121.0, 122.0):  # the daemon's ticks while the board says nothing new
        out += eng.tick(t)
    out += eng.feed(InputsChanged(123.0, 0b111, 0b001))  # the next STATE: level, door shut
    out += eng.feed(MotionChanged(123.0, 0))
    out += eng.tick(130.0)
    ev = events(out, FaultType.MOVING_WITH_DOOR_OPEN)
    assert [(e.state, e.event_ts) for e in ev] == [("raised", 112.35), ("cleared", 118.0)]
    assert [e.state for e in events(out, FaultType.BOARD_OFFLINE)] == ["raised", "cleared"]


def test_after_a_link_gap_rules_resume_on_the_inputs_the_board_reports():
    """The other side of the same rule: a car still moving with its door open after the gap is
    judged again from the first report, and raised once."""
    eng = CarAnalytics("car-1", CFG)
    out = []
    for o in (
        InputsChanged(100.0, 0b111, 0xFF), MotionChanged(100.0, 0), MotionChanged(110.0, 1),
        InputsChanged(110.3, 0b011, 0b100), InputsChanged(110.7, 0b001, 0b010), MotionChanged(111.0, 2),
        LinkState(111.5, False), LinkState(115.0, True),
    ):
        out += eng.feed(o)
    out += eng.tick(116.0)
    assert events(out, FaultType.MOVING_WITH_DOOR_OPEN) == []
    out += eng.feed(InputsChanged(117.0, 0b000, 0b001))  # the door is open now, still moving
    out += eng.tick(118.0)
    assert [(e.state, e.event_ts) for e in events(out, FaultType.MOVING_WITH_DOOR_OPEN)] == [("raised", 117.5)]
