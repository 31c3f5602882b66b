"""Firmware updates over the data link on mock boards (issue 18): the real firmware, flashed with a
release key's public half, takes a signed bundle from `edge_daemon.ota.push`, switches at a reboot,
confirms; forged and broken bundles are refused with the board's reason and leave the running
firmware as it was; a new firmware that cannot run is rolled back by the board itself."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from liftwatch.edge_daemon import ota, ota_jobs
from liftwatch.edge_daemon.transport import LinkKind, make_transport
from liftwatch.hil.mockboard.board import MockBoard
from liftwatch.protocol.messages import Command, Hello, MessageType

from .conftest import TALK_SPEED, liftwatch_cli, mpremote
from .ota_kit import BAD_IMAGES, NEW, OLD, bad_bundle, board_hello, forged_bundles, small_bundle

pytestmark = [pytest.mark.hil, pytest.mark.mock_only]


@pytest.fixture
def ota_board(ota_image: Path, tmp_path: Path, board_heap_k: int,
              mock_board_factory: Callable[..., MockBoard]) -> MockBoard:
    shutil.copyfile(ota_image, tmp_path / "ota.img")
    return mock_board_factory(name="ota", speed=TALK_SPEED, heap_k=board_heap_k)


def run_push(board: MockBoard, raw: bytes, timeout_s: float = 240, confirm: bool = True) -> ota.PushResult:
    return asyncio.run(ota.push(make_transport(LinkKind.SERIAL, board.ports.data), raw, timeout_s=timeout_s,
                                confirm=confirm))


def test_signed_update_installs_confirms_and_reports_both_versions(ota_board, good_bundle, frame_tap) -> None:
    result = run_push(ota_board, good_bundle)
    assert (result.fw_version, result.prev_fw_version) == (NEW, OLD)
    hello = board_hello(ota_board, frame_tap)
    assert (hello.fw_version, hello.prev_fw_version, hello.update) == (NEW, OLD, "confirmed")
    assert not hello.safe_mode


@pytest.mark.parametrize("case", sorted(forged_bundles()))
def test_forged_or_unfit_bundle_is_refused_and_the_running_firmware_stays(case, ota_board, frame_tap) -> None:
    raw, why = forged_bundles()[case]
    with pytest.raises(ota.OtaError, match=why):
        run_push(ota_board, raw, timeout_s=90)
    hello = board_hello(ota_board, frame_tap)
    assert (hello.fw_version, hello.update) == (OLD, "")


def test_oversized_bundle_is_refused_at_its_first_chunk(ota_board) -> None:
    raw = small_bundle(files=[("big.mpy", bytes(ota.MAX_BUNDLE))])
    with pytest.raises(ota.OtaError, match="over the"):
        run_push(ota_board, raw, timeout_s=60)


def test_truncated_bundle_from_a_compromised_pi_is_refused_by_the_board(ota_board, good_bundle, frame_tap,
                                                                        monkeypatch) -> None:
    """The Pi's own check (ota.parse) refuses a truncated bundle before sending it; a Pi that skips
    it gets the board's refusal, its firmware as it was."""
    truncated = good_bundle[:-1000]
    real = ota.parse(good_bundle)
    monkeypatch.setattr(ota, "parse", lambda raw, public=None: dataclasses.replace(real, raw=truncated))
    with pytest.raises(ota.OtaError, match="board refused the bundle: bundle size does not match its manifest"):
        run_push(ota_board, truncated, timeout_s=120)
    hello = board_hello(ota_board, frame_tap)
    assert (hello.fw_version, hello.prev_fw_version, hello.update) == (OLD, "", "")


FILL_FLASH = """import os
f = open('fill', 'wb')
while os.statvfs('/')[0] * os.statvfs('/')[3] > 100000:
    f.write(bytes(4096))
    f.flush()
f.close()"""


