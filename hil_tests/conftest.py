"""Fixtures for hardware-in-the-loop tests: mock boards (default) or a real ESP32 (``--board``).

``--board /dev/ttyUSB0`` (the console/REPL port) and ``--board-data /dev/ttyUSB1`` (the data UART)
run the same tests against real hardware; tests that need what only a mock board can do (power cuts,
a simulated car) skip themselves then. Without ``--board`` nothing here touches a serial device.

The fixtures are built to be reused by end-to-end tests: ``mock_board_factory`` starts boards with
any scenario, ``flashed`` puts the real firmware on one with ``liftwatch flash``, and ``FrameTap``
decodes what the board sends on its data port (the daemon can take that port instead).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from liftwatch.hil.mockboard.board import BoardPorts, MockBoard
from liftwatch.protocol.trace import CarSample
from liftwatch.hil.sim.scenario import BoardFault, Scenario
from liftwatch.upy import FIRMWARE_DIR, SIM_HARDWARE_DIR

if TYPE_CHECKING:
    import asyncio

    from liftwatch.edge_daemon.daemon import Daemon

PROBE_FIRMWARE = Path(__file__).resolve().parent / "probe_firmware"
MPREMOTE_TIMEOUT_S = 60
# Scenario runs: the car stands still this long (sim) before the scenario; the test talks to the board
# at TALK_SPEED meanwhile (its firmware only runs while its feed advances), then lets it run flat out.
REST_PREFIX_S = 120.0
TALK_SPEED = 10.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("liftwatch hil")
    group.addoption("--board", default=None, help="console (REPL) port of a real board, e.g. /dev/ttyUSB0")
    group.addoption("--board-data", default=None, help="data UART port of the real board given with --board")
    group.addoption(
        "--board-heap-k",
        type=int,
        default=96,
        help="Python heap (KiB) of mock boards running the firmware (an ESP32 without PSRAM: 96)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "long: simulated hours; not in the default HIL run (-m long to run)")
    config.addinivalue_line("markers", "mock_only: needs a mock board (power cuts, simulated car)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    real = config.getoption("--board")
    run_long = "long" in (config.getoption("markexpr") or "")
    for item in items:
        if "long" in item.keywords and not run_long:
            item.add_marker(pytest.mark.skip(reason="long HIL run: select with -m long"))
        if real and "mock_only" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs a mock board; --board given"))


@pytest.fixture(scope="session")
def real_board(pytestconfig: pytest.Config) -> BoardPorts | None:
    """The real board's ports, or None. A port that was given but is absent is a clean skip."""
    console = pytestconfig.getoption("--board")
    if not console:
        return None
    data = pytestconfig.getoption("--board-data") or ""
    for port in (console, data):
        if port and not os.path.exists(port):
            pytest.skip(f"no board attached at {port}")
    return BoardPorts(console, data)


@pytest.fixture
def mock_board_factory(tmp_path: Path) -> Iterator[Callable[..., MockBoard]]:
    """Start mock boards (each with its own flash image under tmp_path); all stopped at teardown."""
    boards: list[MockBoard] = []

    def make(
        samples: Iterable[CarSample | BoardFault] | None = None, *, name: str = "board", **kw: object
    ) -> MockBoard:
        board = MockBoard(tmp_path / f"{name}.img", samples, **kw)  # type: ignore[arg-type]
        board.start()
        boards.append(board)
        return board

    yield make
    for b in boards:
        b.stop()
        assert b.error is None, f"mock board loop failed: {b.error!r}"


@pytest.fixture
def console(real_board: BoardPorts | None, mock_board_factory: Callable[..., MockBoard]) -> str:
    """A board's console port: the real one, or a fresh mock board with a car at rest."""
    if real_board is not None:
        return real_board.console
    return mock_board_factory(speed=1.0).ports.console


def mpremote(port: str, *args: str, timeout: float = MPREMOTE_TIMEOUT_S, check: bool = True) -> str:
    """The real mpremote CLI, as a user runs it; returns stdout (``check=False``: stdout + stderr)."""
    r = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and r.returncode != 0:
        raise AssertionError(f"mpremote {' '.join(args)} failed ({r.returncode}): {r.stderr[-1500:]}")
    return r.stdout if check else r.stdout + r.stderr


def liftwatch_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liftwatch", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def firmware_present() -> bool:
    """hal_sim.py is what the mock board needs; a real board needs main.py."""
    return (FIRMWARE_DIR / "main.py").exists() and (SIM_HARDWARE_DIR / "hal_sim.py").exists()


@pytest.fixture(scope="session")
def board_heap_k(pytestconfig: pytest.Config) -> int:
    return int(pytestconfig.getoption("--board-heap-k"))


