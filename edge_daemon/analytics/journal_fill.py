"""Facts from the board's flash journal that the live stream missed.

The board writes a record for every trip, door cycle and inspection period (firmware/journal.py) and
re-sends it until the daemon ACKs it. Most arrive just after the daemon saw the same thing live:
those are one fact, reported once, the live way (with ride quality). A record that no live
observation matches (same start within `MATCH_S`) is a fact the daemon missed (link cut, daemon
down): it is reported from the record, at its true times, with `source: "board_journal"` and what
the record cannot tell (ride quality, floor numbers, leveling offset) null.

An inspection period inside the visit in progress is that visit's (after a daemon restart the visit
comes back from the state file, not the live start): the record gives it its true start if the
daemon saw the switch on only from the middle. A visit already issued (live or from the journal)
that a late record changes, an inspection period that joins it or a movement under inspection
control inside it, is issued again under the same id with `revision` one higher. A movement under
inspection whose period has no record yet (the board writes a period when the switch goes off, after
its runs) waits in memory for it.

Of the faults the daemon derives itself, the journal gives back only what a record proves, at its
true times: a door open in normal service for a whole cycle without a reopening is
`door_open_too_long`, raised `door_open_too_long_s` after the opening and cleared at the closing
(docs/daemon.md says what cannot be reconstructed, and why).

A record matched to a live trip still being finished (waiting for its VIB) is held: it is settled,
and so ACKed to the board, only once the live trip is decided, so a daemon killed in between still
has the board's copy. `take_settled()` gives the records whose ACK may go out after the next commit.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from typing import Any

from liftwatch.protocol.messages import Input, JournalKind

from ..observations import JournalRecord
from .common import iso_utc, local_day
from .config import AnalyticsConfig
from .doors import DoorCycle
from .faults import FaultBook, FaultEvent, FaultType
from .leveling import LevelingResult, LevelingStatus
from .maintenance import MaintenanceTracker, MaintenanceVisit
from .trips import Trip

__all__ = ["MATCH_S", "SOURCE_JOURNAL", "SOURCE_JOURNAL_ARRIVAL", "JournalFill", "Revision", "parse_visit_memory"]

# The board's record and the live STATE of the same start carry the same board ms; only the clock
# offset they were mapped with can differ (a TIME_SYNC in between: milliseconds on a real link, up to
# 0.6 s at the soak's 200x, where two duplicates showed at 0.5). Two trips or first door openings
# are several seconds apart (a trip lasts over trip_min_s, a door cycle ends 4 s after the closing).
MATCH_S = 2.0
SOURCE_JOURNAL = "board_journal"
# A record of a boot no daemon ever mapped to UTC: at its arrival time (docs/daemon.md, journal_unmapped).
SOURCE_JOURNAL_ARRIVAL = "board_journal_arrival"
_LIVE_MEMORY = 512  # live starts kept: far more than the records in flight at any time
_VISIT_MEMORY = 16  # issued visits a late record may still change (a few a day)
_RUN_MEMORY = 64  # movements under inspection waiting for their period's record (a visit has a few)
_ZONE_UP, _ZONE_DN, _INSPECTION = int(Input.ZONE_UP), int(Input.ZONE_DN), int(Input.INSPECTION)

Revision = tuple[MaintenanceVisit, MaintenanceVisit]  # a visit as issued before, and as issued again


class JournalFill:
    """One car's live starts, and the journal records they do not cover turned into outputs."""

    def __init__(self, car_id: str, config: AnalyticsConfig) -> None:
        self.car_id = car_id
        self.config = config
        self._trips: deque[float] = deque(maxlen=_LIVE_MEMORY)
        self._doors: deque[float] = deque(maxlen=_LIVE_MEMORY)
        self._inspections: deque[float] = deque(maxlen=_LIVE_MEMORY)
        self._raised: deque[tuple[FaultType, float]] = deque(maxlen=_LIVE_MEMORY)  # faults that went out
        self._visits: deque[MaintenanceVisit] = deque(maxlen=_VISIT_MEMORY)  # issued, latest revision
        self._runs: deque[float] = deque(maxlen=_RUN_MEMORY)  # inspection runs not placed in a visit yet
        self._held: list[JournalRecord] = []  # matched to a live trip not yet decided
        self._settled: list[JournalRecord] = []
        self.filled = 0  # records reported from the journal (missed live)
        self.matched = 0  # records the live stream had already seen
        self.late = 0  # filled records of a day before the one in progress
        self.revised = 0  # visits issued again because a late record changed them
        self.visits_changed = 0  # +1 whenever `visit_memory` would give something else

    # ---------------------------------------------------------------- the live side

    def live_trip(self, ts: float) -> None:
        self._trips.append(ts)

    def live_door_opened(self, ts: float) -> None:
        self._doors.append(ts)

    def live_inspection(self, ts: float) -> None:
        self._inspections.append(ts)

    def fault_raised(self, event: FaultEvent) -> None:
        """A fault went out (from the live stream, or a record): the journal does not raise it again."""
        if event.state == "raised":
            self._raised.append((event.type, event.raised_ts))

    def issued_visit(self, visit: MaintenanceVisit) -> None:
        """A visit went out (live or from the journal): a late record may still change it."""
        self._visits.append(visit)
        self.visits_changed += 1

    def visit_memory(self) -> dict[str, Any]:
        """The issued visits and the runs waiting for their period, as plain data for the daemon's
        state file: saved before the records that made them are ACKed, so a restart loses neither."""
        return {"visits": [{k: v for k, v in dataclasses.asdict(visit).items() if k != "car_id"}
                           for visit in self._visits], "runs": list(self._runs)}

    def restore_visit_memory(self, memory: dict[str, Any]) -> None:
        """Take up what `visit_memory` saved before a restart."""
        visits, runs = parse_visit_memory(self.car_id, memory)
        self._visits.extend(visits)
        self._runs.extend(runs)
        self.visits_changed += 1

    # ---------------------------------------------------------------- records

    def on_record(self, rec: JournalRecord, trip: Any, pending: Iterable[Any], today: int | None,
                  visits: MaintenanceTracker, faults: FaultBook) -> tuple[list[Any], list[Any], list[Revision]]:
        """(outputs of the day in progress, outputs of a past day, visits revised) for one record."""
        kind = JournalKind.convert(rec.kind)
        live = {JournalKind.TRIP: self._trips, JournalKind.DOOR_CYCLE: self._doors,
                JournalKind.INSPECTION: self._inspections}.get(kind) if kind is not None else None
        if live is None:  # a kind from a newer board: nothing this daemon can report
            self._settled.append(rec)
            return [], [], []
        if _near(live, rec.start_ts) or (kind is JournalKind.INSPECTION and visits.takes_period(rec.start_ts, rec.ts, MATCH_S)):
            self.matched += 1
            if kind is JournalKind.TRIP and _undecided(rec.start_ts, trip, pending):
                self._held.append(rec)
            else:
                self._settled.append(rec)
            return [], [], []
        self._settled.append(rec)
        if kind is JournalKind.TRIP and rec.inputs_start & _INSPECTION:
            return [], [], self._inspection_run(rec, visits)
        if kind is JournalKind.INSPECTION:
            revised = self._join_period(rec)
            if revised:
                return [], [], revised
            outputs: list[Any] = [self._new_visit(rec, faults)]
        else:
            outputs = self._fill(kind, rec)
        if not outputs:
            return [], [], []
        self.filled += 1
        day = local_day(rec.start_ts, self.config.day_utc_offset_h)
        if today is not None and day < today:
            self.late += 1
            return [], outputs, []
        return outputs, [], []

    def recheck(self, trip: Any, pending: Iterable[Any]) -> None:
        """Settle held records whose live trip is now decided."""
        if not self._held:
            return
        pending = list(pending)
        still = [r for r in self._held if _undecided(r.start_ts, trip, pending)]
        self._settled += [r for r in self._held if r not in still]
        self._held = still

    def take_settled(self) -> list[JournalRecord]:
        """Records now reported or known reported: their ACKs may go out after the next commit."""
        out, self._settled = self._settled, []
        return out

    def _fill(self, kind: JournalKind, rec: JournalRecord) -> list[Any]:
        cfg = self.config
        if kind is JournalKind.DOOR_CYCLE:
            return [DoorCycle(self.car_id, rec.start_ts, rec.ts, rec.ts - rec.start_ts, rec.count, None,
                              source=_source(rec)), *self._door_open_too_long(rec)]
        # A trip, classified as the live path does: too short or never out of the door zone is a
        # re-levelling (a run under inspection control went to its visit).
        in0, in1 = rec.inputs_start, rec.inputs_end
        zones0, zones1 = in0 & (_ZONE_UP | _ZONE_DN), in1 & (_ZONE_UP | _ZONE_DN)
        if rec.ts - rec.start_ts < cfg.trip_min_s or (rec.count == 0 and zones0 and zones1):
            return []
        if zones1 == _ZONE_UP | _ZONE_DN:
            status = LevelingStatus.LEVEL
        elif zones1:
            status = LevelingStatus.OFF_LEVEL
        else:
            status = LevelingStatus.OUTSIDE_DOOR_ZONE
        return [Trip(
            car_id=self.car_id, start_ts=rec.start_ts, end_ts=rec.ts,
            direction={1: "up", -1: "down"}.get(rec.direction), floors=rec.count, from_floor=None, to_floor=None,
            peak_speed_mps=rec.peak_speed_mm_s / 1000.0 if rec.peak_speed_mm_s else None, distance_m=None,
            ride_quality=None, leveling=LevelingResult(rec.ts, status, None), source=_source(rec),
        )]

    def _door_open_too_long(self, rec: JournalRecord) -> list[FaultEvent]:
        """The fault the live rule would have raised on a door cycle it missed, where the record
        proves it: no reopening (the door was open the whole time between its two times), normal
        service at both ends, and not raised live already (the daemon came back while it was open)."""
        limit = self.config.door_open_too_long_s
        ftype = FaultType.DOOR_OPEN_TOO_LONG
        if rec.count or (rec.inputs_start | rec.inputs_end) & _INSPECTION or rec.ts - rec.start_ts < limit:
            return []
        if any(t is ftype and rec.start_ts - MATCH_S <= at <= rec.ts + MATCH_S for t, at in self._raised):
            return []
        raised = rec.start_ts + limit
        detail = {"since_ts": iso_utc(rec.start_ts), "in_door_zone": bool(rec.inputs_start & (_ZONE_UP | _ZONE_DN)),
                  "source": _source(rec)}
        return [FaultEvent(self.car_id, ftype, "raised", raised, raised, detail=detail),
                FaultEvent(self.car_id, ftype, "cleared", rec.ts, raised, detail={"source": _source(rec)},
                           duration_s=rec.ts - raised)]

    # ---------------------------------------------------------------- maintenance visits

    def _new_visit(self, rec: JournalRecord, faults: FaultBook) -> MaintenanceVisit:
        """An inspection period no issued visit takes: a visit of its own, with the runs that waited
        for it and the faults it answered (raised before it, within the look-back)."""
        return MaintenanceVisit(self.car_id, rec.start_ts, rec.ts, self._take_runs(rec.start_ts, rec.ts),
                                rec.ts - rec.start_ts < self.config.maintenance_min_s,
                                tuple(faults.on_visit_start(rec.start_ts)), source=_source(rec))

    def _join_period(self, rec: JournalRecord) -> list[Revision]:
        """An inspection period less than the join gap from an issued visit is one of its periods."""
        gap = self.config.maintenance_join_gap_s
        for old in self._visits:
            if rec.start_ts <= old.end_ts + gap and rec.ts >= old.start_ts - gap:
                start, end = min(old.start_ts, rec.start_ts), max(old.end_ts, rec.ts)
                return [self._revise(old, start_ts=start, end_ts=end,
                                     inspection_runs=old.inspection_runs + self._take_runs(rec.start_ts, rec.ts),
                                     too_short=not old.in_progress and end - start < self.config.maintenance_min_s)]
        return []

    def _inspection_run(self, rec: JournalRecord, visits: MaintenanceTracker) -> list[Revision]:
        """A movement under inspection control the live stream missed: a run of the visit in
        progress or of an issued one; else it waits for its period's record."""
        if visits.takes_run(rec.start_ts, MATCH_S):
            return []
        for old in self._visits:
            if old.start_ts - MATCH_S <= rec.start_ts <= old.end_ts + MATCH_S:
                return [self._revise(old, inspection_runs=old.inspection_runs + 1)]
        self._runs.append(rec.start_ts)
        self.visits_changed += 1
        return []

    def _revise(self, old: MaintenanceVisit, **changes: Any) -> Revision:
        new = dataclasses.replace(old, **changes, revision=old.revision + 1, first_start_ts=old.key_start_ts)
        self._visits[self._visits.index(old)] = new
        self.revised += 1
        self.visits_changed += 1
        return old, new

    def _take_runs(self, start_ts: float, end_ts: float) -> int:
        """The waiting runs that began inside [start_ts, end_ts]: counted now, and forgotten."""
        inside = [t for t in self._runs if start_ts - MATCH_S <= t <= end_ts + MATCH_S]
        for t in inside:
            self._runs.remove(t)
        self.visits_changed += bool(inside)
        return len(inside)


