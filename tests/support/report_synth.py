"""Synthetic upstream message sets with known answers, for the report tests (checked in
tests/test_report_synth.py).

Messages are built through the real `envelope.make_message`, with the fields of docs/upstream.md
and the analytics' `to_message()` shapes, so a change of the envelope rules shows up here first.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from liftwatch.edge_daemon.envelope import make_message, utc_iso

CST = timezone(timedelta(hours=8))


def local_ts(day: str, hhmm: str = "00:00") -> float:
    """Unix time of a local (UTC+8) day and time."""
    h, m = map(int, hhmm.split(":"))
    d = datetime.fromisoformat(day).replace(hour=h, minute=m, tzinfo=CST)
    return d.timestamp()


class CarLog:
    """Builds one car's upstream messages; times are unix seconds."""

    def __init__(self, car: str = "car-1", site: str = "estate-a", board: str = "b-0001") -> None:
        self.car, self.site, self.board = car, site, board
        self.messages: list[dict[str, Any]] = []

    def _put(self, kind: str, key: str, ts: float, fields: dict[str, Any]) -> dict[str, Any]:
        m = make_message(kind, self.site, self.car, self.board, utc_iso(ts), f"{self.car}:{kind}:{key}", fields)
        self.messages.append(m)
        return m

    def trip(
        self,
        t: float,
        z_a95: float | None = 12.0,
        z_max: float | None = 20.0,
        offset_mm: float | None = 3.0,
        status: str = "level",
        direction: str = "up",
        xy_a95: float | None = 8.0,
    ) -> dict[str, Any]:
        rq = {
            "z_max_pp_mg": z_max,
            "z_a95_pp_mg": z_a95,
            "x_max_pp_mg": None if xy_a95 is None else xy_a95 * 1.3,
            "x_a95_pp_mg": xy_a95,
            "y_max_pp_mg": None,
            "y_a95_pp_mg": None,
            "accel_max_mps2": 0.6,
            "jerk_max_mps3": 0.9,
        }
        return self._put(
            "trip",
            f"{round(t * 1000)}",
            t + 12,
            {
                "start_ts": utc_iso(t),
                "end_ts": utc_iso(t + 12),
                "duration_s": 12.0,
                "direction": direction,
                "floors": 3,
                "from_floor": None,
                "to_floor": None,
                "peak_speed_mps": 1.0,
                "distance_m": 9.0,
                "ride_quality": rq,
                "leveling": {"status": status, "offset_mm": offset_mm},
            },
        )

    def fault(
        self,
        ftype: str,
        raised: float,
        cleared: float | None = None,
        code: int | None = None,
        response_s: float | None = None,
        with_raised_ts: bool = True,
    ) -> None:
        self._put(
            "event",
            f"{ftype}:{round(raised * 1000)}:raised",
            raised,
            {
                "type": ftype,
                "state": "raised",
                "event_ts": utc_iso(raised),
                "gbt24476_code": code,
                "detail": {"source": "host"},
            },
        )
        if cleared is not None:
            fields: dict[str, Any] = {
                "type": ftype,
                "state": "cleared",
                "event_ts": utc_iso(cleared),
                "gbt24476_code": code,
                "detail": {},
                "duration_s": cleared - raised,
                "response_s": response_s,
                "repair_s": None,
            }
            if with_raised_ts:
                fields["raised_ts"] = utc_iso(raised)
            self._put("event", f"{ftype}:{round(raised * 1000)}:cleared", cleared, fields)

    def visit(self, start: float, minutes: float, runs: int = 4, in_progress: bool = False) -> None:
        end = start + minutes * 60
        self._put(
            "maintenance",
            f"{round(start * 1000)}",
            end,
            {
                "start_ts": utc_iso(start),
                "end_ts": utc_iso(end),
                "duration_s": minutes * 60,
                "inspection_runs": runs,
                "too_short": minutes < 40 and not in_progress,
                "faults_responded": [],
                "in_progress": in_progress,
            },
        )

    def daily(
        self,
        day: str,
        trips: int,
        door_cycles: int,
        door_reopenings: int = 0,
        until: str | None = None,
        offline_minutes: float = 0.0,
    ) -> None:
        """A complete day's record, or with `until` ("HH:MM" local) a partial one ending then."""
        end = local_ts(day, until or "23:59")
        self._put(
            "daily",
            f"{day}{f':partial:{round(end * 1000)}' if until else ''}",
            end,
            {
                "day": day,
                "partial": until is not None,
                "until_ts": utc_iso(end) if until else None,
                "trips": trips,
                "trips_up": trips // 2,
                "trips_down": trips - trips // 2,
                "run_hours": trips * 12 / 3600,
                "relevels": 0,
                "door_cycles": door_cycles,
                "door_reopenings": door_reopenings,
                "door_open_s": door_cycles * 6.0,
                "faults_by_type": {},
                "maintenance_visits": 0,
                "maintenance_minutes": 0.0,
                "ride_quality": {"z_a95_pp_mg": None},
                "leveling": {
                    "stops": trips,
                    "level": trips,
                    "off_level": 0,
                    "outside_door_zone": 0,
                    "unknown": 0,
                    "abs_offset_mm_p50": None,
                    "abs_offset_mm_p95": None,
                    "abs_offset_mm_max": None,
                },
                "offline_minutes": offline_minutes,
                "boots": 0,
                "counters": None,
            },
        )

    def write_jsonl(self, path: Path) -> Path:
        path.write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in self.messages), encoding="utf-8")
        return path


