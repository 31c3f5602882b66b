"""One board's session: checked frames in, observations for analytics and host->board frames out.

The session never sees bytes (framing did that) and does no I/O: the board's `CarPipeline`
(pipeline.py) feeds it frames and clock ticks and stores what it emits, and the board's task in
daemon.py writes the frames it queues. That keeps every
rule below testable without a port and lets `liftwatch replay` run the same code as live operation.

What it keeps per board:
- Boot and sequence tracking. `boot_id` is the board's persistent boot counter (u16, wraps) and
  `seq` counts frames per boot (u16, wraps). A newer boot id is a reboot (counted once, plus the
  boots we missed); an older one is a stale frame from before the reboot (dropped). Within a boot a
  forward jump of n counts n-1 lost frames; a repeat or a late frame is dropped, and because the
  late frame was already counted as lost it is not counted again.
- Board time: a `BoardClock` per boot (board_clock.py) unwraps `t_ms` and maps it to UTC.
- The VIB stream: a `VibStream` per boot (vib_runs.py) follows the sample index, times the samples
  and merges the VIB frames of one read into one block.
- Payloads: the typed message views (protocol/messages.py) check every field; a frame whose payload
  does not fit is counted as `bad_payload` and the session never re-checks a type.
- EVENT durability. A board EVENT is emitted once as a `BoardEvent`; the daemon stores it in the
  outbox and then calls `event_stored()`, which queues the ACK. A re-sent EVENT already stored is
  ACKed again without a second observation; one still being stored is ignored. In `LinkMode.REPLAY`
  there is no host->board link: nothing is ever queued, and events count as stored without an ACK.
- TIME_SYNC every `time_sync_interval_s`, CONFIG push when the board's config hash differs from the
  last one it accepted, CONTROL request_hello when frames arrive from a boot we never got a HELLO for.
- Heartbeat timeout: no frame for `heartbeat_timeout_s` -> `LinkState(online=False)` at the time of
  the last frame heard; the next frame -> `LinkState(online=True)` and a TIME_SYNC at once.
"""

from __future__ import annotations

import enum
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from liftwatch.edge_daemon.board_clock import T_MS_MODULO, BoardClock, t_ms_delta
from liftwatch.edge_daemon.observations import (
    MOVING,
    BoardBooted,
    BoardEvent,
    CountersSnapshot,
    FramesLost,
    InputsChanged,
    JournalRecord,
    LinkState,
    MotionChanged,
    Observation,
    RestStats,
)
from liftwatch.edge_daemon.vib_runs import VibStream
from liftwatch.protocol import lwota
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol import messages as m
from liftwatch.protocol.framing import Frame, encode_frame

_U16 = 0x10000
_U16_HALF = 0x8000

# The host's wall clock moved this much against its monotonic clock between two calls: it was
# stepped (NTP on a Pi without RTC, an operator). Offsets and pending TIME_SYNCs are then void.
CLOCK_STEP_S = 1.0
# Event ids kept to re-ACK a re-sent EVENT without emitting it twice. The board re-sends only
# unacknowledged events, a handful at most; 1024 covers a long link cut with a chatty board.
EVENT_MEMORY = 1024
# JOURNAL seqs kept to re-ACK a re-sent record without emitting it twice: a reboot re-sends what
# was ACKed since the board last saved its cursor (persist_s, 5 minutes of records at most).
JOURNAL_MEMORY = 4096
# Clock offsets kept for boots past: a record from an earlier boot is mapped with its own boot's offset.
BOOT_OFFSETS = 8
# The board times of the last STATE frames and the UTC they were given: a journal record of a start
# the live stream saw is timed from them, as the live fact was, not with the clock's estimate of
# now, which a TIME_SYNC may have moved since (by seconds at a fast soak's 200x). A record lands
# within seconds of its STATE unless the link was down, and then no STATE of it was heard.
STATE_TIMES = 64
STATE_TIMES_MAX_MS = 10_000
# CONFIG pushes per boot before giving up (the board rejected it or never answered): a board that
# cannot take the config keeps running on its own and the rejection is reported in status.
MAX_CONFIG_TRIES = 3

ACK_OK = m.AckStatus.OK


class LinkMode(enum.Enum):
    """Whether the host can talk back to the board."""

    LIVE = "live"  # serial/BLE: ACK events, TIME_SYNC, CONFIG, CONTROL
    REPLAY = "replay"  # frames from a recording or a replayed trace: receive only, fixed time base


