"""`liftwatch mock-board` (a simulated board on two ptys) and `liftwatch record` (a trace from a real one)."""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liftwatch.output import atomic_output

if TYPE_CHECKING:
    from serial import Serial

    from liftwatch.protocol.trace import TraceWriter
    from liftwatch.protocol.framing import FrameReader
    from liftwatch.protocol.messages import Vib

DEFAULT_FS = Path(".liftwatch") / "mockboard" / "flash.img"
# Rows are written in time order; frames from one board arrive at most this far out of order
# (a VIB block is sent after its samples were taken).
RECORD_REORDER_US = 3_000_000


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "mock-board",
        help="run a simulated board: prints {console, data} pty paths as one JSON line",
        description="A mock ESP32 running the real firmware under MicroPython, driven by a simulated car. "
        "Connect mpremote to `console` and the daemon to `data`. Runs until SIGINT/SIGTERM.",
    )
    p.add_argument("--fs", default=str(DEFAULT_FS), help="flash image file or directory (kept between runs)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scenario", help="scenario name (hil_tests/scenarios) or TOML file")
    src.add_argument("--trace", help="trace CSV to replay into the board's sensors")
    p.add_argument("--speed", type=float, default=1.0, help="sim time per real time; 0 = as fast as the board runs")
    p.add_argument("--seed", type=int, default=None, help="scenario seed (default: the scenario's own)")
    p.add_argument("--sensor", default="lis3dh", choices=("lis3dh", "adxl355", "lis2dw12"),
                   help="accelerometer the simulated board carries (default lis3dh)")
    p.add_argument("--uid", default="a4cf12e0b001", help="board unique id (hex), as machine.unique_id()")
    p.add_argument(
        "--watchdog-s", type=float, default=10.0, help="sim seconds without feed progress before a watchdog reset"
    )
    p.add_argument(
        "--strict-watchdog",
        action="store_true",
        help="a watchdog the firmware started keeps running at the REPL (real s), as on an ESP32",
    )
    p.add_argument(
        "--heap-k", type=int, default=96, help="Python heap the firmware gets, KiB (ESP32 without PSRAM: 96)"
    )
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log the mock board's own events (watchdog resets) on stderr")
    p.set_defaults(func=_mock_board)

    s = subparsers.add_parser(
        "simulate",
        help="write a scenario's simulated car as a trace CSV (for replay, mock-board --trace, analysis)",
    )
    s.add_argument("scenario", help="scenario name (hil_tests/scenarios) or TOML file")
    s.add_argument("--out", required=True, help="trace CSV to write")
    s.add_argument("--seed", type=int, default=None, help="scenario seed (default: the scenario's own)")
    s.set_defaults(func=_simulate)

    r = subparsers.add_parser(
        "record",
        help="record a trace CSV from a real board's data port",
        description="Reads a board's frames (VIB samples, STATS at rest, STATE inputs) and writes a trace CSV "
        "that `mock-board --trace` and `replay` accept. Ask the board to stream raw data first "
        "(CONTROL stream_mode) for a full-rate trace; at rest STATS means are recorded.",
    )
    r.add_argument("port", help="serial port of the board's data UART (or a mock board's data pty)")
    r.add_argument("--out", required=True, help="trace CSV to write")
    r.add_argument("--baud", type=int, default=921600, help="serial port speed (default 921600, the data UART's)")
    r.add_argument("--duration-s", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    r.add_argument("--key-file", help="per-board auth key (hex) when the board tags its frames")
    r.set_defaults(func=_record)


def _stop_event() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _mock_board(args: argparse.Namespace) -> int:
    from liftwatch.hil.mockboard.board import MockBoard, MockBoardError
    from liftwatch.protocol.trace import TraceError, read_trace
    from liftwatch.hil.sim.scenario import Scenario, ScenarioError

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        if args.scenario:
            samples = Scenario.load(args.scenario).timeline(args.seed)
        elif args.trace:
            trace = Path(args.trace)
            if not trace.exists():
                raise TraceError(f"no trace file {trace}")
            for _ in read_trace(trace):  # a bad line is reported now, with its number, not mid-run
                pass
            samples = read_trace(trace)
        else:
            samples = None
        board = MockBoard(
            args.fs,
            samples,
            speed=args.speed,
            sensor=args.sensor,
            uid=args.uid,
            watchdog_s=args.watchdog_s,
            heap_k=args.heap_k,
            strict_watchdog=args.strict_watchdog,
        )
        stop = _stop_event()
        ports = board.start()
    except (ScenarioError, TraceError, MockBoardError) as exc:
        print(f"liftwatch mock-board: {exc}", file=sys.stderr)
        return 2
    try:
        print(json.dumps({"console": ports.console, "data": ports.data}), flush=True)  # a closed stdout raises
        while not stop.wait(0.2):
            if board.error is not None:
                print(f"liftwatch mock-board: {board.error!r}", file=sys.stderr)
                return 1
    finally:
        board.stop()
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from liftwatch.protocol.trace import TraceWriter
    from liftwatch.hil.sim.scenario import Scenario, ScenarioError

    try:
        scenario = Scenario.load(args.scenario)
        with atomic_output(args.out, newline="", encoding="ascii") as stream, TraceWriter(stream) as writer:
            writer.comment(
                f"liftwatch simulate {scenario.name} seed={args.seed if args.seed is not None else scenario.seed}"
            )
            writer.comment(scenario.car.trace_car().comment())
            writer.comment("board faults are not part of a trace")
            for sample in scenario.samples(args.seed):
                writer.write(sample)
    except ScenarioError as exc:
        print(f"liftwatch simulate: {exc}", file=sys.stderr)
        return 2
    print(f"{writer.rows} rows, {sample.t_us / 1e6:.1f} s of car time -> {args.out}")
    return 0


def _unwrap_vib(
    index: int, origin_us: int | None, last: tuple[int, int, int] | None, t_ms: int, vib: Vib
) -> tuple[int, int]:
    """(unwrapped first sample index, board time of index 0 in us) of a VIB block.

    ``first_index`` counts samples mod 2**16 (164 s at 400 Hz) and goes on while the car rests with
    no VIB sent, so the board time of the frame (that of its last sample) decides how many wraps
    passed. Sample times come from the index (exact spacing), placed on board time by the first
    block, so they line up with STATE and STATS times.
    """
    if last is None or origin_us is None:
        index = vib.first_index
        origin_us = t_ms * 1000 - (index + vib.count - 1) * 1_000_000 // vib.rate_hz
        return index, origin_us
    last_t_ms, last_first, last_count = last
    elapsed_ms = (t_ms - last_t_ms) % (1 << 30)  # board time is ms mod 2**30
    ahead = (vib.first_index - last_first) % 65536
    predicted = elapsed_ms * vib.rate_hz / 1000 + last_count - vib.count  # first-to-first, by the clock
    ahead += round((predicted - ahead) / 65536) * 65536
    return index + ahead, origin_us


def _record(args: argparse.Namespace) -> int:
    import serial

    from liftwatch.protocol.trace import TraceWriter
    from liftwatch.protocol.framing import FrameReader

    try:
        keys = [bytes.fromhex(Path(args.key_file).read_text().strip())] if args.key_file else []
    except (OSError, ValueError) as exc:
        print(f"liftwatch record: --key-file {args.key_file}: {getattr(exc, 'strerror', None) or 'not a hex key'}",
              file=sys.stderr)
        return 2
    try:
        port = serial.Serial(args.port, args.baud, timeout=0.2)
    except serial.SerialException as exc:
        reason = "no such port" if not Path(args.port).exists() else getattr(exc, "strerror", None) or exc
        print(f"liftwatch record: cannot open {args.port}: {reason}", file=sys.stderr)
        return 2
    with port, atomic_output(args.out, newline="", encoding="ascii") as stream, TraceWriter(stream) as writer:
        writer.comment(f"recorded by liftwatch record from {args.port}")
        lost = _record_frames(port, FrameReader(key=keys[0]) if keys else FrameReader(), writer, args.duration_s)
        print(f"liftwatch record: {writer.rows} rows to {args.out}; drops {dict(lost.drops)}"
              + (f"; stopped early: {lost.error}" if lost.error else ""), file=sys.stderr)
    return 1 if lost.error else 0


@dataclass(frozen=True, slots=True)
class _Recorded:
    """How a recording ended: the frame reader's drop counts and the port error that stopped it, if any."""

    drops: dict[Any, int]
    error: str | None


def _record_frames(port: Serial, reader: FrameReader, writer: TraceWriter, duration_s: float | None) -> _Recorded:
    """Frames from `port` as trace rows in time order, until Ctrl-C, the duration, or a port error
    (the rows read so far are kept: a recording is not thrown away because the cable came out).

    The inputs of rows before the first STATE or HEARTBEAT are not known when they are read; they are
    filled in once either arrives: a HEARTBEAT carries the inputs, and a STATE the inputs before its
    change (``inputs ^ changed``). Until then the rows wait in the reorder heap."""
    import serial

    from liftwatch.protocol.trace import INPUT_MASK, CarSample
    from liftwatch.protocol.messages import Heartbeat, MessageError, Stats, State, Vib, decode_message

    stop = _stop_event()
    print(f"liftwatch record: reading {port.port}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + duration_s if duration_s else None
    pending: list[tuple[int, int, tuple[int, int, int], int | None]] = []  # heap by t_us, then arrival order
    order = 0
    inputs: int | None = None  # None: no STATE or HEARTBEAT yet
    first_inputs: int | None = None  # the inputs in force before the first STATE/HEARTBEAT
    held_mg = (0, 0, 1000)
    vib_index = 0  # unwrapped sample index of the latest VIB block
    vib_origin_us: int | None = None  # board time of sample index 0
    last_vib: tuple[int, int, int] | None = None  # (t_ms, first_index, count) of the previous VIB frame
    newest_t = 0
    written_t = -1

    def push(t_us: int, mg: tuple[int, int, int]) -> None:
        nonlocal order, newest_t
        order += 1
        newest_t = max(newest_t, t_us)
        heapq.heappush(pending, (t_us, order, mg, inputs))

    def flush(upto_us: int, unknown_inputs: int | None = None) -> None:
        nonlocal written_t
        while pending and pending[0][0] <= upto_us:
            row_inputs = pending[0][3] if pending[0][3] is not None else first_inputs
            if row_inputs is None:
                if unknown_inputs is None:
                    return  # wait for the first STATE or HEARTBEAT
                row_inputs = unknown_inputs
            t, _, mg, _ = heapq.heappop(pending)
            if t >= written_t:  # a frame older than what is written is dropped, not reordered
                writer.write(CarSample(t, mg[0], mg[1], mg[2], row_inputs))
                written_t = t

    error = None
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        try:
            chunk = port.read(4096)
        except serial.SerialException as exc:
            error = str(exc)
            break
        for frame in reader.feed(chunk):
            try:
                msg = decode_message(frame)
            except (MessageError, KeyError):
                continue
            if isinstance(msg, State):
                if first_inputs is None:
                    first_inputs = (msg.inputs ^ msg.changed) & INPUT_MASK
                inputs = msg.inputs & INPUT_MASK
                push(msg.event_t_ms * 1000, held_mg)
            elif isinstance(msg, Heartbeat):
                inputs = msg.inputs & INPUT_MASK
                if first_inputs is None:
                    first_inputs = inputs
            elif isinstance(msg, Stats):
                held_mg = tuple(int(round(v)) for v in msg.mean_mg[:3])
                push(frame.t_ms * 1000, held_mg)
            elif isinstance(msg, Vib) and msg.count:
                vib_index, vib_origin_us = _unwrap_vib(vib_index, vib_origin_us, last_vib, frame.t_ms, msg)
                last_vib = (frame.t_ms, msg.first_index, msg.count)
                counts = memoryview(msg.samples).cast("h")
                for i in range(msg.count):
                    mg = tuple(int(round(counts[3 * i + k] * 1000 / msg.lsb_per_g)) for k in range(3))
                    push(vib_origin_us + (vib_index + i) * 1_000_000 // msg.rate_hz, mg)
                    held_mg = mg
        flush(newest_t - RECORD_REORDER_US)
    flush(1 << 62, unknown_inputs=0)  # never heard the inputs: written as all clear, as before
    return _Recorded(dict(reader.drops), error)
