"""End to end through the real parts: analytics engine -> envelope -> SQLite outbox -> JSON Lines
journal publisher -> report. The report must restate what the analytics measured."""

from __future__ import annotations

import asyncio
import re
from datetime import date
from pathlib import Path

import pytest

from support.analytics_synth import CarStream
from liftwatch.cli import main
from liftwatch.edge_daemon.analytics import AnalyticsConfig, CarAnalytics, FaultEvent, MaintenanceVisit, Trip
from liftwatch.edge_daemon.envelope import make_message, utc_iso
from liftwatch.edge_daemon.outbox import Outbox
from liftwatch.edge_daemon.report.figures import Period, Severity, car_figures
from liftwatch.edge_daemon.report.source import load_messages
from liftwatch.edge_daemon.upstream import JournalPublisher, UpstreamConfig
from support.report_synth import local_ts

CFG = AnalyticsConfig(floor_count=6)
DAY = Period(date(2026, 11, 3), date(2026, 11, 3))


def _morning() -> list:
    """Passenger trips, then a passenger trapped between floors; the technician arrives ~20 min later,
    works 45 min under inspection and brings the car to a landing."""
    s = CarStream(CFG, t0=local_ts("2026-11-03", "08:00")).wait(2)
    for _ in range(3):
        s.door_cycle().wait(5).trip(2).wait(3).door_cycle().wait(20).trip(-2).wait(3)
    s.set(presence=True).trip(1, offset_mm=1400).wait(20 * 60)
    s.set(inspection=True).wait(600).trip(1).set(presence=False).wait(35 * 60).set(inspection=False).wait(700)
    s.door_cycle().wait(5).trip(-3).wait(5)
    return s.run(CarAnalytics("car-7", CFG))


async def _publish(outbox: Outbox, journal: Path, n: int) -> None:
    """Run the real journal publisher until it has delivered `n` messages."""
    stop = asyncio.Event()
    delivered = 0

    def on_delivered(batch) -> None:
        nonlocal delivered
        delivered += len(batch)
        if delivered >= n:
            stop.set()

    publisher = JournalPublisher(
        UpstreamConfig(site="estate-c", pi="pi-1", journal_path=journal), on_delivered=on_delivered
    )
    await asyncio.wait_for(publisher.run(outbox, stop), timeout=30)


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    outputs = _morning()
    messages = [
        make_message(
            o.kind, "estate-c", "car-7", "b-07", utc_iso(local_ts("2026-11-03", "12:00")), o.key, o.to_message()
        )
        for o in outputs
    ]
    tmp = tmp_path_factory.mktemp("pipeline")
    with Outbox(tmp / "outbox.sqlite") as outbox:
        outbox.put_many(messages)
        asyncio.run(_publish(outbox, tmp / "upstream.jsonl", len(messages)))
        assert outbox.stats().pending == 0
    return tmp / "upstream.jsonl", outputs


def test_report_restates_the_analytics(journal: tuple[Path, list]) -> None:
    path, outputs = journal
    loaded = load_messages([path], car="car-7")
    assert loaded.skipped == () and loaded.duplicates == 0
    f = car_figures("car-7", loaded.messages, DAY)
    trips = [o for o in outputs if isinstance(o, Trip)]
    (visit,) = [o for o in outputs if isinstance(o, MaintenanceVisit)]
    cleared = {o.type.value: o for o in outputs if isinstance(o, FaultEvent) and o.state == "cleared"}
    assert set(cleared) == {"entrapment", "stopped_outside_door_zone"}
    assert f.trips_total == len(trips) == 8
    assert f.entrapments == 1 and f.judged_faults == 2 and f.late_responses == 0
    assert f.response_s_max == pytest.approx(max(c.response_s for c in cleared.values()), abs=1e-3)
    assert 19 * 60 < f.response_s_max < 21 * 60
    assert (f.repairs_judged, f.repairs_within_half_day) == (2, 2)
    assert f.entrapment_s_max == pytest.approx(cleared["entrapment"].duration_s, abs=1e-3)
    assert [v.duration_s for v in f.visits] == [pytest.approx(visit.duration_s, abs=1e-3)]
    assert f.short_visits == 0
    # the two faults overlap: out of service from the first raise to the common clear
    assert f.downtime_s == pytest.approx(cleared["stopped_outside_door_zone"].duration_s, abs=1e-3)
    daily = [o for o in outputs if o.kind == "daily"][-1]
    assert f.door_cycles == daily.door_cycles > 0
    assert f.leveling_stops == len(trips) and f.off_level_stops == 0
    assert f.verdict.severity is Severity.ATTENTION  # an entrapment, answered in time
    assert [x.en for x in f.verdict.findings][0] == "1 entrapment(s)"


def test_fleet_report_from_journal_and_outbox(journal: tuple[Path, list], tmp_path: Path) -> None:
    path, _ = journal
    out = tmp_path / "fleet.html"
    day = ["--from", "2026-11-03", "--to", "2026-11-03"]
    sources = ["--source", str(path), "--source", str(path.parent / "outbox.sqlite")]
    assert main(["fleet-report", *day, *sources, "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert re.findall(r"data-car='([^']+)'", html) == ["car-7"]
    assert "需关注<br><span class='note'>attention</span>" in html and "困人 entrapments +10" in html