@pytest.fixture(scope="session")
def firmware_image(tmp_path_factory: pytest.TempPathFactory, board_heap_k: int) -> Path:
    """A flash image with the real firmware put on it once per session by `liftwatch flash` (the CLI).

    Boards made from copies of it power on straight into main.py, as boards fresh from the
    flashing bench do, so each test does not pay for a flash.
    """
    return flash_image(tmp_path_factory.mktemp("firmware") / "flashed.img", board_heap_k)


def flash_image(image: Path, heap_k: int, *flash_args: str) -> Path:
    """``image`` with the real firmware put on it by `liftwatch flash` (the CLI) with ``flash_args``."""
    if not firmware_present():
        pytest.skip("firmware not in the tree yet (firmware/main.py, firmware/sim/hal_sim.py)")
    board = MockBoard(image, speed=1.0, heap_k=heap_k)
    board.start()
    try:
        r = liftwatch_cli("flash", board.ports.console, *flash_args)
        assert r.returncode == 0, f"liftwatch flash failed: {r.stderr}"
        assert "sha256 verified" in r.stdout
    finally:
        board.stop()
    return image


# The BLE boards' pairing passkey in the tests and benchmarks (a real board gets its own at flash
# time: docs/operations.md, "Pairing").
BLE_PASSKEY = 314159


def ble_flash_args(folder: Path) -> list[str]:
    """`liftwatch flash` options for a BLE board: `transport = 1` in its settings and BLE_PASSKEY."""
    import json

    config = folder / "config.json"
    config.write_text(json.dumps({"transport": 1}))
    passkey = folder / "ble_passkey"
    passkey.write_text(f"{BLE_PASSKEY:06}\n")
    return ["--config", str(config), "--ble-passkey-file", str(passkey)]


@pytest.fixture
def flashed(
    firmware_image: Path, board_heap_k: int, tmp_path: Path, mock_board_factory: Callable[..., MockBoard]
) -> Callable[..., MockBoard]:
    """Start a mock board whose flash holds the real firmware (a copy of ``firmware_image``)."""
    return boards_from(firmware_image, board_heap_k, tmp_path, mock_board_factory)


def boards_from(image: Path, heap_k: int, tmp_path: Path,
                mock_board_factory: Callable[..., MockBoard]) -> Callable[..., MockBoard]:
    """A maker of mock boards, each starting from its own copy of the flash ``image``."""
    count = 0

    def make(samples: Iterable[CarSample | BoardFault] | None = None, **kw: object) -> MockBoard:
        nonlocal count
        count += 1
        name = f"{image.stem}{count}"
        shutil.copyfile(image, tmp_path / f"{name}.img")
        kw.setdefault("heap_k", heap_k)
        return mock_board_factory(samples, name=name, **kw)

    return make


@pytest.fixture
def firmware_ports(real_board: BoardPorts | None, request: pytest.FixtureRequest) -> BoardPorts:
    """Ports of a board running the firmware: the real one (flashed now with `liftwatch flash`, which
    needs ``--board-data`` too) or a mock board with a car at rest (5x real time)."""
    if real_board is None:
        return request.getfixturevalue("flashed")(speed=5.0).ports
    if not real_board.data:
        pytest.skip("--board-data not given: the firmware's frames cannot be read")
    r = liftwatch_cli("flash", real_board.console, timeout=600)
    assert r.returncode == 0, f"liftwatch flash failed: {r.stderr}"
    return real_board


@dataclass(frozen=True, slots=True)
class TappedMessage:
    """One decoded frame with the host's arrival time."""

    at: float
    type: int
    boot_id: int
    seq: int
    t_ms: int
    message: object


