"""`CarAnalytics`: the per-car streaming engine that turns observations into upstream outputs.

The car's pipeline (edge_daemon/pipeline.py) calls `feed(obs)` for every observation of the car's
board, in order, and `tick(ts)` about once a second with the current UTC time, so time-based
faults (entrapment, door open too long, a visit that has ended) fire when nothing else happens. `flush(ts)` ends the stream (replay
end, daemon shutdown): the trip waiting for VIB is finished, an open visit and door cycle are
closed at `ts`, and a partial daily record is emitted. Every call returns the outputs it made, in
the order the outbox should store them; each has `kind`, `key` and `to_message()`.

Rules on the inputs are judged only in normal service: board online, inputs known, inspection
off. Entering inspection freezes them (a technician moves the car with the doors open on
purpose); leaving it re-judges them, so a fault the technician fixed clears at the moment normal
service resumed, which is what the repair time measures.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..observations import (
    MOVING,
    BoardBooted,
    BoardEvent,
    BoardEventKind,
    CountersSnapshot,
    FramesLost,
    Inputs,
    InputsChanged,
    JournalRecord,
    LinkState,
    Motion,
    MotionChanged,
    Observation,
    RestStats,
    VibBlock,
)
from .common import iso_utc, local_day
from .config import AnalyticsConfig
from .daily import DailyAccumulator, DailyRecord
from .doors import DoorCycle, DoorTracker
from .faults import FaultBook, FaultEvent, FaultType, ResponseSign
from .journal_fill import JournalFill, Revision
from .leveling import ZoneEdge, edge_position_mm, estimate_leveling
from .maintenance import MaintenanceTracker, MaintenanceVisit
from .ride_quality import RideQuality, TripKinematics, analyse_trip, car_frame, lowpass, speed_profile, still_m
from .trip_rules import TripRules
from .trips import FloorTracker, Trip, edges_of, zone_passes

__all__ = ["CarAnalytics", "Output"]

Output = Trip | FaultEvent | MaintenanceVisit | DailyRecord | DoorCycle

# input bits as plain ints: IntFlag arithmetic is slow and this runs on every observation
_DOOR_CLOSED = int(Inputs.DOOR_CLOSED)
_ZONE_UP = int(Inputs.ZONE_UP)
_ZONE_DN = int(Inputs.ZONE_DN)
_PRESENCE = int(Inputs.PRESENCE)
_INSPECTION = int(Inputs.INSPECTION)
_ALARM_BUTTON = int(Inputs.ALARM_BUTTON)
_MAINS = int(Inputs.MAINS)
_OBSERVATION_TYPES = (
    InputsChanged,
    MotionChanged,
    VibBlock,
    RestStats,
    BoardEvent,
    CountersSnapshot,
    LinkState,
    BoardBooted,
    FramesLost,
    JournalRecord,
)
_REST = int(Motion.REST)
_ACCELERATING = int(Motion.ACCELERATING)
_DECELERATING = int(Motion.DECELERATING)
_GAP_NEAR_S = 1.0  # a seq gap this close before a motion start counts as inside the trip
_UNCALIBRATED = int(Motion.UNCALIBRATED)
_VIB_PRE_S = 1.0  # VIB kept from before the start: the board may pre-trigger its stream
# Travel is measured from a quiet moment at least this long before the board's motion start (it
# recognises motion motion_on_ms, 150 ms, after the car began; a creep starts gently).
_TRAVEL_PRE_S = 0.3
_LEVEL_MATCH_M = 0.3  # integrated travel drifts by centimetres; landings are metres apart
_MAX_CATCHUP_DAYS = 31  # a clock jump further than this does not emit a record per empty day
# Past days whose totals are kept for late facts (the board's journal holds 7 days), their daily
# record re-issued with a higher `revision` when late facts change them.
_PAST_DAYS = 8

# board EVENT kind -> the fault it reports (None: counted only)
_BOARD_FAULTS = {
    BoardEventKind.DOOR_OPEN_WHILE_MOVING: FaultType.MOVING_WITH_DOOR_OPEN,
    BoardEventKind.STOPPED_OUTSIDE_DOOR_ZONE: FaultType.STOPPED_OUTSIDE_DOOR_ZONE,
    BoardEventKind.ALARM_BUTTON_HELD: FaultType.ALARM_BUTTON,
    BoardEventKind.SENSOR_FAULT: FaultType.SENSOR_FAULT,
    BoardEventKind.SAFE_MODE: FaultType.SENSOR_FAULT,
}


@dataclass(slots=True)
class _TripInProgress:
    start_ts: float
    start_up: bool | None
    start_dn: bool | None
    inspection: bool
    zone_changes: list[tuple[float, bool, bool]] = field(default_factory=list)
    end_ts: float | None = None
    arrived: bool = False  # in a door zone entered during this trip (not the one it left)
    frames_lost: bool = False  # the board's frames had a gap while it moved: zone counts incomplete
    open_faults: tuple[FaultType, ...] = ()  # active when it started: a rescue-speed move answers them


@dataclass(frozen=True, slots=True)
class _Rule:
    """A time-based fault on the current inputs: raised after `threshold_s` of `condition`,
    cleared when `holds` (default: the condition itself) stops being true."""

    ftype: FaultType
    condition: Callable[[CarAnalytics], bool]
    threshold_s: Callable[[CarAnalytics], float]
    needs_motion: bool
    holds: Callable[[CarAnalytics], bool] | None = None


class CarAnalytics:
    """Analytics of one car. Not thread-safe: one session task feeds it."""

    def __init__(self, car_id: str, config: AnalyticsConfig | None = None) -> None:
        self.car_id = car_id
        self.config = cfg = config if config is not None else AnalyticsConfig()
        self._faults = FaultBook(car_id, cfg.response_lookback_s)
        self._doors = DoorTracker(car_id, cfg.door_reopen_window_s)
        self._visits = MaintenanceTracker(car_id, cfg.maintenance_join_gap_s, cfg.maintenance_min_s)
        self._floors = FloorTracker(cfg.floor_count, cfg.lowest_floor)
        self._day: DailyAccumulator | None = None
        self._now: float | None = None
        self._inputs: int | None = None
        self._motion: int | None = None
        self._online = True
        # Back from a link gap: the inputs and motion held are from before it, so no rule is judged
        # on them (a car that arrived and stopped unseen is not "moving with the door open") until
        # the session's next InputsChanged says what they are now (it sends one after every gap).
        self._state_stale = False
        self._offline_since: float | None = None
        self._gravity: tuple[int, int, int] | None = None
        self._noise_mg = 0.0  # the sensor's noise at rest (largest axis of the last STATS rms)
        self._trip: _TripInProgress | None = None
        self._gap_ts: float | None = None  # the last FramesLost
        self._pending: deque[_TripInProgress] = deque()
        self._vib: deque[VibBlock] = deque()
        self._vib_until = float("-inf")  # end of the latest VIB sample received
        self._since: dict[FaultType, float] = {}  # rules whose condition holds, since when
        self._uncalibrated_since: float | None = None  # motion 255 reported since (board not calibrated)
        self._trip_rules = TripRules(self._faults, cfg)
        # A fault whose condition ended while a move that started during it awaits its speed
        # verdict (VIB lags the stop), and an entrapment released until the car empties: the
        # clear waits here, keyed by type, with the time it really cleared.
        self._held: dict[FaultType, float] = {}
        self._alarm_presses: deque[float] = deque(maxlen=8)  # alarm button rising edges
        self._presence_off_ts: float | None = None  # presence last went off at
        self._trap_since: float | None = None  # the current entrapment's condition began at
        self._released_at_landing: bool | None = None  # door opened in a door zone (entrapment release)
        self._door_due = False  # a run ended and the door has not opened since (door_fails_to_open)
        # An unwired mains-sense input never reads "present": power loss is judged only once the
        # rail has been seen present, and then on every fall.
        self._mains_wired = False
        self._outage_occupied = False  # someone was inside at some time during the power outage
        self.journal = JournalFill(car_id, cfg)  # what the board's journal tells that the live stream missed
        self._past: dict[int, DailyAccumulator] = {}  # day -> its totals, for late facts
        self._revisions: dict[int, int] = {}  # day -> revision of its daily record last re-issued
        self._late_days: set[int] = set()  # past days late facts changed since their last record
        self._late_fresh = False  # a late fact came since the last tick: more may follow, wait
        self.vib_rejected = 0  # trips whose VIB could not be analysed (nonsense rate, dead sensor)

    # ---------------------------------------------------------------- public API

    def feed(self, obs: Observation) -> list[Output]:
        """Apply one observation; returns the outputs it completed."""
        if type(obs) is VibBlock:
            # The common case (a block per read while the car moves): no rule reads VIB, so only
            # the clock, the buffer and the trips waiting for their samples move.
            done = self._advance(obs.ts_first)
            self._on_vib(obs)
            if not self._pending:
                return done
            out = done + self._emit(self._finish_ready_trips(force=False))
            self.journal.recheck(self._trip, self._pending)
            return out
        if not isinstance(obs, _OBSERVATION_TYPES):
            raise TypeError(f"not an observation: {type(obs).__name__}")
        done = self._advance(obs.ts)
        out: list[Output] = []
        match obs:
            case InputsChanged():
                out += self._on_inputs(obs)
            case MotionChanged():
                out += self._on_motion(obs)
            case VibBlock():
                self._on_vib(obs)
            case BoardEvent():
                out += self._on_board_event(obs)
            case CountersSnapshot():
                self._acc().counters = {
                    k: getattr(obs, k)
                    for k in (
                        "door_cycles",
                        "trips",
                        "run_time_s",
                        "boots",
                        "fifo_overruns",
                        "ring_overruns",
                        "link_drops",
                        "events_dropped",
                    )
                }
            case LinkState():
                out += self._on_link(obs)
            case BoardBooted():
                out += self._on_boot(obs)
            case FramesLost():
                self._gap_ts = obs.ts
                if self._trip is not None:
                    self._trip.frames_lost = True  # a zone pulse may be among them
            case RestStats():
                # What "moving" means scales with the sensor's noise: down at once, up slowly (a
                # window with a door slam or a jumping passenger is not the sensor getting noisier).
                if obs.motion == _REST:
                    rms = float(max(obs.rms_mg))
                    noise = self._noise_mg
                    self._noise_mg = rms if noise == 0 or rms < noise else noise + (rms - noise) / 16
            case JournalRecord():
                same_day, late, revised = self.journal.on_record(obs, self._trip, self._pending, self._day_of_now(),
                                                                 self._visits, self._faults)
                for o in same_day:
                    if isinstance(o, Trip):
                        self._acc().run_s += o.duration_s  # the live path counts it at the stop
                return done + self._emit(same_day) + self._emit_late(late) + self._revise_visits(revised)
        if not isinstance(obs, (VibBlock, RestStats, CountersSnapshot, FramesLost)):  # these change no rule's inputs
            # a state change takes effect at its own time, even if a tick already ran a little past it
            out += self._evaluate(min(obs.ts, self._now_ts()))
        out += self._finish_ready_trips(force=False)
        out += self._release_held(force=False)
        self.journal.recheck(self._trip, self._pending)
        return done + self._emit(out)

    def tick(self, ts: float) -> list[Output]:
        """Time passed without observations (call about once a second)."""
        done = self._advance(ts)
        if self._now is None:
            return done
        out = done + self._emit(self._finish_ready_trips(force=False) + self._release_held(force=False))
        self.journal.recheck(self._trip, self._pending)
        if self._late_days and not self._late_fresh:
            out += self._reissue_late_days()
        self._late_fresh = False
        return out

    def open_visit(self) -> dict[str, Any] | None:
        """The maintenance visit in progress (plain data), which the daemon keeps in its state file."""
        return self._visits.open_visit()

    def restore_open_visit(self, visit: dict[str, Any]) -> None:
        """After a daemon restart: go on with the visit that was in progress (`open_visit`)."""
        self._visits.restore(visit)

    def flush(self, ts: float) -> list[Output]:
        """End of stream at `ts`: close what is open and emit a partial daily record. Only where
        the stream really ends (replay): an open maintenance visit is closed at `ts`."""
        out = self._advance(ts)
        if self._trip is not None and self._trip.end_ts is None:
            self._trip = None  # still moving at the end: no rest-to-rest record to make
        closing = self._finish_ready_trips(force=True)
        closing += self._release_held(force=True)
        self.journal.recheck(None, ())
        closing += self._doors.flush(self._now_ts())
        closing += self._clear_reopen_loop(self._now_ts(), closing)
        closing += self._visits.flush(self._now_ts())
        out += self._emit(closing)
        out += self._reissue_late_days()
        acc = self._acc()
        if self._offline_since is not None:
            acc.offline_s += self._now_ts() - self._offline_since
            self._offline_since = self._now_ts()
        out.append(acc.record(until_ts=self._now_ts()))
        return out

    @property
    def active_faults(self) -> tuple[FaultType, ...]:
        return self._faults.active

    # ---------------------------------------------------------------- state helpers

    def _now_ts(self) -> float:
        assert self._now is not None
        return self._now

    def _day_of_now(self) -> int | None:
        return local_day(self._now, self.config.day_utc_offset_h) if self._now is not None else None

    def _acc(self) -> DailyAccumulator:
        if self._day is None:
            self._day = DailyAccumulator(self.car_id, local_day(self._now_ts(), self.config.day_utc_offset_h))
        return self._day

    def _bit(self, bit: int) -> bool | None:
        return None if self._inputs is None else bool(self._inputs & bit)

    @property
    def _door_closed(self) -> bool:
        return bool(self._bit(_DOOR_CLOSED))

    @property
    def _in_zone(self) -> bool:
        return bool(self._bit(_ZONE_UP)) or bool(self._bit(_ZONE_DN))

    @property
    def _in_service(self) -> bool:
        return self._online and self._inputs is not None and not self._state_stale and not self._bit(_INSPECTION)

    @property
    def _motion_known(self) -> bool:
        return self._motion is not None and self._motion in (_REST, *MOVING)

    # ---------------------------------------------------------------- time

    def _advance(self, ts: float) -> list[Output]:
        """Move the clock to `ts`: fire timers that expired before `ts`, then roll the day.
        The outputs returned are already counted into their day."""
        if self._now is not None and ts <= self._now:
            return []
        out: list[Output] = []
        if self._now is not None:
            out += self._fire_timers(ts)
            out += self._doors.tick(ts)
            out += self._clear_reopen_loop(ts, out)
            out += self._visits.tick(ts)
            out = self._emit(out)
            out += self._roll_days(ts)
        self._now = ts
        return out

    def _roll_days(self, ts: float) -> list[Output]:
        day = local_day(ts, self.config.day_utc_offset_h)
        acc = self._acc()
        out: list[Output] = []
        if day - acc.day > _MAX_CATCHUP_DAYS:
            acc.day = day - 1  # clock jump (first time sync): report the stretch as one day
        while acc.day < day:
            boundary = (acc.day + 1) * 86400 - self.config.day_utc_offset_h * 3600
            if self._offline_since is not None:
                acc.offline_s += boundary - self._offline_since
                self._offline_since = boundary
            out.append(acc.record())
            self._past[acc.day] = acc
            acc = self._day = DailyAccumulator(self.car_id, acc.day + 1)
        for old in [d for d in self._past if d < day - _PAST_DAYS]:
            del self._past[old]
        return out

    # ---------------------------------------------------------------- observations

    def _on_inputs(self, obs: InputsChanged) -> list[Output]:
        prev = self._inputs
        self._inputs = obs.inputs
        self._state_stale = False
        diff = (prev ^ obs.inputs) if prev is not None else 0xFF
        out: list[Output] = []
        zone_bits = _ZONE_UP | _ZONE_DN
        if diff & zone_bits and self._trip is not None and prev is not None:
            self._trip.zone_changes.append((obs.ts, bool(obs.inputs & _ZONE_UP), bool(obs.inputs & _ZONE_DN)))
            now_in = bool(obs.inputs & zone_bits)
            if now_in and not prev & zone_bits:
                self._trip.arrived = True
            elif not now_in:
                self._trip.arrived = False
        # With the previous inputs unknown (the daemon just started) a door found open or an
        # inspection switch found on is no edge: the board's journal has when it really happened.
        if diff & _DOOR_CLOSED and prev is not None:
            if not obs.inputs & _DOOR_CLOSED:
                self.journal.live_door_opened(obs.ts)
            out += self._doors.on_door(obs.ts, bool(obs.inputs & _DOOR_CLOSED), self._floors.floor())
            out += self._check_reopen_loop(obs.ts)
            out += self._clear_reopen_loop(obs.ts, out)
        if diff & _ALARM_BUTTON and obs.inputs & _ALARM_BUTTON:
            self._alarm_presses.append(obs.ts)
        if diff & _PRESENCE and not obs.inputs & _PRESENCE:
            self._presence_off_ts = obs.ts
        if diff & _DOOR_CLOSED and not obs.inputs & _DOOR_CLOSED:
            self._door_due = False
        if obs.inputs & _MAINS:
            self._mains_wired = True
        if obs.inputs & _PRESENCE and self._faults.is_active(FaultType.POWER_LOSS):
            self._outage_occupied = True
        if diff & _INSPECTION:
            if obs.inputs & _INSPECTION and prev is not None:
                self.journal.live_inspection(obs.ts)
            visits, started = self._visits.on_inspection(obs.ts, bool(obs.inputs & _INSPECTION))
            out += visits
            if started:
                self._visits.set_responded(self._faults.on_visit_start(obs.ts))
        return out

    def _on_motion(self, obs: MotionChanged) -> list[Output]:
        prev, self._motion = self._motion, obs.motion
        out: list[Output] = []
        if obs.motion == _UNCALIBRATED:
            if self._uncalibrated_since is None:
                self._uncalibrated_since = obs.ts  # raised by _fire_timers once the grace has run out
        else:
            self._uncalibrated_since = None
            out += self._faults.clear(FaultType.SENSOR_FAULT, obs.ts, "uncalibrated")
        moving, was_moving = obs.motion in MOVING, prev in MOVING
        if moving and not was_moving:
            # First heard (prev None, after a daemon restart) mid-run, past accelerating: a trip whose
            # start nobody saw has no start time or floor count to report.
            if prev is not None or obs.motion == _ACCELERATING:
                self.journal.live_trip(obs.ts)
                self._trip = _TripInProgress(
                    obs.ts, self._bit(_ZONE_UP), self._bit(_ZONE_DN), bool(self._bit(_INSPECTION)),
                    # frames lost just before the start: the car may have left earlier, past a pulse
                    frames_lost=self._gap_ts is not None and self._gap_ts >= obs.ts - _GAP_NEAR_S,
                    open_faults=self._faults.active,
                )
            out += self._doors.on_motion_start(obs.ts)
            out += self._clear_reopen_loop(obs.ts, out)
        elif obs.motion == _REST and self._trip is not None:
            trip, self._trip = self._trip, None
            trip.end_ts = obs.ts
            duration = obs.ts - trip.start_ts
            self._acc().run_s += duration
            self._pending.append(trip)  # a short one too: its VIB tells a re-levelling from a jump
            if duration >= self.config.trip_min_s:
                # due to open: a run in service that stopped with the door shut (a re-levelling with
                # the door open, or an inspection run, owes no opening)
                self._door_due = not trip.inspection and self._door_closed
        return out

    def _on_vib(self, block: VibBlock) -> None:
        if block.gravity is not None:
            self._gravity = block.gravity
        vib = self._vib
        vib.append(block)
        self._vib_until = max(self._vib_until, block.ts_end)
        now = self._now_ts()
        oldest = self._trip.start_ts if self._trip is not None else None
        for t in self._pending:
            if oldest is None or t.start_ts < oldest:
                oldest = t.start_ts
        horizon = oldest - _VIB_PRE_S if oldest is not None else now - _VIB_PRE_S - 1.0
        keep_from = max(now - self.config.vib_buffer_s, min(horizon, block.ts_first))
        while vib and vib[0].ts_end < keep_from:
            vib.popleft()

    def _on_board_event(self, obs: BoardEvent) -> list[Output]:
        kind = BoardEventKind.convert(obs.kind)
        ftype = _BOARD_FAULTS.get(kind) if kind is not None else None
        if ftype is None:
            return []
        if obs.state:
            detail = {"board_event_id": obs.event_id, "board_kind": kind.name.lower()}
            return self._faults.raise_(ftype, obs.ts, "board", **detail)
        return self._faults.clear(ftype, obs.ts, "board", board_event_id=obs.event_id)

    def _on_link(self, obs: LinkState) -> list[Output]:
        if obs.online == self._online:
            return []
        self._online = obs.online
        if not obs.online:
            self._offline_since = obs.ts
            return self._faults.raise_(FaultType.BOARD_OFFLINE, obs.ts)
        if self._offline_since is not None:
            self._acc().offline_s += max(0.0, obs.ts - self._offline_since)
            self._offline_since = None
        self._floors.reset()  # trips while the link was down went unseen: re-anchor
        self._state_stale = True
        return self._faults.clear(FaultType.BOARD_OFFLINE, obs.ts)

    def _on_boot(self, obs: BoardBooted) -> list[Output]:
        self._acc().boots += 1
        # Inputs and motion stay as last reported: the session reports changes against the last
        # values it saw, across boots too, so forgetting them here would leave them unknown.
        self._trip = None  # a trip cut by a reboot has no trustworthy end
        self._floors.reset()
        if obs.gravity is not None:
            self._gravity = obs.gravity
        return self._faults.clear_source_everywhere("board", obs.ts)

    # ---------------------------------------------------------------- rules on the inputs

    _RULES: tuple[_Rule, ...] = ()  # filled below the class (they reference its properties)

    def _evaluate(self, at: float) -> list[Output]:
        """Re-judge every rule after a change at `at` (conditions only change on observations).
        A rule is not judged (None) outside normal service; a fault the host raised is held by its
        `holds` condition until that stops, not by the condition that raised it."""
        out: list[Output] = []
        # inputs, motion and link do not change while the rules are judged (faults may)
        in_service = self._in_service
        motion_known = self._motion_known
        for rule in self._RULES:
            if not in_service or (rule.needs_motion and not motion_known):
                holds = None
            elif rule.holds is not None and self._faults.has_source(rule.ftype, "host"):
                holds = rule.holds(self)
            else:
                holds = rule.condition(self)
            if holds is None:
                self._since.pop(rule.ftype, None)  # frozen; a running timer starts over later
                continue
            if holds:
                if self._since.get(rule.ftype) is None:
                    self._since[rule.ftype] = at
            else:
                self._since.pop(rule.ftype, None)
                out += self._clear_rule(rule.ftype, at)
        out += self._fire_timers(self._now_ts())
        return out

    # ---------------------------------------------------------------- response and release

    def _awaits_move_verdict(self, ftype: FaultType) -> bool:
        """A move that started while `ftype` was open is not judged yet (rescue speed or not)."""
        trip = self._trip
        if trip is not None and ftype in trip.open_faults:
            return True
        return any(ftype in t.open_faults for t in self._pending)

    def _clear_rule(self, ftype: FaultType, at: float) -> list[Output]:
        """A host rule let go of `ftype` at `at`: clear it, or hold the clear while its response or
        release is still being learnt (see `_release_held`)."""
        if not self._faults.has_source(ftype, "host"):
            return []
        if ftype is FaultType.ENTRAPMENT:
            if ftype not in self._held:
                self._held[ftype] = at
                self._released_at_landing = self._in_zone and not self._door_closed
            return []
        if ftype in self._held or self._awaits_move_verdict(ftype):
            self._held.setdefault(ftype, at)
            return []
        return self._faults.clear(ftype, at, **self._clear_detail(ftype))

    def _clear_detail(self, ftype: FaultType) -> dict[str, Any]:
        """What a cleared message adds: whether anyone was inside during a power outage."""
        return {"occupied": self._outage_occupied} if ftype is FaultType.POWER_LOSS else {}

    def _release_held(self, force: bool) -> list[Output]:
        """Send the clears held back: once the moves that began during the fault are judged, and for
        an entrapment once the car has emptied (presence off) or `release_empty_s` has passed."""
        if not self._held:
            return []
        out: list[Output] = []
        now = self._now_ts()
        for ftype, at in list(self._held.items()):
            if not force and self._awaits_move_verdict(ftype):
                continue
            detail = self._clear_detail(ftype)
            if ftype is FaultType.ENTRAPMENT:
                emptied = self._presence_off_ts if not self._bit(_PRESENCE) else None
                if emptied is not None and emptied < at:
                    emptied = at  # presence had already gone: the door opening released the car
                if emptied is None and not force and now - at < self.config.release_empty_s:
                    continue
                since = self._trap_since if self._trap_since is not None else at
                alarms = [p for p in self._alarm_presses if since <= p <= at]
                detail = {
                    "release_ts": iso_utc(at),
                    "released_at_landing": self._released_at_landing,
                    "emptied_ts": iso_utc(emptied) if emptied is not None else None,
                    "alarm_ts": iso_utc(alarms[0]) if alarms else None,
                }
                self._trap_since = None
            del self._held[ftype]
            out += self._faults.clear(ftype, at, **detail)
        return out

    def _fire_timers(self, now: float) -> list[Output]:
        out: list[Output] = []
        since = self._uncalibrated_since
        if since is not None and now - since >= self.config.uncalibrated_grace_s:
            out += self._faults.raise_(
                FaultType.SENSOR_FAULT, since + self.config.uncalibrated_grace_s, "uncalibrated", reason="uncalibrated"
            )
        if not self._since:
            return out  # no rule's condition is running (the usual case)
        for rule in self._RULES:
            since = self._since.get(rule.ftype)
            if since is None or self._faults.has_source(rule.ftype, "host"):
                continue
            threshold = rule.threshold_s(self)
            if now - since >= threshold:
                floor = self._floors.floor()
                detail = {"since_ts": iso_utc(since), "in_door_zone": self._in_zone, "floor": floor,
                          "floor_label": self.config.floor_label(floor)}
                if rule.ftype is FaultType.ENTRAPMENT and not self._faults.is_active(rule.ftype):
                    self._trap_since = since
                if rule.ftype is FaultType.POWER_LOSS and not self._faults.is_active(rule.ftype):
                    self._outage_occupied = bool(self._bit(_PRESENCE))
                    detail["occupied"] = self._outage_occupied
                out += self._faults.raise_(rule.ftype, since + threshold, "host", **detail)
        return out

    def _check_reopen_loop(self, ts: float) -> list[Output]:
        if self._doors.reopenings >= self.config.door_reopen_loop_count:
            return self._faults.raise_(FaultType.DOOR_REOPEN_LOOP, ts, reopenings=self._doors.reopenings)
        return []

    def _clear_reopen_loop(self, ts: float, produced: list[Output]) -> list[Output]:
        """The loop ends with its door cycle."""
        for o in produced:
            if isinstance(o, DoorCycle) and self._faults.is_active(FaultType.DOOR_REOPEN_LOOP):
                return self._faults.clear(FaultType.DOOR_REOPEN_LOOP, o.close_ts, reopenings=o.reopenings)
        return []

    # ---------------------------------------------------------------- trips

    def _finish_ready_trips(self, force: bool) -> list[Output]:
        if not self._pending:
            return []
        out: list[Output] = []
        now = self._now_ts()
        vib_until = self._vib_until
        while self._pending:
            trip = self._pending[0]
            assert trip.end_ts is not None
            ready = vib_until >= trip.end_ts + self.config.vib_post_s or now >= trip.end_ts + self.config.vib_wait_s
            if not (ready or force):
                break
            self._pending.popleft()
            out += self._finish_trip(trip)
        return out

    def _trip_samples(self, trip: _TripInProgress) -> tuple[np.ndarray, VibBlock, float] | None:
        """Contiguous raw samples covering the trip rest to rest, or None (gap, or not covered)."""
        assert trip.end_ts is not None
        lo, hi = trip.start_ts - _VIB_PRE_S, trip.end_ts + self.config.vib_post_s
        blocks = [b for b in self._vib if b.ts_end > lo and b.ts_first < hi and len(b.samples)]
        # The board streams VIB only while moving, so a trip's first block follows a gap; a run
        # that starts there (or later, up to 1 s into the trip) is fine, a gap inside it is not.
        starts = [i for i, b in enumerate(blocks) if b.gap_before and b.ts_first <= trip.start_ts + 1.0]
        if starts:
            blocks = blocks[starts[-1] :]
        if not blocks:
            return None
        first = blocks[0]
        for b in blocks[1:]:
            if b.gap_before or b.rate_hz != first.rate_hz or b.lsb_per_g != first.lsb_per_g:
                return None
        if first.ts_first > trip.start_ts + 1.0 or blocks[-1].ts_end < trip.end_ts:
            return None
        samples = np.concatenate([b.samples for b in blocks]).reshape(-1, 3)
        i0 = max(0, round((lo - first.ts_first) * first.rate_hz))
        i1 = min(len(samples), round((hi - first.ts_first) * first.rate_hz))
        return samples[i0:i1], first, first.ts_first + i0 / first.rate_hz

    def _travelled(self, trip: _TripInProgress) -> bool | None:
        """Did a movement take the car anywhere, by its VIB? The speed is integrated from the
        quietest 50 ms (least mean |vertical acceleration|) between `_VIB_PRE_S` and `_TRAVEL_PRE_S`
        before the board's start (it recognises motion 150 ms late; a jump just before this one may
        still be under way half a second before it) to the board's stop (after 300 ms of quiet),
        pinned to zero at both ends, and compared with what the noise integrates to (`still_m`).
        None: the VIB does not cover it, or has no gravity in it."""
        got = self._trip_samples(trip)
        if got is None:
            return None
        samples, first, t0 = got
        rate_hz = first.rate_hz
        if rate_hz <= 0 or first.lsb_per_g <= 0:
            return None
        assert trip.end_ts is not None
        samples = samples[: max(0, round((trip.end_ts - t0) * rate_hz))]
        span = max(1, round(0.05 * rate_hz))
        # the quiet start is before this; VIB restarted later than that (after a gap in the stream):
        # from its first 50 ms, judged on what there is
        latest = max(span, round((trip.start_ts - _TRAVEL_PRE_S - t0) * rate_hz))
        if len(samples) - latest < 2:
            return None
        try:
            car = car_frame(samples, first.lsb_per_g, first.gravity or self._gravity)
        except ValueError:
            return None
        a_z = lowpass(car[:, 2], rate_hz, self.config.accel_lowpass_hz)
        activity = np.convolve(np.abs(a_z[:latest]), np.ones(span) / span, mode="valid")
        i0 = int(np.argmin(activity)) + span // 2
        speed = speed_profile(a_z[i0:], rate_hz)
        travel_m = abs(float(np.trapezoid(speed, dx=1.0 / rate_hz)))
        return travel_m >= still_m(self._noise_mg, rate_hz, len(speed) / rate_hz)

    def _relevelled(self, trip: _TripInProgress) -> bool:
        """Did a movement that stayed in its landing's door zone re-level the car? Yes if a zone
        sensor changed, or if its VIB integrates to travel (`_travelled`). A passenger's jump
        bounces the car on its ropes and brings it back: no edge, no travel. Without VIB (not
        streamed, a gap) or with frames lost, nothing proves a jump: it counts."""
        if trip.zone_changes or trip.frames_lost:
            return True
        return self._travelled(trip) is not False

    def _finish_trip(self, trip: _TripInProgress) -> list[Output]:
        cfg = self.config
        assert trip.end_ts is not None
        out: list[Output] = []
        if trip.end_ts - trip.start_ts < cfg.trip_min_s:  # a re-levelling, or a passenger's jump
            if self._relevelled(trip):
                self._acc().relevels += 1
            return out
        rq: RideQuality | None = None
        kin: TripKinematics | None = None
        got = self._trip_samples(trip)
        if got is not None:
            samples, first, t0 = got
            gravity = first.gravity or self._gravity
            if first.rate_hz > 0 and first.lsb_per_g > 0 and len(samples) >= first.rate_hz:
                try:
                    span = (trip.start_ts, trip.end_ts)
                    rq, kin = analyse_trip(samples, first.rate_hz, first.lsb_per_g, gravity, t0, cfg, span,
                                           self._noise_mg)
                except ValueError:  # e.g. an all-zero record (sensor dead): the trip still counts
                    self.vib_rejected += 1
            else:
                self.vib_rejected += 1
        start_up, start_dn = bool(trip.start_up), bool(trip.start_dn)
        passes = zone_passes(start_up, start_dn, trip.zone_changes)
        direction = passes.direction or (kin.direction if kin is not None else 0)
        end_up, end_dn = (trip.zone_changes[-1][1:] if trip.zone_changes else (start_up, start_dn))
        zones_known = trip.start_up is not None and not trip.frames_lost
        entries = passes.entries if zones_known else None
        if entries is None and kin is not None and not trip.inspection:
            entries = self._entries_from_levels(trip, kin, direction, start_up or start_dn, end_up or end_dn)
        update = self._floors.on_trip(direction, entries, start_up or start_dn, end_up or end_dn)
        edges = edges_of(start_up, start_dn, trip.zone_changes)
        leveling = estimate_leveling(
            trip.end_ts,
            end_up if zones_known else None,
            end_dn if zones_known else None,
            edges[-1] if edges else None,
            kin,
            cfg,
        )
        relevel = entries == 0 and (start_up or start_dn) and (end_up or end_dn)
        if (
            trip.open_faults
            and not trip.inspection  # an inspection run answered the fault already (the visit)
            and not relevel  # the controller re-levelling by itself answers nothing
            and kin is not None
            and kin.peak_speed_mps <= cfg.rescue_speed_max_mps
        ):
            self._faults.respond(trip.start_ts, ResponseSign.RESCUE_MOVE, trip.open_faults)
        out += self._overtravel(trip, direction, end_up or end_dn, edges[-1] if edges else None, kin)
        if update.lost:
            out += self._faults.raise_(FaultType.FLOOR_POSITION_LOST, trip.end_ts, trip_start_ts=iso_utc(trip.start_ts))
        elif update.anchored:
            out += self._faults.clear(FaultType.FLOOR_POSITION_LOST, trip.end_ts)
        if trip.inspection:
            # inspection runs creep at 0.3 m/s and may not reach a landing: no zone-sensor verdict
            self._visits.on_inspection_run()
            return out
        if trip.zone_changes or not trip.frames_lost:  # no pulse seen proves nothing if frames were lost
            out += self._trip_rules.zone_sensors(trip.start_ts, trip.end_ts, len(trip.zone_changes))
        if relevel:
            if self._relevelled(trip):  # never left the landing's door zone: not a trip
                self._acc().relevels += 1
            return out
        peak = kin.peak_speed_mps if kin is not None else None
        distance = abs(kin.displacement_m(trip.start_ts, trip.end_ts)) if kin is not None else None
        result = Trip(
            car_id=self.car_id,
            start_ts=trip.start_ts,
            end_ts=trip.end_ts,
            direction={1: "up", -1: "down"}.get(direction),
            floors=entries,
            from_floor=update.from_floor,
            to_floor=update.to_floor,
            peak_speed_mps=peak,
            distance_m=distance,
            ride_quality=rq,
            leveling=leveling,
            from_label=cfg.floor_label(update.from_floor),
            to_label=cfg.floor_label(update.to_floor),
        )
        out.append(result)
        if kin is not None:
            out += self._trip_rules.overspeed(kin)
        if rq is not None and rq.judged:
            out += self._trip_rules.vibration(trip.start_ts, rq)
        out += self._trip_rules.leveling(leveling.status, trip.end_ts, leveling.offset_mm)
        return out

    def _entries_from_levels(
        self, trip: _TripInProgress, kin: TripKinematics, direction: int, started_in_zone: bool, ended_in_zone: bool
    ) -> int | None:
        """Landings passed, from the integrated travel and the car's landing levels, for a trip whose
        zone pulses were lost: the landing nearest to where the travel ends, if near enough."""
        levels = self.config.floor_levels_m
        start = self._floors.floor()
        assert trip.end_ts is not None
        if levels is None or start is None or not (started_in_zone and ended_in_zone):
            return None
        i0 = start - self.config.lowest_floor
        target = levels[i0] + kin.displacement_m(trip.start_ts, trip.end_ts)
        i1 = min(range(len(levels)), key=lambda i: abs(levels[i] - target))
        if abs(levels[i1] - target) > _LEVEL_MATCH_M or i1 == i0 or (i1 > i0) != (direction > 0):
            return None
        return abs(i1 - i0)

    def _overtravel(
        self, trip: _TripInProgress, direction: int, ended_in_zone: bool, last_edge: ZoneEdge | None,
        kin: TripKinematics | None,
    ) -> list[Output]:
        """冲顶/蹲底: the anchored car stopped beyond a terminal landing, outside its door zone, by
        more than `overtravel_mm`. Leaving the vane already proves (vane + sensor spacing) / 2; past
        that the distance is the last zone edge's position plus the travel integrated from it."""
        side = self._floors.beyond_terminal()
        assert trip.end_ts is not None
        if ended_in_zone or side == 0 or side != direction or trip.inspection:
            return []
        cfg = self.config
        proven_mm = (cfg.vane_length_mm + cfg.zone_sensor_spacing_mm) / 2
        past_mm: float | None = None
        if last_edge is not None and kin is not None and last_edge.ts <= trip.end_ts:
            y = edge_position_mm(last_edge, direction > 0, cfg) + kin.displacement_m(last_edge.ts, trip.end_ts) * 1000
            past_mm = max(abs(y), proven_mm)
        if (past_mm if past_mm is not None else proven_mm) <= cfg.overtravel_mm:
            return []
        ftype = FaultType.OVERTRAVEL_TOP if side > 0 else FaultType.OVERTRAVEL_BOTTOM
        distance = round(past_mm, 1) if past_mm is not None else None
        return self._faults.raise_(ftype, trip.end_ts, "host", past_landing_mm=distance,
                                   at_least_mm=round(proven_mm, 1) if past_mm is None else None)

    # ---------------------------------------------------------------- accounting

    def _emit_late(self, outputs: list[Output]) -> list[Output]:
        """Facts of a past day (from the board's journal): counted into that day's totals, whose
        record is re-issued once the late facts stop coming (`tick`)."""
        shown: list[Output] = []
        for o in outputs:
            start = o.open_ts if isinstance(o, DoorCycle) else o.raised_ts if isinstance(o, FaultEvent) else o.start_ts
            day = local_day(start, self.config.day_utc_offset_h)
            acc = self._past.get(day)
            if acc is None:  # a day this daemon did not watch (it was down): its totals start here
                acc = self._past[day] = DailyAccumulator(self.car_id, day)
            if isinstance(o, Trip):
                acc.add_trip(o)
                acc.run_s += o.duration_s
            elif isinstance(o, MaintenanceVisit):
                acc.add_visit(o)
                self.journal.issued_visit(o)
            elif isinstance(o, FaultEvent):
                acc.add_fault(o)
                self.journal.fault_raised(o)
            elif isinstance(o, DoorCycle):
                acc.add_door_cycle(o)
                if not self.config.emit_door_cycles:
                    continue
            self._late_days.add(day)
            self._late_fresh = True
            shown.append(o)
        return shown

    def _revise_visits(self, revised: list[Revision]) -> list[Output]:
        """Visits a late record changed, issued again: the day each began counts the new length
        (its daily record is re-issued too if that day is past)."""
        out: list[Output] = []
        for old, new in revised:
            for visit, sign in ((old, -1), (new, 1)):
                day = local_day(visit.start_ts, self.config.day_utc_offset_h)
                acc = self._day if self._day is not None and self._day.day == day else self._past.get(day)
                if acc is None:
                    continue  # a day no longer kept
                acc.visits += sign
                acc.maintenance_s += sign * visit.duration_s
                if acc is not self._day:
                    self._late_days.add(day)
                    self._late_fresh = True
            out.append(new)
        return out

    def _reissue_late_days(self) -> list[Output]:
        """The daily records of past days late facts changed: same id (key), a higher revision."""
        out: list[Output] = []
        for day in sorted(self._late_days):
            acc = self._past.get(day)
            if acc is None:
                continue
            revision = self._revisions.get(day, 0) + 1
            self._revisions[day] = revision
            out.append(dataclasses.replace(acc.record(), revision=revision))
        self._late_days.clear()
        return out

    def _emit(self, outputs: list[Output]) -> list[Output]:
        """Count each output into the day in progress; door cycles go upstream only on request."""
        shown: list[Output] = []
        for o in outputs:
            if isinstance(o, Trip):
                self._acc().add_trip(o)
            elif isinstance(o, FaultEvent):
                self._acc().add_fault(o)
                self.journal.fault_raised(o)
            elif isinstance(o, MaintenanceVisit):
                self._acc().add_visit(o)
                self.journal.issued_visit(o)
            elif isinstance(o, DoorCycle):
                self._acc().add_door_cycle(o)
                if not self.config.emit_door_cycles:
                    continue
            shown.append(o)
        return shown


