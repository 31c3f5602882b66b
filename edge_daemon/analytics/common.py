"""Small helpers shared by the analytics outputs: UTC timestamps and stable message keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

__all__ = ["Span", "day_string", "iso_utc", "local_day", "round_or_none", "ts_ms"]


def iso_utc(ts: float) -> str:
    """Unix seconds -> ISO 8601 UTC with milliseconds, e.g. 2026-11-25T19:30:00.123Z."""
    dt = datetime.fromtimestamp(round(float(ts), 3), tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def ts_ms(ts: float) -> int:
    """Whole milliseconds, the resolution keys are built from (stable across re-computation)."""
    return round(float(ts) * 1000)


def local_day(ts: float, utc_offset_h: float) -> int:
    """Day number (days since 1970-01-01 local) of `ts` in a fixed-offset time zone."""
    return int((ts + utc_offset_h * 3600) // 86400)


def day_string(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, tz=UTC).strftime("%Y-%m-%d")


def round_or_none(v: float | None, nd: int) -> float | None:
    return None if v is None else round(float(v), nd)


class Span:
    """A car's stretch of time, start_ts to end_ts (a trip, a maintenance visit): its key and the
    fields its message opens with. The frozen dataclass beside it declares the fields."""

    __slots__ = ()
    car_id: str
    start_ts: float
    end_ts: float
    kind: ClassVar[str]  # the upstream kind, also the middle of the key

    @property
    def key(self) -> str:
        return f"{self.car_id}:{self.kind}:{ts_ms(self.key_start_ts)}"

    @property
    def key_start_ts(self) -> float:
        """The start the key is made of: the start, unless a revision moved it (a maintenance visit)."""
        return self.start_ts

    @property
    def duration_s(self) -> float:
        return self.end_ts - self.start_ts

    def span_message(self) -> dict[str, Any]:
        return {
            "start_ts": iso_utc(self.start_ts),
            "end_ts": iso_utc(self.end_ts),
            "duration_s": round(float(self.duration_s), 3),
        }
