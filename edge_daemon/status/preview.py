"""A scripted three-car scenario for the status page, to look at it without boards.

`python -m liftwatch.edge_daemon.status.preview [--port 8080] [--speed 1]` serves the page on
localhost and plays the scenario in a loop. The browser test feeds the same steps one at a time.

The trips are synthetic car motions (smooth-jerk acceleration profile, a 1 m/s plateau, vertical
and lateral vibration of chosen amplitude) sampled as the board would send them (int16 counts
with gravity, in VIB blocks), and their ride-quality figures come from the real analytics
(`analyse_trip`), so the page shows figures that match the trace it draws. Faults are the
analytics' own `FaultEvent`s; board health is a session `status()` dict.
"""

from __future__ import annotations

import argparse
import asyncio
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from liftwatch.edge_daemon.analytics.config import AnalyticsConfig
from liftwatch.edge_daemon.analytics.daily import DailyRecord
from liftwatch.edge_daemon.analytics.faults import FaultEvent, FaultType
from liftwatch.edge_daemon.analytics.leveling import LevelingResult, LevelingStatus
from liftwatch.edge_daemon.analytics.maintenance import MaintenanceVisit
from liftwatch.edge_daemon.analytics.ride_quality import G_MPS2, analyse_trip
from liftwatch.edge_daemon.analytics.trips import Trip
from liftwatch.edge_daemon.observations import (
    BoardBooted,
    CountersSnapshot,
    Inputs,
    InputsChanged,
    LinkState,
    Motion,
    MotionChanged,
    VibBlock,
)

from .state import LiveState

__all__ = ["FleetScenario", "Step", "synthetic_trip_samples"]

RATE_HZ = 400
LSB_PER_G = 4096  # LIS3DH-class part at +-8 g, 12 bit left-justified
GRAVITY = (0, 0, LSB_PER_G)  # sensor z up
FLOOR_HEIGHT_M = 3.0
BLOCK = 200  # samples per VIB frame
START_TS = 1_795_593_600.0  # 2026-11-25T08:00:00Z, 16:00 in Shanghai
AT_FLOOR = int(Inputs.DOOR_CLOSED | Inputs.ZONE_UP | Inputs.ZONE_DN)


@dataclass(frozen=True, slots=True)
class Step:
    """What happens at one moment: (car, item) pairs in order, and a caption for people."""

    caption: str
    items: tuple[tuple[str, Any], ...]
    board_status: tuple[tuple[str, dict[str, Any]], ...] = ()


def synthetic_trip_samples(
    floors: int, direction: int, vib_z_mg: float, vib_x_mg: float, seed: int, rate_hz: int = RATE_HZ
) -> np.ndarray:
    """(n, 3) int16 counts of a rest-to-rest trip: 0.5 s rest, run, 0.5 s rest."""
    rng = np.random.default_rng(seed)
    a_max, v_max = 0.8, 1.0
    ramp_s = 2 * v_max / a_max  # raised-cosine acceleration pulse of mean a_max/2
    travel = floors * FLOOR_HEIGHT_M
    cruise_s = max(0.0, travel / v_max - ramp_s)
    dt = 1.0 / rate_hz
    t = np.arange(0, 0.5 + ramp_s + cruise_s + ramp_s + 0.5, dt)
    a = np.zeros_like(t)
    up = (t >= 0.5) & (t < 0.5 + ramp_s)
    a[up] = a_max * 0.5 * (1 - np.cos(2 * np.pi * (t[up] - 0.5) / ramp_s))
    dn_start = 0.5 + ramp_s + cruise_s
    dn = (t >= dn_start) & (t < dn_start + ramp_s)
    a[dn] = -a_max * 0.5 * (1 - np.cos(2 * np.pi * (t[dn] - dn_start) / ramp_s))
    a *= direction
    moving = (t >= 0.5) & (t < dn_start + ramp_s)
    z_mg = a * 1000 / G_MPS2 + moving * (
        vib_z_mg * np.sin(2 * np.pi * 6.0 * t) + 0.4 * vib_z_mg * np.sin(2 * np.pi * 13.0 * t + 1.0)
    )
    x_mg = moving * vib_x_mg * np.sin(2 * np.pi * 2.5 * t + 0.3)
    y_mg = moving * 0.6 * vib_x_mg * np.sin(2 * np.pi * 3.5 * t)
    noise = rng.normal(0, 1.5, size=(len(t), 3))
    counts = np.column_stack([x_mg, y_mg, 1000 + z_mg]) + noise
    return np.round(counts * LSB_PER_G / 1000).astype(np.int16)


