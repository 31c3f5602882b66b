"""Maintenance visits from the car-top inspection switch.

Technicians flip inspection on and off during one visit (checking the pit, the car top, the
machine room), so periods separated by less than `maintenance_join_gap_s` are one visit. A visit
is reported once it has certainly ended: inspection off for the whole join gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .common import Span

__all__ = ["MaintenanceTracker", "MaintenanceVisit"]


@dataclass(frozen=True, slots=True)
class MaintenanceVisit(Span):
    """One visit (upstream kind `maintenance`)."""

    car_id: str
    start_ts: float
    end_ts: float
    inspection_runs: int  # movements under inspection control
    too_short: bool  # below the contract minimum
    faults_responded: tuple[dict[str, Any], ...] = field(default=())  # faults this visit answered
    # The data ended with inspection still on (end of a replay or of the demo's day): the visit's
    # real length is unknown, so it is not judged too short.
    in_progress: bool = False
    source: str = "live"  # "board_journal": missed live, reported from the board's flash journal
    # 0 when first issued; each re-issue (late facts from the board's journal changed the visit) is
    # one higher, under the same id: a reader keeps the highest revision of an id.
    revision: int = 0
    # The start it was first issued with, when a late inspection period moved the start earlier:
    # the id stays the one already sent.
    first_start_ts: float | None = None

    kind = "maintenance"

    @property
    def key_start_ts(self) -> float:
        return self.first_start_ts if self.first_start_ts is not None else self.start_ts

    def to_message(self) -> dict[str, Any]:
        return {
            **self.span_message(),
            "inspection_runs": self.inspection_runs,
            "too_short": bool(self.too_short),
            "faults_responded": [dict(f) for f in self.faults_responded],
            "in_progress": self.in_progress,
            "source": self.source,
            "revision": self.revision,
        }


class MaintenanceTracker:
    def __init__(self, car_id: str, join_gap_s: float, min_visit_s: float) -> None:
        self._car_id = car_id
        self._join_gap_s = join_gap_s
        self._min_s = min_visit_s
        self._start: float | None = None
        self._last_off: float | None = None  # inspection off since (visit may be ending)
        self._runs = 0
        self._responded: tuple[dict[str, Any], ...] = ()

    @property
    def in_visit(self) -> bool:
        return self._start is not None

    def on_inspection(self, ts: float, on: bool) -> tuple[list[MaintenanceVisit], bool]:
        """Returns (finished visits, True when this switch-on started a new visit)."""
        out = self.tick(ts)
        started = False
        if on:
            if self._start is None:
                self._start, self._runs, self._responded = ts, 0, ()
                started = True
            self._last_off = None
        elif self._start is not None and self._last_off is None:
            self._last_off = ts
        return out, started

    def open_visit(self) -> dict[str, Any] | None:
        """The visit in progress as plain data, for the daemon's state file: a visit lasts an hour,
        and a daemon restarted (or SIGKILLed) inside it must still report it whole."""
        if self._start is None:
            return None
        return {"start_ts": self._start, "last_off_ts": self._last_off, "inspection_runs": self._runs,
                "faults_responded": [dict(f) for f in self._responded]}

    def restore(self, visit: dict[str, Any]) -> None:
        """Take up a visit `open_visit` saved before a restart (it ends as it would have)."""
        last_off = visit.get("last_off_ts")
        self._start = float(visit["start_ts"])
        self._last_off = float(last_off) if last_off is not None else None
        self._runs = int(visit.get("inspection_runs", 0))
        self._responded = tuple(dict(f) for f in visit.get("faults_responded", ()))

    def takes_period(self, start_ts: float, end_ts: float, slack_s: float) -> bool:
        """The board's journal has an inspection period [start_ts, end_ts] that did not end before
        the visit in progress began (``slack_s``: clock offsets): it is one of that visit's periods
        (visits join periods), and the visit began at start_ts if the daemon first saw the switch on
        later (it started, or came back, mid-way). False if there is no such visit."""
        if self._start is None or end_ts < self._start - slack_s:
            return False
        self._start = min(self._start, start_ts)
        return True

    def takes_run(self, start_ts: float, slack_s: float) -> bool:
        """A movement under inspection control the live stream missed (from the board's journal)
        that began inside the visit in progress: counted as one of its runs."""
        if self._start is None or start_ts < self._start - slack_s:
            return False
        self._runs += 1
        return True

    def set_responded(self, faults: list[dict[str, Any]]) -> None:
        self._responded = tuple(faults)

    def on_inspection_run(self) -> None:
        if self._start is not None:
            self._runs += 1

    def tick(self, ts: float) -> list[MaintenanceVisit]:
        if self._start is not None and self._last_off is not None and ts - self._last_off >= self._join_gap_s:
            return [self._finish(self._last_off)]
        return []

    def flush(self, ts: float) -> list[MaintenanceVisit]:
        """End of the data: a visit whose inspection was switched off ends there; one still under
        inspection is sent as it stands (`in_progress`), with the faults it answered."""
        if self._start is None:
            return []
        if self._last_off is not None:
            return [self._finish(self._last_off)]
        return [self._finish(ts, in_progress=True)]

    def _finish(self, end: float, in_progress: bool = False) -> MaintenanceVisit:
        assert self._start is not None
        too_short = not in_progress and end - self._start < self._min_s
        visit = MaintenanceVisit(self._car_id, self._start, end, self._runs, too_short, self._responded, in_progress)
        self._start = self._last_off = None
        return visit
