"""CarAnalytics as a stream processor: VIB timing, gaps, ticks, keys, visits, days, config."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from support.analytics_synth import CarStream
from liftwatch.edge_daemon.analytics import (
    AnalyticsConfig,
    CarAnalytics,
    AnalyticsConfigError,
    DailyRecord,
    DoorCycle,
    FaultEvent,
    FaultType,
    MaintenanceVisit,
    Trip,
)
from liftwatch.edge_daemon.observations import (
    CountersSnapshot,
    FramesLost,
    InputsChanged,
    LinkState,
    MotionChanged,
    RestStats,
    VibBlock,
)

CFG = AnalyticsConfig(floor_count=6)


def of(out, cls):
    return [o for o in out if isinstance(o, cls)]


def feed_all(engine, observations):
    out = []
    for o in observations:
        out += engine.feed(o)
    return out


def test_vib_arriving_seconds_after_the_stop_is_waited_for():
    s = CarStream(CFG).wait(2).trip(2).wait(10)
    obs = s.sorted()
    vib = [o for o in obs if isinstance(o, VibBlock)]
    rest = [o for o in obs if not isinstance(o, VibBlock)]
    eng = CarAnalytics("c", CFG)
    out = feed_all(eng, rest)  # state first; the VIB comes 3 s late over a slow link
    assert of(out, Trip) == []
    late = vib[-1].ts_end + 3.0
    out = eng.tick(late - 0.5)
    assert of(out, Trip) == []
    out = feed_all(eng, vib)
    (trip,) = of(out, Trip)
    assert trip.peak_speed_mps == pytest.approx(1.0, abs=0.02) and trip.ride_quality is not None


def test_without_vib_the_trip_is_reported_after_the_wait_from_zone_pulses_alone():
    s = CarStream(CFG).wait(2).trip(-3, vib=False).wait(10)
    eng = CarAnalytics("c", CFG)
    out = feed_all(eng, s.sorted())
    stop = [o.ts for o in s.obs if isinstance(o, MotionChanged) and o.motion == 0][-1]
    assert of(out, Trip) == []
    assert of(eng.tick(stop + CFG.vib_wait_s - 0.1), Trip) == []
    (trip,) = of(eng.tick(stop + CFG.vib_wait_s), Trip)
    assert (trip.floors, trip.direction, trip.ride_quality, trip.peak_speed_mps) == (3, "down", None, None)
    assert trip.leveling.status.value == "level" and trip.leveling.offset_mm is None


def test_a_vib_gap_inside_the_trip_drops_ride_quality_but_keeps_the_trip():
    s = CarStream(CFG).wait(2).trip(3, gap_at=20).wait(10)
    (trip,) = of(s.run(CarAnalytics("c", CFG)), Trip)
    assert trip.floors == 3 and trip.ride_quality is None and trip.peak_speed_mps is None


def test_back_to_back_trips_each_start_their_vib_after_a_gap():
    """The board streams VIB only while moving: the next trip's first block follows a sample-index
    gap, and the previous trip's last blocks still fall inside the new trip's window."""
    s = CarStream(CFG).wait(2).trip(2).wait(0.8)
    n = len(s.obs)
    s.trip(-2).wait(10)
    first = next(i for i in range(n, len(s.obs)) if isinstance(s.obs[i], VibBlock))
    s.obs[first] = dataclasses.replace(s.obs[first], gap_before=1200)
    got = of(s.run(CarAnalytics("c", CFG)), Trip)
    assert [t.direction for t in got] == ["up", "down"]
    assert all(t.ride_quality is not None and t.peak_speed_mps == pytest.approx(1.0, abs=0.02) for t in got)


def test_a_dead_sensor_record_costs_the_ride_quality_only():
    s = CarStream(CFG).wait(2).trip(3).wait(10)
    s.obs = [dataclasses.replace(o, samples=o.samples * 0, gravity=(0, 0, 0)) if isinstance(o, VibBlock) else o
             for o in s.obs]
    eng = CarAnalytics("c", CFG)
    (trip,) = of(s.run(eng), Trip)
    assert (trip.floors, trip.direction, trip.ride_quality) == (3, "up", None)
    assert eng.vib_rejected == 1


def test_time_based_faults_fire_from_ticks_alone():
    eng = CarAnalytics("c", CFG)
    eng.feed(InputsChanged(1000.0, 0b1001, 0b1001))  # door closed, presence, between floors
    eng.feed(MotionChanged(1000.0, 0))
    out = []
    for k in range(1, 20):
        out += eng.tick(1000.0 + k)
    ev = of(out, FaultEvent)
    assert [(e.type, e.event_ts) for e in ev] == [
        (FaultType.STOPPED_OUTSIDE_DOOR_ZONE, 1005.0),
        (FaultType.ENTRAPMENT, 1015.0),
    ]


def test_a_state_change_counts_from_its_own_time_when_a_tick_ran_past_it():
    eng = CarAnalytics("c", CFG)
    eng.feed(InputsChanged(1000.0, 0b111, 0b111))
    eng.tick(1000.4)  # the host clock runs a little ahead of the board's frames
    eng.feed(InputsChanged(1000.2, 0b110, 0b1))  # door opened at 1000.2
    (ev,) = of(eng.tick(1000.2 + CFG.door_open_too_long_s), FaultEvent)
    assert ev.event_ts == pytest.approx(1000.2 + CFG.door_open_too_long_s)


def test_floor_numbers_restart_after_a_link_outage():
    cfg = AnalyticsConfig(floor_count=3)
    s = CarStream(cfg).wait(2).trip(2).wait(3).trip(-2).wait(3)  # anchored at floor 1
    s.add(LinkState(s.t, False)).wait(60)
    s.obs.append("cut")
    s.trip(1).wait(3)  # unseen: the link is down
    cut = s.obs.index("cut")
    unseen = len(s.obs)
    s.add(LinkState(s.t, True)).wait(2).trip(1).wait(3).trip(-2).wait(3)
    s.obs = s.obs[:cut] + s.obs[unseen:]
    got = of(s.run(CarAnalytics("c", cfg)), Trip)
    assert [t.to_floor for t in got] == [None, 1, None, 1]  # never the wrong floor 3
    assert not [e for e in of(s.run(CarAnalytics("c", cfg)), FaultEvent) if e.type is FaultType.FLOOR_POSITION_LOST]


def test_keys_are_stable_when_the_same_stream_is_computed_again():
    def keys():
        s = CarStream(CFG).wait(2).set(presence=True).trip(1, offset_mm=1400).wait(30)
        s.set(inspection=True).wait(60).set(inspection=False).wait(700)
        return [o.key for o in s.run(CarAnalytics("car-9", CFG))]

    first = keys()
    assert first == keys()
    assert len(set(first)) == len(first)
    assert all(k.startswith("car-9:") for k in first)


def test_maintenance_periods_join_across_short_gaps_and_short_visits_are_flagged():
    s = CarStream(CFG).wait(2)
    start = s.t
    s.set(inspection=True).wait(600).set(inspection=False).wait(300)  # 5 min gap: same visit
    s.set(inspection=True).trip(1).trip(-1).wait(1200).set(inspection=False)
    end = s.t
    s.wait(601)
    s.set(inspection=True).wait(3000).set(inspection=False).wait(700)  # a second, long visit
    out = s.run(CarAnalytics("c", CFG))
    v1, v2 = of(out, MaintenanceVisit)
    assert (v1.start_ts, v1.end_ts, v1.inspection_runs, v1.too_short) == (start, end, 2, True)
    assert v2.duration_s == pytest.approx(3000.0) and not v2.too_short and v2.inspection_runs == 0
    assert of(out, Trip) == []  # inspection runs are not passenger trips
    assert out[-1].maintenance_visits == 2
    assert out[-1].maintenance_minutes == pytest.approx((end - start + 3000.0) / 60)


def test_a_visit_the_data_end_inside_is_sent_in_progress_and_not_judged_short():
    s = CarStream(CFG).wait(2)
    start = s.t
    s.set(inspection=True).wait(600)  # the replay, or the demo's day, ends with the technician on site
    (visit,) = of(s.run(CarAnalytics("c", CFG)), MaintenanceVisit)
    assert visit.in_progress and not visit.too_short and visit.start_ts == start
    assert visit.to_message()["in_progress"] is True
    s.set(inspection=False).wait(60)  # switched off, then the data end inside the join gap: it ended
    (visit,) = of(s.run(CarAnalytics("c", CFG)), MaintenanceVisit)
    assert not visit.in_progress and visit.too_short


def test_slow_inspection_runs_between_landings_are_not_a_zone_sensor_fault():
    s = CarStream(CFG).wait(2).set(inspection=True)
    for way, to_m in [(1, 0.6), (1, 2.4), (-1, 0.6), (1, 2.4)]:  # 1.8 m at 0.3 m/s: 6.5 s, no landing
        s.trip(way, v_max=0.3, ramp_s=0.5, to_m=to_m).wait(5)
    s.trip(1, v_max=0.3, ramp_s=0.5, to_m=3.0).wait(5)  # back to a landing before leaving inspection
    s.set(inspection=False).wait(700)
    out = s.run(CarAnalytics("c", CFG))
    assert of(out, FaultEvent) == []
    (visit,) = of(out, MaintenanceVisit)
    assert visit.inspection_runs == 5


def test_response_time_of_a_fault_cleared_before_the_technician_came():
    s = CarStream(CFG).wait(2).set(alarm=True).wait(10).set(alarm=False).wait(1800)
    arrive = s.t
    s.set(inspection=True).wait(2500).set(inspection=False).wait(700)
    out = s.run(CarAnalytics("c", CFG))
    cleared = next(e for e in of(out, FaultEvent) if e.state == "cleared")
    assert cleared.response_s is None and cleared.repair_s is None  # not known when it cleared
    (visit,) = of(out, MaintenanceVisit)
    (answered,) = visit.faults_responded
    assert answered["type"] == "alarm_button"
    assert answered["response_s"] == pytest.approx(arrive - (s.obs[1].ts + 2.0), abs=1e-3)


def test_daily_records_follow_the_local_day_and_split_offline_time():
    cfg = dataclasses.replace(CFG, day_utc_offset_h=8.0)
    midnight_cst = 1_764_000_000 - (1_764_000_000 + 8 * 3600) % 86400 + 86400  # next local midnight
    s = CarStream(cfg, t0=midnight_cst - 3600)
    s.wait(60).trip(2).wait(60).trip(-2).wait(60)
    s.add(CountersSnapshot(s.t, door_cycles=10, trips=2)).wait(10)
    s.add(LinkState(midnight_cst - 600, False))
    s.t = midnight_cst + 900
    s.add(LinkState(s.t, True)).wait(5).trip(1).wait(10)
    out = s.run(CarAnalytics("c", cfg))
    days = of(out, DailyRecord)
    assert [(d.day, d.partial, d.trips) for d in days] == [("2025-11-25", False, 2), ("2025-11-26", True, 1)]
    assert days[0].offline_minutes == pytest.approx(10.0) and days[1].offline_minutes == pytest.approx(15.0)
    assert days[0].counters == {"door_cycles": 10, "trips": 2, "run_time_s": 0, "boots": 0, "fifo_overruns": 0,
                                "ring_overruns": 0, "link_drops": 0, "events_dropped": 0}
    assert days[0].faults_by_type == {"board_offline": 1}
    assert days[0].run_s == pytest.approx(2 * 8.5, abs=0.1)
    assert days[0].key == "c:daily:2025-11-25"
    assert days[1].key == f"c:daily:2025-11-26:partial:{round(s.t * 1000)}" and days[1].until_ts == s.t


def test_door_cycles_go_upstream_only_when_asked():
    s = CarStream(CFG).wait(2).door_cycle(open_s=5, reopen=[1.0]).wait(10)
    assert of(s.run(CarAnalytics("c", CFG)), DoorCycle) == []
    (cycle,) = of(s.run(CarAnalytics("c", dataclasses.replace(CFG, emit_door_cycles=True))), DoorCycle)
    assert (cycle.reopenings, cycle.open_s) == (1, pytest.approx(10.0))
    assert cycle.close_ts - cycle.open_ts == pytest.approx(11.0)


def test_relevelling_is_counted_not_reported_as_a_trip():
    eng = CarAnalytics("c", CFG)
    eng.feed(InputsChanged(10.0, 0b111, 0b111))
    eng.feed(MotionChanged(20.0, 1))
    eng.feed(MotionChanged(20.6, 0))
    out = eng.flush(40.0)
    assert of(out, Trip) == [] and out[-1].relevels == 1


def test_a_long_movement_inside_the_door_zone_is_a_relevel():
    eng = CarAnalytics("c", CFG)
    eng.feed(InputsChanged(10.0, 0b111, 0b111))
    eng.feed(MotionChanged(20.0, 1))
    eng.feed(InputsChanged(20.5, 0b101, 0b10))  # sank a little: upper sensor off the vane
    eng.feed(InputsChanged(21.5, 0b111, 0b10))
    eng.feed(MotionChanged(22.0, 0))
    out = eng.flush(40.0)
    assert of(out, Trip) == [] and out[-1].relevels == 1 and out[-1].trips == 0


@pytest.mark.parametrize("noise_mg", [0.0, 8.0])
def test_a_passenger_jumping_at_a_landing_is_no_relevel_but_a_creep_back_to_level_is(noise_mg):
    """Issue 16: a jump makes the board report a short motion, but the car bounces on its ropes and
    comes back (no zone edge, no travel); a 30 mm creep back to level, as short and as edgeless, is a
    re-levelling. With 8 mg of sensor noise (the STATS noise figure says so) the same holds."""
    cfg = dataclasses.replace(CFG, vane_length_mm=250.0, zone_sensor_spacing_mm=150.0)  # both on within +-50 mm
    s = CarStream(cfg).wait(2)
    if noise_mg:
        s.add(RestStats(s.t, 1000, (0, 0, 1000), (round(noise_mg),) * 3, 30))
    s.set(door_closed=False).wait(1)
    for k, peak in enumerate((150.0, 220.0, 300.0)):
        s.jump(peak, noise_mg=noise_mg, seed=k).wait(1)
    assert [o.motion for o in s.obs if isinstance(o, MotionChanged)] == [1, 0] * 3  # what the board reports
    out = s.run(CarAnalytics("c", cfg))
    assert out[-1].relevels == 0 and of(out, Trip) == [] and of(out, FaultEvent) == []

    s.trip(-1, ramp_s=0.3, to_m=s.pos_m - 0.03).wait(3)  # 0.6 s, inside the vane: no zone edge
    assert [o.changed for o in s.obs if isinstance(o, InputsChanged)] == [0b111, 0b1]  # the door opened
    out = s.run(CarAnalytics("c", cfg))
    assert out[-1].relevels == 1 and of(out, Trip) == []


def test_a_long_jumping_spell_inside_the_door_zone_is_no_relevel():
    """Jumps back to back keep the board's motion on past trip_min_s: still no edge and no travel."""
    s = CarStream(CFG).wait(2).set(door_closed=False).wait(1)
    s.jump(300.0, times=4).wait(3)  # motion for 1.35 s
    out = s.run(CarAnalytics("c", CFG))
    assert out[-1].relevels == 0 and of(out, Trip) == [] and of(out, FaultEvent) == []