def _entrapment(car: CarAnalytics) -> bool:
    if car._motion != _REST or not car._door_closed:
        return False
    if car.config.require_presence:
        return bool(car._bit(_PRESENCE))
    return not car._in_zone  # without a presence sensor only a car between floors can be judged


def _moving_with_door_open(car: CarAnalytics) -> bool:
    if car._motion not in MOVING or car._door_closed:
        return False
    # Doors may open in advance once the car has arrived in the next landing's door zone (GB 7588
    # 7.7.2.2), and the board reports rest a few hundred ms after the stop; leaving a landing with
    # the doors open (unintended movement) is never excused. But a car still in the door zone it
    # started in, with no zone edge since, has not left it (a passenger jumping makes the board
    # report motion): the board, which integrates the displacement, raises its EVENT once it has.
    trip = car._trip
    if car._in_zone and trip is not None and not trip.zone_changes:
        return False
    return not (car._in_zone and trip is not None and trip.arrived)


def _door_fails_to_open(car: CarAnalytics) -> bool:
    """A run ended level at a landing and the door stays shut on someone inside."""
    if not car._door_due or car._motion != _REST or not car._door_closed or not car._bit(_PRESENCE):
        return False
    return bool(car._bit(_ZONE_UP)) and bool(car._bit(_ZONE_DN))


