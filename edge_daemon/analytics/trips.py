"""Trips: floors travelled and direction from door-zone pulses, floor numbers once anchored.

Each landing has one vane; the car carries two sensors, `zone_up` above `zone_dn`. Moving up, the
upper sensor meets a vane first and also leaves it first; moving down, the lower one leads. So an
edge that makes the two sensors differ was made by the leading sensor, and an edge that makes them
agree again by the trailing one: every edge votes for a direction. A landing is reached each time
the car enters a door zone (no sensor covered -> one covered).

Floor numbers: the car's position is tracked relative to where tracking began; once the lowest and
highest positions seen span `floor_count - 1` landings, the bottom one is `lowest_floor` and every
floor has its number. A position outside that span means a pulse was missed: the anchor is dropped
(`floor_position_lost`) until the car has visited both ends again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .common import Span, round_or_none
from .leveling import LevelingResult, ZoneEdge
from .ride_quality import RideQuality

__all__ = ["FloorTracker", "FloorUpdate", "Trip", "ZonePasses", "zone_passes"]


@dataclass(frozen=True, slots=True)
class Trip(Span):
    """One passenger-service trip, rest to rest (upstream kind `trip`)."""

    car_id: str
    start_ts: float
    end_ts: float
    direction: str | None  # "up" | "down"; None when neither zone pulses nor VIB told
    floors: int | None  # landings reached (door zones entered); None if the pulses were ambiguous
    from_floor: int | None
    to_floor: int | None
    peak_speed_mps: float | None
    distance_m: float | None
    ride_quality: RideQuality | None
    leveling: LevelingResult
    from_label: str | None = None  # the landings' names from the car's config (B1, G, M, 15...)
    to_label: str | None = None
    source: str = "live"  # "board_journal": missed live, reported from the board's flash journal

    kind = "trip"

    @property
    def ride_quality_unjudged(self) -> str | None:
        """Why the trip has no ride-quality figures, None when it has them: "no_vib" (its VIB blocks
        were lost on the link or never sent), else "one_floor" or "short" (no constant-speed stretch,
        which ISO 18738-1 judges)."""
        if self.ride_quality is None:
            return "no_vib"
        if self.ride_quality.judged:
            return None
        return "one_floor" if self.floors == 1 else "short"

    def to_message(self) -> dict[str, Any]:
        rq = self.ride_quality.to_message() if self.ride_quality is not None else None
        return {
            **self.span_message(),
            "direction": self.direction,
            "floors": self.floors,
            "from_floor": self.from_floor,
            "to_floor": self.to_floor,
            "from_label": self.from_label,
            "to_label": self.to_label,
            "peak_speed_mps": round_or_none(self.peak_speed_mps, 3),
            "distance_m": round_or_none(self.distance_m, 2),
            "ride_quality": rq,
            "leveling": self.leveling.to_message(),
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class ZonePasses:
    entries: int  # door zones entered
    up_votes: int
    down_votes: int
    ambiguous: int  # both sensors changed in one STATE: order unknown

    @property
    def direction(self) -> int:
        """+1 up, -1 down, 0 unknown (no votes or a tie)."""
        return (self.up_votes > self.down_votes) - (self.down_votes > self.up_votes)


def zone_passes(start_up: bool, start_dn: bool, changes: Iterable[tuple[float, bool, bool]]) -> ZonePasses:
    """Count door zones entered and direction votes from successive (ts, zone_up, zone_dn) states."""
    up, dn = start_up, start_dn
    entries = up_votes = down_votes = ambiguous = 0
    for _ts, new_up, new_dn in changes:
        changed_up, changed_dn = new_up != up, new_dn != dn
        if changed_up and changed_dn:
            ambiguous += 1
            entries += (not (up or dn)) and (new_up or new_dn)
        elif changed_up or changed_dn:
            leading = changed_up if up == dn else changed_dn  # equal before: the changer leads
            if leading:
                up_votes += 1
            else:
                down_votes += 1
            entries += (not (up or dn)) and (new_up or new_dn)
        up, dn = new_up, new_dn
    return ZonePasses(entries, up_votes, down_votes, ambiguous)


def edges_of(start_up: bool, start_dn: bool, changes: Iterable[tuple[float, bool, bool]]) -> list[ZoneEdge]:
    """The per-sensor edges in a sequence of zone states (for leveling)."""
    out = []
    up, dn = start_up, start_dn
    for ts, new_up, new_dn in changes:
        if new_up != up:
            out.append(ZoneEdge(ts, "up", new_up))
        if new_dn != dn:
            out.append(ZoneEdge(ts, "dn", new_dn))
        up, dn = new_up, new_dn
    return out


@dataclass(frozen=True, slots=True)
class FloorUpdate:
    from_floor: int | None
    to_floor: int | None
    lost: bool  # the trip contradicted the anchor: floor numbers are unknown again
    anchored: bool


class FloorTracker:
    """Relative landing position of one car, and its anchor to floor numbers."""

    def __init__(self, floor_count: int | None, lowest_floor: int) -> None:
        self._count = floor_count
        self._lowest = lowest_floor
        self._pos: float | None = None  # landing index relative to `_origin`; x.5 = between
        self._lo = self._hi = 0
        self._anchored = False

    @property
    def anchored(self) -> bool:
        return self._anchored

    def reset(self) -> None:
        """Position unknown (board reboot, ambiguous pulses): start tracking afresh."""
        self._pos = None
        self._anchored = False

    def beyond_terminal(self) -> int:
        """+1 when the anchored car is above the top landing, -1 below the bottom one, else 0."""
        if not self._anchored or self._pos is None:
            return 0
        return 1 if self._pos > self._hi else (-1 if self._pos < self._lo else 0)

    def floor(self) -> int | None:
        if not self._anchored or self._pos is None or self._pos != int(self._pos):
            return None
        return self._lowest + int(self._pos) - self._lo

    def on_trip(self, direction: int, entries: int | None, started_in_zone: bool, ended_in_zone: bool) -> FloorUpdate:
        from_floor = self.floor() if started_in_zone else None
        if entries == 0 and started_in_zone and ended_in_zone and (self._pos is None or self._pos == int(self._pos)):
            return FloorUpdate(from_floor, from_floor, False, self._anchored)  # never left the landing
        if direction == 0 or entries is None:
            lost = self._anchored
            self.reset()
            return FloorUpdate(from_floor, None, lost, False)
        if self._pos is None:
            if not ended_in_zone or entries == 0:
                return FloorUpdate(None, None, False, False)
            self._pos = 0.0
            self._lo = self._hi = 0
            return FloorUpdate(None, None, False, False)
        pos = self._pos
        if entries == 0:
            # left a landing without reaching the next one: between the two
            if pos == int(pos) and not ended_in_zone:
                pos += 0.5 * direction
        else:
            first = math.floor(pos) + 1 if direction > 0 else math.ceil(pos) - 1
            pos = float(first + direction * (entries - 1))
            if not ended_in_zone:
                pos += 0.5 * direction
        self._pos = pos
        if pos == int(pos):
            self._lo, self._hi = min(self._lo, int(pos)), max(self._hi, int(pos))
        lost = False
        if self._count is not None:
            span = self._hi - self._lo
            if span > self._count - 1:
                lost = self._anchored
                # keep tracking from here; both ends must be seen again
                self._lo = self._hi = round(pos)
                self._anchored = False
            elif span == self._count - 1:
                self._anchored = True
        to_floor = self.floor() if ended_in_zone else None
        if from_floor is None and started_in_zone and to_floor is not None:
            from_floor = to_floor - direction * entries  # this trip completed the anchor
        return FloorUpdate(from_floor, to_floor, lost, self._anchored)