def test_full_flash_refuses_the_update_at_its_first_chunk_with_the_reason_in_status(
        ota_board, good_bundle, tmp_path, frame_tap) -> None:
    mpremote(ota_board.ports.console, "exec", FILL_FLASH, "+", "reset")
    (tmp_path / "state").mkdir()
    (tmp_path / "lw.toml").write_text(f'[daemon]\nsite = "s"\nstate_dir = "{tmp_path / "state"}"\n'
                                      f'[[boards]]\ncar = "c1"\nport = "{ota_board.ports.data}"\n')
    (tmp_path / "b.lwota").write_bytes(good_bundle)
    r = liftwatch_cli("ota", "push", "--config", str(tmp_path / "lw.toml"), "--car", "c1", str(tmp_path / "b.lwota"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "board refused the bundle: flash full:" in r.stderr
    kept = ota.read_outcome(tmp_path / "state", "c1")
    assert kept["outcome"] == "refused" and "flash full" in kept["reason"]  # `liftwatch status` shows it
    hello = board_hello(ota_board, frame_tap)
    assert (hello.fw_version, hello.update_record) == (OLD, "")  # untouched: not even a boot record


# "never links up" waits out the whole trial (about 40 s): with -m long, to keep the suite near 12
# minutes; the benchmark's bad images (benchmarks/ota.py) include it too.
@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.long) if k == "never links up" else k
                                  for k in sorted(BAD_IMAGES)])
def test_a_new_firmware_that_cannot_run_is_rolled_back_and_the_old_one_samples(kind, ota_board, tmp_path,
                                                                              frame_tap) -> None:
    """Crash at import, crash later (a crash loop: the crashes were the new firmware's, so the old
    one must not start in safe mode for them), never links up (not confirmed within the trial)."""
    with pytest.raises(ota.OtaError, match="rolled back"):
        run_push(ota_board, bad_bundle(tmp_path, kind), timeout_s=ota_jobs.TRIAL_S * 2)
    hello = board_hello(ota_board, frame_tap)
    assert (hello.fw_version, hello.prev_fw_version, hello.update) == (OLD, NEW, "rolled_back")
    assert not hello.safe_mode and hello.sensor_model != "none"


def test_power_cut_during_transfer_resumes_where_the_flash_left_off(ota_board, good_bundle) -> None:
    cut: list[int] = []

    def at_a_third(have: int, total: int) -> None:  # the power goes once the board holds a third
        if not cut and have >= total // 3:
            cut.append(have)
            threading.Thread(target=ota_board.power_cut, kwargs={"off_s": 0.5}, daemon=True).start()

    result = asyncio.run(ota.push(make_transport(LinkKind.SERIAL, ota_board.ports.data), good_bundle,
                                  timeout_s=240, progress=at_a_third))
    assert (result.fw_version, result.prev_fw_version) == (NEW, OLD)
    assert len(result.resumed_from) == 1 and result.resumed_from[0] >= cut[0]  # not from 0: the flash kept it
    assert result.resent_bytes <= ota_jobs.WINDOW * ota_jobs.CHUNK  # only what was in flight at the cut


# docs/operations.md, "On a real ESP32 by hand": the same commands, on the mock board's console.
BY_HAND_INSTALL = """import os
n = os.stat('ota.part')[6]
open('ota.id', 'w').write('0 %d' % n)
open('ota.install', 'w').write('7 1.0.0')
'ota.boot' in os.listdir() or open('ota.boot', 'w').write('- - c 1.0.0 -')"""


def test_install_and_rollback_by_hand_over_the_console(ota_board, good_bundle, tmp_path, frame_tap) -> None:
    (tmp_path / "b.lwota").write_bytes(good_bundle)
    console = ota_board.ports.console
    mpremote(console, "cp", str(tmp_path / "b.lwota"), ":ota.part", "+", "exec", BY_HAND_INSTALL, "+", "reset")
    tap = frame_tap(ota_board.ports.data)  # the host frames it hears let the trial confirm
    for _ in range(24):  # the install boot, then 60 s of the board's time on trial (6 s at TALK_SPEED)
        tap.send_message(MessageType.CONTROL, [Command.REQUEST_HELLO, 0])
        try:
            tap.wait_for(Hello, lambda h: (h.fw_version, h.update) == (NEW, "confirmed"), timeout=5)
            break
        except AssertionError:
            continue
    else:
        raise AssertionError(f"not confirmed on {NEW}: {tap.type_counts()}")
    tap.close()
    said = mpremote(console, "exec", "import otaboot; print(otaboot.rollback() or 'ok')", "+", "reset")
    assert said.strip().endswith("ok")
    hello = board_hello(ota_board, frame_tap)
    assert (hello.fw_version, hello.prev_fw_version, hello.update) == (OLD, NEW, "rolled_back")
    assert "fw_a" in mpremote(console, "cat", ":ota.boot")  # the slot is kept: a rollback is one rename
