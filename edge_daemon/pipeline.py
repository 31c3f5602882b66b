"""The part of a board's path that live operation and `liftwatch replay` share: session -> analytics -> store.

`CarPipeline` applies a board's frames to its `BoardSession`, feeds the observations to the car's
`CarAnalytics`, wraps the outputs in upstream envelopes and hands them to a `MessageStore`. The
daemon's board task (daemon.py) feeds it frames read from a port; `liftwatch replay` (replay.py)
feeds it frames the real firmware wrote under MicroPython. Both store through `OutboxStore`, the
SQLite outbox's adapter, and a live board's session state survives restarts in its state file
(`SessionState`, state_dir/events-<car>.json).

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
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from liftwatch.edge_daemon.analytics.engine import CarAnalytics
from liftwatch.edge_daemon.analytics.journal_fill import parse_visit_memory
from liftwatch.edge_daemon.envelope import InvalidMessageError, make_message, utc_iso
from liftwatch.edge_daemon.observations import BoardEvent, JournalRecord, Observation
from liftwatch.edge_daemon.outbox import Outbox, OutboxWriteError
from liftwatch.edge_daemon.session import EVENT_MEMORY, JOURNAL_MEMORY, BoardSession
from liftwatch.protocol.framing import Frame

_LOG = logging.getLogger(__name__)

# Sessions and analytics are ticked this often when a board is quiet: heartbeat timeouts and
# time-based faults (entrapment after 15 s) need about one-second resolution, not more.
TICK_S = 1.0
# Fault events per car kept for `liftwatch status`.
LAST_EVENTS = 5

# What a pipeline shows its observer (the status page): (car, observation or analytics output).
Observer = Callable[[str, object], None]


class MessageStore(Protocol):
    """Where a pipeline's upstream messages go: durable before `put_many` returns."""

    async def put_many(self, messages: Sequence[Mapping[str, Any]]) -> None: ...

    # Optional `async shed(messages)` (OutboxStore has it): count messages a full disk cannot take.
    # Not part of the protocol because replay's journal store and test stores have no disk to fill.


