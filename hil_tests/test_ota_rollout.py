"""`liftwatch ota rollout` on mock boards (issue 18): a canary car first, the others once its health
held; a canary that rolls back stops the rollout with every other car untouched on the old firmware.
Each board runs the real firmware at the board's heap, flashed with the test release key."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from liftwatch.edge_daemon import ota
from liftwatch.hil.mockboard.board import MockBoard

from .conftest import TALK_SPEED, liftwatch_cli
from .ota_kit import NEW, OLD, bad_bundle, board_hello

pytestmark = [pytest.mark.hil, pytest.mark.mock_only]
CARS = ("c1", "c2", "c3")
HOLD_S = "4"  # real seconds: 40 s of the boards' sped-up time


@pytest.fixture
def fleet(ota_image: Path, tmp_path: Path, board_heap_k: int,
          mock_board_factory: Callable[..., MockBoard]) -> dict[str, MockBoard]:
    boards = {}
    for i, car in enumerate(CARS):
        shutil.copyfile(ota_image, tmp_path / f"{car}.img")
        boards[car] = mock_board_factory(name=car, speed=TALK_SPEED, heap_k=board_heap_k, uid=f"a4cf12e0b00{i}")
    return boards


def fleet_config(tmp_path: Path, boards: dict[str, MockBoard]) -> Path:
    lines = ["[daemon]", 'site = "hil"', f'state_dir = "{tmp_path / "state"}"', ""]
    for car, b in boards.items():
        lines += ["[[boards]]", f'car = "{car}"', f'port = "{b.ports.data}"', ""]
    (tmp_path / "state").mkdir()
    path = tmp_path / "fleet.toml"
    path.write_text("\n".join(lines))
    return path


@contextlib.contextmanager
def daemon_running(cfg: Path) -> Iterator[None]:
    """`liftwatch run`'s Daemon on its own thread and loop, holding every car's port."""
    from liftwatch.edge_daemon.config import load_config
    from liftwatch.edge_daemon.daemon import Daemon

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(Daemon(load_config(cfg)).run(stop),))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not (cfg.parent / "state" / "control.sock").is_socket() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


def test_rollout_through_the_running_daemon_updates_the_canary_then_the_rest(fleet, tmp_path, good_bundle,
                                                                            frame_tap) -> None:
    cfg = fleet_config(tmp_path, fleet)
    (tmp_path / "good.lwota").write_bytes(good_bundle)
    with daemon_running(cfg):
        r = liftwatch_cli("ota", "rollout", str(tmp_path / "good.lwota"), "--config", str(cfg), "--canary", "c2",
                          "--hold-s", HOLD_S, "--parallel", "2", timeout=600)
        assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "through the running daemon (live data keeps flowing)", out
    # The canary is pushed and its health watched before any other car is pushed.
    first_other = min(i for i, line in enumerate(out) if line.startswith(("c1: pushing", "c3: pushing")))
    assert any(line.startswith("c2: watching its health") for line in out[:first_other]), out
    for car, board in fleet.items():
        hello = board_hello(board, frame_tap)
        assert (hello.fw_version, hello.prev_fw_version, hello.update) == (NEW, OLD, "confirmed"), car
        assert ota.read_outcome(tmp_path / "state", car)["outcome"] == "updated"
    state = json.loads((tmp_path / "state" / "ota-rollout.json").read_text())
    assert state["phase"] == "done" and set(state["cars"].values()) == {"updated"}
    # Run again: the state file says done, so nothing is pushed twice.
    again = liftwatch_cli("ota", "rollout", str(tmp_path / "good.lwota"), "--config", str(cfg), "--canary", "c2",
                          "--hold-s", HOLD_S, timeout=300)
    assert again.returncode == 0 and "pushing" not in again.stdout, again.stdout + again.stderr


def test_a_canary_that_crashes_at_import_stops_the_rollout(fleet, tmp_path, frame_tap) -> None:
    cfg = fleet_config(tmp_path, fleet)
    (tmp_path / "bad.lwota").write_bytes(bad_bundle(tmp_path, "crash at import"))
    r = liftwatch_cli("ota", "rollout", str(tmp_path / "bad.lwota"), "--config", str(cfg), "--canary", "c1",
                      "--hold-s", HOLD_S, timeout=600)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "canary c1" in r.stderr and "rolled back" in r.stderr, r.stderr
    assert "c2: pushing" not in r.stdout and "c3: pushing" not in r.stdout
    hello = board_hello(fleet["c1"], frame_tap)
    assert (hello.fw_version, hello.prev_fw_version, hello.update) == (OLD, NEW, "rolled_back")
    for car in ("c2", "c3"):  # untouched: never updated, nothing received
        hello = board_hello(fleet[car], frame_tap)
        assert (hello.fw_version, hello.update_record) == (OLD, ""), car
    assert ota.read_outcome(tmp_path / "state", "c1")["outcome"] == "rolled_back"
    state = json.loads((tmp_path / "state" / "ota-rollout.json").read_text())
    assert state["phase"] == "stopped" and state["cars"]["c2"] == state["cars"]["c3"] == "pending"
    # A stopped rollout stays stopped: running it again pushes nothing and says why.
    again = liftwatch_cli("ota", "rollout", str(tmp_path / "bad.lwota"), "--config", str(cfg), "--canary", "c1")
    assert again.returncode == 1 and "stopped" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.long  # 16 s; the suite's time (a canary crashing at import stops it in the default run)
def test_a_canary_that_reboots_during_the_hold_stops_the_rollout(fleet, tmp_path, good_bundle, frame_tap) -> None:
    """The canary confirmed, then went down during the hold (a crash, a power cut): the health did
    not hold, so the others keep the old firmware."""
    cfg = fleet_config(tmp_path, fleet)
    (tmp_path / "good.lwota").write_bytes(good_bundle)
    state = tmp_path / "state" / "ota-rollout.json"
    proc = subprocess.Popen([sys.executable, "-m", "liftwatch", "ota", "rollout", str(tmp_path / "good.lwota"),
                             "--config", str(cfg), "--canary", "c3", "--hold-s", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (state.exists() and json.loads(state.read_text())["phase"] == "hold"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.5)
        time.sleep(3)  # a few seconds into the hold
        fleet["c3"].power_cut(off_s=0.5)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and "canary c3" in err and "rebooted during the hold" in err, out + err
    for car in ("c1", "c2"):
        hello = board_hello(fleet[car], frame_tap)
        assert (hello.fw_version, hello.update_record) == (OLD, ""), car
    assert json.loads(state.read_text())["phase"] == "stopped"


@pytest.mark.long  # 40 s; the suite's time (resume points are unit-tested in tests/test_ota_rollout.py)
def test_a_rollout_killed_mid_transfer_resumes_without_pushing_the_canary_again(fleet, tmp_path, good_bundle,
                                                                                 frame_tap) -> None:
    """The Pi dies (SIGKILL) while the first car after the canary is being pushed: the same command
    run again goes on from the state file (the canary is not pushed or held again) and every car
    ends confirmed on the new firmware."""
    cfg = fleet_config(tmp_path, fleet)
    (tmp_path / "good.lwota").write_bytes(good_bundle)
    state = tmp_path / "state" / "ota-rollout.json"
    argv = [sys.executable, "-m", "liftwatch", "ota", "rollout", str(tmp_path / "good.lwota"), "--config", str(cfg),
            "--canary", "c1", "--hold-s", "2", "--parallel", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (state.exists() and json.loads(state.read_text())["phase"] == "rest"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        time.sleep(4)  # into the next car's transfer
    finally:
        proc.kill()
        proc.communicate()
    before = json.loads(state.read_text())
    assert before["cars"]["c1"] == "updated" and before["phase"] == "rest"
    again = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("resuming the rollout of 1.1.0: rest") and "c1:" not in again.stdout
    for car, board in fleet.items():
        hello = board_hello(board, frame_tap)
        assert (hello.fw_version, hello.update) == (NEW, "confirmed"), car
