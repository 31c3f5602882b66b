"""Fault types, the `FaultEvent` output, and the book that raises and clears each fault once.

A fault can be seen by several sources at once (the daemon's own rule on the inputs, the board's
EVENT, a sensor self-check). The book raises it when the first source sees it and clears it when
the last source lets go, so one real fault gives exactly one raised and one cleared message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .common import iso_utc, round_or_none, ts_ms

__all__ = ["GBT24476_CODES", "FaultBook", "FaultEvent", "FaultType", "ResponseSign"]


class FaultType(str, enum.Enum):
    ENTRAPMENT = "entrapment"
    STOPPED_OUTSIDE_DOOR_ZONE = "stopped_outside_door_zone"
    MOVING_WITH_DOOR_OPEN = "moving_with_door_open"
    DOOR_OPEN_TOO_LONG = "door_open_too_long"
    DOOR_REOPEN_LOOP = "door_reopen_loop"
    ABNORMAL_VIBRATION = "abnormal_vibration"
    LEVELING_FAULT = "leveling_fault"
    OVERSPEED = "overspeed"
    ALARM_BUTTON = "alarm_button"
    FLOOR_POSITION_LOST = "floor_position_lost"
    SENSOR_FAULT = "sensor_fault"
    BOARD_OFFLINE = "board_offline"
    # issue 20: what GB/T 24476 boxes report and the kit did not
    POWER_LOSS = "power_loss"  # the car's mains rail went off (IN_MAINS)
    OVERTRAVEL_TOP = "overtravel_top"  # 冲顶: stopped beyond the top landing's door zone
    OVERTRAVEL_BOTTOM = "overtravel_bottom"  # 蹲底: stopped beyond the bottom landing's door zone
    DOOR_FAILS_TO_OPEN = "door_fails_to_open"  # stopped level at a landing, someone inside, door shut


class ResponseSign(str, enum.Enum):
    """What the board saw of someone answering a fault (the first sign is the response time)."""

    INSPECTION = "inspection"  # the car-top inspection switch went on (a maintenance visit started)
    # The car moved at rescue speed while the fault was open: manual brake release from the machine
    # room, the controller's emergency electrical operation, or an automatic rescue device (the
    # board cannot tell these apart, and each is the fault being answered).
    RESCUE_MOVE = "rescue_move"



# Lift fault codes of GB/T 24476-2017 (fault information of the IoT data format) for the types
# that have one. Transcribed from secondary sources (the printed standard was not at hand while
# writing this): 1 passenger trapped, 2 door opened while running, 3 overspeed, 7 stopped outside
# the unlocking zone, 14 floor position lost. Check against the printed table before a platform
# relies on the numbers; every other type has no code (null upstream). The power loss, overtravel
# (冲顶/蹲底) and door-fails-to-open types added for issue 20 have codes in GB/T 24476 boxes, but
# their numbers could not be confirmed from any source at hand: they stay null rather than invented.
GBT24476_CODES: dict[FaultType, int] = {
    FaultType.ENTRAPMENT: 1,
    FaultType.MOVING_WITH_DOOR_OPEN: 2,
    FaultType.OVERSPEED: 3,
    FaultType.STOPPED_OUTSIDE_DOOR_ZONE: 7,
    FaultType.FLOOR_POSITION_LOST: 14,
}


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One raised or cleared fault (upstream kind `event`)."""

    car_id: str
    type: FaultType
    state: str  # "raised" | "cleared"
    event_ts: float
    raised_ts: float
    detail: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None  # cleared only
    response_s: float | None = None  # raised -> first sign of a response while active, when seen
    repair_s: float | None = None  # raised -> cleared, when a response was seen meanwhile
    response_sign: ResponseSign | None = None  # what that first sign was

    kind = "event"

    @property
    def key(self) -> str:
        """Stable across re-computation: the same fault instance always gives the same key."""
        return f"{self.car_id}:event:{self.type.value}:{ts_ms(self.raised_ts)}:{self.state}"

    @property
    def gbt24476_code(self) -> int | None:
        return GBT24476_CODES.get(self.type)

    def to_message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": self.type.value,
            "state": self.state,
            "event_ts": iso_utc(self.event_ts),
            "gbt24476_code": self.gbt24476_code,
            "detail": dict(self.detail),
        }
        if self.state == "cleared":
            msg["raised_ts"] = iso_utc(self.raised_ts)
            msg["duration_s"] = round_or_none(self.duration_s, 3)
            msg["response_s"] = round_or_none(self.response_s, 3)
            msg["repair_s"] = round_or_none(self.repair_s, 3)
            msg["response_sign"] = self.response_sign.value if self.response_sign is not None else None
        return msg


