"""A firmware update while the daemon runs (issue 18): `liftwatch ota push` hands the bundle to the
running daemon (its control socket), whose session interleaves the chunks with the car's live
frames. The car keeps riding through the transfer: every trip reaches upstream once, live, with its
ride quality; the install (two reboots) waits until the car has stood still, so no trip is cut."""

from __future__ import annotations

import asyncio
import shutil
import sys
from datetime import datetime
from collections.abc import Callable
from pathlib import Path

import pytest

from liftwatch.edge_daemon.config import load_config
from liftwatch.edge_daemon.daemon import Daemon
from liftwatch.edge_daemon.report.source import load_messages
from liftwatch.hil.mockboard.board import MockBoard
from liftwatch.hil.sim.scenario import Scenario

from .conftest import DAEMON_SETTLE_S, EPOCH_S, RUN_SPEED, TALK_SPEED, daemon_config, upstream_journal
from .ota_kit import NEW, OLD

pytestmark = [pytest.mark.hil, pytest.mark.mock_only]

INSTALL_IDLE_S = 60  # car seconds: longer than any rest between the rides below, shorter than the quiet
PREFIX_S = 30.0  # car seconds at rest before the rides: the port is handed to the daemon meanwhile
RIDES = [{"do": "ride", "to": 3}, {"do": "wait", "s": 5}, {"do": "ride", "to": 0}, {"do": "wait", "s": 5}]
CAR = Scenario.from_dict({
    "scenario": {"name": "ota_live", "car": "office6", "seed": 5},
    # Rides while the bundle goes over, a quiet spell for the install, then rides on the new firmware.
    "step": [{"do": "repeat", "n": 3, "steps": RIDES}, {"do": "wait", "s": 600},
             {"do": "ride", "to": 2}, {"do": "wait", "s": 10}, {"do": "ride", "to": 5}, {"do": "wait", "s": 30}],
})


def test_an_update_through_the_running_daemon_loses_no_trip_and_keeps_ride_quality(
        ota_image: Path, good_bundle: bytes, board_heap_k: int, tmp_path: Path,
        mock_board_factory: Callable[..., MockBoard], frame_tap) -> None:
    truth = CAR.ground_truth(PREFIX_S)
    shutil.copyfile(ota_image, tmp_path / "live.img")
    board = mock_board_factory(CAR.timeline(rest_prefix_s=PREFIX_S), name="live", speed=TALK_SPEED,
                               heap_k=board_heap_k)
    tap = frame_tap(board.ports.data)
    tap.calibrate()
    tap.close()  # the daemon takes the port
    state = tmp_path / "state"
    state.mkdir()
    config = daemon_config(tmp_path / "liftwatch.toml", state, f'port = "{board.ports.data}"', board.uid, CAR)
    (tmp_path / "new.lwota").write_bytes(good_bundle)
    pushed: dict[str, object] = {}

    async def main() -> None:
        daemon = Daemon(load_config(config), clock=lambda: EPOCH_S + board.stats.board_t_us / 1e6)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await asyncio.sleep(DAEMON_SETTLE_S)
        pushed["from_us"] = board.stats.board_t_us
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "liftwatch", "ota", "push", str(tmp_path / "new.lwota"), "--config", str(config),
            "--car", CAR.car.name, "--install-idle-s", str(INSTALL_IDLE_S),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        talk = asyncio.ensure_future(cli.communicate())
        boots = sum(board.stats.boots.values())
        while not talk.done():  # the car time of the install's first reboot
            if "install_us" not in pushed and sum(board.stats.boots.values()) != boots:
                pushed["install_us"] = board.stats.board_t_us
            running = daemon.boards[0].status()["update_running"]
            if running is not None:  # what `liftwatch status` and the page show meanwhile
                pushed.setdefault("steps", set()).add(running["step"])
            await asyncio.wait({talk}, timeout=0.05)
        out, err = talk.result()
        pushed.update(rc=cli.returncode, out=out.decode(), err=err.decode(), to_us=board.stats.board_t_us,
                      status=daemon.boards[0].status())
        board.set_speed(RUN_SPEED)  # the rest of the quiet and the last rides, on the new firmware
        while board.stats.board_t_us < truth.t_us and not task.done():
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(main())
    assert pushed["rc"] == 0, pushed["err"]
    assert "through the running daemon" in pushed["out"] and f"runs {NEW} (previous {OLD})" in pushed["out"]
    status = pushed["status"]
    assert (status["fw_version"], status["prev_fw_version"]) == (NEW, OLD), status
    assert status["update_running"] is None and status["last_update"]["outcome"] == "updated"
    assert {"sending", "waiting for the car to stand still", "installing"} <= pushed["steps"], pushed["steps"]
    journal, raised, seen = upstream_journal(state)
    trips = [m for m in load_messages([state / "upstream.jsonl"]).messages if m["kind"] == "trip"]
    assert len(trips) == truth.trips == 8, seen  # none cut by the install's reboots, none lost
    assert len({m["id"] for m in journal}) == len(journal)  # exactly once
    # The rides made while the bundle was going over came live, with their ride quality.
    starts = [datetime.fromisoformat(t["start_ts"].replace("Z", "+00:00")).timestamp() - EPOCH_S for t in trips]
    pushing, installed = pushed["from_us"] / 1e6, pushed["install_us"] / 1e6
    assert sum(pushing < s < installed for s in starts) >= 2, (starts, pushing, installed)
    # The install waited for the quiet spell: the six rides before it, the last two after.
    assert sum(s < installed - INSTALL_IDLE_S for s in starts) == 6, (starts, installed)
    assert all(t["source"] == "live" and t["ride_quality"] is not None for t in trips), trips
    assert not raised, seen  # no fault: the board did not go offline for the daemon