def test_a_clock_jump_does_not_flood_daily_records():
    eng = CarAnalytics("c", CFG)
    eng.feed(InputsChanged(0.0, 0b111, 0b111))  # board time before the first TIME_SYNC
    out = eng.feed(InputsChanged(1_764_000_000.0, 0b110, 0b1))
    assert len(of(out, DailyRecord)) == 1


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"rated_speed_mps": 0}, "rated_speed_mps"),
        ({"floor_count": 1}, "floor_count"),
        ({"zone_sensor_spacing_mm": 250.0}, "zone_sensor_spacing_mm"),
        ({"leveling_fault_stops": 9}, "leveling_fault_stops"),
        ({"door_reopen_loop_count": 0}, "door_reopen_loop_count"),
    ],
)
def test_config_errors_name_the_field(kw, field):
    with pytest.raises(AnalyticsConfigError) as err:
        AnalyticsConfig(**kw)
    assert err.value.field == field


def test_an_unknown_observation_is_a_type_error():
    with pytest.raises(TypeError):
        CarAnalytics("c").feed(object())  # type: ignore[arg-type]


def _merge_adjacent_vib(observations, most: int):
    """What the session makes of a read: up to `most` adjacent contiguous VibBlocks as one block."""
    out = []
    for o in observations:
        prev = out[-1] if out else None
        if (isinstance(o, VibBlock) and isinstance(prev, VibBlock) and o.gap_before == 0
                and len(prev.samples) < most * len(o.samples) and o.rate_hz == prev.rate_hz
                and abs(o.ts_first - prev.ts_end) < 1e-6):
            out[-1] = VibBlock(prev.ts_first, prev.rate_hz, prev.lsb_per_g,
                               np.concatenate([prev.samples, o.samples]), prev.gravity, prev.gap_before)
        else:
            out.append(o)
    return out


