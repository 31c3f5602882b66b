"""One board's session: checked frames in, observations for analytics and host->board frames out.

The session never sees bytes (framing did that) and does no I/O: the board's task in daemon.py feeds
it frames and clock ticks, stores what it emits, and writes the frames it queues. That keeps every
rule below testable without a port and lets `liftwatch replay` run the same code as live operation.

What it keeps per board:
- Boot and sequence tracking. `boot_id` is the board's persistent boot counter (u16, wraps) and
  `seq` counts frames per boot (u16, wraps). A newer boot id is a reboot (counted once, plus the
  boots we missed); an older one is a stale frame from before the reboot (dropped). Within a boot a
  forward jump of n counts n-1 lost frames; a repeat or a late frame is dropped, and because the
  late frame was already counted as lost it is not counted again.
- Board time. `t_ms` is board monotonic ms mod 2**30; `BoardClock` unwraps it (nearest wrap to the
  previous frame, or to the host's elapsed time after a long silence) and maps it to UTC with the
  best TIME_SYNC round trip, or, until one arrives, the earliest arrival (least latency).
- EVENT durability. A board EVENT is emitted once as a `BoardEvent`; the daemon stores it in the
  outbox and then calls `event_stored()`, which queues the ACK. A re-sent EVENT already stored is
  ACKed again without a second observation; one still being stored is ignored. In `LinkMode.REPLAY`
  there is no host->board link: nothing is ever queued, and events count as stored without an ACK.
- TIME_SYNC every `time_sync_interval_s`, CONFIG push when the board's config hash differs from the
  last one it accepted, CONTROL request_hello when frames arrive from a boot we never got a HELLO for.
- Heartbeat timeout: no frame for `heartbeat_timeout_s` -> `LinkState(online=False)` at the time of
  the last frame heard; the next frame -> `LinkState(online=True)`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liftwatch.edge_daemon.observations import (
    MOVING,
    BoardBooted,
    BoardEvent,
    CountersSnapshot,
    FramesLost,
    InputsChanged,
    LinkState,
    MotionChanged,
    Observation,
    RestStats,
    VibBlock,
)
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol import messages as m
from liftwatch.protocol.framing import Frame, encode_frame

T_MS_MODULO = lw.T_MS_MODULO  # 2**30
_T_HALF = T_MS_MODULO // 2
_U16 = 0x10000
_U16_HALF = 0x8000

# The host's wall clock moved this much against its monotonic clock between two calls: it was
# stepped (NTP on a Pi without RTC, an operator). Offsets and pending TIME_SYNCs are then void.
CLOCK_STEP_S = 1.0
# A new clock offset waits for the end of a trip at most this long (board ms): a car that reports
# "moving" for longer has a fault, and its times should follow the best offset again.
TRIP_OFFSET_HOLD_MAX_MS = 600_000
# A TIME_SYNC reply slower than this says more about a busy link than about the clock offset.
MAX_SYNC_RTT_MS = 2000
# A VIB block whose index-derived start differs this much from its frame time re-anchors the
# sample clock (board crystal drift, or a block that waited in the board's queue after a link cut).
VIB_REANCHOR_MS = 250
# Event ids kept to re-ACK a re-sent EVENT without emitting it twice. The board re-sends only
# unacknowledged events, a handful at most; 1024 covers a long link cut with a chatty board.
EVENT_MEMORY = 1024
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
    BAD_PAYLOAD = "bad_payload"  # a field of the wrong type
    UNEXPECTED = "unexpected"  # a host->board type (CONFIG, CONTROL) sent by the board


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Timing and behaviour of one board's session (documented in docs/config.md, `[session]`)."""

    heartbeat_timeout_s: float = 15.0  # 15 STATS windows (1 s) or 1.5 HEARTBEATs (10 s) missed = offline
    time_sync_interval_s: float = 600.0  # ESP32 crystal drift (~40 ppm) is 24 ms per 10 minutes
    config_retry_s: float = 10.0
    hello_retry_s: float = 5.0
    settings: Mapping[str, Any] = field(default_factory=dict)  # CONFIG pushed to the board
    key: bytes | None = None  # HMAC key for host->board frames (tags)


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

    def to_status(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__ if name not in ("drops", "unknown_fields")}
        out["drops"] = {reason.value: n for reason, n in self.drops.items()}
        out["unknown_fields"] = dict(self.unknown_fields)
        return out