def known_week(car: str = "car-1", late: bool = True, site: str = "estate-a") -> CarLog:
    """7 days 2026-11-02..08 with known answers (see test_report_figures.py for the sums).

    - trips: 40 per day (daily records say 40; each day has 40 trip messages, the first with z_a95 25 mg
      on 11-05 and 11-06 i.e. over the 20.4 mg limit);
    - faults: entrapment 11-03 10:00 cleared 10:25 (visit 10:20: response 20 min);
      stopped_outside_door_zone 11-04 14:00 cleared 19:00 (visit 14:50: response 50 min -> late);
      door_open_too_long 11-05 09:00 cleared 09:03 (not judged); leveling_fault 11-06 08:00 open;
    - visits: 11-03 10:20 45 min, 11-04 14:50 20 min (short), 11-07 09:00 60 min.
    """
    log = CarLog(car, site=site)
    days = [f"2026-11-0{d}" for d in range(2, 9)]
    for day in days:
        for i in range(40):
            t = local_ts(day, "07:00") + i * 900
            high = i == 0 and day in ("2026-11-05", "2026-11-06")
            log.trip(
                t,
                z_a95=25.0 if high else 10.0 + (i % 5),
                z_max=28.0 if high else 18.0,
                offset_mm=(25.0 if i == 1 and day == "2026-11-06" else (i % 7) - 3.0),
                status="off_level" if i == 1 and day == "2026-11-06" else "level",
            )
        log.daily(day, trips=40, door_cycles=50, door_reopenings=5)
    log.fault("entrapment", local_ts("2026-11-03", "10:00"), local_ts("2026-11-03", "10:25"), code=1)
    log.visit(local_ts("2026-11-03", "10:20"), 45)
    log.fault("stopped_outside_door_zone", local_ts("2026-11-04", "14:00"), local_ts("2026-11-04", "19:00"), code=7)
    log.visit(local_ts("2026-11-04", "14:50" if late else "14:10"), 20)
    log.fault("door_open_too_long", local_ts("2026-11-05", "09:00"), local_ts("2026-11-05", "09:03"))
    log.fault("leveling_fault", local_ts("2026-11-06", "08:00"))
    log.visit(local_ts("2026-11-07", "09:00"), 60)
    return log


def clean_week(car: str = "car-ok", site: str = "estate-b") -> CarLog:
    """The same week with nothing wrong: 60 trips a day, two 50-minute visits, no faults."""
    log = CarLog(car, site=site, board="b-0002")
    for d in range(2, 9):
        day = f"2026-11-0{d}"
        for i in range(60):
            log.trip(local_ts(day, "06:00") + i * 600, z_a95=9.0 + (i % 3), z_max=15.0, offset_mm=(i % 5) - 2.0)
        log.daily(day, trips=60, door_cycles=70, door_reopenings=2)
    log.visit(local_ts("2026-11-02", "09:00"), 50)
    log.visit(local_ts("2026-11-07", "09:00"), 55)
    return log
