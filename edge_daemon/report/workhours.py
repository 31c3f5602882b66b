"""The site's working calendar: what "half a working day" and "3 working days" count.

Maintenance contracts promise repairs "within half a working day": four hours of the site's
working time, not four hours on the clock (a fault raised at 17:00 on a Friday is not late at 21:00).
A calendar is a week of working periods per weekday, public holidays taken out, and make-up
working days (调休: a Saturday or Sunday worked in exchange for a holiday) put in with the hours of
a normal Monday. Times are local, in the report's fixed UTC offset.

Config (`[calendar]` for the site, `[boards.calendar]` for one car; docs/report.md)::

    [calendar]
    mon = ["08:30-12:00", "13:30-17:30"]   # each weekday: a list of HH:MM-HH:MM periods; [] = off
    sat = []
    holidays = [2026-10-01, "2026-10-02"]   # TOML dates or YYYY-MM-DD strings
    workdays = [2026-09-27]                 # make-up working days
    repair_max_days = "calendar"            # "calendar": 3 x 24 h on the clock; "working": 3 working days
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping

from liftwatch.errors import LiftwatchError

__all__ = ["CalendarError", "WorkCalendar", "WEEKDAYS"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DEFAULT_DAY = ((9 * 60, 12 * 60), (13 * 60, 18 * 60))  # 09:00-12:00, 13:00-18:00: 8 working hours
_BASES = ("calendar", "working")

Periods = tuple[tuple[int, int], ...]  # (start, end) minutes after local midnight, sorted, disjoint


class CalendarError(LiftwatchError, ValueError):
    """A working calendar that cannot be used; `field` names the key at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"calendar: {field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    """Working periods per weekday (Monday first), holidays and make-up working days."""

    week: tuple[Periods, ...] = (_DEFAULT_DAY,) * 5 + ((), ())
    holidays: frozenset[date] = field(default_factory=frozenset)
    workdays: frozenset[date] = field(default_factory=frozenset)
    repair_max_days: str = "calendar"  # what "no repair beyond N days" counts: clock days or working days

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise CalendarError("week", f"needs 7 days, got {len(self.week)}")
        if self.repair_max_days not in _BASES:
            raise CalendarError("repair_max_days", f"one of {', '.join(_BASES)}, got {self.repair_max_days!r}")
        if not any(self.week) and not self.workdays:
            raise CalendarError("week", "no working hours on any day")
        if both := self.holidays & self.workdays:
            raise CalendarError("workdays", f"{min(both)} is also a holiday")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> WorkCalendar:
        """A calendar from its config table (module docstring); weekdays not given keep the default."""
        unknown = set(table) - {*WEEKDAYS, "holidays", "workdays", "repair_max_days"}
        if unknown:
            raise CalendarError(sorted(unknown)[0], "unknown calendar key")
        week = list(cls().week)
        for i, name in enumerate(WEEKDAYS):
            if name in table:
                week[i] = _periods(table[name], name)
        basis = table.get("repair_max_days", "calendar")
        if not isinstance(basis, str):
            raise CalendarError("repair_max_days", f"expected a string, got {basis!r}")
        return cls(
            tuple(week),
            _dates(table.get("holidays", []), "holidays"),
            _dates(table.get("workdays", []), "workdays"),
            basis,
        )

    def periods_on(self, day: date) -> Periods:
        if day in self.holidays:
            return ()
        if day in self.workdays:
            return self.week[0] or _DEFAULT_DAY  # a make-up day is worked like a Monday
        return self.week[day.weekday()]

    def working_s(self, start_ts: float, end_ts: float, utc_offset_h: float) -> float:
        """Working seconds between two instants."""
        if end_ts <= start_ts:
            return 0.0
        tz = timezone(timedelta(hours=utc_offset_h))
        day = datetime.fromtimestamp(start_ts, tz).date()
        last = datetime.fromtimestamp(end_ts, tz).date()
        total = 0.0
        while day <= last:
            midnight = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
            for a, b in self.periods_on(day):
                lo, hi = max(start_ts, midnight + a * 60), min(end_ts, midnight + b * 60)
                total += max(0.0, hi - lo)
            day += timedelta(days=1)
        return total

    def repair_deadline(self, raised_ts: float, days: int, utc_offset_h: float) -> float:
        """When a repair of a fault raised at `raised_ts` becomes later than `days` days.

        `calendar`: `days` x 24 h. `working`: counted from the raise, or from the next working
        period's start when raised outside working hours, to the same time of day `days` working
        days later."""
        if self.repair_max_days == "calendar":
            return raised_ts + days * 86400.0
        tz = timezone(timedelta(hours=utc_offset_h))
        start = datetime.fromtimestamp(raised_ts, tz)
        day = start.date()
        minute = start.hour * 60 + start.minute + start.second / 60
        for _ in range(366):  # the first working moment at or after the raise
            periods = self.periods_on(day)
            inside = [p for p in periods if p[1] > minute]
            if inside:
                minute = max(minute, inside[0][0])
                break
            day, minute = day + timedelta(days=1), 0.0
        else:
            raise CalendarError("week", "no working period within a year")
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            if self.periods_on(day):
                counted += 1
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
        return midnight + minute * 60

    def describe(self) -> tuple[str, str]:
        """The calendar in a line (zh, en), for the report beside the targets it measures."""
        names_zh = "一二三四五六日"
        days = [i for i in range(7) if self.week[i]]
        hours = sum(b - a for a, b in self.week[days[0]]) / 60 if days else 0.0
        span_en = ", ".join(WEEKDAYS[i].capitalize() for i in days) or "none"
        span_zh = "、".join("周" + names_zh[i] for i in days) or "无"
        extra = f"; {len(self.holidays)} holiday(s), {len(self.workdays)} make-up day(s)"
        extra_zh = f"；节假日 {len(self.holidays)} 天，调休工作日 {len(self.workdays)} 天"
        return f"工作日 {span_zh}，每天 {hours:g} 小时{extra_zh}", f"working days {span_en}, {hours:g} h a day{extra}"


def _periods(value: Any, name: str) -> Periods:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CalendarError(name, f'expected a list of "HH:MM-HH:MM" strings, got {value!r}')
    out = []
    for text in value:
        try:
            a, b = (_minute(part) for part in text.split("-"))
        except ValueError:
            raise CalendarError(name, f'{text!r} is not "HH:MM-HH:MM"') from None
        if b <= a:
            raise CalendarError(name, f"{text!r} ends before it starts")
        out.append((a, b))
    out.sort()
    for (_, b1), (a2, _) in zip(out, out[1:]):
        if a2 < b1:
            raise CalendarError(name, "periods overlap")
    return tuple(out)


def _minute(text: str) -> int:
    hh, mm = text.strip().split(":")
    h, m = int(hh), int(mm)
    if not (0 <= h <= 24 and 0 <= m < 60 and h * 60 + m <= 24 * 60):
        raise ValueError(text)
    return h * 60 + m


def _dates(value: Any, name: str) -> frozenset[date]:
    if not isinstance(value, list):
        raise CalendarError(name, f"expected a list of dates, got {value!r}")
    out = set()
    for v in value:
        if isinstance(v, date) and not isinstance(v, datetime):
            out.add(v)
            continue
        if not isinstance(v, str):
            raise CalendarError(name, f"{v!r} is not a date")
        try:
            out.add(date.fromisoformat(v))
        except ValueError:
            raise CalendarError(name, f"{v!r} is not a YYYY-MM-DD date") from None
    return frozenset(out)
