"""End to end: every HIL scenario's car -> trace -> `liftwatch replay` (the real firmware under
MicroPython, then session -> analytics -> outbox) -> the upstream messages, against the scenario's
own `[expect]` table: the exact set of fault events raised, trips reported, maintenance visits and
their too_short flags. A clean day raises no fault at all (issues 5 and 6).

The replays run two at a time (each is a MicroPython board plus the pipeline, so two fill two cores)
in one module fixture; the tests then only read their results. The 24-hour `normal_day` stands in
the default run as a compressed day: the day's busiest hours of traffic without the night, same car,
same trips per hour. The full day runs with `-m long` (or LIFTWATCH_E2E_LONG=1).

Scenarios with board faults (power cut, link cut, watchdog resets) cannot be carried by a trace
file (`liftwatch simulate`: "board faults are not part of a trace"); they are listed and skipped
here with that reason, their board side being covered by hil_tests/test_board_scenarios.py.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from liftwatch.protocol.trace import CarSample, TraceWriter, write_trace
from liftwatch.hil.sim.scenario import Scenario, list_scenarios

from liftwatch.cli import main as liftwatch_main

pytestmark = pytest.mark.micropython

START = "2026-03-02T00:30:00Z"  # 08:30 in the car's local day (UTC+8)
# A kit is commissioned at rest: the board calibrates itself at its first quiet seconds, before
# the scenario's first trip (the HIL tests give the board a rest prefix for the same reason).
REST_PREFIX_S = 10.0
WORKERS = 2
# The day's busiest traffic (normal_day's 08:00, 12:00 and 17:00 rates), back to back.
COMPRESSED_DAY = {
    "scenario": {"name": "compressed_day", "car": "office6", "seed": 2024,
                 "description": "normal_day's peak hours back to back: 105 trips/h at full density"},
    "step": [{"do": "traffic", "hours": 0.5, "trips_per_hour": 40},
             {"do": "traffic", "hours": 0.5, "trips_per_hour": 30},
             {"do": "traffic", "hours": 0.5, "trips_per_hour": 35},
             {"do": "wait", "s": 30}],
    "expect": {"events": {}, "board_events": {}, "maintenance": [], "boots": {}},
}


def _fault_kinds(steps: Any) -> list[str]:
    kinds: list[str] = []
    for step in steps:
        if step.get("do") == "fault":
            kinds.append(step["kind"])
        elif step.get("do") == "repeat":
            kinds += _fault_kinds(step.get("steps", []))
    return kinds


SCENARIOS = {name: Scenario.load(name) for name in list_scenarios()}
SCENARIOS["compressed_day"] = Scenario.from_dict(COMPRESSED_DAY, "tests/test_e2e_scenarios.py:COMPRESSED_DAY")
BOARD_FAULTS = {name: _fault_kinds(sc.steps) for name, sc in SCENARIOS.items() if _fault_kinds(sc.steps)}
FAST = sorted(n for n, sc in SCENARIOS.items() if not sc.long and n not in BOARD_FAULTS)
LONG = sorted(n for n, sc in SCENARIOS.items() if sc.long and n not in BOARD_FAULTS)


@dataclass(frozen=True, slots=True)
class Replayed:
    scenario: Scenario
    messages: list[dict[str, Any]]
    car_trips: int  # what the simulated car did
    exit_code: int

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["kind"] == kind]

    @property
    def raised(self) -> dict[str, int]:
        return dict(Counter(m["type"] for m in self.of("event") if m["state"] == "raised"))


def _replay(name: str, scenario: Scenario, work: Path) -> Replayed:
    """Trace from the simulator, its car in the header as `liftwatch simulate` writes it, then
    `liftwatch replay` through its Python entry."""
    trace, out = work / f"{name}.csv", work / f"{name}.jsonl"
    with TraceWriter(trace) as writer:
        writer.comment(scenario.car.trace_car().comment())
        for x in scenario.timeline(rest_prefix_s=REST_PREFIX_S):
            if isinstance(x, CarSample):
                writer.write(x)
    code = liftwatch_main(["replay", str(trace), "--car", name, "--start", START, "--out", str(out)])
    messages = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    truth = scenario.ground_truth(REST_PREFIX_S)
    return Replayed(scenario, messages, truth.trips, code)


def _rough_s(steps: Any) -> float:
    """About how long a scenario's car runs (to schedule the longest replays first)."""
    total = 0.0
    for st in steps:
        total += 3600 * st.get("hours", 0) + st.get("s", 0) + st.get("dwell_s", 0) + 30
        total += st.get("runs", 0) * st.get("pause_s", 0)
        total += st.get("n", 0) * _rough_s(st.get("steps", []))
    return total


