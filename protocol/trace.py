"""Trace CSV files and the simulated board's feed: the two forms one recorded or simulated car takes.

A *trace* is what people read, keep and exchange (CSV, absolute microseconds from trace start). A *feed*
is what the board's simulated HAL (`firmware/sim/hal_sim.py`) reads: 12-byte records, struct ``<IhhhBB``
(``dt_us``, ``ax_mg``, ``ay_mg``, ``az_mg``, ``inputs``, ``ctrl``). Both are sample-and-hold: a sample
holds until the next one, so a car at rest needs only sparse rows. The conversions here are the only
place either format is parsed or written; the mock board, ``liftwatch record`` and ``liftwatch replay``
all use them. It lives beside the wire codec because the feed's ``inputs`` byte is the wire's inputs
bitmask and ``liftwatch replay`` (a product command, not a test) reads traces.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from liftwatch.errors import LiftwatchError
from liftwatch.protocol import lwproto as _lw

TRACE_HEADER = (
    "t_us",
    "ax_mg",
    "ay_mg",
    "az_mg",
    "door_closed",
    "zone_up",
    "zone_dn",
    "presence",
    "inspection",
    "alarm_button",
)
# Input names in bit order of the wire's inputs bitmask (SPEC.md section 5; tests/test_wire_codes.py).
INPUT_NAMES = TRACE_HEADER[4:]
DOOR_CLOSED, ZONE_UP, ZONE_DN = _lw.IN_DOOR_CLOSED, _lw.IN_ZONE_UP, _lw.IN_ZONE_DN
PRESENCE, INSPECTION, ALARM_BUTTON = _lw.IN_PRESENCE, _lw.IN_INSPECTION, _lw.IN_ALARM_BUTTON
INPUT_MASK = (1 << len(INPUT_NAMES)) - 1

FEED_RECORD = struct.Struct("<IhhhBB")
FEED_RECORD_SIZE = FEED_RECORD.size  # 12
# ``ctrl`` codes the simulated HAL acts on (unknown ones are ignored; hal_sim.py's CTRL_* consts).
FEED_CTRL_CRASH = 1  # the firmware raises a RuntimeError, as a bug would
FEED_CTRL_POWER_CUT = 2  # the process stops dead, with no shutdown
# dt_us is a u32: a longer quiet gap is sent as repeated records (harmless under sample-and-hold).
MAX_DT_US = 0xFFFFFFFF
# Longest trace: 2**45 us is 407 days. Beyond it a single typo'd time would expand into billions of
# held feed records (a hang in trace_to_feed) instead of an error.
MAX_TRACE_US = 1 << 45
_INT16 = (-32768, 32767)


class TraceError(LiftwatchError, ValueError):
    """A trace or feed cannot be read; carries where (line number or byte offset) and why."""


class TraceFormatError(TraceError):
    """A malformed trace CSV line. ``line_no`` is 1-based as an editor shows it."""

    def __init__(self, line_no: int, reason: str, source: str = "<trace>") -> None:
        super().__init__(f"{source}:{line_no}: {reason}")
        self.line_no = line_no
        self.reason = reason
        self.source = source


class FeedFormatError(TraceError):
    """A feed byte stream whose length is not a whole number of records, or a record out of range."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"feed byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CarSample:
    """What the board's sensors see at ``t_us``: acceleration on the sensor axes (gravity included) and inputs.

    Holds until the next sample (sample-and-hold).
    """

    t_us: int
    ax_mg: int
    ay_mg: int
    az_mg: int
    inputs: int  # bitmask, bit order INPUT_NAMES

    def input(self, bit: int) -> bool:
        return bool(self.inputs & bit)


def _open_text(target: str | os.PathLike | IO[str], mode: str) -> tuple[IO[str], bool]:
    if isinstance(target, (str, os.PathLike)):
        return open(target, mode, newline="", encoding="ascii"), True
    return target, False