class FrameTap:
    """Reads a board's data port on a thread and keeps every frame, decoded (protocol's FrameReader).

    With ``ack_events`` it answers every board EVENT with an ACK, as the daemon does once the event
    is stored, so the board does not keep re-sending it.
    """

    def __init__(self, port: str, baud: int = 921600, ack_events: bool = True) -> None:
        import serial

        from liftwatch.protocol.framing import FrameReader

        self._serial = serial.Serial(port, baud, timeout=0.05)
        self.reader = FrameReader()
        self.ack_events = ack_events
        self.boot_id: int | None = None
        self._host_seq = 0
        self.messages: list[TappedMessage] = []
        self.raw_bytes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"frame tap {port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from liftwatch.protocol.messages import Event, MessageError, MessageType, decode_message

        while not self._stop.is_set():
            try:
                chunk = self._serial.read(4096)
            except Exception:  # the pty vanished with its board: the test decides what that means
                return
            self.raw_bytes += len(chunk)
            for f in self.reader.feed(chunk):
                try:
                    msg = decode_message(f)
                except (MessageError, KeyError):
                    continue
                with self._lock:
                    self.boot_id = f.boot_id
                    self.messages.append(TappedMessage(time.monotonic(), f.type, f.boot_id, f.seq, f.t_ms, msg))
                if self.ack_events and isinstance(msg, Event):
                    self.send_message(MessageType.ACK, [MessageType.EVENT, msg.event_id, 0, "", None])

    def send(self, wire: bytes) -> None:
        self._serial.write(wire)

    def send_message(self, mtype: int, payload: list) -> None:
        """Encode and send a host->board frame, echoing the board's latest boot_id."""
        from liftwatch.protocol import lwproto
        from liftwatch.protocol.framing import encode_frame

        self._host_seq = (self._host_seq + 1) & 0xFFFF
        self.send(encode_frame(mtype, payload, self.boot_id or 0, self._host_seq, int(time.monotonic() * 1000),
                               sender=lwproto.FROM_HOST))

    def tapped(self) -> list[TappedMessage]:
        with self._lock:
            return list(self.messages)

    def of(self, cls: type) -> list:
        with self._lock:
            return [m.message for m in self.messages if isinstance(m.message, cls)]

    def wait_for(self, cls: type, pred: Callable[[object], bool] = lambda m: True, timeout: float = 30.0) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.of(cls):
                if pred(m):
                    return m
            time.sleep(0.05)
        raise AssertionError(
            f"no {cls.__name__} matching within {timeout} s; got types {self.type_counts()} "
            f"from {self.raw_bytes} bytes ({self.reader.drops.total()} frames dropped)"
        )

    def barrier(self, timeout: float = 10.0) -> None:
        """Return once the board has answered a request sent now (CONTROL request_counters): the
        frames it sent before are all here, its data port being one ordered stream."""
        from liftwatch.protocol.messages import Command, Counters, MessageType

        before = len(self.of(Counters))
        self.send_message(MessageType.CONTROL, [Command.REQUEST_COUNTERS, 0])
        self.wait_for(Counters, lambda _m: len(self.of(Counters)) > before, timeout=timeout)

    def type_counts(self) -> dict[str, int]:
        from collections import Counter

        with self._lock:
            return dict(Counter(type(m.message).__name__ for m in self.messages))

    def calibrate(self, timeout: float = 10.0) -> None:
        """HELLO (asked for: the boot one went out before we listened), then CONTROL calibrate -> ACK."""
        from liftwatch.protocol.messages import Ack, Command, Hello, MessageType

        self.send_message(MessageType.CONTROL, [Command.REQUEST_HELLO, 0])
        self.wait_for(Hello, timeout=timeout)
        self.send_message(MessageType.CONTROL, [Command.CALIBRATE, 0])
        self.wait_for(Ack, lambda a: a.ack_type == MessageType.CONTROL and a.status == 0, timeout=timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._serial.close()


@pytest.fixture
def frame_tap() -> Iterator[Callable[[str], FrameTap]]:
    taps: list[FrameTap] = []

    def make(port: str) -> FrameTap:
        tap = FrameTap(port)
        taps.append(tap)
        return tap

    yield make
    for t in taps:
        t.close()


# ---- the daemon end to end (test_e2e_daemon.py over the UART, test_ble.py over the virtual radio) ----

EPOCH_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the simulated day starts here
RUN_SPEED = 200.0  # sim s per real s: fast, yet the daemon keeps up with the board's frames
# Real seconds the daemon may take to open its link and greet the board (its HELLO, a time sync)
# while the car stands at talking speed; the car then runs at the run's speed.
DAEMON_GREET_TIMEOUT_S = 30.0


def daemon_config(path: Path, state_dir: Path, link: str, board_id: str, sc: Scenario) -> Path:
    """The daemon's TOML for one board of scenario ``sc``; ``link`` is its link's line(s), e.g.
    ``port = "/dev/pts/3"`` or ``link = "ble"`` and ``address = "liftwatch-e0b001"``."""
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
                link,
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


def daemon_for(board: MockBoard, d: Path, sc: Scenario, name: str = "") -> tuple[Path, Path]:
    """Calibrate ``board`` over its data port, then leave the port to a daemon: its state folder and
    its config (for scenario ``sc``'s car), both in folder ``d``."""
    tap = FrameTap(board.ports.data)
    try:
        tap.calibrate()
    finally:
        tap.close()  # the daemon takes the port
    state = d / f"state{name}"
    state.mkdir()
    return state, daemon_config(d / f"liftwatch{name}.toml", state, f'port = "{board.ports.data}"', board.uid, sc)


def run_daemon(config_path: Path, board: MockBoard, end_us: int, timeout_s: float, *,
               transports: dict[str, object] | None = None, speed: float = RUN_SPEED,
               speed_changes: Sequence[tuple[int, float]] = (),
               down: Sequence[tuple[int, int]] = ()) -> None:
    """The daemon in-process, on the board's clock, until the board's car reaches ``end_us``; stopped
    (cleanly) inside each ``down`` window of car time (µs) and started afresh after it, as an upgrade
    or a Pi reboot does. Once the daemon has greeted the
    board the car runs at ``speed``, changed to each ``speed_changes`` speed at its car time (µs)."""
    import asyncio

    from liftwatch.edge_daemon.config import load_config
    from liftwatch.edge_daemon.daemon import Daemon

    def start() -> tuple[Daemon, asyncio.Event, asyncio.Task]:
        daemon = Daemon(load_config(config_path), transports=transports,  # type: ignore[arg-type]
                        clock=lambda: EPOCH_S + board.stats.board_t_us / 1e6)
        stop = asyncio.Event()
        return daemon, stop, asyncio.create_task(daemon.run(stop), name="daemon")

    async def main() -> None:
        daemon, stop, task = start()
        running = True
        await daemon_greeted(daemon, task)  # still in the rest prefix, at talking speed
        for at_us, then in speed_changes:
            board.speed_at(at_us, then)
        board.set_speed(speed)
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
                daemon, stop, task = start()
                running = True
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        if running:
            stop.set()
            await asyncio.wait_for(task, 30)

    asyncio.run(main())


async def daemon_greeted(daemon: Daemon, task: asyncio.Task) -> None:
    """Return once every board of ``daemon`` has sent the HELLO of its boot and answered a time sync
    (what the car's first trip needs: its times mapped to UTC); fail after DAEMON_GREET_TIMEOUT_S."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + DAEMON_GREET_TIMEOUT_S
    while True:
        sessions = [b.pipeline.session for b in daemon.boards]
        if sessions and all(s.boot_id is not None and s.hello_boot_id == s.boot_id and s.status()["time_synced"]
                            for s in sessions):
            return
        if task.done():
            task.result()  # its error, if it failed
            raise AssertionError("the daemon stopped before it greeted the board")
        if loop.time() > deadline:
            raise AssertionError(f"the daemon did not greet the board within {DAEMON_GREET_TIMEOUT_S} s: "
                                 f"{[s.status() for s in sessions]}")
        await asyncio.sleep(0.05)


def upstream_journal(state_dir: Path) -> tuple[list[dict], dict[str, int], list[tuple]]:
    """What the daemon delivered (its JSON Lines journal): the messages, the events raised by type
    (board_offline left out: when a link drops is the harness's business), and a short list of what
    was seen, for assertion messages."""
    import collections
    import json

    messages = [json.loads(line) for line in (state_dir / "upstream.jsonl").read_text().splitlines() if line.strip()]
    raised = collections.Counter(
        m["type"] for m in messages if m["kind"] == "event" and m["state"] == "raised" and m["type"] != "board_offline"
    )
    seen = [(m["kind"], m.get("type"), m.get("state")) for m in messages if m["kind"] != "status"]
    return messages, dict(raised), seen


def pi_down_windows(sc: Scenario) -> list[tuple[int, int]]:
    """Car-time windows (µs, rest prefix included) of the scenario's ``pi_down`` faults."""
    return [(x.t_us, x.t_us + int(float(x.params.get("s", 60.0)) * 1e6))
            for x in sc.timeline(rest_prefix_s=REST_PREFIX_S) if isinstance(x, BoardFault) and x.kind == "pi_down"]


def expected_raised(sc: Scenario) -> dict[str, int]:
    """The events scenario ``sc`` raises, by type, as upstream_journal counts them."""
    return {k: v for k, v in sc.expect.events.items() if k != "board_offline"}


# ---- firmware updates (test_ota.py, test_ota_rollout.py; helpers in ota_kit.py) ----


@pytest.fixture(scope="session")
def ota_image(tmp_path_factory: pytest.TempPathFactory, board_heap_k: int) -> Path:
    """A flash image of the real firmware with the test release key's public half."""
    from .ota_kit import flash_with_release_key

    return flash_with_release_key(tmp_path_factory.mktemp("ota"), board_heap_k)


@pytest.fixture(scope="session")
def good_bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The firmware as version ota_kit.NEW, signed by the test release key."""
    from liftwatch.edge_daemon import ota

    from .ota_kit import NEW, SECRET, firmware_copy

    return ota.build(SECRET, "x64", firmware_copy(tmp_path_factory.mktemp("fw") / "firmware", NEW))