@pytest.mark.parametrize("most", [2, 7, 1000])
def test_vib_merged_into_big_blocks_gives_the_trips_of_small_blocks(most):
    """The session merges each read's VIB frames into one block; analytics must not care."""
    s = CarStream(CFG).wait(2).trip(3).wait(0.5).door_cycle().trip(-2, gap_at=20).wait(1).trip(1).wait(10)
    small = s.sorted()
    big = _merge_adjacent_vib(small, most)
    assert len(of(big, VibBlock)) < len(of(small, VibBlock))
    eng_small, eng_big = CarAnalytics("c", CFG), CarAnalytics("c", CFG)
    want = feed_all(eng_small, small) + eng_small.flush(small[-1].ts + 10)
    got = feed_all(eng_big, big) + eng_big.flush(small[-1].ts + 10)
    assert len(of(want, Trip)) == 3 and sum(t.ride_quality is not None for t in of(want, Trip)) == 2
    assert [o.to_message() for o in got] == [o.to_message() for o in want]


def _trip_with_a_lost_zone_pulse(report_the_gap: bool):
    """A 3-floor trip whose second zone change never arrived; with the gap the session saw in the
    board's seq reported just before the next frame, as the session does."""
    s = CarStream(CFG).wait(2).trip(3, vib=False).wait(10)
    start = next(o.ts for o in s.obs if isinstance(o, MotionChanged) and o.motion == 1)
    zones = [i for i, o in enumerate(s.obs) if isinstance(o, InputsChanged) and o.ts > start]
    lost = zones[1]
    after = s.obs[zones[2]].ts
    del s.obs[lost]
    if report_the_gap:
        s.obs.append(FramesLost(ts=after, count=1))
    return s


