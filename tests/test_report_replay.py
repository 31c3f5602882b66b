"""The real chain: scenario -> trace -> firmware under MicroPython -> daemon pipeline (`replay`) ->
JSON Lines -> report. The report must restate what happened in the scenario."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest

from liftwatch.edge_daemon.analytics import AnalyticsConfig
from liftwatch.edge_daemon.replay import ReplaySettings, replay_trace
from liftwatch.edge_daemon.report.figures import Period, Severity, car_figures
from liftwatch.edge_daemon.report.source import load_messages
from liftwatch.protocol.trace import write_trace
from liftwatch.hil.sim.scenario import Scenario
from support.report_synth import local_ts

pytestmark = pytest.mark.micropython

# A passenger is trapped between floors; the technician arrives ~11 minutes later, frees the car
# under inspection control and leaves after an 8-minute "visit"; then normal service.
SCENARIO = {
    "scenario": {"name": "report_entrapment_short_visit", "car": "office6", "seed": 3},
    "step": [
        {"do": "ride", "to": 2},
        {"do": "wait", "s": 20},
        {"do": "door"},
        {"do": "set", "presence": True},
        {"do": "trip", "to": 5, "stop_at": 0.5},
        {"do": "wait", "s": 60},
        {"do": "set", "alarm": True},
        {"do": "wait", "s": 8},
        {"do": "set", "alarm": False},
        {"do": "wait", "s": 600},
        {"do": "set", "inspection": True},
        {"do": "trip", "to": 3, "speed_mps": 0.3},
        {"do": "door", "dwell_s": 10},
        {"do": "set", "presence": False},
        {"do": "inspection", "runs": 1, "pause_s": 120},
        {"do": "wait", "s": 300},
        {"do": "set", "inspection": False},
        {"do": "wait", "s": 30},
        {"do": "ride", "to": 0},
        {"do": "wait", "s": 30},
    ],
}
DAY = Period(date(2026, 11, 3), date(2026, 11, 3))


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("replay")
    scenario = Scenario.from_dict(SCENARIO)
    trace = tmp / "trace.csv"
    write_trace(scenario.samples(), trace)
    car = scenario.car  # the analytics must know the car, or its 1.6 m/s reads as overspeed
    analytics = AnalyticsConfig(
        rated_speed_mps=car.rated_speed_mps,
        floor_count=len(car.floor_levels_m),
        vane_length_mm=car.vane_length_mm,
        zone_sensor_spacing_mm=car.zone_sensor_spacing_mm,
    )
    settings = ReplaySettings(
        site="estate-r", car="car-r", start_unix_s=local_ts("2026-11-03", "10:00"), analytics=analytics
    )
    path = tmp / "upstream.jsonl"
    with open(path, "wb") as out:
        asyncio.run(replay_trace(trace, out, settings))
    return path


def test_report_of_a_replayed_scenario(journal: Path) -> None:
    loaded = load_messages([journal], car="car-r")
    assert loaded.skipped == ()
    f = car_figures("car-r", loaded.messages, DAY)
    # ride to 2, the trip that stopped half way, the ride down after the visit (inspection runs are not trips)
    assert f.trips_total == len(loaded.of_kind("trip")) == 3
    entrapment = next(c for c in f.faults if c.type == "entrapment")
    assert entrapment.judged and entrapment.gbt24476_code == 1
    assert 10 * 60 < entrapment.response_s < 12 * 60 and not entrapment.response_late
    assert f.entrapments == 1 and f.late_responses == 0
    assert 15 * 60 < entrapment.repair_s < 25 * 60  # freed when normal service resumed
    assert all(c.type != "overspeed" for c in f.faults)
    assert all(not c.judged for c in f.faults if c.kit or c.type == "alarm_button")
    (visit,) = f.visits
    assert visit.too_short and 6 * 60 < visit.duration_s < 10 * 60 and visit.inspection_runs >= 1
    assert f.verdict.severity is Severity.BREACH
    assert [x.en for x in f.verdict.findings][0] == "1 maintenance visit(s) shorter than 40 min"
