"""The report's figures and contract judgements on synthetic message sets with known answers."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liftwatch.edge_daemon.report.figures import (
    CarFigures,
    ContractTargets,
    Period,
    Severity,
    car_figures,
    linear_slope,
    union_s,
)
from liftwatch.edge_daemon.report.fleet import rank_fleet, risk_of
from support.report_synth import CarLog, clean_week, known_week, local_ts

WEEK = Period(date(2026, 11, 2), date(2026, 11, 8))


def test_period_is_local_days() -> None:
    assert WEEK.n_days == 7
    assert WEEK.start_ts == local_ts("2026-11-02")
    assert WEEK.end_ts == local_ts("2026-11-09")
    assert WEEK.day_of(local_ts("2026-11-02", "23:59")) == "2026-11-02"
    with pytest.raises(ValueError):
        Period(date(2026, 11, 8), date(2026, 11, 2))


def test_three_faults_one_late_response() -> None:
    """Responses of 20, 50 and 10 minutes to three long faults: exactly one is late."""
    log = CarLog()
    for day, minutes in (("2026-11-03", 20), ("2026-11-04", 50), ("2026-11-05", 10)):
        raised = local_ts(day, "10:00")
        log.fault("stopped_outside_door_zone", raised, raised + 2 * 3600, code=7)
        log.visit(raised + minutes * 60, 60)
    f = car_figures("car-1", log.messages, WEEK)
    assert [c.response_s for c in f.faults] == [1200.0, 3000.0, 600.0]
    assert [c.response_late for c in f.faults] == [False, True, False]
    assert (f.judged_faults, f.late_responses, f.response_s_max) == (3, 1, 3000.0)
    assert f.repairs_within_half_day == 3 and f.repairs_judged == 3
    assert f.verdict.severity is Severity.BREACH
    assert "1 fault response(s) later than 30 min" in [x.en for x in f.verdict.findings]


def test_known_week_figures() -> None:
    f = car_figures("car-1", known_week().messages, WEEK)
    assert f.trips_total == 280 and f.trips_per_day == 40.0
    assert f.entrapments == 1 and f.entrapment_s_max == 25 * 60
    # entrapment (20 min, OK), stopped outside the door zone (50 min, late), leveling fault (no visit
    # within a day: late); the 3-minute door held open is listed but not judged.
    assert [c.type for c in f.faults] == [
        "entrapment",
        "stopped_outside_door_zone",
        "door_open_too_long",
        "leveling_fault",
    ]
    assert [c.judged for c in f.faults] == [True, True, False, True]
    assert (f.judged_faults, f.late_responses, f.unanswered) == (3, 2, 1)
    # repairs: 25 min (within 4 h), Wednesday 14:00-19:00 (5 h on the clock, but the working day
    # ends at 18:00: 4 working hours, within), open for 64 h so far (not, and not yet over 3 days)
    assert (f.repairs_judged, f.repairs_within_half_day, f.repairs_over_max) == (3, 2, 0)
    assert f.repair_half_day_share == pytest.approx(2 / 3)
    assert f.faults[1].repair_working_s == 4 * 3600
    assert f.faults[3].open and f.faults[3].repair_s == pytest.approx(f.data_end_ts - local_ts("2026-11-06", "08:00"))
    assert (len(f.visits), f.short_visits, f.maintenance_minutes) == (3, 1, 125.0)
    # out of service: entrapment 25 min + stopped outside the door zone 5 h
    assert f.downtime_s == 25 * 60 + 5 * 3600
    assert f.availability == pytest.approx(1 - 19500 / (7 * 86400))
    assert (f.rq_trips_judged, f.rq_trips_over_limit) == (280, 2)
    assert (f.leveling_stops, f.off_level_stops) == (280, 1)
    assert (f.door_cycles, f.door_reopenings) == (350, 35)
    assert f.verdict.severity is Severity.BREACH
    en = [x.en for x in f.verdict.findings]
    assert en[:3] == [
        "1 fault(s) with no response recorded",
        "1 fault response(s) later than 30 min",
        "1 maintenance visit(s) shorter than 40 min",
    ]
    assert not any("half a working day" in x for x in en)
    assert "1 entrapment(s)" in en


def test_clean_week_is_compliant() -> None:
    f = car_figures("car-ok", clean_week().messages, WEEK)
    assert f.verdict.severity is Severity.OK and f.verdict.findings == ()
    assert f.availability == 1.0 and f.trips_per_day == 60.0 and f.judged_faults == 0
    assert f.visit_gap_s_max == pytest.approx(local_ts("2026-11-07", "09:00") - local_ts("2026-11-02", "09:00"))


def test_other_cars_are_ignored() -> None:
    msgs = known_week("car-1").messages + clean_week("car-2").messages
    assert car_figures("car-1", msgs, WEEK).trips_total == 280
    assert car_figures("car-2", msgs, WEEK).trips_total == 420


def test_short_fault_is_listed_not_judged_but_long_one_is() -> None:
    log = CarLog()
    log.fault("leveling_fault", local_ts("2026-11-03", "09:00"), local_ts("2026-11-03", "09:29"))
    log.fault("leveling_fault", local_ts("2026-11-04", "09:00"), local_ts("2026-11-04", "09:45"))
    log.fault("moving_with_door_open", local_ts("2026-11-05", "09:00"), local_ts("2026-11-05", "09:45"), code=2)
    f = car_figures("car-1", log.messages, WEEK)
    assert [c.judged for c in f.faults] == [False, True, True]
    # nobody came to either: a leveling fault may clear by itself (load), a door open while moving may not
    assert f.faults[1].self_cleared and not f.faults[1].response_late and not f.faults[1].no_response
    assert f.faults[2].no_response and f.faults[2].response_late and not f.faults[2].self_cleared
    assert (f.late_responses, f.unanswered) == (1, 1)


def test_a_fault_still_open_within_the_target_is_not_judged_on_its_response_yet() -> None:
    log = CarLog()
    raised = local_ts("2026-11-03", "10:00")
    log.fault("entrapment", raised, None, code=1)
    log.trip(raised + 10 * 60)  # the data end 10 minutes after the raise
    f = car_figures("car-1", log.messages, WEEK)
    (ent,) = f.faults
    assert ent.judged and ent.open and not ent.no_response and not ent.response_late
    log.trip(raised + 31 * 60)  # now past the target, still nobody: no response recorded
    (ent,) = car_figures("car-1", log.messages, WEEK).faults
    assert ent.no_response and ent.response_late


def _week_of_unjudged_faults(*faults: tuple) -> CarFigures:
    """The week's figures with these faults (CarLog.fault arguments), each listed and none judged."""
    log = CarLog()
    for fault in faults:
        log.fault(*fault)
    f = car_figures("car-1", log.messages, WEEK)
    assert [c.judged for c in f.faults] == [False] * len(faults)
    return f