class BoardClock:
    """Board time of one boot: unwrap `t_ms` (mod 2**30) and map it to UTC.

    `offset_ms` is UTC ms minus unwrapped board ms. The unwrapped scale is arbitrary (the first frame
    seen sets it) but consistent within a boot, which is all the offset needs.
    """

    __slots__ = (
        "last_raw", "last_unwrapped", "last_host_ms", "offset_ms", "synced", "sync_rtt_ms", "trip_offset_ms",
        "trip_since",
    )

    def __init__(self, offset_ms: float | None = None) -> None:
        self.last_raw: int | None = None
        self.last_unwrapped = 0
        self.last_host_ms: float | None = None
        self.offset_ms = offset_ms
        self.synced = False
        self.sync_rtt_ms: float | None = None
        # While the car moves, times map with the offset it started with: a new offset (TIME_SYNC,
        # a step of the Pi's wall clock) lands between trips, never inside one, so a trip's start,
        # samples and end share one time base (a step mid-trip once made a 3618 s or negative trip).
        self.trip_offset_ms: float | None = None
        self.trip_since = 0  # unwrapped board ms the trip's offset was taken at

    def unwrap(self, t_ms: int, host_ms: float | None = None) -> int:
        """Advance with the frame's send time. After more than a quarter wrap (3 days) of silence
        the host's elapsed time, not the nearest wrap, decides how many wraps passed."""
        if self.last_raw is None:
            self.last_raw, self.last_unwrapped, self.last_host_ms = t_ms, t_ms, host_ms
            return t_ms
        delta = (t_ms - self.last_raw + _T_HALF) % T_MS_MODULO - _T_HALF
        if host_ms is not None and self.last_host_ms is not None:
            elapsed = host_ms - self.last_host_ms
            if elapsed > T_MS_MODULO // 4:
                predicted = self.last_unwrapped + elapsed
                base = self.last_unwrapped + delta
                wraps = round((predicted - base) / T_MS_MODULO)
                delta += wraps * T_MS_MODULO
        unwrapped = self.last_unwrapped + delta
        if delta > 0:
            self.last_raw, self.last_unwrapped = t_ms, unwrapped
        if host_ms is not None:
            self.last_host_ms = host_ms
        return unwrapped

    def peek(self, t_ms: int) -> int:
        """Unwrap a time carried inside a payload (event_t_ms, board_t_ms) without advancing."""
        if self.last_raw is None:
            return t_ms
        return self.last_unwrapped + (t_ms - self.last_raw + _T_HALF) % T_MS_MODULO - _T_HALF

    def observe_arrival(self, unwrapped: int, host_ms: float) -> None:
        """Until a TIME_SYNC lands, the smallest host-minus-board difference is the best offset:
        every frame arrives after it was sent, so the least delayed one bounds the offset best."""
        if self.synced:
            return
        candidate = host_ms - unwrapped
        if self.offset_ms is None or candidate < self.offset_ms:
            self.offset_ms = candidate

    def observe_sync(self, host_sent_ms: float, board_unwrapped: int, host_recv_ms: float) -> bool:
        """A TIME_SYNC round trip: the board read its clock about halfway through. Keeps the sample
        with the smallest round trip since the last interval started; returns whether it was used."""
        rtt = host_recv_ms - host_sent_ms
        if rtt < 0 or rtt > MAX_SYNC_RTT_MS:
            return False
        if self.synced and self.sync_rtt_ms is not None and rtt > self.sync_rtt_ms * 2 + 20:
            return False
        self.offset_ms = host_sent_ms + rtt / 2 - board_unwrapped
        self.sync_rtt_ms = rtt
        self.synced = True
        return True

    def to_utc_s(self, unwrapped: int) -> float:
        offset = self.trip_offset_ms if self.trip_offset_ms is not None else self.offset_ms
        return (unwrapped + (offset or 0.0)) / 1000.0

    def hold_for_trip(self, unwrapped: int) -> None:
        """The car started moving: keep mapping with today's offset until `release_after_trip`."""
        if self.trip_offset_ms is None and self.offset_ms is not None:
            self.trip_offset_ms, self.trip_since = self.offset_ms, unwrapped

    def release_after_trip(self) -> None:
        self.trip_offset_ms = None