def read_trace(source: str | os.PathLike | IO[str]) -> Iterator[CarSample]:
    """Yield the samples of a trace CSV, lazily (a recorded day does not fit in memory as objects).

    Raises ``TraceFormatError`` with the line number for a wrong header, a non-integer or out-of-range
    value, a flag that is not 0/1, a wrong column count or time going backwards. Lines starting with
    ``#`` are comments (``liftwatch record`` writes its metadata that way); blank lines are skipped.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<trace>")
    stream, owned = _open_text(source, "r")
    try:
        header_seen = False
        last_t = -1
        for line_no, line in _lines(stream, name):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            cells = [c.strip() for c in text.split(",")]
            if not header_seen:
                if tuple(cells) != TRACE_HEADER:
                    raise TraceFormatError(line_no, f"header must be {','.join(TRACE_HEADER)!r}, got {text!r}", name)
                header_seen = True
                continue
            if len(cells) != len(TRACE_HEADER):
                raise TraceFormatError(line_no, f"expected {len(TRACE_HEADER)} columns, got {len(cells)}", name)
            try:
                values = [int(c) for c in cells]
            except ValueError:
                bad = next(c for c in cells if not _is_int(c))
                raise TraceFormatError(line_no, f"not an integer: {bad!r}", name) from None
            t_us = values[0]
            if t_us < 0:
                raise TraceFormatError(line_no, f"t_us must be >= 0, got {t_us}", name)
            if t_us > MAX_TRACE_US:
                raise TraceFormatError(line_no, f"t_us must be <= {MAX_TRACE_US} (407 days), got {t_us}", name)
            if t_us < last_t:
                raise TraceFormatError(line_no, f"t_us goes backwards ({t_us} after {last_t})", name)
            for col, v in zip(TRACE_HEADER[1:4], values[1:4]):
                if not _INT16[0] <= v <= _INT16[1]:
                    raise TraceFormatError(line_no, f"{col}={v} outside int16", name)
            inputs = 0
            for bit, (col, v) in enumerate(zip(INPUT_NAMES, values[4:])):
                if v not in (0, 1):
                    raise TraceFormatError(line_no, f"{col} must be 0 or 1, got {v}", name)
                inputs |= v << bit
            last_t = t_us
            yield CarSample(t_us, values[1], values[2], values[3], inputs)
        if not header_seen:
            raise TraceFormatError(0, "empty trace: no header line", name)
    finally:
        if owned:
            stream.close()


def _lines(stream: IO[str], name: str) -> Iterator[tuple[int, str]]:
    """(line number, line); a byte the file's text encoding refuses is a TraceFormatError, not a crash."""
    line_no = 0
    try:
        for line_no, line in enumerate(stream, 1):
            yield line_no, line
    except UnicodeDecodeError as err:
        raise TraceFormatError(
            line_no + 1, f"not ASCII text ({err.reason} at byte {err.start} of a block)", name
        ) from None


def _is_int(cell: str) -> bool:
    try:
        int(cell)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class TraceCar:
    """What the analytics must know of the car a trace comes from, carried in the trace's header as
    `# car office6 rated_speed_mps=1.6 floors=6 vane_length_mm=250 zone_sensor_spacing_mm=150`.

    The simulator writes it, so a simulated trace replays against its own car: a 1.6 m/s car judged
    against a guessed 1.0 m/s raises overspeed on every trip, and the vane geometry sets the leveling
    band. A recorded trace has none; the daemon's config describes a real car.

    ``sensor_noise_mg`` (written only when not 0: ` sensor_noise_mg=8`): white noise rms per axis
    the replay's simulated accelerometer adds on top of its part's own. A simulated trace is
    sample-and-hold, so noise cannot be in its rows; a recorded trace has it in its rows already."""

    name: str
    rated_speed_mps: float
    floors: int
    vane_length_mm: float
    zone_sensor_spacing_mm: float
    sensor_noise_mg: float = 0.0

    def comment(self) -> str:
        return (f"car {self.name} rated_speed_mps={self.rated_speed_mps:g} floors={self.floors} "
                f"vane_length_mm={self.vane_length_mm:g} zone_sensor_spacing_mm={self.zone_sensor_spacing_mm:g}"
                + (f" sensor_noise_mg={self.sensor_noise_mg:g}" if self.sensor_noise_mg else ""))


_TRACE_CAR = re.compile(
    r"^# car (?P<name>[^\s;]+) rated_speed_mps=(?P<speed>[0-9.]+) floors=(?P<floors>[0-9]+) "
    r"vane_length_mm=(?P<vane>[0-9.]+) zone_sensor_spacing_mm=(?P<spacing>[0-9.]+)"
    r"(?: sensor_noise_mg=(?P<noise>[0-9.]+))?"
)


