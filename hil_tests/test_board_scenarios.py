"""The real firmware on a mock board, driven through the scenarios: board-level outcomes.

Flashed with `liftwatch flash`, calibrated at rest with a CONTROL frame, then the scenario's car runs
as fast as the board can consume it. What the board itself must say (its EVENT kinds, its boots) is
checked against the scenario's ``[expect]``; what the daemon makes of it is the end-to-end tests' job.
"""

from __future__ import annotations

import collections

import pytest

from liftwatch.hil.sim.scenario import Scenario, list_scenarios
from liftwatch.protocol.messages import BoardEventKind, Event

from .conftest import REST_PREFIX_S, TALK_SPEED

pytestmark = [pytest.mark.hil, pytest.mark.mock_only]

FAST = sorted(n for n in list_scenarios() if not Scenario.load(n).long)
LONG = sorted(n for n in list_scenarios() if Scenario.load(n).long)


def _run_scenario(name: str, flashed, frame_tap, timeout: float) -> tuple[Scenario, object, object]:
    sc = Scenario.load(name)
    end_us = sc.ground_truth(REST_PREFIX_S).t_us
    noise_mg = sc.car.imperfections.noise_mg  # the accelerometer fake adds it (a trace's header carries it)
    board = flashed(sc.timeline(rest_prefix_s=REST_PREFIX_S), speed=TALK_SPEED,
                    extra_env={"LIFTWATCH_SIM_NOISE_MG": f"{noise_mg:g}"} if noise_mg else None)
    tap = frame_tap(board.ports.data)
    tap.calibrate()
    board.set_speed(0.0)
    board.wait_board_time(end_us, timeout=timeout)
    tap.barrier()  # the last frames
    return sc, board, tap


def _raised_kinds(tap) -> dict[str, int]:
    seen: set[int] = set()
    kinds: collections.Counter[str] = collections.Counter()
    for e in tap.of(Event):
        if e.state == 1 and e.event_id not in seen:  # re-sends carry the same event_id
            seen.add(e.event_id)
            kinds[BoardEventKind(e.kind).name.lower()] += 1
    return dict(kinds)


@pytest.mark.parametrize("name", FAST)
def test_scenario_board_events(name: str, flashed, frame_tap) -> None:
    sc, board, tap = _run_scenario(name, flashed, frame_tap, timeout=150)
    assert board.error is None
    assert _raised_kinds(tap) == sc.expect.board_events, tap.type_counts()
    later_boots = collections.Counter(
        str(cause) for cause, n in board.stats.boots.items() for _ in range(n) if str(cause) != "soft"
    )
    later_boots["power_on"] -= 1  # the first power-on is not part of the scenario
    assert {k: v for k, v in later_boots.items() if v} == sc.expect.boots


@pytest.mark.long
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", LONG)
def test_long_scenario_board_events(name: str, flashed, frame_tap) -> None:
    sc, board, tap = _run_scenario(name, flashed, frame_tap, timeout=1800)
    assert _raised_kinds(tap) == sc.expect.board_events
