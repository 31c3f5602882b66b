"""`liftwatch replay`: a scenario trace through the real firmware (MicroPython) and the daemon pipeline.

The trace is the HIL entrapment scenario (hil_tests/scenarios/entrapment.toml): a ride, then a trip
that stops between floors with a passenger inside, the alarm button, and a technician bringing the
car down 24 minutes later. Its expected outcomes are the scenario's own `[expect]` table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from support.upstream import schema_validator

from liftwatch.edge_daemon.cli import parse_start
from liftwatch.protocol.trace import write_trace
from liftwatch.hil.sim.car import load_car
from liftwatch.hil.sim.scenario import Scenario

LIFTWATCH = [sys.executable, "-m", "liftwatch"]
START = "2026-03-01T08:00:00Z"

pytestmark = pytest.mark.micropython


@pytest.fixture(scope="module")
def entrapment(tmp_path_factory) -> tuple[Scenario, Path]:
    scenario = Scenario.load("entrapment")
    trace = tmp_path_factory.mktemp("trace") / "entrapment.csv"
    write_trace(scenario.samples(), trace)
    return scenario, trace


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """The site config of the scenario's car (office6: 1.6 m/s, six stops, 250/150 mm vanes)."""
    cfg = tmp_path_factory.mktemp("cfg") / "site.toml"
    cfg.write_text(
        """
[daemon]
site = "tower-b"
[analytics]
rated_speed_mps = 1.6
floor_count = 6
lowest_floor = 0
vane_length_mm = 250.0
zone_sensor_spacing_mm = 150.0
[[boards]]
car = "lift-2"
port = "/dev/null"
"""
    )
    return cfg