def _still_trapped(car: CarAnalytics) -> bool:
    """Trapped until released: the door opens (or the car is seen empty), not when it moves."""
    return car._door_closed and (bool(car._bit(_PRESENCE)) or not car.config.require_presence)


CarAnalytics._RULES = (
    _Rule(
        FaultType.ENTRAPMENT,
        _entrapment,
        lambda c: c.config.entrapment_at_floor_s if c._in_zone else c.config.entrapment_outside_zone_s,
        True,
        _still_trapped,
    ),
    _Rule(
        FaultType.STOPPED_OUTSIDE_DOOR_ZONE,
        lambda c: c._motion == _REST and not c._in_zone,
        lambda c: c.config.stopped_outside_zone_s,
        True,
        lambda c: not c._in_zone,  # cleared once the car is back in a door zone
    ),
    _Rule(
        FaultType.MOVING_WITH_DOOR_OPEN,
        _moving_with_door_open,
        lambda c: c.config.moving_door_open_s,
        True,
        lambda c: not c._door_closed and c._motion != _REST,
    ),
    _Rule(FaultType.DOOR_OPEN_TOO_LONG, lambda c: not c._door_closed, lambda c: c.config.door_open_too_long_s, False),
    _Rule(
        FaultType.ALARM_BUTTON,
        lambda c: bool(c._bit(_ALARM_BUTTON)),
        lambda c: c.config.alarm_button_hold_s,
        False,
    ),
    _Rule(
        FaultType.DOOR_FAILS_TO_OPEN,
        _door_fails_to_open,
        lambda c: c.config.door_open_fail_s,
        True,
        _still_trapped,
    ),
    _Rule(
        FaultType.POWER_LOSS,
        lambda c: c._mains_wired and not c._bit(_MAINS),
        lambda c: c.config.power_loss_s,
        False,
    ),
    # raised per trip (`_overtravel`); cleared once the car is back in a door zone in normal service
    _Rule(FaultType.OVERTRAVEL_TOP, lambda c: False, lambda c: 0.0, True, lambda c: not c._in_zone),
    _Rule(FaultType.OVERTRAVEL_BOTTOM, lambda c: False, lambda c: 0.0, True, lambda c: not c._in_zone),
)