def _replay_all(names: list[str], work: Path) -> dict[str, Replayed]:
    # Longest first, so the two workers finish together.
    order = sorted(names, key=lambda n: -_rough_s(SCENARIOS[n].steps))
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        futures = {n: pool.submit(_replay, n, SCENARIOS[n], work) for n in order}
        return {n: f.result() for n, f in futures.items()}


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> dict[str, Replayed]:
    return _replay_all(FAST, tmp_path_factory.mktemp("e2e"))


def _check_expectations(r: Replayed) -> None:
    exp = r.scenario.expect
    assert r.exit_code == 0, "liftwatch replay failed: its message is in the captured stderr"
    if exp.trips is not None:
        assert r.car_trips == exp.trips, "the simulated car itself"
    assert r.raised == exp.events, [(m["type"], m["state"], m["event_ts"], m["detail"]) for m in r.of("event")]
    # Every fault instance is one raised and (if it ended) one cleared message, never a clear alone.
    for ftype in {m["type"] for m in r.of("event")}:
        states = [m["state"] for m in r.of("event") if m["type"] == ftype]
        assert states[::2] == ["raised"] * len(states[::2]) and states[1::2] == ["cleared"] * len(states[1::2])
    # A scenario built here (the compressed day) promises what its simulated car did.
    assert len(r.of("trip")) == (exp.trips_reported if exp.trips_reported is not None else r.car_trips)
    visits = [{"too_short": m["too_short"], "inspection_runs": m["inspection_runs"]} for m in r.of("maintenance")]
    assert visits == [dict(v) for v in exp.maintenance]
    daily = r.of("daily")
    assert daily and sum(d["trips"] for d in daily) == len(r.of("trip"))
    if exp.relevels is not None:
        assert sum(d["relevels"] for d in daily) == exp.relevels
    assert sum(sum(d["faults_by_type"].values()) for d in daily) == sum(exp.events.values())


@pytest.mark.parametrize("name", FAST)
def test_scenario_outcomes_are_the_scenarios_promise(name: str, replayed) -> None:
    _check_expectations(replayed[name])


@pytest.mark.parametrize("name", ["compressed_day", "normal_hour"])
def test_clean_traffic_every_trip_measured_and_level(name: str, replayed) -> None:
    """Clean traffic: no fault, every trip has its vibration record (none lost to a 16-bit sample
    index that wrapped while the car rested), a normal speed and a level stop within +-20 mm."""
    r = replayed[name]
    assert r.of("event") == []
    trips = r.of("trip")
    assert len(trips) == r.car_trips >= (15 if name == "normal_hour" else 30)
    rated = r.scenario.car.rated_speed_mps
    for t in trips:
        assert t["peak_speed_mps"] is not None and t["ride_quality"] is not None, t
        assert 0.5 < t["peak_speed_mps"] <= rated * 1.05, t
        assert t["leveling"]["status"] == "level" and abs(t["leveling"]["offset_mm"]) <= 20, t


def test_off_level_stops_are_measured_where_the_car_stopped(replayed) -> None:
    """70-90 mm above level: one zone sensor on, the offset clamped to what it allows."""
    trips = replayed["off_level_stops"].of("trip")
    assert [t["leveling"]["status"] for t in trips] == ["off_level"] * 6
    for t, want in zip(trips, (70, 80, 75, 90, 72, 85)):
        assert t["leveling"]["offset_mm"] == pytest.approx(want, abs=15), t


def test_the_car_file_s_landing_names_reach_the_trips(replayed) -> None:
    """office6 names its landings G, 1, 2, 3, 5, 6 (no 4th floor): `liftwatch simulate` writes them
    in the trace header and `liftwatch replay` takes them, as it takes the rated speed."""
    trips = replayed["overtravel"].of("trip")
    assert [(t["from_label"], t["to_label"]) for t in trips[1:2]] == [("6", "G")]
    assert {t["to_label"] for t in trips} <= {"G", "1", "2", "3", "5", "6", None}


