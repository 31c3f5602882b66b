"""The working calendar the report measures repairs in: half a working day and the 3-day limit."""

from __future__ import annotations

from datetime import date

import pytest

from liftwatch.edge_daemon.report.figures import ContractTargets, Period, car_figures
from liftwatch.edge_daemon.report.workhours import CalendarError, WorkCalendar
from support.report_synth import CarLog, local_ts

CST = 8.0
WEEK = Period(date(2026, 11, 2), date(2026, 11, 15))  # Monday 2 November to Sunday 15 November


def test_default_week_counts_nine_to_six_with_lunch_off() -> None:
    cal = WorkCalendar()
    assert cal.working_s(local_ts("2026-11-02", "08:00"), local_ts("2026-11-02", "19:00"), CST) == 8 * 3600
    assert cal.working_s(local_ts("2026-11-02", "11:30"), local_ts("2026-11-02", "13:30"), CST) == 3600
    # Friday 16:00 -> Monday 10:00: 66 h on the clock, 3 working hours
    assert cal.working_s(local_ts("2026-11-06", "16:00"), local_ts("2026-11-09", "10:00"), CST) == 3 * 3600
    assert cal.working_s(local_ts("2026-11-07", "10:00"), local_ts("2026-11-08", "20:00"), CST) == 0


def test_holidays_and_make_up_days() -> None:
    cal = WorkCalendar.from_mapping({"holidays": ["2026-11-09"], "workdays": [date(2026, 11, 7)]})
    # the Saturday is worked like a Monday; the Monday is a holiday
    assert cal.working_s(local_ts("2026-11-06", "16:00"), local_ts("2026-11-10", "10:00"), CST) == (2 + 8 + 1) * 3600


def test_three_working_days_deadline() -> None:
    cal = WorkCalendar.from_mapping({"repair_max_days": "working"})
    # raised Thursday 15:00: Friday, Monday, Tuesday -> Tuesday 15:00
    assert cal.repair_deadline(local_ts("2026-11-05", "15:00"), 3, CST) == local_ts("2026-11-10", "15:00")
    # raised Saturday: counted from Monday 09:00 -> Thursday 09:00
    assert cal.repair_deadline(local_ts("2026-11-07", "11:00"), 3, CST) == local_ts("2026-11-12", "09:00")
    # raised Friday 19:00, after hours: from Monday 09:00
    assert cal.repair_deadline(local_ts("2026-11-06", "19:00"), 3, CST) == local_ts("2026-11-12", "09:00")
    assert WorkCalendar().repair_deadline(local_ts("2026-11-06", "19:00"), 3, CST) == local_ts("2026-11-09", "19:00")


def test_half_a_working_day_in_the_report() -> None:
    """A fault raised Friday 16:00 and repaired Monday 10:00 took 3 working hours: within half a
    working day, though 66 h passed. With the Monday a holiday it is not."""
    log = CarLog()
    log.fault("overspeed", local_ts("2026-11-06", "16:00"), local_ts("2026-11-09", "10:00"), code=3)
    log.visit(local_ts("2026-11-06", "16:20"), 60)
    (c,) = car_figures("car-1", log.messages, WEEK).faults
    assert c.repair_working_s == 3 * 3600 and c.repair_within_half_day and not c.repair_over_max
    holiday = ContractTargets(calendar=WorkCalendar.from_mapping({"holidays": ["2026-11-09"]}))
    (c,) = car_figures("car-1", log.messages, WEEK, holiday).faults
    assert c.repair_working_s == 2 * 3600 and c.repair_within_half_day  # Monday off: 16:00-18:00 only
    night_shift = ContractTargets(calendar=WorkCalendar.from_mapping({"sat": ["00:00-24:00"]}))
    (c,) = car_figures("car-1", log.messages, WEEK, night_shift).faults
    assert c.repair_working_s == (2 + 24 + 1) * 3600 and not c.repair_within_half_day


def test_three_days_counted_as_the_calendar_says() -> None:
    """Raised Thursday 15:00, repaired the next Tuesday 12:00: 4.9 days on the clock (over 3), but
    within 3 working days (Friday, Monday, Tuesday 15:00)."""
    log = CarLog()
    log.fault("overspeed", local_ts("2026-11-05", "15:00"), local_ts("2026-11-10", "12:00"), code=3)
    log.visit(local_ts("2026-11-05", "15:10"), 60)
    f = car_figures("car-1", log.messages, WEEK)
    assert f.repairs_over_max == 1
    assert "1 repair(s) longer than 3 calendar days" in [x.en for x in f.verdict.findings]
    working = ContractTargets(calendar=WorkCalendar.from_mapping({"repair_max_days": "working"}))
    f = car_figures("car-1", log.messages, WEEK, working)
    assert f.repairs_over_max == 0
    log.fault("overspeed", local_ts("2026-11-11", "15:00"), local_ts("2026-11-16", "15:01"), code=3)
    log.visit(local_ts("2026-11-11", "15:10"), 60)
    f = car_figures("car-1", log.messages, WEEK, working)
    assert f.repairs_over_max == 1
    assert "1 repair(s) longer than 3 working days" in [x.en for x in f.verdict.findings]


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"mon": ["09:00"]}, "mon"),
        ({"mon": ["09:60-10:00"]}, "mon"),
        ({"mon": [9]}, "mon"),
        ({"holidays": "2026-10-01"}, "holidays"),
        ({"holidays": [20261001]}, "holidays"),
        ({"repair_max_days": 3}, "repair_max_days"),
        ({"weekend": []}, "weekend"),
    ],
)
def test_malformed_calendars_are_typed_errors(table, field) -> None:
    with pytest.raises(CalendarError) as err:
        WorkCalendar.from_mapping(table)
    assert err.value.field == field and isinstance(err.value, ValueError)
