"""End to end: a scenario's car -> the real firmware on a mock board -> the real daemon -> upstream.

The daemon runs in-process with its clock on the board's feed time (the simulated car's time), so the
car's minutes pass in seconds for both. What arrives in the daemon's JSON Lines journal is checked
against the scenario's ``[expect] events``.
"""

from __future__ import annotations

import asyncio
import collections
import json
from pathlib import Path

import pytest

from liftwatch.hil.sim.scenario import BoardFault, Scenario, list_scenarios

from .conftest import REST_PREFIX_S, TALK_SPEED

pytestmark = [pytest.mark.hil, pytest.mark.mock_only]

EPOCH_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the simulated day starts here
RUN_SPEED = 200.0  # sim s per real s: fast, yet the daemon keeps up with the board's frames


def _daemon_config(path: Path, state_dir: Path, port: str, board_id: str, sc: Scenario) -> Path:
    car = sc.car
    path.write_text(
        "\n".join(
            [
                "[daemon]",
                'site = "hil"',
                'pi = "hil-pi"',
                f'state_dir = "{state_dir}"',
                "status_interval_s = 60.0",
                "",
                "[session]",
                # Timeouts run on the simulated clock; a daemon briefly behind its board must not call
                # it offline.
                "heartbeat_timeout_s = 600.0",
                "",
                "[[boards]]",
                f'car = "{car.name}"',
                f'port = "{port}"',
                f'board_id = "{board_id}"',
                "",
                "[boards.analytics]",
                "emit_door_cycles = true",
                f"rated_speed_mps = {car.rated_speed_mps}",
                f"floor_count = {car.floors}",
                "lowest_floor = 0",
                f"vane_length_mm = {float(car.vane_length_mm)}",
                f"zone_sensor_spacing_mm = {float(car.zone_sensor_spacing_mm)}",
                "",
            ]
        )
    )
    return path


DAEMON_SETTLE_S = 3.0  # real seconds for the daemon to start and greet the board before the car moves


def _pi_down(sc: Scenario) -> list[tuple[int, int]]:
    """Car-time windows (µs, rest prefix included) of the scenario's ``pi_down`` faults."""
    return [(x.t_us, x.t_us + int(float(x.params.get("s", 60.0)) * 1e6))
            for x in sc.timeline(rest_prefix_s=REST_PREFIX_S) if isinstance(x, BoardFault) and x.kind == "pi_down"]


def _run_daemon(config_path: Path, board, end_us: int, timeout_s: float, down: list[tuple[int, int]] = ()) -> None:
    """Run the daemon until the board's car time reaches ``end_us``; stopped (cleanly) inside each
    ``down`` window and started afresh after it, as an upgrade or a Pi reboot does."""
    from liftwatch.edge_daemon.config import load_config
    from liftwatch.edge_daemon.daemon import Daemon

    def start() -> tuple[asyncio.Event, asyncio.Task]:
        daemon = Daemon(load_config(config_path), clock=lambda: EPOCH_S + board.stats.board_t_us / 1e6)
        stop = asyncio.Event()
        return stop, asyncio.create_task(daemon.run(stop), name="daemon")

    async def main() -> None:
        stop, task = start()
        running = True
        await asyncio.sleep(DAEMON_SETTLE_S)  # still in the rest prefix, at talking speed
        board.set_speed(RUN_SPEED)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while board.stats.board_t_us < end_us and loop.time() < deadline and not (running and task.done()):
            now_us = board.stats.board_t_us
            inside = any(lo <= now_us < hi for lo, hi in down)
            if inside and running:
                stop.set()
                await asyncio.wait_for(task, 30)
                running = False
            elif not inside and not running:
                stop, task = start()
                running = True
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        if running:
            stop.set()
            await asyncio.wait_for(task, 30)

    asyncio.run(main())


FAST_E2E = ["entrapment", "moving_door_open", "maintenance_too_short", "link_cut_hour", "pi_down_hour"]
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
    config = _daemon_config(tmp_path / "liftwatch.toml", state, board.ports.data, board.uid, sc)
    _run_daemon(config, board, end_us, timeout_s=end_us / 1e6 / RUN_SPEED * 4 + 60, down=_pi_down(sc))
    messages = [json.loads(line) for line in (state / "upstream.jsonl").read_text().splitlines() if line.strip()]
    raised = collections.Counter(
        m["type"] for m in messages if m["kind"] == "event" and m["state"] == "raised" and m["type"] != "board_offline"
    )
    seen = [(m["kind"], m.get("type"), m.get("state")) for m in messages if m["kind"] != "status"]
    assert dict(raised) == {k: v for k, v in sc.expect.events.items() if k != "board_offline"}, seen
    # Hour-of-day traffic (normal_day) draws its rides on the run's own clock, which the rest prefix
    # shifts: the simulator's count for this run, less what the scenario says cannot be reported.
    unreportable = sc.expect.trips - sc.expect.trips_reported
    assert sum(m["kind"] == "trip" for m in messages) == truth.trips - unreportable, seen
    visits = [m for m in messages if m["kind"] == "maintenance"]
    assert [v["too_short"] for v in visits] == [e["too_short"] for e in sc.expect.maintenance], seen
    assert len({(m["id"], m.get("revision", 0)) for m in messages}) == len(messages)  # exactly once per id
    outages = _pi_down(sc) + [(f.t_us, f.t_us + int(float(f.params.get("s", 60.0)) * 1e6))
                              for f in sc.timeline(rest_prefix_s=REST_PREFIX_S)
                              if isinstance(f, BoardFault) and f.kind == "link_cut"]
    if outages:
        # What happened while nobody listened came from the board's journal, at its true time.
        t0 = EPOCH_S
        missed = [m for m in messages if m["kind"] in ("trip", "maintenance", "door_cycle") and any(
            lo / 1e6 + 30 < _start(m) - t0 < hi / 1e6 for lo, hi in outages)]
        assert missed and all(m["source"] == "board_journal" for m in missed), seen
        assert all(m["ride_quality"] is None for m in missed if m["kind"] == "trip")
        # Every door cycle once, live or (when its frames were lost, inside an outage or not) from the
        # journal: none missing (the simulator counts those of rides; inspection work opens the door
        # too) and none twice (two reports of one opening would start together).
        cycles = sorted(_start(m) - t0 for m in messages if m["kind"] == "door_cycle")
        assert len(cycles) >= truth.door_cycles and all(b - a > 1.0 for a, b in zip(cycles, cycles[1:])), cycles


def _start(message: dict) -> float:
    """Unix time a trip, visit or door cycle began."""
    import datetime as dt

    iso = message.get("start_ts") or message["open_ts"]
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