@dataclass(slots=True)
class _BoardInfo:
    """What the last HELLO said; kept for status and for VibBlock gravity."""

    board_id: str = ""
    fw_version: str = ""
    sensor_model: str = ""
    config_hash: int | None = None
    reset_cause: str = ""
    capabilities: tuple[str, ...] = ()
    rate_hz: int = 0
    lsb_per_g: int = 0
    calibrated: bool = False
    safe_mode: bool = False
    boots: int = 0
    gravity: tuple[int, int, int] | None = None


def _is_int(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _xyz(value: Any) -> tuple[int, int, int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value):
        return (int(value[0]), int(value[1]), int(value[2]))
    return None


class BoardSession:
    """Session state of one board link. Not thread-safe; one board task owns it.

    `on_frame()` and `tick()` return observations in board-time order. Frames to write are taken
    with `take_outgoing()` after each call. For every emitted `BoardEvent` the owner must call
    `event_stored()` once it is durably stored (that queues the ACK in live mode).
    """

    def __init__(self, config: SessionConfig | None = None, mode: LinkMode = LinkMode.LIVE, *,
                 replay_epoch_ms: float = 0.0, label: str = "",
                 stored_events: Iterable[tuple[int, int]] = (),
                 resume_host_seq: tuple[int, int] | None = None) -> None:
        self.config = config or SessionConfig()
        self.mode = mode
        self.label = label
        self.counters = SessionCounters()
        self.info = _BoardInfo()
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
        self.last_heartbeat: dict[str, Any] = {}
        self.last_counters: CountersSnapshot | None = None
        self.config_error: str = ""
        self.control_acks: dict[int, tuple[int, str, Any]] = {}  # CONTROL seq -> (status, reason, extra)
        self._replay_epoch_ms = replay_epoch_ms
        self._clock = self._new_clock()
        self._out: list[bytes] = []
        self._host_seq = 0
        # (board boot id, host seq) saved by a previous run: a tagged board keeps a window of host
        # seqs per boot (SPEC 4), so a restarted daemon must go on above it, not from 0.
        self._resume_host_seq = resume_host_seq
        # (event_id, state) already durably stored; seeded from the daemon's state file so a
        # re-send of an event stored just before a restart is ACKed, not emitted a second time.
        self._stored_events: OrderedDict[tuple[int, int], None] = OrderedDict()
        for key in stored_events:
            self._remember_event((int(key[0]), int(key[1])))
        self._pending_events: set[tuple[int, int]] = set()
        self._sync_sent: dict[int, float] = {}  # host_unix_ms sent -> monotonic ms when sent
        self._next_sync_s = 0.0
        self._config_seq: int | None = None
        self._config_sent_s = 0.0
        self._config_tries = 0
        self._config_hash_accepted: int | None = None
        self._hello_requested_s: float | None = None
        self._vib_next_index: int | None = None
        self._vib_next_t_ms: float | None = None  # board time (unwrapped ms) of the sample expected next
        self._vib_anchor: tuple[int, int, int] | None = None  # (index, unwrapped ms, rate_hz)
        self._vib_raw: bytes | None = None  # samples of the VibBlock the last frame emitted

    # -- inputs ------------------------------------------------------------------------------------

    def on_frame(self, frame: Frame, host_now_s: float, mono_s: float | None = None) -> list[Observation]:
        """Account for one checked frame received at host time `host_now_s` (UTC seconds).

        `mono_s` is the host's monotonic clock (default: `host_now_s`): timeouts and schedules run
        on it, so a step of the wall clock neither fakes a link outage nor delays a TIME_SYNC."""
        self._clock_in(host_now_s, mono_s)
        out: list[Observation] = []
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
        handler = _HANDLERS.get(frame[0])  # type
        if handler is None:
            self.counters.drops[SessionDrop.UNEXPECTED] += 1
        elif not handler(self, frame, ts, host_now_s, out):
            self.counters.drops[SessionDrop.BAD_PAYLOAD] += 1
        if self.mode is LinkMode.LIVE:
            self._maintain(host_now_s)
        return out

    def on_frames(self, frames: Sequence[Frame], host_now_s: float, mono_s: float | None = None) -> list[Observation]:
        """`on_frame` for every frame of one read, with consecutive VIB frames merged.

        A run of VIB frames that continue each other (next seq, next sample index, same rate and
        scale, same boot) becomes one `VibBlock`: analytics then pays its per-observation cost once
        per read instead of once per 64 samples, and the run after the first frame takes a tight
        loop with no per-frame objects. That is what lets one core serve hundreds of boards.
        """
        out: list[Observation] = []
        i, n = 0, len(frames)
        while i < n:
            frame = frames[i]
            i += 1
            self._vib_raw = None
            out += self.on_frame(frame, host_now_s, mono_s)
            if self._vib_raw is not None and i < n and frames[i][0] == lw.T_VIB:
                i = self._extend_vib_run(frames, i, out)
        return out

    def _extend_vib_run(self, frames: Sequence[Frame], i: int, out: list[Observation]) -> int:
        """Absorb the VIB frames from `i` on that continue the block just emitted (out[-1])."""
        first = out[-1]
        assert isinstance(first, VibBlock)
        rate, lsb = first.rate_hz, first.lsb_per_g
        boot, seq, nxt = self.boot_id, self.last_seq, self._vib_next_index
        chunks = [self._vib_raw]
        total = len(first.samples)
        last_t = None
        n = len(frames)
        j = i
        while j < n:
            f = frames[j]
            if f[0] != lw.T_VIB or f[2] != boot or f[3] != (seq + 1) & 0xFFFF:
                break
            p = f[5]
            if type(p) is not list or len(p) != 5:  # noqa: E721 - exact type: the fast path only
                break
            f_rate, f_lsb, f_first, f_count, samples = p
            if f_first != nxt or f_rate != rate or f_lsb != lsb or type(samples) is not bytes \
                    or type(f_count) is not int or f_count <= 0 or len(samples) != f_count * 6:
                break
            chunks.append(samples)
            total += f_count
            seq = f[3]
            nxt = (f_first + f_count) & 0xFFFF
            last_t = f[4]
            j += 1
        absorbed = j - i
        if absorbed:
            self.last_seq = seq
            self._vib_next_index = nxt
            self.counters.frames += absorbed
            last_unwrapped = self._clock.unwrap(last_t)
            self._vib_next_t_ms = last_unwrapped + 1000.0 / rate
            ts = self._clock.to_utc_s(last_unwrapped)
            if ts > (self.last_heard_s or ts - 1):
                self.last_heard_s = ts
            block = np.frombuffer(b"".join(chunks), dtype="<i2").reshape(total, 3)
            out[-1] = VibBlock(ts_first=first.ts_first, rate_hz=rate, lsb_per_g=lsb, samples=block,
                               gravity=first.gravity, gap_before=first.gap_before)
        return j

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

    def event_stored(self, event: BoardEvent) -> None:
        """`event` is durably stored: remember it and, on a live link, ACK it to the board."""
        key = (event.event_id, event.state)
        self._pending_events.discard(key)
        self._remember_event(key)
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

    def request(self, command: m.Command, arg: int = 0, host_now_s: float | None = None) -> int | None:
        """Queue a CONTROL command (calibrate, reboot, request_counters...); returns its seq, which
        the board's ACK carries as `ack_id`."""
        return self._send(lw.T_CONTROL, [int(command), arg], host_now_s)

    # -- status ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Plain-JSON snapshot for `liftwatch status` and the upstream status message."""
        info = self.info
        return {
            "board": info.board_id or None,
            "online": bool(self.online),
            "boot_id": self.boot_id,
            "fw_version": info.fw_version,
            "sensor_model": info.sensor_model,
            "calibrated": info.calibrated,
            "safe_mode": info.safe_mode,
            "reset_cause": info.reset_cause,
            "last_heard_ts": self.last_heard_s,
            "time_synced": self._clock.synced,
            "sync_rtt_ms": self._clock.sync_rtt_ms,
            "config_hash": info.config_hash,
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
            # Offsets measured against the old wall clock would misplace every event: measure
            # again from the next frame's arrival and ask for a TIME_SYNC now.
            self.counters.clock_steps += 1
            self._clock.offset_ms = None
            self._clock.synced = False
            self._clock.sync_rtt_ms = None
            self._sync_sent.clear()
            self._next_sync_s = 0.0
        self._wall_minus_mono = skew
        self._mono = mono

    def _new_clock(self) -> BoardClock:
        if self.mode is LinkMode.REPLAY:
            clock = BoardClock(self._replay_epoch_ms)
            clock.synced = True  # the trace's time base is exact by construction
            return clock
        return BoardClock()

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
        self.boot_id = boot_id
        resume, self._resume_host_seq = self._resume_host_seq, None
        # SPEC 3: the host's seq is per board boot; a restarted daemon resumes the boot's count.
        self._host_seq = resume[1] % _U16 if resume is not None and resume[0] == boot_id else 0
        self._clock = self._new_clock()
        self._vib_next_index = None
        self._vib_next_t_ms = None
        self._vib_anchor = None
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
        self._out.append(encode_frame(mtype, payload, self.boot_id or 0, seq, t_ms, self.config.key))
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

    # -- board -> host frame handlers (return False on a malformed payload) ------------------------

    def _on_hello(self, frame: Frame, ts: float, host_now_s: float, out: list[Observation]) -> bool:
        h = self._view(m.Hello, frame)
        if h is None or not (isinstance(h.board_id, str) and isinstance(h.fw_version, str)
                             and _is_int(h.rate_hz, h.lsb_per_g, h.boots)):
            return False
        info = self.info
        info.board_id, info.fw_version, info.sensor_model = h.board_id, h.fw_version, str(h.sensor_model)
        info.config_hash = h.config_hash if _is_int(h.config_hash) else None
        info.reset_cause = str(h.reset_cause)
        caps = h.capabilities
        info.capabilities = tuple(str(c) for c in caps) if isinstance(caps, (list, tuple)) else ()
        info.rate_hz, info.lsb_per_g = rate, lsb = h.rate_hz, h.lsb_per_g
        info.calibrated, info.safe_mode, info.boots = bool(h.calibrated), bool(h.safe_mode), h.boots
        info.gravity = _xyz(h.gravity)
        fw = h.fw_version
        if self.hello_boot_id != frame.boot_id:
            self.hello_boot_id = frame.boot_id
            self._hello_requested_s = None
            out.append(
                BoardBooted(
                    ts=ts, boot_id=frame.boot_id, reset_cause=info.reset_cause, fw_version=fw,
                    sensor_model=info.sensor_model, rate_hz=rate, lsb_per_g=lsb,
                    calibrated=info.calibrated, safe_mode=info.safe_mode, gravity=info.gravity,
                )
            )
        if self.mode is LinkMode.LIVE:
            self._next_sync_s = 0.0  # sync the new boot's clock right away
            if self.config.settings and info.config_hash != self._config_hash_accepted:
                self._push_config(host_now_s)
        return True

    def _on_state(self, frame: Frame, ts: float, host_now_s: float, out: list[Observation]) -> bool:
        payload = frame[5]
        if type(payload) is list and len(payload) == _STATE_FIELDS:  # exactly what boards send
            event_t_ms, inputs, changed, motion = payload
        else:
            st = self._view(m.State, frame)
            if st is None:
                return False
            event_t_ms, inputs, changed, motion = st.event_t_ms, st.inputs, st.changed, st.motion
        if not (
            (type(event_t_ms) is int and type(inputs) is int and type(changed) is int and type(motion) is int)
            or _is_int(event_t_ms, inputs, changed, motion)
        ):
            return False
        t = self._payload_ts(event_t_ms, frame, ts)
        clock = self._clock
        if clock.trip_offset_ms is not None and clock.last_unwrapped - clock.trip_since > TRIP_OFFSET_HOLD_MAX_MS:
            clock.release_after_trip()  # "moving" for this long is a fault, not a trip to keep whole
        if changed or inputs != self.inputs:
            if self.inputs is not None and not changed:
                changed = inputs ^ self.inputs  # a STATE we missed: say what differs from the last
            out.append(InputsChanged(ts=t, inputs=inputs, changed=changed))
            self.inputs = inputs
        if motion != self.motion:
            out.append(MotionChanged(ts=t, motion=motion))
            self.motion = motion
            if motion in MOVING:
                clock.hold_for_trip(clock.peek(event_t_ms % T_MS_MODULO))
            else:
                clock.release_after_trip()
        return True

    def _on_vib(self, frame: Frame, ts: float, host_now_s: float, out: list[Observation]) -> bool:
        payload = frame[5]
        if type(payload) is list and len(payload) == _VIB_FIELDS:  # exactly what boards send
            rate, lsb, first_index, count, samples = payload
        else:
            v = self._view(m.Vib, frame)
            if v is None:
                return False
            rate, lsb, first_index, count, samples = v.rate_hz, v.lsb_per_g, v.first_index, v.count, v.samples
        if not (
            (type(rate) is int and type(lsb) is int and type(first_index) is int and type(count) is int)
            or _is_int(rate, lsb, first_index, count)
        ) or not isinstance(samples, (bytes, bytearray)):
            return False
        if rate <= 0 or count <= 0 or len(samples) != count * 6:
            return False
        # The frame time is that of the block's last sample.
        end_unwrapped = self._clock.peek(frame[4])
        start_by_frame = end_unwrapped - (count - 1) * 1000.0 / rate
        gap = 0
        if self._vib_next_index is not None:
            ahead = (first_index - self._vib_next_index) % _U16
            if self._vib_next_t_ms is None:
                if ahead >= _U16_HALF:
                    return True  # a block we already have (re-sent after a link hiccup)
            else:
                # first_index is mod 2**16 (164 s at 400 Hz) and counts on while the car rests
                # between trips: unwrap it with the board time, taking the congruent distance
                # nearest to what the time elapsed since the expected next sample predicts.
                elapsed_ms = start_by_frame - self._vib_next_t_ms
                ahead += round((elapsed_ms * rate / 1000.0 - ahead) / _U16) * _U16
                if ahead < 0:
                    if elapsed_ms * rate < _U16_HALF * 1000.0:
                        return True  # behind what we have: a re-send after a link hiccup
                    ahead = ahead % _U16 or _U16  # sensor clock drift over a long rest: a gap anyway
            gap = ahead
        if gap:
            self.counters.vib_discontinuities += 1
        self._vib_next_index = (first_index + count) % _U16
        self._vib_next_t_ms = end_unwrapped + 1000.0 / rate
        # Sample times come from the sample index (exact spacing, no frame jitter) anchored once;
        # the frame time re-anchors when they disagree (drift, a block held back by a link cut).
        start = start_by_frame
        keep_anchor = False
        anchor = self._vib_anchor
        if anchor is not None and anchor[2] == rate and gap == 0:
            since = (first_index - anchor[0]) % _U16
            by_index = anchor[1] + since * 1000.0 / rate
            if since < _U16_HALF and abs(by_index - start_by_frame) <= VIB_REANCHOR_MS:
                start = by_index
                keep_anchor = since < _U16_HALF // 2  # move it on before the u16 distance aliases
        if not keep_anchor:
            self._vib_anchor = (first_index, start, rate)
        raw = samples if type(samples) is bytes else bytes(samples)
        self._vib_raw = raw
        block = np.frombuffer(raw, dtype="<i2").reshape(count, 3)
        out.append(
            VibBlock(
                ts_first=self._clock.to_utc_s(start), rate_hz=rate, lsb_per_g=lsb, samples=block,
                gravity=self.info.gravity, gap_before=gap,
            )
        )
        return True

    def _on_stats(self, frame: Frame, ts: float, host_now_s: float, out: list[Observation]) -> bool:
        st = self._view(m.Stats, frame)
        if st is None:
            return False
        window_ms, count, peak, motion = st.window_ms, st.count, st.peak_mg, st.motion
        mean3, rms3 = _xyz(st.mean_mg), _xyz(st.rms_mg)
        if mean3 is None or rms3 is None or not _is_int(window_ms, count, peak, motion):
            return False
        out.append(RestStats(ts=ts, window_ms=window_ms, mean_mg=mean3, rms_mg=rms3, peak_mg=peak,
                             motion=motion, count=count))
        return True

    def _on_event(self, frame: Frame, ts: float, host_now_s: float, out: list[Observation]) -> bool:
        e = self._view(m.Event, frame)
        if e is None:
            return False
        event_id, kind, state, event_t_ms, detail = e.event_id, e.kind, e.state, e.event_t_ms, e.detail
        if not _is_int(event_id, kind, state):
            return False
        key = (event_id, state)
        if key in self._stored_events:
            self.counters.events_resent += 1
            self._ack_event(event_id)  # our ACK was lost: say it again, emit nothing
            return True
        if key in self._pending_events:
            self.counters.events_resent += 1
            return True  # still being stored; its ACK follows
        t = self._payload_ts(event_t_ms, frame, ts) if _is_int(event_t_ms) else ts
        self._pending_events.add(key)
        self.counters.events += 1
        out.append(BoardEvent(ts=t, event_id=event_id, kind=kind, state=state,
                              detail=dict(detail) if isinstance(detail, Mapping) else {}))
        return True

    def _on_counters(self, frame: Frame, ts: float, host_now_s: float, out: list[Observation]) -> bool:
        c = self._view(m.Counters, frame)
        values = c.to_payload() if c is not None else None
        if values is None or not _is_int(*values):
            return False
        snap = CountersSnapshot(ts, *values)
        self.last_counters = snap
        out.append(snap)
        return True

    def _on_heartbeat(self, frame: Frame, ts: float, host_now_s: float, out: list[Observation]) -> bool:
        hb = self._view(m.Heartbeat, frame)
        if hb is None or not _is_int(hb.uptime_s, hb.heap_free, hb.queue_depth, hb.motion, hb.inputs):
            return False
        uptime_s, heap_free, queue_depth, motion, inputs = hb.uptime_s, hb.heap_free, hb.queue_depth, hb.motion, hb.inputs
        calibrated, safe = hb.calibrated, hb.safe_mode
        self.last_heartbeat = {
            "uptime_s": uptime_s, "heap_free": heap_free, "queue_depth": queue_depth,
            "motion": motion, "inputs": inputs, "calibrated": bool(calibrated), "safe_mode": bool(safe),
        }
        self.info.calibrated, self.info.safe_mode = bool(calibrated), bool(safe)
        return True

    def _on_ack(self, frame: Frame, ts: float, host_now_s: float, out: list[Observation]) -> bool:
        a = self._view(m.Ack, frame)
        if a is None or not _is_int(a.ack_type, a.ack_id, a.status):
            return False
        ack_type, ack_id, status, reason, extra = a.ack_type, a.ack_id, a.status, a.reason, a.extra
        if ack_type == lw.T_CONTROL:
            self.control_acks[ack_id] = (status, str(reason), extra)
            while len(self.control_acks) > 16:  # only the caller of request() reads these
                self.control_acks.pop(next(iter(self.control_acks)))
        if ack_type == lw.T_CONFIG and ack_id == self._config_seq:
            self._config_seq = None
            if status == ACK_OK:
                self.counters.config_accepted += 1
                self.config_error = ""
                accepted = extra if _is_int(extra) else self.info.config_hash
                self._config_hash_accepted = accepted
                self.info.config_hash = accepted
            else:
                self.counters.config_rejected += 1
                self.config_error = f"{status}: {reason}"
                self._config_tries = MAX_CONFIG_TRIES  # the board said no: do not insist this boot
        return True

    def _on_time_sync(self, frame: Frame, ts: float, host_now_s: float, out: list[Observation]) -> bool:
        ts_reply = self._view(m.TimeSync, frame)
        if ts_reply is None or not _is_int(ts_reply.host_unix_ms, ts_reply.board_t_ms):
            return False
        host_sent_ms, board_t_ms = ts_reply.host_unix_ms, ts_reply.board_t_ms
        sent_mono_ms = self._sync_sent.pop(host_sent_ms, None) if self.mode is LinkMode.LIVE else None
        if sent_mono_ms is None:
            return True  # not ours (another host, from before a reconnect or a clock step): ignore
        recv_ms = host_sent_ms + (self._mono * 1000.0 - sent_mono_ms)
        if self._clock.observe_sync(host_sent_ms, self._clock.peek(board_t_ms), recv_ms):
            self.counters.time_syncs += 1
        return True

    def _view(self, cls: type[m.Message], frame: Frame) -> Any:
        """Typed view of the payload (trailing unknown fields counted), None if it does not fit.

        The common case (a list of exactly the known fields) is built directly; anything else
        goes through `Message.from_payload`, which owns the compatibility rule."""
        payload = frame.payload
        if type(payload) is list and len(payload) == _FIELD_COUNT.get(cls, -1):  # noqa: E721
            try:
                return cls(*payload)
            except TypeError:
                return None
        try:
            return cls.from_payload(payload, self.counters.unknown_fields)
        except m.MessageError:
            return None

    def _payload_ts(self, t_ms: int, frame: Frame, frame_ts: float) -> float:
        """UTC of a time carried in a payload. An event cannot happen after the frame reporting it
        was sent; a later value is from a previous boot's clock (re-sent after a reboot)."""
        unwrapped = self._clock.peek(t_ms % T_MS_MODULO)
        ts = self._clock.to_utc_s(unwrapped)
        return frame_ts if ts > frame_ts else ts

    def _remember_event(self, key: tuple[int, int]) -> None:
        self._stored_events[key] = None
        self._stored_events.move_to_end(key)
        while len(self._stored_events) > EVENT_MEMORY:
            self._stored_events.popitem(last=False)


# Fields per message view, computed once (dataclasses.fields() per frame costs microseconds).
_FIELD_COUNT = {cls: len(dataclasses.fields(cls)) for cls in m.MESSAGE_CLASSES.values()}
_VIB_FIELDS = _FIELD_COUNT[m.Vib]
_STATE_FIELDS = _FIELD_COUNT[m.State]

_HANDLERS = {
    lw.T_HELLO: BoardSession._on_hello,
    lw.T_STATE: BoardSession._on_state,
    lw.T_VIB: BoardSession._on_vib,
    lw.T_STATS: BoardSession._on_stats,
    lw.T_EVENT: BoardSession._on_event,
    lw.T_COUNTERS: BoardSession._on_counters,
    lw.T_HEARTBEAT: BoardSession._on_heartbeat,
    lw.T_ACK: BoardSession._on_ack,
    lw.T_TIME_SYNC: BoardSession._on_time_sync,
}
