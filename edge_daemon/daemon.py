"""The daemon: one named asyncio task per board, plus the upstream publisher and the status file.

Per board, bytes flow transport -> FrameReader -> BoardSession -> CarAnalytics -> outbox, and
host->board frames (ACK, TIME_SYNC, CONFIG) go back through a small per-board write queue drained
by its own task, so a board that stops reading never blocks the reading of its own frames, and
nothing one board does (stall, garbage, unplug, a bug in analytics) can block another board's task.

The session -> analytics -> outbox part, `CarPipeline`, lives in pipeline.py: `liftwatch replay`
runs the very same class over frames that come from the real firmware under MicroPython, so replay
and live operation share their code path down to the outbox. A tagged board's replay window
outlives the daemon in its file (replay_window.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from liftwatch.edge_daemon.analytics.engine import CarAnalytics
from liftwatch.edge_daemon.config import BoardConfig, DaemonConfig
from liftwatch.edge_daemon.control import ControlServer, control_path
from liftwatch.edge_daemon.envelope import utc_iso
from liftwatch.edge_daemon.ota import read_outcome
from liftwatch.edge_daemon.ota_jobs import Job, OtaError
from liftwatch.edge_daemon.outbox import Outbox
from liftwatch.edge_daemon.pipeline import TICK_S, CarPipeline, MessageStore, OutboxStore, load_session_state
from liftwatch.edge_daemon.replay_window import ReplayWindowFile, replay_window_path
from liftwatch.edge_daemon.session import BoardSession, LinkMode
from liftwatch.edge_daemon.transport import (
    LinkPhase,
    ReconnectBackoff,
    Transport,
    TransportBusyError,
    TransportClosedError,
    TransportOpenError,
    make_transport,
)
from liftwatch.errors import LiftwatchError
from liftwatch.protocol.framing import Frame, FrameReader

_LOG = logging.getLogger(__name__)

# Host->board frames waiting for a board that does not read: ACKs are re-sent on the board's own
# re-send anyway, so dropping beyond this loses nothing but a little latency.
WRITE_QUEUE_FRAMES = 64
JOB_POLL_S = 0.2  # a firmware job's clock is read this often while its board is quiet
# The session state file is rewritten at least this often while host frames go out, and a
# restarted daemon resumes the host seq this far above the saved value: far more host frames
# than go out in that time (TIME_SYNC every 10 min, a few ACKs and retries), far less than the
# half range (32768) a board accepts as "ahead".
STATE_SAVE_S = 300.0
HOST_SEQ_RESUME_MARGIN = 1024


class DaemonStartError(LiftwatchError, RuntimeError):
    """The daemon cannot start (state directory or outbox unusable: nothing was opened), or its
    operator plane failed (status page port taken): it stopped cleanly, outbox committed."""


class OperatorPlaneLike(Protocol):
    """What the daemon needs of the operator plane (edge_daemon/status/plane.py `OperatorPlane`)."""

    def observe(self, car: str, item: object) -> None: ...

    def on_delivered(self, messages: Sequence[Any]) -> None: ...

    async def run(self, daemon: Any, stop: asyncio.Event) -> None: ...


@dataclass(slots=True)
class LinkCounters:
    connects: int = 0
    open_failures: int = 0
    disconnects: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    writes_dropped: int = 0  # host->board frames a non-reading board could not take
    task_errors: int = 0  # unexpected errors that restarted the link (logged with a traceback)
    last_error: str = ""

    def to_status(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class BoardTask:
    """One board's link: connect with capped backoff, read -> pipeline, write queue, ticks."""

    board: BoardConfig
    transport: Transport
    pipeline: CarPipeline
    reader: FrameReader
    write_timeout_s: float = 2.0
    backoff: ReconnectBackoff = field(default_factory=ReconnectBackoff)
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    phase: LinkPhase = LinkPhase.DISCONNECTED
    counters: LinkCounters = field(default_factory=LinkCounters)
    replay_window: ReplayWindowFile | None = None  # tagged boards: the window outlives the daemon
    state_dir: Path | None = None  # where `liftwatch ota push | rollout` keep each car's last update
    job: Job | None = None  # a firmware push or health watch riding this board's session (control.py)
    _job_done: asyncio.Future | None = None
    _rotations_seen: int = 0
    _wrong_board_logged: str = ""
    _open_failure_logged: str = ""
    _writes: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(WRITE_QUEUE_FRAMES))

    @property
    def name(self) -> str:
        return f"board {self.board.car}: session"

    @property
    def car(self) -> str:
        return self.board.car

    def start_job(self, job: Job) -> asyncio.Future:
        """Carry ``job`` on this board's session; the future gets its result or its OtaError."""
        if self.job is not None:
            raise OtaError(f"car {self.board.car} is busy with a firmware {self.job.kind} already")
        self.job, self._job_done = job, asyncio.get_running_loop().create_future()
        return self._job_done

    def end_job(self, job: Job) -> None:
        if self.job is job:
            self.job = self._job_done = None

    def _run_job(self, frames: Sequence[Frame]) -> None:
        """Show the job this read's frames (the session has taken them), then let it queue its next
        chunks or requests; its result or error goes to whoever started it."""
        job, done = self.job, self._job_done
        if job is None or done is None or done.done():
            return
        session, now = self.pipeline.session, asyncio.get_running_loop().time()
        try:
            for frame in frames:
                job.on_frame(frame, session, now)
            result = job.poll(session, now)
        except OtaError as err:
            done.set_exception(err)
            return
        if result is not None:
            done.set_result(result)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: connect, serve, and after any link failure wait the backoff and retry."""
        while not stop.is_set():
            self.phase = LinkPhase.CONNECTING
            try:
                await self.transport.open()
            except TransportOpenError as err:
                self.counters.open_failures += 1
                self.counters.last_error = err.reason
                self.phase = LinkPhase.DISCONNECTED
                if err.reason != self._open_failure_logged:  # once per reason, not once per retry
                    self._open_failure_logged = err.reason
                    _LOG.warning("%s: cannot open: %s; retrying until it opens", self.transport.link, err.reason)
                await self._pause(stop)
                continue
            self._open_failure_logged = ""
            self.counters.connects += 1
            self.phase = LinkPhase.READY
            _LOG.info("%s: connected", self.transport.link)
            writer = asyncio.create_task(self._write_loop(), name=f"board {self.board.car}: writer")
            try:
                await self._serve(stop)
            except TransportClosedError as err:
                self.counters.disconnects += 1
                self.counters.last_error = err.reason
                _LOG.warning("%s: link lost: %s", self.transport.link, err.reason)
            except Exception as err:  # noqa: BLE001 - a bug or a full disk must cost a reconnect, not the board
                self.counters.task_errors += 1
                self.counters.last_error = repr(err)
                _LOG.exception("%s: board task failed, reconnecting", self.transport.link)
            finally:
                writer.cancel()
                # Python 3.11's wait_for swallows a cancel that lands as the write completes; the
                # writer would then wait on its empty queue forever and hang shutdown: cancel again.
                while not writer.done():
                    await asyncio.wait({writer}, timeout=0.05)
                    writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
                while not self._writes.empty():
                    self._writes.get_nowait()
                await self.transport.close()
            if stop.is_set():  # a deliberate stop is not a fault: no board_offline, the board did not go
                self.pipeline.session.link_lost()
            else:
                await self.pipeline.link_lost()
            if self.pipeline.host_seq_moved():
                await self.pipeline.save_state()
            self.phase = LinkPhase.DISCONNECTED
            if not stop.is_set():
                await self._pause(stop)
        self.phase = LinkPhase.CLOSED

    async def _pause(self, stop: asyncio.Event) -> None:
        delay = self.backoff.next_delay_s()
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except asyncio.TimeoutError:
            pass

    async def _serve(self, stop: asyncio.Event) -> None:
        pipeline, reader, clock, mono = self.pipeline, self.reader, self.clock, self.monotonic
        stop_wait = asyncio.create_task(stop.wait(), name=f"board {self.board.car}: stop")
        next_tick = mono() + TICK_S
        next_state_save = mono() + STATE_SAVE_S
        read: asyncio.Task | None = None
        try:
            while not stop.is_set():
                if read is None:
                    read = asyncio.create_task(self.transport.read())
                timeout = max(0.0, next_tick - mono())
                if self.job is not None:  # chunks wait on the board's answers, not on the tick
                    timeout = min(timeout, JOB_POLL_S)
                done, _ = await asyncio.wait({read, stop_wait}, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                frames: Sequence[Frame] = ()
                if read in done:
                    chunk = read.result()  # raises TransportClosedError when the link is gone
                    read = None
                    self.counters.bytes_in += len(chunk)
                    frames = reader.feed(chunk)
                    if reader.key_rotations != self._rotations_seen:
                        self._follow_key_rotation()
                    if frames and self.replay_window is not None:
                        self.replay_window.persist(reader.replay, on_tick=False)
                    if frames:
                        self.backoff.reset()  # the link really works (not just opened)
                        await pipeline.frames(frames, clock(), mono())
                        self._check_identity()
                self._run_job(frames)
                if mono() >= next_tick:
                    next_tick = mono() + TICK_S
                    await pipeline.tick(clock(), mono())
                    if pipeline.boot_offset_unsaved() or pipeline.host_seq_moved() and (
                            mono() >= next_state_save or pipeline.host_frames_since_save() >= HOST_SEQ_RESUME_MARGIN // 2):
                        next_state_save = mono() + STATE_SAVE_S
                        await pipeline.save_state()
                    if self.replay_window is not None:
                        self.replay_window.persist(reader.replay, on_tick=True)
                self._queue_outgoing()
        finally:
            if self.replay_window is not None:
                self.replay_window.persist(reader.replay, on_tick=True)
            stop_wait.cancel()
            if read is not None:
                read.cancel()
                await asyncio.gather(read, return_exceptions=True)

    def _follow_key_rotation(self) -> None:
        """The board came back with its next key: tag host->board frames with it too."""
        self._rotations_seen = self.reader.key_rotations
        session = self.pipeline.session
        session.config = dataclasses.replace(session.config, key=self.reader.key)
        _LOG.info("board %s: now on its rotated key %s, with a fresh replay window (run `liftwatch keys promote`)",
                  self.board.car, self.reader.replay.key_fingerprint)

    def _check_identity(self) -> None:
        """Say once per board id when the board on this port is not the one the config names
        (swapped adapters put one car's facts under another car's name)."""
        seen, expected = self.pipeline.session.board_id, self.board.board_id
        if seen and expected and seen != expected and seen != self._wrong_board_logged:
            self._wrong_board_logged = seen
            _LOG.error("%s: board %s answers where %s is configured for car %s", self.transport.link, seen,
                       expected, self.board.car)

    def _queue_outgoing(self) -> None:
        for wire in self.pipeline.session.take_outgoing():
            try:
                self._writes.put_nowait(wire)
            except asyncio.QueueFull:
                self.counters.writes_dropped += 1

    async def _write_loop(self) -> None:
        while True:
            wire = await self._writes.get()
            try:
                await asyncio.wait_for(self.transport.write(wire), timeout=self.write_timeout_s)
                self.counters.frames_out += 1
            except (asyncio.TimeoutError, TransportBusyError):
                self.counters.writes_dropped += 1
            except TransportClosedError:
                return  # the reader sees the same and reconnects

    def status(self) -> dict[str, Any]:
        s = self.pipeline.session.status()
        s.update(
            car=self.board.car,
            link=self.transport.link,
            phase=self.phase.value,
            board=self.pipeline.board,
            link_counters=self.counters.to_status(),
            framing_drops={reason.name.lower(): n for reason, n in self.reader.drops.items()},
            frames_ok=self.reader.frames,
            replay_resets=self.reader.replay_resets,  # issue 14: windows restarted for a new key
            # issue 18: what the last push or rollout to this car came to (a refusal's reason lives here:
            # the board keeps only its boot record, which a refused update leaves as it was)
            last_update=read_outcome(self.state_dir, self.board.car) if self.state_dir is not None else None,
            update_running=self.job.status() if self.job is not None else None,
            pipeline=self.pipeline.counters.to_status(),
            active_faults=[f.value for f in self.pipeline.analytics.active_faults],
            last_events=list(self.pipeline.last_events),
            expected_board=self.board.board_id or None,
            link_quality=link_quality(self.reader.frames, self.pipeline.session.counters.lost_frames,
                                      sum(self.reader.drops.values())),
            # Seconds since the last frame on the daemon's own clock: `last_heard_ts` is on the
            # board's clock, which a sped-up mock board runs ahead of the host's.
            heard_age_s=None if self.pipeline.session.last_heard_mono_s is None
            else round(self.monotonic() - self.pipeline.session.last_heard_mono_s, 1),
        )
        return s


class Daemon:
    """Everything `liftwatch run` starts: board tasks, upstream, status file, and the operator
    plane (status page, /metrics, sd_notify, watchdog) when one is given."""

    def __init__(self, config: DaemonConfig, *, transports: Mapping[str, Transport] | None = None,
                 backoff: Callable[[], ReconnectBackoff] = ReconnectBackoff,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] | None = None,
                 on_delivered: Callable[[Sequence[Any]], None] | None = None,
                 plane: OperatorPlaneLike | None = None) -> None:
        self.config = config
        self.plane = plane
        self._on_delivered = _both(on_delivered, plane.on_delivered if plane is not None else None)
        self.clock = clock
        # Timeouts run on a monotonic clock; a simulated `clock` (demo, soak) serves as both.
        self.monotonic = monotonic or (time.monotonic if clock is time.time else clock)
        self._transports = dict(transports or {})
        self._backoff = backoff
        self.outbox: Outbox | None = None
        self.store: OutboxStore | None = None
        self.boards: list[BoardTask] = []
        self.upstream: Any = None
        self.tasks: list[asyncio.Task] = []
        self.started_s = clock()

    def _board_task(self, board: BoardConfig, store: MessageStore) -> BoardTask:
        transport = self._transports.get(board.car) or make_transport(board.link, board.address,
                                                                     baudrate=board.baudrate)
        memory = self.config.state_dir / f"events-{board.car}.json"
        saved = load_session_state(memory)
        resume = None
        if saved.boot_id is not None:  # host frames sent after the last save are covered by the margin
            resume = (saved.boot_id, saved.host_seq + HOST_SEQ_RESUME_MARGIN)
        session = BoardSession(self.config.session_for(board), LinkMode.LIVE, label=board.car,
                               stored_events=saved.events, resume_host_seq=resume,
                               stored_journal=saved.journal, expected_board_id=board.board_id,
                               boot_offsets=saved.boot_offsets)
        analytics = CarAnalytics(board.car, board.analytics)
        pipeline = CarPipeline(self.config.site, board.car, session, analytics,
                               store, board.board_id, event_memory=memory,
                               observer=self.plane.observe if self.plane is not None else None)
        pipeline.restore(saved)
        reader = FrameReader(key=board.key, next_key=board.next_key, require_tag=board.require_tag)
        window = None
        if board.key is not None:  # the window must outlive the daemon, or a restart reopens it
            window = ReplayWindowFile(replay_window_path(self.config.state_dir, board.car))
            # issue 14: the window is bound to a key; one saved under another key (a replaced board)
            # is not this board's, and would lock it out: start afresh, say so, count it.
            if not reader.restore_replay(window.load()):
                _LOG.warning("board %s: the saved replay window belongs to another key (board replaced?): "
                             "starting a fresh one for key %s", board.car, reader.replay.key_fingerprint)
        return BoardTask(board, transport, pipeline, reader, self.config.write_timeout_s, self._backoff(),
                         self.clock, self.monotonic, replay_window=window, state_dir=self.config.state_dir)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; then flush analytics state and let upstream drain briefly."""
        from liftwatch.edge_daemon.upstream import Upstream  # paho only for the long-running service

        cfg = self.config
        loop = asyncio.get_running_loop()
        try:
            cfg.state_dir.mkdir(parents=True, exist_ok=True)
            self.outbox = await loop.run_in_executor(None, Outbox, cfg.outbox_path, cfg.outbox_budget_bytes)
        except (OSError, sqlite3.Error) as err:
            raise DaemonStartError(f"cannot open the outbox {cfg.outbox_path} (state_dir {cfg.state_dir}): {err}") from err
        self.store = OutboxStore(self.outbox)
        self.boards = [self._board_task(b, self.store) for b in cfg.boards]
        self.upstream = Upstream(cfg.upstream, status_provider=self.upstream_status,
                                 on_delivered=self._on_delivered)
        self.tasks = [asyncio.create_task(b.run(stop), name=b.name) for b in self.boards]
        self.tasks.append(asyncio.create_task(self.upstream.run(self.outbox, stop), name="upstream"))
        self.tasks.append(asyncio.create_task(self._status_loop(stop), name="status file"))
        control = ControlServer(control_path(cfg.state_dir), {b.car: b for b in self.boards})
        self.tasks.append(asyncio.create_task(control.run(stop), name="control socket"))
        plane_task = None
        if self.plane is not None:
            plane_task = asyncio.create_task(self.plane.run(self, stop), name="operator plane")
            # A page that cannot listen (port taken) never sends READY: stop now with the reason
            # rather than run unwatched until systemd's start timeout kills us without one.
            plane_task.add_done_callback(lambda t: t.cancelled() or t.exception() is None or stop.set())
            self.tasks.append(plane_task)
        try:
            await stop.wait()
        finally:
            stop.set()
            results = await asyncio.gather(*self.tasks, return_exceptions=True)
            for task, result in zip(self.tasks, results):
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    _LOG.error("task %r ended with %r", task.get_name(), result)
            await self._write_status()
            self.outbox.close()
        if plane_task is not None and not plane_task.cancelled() and plane_task.exception() is not None:
            err = plane_task.exception()
            hint = " (another program on the port? set [status] port, or enabled = false)" if isinstance(err, OSError) else ""
            raise DaemonStartError(f"status page failed: {err}{hint}") from err

    def upstream_status(self) -> dict[str, Any]:
        """Extra fields of the upstream `status` message: per-board link and session health."""
        return {"boards": [b.status() for b in self.boards]}

    def status(self, outbox_status: Mapping[str, Any]) -> dict[str, Any]:
        """The status file's content; `outbox_status` is `Outbox.stats().to_status()`."""
        return {
            "ts": utc_iso(self.clock()),  # the daemon's clock: simulated in the demo
            "written_ts": utc_iso(time.time()),  # the real time, by which `liftwatch status` judges staleness
            "utc_offset_h": self.config.analytics.day_utc_offset_h,  # the site's zone, for people
            "site": self.config.site,
            "pi": self.config.pi,
            "pid": os.getpid(),
            "uptime_s": round(self.clock() - self.started_s, 1),
            "upstream": {
                "state": self.upstream.state.value if self.upstream else None,
                **(self.upstream.counters.to_status() if self.upstream else {}),
            },
            "boards": [b.status() for b in self.boards],
            **outbox_status,
        }

    async def _status_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._write_status()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.config.status_interval_s)
            except asyncio.TimeoutError:
                pass

    async def _write_status(self) -> None:
        try:
            outbox = self.outbox
            stats = (await outbox.call(outbox.stats)).to_status() if outbox is not None else {}
            write_status_file(self.config.status_path, self.status(stats))
        except Exception:  # noqa: BLE001 - the status file is a convenience, never a reason to stop
            _LOG.exception("status file not written")


def _both(first: Callable[[Sequence[Any]], None] | None,
          second: Callable[[Sequence[Any]], None] | None) -> Callable[[Sequence[Any]], None] | None:
    """One delivered-batch callback out of up to two."""
    if first is None or second is None:
        return first or second

    def both(batch: Sequence[Any]) -> None:
        first(batch)
        second(batch)

    return both


def link_quality(frames_ok: int, lost: int, damaged: int) -> float | None:
    """Share of the board's frames that arrived intact (lost ones counted by sequence gaps)."""
    total = frames_ok + lost + damaged
    return round(frames_ok / total, 4) if total else None


def write_status_file(path: Path, snapshot: Mapping[str, Any]) -> None:
    """Atomic replace, so `liftwatch status` never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(snapshot, indent=1, default=str))
    os.replace(tmp, path)
