"""The mock board: two ptys, a MicroPython child running the board, and the car feeding its sensors.

The parent (this module, CPython) owns everything a real board's surroundings own: the USB console
(``console`` pty, where mpremote connects), the data UART (``data`` pty, where the daemon connects),
the power supply and reset line (it starts, kills and restarts the child), the flash chip (an image
file that survives all of that) and the car (the sim feed, written to a FIFO the firmware's simulated
HAL reads). The child is ``micropython -X heapsize=96k board_rom.py``, started through
``liftwatch.upy``; ``board_rom.py`` plays the ESP32 port's C firmware (boot, VFS, REPLs).

Everything runs in one selector loop on one background thread; public methods post work to it.
Faults are injected here: power cuts, watchdog resets (when the firmware stops consuming its feed),
link cuts and garbage on the UART. The ports and the bounded relays between them are ptys.py; the
car's feed and the actions timed by car time are feed_pump.py.
"""

from __future__ import annotations

import collections
import enum
import errno
import logging
import os
import queue
import random
import selectors
import signal
import subprocess
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from pathlib import Path

from liftwatch.errors import LiftwatchError
from liftwatch.hil.mockboard.feed_pump import TICK_S, FeedPump
from liftwatch.hil.mockboard.ptys import RELAY_LIMIT_BYTES, Relay, hung_up, make_pty, read_available
from liftwatch.hil.sim.scenario import BoardFault
from liftwatch.protocol.trace import CarSample
from liftwatch.upy import ESP32_HEAP_K, POINTER_WIDTH_HEAP_K, micropython_cmd

if TYPE_CHECKING:
    from liftwatch.hil.mockboard.radio import VirtualRadio

log = logging.getLogger(__name__)