def test_passenger_signals_are_listed_never_judged() -> None:
    """Movers hold the door for an hour: not the maintenance company's fault."""
    f = _week_of_unjudged_faults(
        ("door_open_too_long", local_ts("2026-11-04", "09:00"), local_ts("2026-11-04", "10:00")),
        ("alarm_button", local_ts("2026-11-05", "09:00")),
    )
    assert f.late_responses == 0 and f.verdict.severity is Severity.OK


def test_kit_faults_are_never_judged_and_give_offline_time() -> None:
    f = _week_of_unjudged_faults(
        ("board_offline", local_ts("2026-11-03", "01:00"), local_ts("2026-11-03", "03:00")),
        ("sensor_fault", local_ts("2026-11-04", "01:00")),
    )
    assert f.offline_s == 7200.0 and f.availability == 1.0 and f.late_responses == 0


def test_repair_over_three_days_is_a_breach() -> None:
    log = CarLog()
    log.fault("overspeed", local_ts("2026-11-02", "12:00"), local_ts("2026-11-06", "12:00"), code=3)
    log.visit(local_ts("2026-11-02", "12:10"), 90)
    f = car_figures("car-1", log.messages, WEEK)
    assert (f.repairs_over_max, f.late_responses) == (1, 0)
    assert f.downtime_s == 4 * 86400
    assert any(x.en == "1 repair(s) longer than 3 calendar days" for x in f.verdict.findings)


