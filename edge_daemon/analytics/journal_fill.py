"""Facts from the board's flash journal that the live stream missed.

The board writes a record for every trip, door cycle and inspection period (firmware/journal.py) and
re-sends it until the daemon ACKs it. Most arrive just after the daemon saw the same thing live:
those are one fact, reported once, the live way (with ride quality). A record that no live
observation matches (same start within `MATCH_S`) is a fact the daemon missed (link cut, daemon
down): it is reported from the record, at its true times, with `source: "board_journal"` and what
the record cannot tell (ride quality, floor numbers, leveling offset) null.

An inspection period inside the visit in progress is that visit's (after a daemon restart the visit
comes back from the state file, not the live start): the record gives it its true start if the
daemon saw the switch on only from the middle.

A record matched to a live trip still being finished (waiting for its VIB) is held: it is settled,
and so ACKed to the board, only once the live trip is decided, so a daemon killed in between still
has the board's copy. `take_settled()` gives the records whose ACK may go out after the next commit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from liftwatch.protocol.messages import Input, JournalKind

from ..observations import JournalRecord
from .common import local_day
from .config import AnalyticsConfig
from .doors import DoorCycle
from .leveling import LevelingResult, LevelingStatus
from .maintenance import MaintenanceTracker, MaintenanceVisit
from .trips import Trip

__all__ = ["MATCH_S", "SOURCE_JOURNAL", "JournalFill"]

# The board's record and the live STATE of the same start carry the same board ms; only the clock
# offset they were mapped with can differ (a TIME_SYNC in between: milliseconds on a real link, up to
# 0.6 s at the soak's 200x, where two duplicates showed at 0.5). Two trips or first door openings
# are several seconds apart (a trip lasts over trip_min_s, a door cycle ends 4 s after the closing).
MATCH_S = 2.0
SOURCE_JOURNAL = "board_journal"
_LIVE_MEMORY = 512  # live starts kept: far more than the records in flight at any time
_ZONE_UP, _ZONE_DN, _INSPECTION = int(Input.ZONE_UP), int(Input.ZONE_DN), int(Input.INSPECTION)


class JournalFill:
    """One car's live starts, and the journal records they do not cover turned into outputs."""

    def __init__(self, car_id: str, config: AnalyticsConfig) -> None:
        self.car_id = car_id
        self.config = config
        self._trips: deque[float] = deque(maxlen=_LIVE_MEMORY)
        self._doors: deque[float] = deque(maxlen=_LIVE_MEMORY)
        self._inspections: deque[float] = deque(maxlen=_LIVE_MEMORY)
        self._held: list[JournalRecord] = []  # matched to a live trip not yet decided
        self._settled: list[JournalRecord] = []
        self.filled = 0  # records reported from the journal (missed live)
        self.matched = 0  # records the live stream had already seen
        self.late = 0  # filled records of a day before the one in progress

    # ---------------------------------------------------------------- the live side

    def live_trip(self, ts: float) -> None:
        self._trips.append(ts)

    def live_door_opened(self, ts: float) -> None:
        self._doors.append(ts)

    def live_inspection(self, ts: float) -> None:
        self._inspections.append(ts)

    # ---------------------------------------------------------------- records

    def on_record(self, rec: JournalRecord, trip: Any, pending: Iterable[Any], today: int | None,
                  visits: MaintenanceTracker) -> tuple[list[Any], list[Any]]:
        """(outputs of the day in progress, outputs of a past day) for one record."""
        kind = JournalKind.convert(rec.kind)
        live = {JournalKind.TRIP: self._trips, JournalKind.DOOR_CYCLE: self._doors,
                JournalKind.INSPECTION: self._inspections}.get(kind) if kind is not None else None
        if live is None:  # a kind from a newer board: nothing this daemon can report
            self._settled.append(rec)
            return [], []
        if _near(live, rec.start_ts) or (kind is JournalKind.INSPECTION and visits.takes_period(rec.start_ts, rec.ts, MATCH_S)):
            self.matched += 1
            if kind is JournalKind.TRIP and _undecided(rec.start_ts, trip, pending):
                self._held.append(rec)
            else:
                self._settled.append(rec)
            return [], []
        self._settled.append(rec)
        outputs = self._fill(kind, rec)
        if not outputs:
            return [], []
        self.filled += 1
        day = local_day(rec.start_ts, self.config.day_utc_offset_h)
        if today is not None and day < today:
            self.late += 1
            return [], outputs
        return outputs, []

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
                              source=SOURCE_JOURNAL)]
        if kind is JournalKind.INSPECTION:
            duration = rec.ts - rec.start_ts
            return [MaintenanceVisit(self.car_id, rec.start_ts, rec.ts, 0, duration < cfg.maintenance_min_s,
                                     source=SOURCE_JOURNAL)]
        # A trip, classified as the live path does: too short or never out of the door zone is a
        # re-levelling, a run under inspection control belongs to the visit.
        in0, in1 = rec.inputs_start, rec.inputs_end
        zones0, zones1 = in0 & (_ZONE_UP | _ZONE_DN), in1 & (_ZONE_UP | _ZONE_DN)
        if rec.ts - rec.start_ts < cfg.trip_min_s or in0 & _INSPECTION or (rec.count == 0 and zones0 and zones1):
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
            ride_quality=None, leveling=LevelingResult(rec.ts, status, None), source=SOURCE_JOURNAL,
        )]


def _near(starts: deque[float], ts: float) -> bool:
    return any(abs(s - ts) <= MATCH_S for s in starts)


def _undecided(ts: float, trip: Any, pending: Iterable[Any]) -> bool:
    """A live trip starting at `ts` is still moving or waiting for its VIB."""
    if trip is not None and abs(trip.start_ts - ts) <= MATCH_S:
        return True
    return any(abs(p.start_ts - ts) <= MATCH_S for p in pending)
