"""The daemon: one named asyncio task per board, plus the upstream publisher and the status file.

Per board, bytes flow transport -> FrameReader -> BoardSession -> CarAnalytics -> outbox, and
host->board frames (ACK, TIME_SYNC, CONFIG) go back through a small per-board write queue drained
by its own task, so a board that stops reading never blocks the reading of its own frames, and
nothing one board does (stall, garbage, unplug, a bug in analytics) can block another board's task.

`CarPipeline` is the session -> analytics -> outbox part. `liftwatch replay` runs the very same
class over frames that come from the real firmware under MicroPython, so replay and live
operation share their code path down to the outbox.

EVENT durability: the outputs analytics makes from a chunk of frames are stored with one
`put_many` (one fsync); only after it returns are that chunk's board EVENTs marked stored in the
session, which queues their ACKs. If the outbox cannot commit (disk full), the messages and the
un-ACKed events wait in memory and the commit is retried on the next chunk or tick; the board keeps
re-sending the events meanwhile and the session re-emits none of them.

Disk full: the outbox first spends its reserve (outbox.py). If the disk is full beyond it, the
derived facts (trips, visits, daily records, host-detected faults), which no board would send
again, are shed with a durable `disk_full` count rather than held in memory where a SIGKILL would
take them uncounted; only messages carrying a board EVENT wait, un-ACKed, for the retry. A state
file that cannot be written (same disk) delays the ACKs the same way and never stops a board's task.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from liftwatch.edge_daemon.analytics.engine import CarAnalytics
from liftwatch.edge_daemon.config import BoardConfig, DaemonConfig
from liftwatch.edge_daemon.envelope import InvalidMessageError, make_message, utc_iso
from liftwatch.edge_daemon.keystore import load_replay_file, save_replay_file
from liftwatch.edge_daemon.observations import BoardEvent, Observation
from liftwatch.edge_daemon.outbox import Outbox, OutboxWriteError
from liftwatch.edge_daemon.session import EVENT_MEMORY, BoardSession, LinkMode
from liftwatch.edge_daemon.transport import (
    LinkPhase,
    ReconnectBackoff,
    Transport,
    TransportBusyError,
    TransportClosedError,
    TransportOpenError,
    make_transport,
)
from liftwatch.protocol.framing import Frame, FrameReader

_LOG = logging.getLogger(__name__)
T_VIB = 3  # lwproto.T_VIB: frame type whose runs are merged

# Sessions and analytics are ticked this often when a board is quiet: heartbeat timeouts and
# time-based faults (entrapment after 15 s) need about one-second resolution, not more.
TICK_S = 1.0
# Host->board frames waiting for a board that does not read: ACKs are re-sent on the board's own
# re-send anyway, so dropping beyond this loses nothing but a little latency.
WRITE_QUEUE_FRAMES = 64
# The session state file is rewritten at least this often while host frames go out, and a
# restarted daemon resumes the host seq this far above the saved value: far more host frames
# than go out in that time (TIME_SYNC every 10 min, a few ACKs and retries), far less than the
# half range (32768) a board accepts as "ahead".
STATE_SAVE_S = 300.0
HOST_SEQ_RESUME_MARGIN = 1024
# Fault events per car kept for `liftwatch status`.
LAST_EVENTS = 5


class DaemonStartError(RuntimeError):
    """The daemon cannot start (state directory or outbox unusable: nothing was opened), or its
    operator plane failed (status page port taken): it stopped cleanly, outbox committed."""


# What a pipeline shows its observer (the status page): (car, observation or analytics output).
Observer = Callable[[str, object], None]


class OperatorPlaneLike(Protocol):
    """What the daemon needs of the operator plane (edge_daemon/status/plane.py `OperatorPlane`)."""

    def observe(self, car: str, item: object) -> None: ...

    def on_delivered(self, messages: Sequence[Any]) -> None: ...

    async def run(self, daemon: Any, stop: asyncio.Event) -> None: ...


class MessageStore(Protocol):
    """Where a pipeline's upstream messages go: durable before `put_many` returns."""

    async def put_many(self, messages: Sequence[Mapping[str, Any]]) -> None: ...

    # Optional `async shed(messages)` (OutboxStore has it): count messages a full disk cannot take.
    # Not part of the protocol because replay's journal store and test stores have no disk to fill.