def test_daemon_response_wins_and_visit_in_progress_means_zero() -> None:
    log = CarLog()
    log.fault("entrapment", local_ts("2026-11-03", "10:00"), local_ts("2026-11-03", "10:05"), response_s=900.0)
    log.visit(local_ts("2026-11-04", "09:00"), 60)
    log.fault("leveling_fault", local_ts("2026-11-04", "09:30"), local_ts("2026-11-04", "11:00"))
    f = car_figures("car-1", log.messages, WEEK)
    assert [c.response_s for c in f.faults] == [900.0, 0.0]


def test_a_visit_the_data_ended_inside_is_not_judged_short() -> None:
    log = CarLog()
    log.visit(local_ts("2026-11-03", "14:00"), 20, in_progress=True)  # the data end with the technician on site
    log.visit(local_ts("2026-11-05", "09:00"), 20)
    f = car_figures("car-1", log.messages, WEEK)
    assert [v.too_short for v in f.visits] == [False, True] and f.short_visits == 1


def test_cleared_without_raised_ts_pairs_by_duration() -> None:
    log = CarLog()
    log.fault("entrapment", local_ts("2026-11-03", "10:00"), local_ts("2026-11-03", "10:40"), with_raised_ts=False)
    f = car_figures("car-1", log.messages, WEEK)
    assert len(f.faults) == 1 and f.faults[0].cleared_ts == local_ts("2026-11-03", "10:40")


def test_fault_across_period_start_counts_downtime_only_inside() -> None:
    log = CarLog()
    log.fault("stopped_outside_door_zone", local_ts("2026-11-01", "22:00"), local_ts("2026-11-02", "02:00"))
    f = car_figures("car-1", log.messages, WEEK)
    assert f.faults == () and f.downtime_s == 2 * 3600


def test_visit_after_period_end_answers_a_late_evening_fault() -> None:
    log = CarLog()
    log.fault("entrapment", local_ts("2026-11-08", "23:50"), local_ts("2026-11-09", "00:30"))
    log.visit(local_ts("2026-11-09", "00:10"), 45)
    f = car_figures("car-1", log.messages, WEEK)
    assert f.faults[0].response_s == 20 * 60 and not f.faults[0].response_late
    assert f.visits == ()  # the visit itself belongs to the next period


def test_daily_records_stand_in_for_dropped_trips() -> None:
    log = CarLog()
    log.daily("2026-11-03", trips=10, door_cycles=12, until="08:00")
    log.daily("2026-11-03", trips=55, door_cycles=70, door_reopenings=7)
    log.daily("2026-11-04", trips=45, door_cycles=50)
    f = car_figures("car-1", log.messages, WEEK)
    assert f.trips_total == 100 and f.door_cycles == 120 and f.door_reopenings == 7
    assert [d.trips for d in f.days] == [None, 55, 45, None, None, None, None]
    assert any("daily records" in n for n in f.notes)


def test_latest_partial_daily_record_wins_until_the_complete_one() -> None:
    log = CarLog()
    log.daily("2026-11-03", trips=10, door_cycles=12, until="08:00")
    log.daily("2026-11-03", trips=30, door_cycles=40, until="12:00")
    log.daily("2026-11-03", trips=20, door_cycles=25, until="10:00")  # arrives late, older
    assert car_figures("car-1", log.messages, WEEK).days[1].trips == 30
    log.daily("2026-11-03", trips=55, door_cycles=70)
    log.daily("2026-11-03", trips=40, door_cycles=50, until="18:00")
    assert car_figures("car-1", log.messages, WEEK).days[1].trips == 55


def test_maintenance_gap_over_15_days() -> None:
    month = Period(date(2026, 11, 1), date(2026, 11, 30))
    log = CarLog()
    log.visit(local_ts("2026-11-02", "09:00"), 50)
    log.visit(local_ts("2026-11-20", "09:00"), 50)
    f = car_figures("car-1", log.messages, month)
    assert f.visit_gap_s_max == pytest.approx(18 * 86400)
    assert any("maintenance gap of 18.0 days" in x.en for x in f.verdict.findings)


