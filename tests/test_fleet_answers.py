"""District answers from the store (both engines): fault rate before/after enrollment, repair times,
the major-fault 24 h target and the contractor ranking, on a hand-built summer of three cars."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date

import pytest
from support.fleet import event, visit

from liftwatch.edge_daemon.report.figures import Period
from liftwatch.fleet.answers import MONTH_S, district_figures
from liftwatch.fleet.store import Fact, Lift, open_store

PERIOD = Period(date(2019, 5, 1), date(2019, 8, 31))
ENROLLED = Period(date(2019, 7, 1), date(2019, 7, 1)).start_ts
H = 3600.0
D = 86400.0


def day(month: int, dom: int, hour: float = 10.0) -> float:
    return Period(date(2019, month, dom), date(2019, month, dom)).start_ts + hour * H


def fault(car: str, ftype: str, raised: float, repair_h: float, response_s: float) -> list[dict]:
    return [event(car, ftype, "raised", raised),
            event(car, ftype, "cleared", raised + repair_h * H, raised_t=raised, response_s=response_s)]


def summer() -> list[dict]:
    a = [visit("gs-a", day(5, 1) + i * 14 * D, 50) for i in range(9)]
    for raised in (day(5, 10), day(5, 20), day(6, 10)):  # the second and third repeat the first
        a += fault("gs-a", "door_reopen_loop", raised, 2, 600)
    a += fault("gs-a", "entrapment", day(7, 15), 1, 600)
    b = [visit("gs-b", day(m, 5), 10) for m in (5, 6, 7, 8)]
    b += fault("gs-b", "overspeed", day(8, 1), 30, 3600)
    c = [visit("gs-c", day(5, 3), 45)]
    return a + b + c


def lift(car: str, company: str, rescue: str) -> Lift:
    return Lift(car, f"REG-{car}", rescue, "addr", "bldg", company, "PICC", 900.0, 3 * D, 2400.0, "2019-07-01")


@pytest.fixture
def store(fleet_store_url):
    s = open_store(fleet_store_url)
    s.replace_registry([lift("gs-a", "Xizi Maintenance", "10001"), lift("gs-b", "Hangzhou Lift Service", "10002")])
    s.store_batch([Fact.of(m) for m in summer()])
    yield s
    s.close()


def test_district_figures(store):
    d = district_figures(store, PERIOD)
    assert [f.car for f in d.cars] == ["gs-a", "gs-b", "gs-c"]
    assert d.unregistered == ("gs-c",)

    rate = d.fault_rate
    assert (rate.faults_before, rate.faults_after) == (3, 2)
    first_a, first_b = day(5, 1), day(5, 5)  # each car's first fact: observation starts there
    assert rate.car_months_before == pytest.approx((2 * ENROLLED - first_a - first_b) / MONTH_S, abs=1e-3)
    assert rate.before == pytest.approx(3 / rate.car_months_before)

    assert d.repairs.repairs == 5 and d.repairs.still_open == 0
    assert d.repairs.mean_s == pytest.approx((3 * 2 + 1 + 30) / 5 * H)
    assert d.repairs.worst_s == pytest.approx(30 * H)

    assert (d.major.count, d.major.within_target, d.major.still_open) == (2, 1, 0)
    assert d.major.by_type == {"entrapment": 1, "overspeed": 1}
    assert d.major.worst_s == pytest.approx(30 * H)

    rows = {c.company: c for c in d.contractors}
    xizi, hz = rows["Xizi Maintenance"], rows["Hangzhou Lift Service"]
    assert (xizi.visits, xizi.short_visits, xizi.missed_visits, xizi.repeat_faults, xizi.late_responses) == (9, 0, 0, 2, 0)
    assert xizi.visit_min_mean == 50.0 and xizi.points_per_car == 4.0
    # monthly 10-minute visits: every one short, and a 15-day interval missed between each
    assert (hz.visits, hz.short_visits, hz.missed_visits, hz.late_responses) == (4, 4, 5, 1)
    assert hz.response_s_max == 3600.0 and hz.points_per_car == 4 * 3 + 5 * 5 + 5
    assert [c.company for c in d.contractors][-1] == "Hangzhou Lift Service"


def test_a_set_of_cars_and_a_shorter_period(store):
    d = district_figures(store, Period(date(2019, 7, 1), date(2019, 8, 31)), ["gs-b", "gs-a", "gs-zz"])
    assert [f.car for f in d.cars] == ["gs-b", "gs-a"]
    assert (d.fault_rate.faults_before, d.fault_rate.faults_after, d.fault_rate.car_months_before) == (0, 2, 0.0)
    assert d.fault_rate.change is None


def test_the_cli_writes_the_bilingual_fleet_report_and_json(store, tmp_path):
    if store.dialect != "sqlite":
        pytest.skip("the command is the same on both; the queries are tested above on both engines")
    out = tmp_path / "district.html"
    cmd = [sys.executable, "-m", "liftwatch", "fleet", "report", "--store", store.where, "--from", "2019-05-01",
           "--to", "2019-08-31", "--out", str(out), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["fault_rate"]["faults_before"] == 3 and figures["major"]["within_target"] == 1
    page = out.read_text()
    for marker in ("id='ranking'", "id='pilot'", "<figure id='plot-district'><svg", "id='contractors'", "每台每月故障 Faults per car-month",
                   "Hangzhou Lift Service", "未登记电梯 Cars not in the registry: gs-c"):
        assert marker in page
    missing = subprocess.run(cmd[:-3] + ["--car", "gs-zz", "--json"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.splitlines() == [f"liftwatch fleet: no facts of gs-zz between 2019-05-01 and 2019-08-31 in {store.where}"]