class OutboxStore:
    """`MessageStore` over the SQLite outbox. Commits run on the outbox's one worker thread
    (`Outbox.call`, shared with the publisher), FIFO across boards, so the event loop never waits
    for an fsync."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def put_many(self, messages: Sequence[Mapping[str, Any]]) -> None:
        await self.outbox.call(self.outbox.put_many, list(messages))

    async def shed(self, messages: Sequence[Mapping[str, Any]]) -> None:
        """Count messages the full disk cannot take (Outbox.shed), in order with the puts."""
        await self.outbox.call(self.outbox.shed, list(messages))


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
        self.site, self.car, self.configured_board_id = site, car, board_id
        self.session, self.analytics, self.store = session, analytics, store
        self.observer = observer  # sees every observation before analytics and every output
        self.event_memory = event_memory  # the state file (None: replay, nothing to keep)
        self.counters = PipelineCounters()
        self._unstored: list[dict[str, Any]] = []
        self._unacked: list[BoardEvent] = []
        self._unacked_journal: list[JournalRecord] = []
        self._last_ts: float | None = None
        self._saved_host_seq: int | None = None
        self._saved_offset_boot: int | None = None  # the boot whose clock offset the state file holds
        self._saved_visit: dict[str, Any] | None = None
        self._saved_journal_visits = self.analytics.journal.visits_changed
        self.last_events: deque[dict[str, Any]] = deque(maxlen=LAST_EVENTS)  # for `liftwatch status`

    @property
    def board(self) -> str | None:
        """Envelope `board`: the HELLO's board id, else the configured one, else unknown (None)."""
        return self.session.board_id or self.configured_board_id or None

    async def frames(self, frames: Sequence[Frame], host_now_s: float, mono_s: float | None = None) -> None:
        """Apply the frames of one read, then store and ACK them together (one commit per read)."""
        self.apply(self.session.on_frames(frames, host_now_s, mono_s))
        await self.commit()

    def apply(self, observations: list[Observation]) -> None:
        """Show observations to the observer and analytics; their outputs wait for `commit()`."""
        observer = self.observer
        for obs in observations:
            if observer is not None:
                observer(self.car, obs)
            self._outputs(lambda obs=obs: self.analytics.feed(obs), obs.ts)
            if isinstance(obs, BoardEvent):
                self._unacked.append(obs)
        self._unacked_journal += self.analytics.journal.take_settled()

    def analytics_tick(self, ts: float) -> None:
        """Advance analytics' time-based rules to `ts`; the outputs wait for `commit()`."""
        self._outputs(lambda: self.analytics.tick(ts), ts)
        self._unacked_journal += self.analytics.journal.take_settled()

    async def tick(self, host_now_s: float, mono_s: float | None = None) -> None:
        """Heartbeat timeout, periodic session duties, and time-based analytics rules."""
        self.apply(self.session.tick(host_now_s, mono_s))
        ts = self._analytics_now(host_now_s if mono_s is None else mono_s)
        if ts is not None:
            self.analytics_tick(ts)
        await self.commit()

    async def link_lost(self) -> None:
        self.apply(self.session.link_lost())
        await self.commit()

    async def flush(self, ts: float) -> None:
        """End of stream (replay end, shutdown): analytics closes what is open."""
        self._outputs(lambda: self.analytics.flush(ts), ts)
        self._unacked_journal += self.analytics.journal.take_settled()
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
        if (self._unacked or self._unacked_journal) and self.event_memory is not None:
            # Also before the ACK: after a restart, a re-sent event or record must be recognised as stored.
            if not await self.save_state([(e.event_id, e.state) for e in self._unacked],
                                         [r.seq for r in self._unacked_journal]):
                return False
        for event in self._unacked:
            self.session.event_stored(event)
        self._unacked = []
        # Journal records settled in analytics (reported now, or already reported live): stored, so ACKed.
        for record in self._unacked_journal:
            self.session.journal_stored(record)
        self._unacked_journal = []
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

    async def save_state(self, extra_keys: Sequence[tuple[int, int]] = (), extra_journal: Sequence[int] = ()) -> bool:
        """Write the session's state file (stored events, host seq); False if the write failed
        (disk full: logged and counted; the caller does not ACK). True without a file."""
        if self.event_memory is None:
            return True
        visit = self.analytics.open_visit()
        journal_visits, changed = self.analytics.journal.visit_memory(), self.analytics.journal.visits_changed
        state = SessionState(self.session.stored_event_keys + list(extra_keys), *self.session.host_seq_state,
                             open_visit=visit, journal=self.session.stored_journal_seqs + list(extra_journal),
                             boot_offsets=self.session.boot_offsets_now, journal_visits=journal_visits)
        try:
            await asyncio.get_running_loop().run_in_executor(None, save_session_state, self.event_memory, state)
        except OSError as err:
            self.counters.state_save_failures += 1
            _LOG.error("car %s: state file %s not written, will retry: %s", self.car, self.event_memory, err)
            return False
        self._saved_host_seq = state.host_seq
        self._saved_offset_boot = self.session.boot_id if self.session.boot_id in state.boot_offsets else None
        self._saved_visit = visit
        self._saved_journal_visits = changed
        return True

    def host_seq_moved(self) -> bool:
        """Host frames were sent since the state file was last written."""
        return self.session.host_seq_state[1] != self._saved_host_seq

    def boot_offset_unsaved(self) -> bool:
        """The current boot's clock is mapped but the state file does not have it yet: save now, or a
        daemon killed before the board reboots leaves this boot's journal records untimed."""
        boot = self.session.boot_id
        return boot is not None and boot != self._saved_offset_boot and boot in self.session.boot_offsets_now

    def host_frames_since_save(self) -> int:
        """How many host seqs were used since the state file was last written (a firmware push
        uses hundreds: the state must be saved before a restart's resume margin is used up)."""
        if self._saved_host_seq is None:
            return self.session.host_seq_state[1]
        return (self.session.host_seq_state[1] - self._saved_host_seq) % 65536

    def restore(self, saved: SessionState) -> None:
        """After a daemon restart: take up the visit in progress and the visits late journal records
        may still change, which the state file holds."""
        if saved.open_visit is not None:
            self.analytics.restore_open_visit(saved.open_visit)
        if saved.journal_visits is not None:
            self.analytics.journal.restore_visit_memory(saved.journal_visits)
        self._saved_visit = saved.open_visit
        self._saved_journal_visits = self.analytics.journal.visits_changed

    def visit_moved(self) -> bool:
        """A maintenance visit started, ended or changed since the state file was last written (the
        one in progress, or one a late journal record may still change)."""
        return self.event_memory is not None and (self.analytics.open_visit() != self._saved_visit
                                                  or self.analytics.journal.visits_changed != self._saved_journal_visits)

    def _analytics_now(self, mono_s: float) -> float | None:
        """Analytics runs on board time mapped to UTC; between frames it advances with the host
        clock from the last frame heard, so entrapment fires while the board is silent."""
        s = self.session
        if s.last_heard_s is None or s.last_heard_mono_s is None:
            return None
        return max(s.last_heard_s + (mono_s - s.last_heard_mono_s), self._last_ts or 0.0)

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


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a board's session must remember across daemon restarts (state_dir/events-<car>.json)."""

    events: list[tuple[int, int]]  # (event_id, state) durably stored
    boot_id: int | None = None  # board boot the host seq belongs to
    host_seq: int = 0  # next host->board seq in that boot
    open_visit: dict[str, Any] | None = None  # the maintenance visit in progress (CarAnalytics.open_visit)
    journal: list[int] = field(default_factory=list)  # board journal seqs durably stored
    boot_offsets: dict[int, float] = field(default_factory=dict)  # past boots' clock offsets (journal times)
    journal_visits: dict[str, Any] | None = None  # visits late records may change (JournalFill.visit_memory)


def save_session_state(path: Path, state: SessionState) -> None:
    """Written atomically and fsync'd (it gates ACKs: see CarPipeline.commit)."""
    tmp = path.with_suffix(".tmp")
    doc = {"events": [list(k) for k in state.events[-EVENT_MEMORY:]], "boot_id": state.boot_id,
           "host_seq": state.host_seq, "open_visit": state.open_visit,
           "journal": state.journal[-JOURNAL_MEMORY:], "boot_offsets": {str(k): v for k, v in state.boot_offsets.items()},
           "journal_visits": state.journal_visits}
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
        journal = [int(seq) for seq in doc.get("journal", [])]
        offsets = {int(k): float(v) for k, v in (doc.get("boot_offsets") or {}).items()}
        journal_visits = doc.get("journal_visits")
        if journal_visits is not None:
            parse_visit_memory("", journal_visits)  # raises if it is not what JournalFill saved
        return SessionState(events, int(boot) if boot is not None else None, int(doc.get("host_seq", 0)), visit,
                            journal, offsets, journal_visits)
    except FileNotFoundError:
        return SessionState([])
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        _LOG.warning("%s unreadable (%s): re-sent events may be reported twice", path, err)
        return SessionState([])

