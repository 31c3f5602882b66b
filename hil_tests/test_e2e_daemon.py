"""End to end: a scenario's car -> the real firmware on a mock board -> the real daemon -> upstream.

The daemon runs in-process with its clock on the board's feed time (the simulated car's time), so the
car's minutes pass in seconds for both. What arrives in the daemon's JSON Lines journal is checked
against the scenario's ``[expect] events``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from liftwatch.hil.sim.scenario import Scenario, list_scenarios

from .conftest import (REST_PREFIX_S, RUN_SPEED, TALK_SPEED, daemon_config, expected_raised, run_daemon,
                       upstream_journal)

pytestmark = [pytest.mark.hil, pytest.mark.mock_only]

FAST_E2E = ["entrapment", "moving_door_open", "maintenance_too_short"]
OTHER_E2E = sorted(set(list_scenarios()) - set(FAST_E2E))


# Each ~10-25 s; the other scenarios run end to end with -m long (the board level of all of them is
# in the default run: test_board_scenarios.py).
@pytest.mark.parametrize(
    "name", FAST_E2E + [pytest.param(n, marks=[pytest.mark.long, pytest.mark.timeout(1800)]) for n in OTHER_E2E]
)
def test_upstream_events_match_the_scenario(name: str, flashed, frame_tap, tmp_path: Path) -> None:
    sc = Scenario.load(name)
    truth = sc.ground_truth(REST_PREFIX_S)  # the run as the board gets it, rest prefix included
    end_us = truth.t_us
    board = flashed(sc.timeline(rest_prefix_s=REST_PREFIX_S), speed=TALK_SPEED)
    tap = frame_tap(board.ports.data)
    tap.calibrate()
    tap.close()  # the daemon takes the port
    state = tmp_path / "state"
    state.mkdir()
    config = daemon_config(tmp_path / "liftwatch.toml", state, f'port = "{board.ports.data}"', board.uid, sc)
    run_daemon(config, board, end_us, timeout_s=end_us / 1e6 / RUN_SPEED * 4 + 60)
    messages, raised, seen = upstream_journal(state)
    assert raised == expected_raised(sc), seen
    # Hour-of-day traffic (normal_day) draws its rides on the run's own clock, which the rest prefix
    # shifts: the simulator's count for this run, less what the scenario says cannot be reported.
    unreportable = sc.expect.trips - sc.expect.trips_reported
    assert sum(m["kind"] == "trip" for m in messages) == truth.trips - unreportable, seen
    visits = [m for m in messages if m["kind"] == "maintenance"]
    assert [v["too_short"] for v in visits] == [e["too_short"] for e in sc.expect.maintenance], seen
    assert len({m["id"] for m in messages}) == len(messages)  # exactly once per id