@dataclass(slots=True)
class _Active:
    raised_ts: float
    sources: set[str]
    detail: dict[str, Any]
    response_ts: float | None = None  # first sign of a response while active
    response_sign: ResponseSign | None = None


@dataclass(slots=True)
class _Recent:
    type: FaultType
    raised_ts: float
    responded: bool = False


class FaultBook:
    """Active faults of one car and the recent ones still waiting for a technician."""

    def __init__(self, car_id: str, response_lookback_s: float) -> None:
        self._car_id = car_id
        self._lookback_s = response_lookback_s
        self._active: dict[FaultType, _Active] = {}
        self._recent: list[_Recent] = []

    def is_active(self, ftype: FaultType) -> bool:
        return ftype in self._active

    def has_source(self, ftype: FaultType, source: str) -> bool:
        a = self._active.get(ftype)
        return a is not None and source in a.sources

    def sources(self, ftype: FaultType) -> frozenset[str]:
        a = self._active.get(ftype)
        return frozenset(a.sources) if a else frozenset()

    @property
    def active(self) -> tuple[FaultType, ...]:
        return tuple(self._active)

    def raise_(self, ftype: FaultType, ts: float, source: str = "host", **detail: Any) -> list[FaultEvent]:
        """Raise `ftype` from `source`; only the first source produces a message."""
        a = self._active.get(ftype)
        if a is not None:
            a.sources.add(source)
            return []
        d = {k: v for k, v in detail.items() if v is not None}
        d.setdefault("source", source)
        self._active[ftype] = _Active(raised_ts=ts, sources={source}, detail=d)
        self._recent = [r for r in self._recent if ts - r.raised_ts <= self._lookback_s]  # bounded
        self._recent.append(_Recent(ftype, ts))
        return [FaultEvent(self._car_id, ftype, "raised", ts, ts, detail=d)]

    def clear(self, ftype: FaultType, ts: float, source: str = "host", **detail: Any) -> list[FaultEvent]:
        """Let go of `ftype` from `source`; the last source to let go clears the fault."""
        a = self._active.get(ftype)
        if a is None or source not in a.sources:
            return []
        a.sources.discard(source)
        if a.sources:
            return []
        del self._active[ftype]
        ts = max(ts, a.raised_ts)
        d = {k: v for k, v in detail.items() if v is not None}
        response = None if a.response_ts is None else a.response_ts - a.raised_ts
        repair = None if a.response_ts is None else ts - a.raised_ts
        return [
            FaultEvent(
                self._car_id,
                ftype,
                "cleared",
                ts,
                a.raised_ts,
                detail=d,
                duration_s=ts - a.raised_ts,
                response_s=response,
                repair_s=repair,
                response_sign=a.response_sign,
            )
        ]

    def respond(self, ts: float, sign: ResponseSign, types: tuple[FaultType, ...]) -> None:
        """Someone answered: the faults of `types` still active and not answered yet take `ts` as
        their response (the first sign wins)."""
        for ftype in types:
            a = self._active.get(ftype)
            if a is not None and a.response_ts is None and a.raised_ts <= ts:
                a.response_ts, a.response_sign = ts, sign

    def clear_source_everywhere(self, source: str, ts: float) -> list[FaultEvent]:
        """E.g. the board rebooted: whatever it had raised is void."""
        out: list[FaultEvent] = []
        for ftype in [t for t, a in self._active.items() if source in a.sources]:
            out += self.clear(ftype, ts, source, reason=f"{source}_reset")
        return out

    def on_visit_start(self, ts: float) -> list[dict[str, Any]]:
        """A technician arrived: the response time of every fault raised since the lookback that no
        earlier visit answered. Returned for the maintenance record; active faults also carry it
        into their cleared message."""
        self._recent = [r for r in self._recent if ts - r.raised_ts <= self._lookback_s]
        answered = []
        for r in self._recent:
            if r.responded or r.raised_ts > ts:
                continue
            r.responded = True
            a = self._active.get(r.type)
            if a is not None and a.raised_ts == r.raised_ts and a.response_ts is None:
                a.response_ts, a.response_sign = ts, ResponseSign.INSPECTION
            answered.append(
                {"type": r.type.value, "raised_ts": iso_utc(r.raised_ts), "response_s": round(float(ts - r.raised_ts), 3)}
            )
        return answered