def replay(trace: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(LIFTWATCH + ["replay", str(trace), "--start", START, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def replayed(entrapment, config, tmp_path_factory) -> tuple[list[dict], str]:
    _, trace = entrapment
    out = tmp_path_factory.mktemp("out") / "upstream.jsonl"
    run = replay(trace, out, "--config", str(config))
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in out.read_text().splitlines()], run.stderr


def test_replay_reports_the_scenarios_expected_events(entrapment, replayed):
    scenario, _ = entrapment
    messages, _ = replayed
    events = [m for m in messages if m["kind"] == "event"]
    # A freshly flashed board boots uncalibrated and calibrates itself at the first quiet moment:
    # analytics reports that as a short sensor_fault, which must be cleared within seconds.
    boot = [m for m in events if m["type"] == "sensor_fault" and m["detail"].get("reason") == "uncalibrated"]
    if boot:
        cleared = next(m for m in events if m["type"] == "sensor_fault" and m["state"] == "cleared")
        assert parse_start(cleared["event_ts"]) - parse_start(START) < 10
    raised = Counter(m["type"] for m in events if m["state"] == "raised" and m not in boot)
    assert dict(raised) == scenario.expect.events
    assert sum(1 for m in messages if m["kind"] == "trip") == scenario.expect.trips_reported
    assert not [m for m in messages if m["kind"] == "maintenance"]


def test_replay_times_are_start_plus_trace_time(replayed):
    messages, _ = replayed
    start = parse_start(START)
    entrapment = next(m for m in messages if m["kind"] == "event" and m["type"] == "entrapment")
    since = parse_start(entrapment["detail"]["since_ts"])
    # Raised after the configured 15 s stopped between floors, with the door closed, someone inside.
    assert parse_start(entrapment["event_ts"]) - since == pytest.approx(15.0, abs=0.5)
    # The car stops half way through its second trip: after the first ride and the 20 s wait.
    assert 20 < since - start < 90
    cleared = next(m for m in messages if m["kind"] == "event" and m["type"] == "entrapment" and m["state"] == "cleared")
    # The technician comes 1440 s (24 min) after the alarm.
    assert 1400 < cleared["duration_s"] < 1600
    assert all(m["ts"].startswith("2026-03-01T0") for m in messages)


def test_replay_messages_validate_and_carry_the_config(replayed):
    messages, stderr = replayed
    for m in messages:
        schema_validator(m["kind"]).validate(m)
        assert (m["site"], m["car"]) == ("tower-b", "lift-2")
    assert len({m["id"] for m in messages}) == len(messages)
    assert "replay:" in stderr and "messages" in stderr


def test_replay_is_deterministic(entrapment, config, replayed, tmp_path):
    _, trace = entrapment
    out = tmp_path / "again.jsonl"
    assert replay(trace, out, "--config", str(config)).returncode == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == replayed[0]


def test_bad_trace_is_a_typed_error_with_the_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("t_us,ax_mg,ay_mg,az_mg,door_closed,zone_up,zone_dn,presence,inspection,alarm_button\n"
                   "0,0,0,1000,1,1,1,0,0,0\n"
                   "1000,0,0,lots,1,1,1,0,0,0\n")
    run = replay(bad, tmp_path / "out.jsonl")
    assert run.returncode == 2
    assert "bad.csv:3" in run.stderr
    run = replay(tmp_path / "missing.csv", tmp_path / "out.jsonl")
    assert run.returncode == 2 and "no such trace file" in run.stderr
    run = subprocess.run(LIFTWATCH + ["replay", str(bad), "--start", "noon"], capture_output=True, text=True)
    assert run.returncode == 2 and "ISO 8601" in run.stderr


def _faults(out: Path) -> list[str]:
    return [m["type"] for m in map(json.loads, out.read_text().splitlines()) if m["kind"] == "event"]


def test_replay_without_a_rated_speed_does_not_judge_overspeed_against_a_guess(entrapment, replayed, tmp_path):
    """The 1.6 m/s office car judged against a 1.0 m/s default raised overspeed on every trip."""
    _, trace = entrapment  # written without a header comment: nothing names the car
    out = tmp_path / "guess.jsonl"
    run = replay(trace, out)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("overspeed is not judged") == 1
    assert "overspeed" not in _faults(out)
    assert "entrapment" in _faults(out)  # the rest is still judged
    trips = [m for m in map(json.loads, out.read_text().splitlines()) if m["kind"] == "trip"]
    assert max(t["peak_speed_mps"] for t in trips) > 1.15  # above 115 % of the old guess: it would have been raised


def test_replay_takes_the_car_named_in_the_trace_header(entrapment, tmp_path):
    """`liftwatch simulate` writes its car into the trace's header: replay uses that car's rated speed."""
    _, trace = entrapment
    lines = trace.read_text().splitlines(keepends=True)
    named = tmp_path / "named.csv"
    header = load_car("office6").trace_car().comment()
    named.write_text(lines[0] + f"# liftwatch simulate entrapment seed=1\n# {header}\n" + "".join(lines[1:]))
    out = tmp_path / "named.jsonl"
    run = replay(named, out)
    assert run.returncode == 0, run.stderr
    assert "car office6 from the trace header: rated speed 1.6 m/s, 6 floors" in run.stderr
    assert "overspeed" not in _faults(out)


def test_a_replay_that_analytics_failed_on_is_an_error_not_a_quiet_gap(entrapment, monkeypatch):
    """The daemon counts an analytics bug and goes on; replay, whose output is the record, refuses."""
    import asyncio
    import io

    from liftwatch.edge_daemon import replay as replay_mod
    from liftwatch.edge_daemon.analytics.engine import CarAnalytics

    class Failing(CarAnalytics):
        seen = 0

        def feed(self, obs):
            Failing.seen += 1
            if Failing.seen % 40 == 0:
                raise RuntimeError("a bug in a rule")
            return super().feed(obs)

    monkeypatch.setattr(replay_mod, "CarAnalytics", Failing)
    _, trace = entrapment
    out = io.BytesIO()
    with pytest.raises(replay_mod.ReplayError, match=r"analytics failed on [1-9]\d* observations"):
        asyncio.run(replay_mod.replay_trace(trace, out, replay_mod.ReplaySettings(car="lift-2")))
    assert Failing.seen > 40 and out.getvalue()  # it ran, wrote what it had, and still said so