def parse_visit_memory(car_id: str, memory: Any) -> tuple[list[MaintenanceVisit], list[float]]:
    """(issued visits, waiting runs) from `JournalFill.visit_memory`'s plain data, as read back from
    the state file. Raises ValueError, TypeError or KeyError for anything else."""
    visits = [MaintenanceVisit(
        car_id, float(v["start_ts"]), float(v["end_ts"]), int(v["inspection_runs"]), bool(v["too_short"]),
        tuple(dict(f) for f in v.get("faults_responded", ())), bool(v.get("in_progress", False)),
        str(v.get("source", "live")), int(v.get("revision", 0)),
        float(v["first_start_ts"]) if v.get("first_start_ts") is not None else None,
    ) for v in memory["visits"]]
    return visits, [float(t) for t in memory["runs"]]


def _source(rec: JournalRecord) -> str:
    return SOURCE_JOURNAL_ARRIVAL if rec.timed_by_arrival else SOURCE_JOURNAL


def _near(starts: deque[float], ts: float) -> bool:
    return any(abs(s - ts) <= MATCH_S for s in starts)


def _undecided(ts: float, trip: Any, pending: Iterable[Any]) -> bool:
    """A live trip starting at `ts` is still moving or waiting for its VIB."""
    if trip is not None and abs(trip.start_ts - ts) <= MATCH_S:
        return True
    return any(abs(p.start_ts - ts) <= MATCH_S for p in pending)