def test_a_trip_that_lost_frames_reports_floors_and_leveling_unknown_not_wrong():
    (wrong,) = of(_trip_with_a_lost_zone_pulse(report_the_gap=False).run(CarAnalytics("c", CFG)), Trip)
    assert wrong.floors == 2  # what counting the pulses that arrived would claim
    out = _trip_with_a_lost_zone_pulse(report_the_gap=True).run(CarAnalytics("c", CFG))
    (trip,) = of(out, Trip)
    assert trip.floors is None and trip.direction == "up"  # the pulses seen still lead the same way
    assert trip.leveling.status.value == "unknown"
    assert not [f for f in of(out, FaultEvent) if f.type is FaultType.SENSOR_FAULT]


def test_frames_lost_at_rest_leave_the_next_trip_alone_unless_right_before_its_start():
    s = CarStream(CFG).wait(5)
    s.add(FramesLost(ts=s.t - 3.0, count=5))
    (trip,) = of(s.trip(3, vib=False).wait(10).run(CarAnalytics("c", CFG)), Trip)
    assert trip.floors == 3 and trip.leveling.status.value == "level"
    # Lost just before the first "moving" heard: the car may have left earlier, past a pulse.
    s = CarStream(CFG).wait(5)
    s.add(FramesLost(ts=s.t, count=2))
    (trip,) = of(s.trip(3, vib=False).wait(10).run(CarAnalytics("c", CFG)), Trip)
    assert trip.floors is None