class SessionDrop(enum.Enum):
    """Frames the session refuses after framing accepted them, counted per board."""

    DUPLICATE = "duplicate"  # same (boot, seq) again
    LATE = "late"  # behind the newest seq of this boot; already counted as lost
    STALE_BOOT = "stale_boot"  # from a boot older than the current one
    BAD_PAYLOAD = "bad_payload"  # a payload its message view refused (messages.MessageError)
    UNEXPECTED = "unexpected"  # a host->board type (CONFIG, CONTROL) sent by the board
    JOURNAL_FOREIGN = "journal_foreign"  # a JOURNAL record from another board's journal (swapped hardware)
    JOURNAL_UNVERIFIED = "journal_unverified"  # a JOURNAL record before the board said who it is: not ACKed


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Timing and behaviour of one board's session (documented in docs/config.md, `[session]`)."""

    heartbeat_timeout_s: float = 15.0  # 15 STATS windows (1 s) or 1.5 HEARTBEATs (10 s) missed = offline
    time_sync_interval_s: float = 600.0  # ESP32 crystal drift (~40 ppm) is 24 ms per 10 minutes
    config_retry_s: float = 10.0
    hello_retry_s: float = 5.0
    settings: Mapping[str, Any] = field(default_factory=dict)  # CONFIG pushed to the board
    key: bytes | None = None  # the board key; host->board frames are tagged under its host->board key


@dataclass(slots=True)
class SessionCounters:
    """Per-board counts for the status message; each fact counted once."""

    frames: int = 0
    lost_frames: int = 0  # sum of forward seq gaps
    reboots: int = 0  # boots seen or skipped after the first contact
    drops: Counter = field(default_factory=Counter)  # SessionDrop -> n
    unknown_fields: Counter = field(default_factory=Counter)  # type name -> trailing fields from a newer board
    events: int = 0  # distinct board events emitted
    events_resent: int = 0  # EVENT frames for an event already emitted
    acks_sent: int = 0
    time_syncs: int = 0  # accepted TIME_SYNC replies
    config_pushes: int = 0
    config_accepted: int = 0
    config_rejected: int = 0
    offline_periods: int = 0
    clock_steps: int = 0  # host wall-clock steps seen (time re-synced each time)
    vib_discontinuities: int = 0  # VIB blocks not continuing the previous one (stream paused or lost)
    journal_records: int = 0  # distinct board journal records emitted
    journal_resent: int = 0  # JOURNAL frames for a record already emitted
    journal_skipped: int = 0  # records the board found torn or corrupt in its flash (its latest count)
    journal_unmapped: int = 0  # records of a boot whose clock offset is unknown: timed by arrival

    def to_status(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__ if name not in ("drops", "unknown_fields")}
        out["drops"] = {reason.value: n for reason, n in self.drops.items()}
        out["unknown_fields"] = dict(self.unknown_fields)
        return out


