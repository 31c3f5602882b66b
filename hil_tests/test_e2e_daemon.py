"""End to end: a scenario's car -> the real firmware on a mock board -> the real daemon -> upstream.

The daemon runs in-process with its clock on the board's feed time (the simulated car's time), so the
car's minutes pass in seconds for both. What arrives in the daemon's JSON Lines journal is checked
against the scenario's ``[expect] events``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from liftwatch.edge_daemon.report.source import load_messages
from liftwatch.hil.sim.scenario import BoardFault, Scenario, list_scenarios

from .conftest import (EPOCH_S, REST_PREFIX_S, RUN_SPEED, TALK_SPEED, daemon_for, expected_raised,
                       pi_down_windows, run_daemon, upstream_journal)

pytestmark = [pytest.mark.hil, pytest.mark.mock_only]


FAST_E2E = ["entrapment", "moving_door_open", "maintenance_too_short", "link_cut_hour", "pi_down_hour"]
OTHER_E2E = sorted(set(list_scenarios()) - set(FAST_E2E))


# Each ~10-25 s; the other scenarios run end to end with -m long (the board level of all of them is
# in the default run: test_board_scenarios.py).
@pytest.mark.parametrize(
    "name", FAST_E2E + [pytest.param(n, marks=[pytest.mark.long, pytest.mark.timeout(1800)]) for n in OTHER_E2E]
)
def test_upstream_events_match_the_scenario(name: str, flashed, tmp_path: Path) -> None:
    sc = Scenario.load(name)
    truth = sc.ground_truth(REST_PREFIX_S)  # the run as the board gets it, rest prefix included
    end_us = truth.t_us
    board = flashed(sc.timeline(rest_prefix_s=REST_PREFIX_S), speed=TALK_SPEED)
    state, config = daemon_for(board, tmp_path, sc)
    outages = pi_down_windows(sc) + [(f.t_us, f.t_us + int(float(f.params.get("s", 60.0)) * 1e6))
                              for f in sc.timeline(rest_prefix_s=REST_PREFIX_S)
                              if isinstance(f, BoardFault) and f.kind == "link_cut"]
    # An outage's car time runs flat out: the daemon hears nothing then (the board's link is down),
    # and what it must make of the outage comes from the board's journal afterwards, at RUN_SPEED.
    flat_out = [change for lo, hi in outages for change in ((lo, 0.0), (hi, RUN_SPEED))]
    run_daemon(config, board, end_us, timeout_s=end_us / 1e6 / RUN_SPEED * 4 + 60, speed_changes=flat_out,
               down=pi_down_windows(sc))
    journal, raised, seen = upstream_journal(state)
    assert raised == expected_raised(sc), seen
    messages = list(load_messages([state / "upstream.jsonl"]).messages)  # as a report reads it: latest revisions
    # Hour-of-day traffic (normal_day) draws its rides on the run's own clock, which the rest prefix
    # shifts: the simulator's count for this run, less what the scenario says cannot be reported.
    unreportable = sc.expect.trips - sc.expect.trips_reported
    assert sum(m["kind"] == "trip" for m in messages) == truth.trips - unreportable, seen
    visits = [m for m in messages if m["kind"] == "maintenance"]
    assert [v["too_short"] for v in visits] == [e["too_short"] for e in sc.expect.maintenance], seen
    runs = [e.get("inspection_runs") for e in sc.expect.maintenance]  # where the scenario says
    assert [v["inspection_runs"] if n is not None else None for v, n in zip(visits, runs)] == runs, visits
    assert len({(m["id"], m.get("revision", 0)) for m in journal}) == len(journal)  # exactly once per id
    if outages:
        # What happened while nobody listened came from the board's journal, at its true time.
        t0 = EPOCH_S
        missed = [m for m in messages if m["kind"] in ("trip", "maintenance", "door_cycle") and any(
            lo / 1e6 + 30 < _start(m) - t0 < hi / 1e6 for lo, hi in outages)]
        assert missed and all(m["source"] == "board_journal" for m in missed), seen
        # The daemon's own faults of the outage, from the journal: at their true times, inside it.
        derived = [m for m in messages if m["kind"] == "event" and m["detail"].get("source") == "board_journal"]
        assert all(any(lo / 1e6 < _ts(m["event_ts"]) - t0 < hi / 1e6 for lo, hi in outages) for m in derived), derived
        assert all(m["ride_quality"] is None for m in missed if m["kind"] == "trip")
        # Every door cycle once, live or (when its frames were lost, inside an outage or not) from the
        # journal: none missing (the simulator counts those of rides; inspection work opens the door
        # too) and none twice (two reports of one opening would start together).
        cycles = sorted(_start(m) - t0 for m in messages if m["kind"] == "door_cycle")
        assert len(cycles) >= truth.door_cycles and all(b - a > 1.0 for a, b in zip(cycles, cycles[1:])), cycles


def _start(message: dict) -> float:
    """Unix time a trip, visit or door cycle began."""
    return _ts(message.get("start_ts") or message["open_ts"])


def _ts(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