def test_board_fault_scenarios_are_known() -> None:
    """A trace cannot carry board faults: these scenarios need a mock board (listed, not hidden)."""
    assert set(BOARD_FAULTS) == {"link_cut_hour", "pi_down_day", "pi_down_hour", "power_cut_trip", "reboot_loop"}
    pytest.skip(f"board faults are not part of a trace: {BOARD_FAULTS}")


def test_replay_without_the_car_says_which_defaults_it_assumes(replayed, tmp_path, capfd) -> None:
    trace = tmp_path / "t.csv"
    write_trace(SCENARIOS["moving_door_open"].samples(), trace)
    assert liftwatch_main(["replay", str(trace), "--out", str(tmp_path / "o.jsonl")]) == 0
    err = capfd.readouterr().err
    assert "no --config and no car in the trace header" in err and "overspeed is not judged" in err  # no guess


@pytest.mark.long
@pytest.mark.timeout(1800)  # a simulated day: about 5 minutes on a loaded 2-core box
@pytest.mark.parametrize("name", LONG)
def test_long_scenario_outcomes(name: str, request, tmp_path) -> None:
    if "long" not in (request.config.getoption("markexpr") or "") and not os.environ.get("LIFTWATCH_E2E_LONG"):
        pytest.skip("simulated 24 h (several minutes): select with -m long or LIFTWATCH_E2E_LONG=1")
    r = _replay(name, SCENARIOS[name], tmp_path)
    _check_expectations(r)
    assert all(t["peak_speed_mps"] is not None for t in r.of("trip"))


# ---- issue 16: what real sensors and passengers add changes no fact ------------------------------


def _facts(r: Replayed, relevels: bool = True) -> tuple:
    """What a customer is billed on: each trip's direction, floors and leveling status, the day's
    trips, re-levellings, door cycles, faults and visits."""
    trips = [(t["direction"], t["floors"], t["leveling"]["status"]) for t in r.of("trip")]
    daily = [(d["trips"], d["relevels"] if relevels else None, d["door_cycles"], d["faults_by_type"],
              d["maintenance_visits"]) for d in r.of("daily")]
    visits = [(m["too_short"], m["inspection_runs"]) for m in r.of("maintenance")]
    return trips, daily, r.raised, visits


def test_mixed_hour_gives_the_clean_hours_facts(replayed) -> None:
    """8 mg noise, a 25 mg offset ramp, an 8 degree tilt, jumping children, a bouncing door contact
    and chattering zone sensors at once: the same trips, re-levellings (jumps are none), door cycles,
    (no) faults and visits."""
    clean, mixed = replayed["normal_hour"], replayed["mixed_hour"]
    assert mixed.scenario.car.imperfections.noise_mg == 8 and mixed.scenario.ground_truth().jumps > 10
    assert _facts(mixed) == _facts(clean)
    assert all(abs(t["leveling"]["offset_mm"]) <= 20 for t in mixed.of("trip"))


@pytest.mark.long
@pytest.mark.timeout(1800)  # two simulated days: about 5 minutes on a loaded 2-core box
def test_mixed_day_gives_the_clean_days_facts(request, tmp_path) -> None:
    if "long" not in (request.config.getoption("markexpr") or "") and not os.environ.get("LIFTWATCH_E2E_LONG"):
        pytest.skip("two simulated days (several minutes): select with -m long or LIFTWATCH_E2E_LONG=1")
    runs = _replay_all(["normal_day", "mixed_day"], tmp_path)
    assert runs["mixed_day"].exit_code == 0 and len(runs["mixed_day"].of("trip")) == 205
    assert _facts(runs["mixed_day"], relevels=False) == _facts(runs["normal_day"], relevels=False)
    # 285 jumps were 285 re-levellings; 2 still are: their VIB restarted after the jump began (a gap
    # in the board's stream), so the travel is measured from a wrong start (docs/analytics.md)
    assert [d["relevels"] for d in runs["normal_day"].of("daily")] == [0, 0]
    assert sum(d["relevels"] for d in runs["mixed_day"].of("daily")) <= 2


def test_the_trace_header_noise_reaches_the_replayed_accelerometer(replayed) -> None:
    """noisy_sensor's 8 mg ride in its trace header to the board's accelerometer fake: its trips are
    measured rougher than the clean car's (if the noise were lost, the scenario would prove nothing)."""
    def z_a95(name: str) -> float:
        return replayed[name].of("daily")[0]["ride_quality"]["z_a95_pp_mg"]["p50"]

    assert z_a95("noisy_sensor") > z_a95("normal_hour") + 3