BOARD_ROM = Path(__file__).with_name("board_rom.py")
BOARD_BLE = Path(__file__).with_name("board_ble.py")  # `bluetooth`, then the ROM, for a board with a radio
# board_rom.py stands for the ESP32 port's C code (REPL, VFS glue), which uses no Python heap on a
# board; here its bytecode and objects do. The child gets this much more than the ESP32 heap so
# main.py starts with what it would have on an ESP32 (checked by test_mockboard's heap test).
ROM_HEAP_ALLOWANCE_K = 17
# The ROM's own qstrs fill the first qstr pools, so the firmware's qstrs land in bigger, emptier ones
# than on a board where the ROM's strings are in flash: measured 5.5 KiB more for the firmware's
# imports than a plain interpreter spends (test_mockboard checks the heap left after them).
QSTR_POOL_ALLOWANCE_K = 6
# The simulated HAL keeps a register-level fake accelerometer (fakeaccel.py + one part's fake, about
# 5 KiB measured) on the same heap; on a board that part is silicon.
SIM_HARDWARE_HEAP_K = 5
# The `bluetooth` stand-in (board_ble.py) is the ESP32 port's C binding on a board; here its bytecode,
# its receive buffer and the socket modules sit on the Python heap (measured: 9.4 KiB at import, with
# pairing).
RADIO_HEAP_K = 10
DEFAULT_FS_BYTES = 2 * 1024 * 1024  # the VFS partition of a 4 MB ESP32 module
# Real seconds a stalled feed is tolerated before the watchdog fires, whatever the speed: the child
# can be descheduled or collecting garbage for a while on a loaded 2-core CI machine.
WATCHDOG_MIN_REAL_S = 3.0
# The REPL timeout the firmware gives the chip's watchdog on Ctrl-C (firmware/hal_esp32.py WDT_PARK_MS).
WDT_PARK_S = 1800.0
_ROM_RESET_TEXT = {
    "power_on": b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "hard": b"rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "wdt": b"rst:0x7 (TG0WDT_SYS_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "brownout": b"rst:0xf (RTCWDT_BROWN_OUT_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
}


class MockBoardError(LiftwatchError, RuntimeError):
    """The mock board cannot start or was asked something it cannot do."""


class ResetCause(enum.StrEnum):
    """Values of LIFTWATCH_SIM_RESET_CAUSE (docs/ARCHITECTURE.md)."""

    POWER_ON = "power_on"
    SOFT = "soft"
    HARD = "hard"
    WDT = "wdt"
    BROWNOUT = "brownout"


class Direction(enum.StrEnum):
    TO_HOST = "to_host"
    TO_BOARD = "to_board"


@dataclass(frozen=True, slots=True)
class BoardPorts:
    """What `liftwatch mock-board` prints: the pty paths to connect to."""

    console: str
    data: str


@dataclass(slots=True)
class BoardStats:
    """Counters the tests and the CLI read; all touched only on the loop thread."""

    boots: collections.Counter = field(default_factory=collections.Counter)  # ResetCause -> count
    feed_records: int = 0
    feed_bytes_consumed: int = 0
    board_t_us: int = 0  # sim time of the last record the board consumed (absolute, car time)
    console_dropped: int = 0
    uart_dropped: collections.Counter = field(default_factory=collections.Counter)  # Direction
    uart_bytes: collections.Counter = field(default_factory=collections.Counter)  # Direction
    garbage_bytes: int = 0
    watchdog_resets: int = 0
    faults: collections.Counter = field(default_factory=collections.Counter)  # scenario faults scheduled


def create_flash_image(path: Path, size_bytes: int = DEFAULT_FS_BYTES) -> None:
    """A blank (erased, 0xff) flash image; the board formats it with LittleFS on first boot."""
    if size_bytes % 4096:
        raise MockBoardError(f"flash size {size_bytes} is not a multiple of the 4096-byte erase block")
    with open(path, "wb") as f:
        block = b"\xff" * 65536
        left = size_bytes
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


class MockBoard:
    """One simulated ESP32 with its car. ``start()``, use ``ports``, ``stop()`` (or a ``with`` block)."""

    def __init__(
        self,
        fs: str | os.PathLike,
        samples: Iterable[CarSample | BoardFault] | None = None,
        *,
        speed: float = 1.0,
        sensor: str = "lis3dh",
        uid: str = "a4cf12e0b001",
        watchdog_s: float = 10.0,
        seed: int = 0,
        heap_k: int = ESP32_HEAP_K,
        strict_watchdog: bool = False,
        extra_env: dict[str, str] | None = None,
        radio: VirtualRadio | None = None,
    ) -> None:
        if speed < 0:
            raise MockBoardError("speed must be >= 0 (0: as fast as the board consumes its feed)")
        fs_path = Path(fs)
        if fs_path.is_dir():
            fs_path = fs_path / "flash.img"
        self.fs_image = fs_path
        self.speed = speed
        self.sensor = sensor
        self.uid = uid
        self.watchdog_s = watchdog_s
        self.heap_k = heap_k  # what the firmware gets; ESP32 modules with PSRAM have megabytes
        self.strict_watchdog = strict_watchdog
        self._wdt_started = False  # the firmware ran (consumed its feed) since the last chip reset
        self._wdt_parked = False  # the firmware gave it the long REPL timeout on Ctrl-C (hal wdt_park)
        self._wdt_fed = 0.0
        self.extra_env = dict(extra_env or {})
        self.radio = radio  # a BLE radio on this virtual link (radio.py), or none, as on a bare module
        self.stats = BoardStats()
        self._rng = random.Random(seed)
        self._samples = samples if samples is not None else ()
        self._feed: FeedPump | None = None  # made at start(), with the feed FIFO
        self._tmp = tempfile.TemporaryDirectory(prefix="liftwatch-mockboard-")
        self.sim_dir = Path(self._tmp.name)
        self._thread: threading.Thread | None = None
        self._calls: queue.Queue[tuple[Callable[[], object], queue.Queue]] = queue.Queue()
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._child: subprocess.Popen | None = None
        self._child_out: int | None = None
        self._child_in: int | None = None
        self._to_child = Relay()
        self._to_console = Relay()
        self._to_host = Relay()
        self._to_board = Relay()
        self._intr_on = True
        # A Ctrl-C that arrives while the ROM is still starting (before it can catch KeyboardInterrupt)
        # waits until it says it is ready, as the ESP32's pending interrupt waits for the VM.
        self._rom_ready = False
        self._intr_deferred = False
        self._at_repl = False
        self._link_up = True
        self._off_until: float | None = None
        self._hw_cause = ResetCause.POWER_ON
        self._repl_mode = "friendly"
        self._restart_pending: ResetCause | None = None
        self.ports = BoardPorts("", "")
        self.error: BaseException | None = None

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> BoardPorts:
        if not self.fs_image.exists():
            self.fs_image.parent.mkdir(parents=True, exist_ok=True)
            create_flash_image(self.fs_image)
        self._console_m, console = make_pty()
        self._data_m, data = make_pty()
        self._uart_m, uart = make_pty()  # the board's side of the UART, relayed to `data`
        self._uart_path = uart
        os.symlink(uart, self.sim_dir / "uart")
        # The ROM runs with the board directory as its cwd and names everything relative to it.
        os.symlink(BOARD_ROM.resolve(), self.sim_dir / BOARD_ROM.name)
        os.symlink(self.fs_image.resolve(), self.sim_dir / "flash.img")
        if self.radio is not None:
            from liftwatch.hil.mockboard.radio import board_address

            os.symlink(BOARD_BLE.resolve(), self.sim_dir / BOARD_BLE.name)
            self.radio.attach_board(self.sim_dir / "ble", board_address(self.uid))
        os.mkfifo(self.sim_dir / "feed")
        os.mkfifo(self.sim_dir / "ctl")
        # O_RDWR: opening never blocks and the FIFO never reports EOF between boards.
        self._feed_fd = os.open(self.sim_dir / "feed", os.O_RDWR | os.O_NONBLOCK)
        self._feed = FeedPump(self._feed_fd, self._samples, self.speed, self.stats, on_fault=self._schedule_fault,
                              running=lambda: self._child is not None, on_progress=self._fed)
        self._ctl_fd = os.open(self.sim_dir / "ctl", os.O_RDWR | os.O_NONBLOCK)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._sel.register(self._ctl_fd, selectors.EVENT_READ, self._on_ctl)
        self.ports = BoardPorts(console, data)
        self._power_on(ResetCause.POWER_ON)
        self._thread = threading.Thread(target=self._loop, name=f"mock board {self.uid}", daemon=True)
        self._thread.start()
        return self.ports

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._thread.join(10)
        self._thread = None
        self._kill_child()
        if self.radio is not None:
            self.radio.detach_board(self.sim_dir / "ble")
        for fd in (
            self._console_m,
            self._data_m,
            self._uart_m,
            self._feed_fd,
            self._ctl_fd,
            self._wake_r,
            self._wake_w,
        ):
            try:
                os.close(fd)
            except OSError:
                pass
        self._tmp.cleanup()

    def __enter__(self) -> MockBoard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[[], object], timeout: float = 10.0) -> object:
        """Run ``fn`` on the loop thread and return its result (the loop's state is not locked)."""
        if self._thread is None:
            return fn()
        reply: queue.Queue = queue.Queue()
        self._calls.put((fn, reply))
        os.write(self._wake_w, b"x")
        ok, value = reply.get(timeout=timeout)
        if not ok:
            raise value
        return value

    # ---- faults and control (thread-safe) ----------------------------------------------------------

    def power_cut(self, off_s: float = 1.0) -> None:
        """Cut power now for ``off_s`` sim seconds (the car goes on; the board misses that stretch)."""
        self.call(lambda: self._power_cut(off_s))

    def reset(self, cause: ResetCause = ResetCause.HARD) -> None:
        """Pull the reset line (EN pin): the board restarts at once with ``cause``."""
        self.call(lambda: self._reset(cause))

    def freeze(self) -> None:
        """Hang the board's CPU (SIGSTOP): firmware stuck in a loop with interrupts off. Only the
        watchdog gets it out."""

        def go() -> None:
            if self._child is not None:
                self._child.send_signal(signal.SIGSTOP)

        self.call(go)

    def set_link(self, up: bool) -> None:
        """Cut (``False``) or restore the data UART; bytes in either direction are lost meanwhile."""
        self.call(lambda: setattr(self, "_link_up", up))

    def inject_garbage(self, nbytes: int, direction: Direction = Direction.TO_HOST) -> None:
        """Random bytes on the data UART, as a loose connector or an EMI burst would produce."""
        self.call(lambda: self._garbage(nbytes, direction))

    def _garbage(self, nbytes: int, direction: Direction) -> None:
        junk = bytes(self._rng.getrandbits(8) for _ in range(nbytes))
        (self._to_host if direction is Direction.TO_HOST else self._to_board).push(junk)
        self.stats.garbage_bytes += nbytes

    def at(self, t_us: int, action: Callable[[], None]) -> None:
        """Run ``action`` (on the loop thread) once the board has consumed its feed up to ``t_us``."""

        self.call(lambda: self._feed_pump().add_action(t_us, action))

    def set_speed(self, speed: float) -> None:
        """Change sim time per real time (0: as fast as the board runs). A board's firmware only runs
        while its feed advances, so tests talk to it at a modest speed and then let it run."""
        if speed < 0:
            raise MockBoardError("speed must be >= 0")
        self.call(lambda: self._set_speed(speed))

    def speed_at(self, t_us: int, speed: float) -> None:
        """Change the speed once the board has consumed its feed up to car time ``t_us`` (exactly
        there, whatever the speed before; e.g. flat out through a stretch nobody listens to)."""
        if speed < 0:
            raise MockBoardError("speed must be >= 0")
        self.at(t_us, lambda: self._set_speed(speed))

    def _set_speed(self, speed: float) -> None:
        self.speed = speed
        if self._feed is not None:
            self._feed.set_speed(speed)

    def wait_console(self, state: str, timeout: float = 30.0) -> None:
        """Block until the board is ``"repl"`` (waiting for REPL input) or ``"running"`` (boot.py,
        main.py or REPL code), e.g. main.py has finished after a reset."""
        if state not in ("repl", "running"):
            raise MockBoardError(f"console state {state!r}: 'repl' or 'running'")
        want = state == "repl"
        deadline = time.monotonic() + timeout
        while self.call(lambda: self._child is None or self._at_repl != want):
            if time.monotonic() > deadline:
                raise TimeoutError(f"board console not {state} within {timeout} s")
            time.sleep(0.02)

    def board_time_us(self) -> int:
        return int(self.call(lambda: self.stats.board_t_us))

    def wait_board_time(self, t_us: int, timeout: float = 60.0) -> None:
        """Block until the board has consumed its feed up to sim time ``t_us``."""
        deadline = time.monotonic() + timeout
        while self.board_time_us() < t_us:
            if self.error:
                raise MockBoardError("mock board loop failed") from self.error
            if time.monotonic() > deadline:
                raise TimeoutError(f"board reached {self.board_time_us()} us, not {t_us} us, in {timeout} s")
            time.sleep(0.02)

    # ---- the loop ------------------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._poll_ports()
                timeout = self._feed_pump().pump()
                for key, _ in self._sel.select(min(TICK_S, timeout)):
                    key.data()
                self._flush_all()
                self._watchdog()
                self._timers()
        except BaseException as exc:  # surfaced to callers through self.error
            log.exception("mock board loop failed")
            self.error = exc

    def _on_wake(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        while True:
            try:
                fn, reply = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                reply.put((True, fn()))
            except Exception as exc:
                reply.put((False, exc))

    def _watch(self, fd: int, cb: Callable[[], None], on: bool) -> None:
        registered = fd in self._sel.get_map()
        if on and not registered:
            self._sel.register(fd, selectors.EVENT_READ, cb)
        elif not on and registered:
            self._sel.unregister(fd)

    def _poll_ports(self) -> None:
        # A pty master whose slave nobody holds reports hang-up forever: watch it only when connected.
        self._console_up = not hung_up(self._console_m)
        self._data_up = not hung_up(self._data_m)
        self._uart_up = not hung_up(self._uart_m)
        # Back-pressure: while a connected reader lags, stop reading its writer (a board's UART write
        # then blocks and its clock, which is virtual, waits) instead of losing bytes to time
        # compression. Nobody connected: bytes are lost, as on a UART with nothing attached.
        half = RELAY_LIMIT_BYTES // 2
        self._watch(self._console_m, self._on_console, self._console_up and len(self._to_child.buf) < half)
        self._watch(self._data_m, self._on_data, self._data_up and len(self._to_board.buf) < half)
        self._watch(self._uart_m, self._on_uart, self._uart_up and len(self._to_host.buf) < half)
        if self._child_out is not None:
            self._watch(self._child_out, self._on_child_out, len(self._to_console.buf) < half)

    def _on_console(self) -> None:
        data = read_available(self._console_m)
        if not data:
            return
        self._on_ctl()  # a mode change the child announced before its last output comes first
        if not self._intr_on or self._child is None:
            self._to_child.push(data)
            return
        if not self._rom_ready:
            if b"\x03" in data:
                self._intr_deferred = True
            self._to_child.push(data.replace(b"\x03", b""))
            return
        parts = data.split(b"\x03")
        for i, part in enumerate(parts):
            self._to_child.push(part)
            if i < len(parts) - 1:  # bytes before a Ctrl-C reach the board before the interrupt
                self._flush_child_in()
                self._child.send_signal(signal.SIGINT)

    def _on_child_out(self) -> None:
        fd = self._child_out
        self._on_ctl()
        if fd is None or fd != self._child_out:
            return  # a control message just replaced the child; this event was for the old one
        try:
            data = os.read(fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            data = b""
        if data:
            if self._console_up:
                self._to_console.push(data)
            return
        # EOF: the child is gone (soft reboot, or a crash).
        self._watch(fd, self._on_child_out, False)
        os.close(fd)
        self._child_out = None
        self._reap()

    def _on_data(self) -> None:
        data = read_available(self._data_m)
        if data and self._link_up and self._uart_up:
            self.stats.uart_bytes[Direction.TO_BOARD] += len(data)
            self._to_board.push(data)

    def _on_uart(self) -> None:
        data = read_available(self._uart_m)
        if data and self._link_up and self._data_up:
            self.stats.uart_bytes[Direction.TO_HOST] += len(data)
            self._to_host.push(data)

    def _on_ctl(self) -> None:
        try:
            msgs = os.read(self._ctl_fd, 4096)
        except BlockingIOError:
            return
        for m in msgs:
            c = chr(m)
            if c == "R":
                self._at_repl = True
            elif c == "M":
                self._at_repl = False
            elif c == "B":
                self._rom_ready = True
                if self._intr_deferred and self._intr_on and self._child is not None:
                    self._flush_child_in()
                    self._child.send_signal(signal.SIGINT)
                self._intr_deferred = False
            elif c == "K":
                self._intr_on = True
            elif c == "k":
                self._intr_on = False
            elif c in "Ss":
                self._repl_mode = "friendly" if c == "S" else "raw"
                self._restart_pending = ResetCause.SOFT
            elif c == "P":
                self._wdt_parked = True
            elif c in "HW":
                self._repl_mode = "friendly"
                if c == "W":
                    self.stats.watchdog_resets += 1
                self._reset(ResetCause.HARD if c == "H" else ResetCause.WDT)

    def _flush_child_in(self) -> None:
        if self._child_in is not None:
            self._to_child.flush_to(self._child_in)

    def _flush_all(self) -> None:
        self._flush_child_in()
        if self._console_up:
            self._to_console.flush_to(self._console_m)
        else:
            self._to_console.buf.clear()
        if self._data_up and self._link_up:
            self._to_host.flush_to(self._data_m)
        else:
            self._to_host.buf.clear()
        if self._uart_up and self._link_up:
            self._to_board.flush_to(self._uart_m)
        else:
            self._to_board.buf.clear()
        self.stats.console_dropped = self._to_console.dropped + self._to_child.dropped
        self.stats.uart_dropped[Direction.TO_HOST] = self._to_host.dropped
        self.stats.uart_dropped[Direction.TO_BOARD] = self._to_board.dropped

    # ---- the child -------------------------------------------------------------------------------------

    def _env(self, cause: ResetCause) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("MICROPYPATH", None)
        env.update(
            {
                "LIFTWATCH_MOCK_REPL": self._repl_mode,
                "LIFTWATCH_SIM_FEED": "/sim/feed",
                "LIFTWATCH_SIM_UART": "/sim/uart",
                "LIFTWATCH_SIM_SENSOR": self.sensor,
                "LIFTWATCH_SIM_UID": self.uid,
                "LIFTWATCH_SIM_RESET_CAUSE": str(cause),
                "LIFTWATCH_SIM_FS": "/",
                # machine.reset_cause() reads the chip's reset reason, which a soft reboot leaves alone.
                "LIFTWATCH_MOCK_HW_CAUSE": str(self._hw_cause),
            }
        )
        if self.radio is not None:
            env["LIFTWATCH_SIM_BLE"] = str(self.sim_dir / "ble")
        env.update(self.extra_env)
        return env

    def _power_on(self, cause: ResetCause) -> None:
        if cause is not ResetCause.SOFT:
            self._hw_cause = cause
            self._wdt_started = False
            self._wdt_parked = False
            self._console_text(b"ets Jul 29 2019 12:21:46\r\n\r\n" + _ROM_RESET_TEXT[str(cause)] + b"\r\n")
        self._feed_pump().restart()
        self._drain_uart()
        self._to_child.buf.clear()
        self._intr_on = True
        self._rom_ready = False
        self._intr_deferred = False
        self._at_repl = False
        self.stats.boots[cause] += 1
        self._child = subprocess.Popen(
            micropython_cmd(
                [(BOARD_BLE if self.radio is not None else BOARD_ROM).name],
                heapsize=f"{self._child_heap_k()}k",
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self._env(cause),
            cwd=self.sim_dir,
            start_new_session=True,  # our terminal's Ctrl-C is not the board's
        )
        assert self._child.stdin and self._child.stdout
        self._child_in = self._child.stdin.fileno()
        self._child_out = self._child.stdout.fileno()
        os.set_blocking(self._child_in, False)
        os.set_blocking(self._child_out, False)
        self._sel.register(self._child_out, selectors.EVENT_READ, self._on_child_out)

    def _child_heap_k(self) -> int:
        radio_k = RADIO_HEAP_K if self.radio is not None else 0
        return (self.heap_k + POINTER_WIDTH_HEAP_K + ROM_HEAP_ALLOWANCE_K + QSTR_POOL_ALLOWANCE_K
                + SIM_HARDWARE_HEAP_K + radio_k)

    def _console_text(self, text: bytes) -> None:
        if not hung_up(self._console_m):
            self._to_console.push(text)

    def _kill_child(self) -> None:
        child = self._child
        if child is None:
            return
        if child.poll() is None:
            child.kill()
        child.wait()
        if self._child_out is not None:
            # Whatever it printed before dying still reaches the console.
            while True:
                data = read_available(self._child_out)
                if not data:
                    break
                self._to_console.push(data)
            self._watch(self._child_out, self._on_child_out, False)
            os.close(self._child_out)
            self._child_out = None
        for f in (child.stdin, child.stdout):
            try:
                f.close()
            except OSError:
                pass
        self._child = None
        self._child_in = None

    def _reap(self) -> None:
        # The child closed its stdout: it exited. A soft reboot restarts it; anything else is a crash,
        # which a real ESP32 answers with a panic reset.
        cause = self._restart_pending or ResetCause.HARD
        if self._restart_pending is None and self._off_until is None:
            log.warning("board process exited unexpectedly (rc=%s): restarting", self._child and self._child.poll())
            self._console_text(b"\r\nGuru Meditation Error: Core  1 panic'ed (mock board process exited)\r\n")
        self._restart_pending = None
        self._kill_child()
        if self._off_until is None:
            self._power_on(cause)

    def _reset(self, cause: ResetCause) -> None:
        self._restart_pending = None
        self._kill_child()
        self._power_on(cause)

    def _power_cut(self, off_s: float) -> None:
        self._restart_pending = None
        self._kill_child()
        self._feed_pump().skip(int(off_s * 1e6))
        self._off_until = time.monotonic() + (off_s / self.speed if self.speed else 0.0)

    def _timers(self) -> None:
        if self._off_until is not None and time.monotonic() >= self._off_until:
            self._off_until = None
            self._repl_mode = "friendly"
            self._power_on(ResetCause.POWER_ON)

    def _drain_uart(self) -> None:
        # A UART's RX FIFO is empty after reset: drop what the host sent to the dead board.
        try:
            fd = os.open(self._uart_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            termios.tcflush(fd, termios.TCIOFLUSH)
        finally:
            os.close(fd)
        self._to_board.buf.clear()

    # ---- the feed ----------------------------------------------------------------------------------------

    def _feed_pump(self) -> FeedPump:
        if self._feed is None:
            raise MockBoardError("mock board not started")
        return self._feed

    def _fed(self) -> None:
        """The firmware consumed more of its feed: it is making progress (what the watchdog sees)."""
        self._wdt_started = True
        self._wdt_fed = time.monotonic()

    def _schedule_fault(self, fault: BoardFault) -> None:
        """A scenario's board fault becomes an action at its car time (loop thread)."""
        p = fault.params
        if fault.kind == "power_cut":
            run = lambda: self._power_cut(float(p.get("off_s", 5.0)))  # noqa: E731
        elif fault.kind in ("link_cut", "pi_down"):  # a stopped daemon reads nothing either
            restore = fault.t_us + int(float(p.get("s", 60.0)) * 1e6)

            def run() -> None:
                self._link_up = False
                self._feed_pump().add_action(restore, lambda: setattr(self, "_link_up", True))

        elif fault.kind == "reset":
            run = lambda: self._reset(ResetCause(p.get("cause", "hard")))  # noqa: E731
        elif fault.kind == "garbage":
            n = int(p.get("bytes", 64))
            direction = Direction(p.get("direction", "to_host"))

            def run() -> None:
                self._garbage(n, direction)

        else:
            raise MockBoardError(f"unknown board fault {fault.kind!r}")
        self._feed_pump().add_action(fault.t_us, run)
        self.stats.faults[fault.kind] += 1

    def _watchdog(self) -> None:
        # The ESP32's watchdog resets a board whose firmware stopped making progress. Progress, for a
        # simulated board, is consuming its feed. A board at the REPL has no firmware running: by
        # default it is not watched; with strict_watchdog, a watchdog the firmware started (it has
        # consumed feed this boot) keeps counting in real time at the REPL, as machine.WDT does on
        # an ESP32, where it cannot be stopped.
        now = time.monotonic()
        if self.strict_watchdog and self._wdt_started and self._child is not None and self._at_repl:
            # Soft reboots do not stop it either: only feeding (the firmware making progress) does.
            limit = WDT_PARK_S if self._wdt_parked else self.watchdog_s
            if now - self._wdt_fed > limit:
                self.stats.watchdog_resets += 1
                log.info("watchdog: still running at the REPL after %.1f s (strict)", limit)
                self._reset(ResetCause.WDT)
            return
        feed = self._feed_pump()
        if self._child is None or self._at_repl or feed.boot_consumed == 0 or feed.stall_since is None:
            return
        limit = max(WATCHDOG_MIN_REAL_S, self.watchdog_s / self.speed if self.speed else 0.0)
        if now - feed.stall_since > limit:
            self.stats.watchdog_resets += 1
            log.info("watchdog: board stopped consuming its feed for %.1f s", limit)
            self._reset(ResetCause.WDT)