class BoardSession:
    """Session state of one board link. Not thread-safe; one board task owns it.

    `on_frame()` and `tick()` return observations in board-time order. Frames to write are taken
    with `take_outgoing()` after each call. For every emitted `BoardEvent` the owner must call
    `event_stored()` once it is durably stored (that queues the ACK in live mode).
    """

    def __init__(self, config: SessionConfig | None = None, mode: LinkMode = LinkMode.LIVE, *,
                 replay_epoch_ms: float = 0.0, label: str = "",
                 stored_events: Iterable[tuple[int, int]] = (),
                 resume_host_seq: tuple[int, int] | None = None, stored_journal: Iterable[int] = (),
                 expected_board_id: str = "", boot_offsets: Mapping[int, float] | None = None) -> None:
        self.config = config or SessionConfig()
        self.mode = mode
        self.label = label
        self.counters = SessionCounters()
        self.hello: m.Hello | None = None  # what the last HELLO said
        self.calibrated = False  # from the last HELLO or HEARTBEAT
        self.safe_mode = False
        self.config_hash: int | None = None  # from the last HELLO or the board's ACK of our CONFIG
        self.boot_id: int | None = None
        self.hello_boot_id: int | None = None  # boot whose HELLO we have
        self.online: bool | None = None
        self.last_heard_s: float | None = None  # UTC of the last frame (board time mapped)
        self.last_heard_mono_s: float | None = None  # host monotonic clock at the last frame
        self._mono = 0.0  # host monotonic seconds at the current call: timeouts and schedules
        self._wall_minus_mono: float | None = None
        self.last_seq = 0
        self._gap_frames = 0  # frames missing just before the current one (its seq gap)
        self.inputs: int | None = None
        self.motion: int | None = None
        # After a link gap the inputs and motion last heard may no longer hold (the board's STATE
        # frames of the gap can be lost): the next STATE or HEARTBEAT says what they are now, in an
        # InputsChanged even if nothing differs, which analytics waits for before judging again.
        self._confirm_state = False
        self.last_heartbeat: dict[str, Any] = {}
        self.last_counters: CountersSnapshot | None = None
        self.config_error: str = ""
        self.control_acks: dict[int, tuple[int, str, Any]] = {}  # CONTROL seq -> (status, reason, extra)
        self.ota_status: m.OtaStatus | None = None  # the board's last word on a firmware update
        self._replay_epoch_ms = replay_epoch_ms
        self._clock = self._new_clock()
        self._vib = VibStream()
        self._out: list[bytes] = []
        self._host_seq = 0
        # (board boot id, host seq) saved by a previous run: a tagged board keeps a window of host
        # seqs per boot (SPEC 4), so a restarted daemon must go on above it, not from 0.
        self._resume_host_seq = resume_host_seq
        # (event_id, state) already durably stored; seeded from the daemon's state file so a
        # re-send of an event stored just before a restart is ACKed, not emitted a second time.
        self._stored_events: OrderedDict[tuple[int, int], None] = OrderedDict()
        for key in stored_events:
            _remember(self._stored_events, (int(key[0]), int(key[1])), EVENT_MEMORY)
        self._pending_events: set[tuple[int, int]] = set()
        # The board id the daemon was configured with: a JOURNAL from another board is refused.
        self.expected_board_id = expected_board_id
        self._stored_journal: OrderedDict[int, None] = OrderedDict((int(s), None) for s in stored_journal)
        self._pending_journal: set[int] = set()
        self.boot_offsets: dict[int, float] = dict(boot_offsets or {})  # boot id -> UTC ms minus board ms
        self._state_times: deque[tuple[int | None, int, float]] = deque(maxlen=STATE_TIMES)  # boot, t_ms, UTC
        self._sync_sent: dict[int, float] = {}  # host_unix_ms sent -> monotonic ms when sent
        self._next_sync_s = 0.0
        self._config_seq: int | None = None
        self._config_sent_s = 0.0
        self._config_tries = 0
        self._config_hash_accepted: int | None = None
        self._hello_requested_s: float | None = None

    @property
    def board_id(self) -> str:
        """The board's own id from its HELLO ("" until one arrives)."""
        return self.hello.board_id if self.hello is not None else ""

    @property
    def gravity(self) -> tuple[int, int, int] | None:
        """The board's at-rest vector from its last HELLO (None until calibrated)."""
        return self.hello.gravity if self.hello is not None else None

    # -- inputs ------------------------------------------------------------------------------------

    def on_frame(self, frame: Frame, host_now_s: float, mono_s: float | None = None) -> list[Observation]:
        """Account for one checked frame received at host time `host_now_s` (UTC seconds).

        `mono_s` is the host's monotonic clock (default: `host_now_s`): timeouts and schedules run
        on it, so a step of the wall clock neither fakes a link outage nor delays a TIME_SYNC."""
        self._clock_in(host_now_s, mono_s)
        out: list[Observation] = []
        handler = _HANDLERS.get(frame[0])  # type
        if handler is None:  # before any state moves: such a frame must not shift the seq or the clock
            self.counters.drops[SessionDrop.UNEXPECTED] += 1
            return out
        if not self._track_sequence(frame, host_now_s, out):
            return out
        self.counters.frames += 1
        live = self.mode is LinkMode.LIVE
        unwrapped = self._clock.unwrap(frame[4], self._mono * 1000.0 if live else None)  # t_ms
        if live:
            self._clock.observe_arrival(unwrapped, host_now_s * 1000.0)
        ts = self._clock.to_utc_s(unwrapped)
        if self._gap_frames:
            out.append(FramesLost(ts=ts, count=self._gap_frames))
            self._gap_frames = 0
        self._heard(ts, host_now_s, out)
        try:
            view = m.MESSAGE_CLASSES[frame[0]].from_payload(frame[5], self.counters.unknown_fields)
            handler(self, frame, view, ts, host_now_s, out)
        except m.MessageError:
            self.counters.drops[SessionDrop.BAD_PAYLOAD] += 1
        if self.mode is LinkMode.LIVE:
            self._maintain(host_now_s)
        return out

    def on_frames(self, frames: Sequence[Frame], host_now_s: float, mono_s: float | None = None) -> list[Observation]:
        """`on_frame` for every frame of one read, with each run of VIB frames that continue each
        other merged into one `VibBlock` (vib_runs.py says why)."""
        out: list[Observation] = []
        vib = self._vib
        i, n = 0, len(frames)
        while i < n:
            frame = frames[i]
            i += 1
            vib.last_samples = None
            out += self.on_frame(frame, host_now_s, mono_s)
            if vib.last_samples is not None and i < n and frames[i][0] == lw.T_VIB:
                run = vib.extend_run(out[-1], frames, i, self.boot_id, self.last_seq, self._clock)
                if run is not None:
                    out[-1] = run.block
                    i += run.frames
                    self.last_seq = run.last_seq
                    self.counters.frames += run.frames
                    ts = self._clock.to_utc_s(run.last_unwrapped)
                    if ts > (self.last_heard_s or ts - 1):
                        self.last_heard_s = ts
        return out

    def tick(self, host_now_s: float, mono_s: float | None = None) -> list[Observation]:
        """Called by the board's task about once a second, frames or not (live mode)."""
        self._clock_in(host_now_s, mono_s)
        out: list[Observation] = []
        if (
            self.online
            and self.last_heard_mono_s is not None
            and self._mono - self.last_heard_mono_s > self.config.heartbeat_timeout_s
        ):
            self._go_offline(out)
        if self.mode is LinkMode.LIVE and self.online:
            self._maintain(host_now_s)
        return out

    def link_lost(self) -> list[Observation]:
        """The transport closed: offline now, without waiting for the heartbeat timeout."""
        out: list[Observation] = []
        if self.online:
            self._go_offline(out)
        # Whatever we queued cannot reach the board any more; on reconnect the board re-sends
        # unacknowledged events and the HELLO/TIME_SYNC/CONFIG cycle starts again.
        self._out.clear()
        self._pending_events.clear()
        self._sync_sent.clear()
        self._next_sync_s = 0.0
        self._config_seq = None
        return out

    def journal_stored(self, record: JournalRecord) -> None:
        """`record` is durably stored: remember its seq and ACK it to the board."""
        self._pending_journal.discard(record.seq)
        _remember(self._stored_journal, record.seq, JOURNAL_MEMORY)
        self._send(lw.T_ACK, [lw.T_JOURNAL, record.seq, ACK_OK, "", None])

    @property
    def stored_journal_seqs(self) -> list[int]:
        """Seqs of the journal records remembered as stored, oldest first (for the state file)."""
        return list(self._stored_journal)

    def event_stored(self, event: BoardEvent) -> None:
        """`event` is durably stored: remember it and, on a live link, ACK it to the board."""
        key = (event.event_id, event.state)
        self._pending_events.discard(key)
        _remember(self._stored_events, key, EVENT_MEMORY)
        self._ack_event(event.event_id)

    @property
    def host_seq_state(self) -> tuple[int | None, int]:
        """(board boot id, next host seq) to save for `resume_host_seq` after a restart."""
        return (self.boot_id, self._host_seq)

    @property
    def stored_event_keys(self) -> list[tuple[int, int]]:
        """(event_id, state) of the events remembered as stored, oldest first (for the state file)."""
        return list(self._stored_events)

    def take_outgoing(self) -> list[bytes]:
        """Host->board frames queued since the last call (always empty in replay mode)."""
        out, self._out = self._out, []
        return out

    def send_ota_chunk(self, bundle_id: int, offset: int, total: int, chunk: bytes,
                       host_now_s: float | None = None) -> int | None:
        """Queue one OTA_CHUNK of a firmware bundle (edge_daemon/ota.py paces them)."""
        return self._send(lwota.T_OTA_CHUNK, [bundle_id, offset, total, chunk], host_now_s)

    def request(self, command: m.Command, arg: int = 0, host_now_s: float | None = None) -> int | None:
        """Queue a CONTROL command (calibrate, reboot, request_counters...); returns its seq, which
        the board's ACK carries as `ack_id`."""
        return self._send(lw.T_CONTROL, [int(command), arg], host_now_s)

    # -- status ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Plain-JSON snapshot for `liftwatch status` and the upstream status message."""
        h = self.hello
        return {
            "board": self.board_id or None,
            "online": bool(self.online),
            "boot_id": self.boot_id,
            "fw_version": h.fw_version if h is not None else "",
            "prev_fw_version": h.prev_fw_version if h is not None else "",
            "update": h.update if h is not None else "",
            "update_refused": (self.ota_status.reason or None) if self.ota_status is not None
            and self.ota_status.state == m.OtaState.REFUSED else None,
            "sensor_model": h.sensor_model if h is not None else "",
            "calibrated": self.calibrated,
            "safe_mode": self.safe_mode,
            "reset_cause": h.reset_cause if h is not None else "",
            "last_heard_ts": self.last_heard_s,
            "time_synced": self._clock.synced,
            "sync_rtt_ms": self._clock.sync_rtt_ms,
            "config_hash": self.config_hash,
            "config_error": self.config_error or None,
            "heartbeat": dict(self.last_heartbeat),
            "board_counters": (
                {name: getattr(self.last_counters, name) for name in CountersSnapshot.__slots__ if name != "ts"}
                if self.last_counters is not None else None
            ),
            "counters": self.counters.to_status(),
        }

    # -- sequence, boot and link state -----------------------------------------------------------

    def _clock_in(self, host_now_s: float, mono_s: float | None) -> None:
        """Take the host's clocks for this call and notice a step of the wall clock."""
        mono = host_now_s if mono_s is None else mono_s
        skew = host_now_s - mono
        if (
            self.mode is LinkMode.LIVE
            and self._wall_minus_mono is not None
            and abs(skew - self._wall_minus_mono) > CLOCK_STEP_S
        ):
            # Ask for a TIME_SYNC now; replies to the ones sent before were timed on the old clock.
            self.counters.clock_steps += 1
            self._clock.forget_offset()
            self._sync_sent.clear()
            self._next_sync_s = 0.0
        self._wall_minus_mono = skew
        self._mono = mono

    def _new_clock(self) -> BoardClock:
        return BoardClock.fixed(self._replay_epoch_ms) if self.mode is LinkMode.REPLAY else BoardClock()

    def _track_sequence(self, frame: Frame, host_now_s: float, out: list[Observation]) -> bool:
        """True if the frame is new; handles reboots. Each lost frame is counted exactly once."""
        c = self.counters
        boot, seq = frame[2], frame[3]  # boot_id, seq (tuple indexes: this runs per frame)
        if self.boot_id is None:
            self._start_boot(boot)
        elif boot != self.boot_id:
            ahead = (boot - self.boot_id) % _U16
            if ahead >= _U16_HALF:
                c.drops[SessionDrop.STALE_BOOT] += 1
                return False
            c.reboots += ahead
            self._start_boot(boot)
        else:
            ahead = (seq - self.last_seq) % _U16
            if ahead == 0:
                c.drops[SessionDrop.DUPLICATE] += 1
                return False
            if ahead >= _U16_HALF:
                c.drops[SessionDrop.LATE] += 1
                return False
            if ahead > 1:
                c.lost_frames += ahead - 1
                self._gap_frames = ahead - 1
        self.last_seq = seq
        return True

    def _start_boot(self, boot_id: int) -> None:
        self._keep_boot_offset()
        self.boot_id = boot_id
        resume, self._resume_host_seq = self._resume_host_seq, None
        # SPEC 3: the host's seq is per board boot; a restarted daemon resumes the boot's count.
        self._host_seq = resume[1] % _U16 if resume is not None and resume[0] == boot_id else 0
        self._clock = self._new_clock()
        self._vib.reset()
        self.inputs = None
        self.motion = None
        self._sync_sent.clear()
        self._next_sync_s = 0.0
        self._config_seq = None
        self._config_tries = 0

    def _heard(self, ts: float, host_now_s: float, out: list[Observation]) -> None:
        if self.mode is LinkMode.REPLAY and self.online and self.last_heard_s is not None:
            # No host clock in a replay: a silence in board time longer than the timeout is the
            # same fact a live heartbeat timeout would have reported.
            if ts - self.last_heard_s > self.config.heartbeat_timeout_s:
                self._go_offline(out)
        if not self.online:
            self.online = True
            out.append(LinkState(ts=ts, online=True))
        if self.last_heard_s is None or ts > self.last_heard_s:
            self.last_heard_s = ts
        self.last_heard_mono_s = self._mono

    def _go_offline(self, out: list[Observation]) -> None:
        self.online = False
        # A TIME_SYNC as soon as the board is heard again, as after a reconnect (link_lost): hearing
        # its host after a silence, the board re-sends at once what waits for an ACK (docs/firmware.md).
        self._next_sync_s = 0.0
        self._confirm_state = True
        self.counters.offline_periods += 1
        out.append(LinkState(ts=self.last_heard_s or 0.0, online=False))

    # -- host -> board -----------------------------------------------------------------------------

    def _send(self, mtype: int, payload: list[Any], host_now_s: float | None = None) -> int | None:
        """Queue one frame; returns its seq. Replay mode has no link: nothing is queued."""
        if self.mode is not LinkMode.LIVE:
            return None
        seq = self._host_seq
        self._host_seq = (seq + 1) % _U16
        t_ms = int((host_now_s or 0.0) * 1000) % T_MS_MODULO
        self._out.append(encode_frame(mtype, payload, self.boot_id or 0, seq, t_ms, self.config.key, sender=lw.FROM_HOST))
        return seq

    def _ack_event(self, event_id: int) -> None:
        if self._send(lw.T_ACK, [lw.T_EVENT, event_id, ACK_OK, "", None]) is not None:
            self.counters.acks_sent += 1

    def _maintain(self, host_now_s: float) -> None:
        """Periodic host->board duties: HELLO request, TIME_SYNC, CONFIG retry."""
        mono = self._mono
        if self.hello_boot_id != self.boot_id:
            if self._hello_requested_s is None or mono - self._hello_requested_s >= self.config.hello_retry_s:
                self._hello_requested_s = mono
                self._send(lw.T_CONTROL, [int(m.Command.REQUEST_HELLO), 0], host_now_s)
        if mono >= self._next_sync_s:
            sent_ms = int(host_now_s * 1000)
            mono_ms = mono * 1000.0
            self._sync_sent = {k: v for k, v in self._sync_sent.items() if mono_ms - v < 60_000}
            self._sync_sent[sent_ms] = mono_ms  # the reply's round trip is timed on the monotonic clock
            self._send(lw.T_TIME_SYNC, [sent_ms], host_now_s)
            # Until the first reply, retry quickly: the board may have been busy booting.
            interval = self.config.time_sync_interval_s if self._clock.synced else min(5.0, self.config.time_sync_interval_s)
            self._next_sync_s = mono + interval
        if (
            self._config_seq is not None
            and mono - self._config_sent_s >= self.config.config_retry_s
        ):
            self._config_seq = None  # no ACK: try again (counts toward MAX_CONFIG_TRIES)
            self._push_config(host_now_s)

    def _push_config(self, host_now_s: float) -> None:
        if not self.config.settings or self._config_tries >= MAX_CONFIG_TRIES:
            return
        seq = self._send(lw.T_CONFIG, [dict(self.config.settings)], host_now_s)
        if seq is None:
            return
        self._config_seq = seq
        self._config_sent_s = self._mono
        self._config_tries += 1
        self.counters.config_pushes += 1

    # -- board -> host frame handlers (a payload that does not fit raised MessageError before) ----

    def _on_hello(self, frame: Frame, h: m.Hello, ts: float, host_now_s: float, out: list[Observation]) -> None:
        self.hello = h
        self.calibrated, self.safe_mode, self.config_hash = h.calibrated, h.safe_mode, h.config_hash
        if self.hello_boot_id != frame.boot_id:
            self.hello_boot_id = frame.boot_id
            self._hello_requested_s = None
            out.append(
                BoardBooted(
                    ts=ts, boot_id=frame.boot_id, reset_cause=h.reset_cause, fw_version=h.fw_version,
                    sensor_model=h.sensor_model, rate_hz=h.rate_hz, lsb_per_g=h.lsb_per_g,
                    calibrated=h.calibrated, safe_mode=h.safe_mode, gravity=h.gravity,
                )
            )
        if self.mode is LinkMode.LIVE:
            self._next_sync_s = 0.0  # sync the new boot's clock right away
            if self.config.settings and h.config_hash != self._config_hash_accepted:
                self._push_config(host_now_s)

    def _on_state(self, frame: Frame, st: m.State, ts: float, host_now_s: float, out: list[Observation]) -> None:
        clock = self._clock
        t = clock.payload_utc_s(st.event_t_ms, ts)
        self._state_times.append((self.boot_id, st.event_t_ms % T_MS_MODULO, t))
        clock.expire_trip_hold()
        self._state_heard(t, st.inputs, st.changed, st.motion, out, st.event_t_ms)

    def _state_heard(self, t: float, inputs: int, changed: int, motion: int, out: list[Observation],
                     event_t_ms: int | None = None) -> None:
        """The board's inputs and motion at `t`: observations for what changed (everything, once,
        after a link gap). `event_t_ms` (a STATE's) times a trip's start for the clock."""
        clock = self._clock
        confirm, self._confirm_state = self._confirm_state, False
        if changed or inputs != self.inputs or confirm:
            if self.inputs is not None and not changed:
                changed = inputs ^ self.inputs  # a STATE we missed: say what differs from the last
            out.append(InputsChanged(ts=t, inputs=inputs, changed=changed))
            self.inputs = inputs
        if motion != self.motion:
            out.append(MotionChanged(ts=t, motion=motion))
            self.motion = motion
            if motion in MOVING and event_t_ms is not None:
                clock.hold_for_trip(clock.peek(event_t_ms % T_MS_MODULO))
            elif motion not in MOVING:
                clock.release_after_trip()

    def _on_vib(self, frame: Frame, v: m.Vib, ts: float, host_now_s: float, out: list[Observation]) -> None:
        # The frame time is that of the block's last sample.
        block = self._vib.block(v, self._clock.peek(frame[4]), self._clock, self.gravity)
        if block is None:
            return  # a block we already have (re-sent after a link hiccup)
        if block.gap_before:
            self.counters.vib_discontinuities += 1
        out.append(block)

    def _on_stats(self, frame: Frame, st: m.Stats, ts: float, host_now_s: float, out: list[Observation]) -> None:
        out.append(RestStats(ts=ts, window_ms=st.window_ms, mean_mg=st.mean_mg, rms_mg=st.rms_mg,
                             peak_mg=st.peak_mg, motion=st.motion, count=st.count))

    def _on_event(self, frame: Frame, e: m.Event, ts: float, host_now_s: float, out: list[Observation]) -> None:
        key = (e.event_id, e.state)
        if key in self._stored_events:
            self.counters.events_resent += 1
            self._ack_event(e.event_id)  # our ACK was lost: say it again, emit nothing
            return
        if key in self._pending_events:
            self.counters.events_resent += 1
            return  # still being stored; its ACK follows
        self._pending_events.add(key)
        self.counters.events += 1
        out.append(BoardEvent(ts=self._clock.payload_utc_s(e.event_t_ms, ts), event_id=e.event_id, kind=e.kind,
                              state=e.state, detail=dict(e.detail or {})))

    def _on_counters(self, frame: Frame, c: m.Counters, ts: float, host_now_s: float,
                     out: list[Observation]) -> None:
        snap = CountersSnapshot(ts, *c.to_payload())
        self.last_counters = snap
        out.append(snap)

    def _on_heartbeat(self, frame: Frame, hb: m.Heartbeat, ts: float, host_now_s: float,
                      out: list[Observation]) -> None:
        self.last_heartbeat = {
            "uptime_s": hb.uptime_s, "heap_free": hb.heap_free, "queue_depth": hb.queue_depth,
            "motion": hb.motion, "inputs": hb.inputs, "calibrated": hb.calibrated, "safe_mode": hb.safe_mode,
        }
        self.calibrated, self.safe_mode = hb.calibrated, hb.safe_mode
        if self._confirm_state:  # otherwise STATE frames report every change, at its own time
            self._state_heard(ts, hb.inputs, 0, hb.motion, out)

    def _on_ack(self, frame: Frame, a: m.Ack, ts: float, host_now_s: float, out: list[Observation]) -> None:
        if a.ack_type == lw.T_CONTROL:
            self.control_acks[a.ack_id] = (a.status, a.reason, a.extra)
            while len(self.control_acks) > 16:  # only the caller of request() reads these
                self.control_acks.pop(next(iter(self.control_acks)))
        if a.ack_type == lw.T_CONFIG and a.ack_id == self._config_seq:
            self._config_seq = None
            if a.status == ACK_OK:
                self.counters.config_accepted += 1
                self.config_error = ""
                # `extra` is any value by SPEC; a CONFIG's ACK carries the new config hash there.
                accepted = a.extra if type(a.extra) is int else self.config_hash
                self._config_hash_accepted = accepted
                self.config_hash = accepted
            else:
                self.counters.config_rejected += 1
                self.config_error = f"{a.status}: {a.reason}"
                self._config_tries = MAX_CONFIG_TRIES  # the board said no: do not insist this boot

    def _on_time_sync(self, frame: Frame, reply: m.TimeSync, ts: float, host_now_s: float,
                      out: list[Observation]) -> None:
        if reply.board_t_ms is None:
            raise m.MessageError(m.MessageType.TIME_SYNC, "a board's reply carries its time", "board_t_ms")
        sent_mono_ms = self._sync_sent.pop(reply.host_unix_ms, None) if self.mode is LinkMode.LIVE else None
        if sent_mono_ms is None:
            return  # not ours (another host, from before a reconnect or a clock step): ignore
        recv_ms = reply.host_unix_ms + (self._mono * 1000.0 - sent_mono_ms)
        if self._clock.observe_sync(reply.host_unix_ms, self._clock.peek(reply.board_t_ms), recv_ms):
            self.counters.time_syncs += 1

    def _on_journal(self, frame: Frame, j: m.Journal, ts: float, host_now_s: float,
                    out: list[Observation]) -> None:
        known = self.expected_board_id or self.board_id
        if not known:
            self.counters.drops[SessionDrop.JOURNAL_UNVERIFIED] += 1  # the board re-sends it after its HELLO
            return
        if j.board_id != known:
            self.counters.drops[SessionDrop.JOURNAL_FOREIGN] += 1  # never ACKed, never a fact of this car
            return
        self.counters.journal_skipped = j.skipped
        if j.seq in self._stored_journal:
            self.counters.journal_resent += 1
            self._send(lw.T_ACK, [lw.T_JOURNAL, j.seq, ACK_OK, "", None])
            return
        if j.seq in self._pending_journal:
            self.counters.journal_resent += 1
            return
        start, end, by_arrival = self._journal_times(j, ts)
        self._pending_journal.add(j.seq)
        self.counters.journal_records += 1
        out.append(JournalRecord(ts=end, seq=j.seq, kind=j.kind, start_ts=start, direction=j.direction,
                                 count=j.count, peak_speed_mm_s=j.peak_speed_mm_s, inputs_start=j.inputs_start,
                                 inputs_end=j.inputs_end, timed_by_arrival=by_arrival))

    def _journal_times(self, j: m.Journal, ts: float) -> tuple[float, float, bool]:
        """UTC of a record's start and end: from a STATE of its boot heard near its start, else this
        boot's clock, or the offset kept for its boot; else the arrival's (True)."""
        near = [(abs(d), utc + d / 1000.0) for boot, t_ms, utc in self._state_times if boot == j.boot_id
                for d in (t_ms_delta(j.start_t_ms, t_ms),) if abs(d) <= STATE_TIMES_MAX_MS]
        if near:
            start = min(near)[1]
            return start, start + (j.end_t_ms - j.start_t_ms) % T_MS_MODULO / 1000.0, False
        if j.boot_id == self.boot_id:
            return self._clock.payload_utc_s(j.start_t_ms, ts), self._clock.payload_utc_s(j.end_t_ms, ts), False
        offset = self.boot_offsets.get(j.boot_id)
        if offset is None:
            self.counters.journal_unmapped += 1
            return ts - (j.end_t_ms - j.start_t_ms) % T_MS_MODULO / 1000.0, ts, True
        return (j.start_t_ms + offset) / 1000.0, (j.end_t_ms + offset) / 1000.0, False

    @property
    def boot_offsets_now(self) -> dict[int, float]:
        """The kept offsets and, once its clock is mapped, the current boot's: a daemon killed before
        this boot ended still times the boot's late journal records after the board rebooted."""
        offsets = dict(self.boot_offsets)
        if self.boot_id is not None and self._clock.offset_ms is not None and self.mode is LinkMode.LIVE:
            # Offsets for raw t_ms: the unwrapped scale began at the boot's first raw value.
            offsets[self.boot_id] = self._clock.offset_ms
        return offsets

    def _keep_boot_offset(self) -> None:
        """The boot ends (a newer one began): keep its offset for its journal records still to come."""
        self.boot_offsets = self.boot_offsets_now
        while len(self.boot_offsets) > BOOT_OFFSETS:
            self.boot_offsets.pop(next(iter(self.boot_offsets)))


def _remember(stored: OrderedDict[Any, None], key: Any, memory: int) -> None:
    """Keep `key` as the newest of at most `memory` stored keys."""
    stored[key] = None
    stored.move_to_end(key)
    while len(stored) > memory:
        stored.popitem(last=False)


def _on_ota_status(self: BoardSession, frame: Frame, v: m.OtaStatus, ts: float, host_now_s: float,
                   out: list[Observation]) -> None:
    self.ota_status = v


_HANDLERS = {
    lwota.T_OTA_STATUS: _on_ota_status,
    lw.T_HELLO: BoardSession._on_hello,
    lw.T_STATE: BoardSession._on_state,
    lw.T_VIB: BoardSession._on_vib,
    lw.T_STATS: BoardSession._on_stats,
    lw.T_EVENT: BoardSession._on_event,
    lw.T_COUNTERS: BoardSession._on_counters,
    lw.T_HEARTBEAT: BoardSession._on_heartbeat,
    lw.T_ACK: BoardSession._on_ack,
    lw.T_TIME_SYNC: BoardSession._on_time_sync,
    lw.T_JOURNAL: BoardSession._on_journal,
}