def test_a_car_already_moving_when_first_heard_makes_no_trip():
    # The daemon restarted mid-trip: the first state it hears is "moving". The trip's start and
    # the pulses before it were never seen, so no trip is reported (it once came out as 2 floors
    # of a 6-floor trip, starting 10 s late); the next one is whole.
    s = CarStream(CFG).wait(2).trip(6, vib=False).wait(10).trip(-2, vib=False).wait(10)
    first_moving = next(i for i, o in enumerate(s.obs) if isinstance(o, MotionChanged) and o.motion == 2)
    del s.obs[:first_moving]
    (trip,) = of(s.run(CarAnalytics("c", CFG)), Trip)
    assert (trip.direction, trip.floors) == ("down", 2)


def test_trips_whose_zone_pulses_were_all_lost_on_the_link_are_no_dead_zone_sensor():
    s = CarStream(CFG).wait(2)
    for k in range(CFG.zone_stuck_trips + 1):
        n = len(s.obs)
        s.trip(3 if k % 2 == 0 else -3)
        start = s.obs[n].ts
        s.obs[n:] = [o for o in s.obs[n:] if not isinstance(o, InputsChanged)]
        s.add(FramesLost(ts=start + 5.0, count=8)).wait(3)
    out = s.run(CarAnalytics("c", CFG))
    assert len(of(out, Trip)) == CFG.zone_stuck_trips + 1
    assert not [f for f in of(out, FaultEvent) if f.type is FaultType.SENSOR_FAULT]


