"""The demo's fleet file: which cars, in which buildings, with which story (`--fleet`).

Format::

    [fleet]
    site = "sh-demo-estate"        # the daemon's site (MQTT topic level)
    start_local = "06:00"          # local time at which the simulated day starts
    utc_offset_h = 8.0             # local time zone (China Standard Time)

    [[car]]
    car = "pudong-office-L3"       # car id (topic level)
    building = "..."               # shown in the table
    story = "..."                  # what happens to this car, for people
    board_uid = "a4cf12e0b101"     # machine.unique_id() of its mock board
    sensor = "lis3dh"              # lis3dh | adxl355 | lis2dw12
    car_file = "office6"           # hil_tests/cars/<name>.toml, or instead an inline [car.spec] table
    seed = 31
    [[car.step]]                   # scenario steps (hil_tests/sim/scenario.py), run in order
    do = "traffic"
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import liftwatch.hil
from liftwatch.errors import LiftwatchError
from liftwatch.hil.sim.car import CarSpec, CarSpecError, load_car
from liftwatch.hil.sim.scenario import Scenario, ScenarioError

__all__ = ["CALIBRATION_REST_S", "FLEET_FILE", "DemoCar", "DemoError", "DemoFleet", "parse_duration"]

FLEET_FILE = Path(liftwatch.hil.__file__).resolve().parent / "demo_fleet.toml"
# Sim seconds each car stands still at power-on; the board calibrates at rest during the first few.
CALIBRATION_REST_S = 60.0
SENSORS = ("lis3dh", "adxl355", "lis2dw12")


class DemoError(LiftwatchError, RuntimeError):
    """The demo cannot run (bad fleet file, firmware missing, a board that does not calibrate)."""


@dataclass(frozen=True, slots=True)
class DemoCar:
    car: str
    building: str
    story: str
    board_uid: str
    sensor: str
    scenario: Scenario


@dataclass(frozen=True, slots=True)
class DemoFleet:
    site: str
    start_local: dt.time
    utc_offset_h: float
    cars: tuple[DemoCar, ...]
    source: str

    @classmethod
    def load(cls, path: str | os.PathLike = FLEET_FILE) -> DemoFleet:
        """Read a fleet file; `DemoError` names the file and the car at fault."""
        p = Path(path)
        try:
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as err:
            raise DemoError(f"{p}: cannot read: {err.strerror}") from None
        except tomllib.TOMLDecodeError as err:
            raise DemoError(f"{p}: not valid TOML: {err}") from None
        meta = doc.get("fleet", {})
        try:
            start = dt.time.fromisoformat(str(meta.get("start_local", "06:00")))
            offset = float(meta.get("utc_offset_h", 8.0))
        except ValueError as err:
            raise DemoError(f"{p}: [fleet]: {err}") from None
        cars: list[DemoCar] = []
        for i, table in enumerate(doc.get("car", [])):
            where = f"{p}: car[{i}]"
            name = str(table.get("car", ""))
            if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", name):
                raise DemoError(f"{where}: car must be 1-64 of letters, digits, _.:- (got {name!r})")
            sensor = str(table.get("sensor", "lis3dh"))
            if sensor not in SENSORS:
                raise DemoError(f"{where}: sensor {sensor!r}, expected one of {', '.join(SENSORS)}")
            try:
                spec = (CarSpec.from_dict(table["spec"], f"{where}.spec") if "spec" in table
                        else load_car(str(table.get("car_file", "office6"))))
                scenario = Scenario.from_dict({
                    "scenario": {"name": name, "description": str(table.get("story", "")),
                                 "seed": int(table.get("seed", 0))},
                    "step": [{"do": "wait", "s": CALIBRATION_REST_S}, *table.get("step", [])],
                }, where)
            except (CarSpecError, ScenarioError, ValueError, TypeError) as err:
                raise DemoError(f"{where}: {err}") from None
            cars.append(DemoCar(
                car=name, building=str(table.get("building", name)), story=str(table.get("story", "")),
                board_uid=str(table.get("board_uid", f"a4cf12e0b{i + 101:03d}")), sensor=sensor,
                scenario=dataclasses.replace(scenario, car=spec),
            ))
        if not cars:
            raise DemoError(f"{p}: no [[car]] tables")
        if len({c.car for c in cars}) != len(cars):
            raise DemoError(f"{p}: car ids must be unique")
        return cls(site=str(meta.get("site", "demo")), start_local=start, utc_offset_h=offset,
                   cars=tuple(cars), source=str(p))

    def start_utc_s(self, day: dt.date) -> float:
        """UTC seconds of `start_local` on the local `day`."""
        tz = dt.timezone(dt.timedelta(hours=self.utc_offset_h))
        return dt.datetime.combine(day, self.start_local, tzinfo=tz).timestamp()


def parse_duration(text: str) -> float:
    """`24h`, `90m`, `1h30m`, `45s` or plain seconds -> seconds."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        seconds = float(t)
    else:
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", t)
        if not t or not parts or not any(parts.groups()):
            raise ValueError(f"duration {text!r}: expected e.g. 24h, 90m, 1h30m or seconds")
        h, m, s = (float(g) if g else 0.0 for g in parts.groups())
        seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return seconds

