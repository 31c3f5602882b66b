"""What the firmware update tests and benchmarks/ota.py share (issue 18): the test release key,
firmware trees to build bundles from (another version, optionally broken), a mock board flash image
with the key's public half, and bundles that must be refused."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from liftwatch.edge_daemon import ota
from liftwatch.hil.mockboard.board import MockBoard
from liftwatch.protocol import ed25519
from liftwatch.protocol.messages import Command, Hello, MessageType
from liftwatch.upy import FIRMWARE_DIR

SECRET = hashlib.sha256(b"liftwatch test release key").digest()
OLD = "1.0.0"  # what `liftwatch flash` writes (firmware/agent.py FW_VERSION)
NEW = "1.1.0"


def firmware_copy(dst: Path, version: str, patch: Callable[[Path], None] | None = None) -> Path:
    """The firmware tree with another FW_VERSION (and an optional breakage), to build bundles from."""
    shutil.copytree(FIRMWARE_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    agent = dst / "agent.py"
    agent.write_text(agent.read_text().replace(f'FW_VERSION = "{OLD}"', f'FW_VERSION = "{version}"'))
    if patch is not None:
        patch(dst)
    return dst


def _append(module: str, code: str) -> Callable[[Path], None]:
    def patch(d: Path) -> None:
        f = d / module
        f.write_text(f.read_text() + "\n" + code + "\n")

    return patch


# Images that must not stay: each is rolled back by the board itself (firmware/otaboot.py, ota.py).
BAD_IMAGES: dict[str, Callable[[Path], None]] = {
    # Raises as the firmware is imported: three boots on trial, then the previous one.
    "crash at import": _append("streamer.py", "raise RuntimeError('bad image')"),
    # Boots, samples and streams, then dies at its first heartbeat (10 s in): a crash loop.
    "crash later": _append("agent.py", "Agent.send_heartbeat = lambda self: 1 // 0"),
    # Runs and samples but never hears its host: never confirmed, rolled back after the trial time.
    "never links up": _append("link.py", "Link.poll = lambda self, handler: None"),
}


def bad_bundle(tmp: Path, kind: str) -> bytes:
    return ota.build(SECRET, "x64", firmware_copy(tmp / kind.replace(" ", "_"), NEW, BAD_IMAGES[kind]))


def flash_with_release_key(d: Path, heap_k: int = 96) -> Path:
    """A flash image with the real firmware and the test release key's public half (`liftwatch flash
    --ota-key`), in folder d."""
    (d / "release.pub").write_text(ed25519.public_key(SECRET).hex())
    image = d / "flashed.img"
    board = MockBoard(image, speed=1.0, heap_k=heap_k)
    board.start()
    try:
        r = subprocess.run([sys.executable, "-m", "liftwatch", "flash", board.ports.console, "--ota-key",
                            str(d / "release.pub")], capture_output=True, text=True, timeout=180, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"liftwatch flash failed: {r.stderr.strip()}")
    finally:
        board.stop()
    return image


def small_bundle(version: str = NEW, mpy: int | None = None, secret: bytes | None = SECRET,
                 files: list[tuple[str, bytes]] | None = None) -> bytes:
    return ota.pack(version, ota.mpy_value("x64") if mpy is None else mpy, "x64",
                    files or [("note.mpy", b"not firmware")], secret)


def forged_bundles() -> dict[str, tuple[bytes, str]]:
    """Bundles a board must refuse, each with (a part of) the reason it gives."""
    signed = small_bundle()
    changed = signed[:-1] + bytes([signed[-1] ^ 1])
    return {
        "unsigned": (small_bundle(secret=None), "bad signature"),
        "wrong key": (small_bundle(secret=hashlib.sha256(b"attacker").digest()), "bad signature"),
        "changed after signing": (changed, "does not match its sha256"),
        "not newer": (small_bundle(version=OLD), "not newer"),
        "older": (small_bundle(version="0.9.9"), "not newer"),
        "other arch": (small_bundle(mpy=ota.mpy_value("xtensawin")), "another arch"),
    }


def board_hello(board: MockBoard, frame_tap) -> Hello:  # noqa: ANN001 (the conftest fixture's maker)
    """What the board runs now: its HELLO, asked for over its data port."""
    tap = frame_tap(board.ports.data)
    tap.send_message(MessageType.CONTROL, [Command.REQUEST_HELLO, 0])
    hello = tap.wait_for(Hello, timeout=30)
    tap.close()
    return hello


# ---- an update through the running daemon while the car rides (test_ota_live.py, benchmarks/ota.py) ----

LIVE_INSTALL_IDLE_S = 60  # car seconds: longer than any rest between the rides below, shorter than the quiet
LIVE_PREFIX_S = 30.0  # car seconds at rest before the rides: the port is handed to the daemon meanwhile
_RIDES = [{"do": "ride", "to": 3}, {"do": "wait", "s": 5}, {"do": "ride", "to": 0}, {"do": "wait", "s": 5}]
# Six rides while the bundle goes over, a quiet spell for the install, then two rides on the new firmware.
LIVE_CAR = {
    "scenario": {"name": "ota_live", "car": "office6", "seed": 5},
    "step": [{"do": "repeat", "n": 3, "steps": _RIDES}, {"do": "wait", "s": 600},
             {"do": "ride", "to": 2}, {"do": "wait", "s": 10}, {"do": "ride", "to": 5}, {"do": "wait", "s": 30}],
}
QUIET_SPEED = 30.0  # the quiet spell (install, trial, confirmation: all on the board's clock) runs faster


def live_quiet_from_us() -> int:
    """Car time (µs, the rest prefix included) at which LIVE_CAR's quiet spell begins."""
    from liftwatch.hil.sim.scenario import Scenario

    return Scenario.from_dict({**LIVE_CAR, "step": LIVE_CAR["step"][:1]}).ground_truth(LIVE_PREFIX_S).t_us


def update_through_daemon(board: MockBoard, config: Path, bundle: Path, car: str, end_us: int) -> dict[str, Any]:
    """The daemon in-process on ``board`` (its clock on the car's), `liftwatch ota push` run as an
    operator runs it once the daemon is up; the quiet spell at QUIET_SPEED, and once the push is
    over the car runs on at RUN_SPEED to ``end_us``. Returns
    the CLI's rc, out and err, the car time (µs) at the push's start (``from_us``) and at the
    install's first reboot (``install_us``), the board's status after the push, and the steps the
    status showed meanwhile."""
    import asyncio

    from liftwatch.edge_daemon.config import load_config
    from liftwatch.edge_daemon.daemon import Daemon
    from liftwatch.hil.conftest import EPOCH_S, RUN_SPEED, daemon_greeted

    pushed: dict[str, Any] = {"steps": set()}

    async def main() -> None:
        daemon = Daemon(load_config(config), clock=lambda: EPOCH_S + board.stats.board_t_us / 1e6)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await daemon_greeted(daemon, task)
        board.speed_at(live_quiet_from_us(), QUIET_SPEED)
        pushed["from_us"] = board.stats.board_t_us
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "liftwatch", "ota", "push", str(bundle), "--config", str(config), "--car", car,
            "--install-idle-s", str(LIVE_INSTALL_IDLE_S),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        talk = asyncio.ensure_future(cli.communicate())
        boots = sum(board.stats.boots.values())
        while not talk.done():
            if "install_us" not in pushed and sum(board.stats.boots.values()) != boots:
                pushed["install_us"] = board.stats.board_t_us
            running = daemon.boards[0].status()["update_running"]
            if running is not None:  # what `liftwatch status` and the page show meanwhile
                pushed["steps"].add(running["step"])
            await asyncio.wait({talk}, timeout=0.05)
        out, err = talk.result()
        pushed.update(rc=cli.returncode, out=out.decode(), err=err.decode(), status=daemon.boards[0].status())
        board.set_speed(RUN_SPEED)  # the rest of the quiet and the last rides, on the new firmware
        while board.stats.board_t_us < end_us and not task.done():
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(main())
    return pushed