LABELS = ("B1", "G", "M", "2", "3", "5")  # a basement, a mezzanine, no 4th floor


def test_trips_and_faults_carry_the_landing_names_of_the_car():
    cfg = AnalyticsConfig(floor_labels=LABELS, lowest_floor=-1)
    assert cfg.floor_count == 6
    s = CarStream(cfg).wait(2).trip(5).wait(2).trip(-5).wait(2).trip(2).wait(2)
    s.set(presence=True).trip(2, offset_mm=1400).wait(30)  # stopped between 3 and 5: no landing
    out = s.run(CarAnalytics("c", cfg))
    trips = of(out, Trip)
    assert [(t.from_label, t.to_label) for t in trips[1:3]] == [("5", "B1"), ("B1", "M")]
    assert trips[2].to_message()["to_label"] == "M" and trips[2].to_floor == 1
    ent = next(f for f in of(out, FaultEvent) if f.type is FaultType.STOPPED_OUTSIDE_DOOR_ZONE)
    assert ent.detail.get("floor_label") is None  # between floors
    s = CarStream(cfg).wait(2).trip(5).wait(2).trip(-5).wait(2).trip(3).wait(2).set(door_closed=False).wait(130)
    (held,) = [f for f in of(s.run(CarAnalytics("c", cfg)), FaultEvent) if f.state == "raised"]
    assert held.detail["floor"] == 2 and held.detail["floor_label"] == "2"  # floor number 2 is named "2"


