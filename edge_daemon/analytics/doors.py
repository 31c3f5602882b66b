"""Door cycles from the door-closed contact.

The kit sees one contact (door closed or not), so a cycle is "first opening at a stop ... door
closed for good". Closing and opening again within `door_reopen_window_s` without the car moving
is a reopening of the same cycle (a passenger, the light curtain, an obstacle). Opening and
closing *times* need a door-open limit input the kit does not have, so they are not reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .common import iso_utc, ts_ms

__all__ = ["DoorCycle", "DoorTracker"]


@dataclass(frozen=True, slots=True)
class DoorCycle:
    """One door cycle at a stop (upstream kind `door_cycle`, only with `emit_door_cycles`)."""

    car_id: str
    open_ts: float  # first opening
    close_ts: float  # final closing
    open_s: float  # time the door was not closed, summed over the reopenings
    reopenings: int
    floor: int | None
    source: str = "live"  # "board_journal": missed live, reported from the board's flash journal

    kind = "door_cycle"

    @property
    def key(self) -> str:
        return f"{self.car_id}:door_cycle:{ts_ms(self.open_ts)}"

    def to_message(self) -> dict[str, Any]:
        return {
            "open_ts": iso_utc(self.open_ts),
            "close_ts": iso_utc(self.close_ts),
            "open_s": round(float(self.open_s), 3),
            "reopenings": self.reopenings,
            "floor": self.floor,
            "source": self.source,
        }


class DoorTracker:
    """Builds door cycles; `reopenings` of the cycle in progress feeds `door_reopen_loop`."""

    def __init__(self, car_id: str, reopen_window_s: float) -> None:
        self._car_id = car_id
        self._window_s = reopen_window_s
        self._open_ts: float | None = None  # cycle in progress since
        self._opened_at: float | None = None  # door currently open since
        self._closed_at: float | None = None  # door closed (cycle maybe ending) at
        self._open_s = 0.0
        self._floor: int | None = None
        self.reopenings = 0

    @property
    def in_cycle(self) -> bool:
        return self._open_ts is not None

    def on_door(self, ts: float, closed: bool, floor: int | None) -> list[DoorCycle]:
        out = self.tick(ts)
        if not closed and self._opened_at is None:
            if self._open_ts is None:
                self._open_ts, self._open_s, self.reopenings, self._floor = ts, 0.0, 0, floor
            else:
                self.reopenings += 1
            self._opened_at, self._closed_at = ts, None
        elif closed and self._opened_at is not None:
            self._open_s += ts - self._opened_at
            self._opened_at, self._closed_at = None, ts
        return out

    def on_motion_start(self, ts: float) -> list[DoorCycle]:
        """The car left: a closed door ends the cycle now (no reopening after departure)."""
        if self._open_ts is not None and self._opened_at is None and self._closed_at is not None:
            return [self._finish()]
        return []

    def tick(self, ts: float) -> list[DoorCycle]:
        if self._closed_at is not None and ts - self._closed_at >= self._window_s:
            return [self._finish()]
        return []

    def flush(self, ts: float) -> list[DoorCycle]:
        if self._open_ts is None:
            return []
        if self._opened_at is not None:
            self._open_s += ts - self._opened_at
            self._opened_at, self._closed_at = None, ts
        return [self._finish()]

    def _finish(self) -> DoorCycle:
        assert self._open_ts is not None and self._closed_at is not None
        cycle = DoorCycle(self._car_id, self._open_ts, self._closed_at, self._open_s, self.reopenings, self._floor)
        self._open_ts = self._closed_at = None
        self.reopenings = 0
        return cycle