class OutboxStore:
    """`MessageStore` over the SQLite outbox, committing on one worker thread (FIFO across boards)
    so the event loop never waits for an fsync."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-put")

    async def put_many(self, messages: Sequence[Mapping[str, Any]]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.outbox.put_many, list(messages))

    async def shed(self, messages: Sequence[Mapping[str, Any]]) -> None:
        """Count messages the full disk cannot take (Outbox.shed), in order with the puts."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.outbox.shed, list(messages))

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run another outbox operation on the same worker, in order with the puts."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


@dataclass(slots=True)
class PipelineCounters:
    messages: int = 0  # upstream messages handed to the store
    invalid_messages: int = 0  # analytics outputs the envelope refused (a bug; logged)
    analytics_errors: int = 0  # observations analytics raised on (a bug; logged, board unaffected)
    store_failures: int = 0  # outbox commits that failed and were retried
    shed: int = 0  # derived messages dropped (counted in the outbox as disk_full) on a disk full beyond the reserve
    state_save_failures: int = 0  # state file writes that failed (disk full); ACKs waited for the retry

    def to_status(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class CarPipeline:
    """session -> analytics -> store for one board and its car; shared by live tasks and replay."""

    def __init__(self, site: str, car: str, session: BoardSession, analytics: CarAnalytics,
                 store: MessageStore, board_id: str = "", event_memory: Path | None = None,
                 observer: Observer | None = None) -> None:
        self.site = site
        self.observer = observer  # sees every observation before analytics and every output
        self.event_memory = event_memory
        self.car = car
        self.session = session
        self.analytics = analytics
        self.store = store
        self.configured_board_id = board_id
        self.counters = PipelineCounters()
        self._unstored: list[dict[str, Any]] = []
        self._unacked: list[BoardEvent] = []
        self._last_ts: float | None = None
        self._board_tick_ts: float | None = None
        self._saved_host_seq: int | None = None
        self._saved_visit: dict[str, Any] | None = None
        self.last_events: deque[dict[str, Any]] = deque(maxlen=LAST_EVENTS)  # for `liftwatch status`

    @property
    def board(self) -> str | None:
        """Envelope `board`: the HELLO's board id, else the configured one, else unknown (None)."""
        return self.session.info.board_id or self.configured_board_id or None

    async def frames(self, frames: Sequence[Frame], host_now_s: float, mono_s: float | None = None) -> None:
        """Apply the frames of one read, then store and ACK them together (one commit per read)."""
        session = self.session
        replay = session.mode is LinkMode.REPLAY
        if replay:
            # Board-time ticks go between observations (a read of idle heartbeats can span hours
            # of board time); a run of VIB frames is merged first and ticked after.
            run: list[Frame] = []
            for frame in frames:
                if frame[0] == T_VIB:
                    run.append(frame)
                    continue
                if run:
                    self._apply(session.on_frames(run, host_now_s, mono_s))
                    self._tick_on_board_time()
                    run = []
                self._apply(session.on_frame(frame, host_now_s, mono_s))
                self._tick_on_board_time()
            if run:
                self._apply(session.on_frames(run, host_now_s, mono_s))
                self._tick_on_board_time()
        else:
            self._apply(session.on_frames(frames, host_now_s, mono_s))
        await self.commit()

    def _tick_on_board_time(self) -> None:
        """Replay has no wall clock: analytics' time-based rules (entrapment after 15 s) advance
        with the board's own time, carried by its heartbeats, once per simulated second."""
        ts = self.session.last_heard_s
        if ts is not None and (self._board_tick_ts is None or ts - self._board_tick_ts >= TICK_S):
            self._board_tick_ts = ts
            self._outputs(lambda: self.analytics.tick(ts), ts)

    async def tick(self, host_now_s: float, mono_s: float | None = None) -> None:
        """Heartbeat timeout, periodic session duties, and time-based analytics rules."""
        self._apply(self.session.tick(host_now_s, mono_s))
        ts = self._analytics_now(host_now_s if mono_s is None else mono_s)
        if ts is not None:
            self._outputs(lambda: self.analytics.tick(ts), ts)
        await self.commit()

    async def link_lost(self) -> None:
        self._apply(self.session.link_lost())
        await self.commit()

    async def flush(self, ts: float) -> None:
        """End of stream (replay end, shutdown): analytics closes what is open."""
        self._outputs(lambda: self.analytics.flush(ts), ts)
        await self.commit()

    async def commit(self) -> bool:
        """Store pending messages, then mark this round's events stored (queues their ACKs)."""
        if self._unstored:
            try:
                await self.store.put_many(self._unstored)
            except OutboxWriteError as err:
                self.counters.store_failures += 1
                _LOG.error("car %s: outbox commit failed, will retry: %s", self.car, err)
                if err.disk_full:
                    await self._shed_derived()
                return False
            self.counters.messages += len(self._unstored)
            self._unstored = []
        if self._unacked and self.event_memory is not None:
            # Also before the ACK: after a restart, a re-sent event must be recognised as stored.
            if not await self.save_state([(e.event_id, e.state) for e in self._unacked]):
                return False
        for event in self._unacked:
            self.session.event_stored(event)
        self._unacked = []
        if self.visit_moved():  # best effort: a failed write is counted and retried next commit
            await self.save_state()
        return True

    async def _shed_derived(self) -> None:
        """Disk full beyond the outbox reserve: count and drop what only this daemon knows; keep
        the messages of board EVENTs, which wait un-ACKed while the board re-sends them."""
        derived = [m for m in self._unstored if "board_event_id" not in (m.get("detail") or {})]
        if not derived or not hasattr(self.store, "shed"):
            return
        try:
            await self.store.shed(derived)
        except OutboxWriteError as err:  # not even counted: keep them and try again next round
            _LOG.error("car %s: %d messages neither stored nor counted: %s", self.car, len(derived), err)
            return
        self.counters.shed += len(derived)
        self._unstored = [m for m in self._unstored if "board_event_id" in (m.get("detail") or {})]

    async def save_state(self, extra_keys: Sequence[tuple[int, int]] = ()) -> bool:
        """Write the session's state file (stored events, host seq); False if the write failed
        (disk full: logged and counted; the caller does not ACK). True without a file."""
        if self.event_memory is None:
            return True
        visit = self.analytics.open_visit()
        state = SessionState(self.session.stored_event_keys + list(extra_keys), *self.session.host_seq_state,
                             open_visit=visit)
        try:
            await asyncio.get_running_loop().run_in_executor(None, save_session_state, self.event_memory, state)
        except OSError as err:
            self.counters.state_save_failures += 1
            _LOG.error("car %s: state file %s not written, will retry: %s", self.car, self.event_memory, err)
            return False
        self._saved_host_seq = state.host_seq
        self._saved_visit = visit
        return True

    def host_seq_moved(self) -> bool:
        """Host frames were sent since the state file was last written."""
        return self.session.host_seq_state[1] != self._saved_host_seq

    def mark_saved_visit(self, visit: dict[str, Any] | None) -> None:
        """The state file already holds this visit (restored at start)."""
        self._saved_visit = visit

    def visit_moved(self) -> bool:
        """A maintenance visit started, ended or changed since the state file was last written."""
        return self.event_memory is not None and self.analytics.open_visit() != self._saved_visit

    def _analytics_now(self, mono_s: float) -> float | None:
        """Analytics runs on board time mapped to UTC; between frames it advances with the host
        clock from the last frame heard, so entrapment fires while the board is silent."""
        s = self.session
        if s.last_heard_s is None or s.last_heard_mono_s is None:
            return None
        return max(s.last_heard_s + (mono_s - s.last_heard_mono_s), self._last_ts or 0.0)

    def _apply(self, observations: list[Observation]) -> None:
        observer = self.observer
        for obs in observations:
            if observer is not None:
                observer(self.car, obs)
            self._outputs(lambda obs=obs: self.analytics.feed(obs), obs.ts)
            if isinstance(obs, BoardEvent):
                self._unacked.append(obs)

    def _outputs(self, produce: Callable[[], list[Any]], ts: float) -> None:
        if self._last_ts is None or ts > self._last_ts:
            self._last_ts = ts
        try:
            outputs = produce()
        except Exception:  # a bug in analytics must cost this observation only, never the board
            self.counters.analytics_errors += 1
            _LOG.exception("car %s: analytics failed", self.car)
            return
        observer = self.observer
        for out in outputs:
            if observer is not None:
                observer(self.car, out)
            try:
                message = make_message(out.kind, self.site, self.car, self.board, utc_iso(ts), out.key,
                                       out.to_message())
            except InvalidMessageError:
                self.counters.invalid_messages += 1
                _LOG.exception("car %s: invalid %s message", self.car, getattr(out, "kind", "?"))
                continue
            self._unstored.append(message)
            if out.kind == "event":
                self.last_events.append({k: message.get(k) for k in ("type", "state", "event_ts")})


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
    replay_path: Path | None = None  # tagged boards: the replay window persists here (SPEC section 4)
    _replay_saved: tuple | None = None
    _rotations_seen: int = 0
    _wrong_board_logged: str = ""
    _open_failure_logged: str = ""
    _writes: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(WRITE_QUEUE_FRAMES))

    @property
    def name(self) -> str:
        return f"board {self.board.car}: session"

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
                done, _ = await asyncio.wait({read, stop_wait}, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if read in done:
                    chunk = read.result()  # raises TransportClosedError when the link is gone
                    read = None
                    self.counters.bytes_in += len(chunk)
                    frames = reader.feed(chunk)
                    if reader.key_rotations != self._rotations_seen:
                        self._follow_key_rotation()
                    if frames and self.replay_path is not None:
                        self._persist_replay(on_tick=False)
                    if frames:
                        self.backoff.reset()  # the link really works (not just opened)
                        await pipeline.frames(frames, clock(), mono())
                        self._check_identity()
                if mono() >= next_tick:
                    next_tick = mono() + TICK_S
                    await pipeline.tick(clock(), mono())
                    if mono() >= next_state_save and pipeline.host_seq_moved():
                        next_state_save = mono() + STATE_SAVE_S
                        await pipeline.save_state()
                    if self.replay_path is not None:
                        self._persist_replay(on_tick=True)
                self._queue_outgoing()
        finally:
            if self.replay_path is not None:
                self._persist_replay(on_tick=True)
            stop_wait.cancel()
            if read is not None:
                read.cancel()
                await asyncio.gather(read, return_exceptions=True)

    def _persist_replay(self, on_tick: bool) -> None:
        """Save the replay window: at once and durably when the boot id changed, else once per tick.

        A daemon killed between ticks may accept, once, a replay of the last second of the current
        boot; frames of earlier boots stay refused (SECURITY.md)."""
        state = self.reader.replay.state()
        if state == self._replay_saved:
            return
        new_boot = self._replay_saved is None or state[0] != self._replay_saved[0]
        if not (on_tick or new_boot):
            return
        try:
            save_replay_file(self.replay_path, self.reader.replay, durable=new_boot)
        except OSError as err:  # disk full: keep serving; the window in memory still protects this run
            _LOG.warning("replay window not saved to %s: %s", self.replay_path, err)
            return
        self._replay_saved = state

    def _follow_key_rotation(self) -> None:
        """The board came back with its next key: tag host->board frames with it too."""
        self._rotations_seen = self.reader.key_rotations
        session = self.pipeline.session
        session.config = dataclasses.replace(session.config, key=self.reader.key)
        _LOG.info("board %s: now on its rotated key (run `liftwatch keys promote`)", self.board.car)

    def _check_identity(self) -> None:
        """Say once per board id when the board on this port is not the one the config names
        (swapped adapters put one car's facts under another car's name)."""
        seen, expected = self.pipeline.session.info.board_id, self.board.board_id
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
            pipeline=self.pipeline.counters.to_status(),
            active_faults=[f.value for f in self.pipeline.analytics.active_faults],
            last_events=list(self.pipeline.last_events),
            expected_board=self.board.board_id or None,
            link_quality=link_quality(self.reader.frames, self.pipeline.session.counters.lost_frames,
                                      sum(self.reader.drops.values())),
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
                               stored_events=saved.events, resume_host_seq=resume)
        analytics = CarAnalytics(board.car, board.analytics)
        if saved.open_visit is not None:
            analytics.restore_open_visit(saved.open_visit)
        pipeline = CarPipeline(self.config.site, board.car, session, analytics,
                               store, board.board_id, event_memory=memory,
                               observer=self.plane.observe if self.plane is not None else None)
        pipeline.mark_saved_visit(saved.open_visit)
        reader = FrameReader(key=board.key, next_key=board.next_key, require_tag=board.require_tag)
        replay_path = None
        if board.key is not None:  # the window must outlive the daemon, or a restart reopens it
            replay_path = self.config.state_dir / f"replay-{board.car}.json"
            reader.replay = load_replay_file(replay_path)
        return BoardTask(board, transport, pipeline, reader, self.config.write_timeout_s, self._backoff(),
                         self.clock, self.monotonic, replay_path=replay_path)

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
            self.store.close()
            self.outbox.close()
        if plane_task is not None and not plane_task.cancelled() and plane_task.exception() is not None:
            err = plane_task.exception()
            hint = " (another program on the port? set [status] port, or enabled = false)" if isinstance(err, OSError) else ""
            raise DaemonStartError(f"status page failed: {err}{hint}") from err

    def upstream_status(self) -> dict[str, Any]:
        """Extra fields of the upstream `status` message: per-board link and session health."""
        return {"boards": [b.status() for b in self.boards]}

    def status(self) -> dict[str, Any]:
        stats = self.outbox.stats().to_status() if self.outbox is not None else {}
        return {
            "ts": utc_iso(self.clock()),
            "site": self.config.site,
            "pi": self.config.pi,
            "pid": os.getpid(),
            "uptime_s": round(self.clock() - self.started_s, 1),
            "upstream": {
                "state": self.upstream.state.value if self.upstream else None,
                **(self.upstream.counters.to_status() if self.upstream else {}),
            },
            "boards": [b.status() for b in self.boards],
            **stats,
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
            snapshot = await asyncio.get_running_loop().run_in_executor(None, self.status)
            write_status_file(self.config.status_path, snapshot)
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


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a board's session must remember across daemon restarts (state_dir/events-<car>.json)."""

    events: list[tuple[int, int]]  # (event_id, state) durably stored
    boot_id: int | None = None  # board boot the host seq belongs to
    host_seq: int = 0  # next host->board seq in that boot
    open_visit: dict[str, Any] | None = None  # the maintenance visit in progress (CarAnalytics.open_visit)


def save_session_state(path: Path, state: SessionState) -> None:
    """Written atomically and fsync'd (it gates ACKs: see CarPipeline.commit)."""
    tmp = path.with_suffix(".tmp")
    doc = {"events": [list(k) for k in state.events[-EVENT_MEMORY:]], "boot_id": state.boot_id,
           "host_seq": state.host_seq, "open_visit": state.open_visit}
    with open(tmp, "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_session_state(path: Path) -> SessionState:
    """What `save_session_state` wrote; empty (with a warning) if the file is absent or damaged."""
    try:
        doc = json.loads(path.read_text())
        events = [(int(k[0]), int(k[1])) for k in doc["events"]]
        boot = doc.get("boot_id")
        visit = doc.get("open_visit")
        if visit is not None and not (isinstance(visit, dict) and isinstance(visit.get("start_ts"), (int, float))):
            raise ValueError(f"open_visit is not a visit: {visit!r}")
        return SessionState(events, int(boot) if boot is not None else None, int(doc.get("host_seq", 0)), visit)
    except FileNotFoundError:
        return SessionState([])
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        _LOG.warning("%s unreadable (%s): re-sent events may be reported twice", path, err)
        return SessionState([])


def write_status_file(path: Path, snapshot: Mapping[str, Any]) -> None:
    """Atomic replace, so `liftwatch status` never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(snapshot, indent=1, default=str))
    os.replace(tmp, path)