def test_landing_levels_find_the_landing_of_a_trip_whose_pulses_were_lost():
    even = AnalyticsConfig(floor_count=6, floor_levels_m=(0.0, 3.0, 6.0, 9.0, 12.0, 15.0))
    s = CarStream(even).wait(2).trip(5).wait(2).trip(-5).wait(2)  # anchored at the bottom landing
    s.trip(3).wait(2)
    start = [o.ts for o in s.obs if isinstance(o, MotionChanged) and o.motion == 1][-1]
    zones = [i for i, o in enumerate(s.obs) if isinstance(o, InputsChanged) and o.ts > start]
    after = s.obs[zones[2]].ts
    del s.obs[zones[1]]
    s.obs.append(FramesLost(ts=after, count=1))
    s.trip(-1).wait(2)
    trips = of(s.run(CarAnalytics("c", even)), Trip)
    assert (trips[2].floors, trips[2].to_floor) == (3, 4)  # from the travel: 9 m = landing 4
    assert trips[3].from_floor == 4 and trips[3].to_floor == 3  # and the anchor was kept
    # The same stream with a table that does not fit the shaft (a 4.2 m lobby): no landing within
    # 0.3 m of where the travel ends, so the floors stay unknown rather than guessed.
    lobby = AnalyticsConfig(floor_count=6, floor_levels_m=(0.0, 4.2, 7.6, 11.0, 14.4, 17.8))
    trips = of(s.run(CarAnalytics("c", lobby)), Trip)
    assert trips[2].floors is None and trips[3].to_floor is None
    assert of(_trip_with_a_lost_zone_pulse(True).run(CarAnalytics("c", CFG)), Trip)[0].floors is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"floor_labels": ("G", "G")}, "floor_labels"),
        ({"floor_labels": ("G", "")}, "floor_labels"),
        ({"floor_labels": ("G", "1", "2"), "floor_count": 4}, "floor_labels"),
        ({"floor_levels_m": (0.0, 0.5)}, "floor_levels_m"),
        ({"floor_levels_m": (0.0, "3")}, "floor_levels_m"),
        ({"floor_levels_m": (0.0, 3.0), "floor_labels": ("G", "1", "2")}, "floor_levels_m"),
    ],
)
def test_landing_tables_are_checked(kwargs, field):
    with pytest.raises(AnalyticsConfigError) as err:
        AnalyticsConfig(**kwargs)
    assert err.value.field == field


def test_trips_are_judged_with_the_noise_the_board_reported_at_rest(monkeypatch):
    """Issue 16: the rest STATS' rms is the sensor's noise figure. It follows a quieter window at
    once and a louder one by 1/16 (a jumping passenger's window does not make the sensor noisy);
    STATS while moving are no rest figure. Each trip's analysis gets the figure of its time."""
    from liftwatch.edge_daemon.analytics import engine as engine_mod
    from liftwatch.edge_daemon.observations import RestStats

    seen: list[float] = []
    real = engine_mod.analyse_trip

    def spy(*args, **kw):
        seen.append(args[-1])
        return real(*args, **kw)

    monkeypatch.setattr(engine_mod, "analyse_trip", spy)
    s = CarStream(CFG).wait(2)
    t = s.t
    s.add(RestStats(t - 1.5, 1000, (0, 0, 1000), (20, 18, 19), 5))
    s.add(RestStats(t - 1.0, 1000, (0, 0, 1000), (90, 60, 150), 300))  # someone jumped
    s.add(RestStats(t - 0.5, 1000, (0, 0, 1000), (400, 400, 400), 300, motion=2))  # not at rest
    s.trip(2).wait(8)
    t = s.t
    s.add(RestStats(t - 2.0, 1000, (0, 0, 1000), (8, 9, 7), 5))
    s.trip(1).wait(8)
    trips = [o for o in s.run(CarAnalytics("car-1", CFG)) if isinstance(o, Trip)]
    assert len(trips) == 2
    assert seen == [pytest.approx(20 + (150 - 20) / 16), 9.0]
