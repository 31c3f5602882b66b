"""A firmware update while the daemon runs (issue 18): `liftwatch ota push` hands the bundle to the
running daemon (its control socket), whose session interleaves the chunks with the car's live
frames. The car keeps riding through the transfer: every trip reaches upstream once, live, with its
ride quality; the install (two reboots) waits until the car has stood still, so no trip is cut."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from liftwatch.edge_daemon.report.source import load_messages
from liftwatch.hil.mockboard.board import MockBoard
from liftwatch.hil.sim.scenario import Scenario

from .conftest import EPOCH_S, TALK_SPEED, daemon_for, upstream_journal
from .ota_kit import LIVE_CAR, LIVE_INSTALL_IDLE_S, LIVE_PREFIX_S, NEW, OLD, update_through_daemon

pytestmark = [pytest.mark.hil, pytest.mark.mock_only]


def test_an_update_through_the_running_daemon_loses_no_trip_and_keeps_ride_quality(
        ota_image: Path, good_bundle: bytes, board_heap_k: int, tmp_path: Path,
        mock_board_factory: Callable[..., MockBoard]) -> None:
    sc = Scenario.from_dict(LIVE_CAR)
    truth = sc.ground_truth(LIVE_PREFIX_S)
    shutil.copyfile(ota_image, tmp_path / "live.img")
    board = mock_board_factory(sc.timeline(rest_prefix_s=LIVE_PREFIX_S), name="live", speed=TALK_SPEED,
                               heap_k=board_heap_k)
    state, config = daemon_for(board, tmp_path, sc)
    (tmp_path / "new.lwota").write_bytes(good_bundle)
    pushed = update_through_daemon(board, config, tmp_path / "new.lwota", sc.car.name, truth.t_us)

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
    assert sum(s < installed - LIVE_INSTALL_IDLE_S for s in starts) == 6, (starts, installed)
    assert all(t["source"] == "live" and t["ride_quality"] is not None for t in trips), trips
    assert not raised, seen  # no fault: the board did not go offline for the daemon
