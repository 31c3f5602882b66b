"""The simulated car: motion limits, vanes, sensor mounting, determinism, and the scenario files."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from liftwatch.hil.sim.car import CarSim, CarSpec, CarSpecError, Imperfections, load_car, s_curve
from liftwatch.protocol.trace import (
    DOOR_CLOSED,
    PRESENCE,
    ZONE_DN,
    ZONE_UP,
    TraceWriter,
    read_trace,
    read_trace_car,
    write_trace,
)
from liftwatch.hil.sim.scenario import BoardFault, Scenario, ScenarioError, list_scenarios

REQUIRED_SCENARIOS = {
    "normal_day",
    "entrapment",
    "moving_door_open",
    "door_held_open",
    "door_reopen_loop",
    "off_level_stops",
    "rising_vibration",
    "maintenance_visit",
    "maintenance_too_short",
    "power_cut_trip",
    "link_cut_hour",
    "reboot_loop",
    "pi_down_hour",
    "pi_down_day",
}


@pytest.mark.parametrize("distance_m", [0.3, 3.4, 17.8, -11.0])
def test_s_curve_respects_limits_and_lands_exactly(distance_m: float) -> None:
    v_max, a_max, j_max = 1.6, 0.8, 1.0
    prof = s_curve(distance_m, v_max, a_max, j_max)
    t = np.linspace(0, prof.duration_s, 4001)
    p, v, a = prof.states(t)
    assert p[-1] == pytest.approx(distance_m, abs=1e-6)
    assert np.abs(v).max() <= v_max + 1e-9
    assert np.abs(a).max() <= a_max + 1e-9
    jerk = np.diff(a) / np.diff(t)
    assert np.abs(jerk).max() <= j_max * 1.01
    assert v[-1] == pytest.approx(0, abs=1e-9) and a[-1] == pytest.approx(0, abs=1e-9)
    for k in (0, 1000, 2500):  # the vectorised and scalar evaluations agree
        assert prof.state(float(t[k])) == pytest.approx((p[k], v[k], a[k]), abs=1e-9)


def test_short_trip_never_reaches_rated_speed() -> None:
    prof = s_curve(1.0, 1.6, 0.8, 1.0)
    _, v, _ = prof.states(np.linspace(0, prof.duration_s, 2001))
    assert 0.3 < np.abs(v).max() < 1.6


def test_vanes_give_both_zone_sensors_only_near_level() -> None:
    sim = CarSim(load_car("office6"))
    level = sim.spec.floor_levels_m[2]
    assert sim.zone_bits(level) == ZONE_UP | ZONE_DN
    assert sim.zone_bits(level + 0.070) == ZONE_DN  # 70 mm high: inside the door zone, off level
    assert sim.zone_bits(level - 0.070) == ZONE_UP
    assert sim.zone_bits(level + 0.5) == 0  # between floors


def test_trip_samples_gravity_orientation_and_inputs() -> None:
    spec = load_car("office6")
    sim = CarSim(spec, seed=1)
    samples = list(sim.trip(3))
    rest = samples[0]
    g = math.sqrt(rest.ax_mg**2 + rest.ay_mg**2 + rest.az_mg**2)
    assert g == pytest.approx(1000, abs=2)  # gravity through the mounting rotation
    assert abs(rest.ay_mg) > 990  # office6 mounts sensor y along car -z
    moving = samples[1:-1]
    dt = np.diff([s.t_us for s in moving])
    assert np.median(dt) == pytest.approx(1e6 / spec.moving_rate_hz, rel=0.01)
    assert all(s.inputs & DOOR_CLOSED for s in samples)
    assert samples[-1].inputs & (ZONE_UP | ZONE_DN) == ZONE_UP | ZONE_DN
    assert sim.trips == 1 and sim.pos_m == pytest.approx(spec.floor_levels_m[3])
    ay = np.array([s.ay_mg for s in moving])
    assert ay.min() < -1000 - 50 and ay.max() > -1000 + 50  # +-0.8 m/s^2 = +-82 mg on the vertical


def test_emergency_stop_leaves_car_between_floors() -> None:
    sim = CarSim(load_car("office6"))
    list(sim.set(presence=True))
    samples = list(sim.trip(5, stop_at_fraction=0.5))
    assert samples[-1].inputs & (ZONE_UP | ZONE_DN) == 0
    assert samples[-1].inputs & PRESENCE


def test_same_seed_same_samples() -> None:
    a = list(Scenario.load("off_level_stops").samples())
    b = list(Scenario.load("off_level_stops").samples())
    c = list(Scenario.load("off_level_stops").samples(seed=99))
    assert a == b and a != c


def test_simulator_writes_a_trace_that_reads_back() -> None:
    samples = list(Scenario.load("door_reopen_loop").samples())
    buf = io.StringIO()
    assert write_trace(samples, buf) == len(samples)
    buf.seek(0)
    assert list(read_trace(buf)) == samples


def test_required_scenarios_exist_and_load() -> None:
    assert REQUIRED_SCENARIOS <= set(list_scenarios())
    for name in list_scenarios():
        sc = Scenario.load(name)
        assert sc.description and sc.expect.trips is not None, name


@pytest.mark.parametrize("name", sorted(n for n in list_scenarios() if not Scenario.load(n).long))
def test_scenario_ground_truth_matches_its_expectations(name: str) -> None:
    sc = Scenario.load(name)
    car = sc.ground_truth()
    assert car.trips == sc.expect.trips
    if sc.expect.relevels is not None:
        assert car.relevels == sc.expect.relevels
    for visit in sc.expect.maintenance:
        if "inspection_runs" in visit:
            assert car.inspection_runs == sum(v["inspection_runs"] for v in sc.expect.maintenance)
    faults = [x for x in sc.timeline() if isinstance(x, BoardFault)]
    boots = sum(sc.expect.boots.values())
    assert len([f for f in faults if f.kind in ("power_cut", "reset")]) == boots


def test_maintenance_scenarios_last_what_their_names_say() -> None:
    def inspection_minutes(name: str) -> float:
        on = [s.t_us for s in Scenario.load(name).samples() if s.inputs & 0b10000]
        return (on[-1] - on[0]) / 60e6

    assert 40 <= inspection_minutes("maintenance_visit") <= 70
    assert 8 <= inspection_minutes("maintenance_too_short") <= 12


@pytest.mark.long
def test_normal_day_ground_truth() -> None:
    sc = Scenario.load("normal_day")
    car = sc.ground_truth()
    assert car.trips == sc.expect.trips
    assert car.t_us == 24 * 3600 * 1_000_000


@pytest.mark.long
def test_mixed_day_is_the_clean_day_for_the_car() -> None:
    clean, mixed = Scenario.load("normal_day").ground_truth(), Scenario.load("mixed_day").ground_truth()
    assert (mixed.trips, mixed.door_cycles, mixed.t_us) == (clean.trips, clean.door_cycles, clean.t_us)
    assert mixed.jumps > 100


# ---- issue 16: what real sensors, contacts and passengers add ------------------------------------

NOISY = {
    "car": {"floor_levels_m": [0.0, 4.0, 8.0]},
    "sensor": {"noise_mg": 8, "drift_mg_per_h": [0, -60, 30], "drift_max_mg": 25, "tilt_deg": [8, -6]},
    "passengers": {"jumps_per_min": 30, "jump_mg": [150, 300]},
    "doors": {"bounce": [2, 5], "bounce_ms": 15},
    "zones": {"chatter": [1, 3], "chatter_ms": 5},
}


def test_imperfections_are_car_file_parameters_checked_by_name() -> None:
    imp = CarSpec.from_dict(NOISY).imperfections
    assert imp.noise_mg == 8 and imp.drift_mg_per_h == (0, -60, 30) and imp.door_bounce == (2, 5)
    assert imp.zone_chatter == (1, 3) and imp.jumps_per_min == 30 and imp.jump_mg == (150, 300)
    assert CarSpec.from_dict(NOISY).sensor_tilt_deg == (8, -6)
    assert CarSpec.from_dict({"car": NOISY["car"]}).imperfections == Imperfections()  # all off by default
    for table, key, bad, says in [("sensor", "noise_mg", -1, "noise_mg=-1 outside"),
                                  ("sensor", "drift_mg_per_h", [1, 2], "list of 3 numbers"),
                                  ("doors", "bounce", [5, 2], "low end is above"),
                                  ("zones", "chatter", "often", "list of 2 numbers"),
                                  ("passengers", "jump_mg", [150, "high"], "jump_mg must be a number")]:
        with pytest.raises(CarSpecError, match=says):
            CarSpec.from_dict({**NOISY, table: {**NOISY[table], key: bad}})


def test_imperfections_leave_the_clean_cars_traffic_alone() -> None:
    """Their own random stream: the mixed half hour makes normal_hour's trips and door cycles, and
    is itself reproducible from its seed."""
    clean, mixed = Scenario.load("normal_hour"), Scenario.load("mixed_hour")
    a, b = clean.ground_truth(), mixed.ground_truth()
    assert (a.trips, a.door_cycles, a.t_us) == (b.trips, b.door_cycles, b.t_us)
    assert b.jumps > 10
    assert list(mixed.samples()) == list(mixed.samples())


def test_offset_drift_ramps_and_stops_at_its_limit() -> None:
    sim = CarSim(CarSpec.from_dict(NOISY))
    assert sim.offset_mg(0).tolist() == [0, 0, 0]
    assert sim.offset_mg(int(0.25 * 3.6e9)).tolist() == pytest.approx([0, -15, 7.5])
    assert sim.offset_mg(int(10 * 3.6e9)).tolist() == pytest.approx([0, -25, 25])
    ramp = sim.offset_mg(np.array([0, int(3.6e9)]))
    assert ramp.shape == (3, 2) and ramp[1].tolist() == [0, -25]


def _vertical_mg(sim: CarSim, s) -> float:
    # the car's vertical from the sensor axes (the mounting inverted), gravity removed
    return float((np.linalg.inv(sim._to_sensor) @ np.array([s.ax_mg, s.ay_mg, s.az_mg]) - sim.offset_mg(s.t_us))[2]) - 1000


def test_jumps_come_only_with_the_door_open_and_bring_the_car_back() -> None:
    spec = CarSpec.from_dict({**NOISY, "sensor": {}})
    sim = CarSim(spec, seed=5)
    closed = list(sim.wait(60))
    assert sim.jumps == 0 and max(abs(_vertical_mg(sim, s)) for s in closed) < 2
    list(sim.set(door_closed=False))
    opened = list(sim.wait(60))
    assert 10 <= sim.jumps <= 60
    a = np.array([_vertical_mg(sim, s) for s in opened])
    assert 140 < np.abs(a).max() <= 301
    # each jump: back to zero speed and zero displacement (the car never left the landing)
    t = np.array([s.t_us for s in opened]) / 1e6
    dt = np.diff(t, append=t[-1])  # each sample holds until the next
    burst_starts = [0] + [k + 1 for k in range(len(t) - 1) if dt[k] > 0.01]
    jumps = [(i, j) for i, j in zip(burst_starts, burst_starts[1:]) if j - i > 20]
    assert len(jumps) == sim.jumps
    for i, j in jumps:
        v = np.cumsum(a[i:j] * 9.80665e-3 * dt[i:j])
        x = np.cumsum(v * dt[i:j])
        assert 0.03 < np.abs(v).max() < 0.1 and abs(v[-1]) < 1e-3
        assert np.abs(x).max() < 0.008 and abs(x[-1]) < 1e-3


def test_relevel_creeps_back_to_level_inside_the_door_zone_and_is_no_trip() -> None:
    spec = load_car("office6")
    sim = CarSim(spec, seed=3)
    list(sim.trip(2, offset_mm=120))
    assert sim.zone_bits(sim.pos_m) == ZONE_DN  # 120 mm high: one sensor on
    samples = list(sim.relevel(2))
    assert sim.pos_m == pytest.approx(spec.floor_levels_m[2]) and (sim.trips, sim.relevels) == (1, 1)
    assert all(s.inputs & (ZONE_UP | ZONE_DN) for s in samples)  # never left the door zone
    assert list(sim.relevel(2)) == [] and sim.relevels == 1  # already level: nothing to do


def test_door_contact_bounces_within_15_ms_and_settles_in_its_new_state() -> None:
    sim = CarSim(CarSpec.from_dict({**NOISY, "passengers": {}}), seed=2)
    for closed in (False, True, False, True):
        t0 = sim.t_us
        edge = list(sim.set(door_closed=closed))
        flips = sum(1 for x, y in zip(edge, edge[1:]) if (x.inputs ^ y.inputs) & DOOR_CLOSED)
        assert 4 <= flips <= 10 and flips % 2 == 0  # 2-5 bounces, back and forth each
        assert edge[-1].t_us - t0 <= 15_000 and bool(edge[-1].inputs & DOOR_CLOSED) == closed
        list(sim.wait(2))


def test_zone_sensors_chatter_within_5_ms_of_each_vane_edge() -> None:
    sim = CarSim(CarSpec.from_dict({**NOISY, "passengers": {}}), seed=3)
    samples = list(sim.trip(2))
    times = [s.t_us for s in samples]
    assert times == sorted(times)
    flips = [(b.t_us, a.inputs ^ b.inputs) for a, b in zip(samples, samples[1:]) if (a.inputs ^ b.inputs) & (ZONE_UP | ZONE_DN)]
    edges = [t for t, _ in flips]
    # 4 vane edges per 2 floors x (1 + 2 * 1..3 bounces) flips, each burst within 5 ms
    bursts, last = [], -1e18
    for t in edges:
        if t - last > 5_000:
            bursts.append([])
        bursts[-1].append(t)
        last = t
    assert len(bursts) == 8  # leave floor 0's vane (2 sensors), pass floor 1's (4), enter floor 2's (2)
    for b in bursts:
        assert len(b) in (3, 5, 7) and b[-1] - b[0] <= 5_000
    assert samples[-1].inputs & (ZONE_UP | ZONE_DN) == ZONE_UP | ZONE_DN


def test_sensor_noise_rides_in_the_trace_header_and_old_headers_still_read(tmp_path) -> None:
    spec = CarSpec.from_dict(NOISY)
    trace = tmp_path / "t.csv"
    with TraceWriter(trace) as w:
        w.comment(spec.trace_car().comment())
        w.write(next(CarSim(spec).now()))
    assert read_trace_car(trace).sensor_noise_mg == 8
    clean = CarSpec.from_dict({"car": NOISY["car"]}).trace_car()
    assert "noise" not in clean.comment()
    with TraceWriter(trace) as w:
        w.comment(clean.comment())
    assert read_trace_car(trace) == clean


def test_bad_car_and_scenario_files_name_the_problem() -> None:
    with pytest.raises(CarSpecError, match="floor_levels_m"):
        CarSpec.from_dict({"car": {"floor_levels_m": [0.0]}})
    with pytest.raises(CarSpecError, match="rated_speed_mps"):
        CarSpec.from_dict({"car": {"floor_levels_m": [0.0, 4.0], "rated_speed_mps": "fast"}})
    with pytest.raises(CarSpecError, match="sensor.axes"):
        CarSpec.from_dict({"car": {"floor_levels_m": [0.0, 4.0]}, "sensor": {"axes": ["+x", "+x", "+z"]}})
    for labels in (["G"], ["G", "G"], ["G", "1 A"], ["G", "1,2"], ["G", 1]):
        with pytest.raises(CarSpecError, match="floor_labels"):
            CarSpec.from_dict({"car": {"floor_levels_m": [0.0, 4.0], "floor_labels": labels}})
    with pytest.raises(ScenarioError, match="step 2: do='fly'"):
        Scenario.from_dict({"step": [{"do": "wait", "s": 1}, {"do": "fly"}]})
    with pytest.raises(ScenarioError, match="step 1 \\(trip\\)"):
        list(Scenario.from_dict({"step": [{"do": "trip", "to": 99}]}).timeline())
    with pytest.raises(ScenarioError, match="no scenario"):
        Scenario.load("nope")


def test_simulate_cli_writes_a_trace(tmp_path) -> None:
    import subprocess
    import sys

    out = tmp_path / "reopen.csv"
    r = subprocess.run(
        [sys.executable, "-m", "liftwatch", "simulate", "door_reopen_loop", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert list(read_trace(out)) == list(Scenario.load("door_reopen_loop").samples())
    bad = subprocess.run(
        [sys.executable, "-m", "liftwatch", "simulate", "nope", "--out", str(out)], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "no scenario" in bad.stderr