def test_ride_quality_trend_is_found() -> None:
    log = CarLog()
    for d in range(2, 9):
        for i in range(5):
            log.trip(local_ts(f"2026-11-0{d}", "08:00") + i * 600, z_a95=8.0 + (d - 2), z_max=14.0)
    f = car_figures("car-1", log.messages, WEEK)
    assert f.z_a95_trend_mg_per_30d == pytest.approx(30.0)
    assert f.rq_trips_over_limit == 0
    assert any("rising 30.0 mg per 30 days" in x.en for x in f.verdict.findings)
    assert f.verdict.severity is Severity.ATTENTION


def test_targets_are_configurable() -> None:
    log = CarLog()
    log.visit(local_ts("2026-11-03", "09:00"), 35)
    assert car_figures("car-1", log.messages, WEEK).short_visits == 1
    assert car_figures("car-1", log.messages, WEEK, ContractTargets(maintenance_min_s=30 * 60)).short_visits == 0


def test_unknown_fields_and_values_are_tolerated() -> None:
    log = known_week()
    for m in log.messages:
        m["future_field"] = {"x": 1}
    log.messages.append(
        {
            "v": 2,
            "id": "x1",
            "kind": "door_snapshot",
            "site": "estate-a",
            "car": "car-1",
            "board": None,
            "ts": "2026-11-03T00:00:00Z",
        }
    )
    log.messages.append(
        {
            "v": 1,
            "id": "x2",
            "kind": "event",
            "site": "estate-a",
            "car": "car-1",
            "board": None,
            "ts": "2026-11-03T00:00:00Z",
            "type": "brand_new_fault",
            "state": "raised",
            "event_ts": "not a time",
            "detail": None,
        }
    )
    f = car_figures("car-1", log.messages, WEEK)
    assert f.trips_total == 280 and f.judged_faults == 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-20, 120), st.integers(0, 40)), max_size=12))
def test_union_matches_a_unit_grid(spans: list[tuple[int, int]]) -> None:
    intervals = [(float(a), float(a + n)) for a, n in spans]
    covered = sum(any(a <= x < b for a, b in intervals) for x in range(0, 100))
    assert union_s(intervals, 0.0, 100.0) == covered


def test_linear_slope() -> None:
    assert linear_slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert linear_slope([0, 1], [0, 1]) is None
    assert linear_slope([1, 1, 1], [0, 1, 2]) is None


def test_risk_score_by_hand_and_ranking() -> None:
    bad = car_figures("car-1", known_week().messages, WEEK)
    good = car_figures("car-ok", clean_week().messages, WEEK)
    # entrapment 10, 2 late responses 10, half-day rate 67 % >= 60 % 0, 1 short visit 3, 3 judged faults 6,
    # 2 of 280 trips over limits 10 * 2/280, availability 2 per point below 100 %
    expected = 10 + 10 + 0 + 3 + 6 + round(10 * 2 / 280, 2) + round(2 * 100 * 19500 / (7 * 86400), 2)
    r = risk_of(bad)
    assert r.score == round(expected, 1)
    assert r.band == ("high", "高")
    assert {c.name: c.points for c in r.components}["late responses"] == 10
    ranked = rank_fleet([good, bad])
    assert [x.figures.car for x in ranked] == ["car-1", "car-ok"]
    assert ranked[1].score == 0 and ranked[1].band == ("low", "低")


def _status(site: str, ts: float, drops: dict) -> dict:
    from liftwatch.edge_daemon.envelope import make_message, utc_iso

    return make_message(
        "status",
        site,
        None,
        None,
        utc_iso(ts),
        f"status:{ts}",
        {
            "pi": "pi-1",
            "state": "online",
            "reason": "periodic",
            "software": "0.1.0",
            "uptime_s": 5,
            "upstream": {},
            "outbox": {},
            "drops": drops,
        },
    )