@dataclass
class _CarScript:
    car: str
    floor: int
    vib_z_mg: float
    vib_x_mg: float
    config: AnalyticsConfig
    frames: int = 0
    lost: int = 0
    seed: int = 0
    trips: int = 0
    boot: int = 41
    heap: int = 61_000
    door_cycles: int = 1200
    events: list = field(default_factory=list)


class FleetScenario:
    """Three cars in two buildings through one afternoon; `steps()` yields what happens in order.

    - bldg3-lift1: a healthy car making trips.
    - bldg3-lift2: a car whose guide rollers are worn: vibration over the GB/T 10058 limits,
      so analytics raises `abnormal_vibration` after two trips.
    - tower-a-lift1: stops between floors with someone inside: `stopped_outside_door_zone`, then
      `entrapment` (GB/T 24476 code 1); the technician arrives (inspection on) and frees the car.
    """

    def __init__(self) -> None:
        self.t = START_TS
        self.cars = {
            "bldg3-lift1": _CarScript("bldg3-lift1", 1, 4.0, 3.0, AnalyticsConfig(floor_count=18), seed=1),
            "bldg3-lift2": _CarScript("bldg3-lift2", 5, 26.0, 9.0, AnalyticsConfig(floor_count=18), seed=2),
            "tower-a-lift1": _CarScript("tower-a-lift1", 3, 6.0, 4.0, AnalyticsConfig(floor_count=32), seed=3),
        }

    def setup(self, live: LiveState) -> None:
        for c in self.cars.values():
            live.add_car(c.car, board_id=f"lw-3c71bf{zlib.crc32(c.car.encode()) & 0xFFFFFF:06x}", analytics=c.config)

    # -- building blocks ------------------------------------------------------------------------

    def _status(self, c: _CarScript, online: bool = True) -> dict[str, Any]:
        return {
            "board": None,
            "online": online,
            "boot_id": c.boot,
            "fw_version": "1.0.0",
            "sensor_model": "lis3dh",
            "calibrated": True,
            "safe_mode": False,
            "reset_cause": "power_on",
            "last_heard_ts": self.t,
            "time_synced": True,
            "sync_rtt_ms": 12.0,
            "heartbeat": {"uptime_s": int(self.t - START_TS) + 86_400, "heap_free": c.heap, "queue_depth": 0},
            "counters": {"frames": c.frames, "lost_frames": c.lost, "reboots": 0, "drops": {}},
        }

    def _trip(self, c: _CarScript, floors: int, direction: int, stuck: bool = False) -> list[tuple[str, Any]]:
        c.seed += 10
        samples = synthetic_trip_samples(floors, direction, c.vib_z_mg, c.vib_x_mg, c.seed)
        t0 = self.t
        items: list[tuple[str, Any]] = [
            (c.car, InputsChanged(t0, AT_FLOOR, 0)),  # doors closed at the landing
            (c.car, MotionChanged(t0 + 0.5, int(Motion.ACCELERATING))),
            (c.car, MotionChanged(t0 + 2.0, int(Motion.MOVING))),
        ]
        for i in range(0, len(samples), BLOCK):
            items.append((c.car, VibBlock(t0 + i / RATE_HZ, RATE_HZ, LSB_PER_G, samples[i:i + BLOCK], GRAVITY)))
        rq, kin = analyse_trip(samples, RATE_HZ, LSB_PER_G, GRAVITY, t0, c.config)
        end = t0 + len(samples) / RATE_HZ - 0.5
        to_floor = c.floor + direction * floors
        offset = float(np.clip(np.random.default_rng(c.seed).normal(2.0, 6.0 if c.vib_z_mg < 20 else 14.0), -40, 40))
        status = LevelingStatus.LEVEL if abs(offset) <= c.config.level_tolerance_mm else LevelingStatus.OFF_LEVEL
        leveling = LevelingResult(end, status, round(offset, 1))
        if stuck:  # stopped short of the landing: no floor number, outside the door zone
            to_floor, leveling = None, LevelingResult(end, LevelingStatus.OUTSIDE_DOOR_ZONE, None)
        trip = Trip(
            car_id=c.car, start_ts=t0 + 0.5, end_ts=end, direction="up" if direction > 0 else "down",
            floors=floors - 1 if stuck else floors, from_floor=c.floor, to_floor=to_floor,
            peak_speed_mps=kin.peak_speed_mps, distance_m=floors * FLOOR_HEIGHT_M, ride_quality=rq, leveling=leveling,
        )
        items += [
            (c.car, MotionChanged(end, int(Motion.REST))),
            (c.car, trip),
            (c.car, InputsChanged(end + 1.0, int(Inputs.ZONE_UP | Inputs.ZONE_DN | Inputs.PRESENCE),
                                  int(Inputs.DOOR_CLOSED | Inputs.PRESENCE))),
            (c.car, InputsChanged(end + 7.5, AT_FLOOR, int(Inputs.DOOR_CLOSED | Inputs.PRESENCE))),
        ]
        c.floor = to_floor
        c.trips += 1
        c.frames += len(samples) // BLOCK + 40
        self.t = end + 8.0
        return items

    def _fault(self, c: _CarScript, ftype: FaultType, state: str, raised_ts: float, **detail: Any) -> tuple[str, Any]:
        extra: dict[str, Any] = {}
        if state == "cleared":
            extra = {"duration_s": self.t - raised_ts}
        return c.car, FaultEvent(c.car, ftype, state, self.t, raised_ts, dict(detail), **extra)

    def _board(self, *cars: _CarScript) -> tuple[tuple[str, dict[str, Any]], ...]:
        return tuple((c.car, self._status(c)) for c in cars)

    @staticmethod
    def _yesterday(c: _CarScript, i: int) -> DailyRecord:
        """Yesterday's record as analytics closed it at local midnight (figures of a busy block)."""
        rough = c.vib_z_mg > 20
        return DailyRecord(
            car_id=c.car, day="2026-11-24", trips=612 + 97 * i, trips_up=301 + 50 * i, trips_down=311 + 47 * i,
            run_s=4.1 * 3600 + 900 * i, relevels=14 + 3 * i, door_cycles=655 + 101 * i, door_reopenings=41 + 7 * i,
            door_open_s=5320.0 + 800 * i,
            faults_by_type={"abnormal_vibration": 1} if rough else {},
            maintenance_visits=1 if i == 2 else 0, maintenance_minutes=47.0 if i == 2 else 0.0,
            ride_quality={"z_a95_pp_mg": {"p50": 52.0 if rough else 10.5, "p95": 66.0 if rough else 14.2,
                                          "max": 71.3 if rough else 17.9}},
            leveling={"stops": 612 + 97 * i, "level_pct": 97.5 - 4 * rough},
            offline_minutes=0.0, boots=0, counters=None,
        )

    # -- the afternoon ---------------------------------------------------------------------------

    def steps(self) -> Iterator[Step]:
        l1, l2, ta = self.cars["bldg3-lift1"], self.cars["bldg3-lift2"], self.cars["tower-a-lift1"]
        hello = [
            (c.car, BoardBooted(self.t, c.boot, "power_on", "1.0.0", "lis3dh", RATE_HZ, LSB_PER_G, True, False, GRAVITY))
            for c in (l1, l2, ta)
        ]
        counters = [
            (c.car, CountersSnapshot(self.t, door_cycles=c.door_cycles, trips=800, run_time_s=90_000, boots=c.boot))
            for c in (l1, l2, ta)
        ]
        idle = [(c.car, InputsChanged(self.t, AT_FLOOR, 0)) for c in (l1, l2, ta)]
        yesterday = [(c.car, self._yesterday(c, i)) for i, c in enumerate((l1, l2, ta))]
        yield Step("boards say hello", tuple(hello + counters + idle + yesterday), self._board(l1, l2, ta))
        yield Step("bldg3-lift1 goes up 4 floors", tuple(self._trip(l1, 4, +1)), self._board(l1))
        yield Step("bldg3-lift2 rough ride down 3 floors", tuple(self._trip(l2, 3, -1)), self._board(l2))
        yield Step("tower-a-lift1 up 6 floors", tuple(self._trip(ta, 6, +1)), self._board(ta))
        rough = self._trip(l2, 4, +1)
        rough.append(self._fault(l2, FaultType.ABNORMAL_VIBRATION, "raised", self.t,
                                 figure="z_max_pp_mg", trips_over=2))
        yield Step("bldg3-lift2 second rough trip: abnormal_vibration", tuple(rough), self._board(l2))
        yield Step("bldg3-lift1 down 2 floors", tuple(self._trip(l1, 2, -1)), self._board(l1))
        # tower-a-lift1 stops between floors with a passenger inside.
        floor_before = ta.floor
        stuck = self._trip(ta, 5, -1, stuck=True)[:-2]  # the trip, without the door opening at the end
        t_stop = self.t
        stuck_inputs = int(Inputs.DOOR_CLOSED | Inputs.PRESENCE)
        stuck.append((ta.car, InputsChanged(t_stop, stuck_inputs, int(Inputs.ZONE_UP | Inputs.ZONE_DN | Inputs.PRESENCE))))
        self.t += 5
        stuck.append(self._fault(ta, FaultType.STOPPED_OUTSIDE_DOOR_ZONE, "raised", self.t))
        yield Step("tower-a-lift1 stopped between floors", tuple(stuck), self._board(ta))
        self.t += 10
        entrapment_ts = self.t
        yield Step("tower-a-lift1: passenger trapped", (
            self._fault(ta, FaultType.ENTRAPMENT, "raised", self.t, presence=True, in_door_zone=False),
            (ta.car, InputsChanged(self.t + 2, stuck_inputs | int(Inputs.ALARM_BUTTON), int(Inputs.ALARM_BUTTON))),
        ), self._board(ta))
        self.t += 60
        yield Step("bldg3-lift1 up 7 floors", tuple(self._trip(l1, 7, +1)), self._board(l1))
        self.t += 900
        visit_start = self.t
        yield Step("technician on site (inspection on)", (
            (ta.car, InputsChanged(self.t, stuck_inputs | int(Inputs.INSPECTION), int(Inputs.INSPECTION | Inputs.ALARM_BUTTON))),
        ), self._board(ta))
        self.t += 240
        ta.floor = floor_before - 4  # the technician brings the car down to the next landing
        yield Step("passenger released; faults cleared", (
            (ta.car, InputsChanged(self.t, int(Inputs.ZONE_UP | Inputs.ZONE_DN | Inputs.INSPECTION), int(Inputs.DOOR_CLOSED | Inputs.ZONE_UP | Inputs.ZONE_DN | Inputs.PRESENCE))),
            self._fault(ta, FaultType.ENTRAPMENT, "cleared", entrapment_ts),
            self._fault(ta, FaultType.STOPPED_OUTSIDE_DOOR_ZONE, "cleared", t_stop + 5),
        ), self._board(ta))
        self.t += 2400
        yield Step("inspection off; visit recorded", (
            (ta.car, InputsChanged(self.t, AT_FLOOR, int(Inputs.INSPECTION | Inputs.DOOR_CLOSED))),
            (ta.car, MaintenanceVisit(ta.car, visit_start, self.t, 2, (self.t - visit_start) < ta.config.maintenance_min_s)),
        ), self._board(ta))
        yield Step("bldg3-lift2 board goes quiet", ((l2.car, LinkState(self.t - 15, False)),), ())


def play(live: LiveState, step: Step) -> None:
    """Apply one step the way the daemon would."""
    for car, item in step.items:
        live.apply(car, item)
    for car, status in step.board_status:
        live.board_status(car, status)


async def _main(port: int, speed: float) -> None:
    from .server import StatusConfig, StatusServer

    live = LiveState(site="sh-pudong-garden-3")
    server = StatusServer(live, StatusConfig(port=port))
    await server.start()
    print(f"status page preview: {server.url}  (Ctrl-C to stop)")
    try:
        scenario = FleetScenario()
        scenario.setup(live)
        for step in scenario.steps():
            print(step.caption)
            play(live, step)
            await asyncio.sleep(3.0 / speed)
        await asyncio.Event().wait()  # keep serving the final picture
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--speed", type=float, default=1.0, help="steps per 3 s")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args.port, args.speed))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
