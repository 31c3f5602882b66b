"""Firmware updates over the data link on mock boards (issue 18): the real firmware, flashed with a
release key's public half, takes a signed bundle from `edge_daemon.ota.push`, switches at a reboot,
confirms; forged and broken bundles are refused with the board's reason and leave the running
firmware as it was; a new firmware that cannot run is rolled back by the board itself."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from liftwatch.edge_daemon import ota
from liftwatch.edge_daemon.transport import LinkKind, make_transport
from liftwatch.hil.mockboard.board import MockBoard
from liftwatch.protocol import ed25519
from liftwatch.protocol.messages import Command, Hello, MessageType
from liftwatch.upy import FIRMWARE_DIR

from .conftest import TALK_SPEED, liftwatch_cli

pytestmark = [pytest.mark.hil, pytest.mark.mock_only]
SECRET = hashlib.sha256(b"liftwatch test release key").digest()
NEW = "1.1.0"


def firmware_copy(dst: Path, version: str, patch: Callable[[Path], None] | None = None) -> Path:
    """The firmware tree with another FW_VERSION (and an optional breakage), to build bundles from."""
    shutil.copytree(FIRMWARE_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    agent = dst / "agent.py"
    agent.write_text(agent.read_text().replace('FW_VERSION = "1.0.0"', f'FW_VERSION = "{version}"'))
    if patch is not None:
        patch(dst)
    return dst


def flash_with_release_key(d: Path) -> Path:
    """A flash image with the real firmware and the test release key's public half (`liftwatch flash
    --ota-key`), in folder d."""
    (d / "release.pub").write_text(ed25519.public_key(SECRET).hex())
    image = d / "flashed.img"
    board = MockBoard(image, speed=1.0, heap_k=96)
    board.start()
    try:
        r = liftwatch_cli("flash", board.ports.console, "--ota-key", str(d / "release.pub"))
        assert r.returncode == 0, r.stderr
    finally:
        board.stop()
    return image


@pytest.fixture(scope="module")
def ota_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return flash_with_release_key(tmp_path_factory.mktemp("ota"))


@pytest.fixture
def ota_board(ota_image: Path, tmp_path: Path, mock_board_factory: Callable[..., MockBoard]) -> MockBoard:
    shutil.copyfile(ota_image, tmp_path / "ota.img")
    return mock_board_factory(name="ota", speed=TALK_SPEED, heap_k=96)


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    src = firmware_copy(tmp_path_factory.mktemp("fw") / "firmware", NEW)
    return ota.build(SECRET, "x64", src)


def run_push(board: MockBoard, raw: bytes, timeout_s: float = 240, confirm: bool = True) -> ota.PushResult:
    return asyncio.run(ota.push(make_transport(LinkKind.SERIAL, board.ports.data), raw, timeout_s=timeout_s,
                                confirm=confirm))


def running(board: MockBoard, frame_tap) -> Hello:  # noqa: ANN001
    tap = frame_tap(board.ports.data)
    tap.send_message(MessageType.CONTROL, [Command.REQUEST_HELLO, 0])
    hello = tap.wait_for(Hello, timeout=30)
    tap.close()
    return hello


def test_signed_update_installs_confirms_and_reports_both_versions(ota_board, good_bundle, frame_tap) -> None:
    result = run_push(ota_board, good_bundle)
    assert (result.fw_version, result.prev_fw_version) == (NEW, "1.0.0")
    hello = running(ota_board, frame_tap)
    assert (hello.fw_version, hello.prev_fw_version, hello.update) == (NEW, "1.0.0", "confirmed")
    assert not hello.safe_mode


def _small(version: str = NEW, mpy: int | None = None, secret: bytes | None = SECRET,
           files: list[tuple[str, bytes]] | None = None) -> bytes:
    return ota.pack(version, ota.mpy_value("x64") if mpy is None else mpy, "x64",
                    files or [("note.mpy", b"not firmware")], secret)


def _forged() -> dict[str, tuple[bytes, str]]:
    signed = _small()
    changed = signed[:-1] + bytes([signed[-1] ^ 1])
    return {
        "unsigned": (_small(secret=None), "bad signature"),
        "wrong key": (_small(secret=hashlib.sha256(b"attacker").digest()), "bad signature"),
        "changed after signing": (changed, "does not match its sha256"),
        "not newer": (_small(version="1.0.0"), "not newer"),
        "older": (_small(version="0.9.9"), "not newer"),
        "other arch": (_small(mpy=ota.mpy_value("xtensawin")), "another arch"),
    }


@pytest.mark.parametrize("case", sorted(_forged()))
def test_forged_or_unfit_bundle_is_refused_and_the_running_firmware_stays(case, ota_board, frame_tap) -> None:
    raw, why = _forged()[case]
    with pytest.raises(ota.OtaError, match=why):
        run_push(ota_board, raw, timeout_s=90)
    hello = running(ota_board, frame_tap)
    assert (hello.fw_version, hello.update) == ("1.0.0", "")


def test_oversized_bundle_is_refused_at_its_first_chunk(ota_board) -> None:
    raw = _small(files=[("big.mpy", bytes(ota.MAX_BUNDLE))])
    with pytest.raises(ota.OtaError, match="over the"):
        run_push(ota_board, raw, timeout_s=60)


def test_new_firmware_that_crashes_at_import_is_rolled_back(ota_board, tmp_path, frame_tap) -> None:
    def crash(d: Path) -> None:
        s = d / "streamer.py"
        s.write_text(s.read_text() + "\nraise RuntimeError('bad image')\n")

    raw = ota.build(SECRET, "x64", firmware_copy(tmp_path / "fw", NEW, crash))
    with pytest.raises(ota.OtaError, match="rolled back"):
        run_push(ota_board, raw)
    hello = running(ota_board, frame_tap)
    assert (hello.fw_version, hello.prev_fw_version, hello.update) == ("1.0.0", NEW, "rolled_back")


def test_power_cut_during_transfer_resumes_where_the_flash_left_off(ota_board, good_bundle) -> None:
    cut: list[int] = []

    def at_a_third(have: int, total: int) -> None:  # the power goes once the board holds a third
        if not cut and have >= total // 3:
            cut.append(have)
            threading.Thread(target=ota_board.power_cut, kwargs={"off_s": 0.5}, daemon=True).start()

    result = asyncio.run(ota.push(make_transport(LinkKind.SERIAL, ota_board.ports.data), good_bundle,
                                  timeout_s=240, progress=at_a_third))
    assert (result.fw_version, result.prev_fw_version) == (NEW, "1.0.0")
    assert len(result.resumed_from) == 1 and result.resumed_from[0] >= cut[0]  # not from 0: the flash kept it
    assert result.resent_bytes <= ota.WINDOW * ota.CHUNK  # only what was in flight at the cut