def test_outbox_drops_in_the_period_are_reported() -> None:
    msgs = known_week().messages + [
        _status("estate-a", local_ts("2026-11-01", "12:00"), {"outbox_full": {"trip": 3}}),
        _status("estate-a", local_ts("2026-11-05", "12:00"), {"outbox_full": {"trip": 8}}),
        _status("estate-a", local_ts("2026-11-08", "12:00"), {"outbox_full": {"trip": 10, "raw": 2}}),
        _status("estate-a", local_ts("2026-11-09", "12:00"), {"outbox_full": {"trip": 50}}),  # after the period
        _status("estate-z", local_ts("2026-11-08", "12:00"), {"outbox_full": {"trip": 99}}),  # another site
    ]
    f = car_figures("car-1", msgs, WEEK)
    assert f.dropped == {"trip": 7, "raw": 2}
    assert any("dropped 2 raw, 7 trip message(s)" in n for n in f.notes)
    assert car_figures("car-1", known_week().messages, WEEK).dropped == {}


def test_period_still_running_is_judged_over_the_days_covered() -> None:
    """A November report made on the 5th: per-day figures over 5 days, not 30."""
    month = Period(date(2026, 11, 1), date(2026, 11, 30))
    log = CarLog()
    for d in range(1, 6):
        log.daily(f"2026-11-0{d}", trips=100, door_cycles=120)
    log.fault("overspeed", local_ts("2026-11-03", "10:00"), local_ts("2026-11-03", "22:00"))
    f = car_figures("car-1", log.messages, month)
    assert f.observed_days == 5 and f.trips_per_day == 100.0
    assert f.availability == pytest.approx(1 - 12 / (5 * 24))
    assert any("first 5 of 30 days" in n for n in f.notes)
    assert car_figures("car-1", known_week().messages, WEEK).observed_days == 7


def test_a_contract_breach_is_never_low_risk() -> None:
    log = CarLog()
    log.visit(local_ts("2026-11-03", "09:00"), 15)  # one short visit: 3 points, below the low band's 10
    r = risk_of(car_figures("car-1", log.messages, WEEK))
    assert r.score == 3 and r.figures.verdict.severity is Severity.BREACH
    assert r.band == ("medium", "中")


def test_door_cycle_messages_stand_in_for_missing_daily_records() -> None:
    from liftwatch.edge_daemon.envelope import make_message, utc_iso

    log = CarLog()
    log.daily("2026-11-03", trips=10, door_cycles=12, door_reopenings=1)
    for i, reopen in enumerate((0, 2, 1)):  # 11-04 has no daily record, only door cycles
        t = local_ts("2026-11-04", "09:00") + i * 60
        log.messages.append(
            make_message(
                "door_cycle",
                "estate-a",
                "car-1",
                "b-0001",
                utc_iso(t + 10),
                f"dc{i}",
                {"open_ts": utc_iso(t), "close_ts": utc_iso(t + 8), "open_s": 8.0, "reopenings": reopen, "floor": None},
            )
        )
    f = car_figures("car-1", log.messages, WEEK)
    assert [(d.door_cycles, d.door_reopenings) for d in f.days[1:3]] == [(12, 1), (3, 3)]
    assert (f.door_cycles, f.door_reopenings) == (15, 4)


def test_faults_say_where_they_happened_by_the_landing_name() -> None:
    from liftwatch.edge_daemon.report.html import render_car_html

    log = CarLog()
    log.fault("door_fails_to_open", local_ts("2026-11-03", "10:00"), local_ts("2026-11-03", "10:02"))
    next(m for m in log.messages if m.get("state") == "raised")["detail"] = {"floor": 1, "floor_label": "M"}
    f = car_figures("car-1", log.messages, WEEK)
    assert f.faults[0].floor == "M"
    page = render_car_html(f, generated_ts=0.0)
    assert "开门故障（有人）" in page and "楼层 floor M" in page


def test_a_power_outage_says_whether_someone_was_inside() -> None:
    from liftwatch.edge_daemon.report.html import render_car_html

    log = CarLog()
    log.fault("power_loss", local_ts("2026-11-03", "10:00"), local_ts("2026-11-03", "11:00"))
    next(m for m in log.messages if m.get("state") == "cleared")["detail"] = {"occupied": True}
    f = car_figures("car-1", log.messages, WEEK)
    (c,) = f.faults
    assert c.occupied is True and c.judged and c.self_cleared and not c.response_late  # the utility's outage
    assert "停电" in render_car_html(f, generated_ts=0.0) and "轿内有人 someone inside" in render_car_html(f, generated_ts=0.0)