def read_trace_car(path: str | os.PathLike) -> TraceCar | None:
    """The car in a trace's header comments; None if the header names no car with its parameters
    (a recorded trace, or one written before traces carried their car)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if not line.startswith("#") and not line.startswith("t_us"):
                    return None  # comments sit above and below the header row, never among the samples
                m = _TRACE_CAR.match(line)
                if m:
                    return TraceCar(m["name"], float(m["speed"]), int(m["floors"]), float(m["vane"]),
                                    float(m["spacing"]), float(m["noise"] or 0.0))
    except OSError:
        return None
    return None


class TraceWriter:
    """Writes a trace CSV incrementally (the recorder and the simulator produce rows as they go)."""

    def __init__(self, target: str | os.PathLike | IO[str]) -> None:
        self._stream, self._owned = _open_text(target, "w")
        self._stream.write(",".join(TRACE_HEADER) + "\n")
        self._last_t = -1
        self.rows = 0

    def comment(self, text: str) -> None:
        for part in text.splitlines():
            self._stream.write(f"# {part}\n")

    def write(self, sample: CarSample) -> None:
        if sample.t_us < self._last_t:
            raise TraceError(f"t_us goes backwards ({sample.t_us} after {self._last_t})")
        self._last_t = sample.t_us
        bits = ",".join("1" if sample.inputs >> b & 1 else "0" for b in range(len(INPUT_NAMES)))
        self._stream.write(f"{sample.t_us},{sample.ax_mg},{sample.ay_mg},{sample.az_mg},{bits}\n")
        self.rows += 1

    def close(self) -> None:
        if self._owned:
            self._stream.close()
        else:
            self._stream.flush()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_trace(samples: Iterable[CarSample], target: str | os.PathLike | IO[str]) -> int:
    """Write ``samples`` as a trace CSV; returns the number of rows."""
    with TraceWriter(target) as writer:
        for s in samples:
            writer.write(s)
        return writer.rows


def samples_to_feed(samples: Iterable[CarSample], start_t_us: int = 0) -> Iterator[bytes]:
    """Yield one 12-byte feed record per sample (more where a gap exceeds ``dt_us``'s u32 range).

    ``start_t_us`` is the board time the first record's ``dt_us`` counts from (0: trace start).
    """
    pack = FEED_RECORD.pack
    last_t = start_t_us
    held: CarSample | None = None
    for s in samples:
        dt = s.t_us - last_t
        if dt < 0:
            raise TraceError(f"sample at t_us={s.t_us} is before the previous one ({last_t})")
        h = held or s  # before the first sample, the trace's first state is the best guess
        while dt > MAX_DT_US:  # repeat the held state through the long gap
            yield pack(MAX_DT_US, h.ax_mg, h.ay_mg, h.az_mg, h.inputs, 0)
            dt -= MAX_DT_US
        yield pack(dt, s.ax_mg, s.ay_mg, s.az_mg, s.inputs, 0)
        held = s
        last_t = s.t_us


def trace_to_feed(source: str | os.PathLike | IO[str], chunk_records: int = 4096) -> Iterator[bytes]:
    """Read a trace CSV and yield the feed bytes in chunks of up to ``chunk_records`` records.

    Raises ``TraceFormatError`` (with line number) when the trace is malformed; chunks before the bad
    line have already been yielded, as a board would already have seen them.
    """
    buf = bytearray()
    limit = chunk_records * FEED_RECORD_SIZE
    for rec in samples_to_feed(read_trace(source)):
        buf += rec
        if len(buf) >= limit:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


def feed_to_samples(feed: bytes | bytearray | memoryview, start_t_us: int = 0) -> Iterator[CarSample]:
    """Decode feed bytes back to samples with absolute times; ``FeedFormatError`` on a partial record."""
    view = memoryview(feed)
    if len(view) % FEED_RECORD_SIZE:
        raise FeedFormatError(
            len(view) - len(view) % FEED_RECORD_SIZE, f"{len(view) % FEED_RECORD_SIZE} trailing bytes"
        )
    t = start_t_us
    for dt, ax, ay, az, inputs, _ctrl in FEED_RECORD.iter_unpack(view):
        t += dt
        yield CarSample(t, ax, ay, az, inputs & INPUT_MASK)


def feed_to_trace(feed: bytes | bytearray | memoryview, target: str | os.PathLike | IO[str]) -> int:
    """Write feed bytes as a trace CSV (for looking at what a board was fed); returns rows written."""
    return write_trace(feed_to_samples(feed), target)


def trace_text(samples: Iterable[CarSample]) -> str:
    """The trace CSV as a string (tests and small fixtures)."""
    out = io.StringIO()
    write_trace(samples, out)
    return out.getvalue()
