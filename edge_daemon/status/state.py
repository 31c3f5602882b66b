"""What the status page shows, kept up to date by the daemon: one `LiveState` for all cars.

The daemon owns the pipeline; the status page only reads. So the daemon calls
`live.apply(car, item)` with everything it already has in hand -- each observation the session
emits and each output the analytics returns -- and `live.board_status(car, session.status())`
on its status tick. The server reads `snapshot()` (plain JSON) and `trip_trace()` and waits on
`wait_changed()` to push updates. No I/O and no threads here, so a test can feed a scenario and
look at the snapshot, and the daemon's loop never waits for a browser.

Everything is bounded: the last `trips_kept` trips and `traces_kept` vibration traces per car,
`vib_buffer_s` of raw samples per car (400 Hz x 3 axes x int16 = 2.4 kB/s, 290 kB for 120 s).

Ages shown on the page ("3 min ago") are relative to `data_ts`, the newest observation time, not
the wall clock, so a replay or a sped-up demo reads the same as a live car; times of day are the
site's local time (`utc_offset_h`, the cars' `day_utc_offset_h`), labelled, whatever the
browser's zone.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from liftwatch.edge_daemon.analytics.common import ts_ms
from liftwatch.edge_daemon.analytics.config import AnalyticsConfig
from liftwatch.edge_daemon.analytics.doors import DoorCycle
from liftwatch.edge_daemon.analytics.faults import FaultEvent, FaultType
from liftwatch.edge_daemon.analytics.maintenance import MaintenanceVisit
from liftwatch.edge_daemon.analytics.trips import Trip
from liftwatch.edge_daemon.observations import (
    BoardBooted,
    BoardEvent,
    CountersSnapshot,
    Inputs,
    InputsChanged,
    LinkState,
    Motion,
    MotionChanged,
    RestStats,
    VibBlock,
)
from liftwatch.edge_daemon.status.trace import TraceSource, TripTrace, cut_trace

__all__ = ["FAULT_SEVERITY", "Attention", "LiveState", "TripTrace"]

# Door open -> closed -> open again within this is a reopening (same rule as analytics' default).
_REOPEN_WINDOW_S = 4.0
# Enough door cycles for stable percentiles, small enough to forget last week's broken closer.
_DOOR_CYCLES_KEPT = 200
_FAULTS_CLEARED_KEPT = 20


class Attention:
    """Levels of the fleet view, most urgent first; the int orders the cars."""

    CRITICAL = "critical"  # people may be at risk now: entrapment, moving with the door open, alarm
    FAULT = "fault"  # car out of normal service or unobservable
    WARNING = "warning"  # degrading: vibration, leveling, door trouble
    MAINTENANCE = "maintenance"  # technician on site (inspection switch on)
    OK = "ok"
    RANK: ClassVar[dict[str, int]] = {CRITICAL: 4, FAULT: 3, WARNING: 2, MAINTENANCE: 1, OK: 0}


FAULT_SEVERITY: dict[str, str] = {
    FaultType.ENTRAPMENT.value: Attention.CRITICAL,
    FaultType.MOVING_WITH_DOOR_OPEN.value: Attention.CRITICAL,
    FaultType.OVERSPEED.value: Attention.CRITICAL,
    FaultType.ALARM_BUTTON.value: Attention.CRITICAL,
    FaultType.STOPPED_OUTSIDE_DOOR_ZONE.value: Attention.FAULT,
    FaultType.BOARD_OFFLINE.value: Attention.FAULT,
    FaultType.SENSOR_FAULT.value: Attention.FAULT,
    FaultType.FLOOR_POSITION_LOST.value: Attention.WARNING,
    FaultType.ABNORMAL_VIBRATION.value: Attention.WARNING,
    FaultType.LEVELING_FAULT.value: Attention.WARNING,
    FaultType.DOOR_OPEN_TOO_LONG.value: Attention.WARNING,
    FaultType.DOOR_REOPEN_LOOP.value: Attention.WARNING,
    FaultType.OVERTRAVEL_TOP.value: Attention.CRITICAL,
    FaultType.OVERTRAVEL_BOTTOM.value: Attention.CRITICAL,
    FaultType.DOOR_FAILS_TO_OPEN.value: Attention.CRITICAL,
    FaultType.POWER_LOSS.value: Attention.FAULT,
}


@dataclass(slots=True)
class _Car:
    """Everything kept for one car; mutated only through LiveState.apply()."""

    car: str
    analytics: AnalyticsConfig
    board_id: str = ""
    # live state
    inputs: int | None = None
    motion: int | None = None
    floor: int | None = None
    floor_label: str | None = None  # the landing's name from the car's config (B1, G, M...)
    last_ts: float | None = None
    online: bool | None = None
    # faults
    open_faults: dict[str, FaultEvent] = field(default_factory=dict)
    cleared_faults: deque = field(default_factory=lambda: deque(maxlen=_FAULTS_CLEARED_KEPT))
    board_events: dict[int, BoardEvent] = field(default_factory=dict)  # raised board EVENTs by kind
    # trips
    trips: deque = field(default_factory=deque)
    traces: dict[int, TraceSource] = field(default_factory=dict)
    vib: deque = field(default_factory=deque)
    trips_total: int = 0
    # doors
    door_open_ts: float | None = None
    door_last_close_ts: float | None = None
    door_open_s: deque = field(default_factory=lambda: deque(maxlen=_DOOR_CYCLES_KEPT))
    door_cycles: int = 0
    door_reopenings: int = 0
    # maintenance
    last_visit: MaintenanceVisit | None = None
    inspection_since: float | None = None
    # board health
    hello: BoardBooted | None = None
    counters: CountersSnapshot | None = None
    session: dict[str, Any] = field(default_factory=dict)
    link_window: deque = field(default_factory=lambda: deque(maxlen=12))  # (frames, lost) per status tick
    rest: RestStats | None = None
    daily: dict[str, Any] | None = None


class LiveState:
    """Per-car live picture for the status page, fed by the daemon (see module docstring).

    Wiring, in the daemon's board task and analytics loop (all on the event loop):
        live = LiveState(site=cfg.site)
        live.add_car(board.car, board_id=board.board_id, analytics=board.analytics)  # per [[boards]]
        for obs in session.on_frame(frame, now):  live.apply(board.car, obs)         # before analytics
        for out in car_analytics.feed(obs):      live.apply(board.car, out)          # Trip, FaultEvent, ...
        live.board_status(board.car, session.status())                               # each status tick
        live.daemon_status({"outbox": outbox.stats().to_status()["outbox"], "broker": publisher.state.value})
    """

    def __init__(
        self,
        site: str = "",
        *,
        trips_kept: int = 20,
        traces_kept: int = 10,
        vib_buffer_s: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.site = site
        self.trips_kept = trips_kept
        self.traces_kept = traces_kept
        self.vib_buffer_s = vib_buffer_s
        self._clock = clock
        self._cars: dict[str, _Car] = {}
        self._daemon: dict[str, Any] = {}
        self.version = 0
        self.unknown_items = 0  # items apply() did not recognise (a newer analytics output)
        self._changed = asyncio.Event()
        self._data_ts: float | None = None

    # -- feeding ----------------------------------------------------------------------------

    def add_car(self, car: str, *, board_id: str = "", analytics: AnalyticsConfig | None = None) -> None:
        """Declare a configured car, so it shows (as 'no data yet') before its board speaks."""
        if car not in self._cars:
            self._cars[car] = _Car(car=car, analytics=analytics or AnalyticsConfig(), board_id=board_id)
            self._bump()

    def apply(self, car: str, item: object) -> None:
        """Take one session observation or analytics output for `car`. Unknown items are counted."""
        c = self._cars.get(car)
        if c is None:
            self.add_car(car)
            c = self._cars[car]
        ts = getattr(item, "ts", None)
        if isinstance(item, InputsChanged):
            self._on_inputs(c, item)
        elif isinstance(item, MotionChanged):
            c.motion = item.motion
        elif isinstance(item, VibBlock):
            self._on_vib(c, item)
            self._note_ts(c, item.ts_end)
            return  # VIB alone changes nothing visible: no page update per block
        elif isinstance(item, RestStats):
            c.rest = item
            c.motion = item.motion if c.motion is None else c.motion
        elif isinstance(item, BoardEvent):
            if item.state:
                c.board_events[item.kind] = item
            else:
                c.board_events.pop(item.kind, None)
        elif isinstance(item, CountersSnapshot):
            c.counters = item
        elif isinstance(item, LinkState):
            c.online = item.online
        elif isinstance(item, BoardBooted):
            c.hello = item
            c.inputs = None  # the board's door and motion state start over (observations.py)
            c.motion = None
            c.online = True
        elif isinstance(item, Trip):
            self._on_trip(c, item)
            ts = item.end_ts
        elif isinstance(item, FaultEvent):
            if item.state == "raised":
                c.open_faults[item.type.value] = item
            else:
                c.open_faults.pop(item.type.value, None)
                c.cleared_faults.appendleft(item)
            ts = item.event_ts
        elif isinstance(item, MaintenanceVisit):
            c.last_visit = item
            ts = item.end_ts
        elif isinstance(item, DoorCycle):
            ts = item.close_ts  # door statistics come from the inputs themselves (same facts)
        elif getattr(item, "kind", None) == "daily" and hasattr(item, "to_message"):
            c.daily = {"day": getattr(item, "day", None), **item.to_message()}
            ts = None
        else:
            self.unknown_items += 1
            return
        if isinstance(ts, (int, float)):
            self._note_ts(c, float(ts))
        self._bump()

    def board_status(self, car: str, status: Mapping[str, Any]) -> None:
        """The session's `status()` dict: firmware, heartbeat (heap), frame and drop counters."""
        c = self._cars.get(car)
        if c is None:
            self.add_car(car)
            c = self._cars[car]
        counters = status.get("counters") or {}
        frames, lost = int(counters.get("frames", 0)), int(counters.get("lost_frames", 0))
        if not c.link_window or c.link_window[-1] != (frames, lost):
            c.link_window.append((frames, lost))
        c.session = dict(status)
        if "online" in status:
            c.online = bool(status["online"])  # the session's own view; LinkState says the same, sooner
        self._bump()

    def daemon_status(self, fields: Mapping[str, Any]) -> None:
        """Pi-wide figures (outbox depth, broker state) shown in the page header."""
        self._daemon = dict(fields)
        self._bump()

    # -- change notification -------------------------------------------------------------------

    async def wait_changed(self, seen_version: int, timeout_s: float | None = None) -> int:
        """Return the version as soon as it differs from `seen_version` (or when the timeout ends)."""
        while self.version == seen_version:
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), timeout_s)
            except TimeoutError:
                break
        return self.version

    def _bump(self) -> None:
        self.version += 1
        # Waiters hold the old event; a fresh one is armed for the next change.
        self._changed.set()
        self._changed = asyncio.Event()

    # -- reading ------------------------------------------------------------------------------

    @property
    def cars(self) -> list[str]:
        return list(self._cars)

    def snapshot(self) -> dict[str, Any]:
        """The whole page as plain JSON: fleet (most urgent first) and every car's detail."""
        cars = [self._car_snapshot(c) for c in self._cars.values()]
        cars.sort(key=lambda s: (-s["attention"]["score"], s["car"]))
        return {
            "site": self.site,
            "version": self.version,
            "generated_ts": self._clock(),
            "data_ts": self._data_ts,
            # The site's zone, in which the page shows every time (one site, one local day).
            "utc_offset_h": next(iter(self._cars.values())).analytics.day_utc_offset_h if self._cars
            else AnalyticsConfig().day_utc_offset_h,
            "daemon": dict(self._daemon),
            "cars": cars,
        }

    def trip_trace(self, car: str, trip_id: int) -> TripTrace | None:
        """The kept trace of a trip (`trip_id` = start time in ms, as in the snapshot), or None."""
        c = self._cars.get(car)
        source = None if c is None else c.traces.get(int(trip_id))
        return None if source is None else source.trace()

    # -- internals ----------------------------------------------------------------------------

    def _note_ts(self, c: _Car, ts: float) -> None:
        if math.isfinite(ts):
            c.last_ts = ts if c.last_ts is None else max(c.last_ts, ts)
            self._data_ts = ts if self._data_ts is None else max(self._data_ts, ts)

    def _on_inputs(self, c: _Car, obs: InputsChanged) -> None:
        before = c.inputs
        c.inputs = obs.inputs
        closed = bool(obs.inputs & Inputs.DOOR_CLOSED)
        was_closed = None if before is None else bool(before & Inputs.DOOR_CLOSED)
        in_service = not obs.inputs & Inputs.INSPECTION and not (before or 0) & Inputs.INSPECTION
        if was_closed is True and not closed:
            if c.door_last_close_ts is not None and obs.ts - c.door_last_close_ts < _REOPEN_WINDOW_S:
                c.door_reopenings += 1
            c.door_open_ts = obs.ts
        elif was_closed is False and closed and c.door_open_ts is not None:
            c.door_cycles += 1
            if in_service:  # a technician holding the door open is not a slow door
                c.door_open_s.append(obs.ts - c.door_open_ts)
            c.door_open_ts = None
            c.door_last_close_ts = obs.ts
        elif was_closed is None and not closed:
            c.door_open_ts = obs.ts  # first contact with the door open: count from here
        inspection = bool(obs.inputs & Inputs.INSPECTION)
        if inspection and c.inspection_since is None:
            c.inspection_since = obs.ts
        elif not inspection:
            c.inspection_since = None

    def _on_vib(self, c: _Car, block: VibBlock) -> None:
        c.vib.append(block)
        horizon = block.ts_end - self.vib_buffer_s
        while c.vib and c.vib[0].ts_end < horizon:
            c.vib.popleft()

    def _on_trip(self, c: _Car, trip: Trip) -> None:
        c.trips.appendleft(trip)
        c.trips_total += 1
        while len(c.trips) > self.trips_kept:
            c.trips.pop()
        c.floor = trip.to_floor  # None when not anchored or stopped between floors: shown as unknown
        c.floor_label = trip.to_label
        source = cut_trace(c.car, trip, c.vib, c.analytics)
        if source is not None:
            c.traces[source.trip_id] = source
            while len(c.traces) > self.traces_kept:
                del c.traces[next(iter(c.traces))]

    def _car_snapshot(self, c: _Car) -> dict[str, Any]:
        inputs = c.inputs
        bit = (lambda b: None if inputs is None else bool(inputs & b))
        motion = None if c.motion is None else Motion.convert(c.motion)
        zone_up, zone_dn = bit(Inputs.ZONE_UP), bit(Inputs.ZONE_DN)
        live = {
            "known": inputs is not None,
            "door": None if inputs is None else ("closed" if inputs & Inputs.DOOR_CLOSED else "open"),
            "door_open_since_ts": c.door_open_ts,
            "floor": c.floor,
            "floor_label": c.floor_label,
            "at_landing": None if zone_up is None else bool(zone_up and zone_dn),
            "in_door_zone": None if zone_up is None else bool(zone_up or zone_dn),
            "moving": None if motion is None or motion == Motion.UNCALIBRATED else motion != Motion.REST,
            "motion": motion.name.lower() if motion is not None else (None if c.motion is None else str(c.motion)),
            "inspection": bit(Inputs.INSPECTION),
            "presence": bit(Inputs.PRESENCE),
            "alarm_button": bit(Inputs.ALARM_BUTTON),
            "mains": bit(Inputs.MAINS),
            "online": c.online,
            "last_ts": c.last_ts,
        }
        open_faults = sorted(
            (self._fault_json(f) for f in c.open_faults.values()),
            key=lambda f: (-Attention.RANK[f["severity"]], f["raised_ts"]),
        )
        return {
            "car": c.car,
            "board_id": c.board_id or (c.session.get("board") or ""),
            "live": live,
            "open_faults": open_faults,
            "board_events": [
                {"kind": e.kind, "event_id": e.event_id, "ts": e.ts} for e in c.board_events.values()
            ],
            "cleared_faults": [self._fault_json(f) for f in c.cleared_faults],
            "trips": [self._trip_json(c, t) for t in c.trips],
            "trips_total": c.trips_total,
            "doors": self._door_stats(c),
            "leveling": self._leveling_stats(c),
            "maintenance": {
                "in_progress_since_ts": c.inspection_since,
                "last_visit": None if c.last_visit is None else {
                    "start_ts": c.last_visit.start_ts,
                    "end_ts": c.last_visit.end_ts,
                    "duration_s": round(c.last_visit.end_ts - c.last_visit.start_ts, 1),
                    "inspection_runs": c.last_visit.inspection_runs,
                    "too_short": c.last_visit.too_short,
                },
            },
            "board": self._board_health(c),
            "daily": c.daily,
            "limits_mg": {
                "z_max_pp": c.analytics.vib_z_max_pp_limit_mg,
                "z_a95_pp": c.analytics.vib_z_a95_pp_limit_mg,
                "xy_max_pp": c.analytics.vib_xy_max_pp_limit_mg,
                "xy_a95_pp": c.analytics.vib_xy_a95_pp_limit_mg,
            },
            "attention": self._attention(c, live),
        }

    @staticmethod
    def _fault_json(f: FaultEvent) -> dict[str, Any]:
        return {
            "type": f.type.value,
            "state": f.state,
            "severity": FAULT_SEVERITY.get(f.type.value, Attention.WARNING),
            "raised_ts": f.raised_ts,
            "event_ts": f.event_ts,
            "gbt24476_code": f.gbt24476_code,
            "duration_s": f.duration_s,
            "response_s": f.response_s,
            "repair_s": f.repair_s,
            "detail": {k: v for k, v in f.detail.items() if isinstance(v, (str, int, float, bool, type(None)))},
        }

    def _trip_json(self, c: _Car, t: Trip) -> dict[str, Any]:
        rq = t.ride_quality
        trip_id = ts_ms(t.start_ts)
        return {
            "id": trip_id,
            "start_ts": t.start_ts,
            "end_ts": t.end_ts,
            "duration_s": round(t.duration_s, 2),
            "direction": t.direction,
            "floors": t.floors,
            "from_floor": t.from_floor,
            "to_floor": t.to_floor,
            "from_label": t.from_label,
            "to_label": t.to_label,
            "peak_speed_mps": None if t.peak_speed_mps is None else round(t.peak_speed_mps, 2),
            "ride_quality": None if rq is None else rq.to_message(),
            "over_limits": [] if rq is None else rq.over_limits(c.analytics),
            "ride_quality_unjudged": t.ride_quality_unjudged,
            "leveling": t.leveling.to_message(),
            "has_trace": trip_id in c.traces,
        }

    @staticmethod
    def _door_stats(c: _Car) -> dict[str, Any]:
        opens = sorted(c.door_open_s)
        return {
            "cycles": c.door_cycles,
            "reopenings": c.door_reopenings,
            "open_s_median": round(opens[len(opens) // 2], 1) if opens else None,
            "open_s_p95": round(opens[min(len(opens) - 1, int(0.95 * len(opens)))], 1) if opens else None,
            "open_s_max": round(opens[-1], 1) if opens else None,
        }

    @staticmethod
    def _leveling_stats(c: _Car) -> dict[str, Any]:
        counts: dict[str, int] = {}
        offsets: list[float] = []
        for t in c.trips:
            status = t.leveling.status.value if hasattr(t.leveling.status, "value") else str(t.leveling.status)
            counts[status] = counts.get(status, 0) + 1
            if t.leveling.offset_mm is not None:
                offsets.append(float(t.leveling.offset_mm))
        judged = sum(n for s, n in counts.items() if s != "unknown")
        return {
            "stops": sum(counts.values()),
            "by_status": counts,
            "level_pct": round(100.0 * counts.get("level", 0) / judged, 1) if judged else None,
            "offset_mm_mean": round(sum(offsets) / len(offsets), 1) if offsets else None,
            "offset_mm_max_abs": round(max(abs(o) for o in offsets), 1) if offsets else None,
            "tolerance_mm": c.analytics.level_tolerance_mm,
        }

    @staticmethod
    def _board_health(c: _Car) -> dict[str, Any]:
        s = c.session
        hb = s.get("heartbeat") or {}
        counters = s.get("counters") or {}
        link_pct = None
        if len(c.link_window) >= 2:
            (f0, l0), (f1, l1) = c.link_window[0], c.link_window[-1]
            got, lost = f1 - f0, l1 - l0
            if got + lost > 0:
                link_pct = round(100.0 * got / (got + lost), 2)
        elif c.link_window:
            f1, l1 = c.link_window[-1]
            link_pct = round(100.0 * f1 / (f1 + l1), 2) if f1 + l1 else None
        board_counters = c.counters
        drops = sum((counters.get("drops") or {}).values())
        return {
            "online": c.online,
            "fw_version": (c.hello.fw_version if c.hello else "") or s.get("fw_version") or "",
            "sensor_model": (c.hello.sensor_model if c.hello else "") or s.get("sensor_model") or "",
            "reset_cause": (c.hello.reset_cause if c.hello else "") or s.get("reset_cause") or "",
            "calibrated": c.hello.calibrated if c.hello else s.get("calibrated"),
            "safe_mode": c.hello.safe_mode if c.hello else s.get("safe_mode"),
            # issue 18: the firmware a rollback returns to, the update record (trial, confirmed,
            # rolled_back), and what the last push or rollout came to (a refusal with its reason)
            "prev_fw_version": s.get("prev_fw_version") or "",
            "update": s.get("update") or "",
            "update_refused": s.get("update_refused"),
            "last_update": s.get("last_update"),
            "update_running": s.get("update_running"),
            "boots": board_counters.boots if board_counters else None,
            "reboots_seen": counters.get("reboots"),
            "heap_free": hb.get("heap_free"),
            "uptime_s": hb.get("uptime_s"),
            "queue_depth": hb.get("queue_depth"),
            "link_quality_pct": link_pct,
            "frames": counters.get("frames"),
            "lost_frames": counters.get("lost_frames"),
            "session_drops": drops,
            "board_link_drops": board_counters.link_drops if board_counters else None,
            "fifo_overruns": board_counters.fifo_overruns if board_counters else None,
            "ring_overruns": board_counters.ring_overruns if board_counters else None,
            "time_synced": s.get("time_synced"),
            "last_heard_ts": s.get("last_heard_ts"),
        }

    @staticmethod
    def _attention(c: _Car, live: Mapping[str, Any]) -> dict[str, Any]:
        """Level, score and reasons; the score orders the fleet view (higher = look first)."""
        reasons: list[tuple[str, str]] = []
        for f in c.open_faults.values():
            reasons.append((FAULT_SEVERITY.get(f.type.value, Attention.WARNING), f.type.value))
        if live["alarm_button"]:
            reasons.append((Attention.CRITICAL, "alarm_button_pressed"))
        if c.online is False and FaultType.BOARD_OFFLINE.value not in c.open_faults:
            reasons.append((Attention.FAULT, "board_offline"))
        if c.trips and c.trips[0].ride_quality is not None and c.trips[0].ride_quality.over_limits(c.analytics):
            reasons.append((Attention.WARNING, "last_trip_over_vibration_limit"))
        if c.hello is not None and c.hello.safe_mode:
            reasons.append((Attention.FAULT, "board_safe_mode"))
        if live["inspection"]:
            reasons.append((Attention.MAINTENANCE, "inspection_on"))
        if not reasons:
            return {"level": Attention.OK, "score": 0, "reasons": [] if c.last_ts is not None else ["no_data_yet"]}
        reasons.sort(key=lambda r: -Attention.RANK[r[0]])
        level = reasons[0][0]
        # Level dominates; more reasons at the same level break ties.
        score = Attention.RANK[level] * 100 + sum(Attention.RANK[r[0]] for r in reasons)
        return {"level": level, "score": score, "reasons": [r[1] for r in reasons]}
