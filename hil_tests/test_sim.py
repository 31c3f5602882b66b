"""The simulated car: motion limits, vanes, sensor mounting, determinism, and the scenario files."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from liftwatch.hil.sim.car import CarSim, CarSpec, CarSpecError, load_car, s_curve
from liftwatch.protocol.trace import DOOR_CLOSED, PRESENCE, ZONE_DN, ZONE_UP, read_trace, write_trace
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


@pytest.mark.parametrize("name", sorted(set(list_scenarios()) - {"normal_day"}))
def test_scenario_ground_truth_matches_its_expectations(name: str) -> None:
    sc = Scenario.load(name)
    car = sc.ground_truth()
    assert car.trips == sc.expect.trips
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


def test_bad_car_and_scenario_files_name_the_problem() -> None:
    with pytest.raises(CarSpecError, match="floor_levels_m"):
        CarSpec.from_dict({"car": {"floor_levels_m": [0.0]}})
    with pytest.raises(CarSpecError, match="rated_speed_mps"):
        CarSpec.from_dict({"car": {"floor_levels_m": [0.0, 4.0], "rated_speed_mps": "fast"}})
    with pytest.raises(CarSpecError, match="sensor.axes"):
        CarSpec.from_dict({"car": {"floor_levels_m": [0.0, 4.0]}, "sensor": {"axes": ["+x", "+x", "+z"]}})
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
