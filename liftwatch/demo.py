"""`liftwatch demo`: a small fleet of simulated cars on mock boards running the real firmware, the
real daemon serving them, and a simulated day played quickly, with a live table in the terminal.

Step 1 builds the firmware image once with `liftwatch flash` on a blank mock board (cached under
the state dir, keyed by the firmware's sources). Step 2 powers on one mock board per car from a
copy of that image, driven by the car's scenario from `hil_tests/demo_fleet.toml`. Step 3
calibrates every board at rest over its data link (`liftwatch calibrate`'s code), as an installer
does. Step 4 writes the daemon's TOML config for the boards' ports and runs the real `Daemon`
(outbox in SQLite, JSON Lines journal; or a local Mosquitto with `--mqtt`). Step 5 writes the
insurer reports and prints the summary.

Time: each board's clock is its feed's time. The daemon's clock (`FleetClock`) follows the boards:
it is the simulated day's start plus the slowest board's time, so when the CPU cannot keep every
board at `--speed` the whole day slows down instead of the daemon seeing boards fall behind (and
go offline). It trails the fastest board by at most `CLOCK_SLACK_S`, so a board that stops for
real still goes offline.

Fleet file format (`--fleet`)::

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

import argparse
import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import liftwatch.hil
from liftwatch.broker import BrokerError, LocalBroker
from liftwatch.hil.sim.car import CarSpec, CarSpecError, load_car
from liftwatch.hil.sim.scenario import Scenario, ScenarioError

__all__ = ["DemoCar", "DemoError", "DemoFleet", "FleetClock", "FleetTally", "parse_duration", "register"]

FLEET_FILE = Path(liftwatch.hil.__file__).resolve().parent / "demo_fleet.toml"
DEFAULT_STATE_DIR = Path("var/demo")
# Marks a state dir as the demo's own, so the demo may empty it.
DEMO_MARK = ".liftwatch-demo"
# Sim seconds per real second at most: the 06:00-16:00 default day in under 2 minutes; the boards and
# the daemon set the real pace when the machine is slower (see FleetClock).
DEFAULT_SPEED = 360.0
DEFAULT_DURATION = "10h"
# The status page's port on localhost (the daemon's default is 8080; the demo keeps off it).
DEFAULT_STATUS_PORT = 8090
# Sim seconds each car stands still at power-on; the board calibrates at rest during the first few.
CALIBRATION_REST_S = 60.0
# Calibration happens in real time: the board must see a car at rest while the command arrives.
CALIBRATION_SPEED = 1.0
CALIBRATION_TIMEOUT_S = 20.0
# A board silent that long is power-cycled (the firmware's boot can fail on a fragmented heap).
CALIBRATION_TRIES = 3
# Real seconds the daemon gets to hear every board before the day starts regardless.
CONNECT_TIMEOUT_S = 20.0
# A board whose feed has not moved for this many real seconds has stopped for real (crashed
# firmware): its time then follows the fleet's so it goes offline. A live board reads a feed record
# every sim second, many times per real second; but one waiting for the daemon to read its UART
# (back-pressure) or starved of CPU on a loaded machine stops for a few seconds and is not dead.
BOARD_STALL_S = 10.0
# `[session] heartbeat_timeout_s` of the demo daemon (sim seconds; see daemon_config_toml).
DEMO_HEARTBEAT_TIMEOUT_S = 120.0
# The firmware's default HEARTBEAT period (sim seconds; the demo sets no heartbeat_ms).
HEARTBEAT_S = 10.0  # firmware/settings.py heartbeat_ms
# The live table is redrawn this often; a non-terminal gets a plain snapshot every PLAIN_EVERY_S.
REFRESH_PER_S = 4
PLAIN_EVERY_S = 10.0
SENSORS = ("lis3dh", "adxl355", "lis2dw12")
# Input bits and motion codes of the HEARTBEAT (docs/ARCHITECTURE.md).
_DOOR_CLOSED, _INSPECTION, _ALARM = 0x01, 0x10, 0x20
_MOTION_WORDS = {0: "at rest", 1: "starting", 2: "moving", 3: "stopping", 255: "uncalibrated"}


class DemoError(RuntimeError):
    """The demo cannot run (bad fleet file, firmware missing, a board that does not calibrate)."""


# -- the fleet ------------------------------------------------------------------------------------


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


# -- time -----------------------------------------------------------------------------------------


class FleetClock:
    """The daemon's clock: the simulated day's UTC time, per board, carried by the boards themselves.

    Each board lives in its own sim time (its feed's), and the daemon reads some boards later than
    others (a car on a trip sends 2.4 kB/s of VIB to analyse). So the time a board's session and
    analytics see is that board's own progress as the daemon has read it: the uptime in the last
    HEARTBEAT read (every 10 sim s) mapped to feed time, plus one heartbeat period, and never more
    than the board's feed. A daemon behind on one board then holds that board's time instead of
    seeing a silence that never was (no false entrapment, door open too long or `board_offline`).
    A board whose feed stops moving for `stall_s` real seconds (dead firmware) gets the most
    advanced board's time instead, so it goes offline as it should. The daemon asks from each board's named task (`board <car>: ...`,
    see edge_daemon/daemon.py); anything else (status file) gets the slowest board's time.

    `boards` have `stats.board_t_us` (written by each mock board's loop thread; reading an int
    attribute from another thread is safe). No board's time goes backwards.
    """

    def __init__(self, epoch_s: float, boards: dict[str, Any], stall_s: float = BOARD_STALL_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.epoch_s = epoch_s
        self.boards = dict(boards)
        self.stall_s = stall_s
        self._monotonic = monotonic
        self._progress: dict[str, tuple[int, float]] = {}  # car -> (feed us, real s it was first seen)
        self.sessions: dict[str, Any] = {}  # car -> BoardSession, once the daemon runs
        self._boot: dict[str, tuple[Any, float]] = {}  # car -> (boot_id, feed s at uptime 0)
        self._last: dict[str, float] = {}
        self._tasks: dict[str, str] = {f"board {car}: session": car for car in boards}

    def _bound_s(self, car: str, board: Any) -> float:
        feed_s = board.stats.board_t_us / 1e6
        session = self.sessions.get(car)
        uptime = (session.last_heartbeat or {}).get("uptime_s") if session is not None else None
        if uptime is None:
            return feed_s
        # The feed was at least this far when the board said `uptime`: the smallest difference
        # seen is the board's boot time on the feed, whatever the daemon's backlog was.
        boot = self._boot.get(car)
        if boot is None or boot[0] != session.boot_id or feed_s - uptime < boot[1]:
            boot = (session.boot_id, feed_s - uptime)
            self._boot[car] = boot
        return min(feed_s, boot[1] + uptime + HEARTBEAT_S)

    def board_s(self, car: str) -> float:
        """Sim seconds of `car`'s board as the daemon has read it."""
        bounds = {c: self._bound_s(c, b) for c, b in self.boards.items()}
        t = max(bounds[car], self._last.get(car, 0.0))
        if self._stalled(car):
            t = max(t, max(bounds.values()))
        self._last[car] = t
        return t

    def _stalled(self, car: str) -> bool:
        """True once the board's feed has not moved for `stall_s` real seconds (its firmware is
        dead or at the REPL): its time then goes on with the fleet's, so it goes offline."""
        feed = self.boards[car].stats.board_t_us
        now = self._monotonic()
        seen = self._progress.get(car)
        if seen is None or seen[0] != feed:
            self._progress[car] = (feed, now)
            return False
        return now - seen[1] > self.stall_s

    def sim_s(self) -> float:
        """The slowest board's sim seconds: how far the whole fleet has got."""
        return min(self.board_s(car) for car in self.boards) if self.boards else 0.0

    def now(self) -> float:
        """UTC seconds for whoever asks: a board's task gets its board's time."""
        try:
            task = asyncio.current_task()
        except RuntimeError:  # not on the loop (the status file is written from a worker thread)
            task = None
        car = self._tasks.get(task.get_name()) if task is not None else None
        return self.epoch_s + (self.board_s(car) if car is not None else self.sim_s())


# -- what went upstream ---------------------------------------------------------------------------


@dataclass(slots=True)
class CarTally:
    """One car's upstream messages, counted as they are delivered."""

    trips: int = 0
    floor: int | None = None
    raised: Counter = field(default_factory=Counter)  # fault type -> times raised
    open_faults: dict[str, float] = field(default_factory=dict)  # type -> raised ts
    cleared: list[dict[str, Any]] = field(default_factory=list)  # cleared event messages
    visits: list[dict[str, Any]] = field(default_factory=list)  # maintenance messages
    rq_worst_z_a95_mg: float | None = None
    messages: Counter = field(default_factory=Counter)  # kind -> count


class FleetTally:
    """Counts what the upstream delivered (journal or broker), per car: the demo shows what an
    insurer's platform would receive, not the daemon's internals."""

    def __init__(self, cars: Sequence[str]) -> None:
        self.cars = {c: CarTally() for c in cars}
        self.delivered = 0
        self.lock = threading.Lock()  # MQTT delivery callbacks may come from paho's thread

    def on_delivered(self, batch: Sequence[Any]) -> None:
        with self.lock:
            for m in batch:
                self.delivered += 1
                try:
                    self.add(json.loads(m.payload))
                except (ValueError, AttributeError, TypeError):
                    continue

    def add(self, msg: dict[str, Any]) -> None:
        tally = self.cars.get(msg.get("car") or "")
        if tally is None:
            return
        kind = msg.get("kind")
        tally.messages[kind] += 1
        if kind == "trip":
            tally.trips += 1
            tally.floor = msg.get("to_floor", tally.floor)
            z = (msg.get("ride_quality") or {}).get("z_a95_pp_mg")
            if isinstance(z, (int, float)):
                tally.rq_worst_z_a95_mg = max(z, tally.rq_worst_z_a95_mg or 0.0)
        elif kind == "event":
            ftype = str(msg.get("type"))
            if msg.get("state") == "raised":
                tally.raised[ftype] += 1
                tally.open_faults[ftype] = _ts(msg.get("event_ts"))
            elif msg.get("state") == "cleared":
                tally.open_faults.pop(ftype, None)
                tally.cleared.append(msg)
        elif kind == "maintenance":
            tally.visits.append(msg)


def _ts(text: Any) -> float:
    try:
        return dt.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return 0.0


def _minutes(seconds: Any) -> str:
    return "-" if not isinstance(seconds, (int, float)) else f"{seconds / 60:.0f} min"


# -- the parts ------------------------------------------------------------------------------------


def firmware_image(cache_dir: Path, say: Callable[[str], None]) -> Path:
    """A flash image holding the real firmware, written by `liftwatch flash` on a blank mock board.

    Cached by the hash of the firmware sources: a second demo run boots straight away."""
    from liftwatch.edge_daemon.flash import FlashError, firmware_sources, flash
    from liftwatch.hil.mockboard.board import MockBoard
    from liftwatch.upy import FIRMWARE_DIR

    if not (FIRMWARE_DIR / "main.py").exists():
        raise DemoError(f"no firmware at {FIRMWARE_DIR} (main.py missing)")
    digest = hashlib.sha256()
    for src in sorted(firmware_sources(simulated=True)):
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    image = cache_dir / f"firmware-{digest.hexdigest()[:16]}.img"
    if image.exists():
        say(f"firmware image {image} (cached)")
        return image
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.glob("firmware-*.img"):
        old.unlink()
    tmp = image.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    say("flashing the firmware onto a blank mock board (liftwatch flash: mpy-cross, mpremote cp, sha256)...")
    board = MockBoard(tmp, speed=1.0)
    ports = board.start()
    try:
        result = flash(ports.console, reboot=False)
    except FlashError as err:
        raise DemoError(f"liftwatch flash failed: {err}") from err
    finally:
        board.stop()
    tmp.replace(image)
    say(f"  {len(result.files)} files flashed and verified in {result.seconds:.1f} s")
    return image


def daemon_config_toml(fleet: DemoFleet, ports: dict[str, str], *, mqtt_port: int | None,
                       status_port: int | None = None) -> str:
    """The `liftwatch run` config for the demo boards (written to the state dir for people to read)."""
    lines = [
        "# Written by `liftwatch demo` for this run: the daemon's config for the mock boards' data ports.",
        "# Keys: docs/config.md.", "",
        "[daemon]", f'site = "{fleet.site}"', 'pi = "demo-pi"', 'state_dir = "."', "status_interval_s = 2.0", "",
        "[session]",
        "# Sim seconds. At demo speed the daemon reads each board's UART in bursts, and one read",
        "# can span a minute of the board's (sped-up) time: a shorter timeout would see outages",
        "# between reads. Real deployments keep the default (15 s).",
        f"heartbeat_timeout_s = {DEMO_HEARTBEAT_TIMEOUT_S:.0f}", "",
        "[analytics]", f"day_utc_offset_h = {fleet.utc_offset_h}", "",
    ]
    lines += ["[status]  # the status page, on this machine only"]
    lines += ["enabled = false", ""] if status_port is None else ['host = "127.0.0.1"', f"port = {status_port}", ""]
    if mqtt_port is not None:
        lines += ["[upstream.mqtt]  # the local Mosquitto started by the demo", 'host = "127.0.0.1"',
                  f"port = {mqtt_port}", "tls = false", ""]
    for c in fleet.cars:
        spec = c.scenario.car
        lines += [
            f"[[boards]]  # {c.building}", f'car = "{c.car}"', f'port = "{ports[c.car]}"',
            f'board_id = "{c.board_uid}"', "", "[boards.analytics]",
            f"rated_speed_mps = {spec.rated_speed_mps}", f"floor_count = {spec.floors}", "lowest_floor = 1",
            f"vane_length_mm = {float(spec.vane_length_mm)}",
            f"zone_sensor_spacing_mm = {float(spec.zone_sensor_spacing_mm)}", "",
        ]
    return "\n".join(lines)


async def calibrate_boards(boards: dict[str, Any], say: Callable[[str], None]) -> dict[str, tuple[int, int, int]]:
    """All boards at once, over their data links, while their cars stand still. A board that stays
    silent is power-cycled and tried again, as an installer would."""
    from liftwatch.edge_daemon.cli import CalibrationError, calibrate
    from liftwatch.edge_daemon.transport import LinkKind, make_transport
    from liftwatch.hil.mockboard.board import ResetCause

    loop = asyncio.get_running_loop()

    async def one(car: str, board: Any) -> tuple[int, int, int]:
        for attempt in range(1, CALIBRATION_TRIES + 1):
            try:
                return await calibrate(make_transport(LinkKind.SERIAL, board.ports.data), CALIBRATION_TIMEOUT_S)
            except CalibrationError as err:
                if attempt == CALIBRATION_TRIES:
                    raise DemoError(f"{car}: calibration failed {attempt} times: {err}") from err
                say(f"  [yellow]{car}: {err}; power-cycling the board[/yellow]")
                await loop.run_in_executor(None, board.reset, ResetCause.POWER_ON)
        raise AssertionError("unreachable")

    gravities = await asyncio.gather(*(one(car, b) for car, b in boards.items()))
    return dict(zip(boards, gravities))


# -- the live table -------------------------------------------------------------------------------


def _local(ts: float, offset_h: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.timezone(dt.timedelta(hours=offset_h)))


def car_state(status: dict[str, Any] | None, tally: CarTally) -> tuple[str, str]:
    """(words, rich style) for the car's live state, from its session status and open faults."""
    if status is None or not status.get("online"):
        return "board offline", "bold red"
    hb = status.get("heartbeat") or {}
    inputs, motion = int(hb.get("inputs", 0) or 0), int(hb.get("motion", 0) or 0)
    words = [_MOTION_WORDS.get(motion, "?")]
    if motion == 0 and tally.floor is not None:
        words[0] = f"at floor {tally.floor}"
    words.append("door closed" if inputs & _DOOR_CLOSED else "door open")
    if inputs & _INSPECTION:
        words.append("INSPECTION")
    if inputs & _ALARM:
        words.append("ALARM")
    style = "yellow" if inputs & _INSPECTION else ("green" if motion in (1, 2, 3) else "")
    if tally.open_faults:
        style = "bold red"
    return ", ".join(words), style


def render_table(fleet: DemoFleet, tally: FleetTally, statuses: dict[str, dict[str, Any]], now_ts: float,
                 outbox: dict[str, Any], rate: float, sink: str, width: int = 132) -> Any:
    """The live table; below 100 columns the link column is left out so the rest stays readable."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"liftwatch demo - {fleet.site} - {_local(now_ts, fleet.utc_offset_h):%Y-%m-%d %H:%M} "
                        f"local (x{rate:.0f})",
                  caption=f"outbox: {outbox.get('pending', 0)} pending, {tally.delivered} delivered -> {sink}",
                  title_justify="left", caption_justify="left", expand=False)
    table.add_column("car", style="bold", overflow="fold", min_width=10)
    table.add_column("state", overflow="fold", min_width=12)
    table.add_column("trips", justify="right", min_width=5)
    table.add_column("faults open", overflow="fold", min_width=11)
    table.add_column("raised / cleared", justify="right", min_width=8)
    table.add_column("maintenance", overflow="fold", min_width=11)
    wide = width >= 100
    if wide:
        table.add_column("frames / lost", justify="right", min_width=7)
    with tally.lock:
        for c in fleet.cars:
            t = tally.cars[c.car]
            st = statuses.get(c.car)
            words, style = car_state(st, t)
            open_faults = Text(", ".join(sorted(t.open_faults)) or "-", style="bold red" if t.open_faults else "dim")
            visits = ", ".join(f"{v.get('duration_s', 0) / 60:.0f} min" + (" SHORT" if v.get("too_short") else "")
                               for v in t.visits) or "-"
            counters = (st or {}).get("counters", {})
            link = f"{counters.get('frames', 0)} / {counters.get('lost_frames', 0)}" if st else "-"
            row = [c.car, Text(words, style=style), str(t.trips), open_faults,
                   f"{sum(t.raised.values())} / {len(t.cleared)}", visits]
            table.add_row(*row, *([link] if wide else []))
    return table


# -- the run --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoOptions:
    fleet: Path = FLEET_FILE
    cars: int = 3
    speed: float = DEFAULT_SPEED
    duration_s: float = 10 * 3600.0
    state_dir: Path = DEFAULT_STATE_DIR
    mqtt: bool = False
    day: dt.date | None = None  # local day simulated; default yesterday (a finished day)
    live: bool | None = None  # None: a live table on a terminal, plain snapshots otherwise
    status_port: int | None = DEFAULT_STATUS_PORT  # None: no status page; 0: any free port


@dataclass(frozen=True, slots=True)
class DemoResult:
    interrupted: bool
    sim_s: float
    wall_s: float
    journal: Path
    reports: tuple[Path, ...]
    config: Path
    tally: FleetTally
    status_url: str = ""


def _fresh_state_dir(state_dir: Path) -> None:
    """A demo run starts from an empty outbox and journal, and without the sessions' memory of
    stored events (the boards boot from fresh images, so event ids repeat); the firmware cache is
    kept. Only a
    directory the demo made (it holds DEMO_MARK) or an empty one is emptied: `--state-dir` pointed
    at a real daemon's state must not cost its undelivered messages."""
    state_dir.mkdir(parents=True, exist_ok=True)
    mark = state_dir / DEMO_MARK
    if not mark.exists():
        if any(state_dir.iterdir()):
            raise DemoError(f"{state_dir} is not empty and was not made by `liftwatch demo`: "
                            "give an empty or new --state-dir")
        mark.write_text("made by `liftwatch demo`; emptied at the start of every demo run\n")
    for pattern in ("outbox.sqlite*", "upstream.jsonl*", "broker-archive.jsonl", "status.json", "status.tmp",
                    "daemon.log", "mosquitto.*", "liftwatch.toml", "events-*.json"):
        for p in state_dir.glob(pattern):
            p.unlink()
    for sub in ("boards", "reports"):
        shutil.rmtree(state_dir / sub, ignore_errors=True)


def run_demo(opts: DemoOptions, console: Any) -> DemoResult:
    """Everything `liftwatch demo` does; SIGINT (Ctrl-C) ends the simulated day early, cleanly."""
    from liftwatch.hil.mockboard.board import MockBoard

    fleet = DemoFleet.load(opts.fleet)
    if not 1 <= opts.cars <= len(fleet.cars):
        raise DemoError(f"--cars {opts.cars}: the fleet file has {len(fleet.cars)} cars")
    fleet = dataclasses.replace(fleet, cars=fleet.cars[: opts.cars])
    state_dir = opts.state_dir.resolve()
    _fresh_state_dir(state_dir)
    log_handler = logging.FileHandler(state_dir / "daemon.log")
    log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(log_handler)
    logging.getLogger().setLevel(logging.INFO)
    say = console.print
    started = time.monotonic()
    boards: dict[str, MockBoard] = {}
    broker: LocalBroker | None = None
    try:
        image = firmware_image(state_dir / "cache", say)
        (state_dir / "boards").mkdir()
        for c in fleet.cars:
            copy = state_dir / "boards" / f"{c.car}.img"
            shutil.copyfile(image, copy)
            board = MockBoard(copy, c.scenario.timeline(), speed=CALIBRATION_SPEED, sensor=c.sensor,
                              uid=c.board_uid, seed=c.scenario.seed)
            boards[c.car] = board
            board.start()
            say(f"powered on {c.car:<22} {c.sensor:<9} data port {board.ports.data}  ({c.story})")
        ports = {car: b.ports.data for car, b in boards.items()}
        say("calibrating the boards at rest (CONTROL calibrate over the data link)...")
        gravity = asyncio.run(calibrate_boards(boards, say))
        for car, g in gravity.items():
            say(f"  {car:<22} gravity {list(g)} counts")
        if opts.mqtt:
            broker = LocalBroker(state_dir)
            try:
                broker.start()
            except BrokerError as err:
                raise DemoError(f"--mqtt: {err} (without --mqtt the demo uses the JSON Lines journal)") from None
            say(f"Mosquitto on 127.0.0.1:{broker.port}; archive subscriber -> {broker.archive_path}")
        config_path = state_dir / "liftwatch.toml"
        config_path.write_text(daemon_config_toml(fleet, ports, mqtt_port=broker.port if broker else None,
                                                  status_port=opts.status_port))
        day = opts.day or (_local(time.time(), fleet.utc_offset_h).date() - dt.timedelta(days=1))
        epoch = fleet.start_utc_s(day) - CALIBRATION_REST_S
        clock = FleetClock(epoch, boards)
        end_ts = epoch + CALIBRATION_REST_S + opts.duration_s
        tally = FleetTally([c.car for c in fleet.cars])
        interrupted, status_url = asyncio.run(_serve(fleet, config_path, clock, end_ts, tally, opts, console, boards))
    finally:
        for b in boards.values():
            b.stop()
        if broker is not None:
            broker.stop()
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()
    sim_s = max(0.0, clock.now() - epoch - CALIBRATION_REST_S)
    journal = broker.archive_path if broker else state_dir / "upstream.jsonl"
    reports = write_reports(fleet, state_dir, journal, epoch + CALIBRATION_REST_S, clock.now(), say)
    return DemoResult(interrupted, sim_s, time.monotonic() - started, journal, tuple(reports), config_path, tally,
                      status_url)


async def _serve(fleet: DemoFleet, config_path: Path, clock: FleetClock, end_ts: float, tally: FleetTally,
                 opts: DemoOptions, console: Any, boards: dict[str, Any]) -> tuple[bool, str]:
    """Run the daemon until the simulated end or SIGINT; returns whether it was interrupted."""
    from rich.live import Live

    from liftwatch.edge_daemon.config import load_config
    from liftwatch.edge_daemon.daemon import Daemon, DaemonStartError

    config = load_config(config_path)
    stop = asyncio.Event()
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        interrupted.set()
        stop.set()
        # A second Ctrl-C is Python's own again: KeyboardInterrupt, boards stopped on the way out.
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    loop.add_signal_handler(signal.SIGTERM, on_sigint)
    plane = None
    if config.status is not None:
        from liftwatch.edge_daemon.service import SystemdNotifier
        from liftwatch.edge_daemon.status.plane import OperatorPlane

        # No systemd here: no notify socket, no watchdog.
        plane = OperatorPlane(config.site, config.boards, config.status, notifier=SystemdNotifier(""),
                              watchdog_s=0.0, clock=clock.now)
    daemon = Daemon(config, clock=clock.now, on_delivered=tally.on_delivered, plane=plane)
    run = asyncio.create_task(daemon.run(stop), name="daemon")
    while not daemon.boards and not run.done():  # the daemon builds its board tasks once the outbox is open
        await asyncio.sleep(0.01)
    clock.sessions = {b.board.car: b.pipeline.session for b in daemon.boards}
    status_url = ""
    while plane is not None and plane.server is not None and not run.done():
        try:
            status_url = plane.server.url  # RuntimeError until it listens
            break
        except RuntimeError:
            await asyncio.sleep(0.01)
    if run.done():
        try:
            run.result()
        except DaemonStartError as err:
            raise DemoError(f"{err} (try --status-port 0)") from err
    if status_url:
        console.print(f"status page: [bold]{status_url}[/bold] (fleet view; a car's detail at {status_url}#car=<car>)")
    # The cars stay at real time until the daemon hears every board: a UART nobody reads loses
    # its bytes, and the day's first events must not happen before the daemon listens.
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while (any(s.last_heard_s is None for s in clock.sessions.values()) and not run.done()
           and not stop.is_set() and time.monotonic() < deadline):
        await asyncio.sleep(0.05)
    for b in boards.values():
        b.set_speed(opts.speed)
    sink = str(config.upstream.journal_path) if config.upstream.mqtt is None else \
        f"mqtt://127.0.0.1:{config.upstream.mqtt.port} (archive {config_path.parent / 'broker-archive.jsonl'})"
    wall0, sim0 = time.monotonic(), clock.now()
    last_outbox: dict[str, Any] = {}

    def table() -> Any:
        statuses = {b.board.car: b.pipeline.session.status() for b in daemon.boards}
        if not run.done() and daemon.outbox is not None:
            last_outbox.update(daemon.outbox.stats().to_status())
        outbox = last_outbox
        elapsed = time.monotonic() - wall0
        rate = (clock.now() - sim0) / elapsed if elapsed > 0.5 else opts.speed
        return render_table(fleet, tally, statuses, clock.now(), outbox, rate, sink, console.width)

    live_mode = console.is_terminal if opts.live is None else opts.live
    console.print(f"running the daemon ({config_path}); simulated day {_local(clock.epoch_s + CALIBRATION_REST_S, fleet.utc_offset_h):%Y-%m-%d %H:%M} "
                  f"+ {opts.duration_s / 3600:.1f} h at up to x{opts.speed:.0f}; Ctrl-C ends it early")
    try:
        if live_mode:
            with Live(table(), console=console, refresh_per_second=REFRESH_PER_S, transient=False) as live:
                while not stop.is_set() and clock.now() < end_ts and not run.done():
                    await asyncio.sleep(1 / REFRESH_PER_S)
                    _check_boards(boards)
                    live.update(table())
        else:
            next_print = 0.0
            while not stop.is_set() and clock.now() < end_ts and not run.done():
                await asyncio.sleep(0.25)
                _check_boards(boards)
                if time.monotonic() >= next_print:
                    console.print(table())
                    next_print = time.monotonic() + PLAIN_EVERY_S
            console.print(table())  # the last picture, before shutdown takes the boards offline
    finally:
        stop.set()
        try:
            await run
        except DaemonStartError as err:
            raise DemoError(str(err)) from err
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    return interrupted.is_set(), status_url


def _check_boards(boards: dict[str, Any]) -> None:
    for car, b in boards.items():
        if b.error is not None:
            raise DemoError(f"{car}: mock board failed: {b.error!r}")


def write_reports(fleet: DemoFleet, state_dir: Path, journal: Path, first_ts: float, last_ts: float,
                  say: Callable[[str], None]) -> list[Path]:
    """The insurer's fleet report and one record per car (HTML), from the journal and the outbox."""
    from liftwatch.edge_daemon.report.figures import Period
    from liftwatch.edge_daemon.report.writer import (
        ReportError,
        write_car_report,
        write_fleet_report,
    )

    sources = [p for p in (journal, state_dir / "outbox.sqlite") if p.exists()]
    if not sources:
        return []
    out_dir = state_dir / "reports"
    out_dir.mkdir(exist_ok=True)
    period = Period(_local(first_ts, fleet.utc_offset_h).date(),
                    _local(max(first_ts, last_ts - 1), fleet.utc_offset_h).date(), fleet.utc_offset_h)
    written: list[Path] = []
    try:
        written.append(write_fleet_report(sources, period, out_dir / "fleet-report.html", "html").path)
    except ReportError as err:
        say(f"fleet report not written: {err}")
    for c in fleet.cars:
        try:
            written.append(write_car_report(sources, c.car, period, out_dir / f"report-{c.car}.html", "html").path)
        except ReportError as err:
            say(f"{c.car}: report not written: {err}")
    return written


def print_summary(fleet: DemoFleet, result: DemoResult, console: Any) -> None:
    """Per car: trips, faults raised and cleared with response and repair times, visits; then where
    everything is."""
    head = "interrupted (Ctrl-C) after" if result.interrupted else "simulated"
    console.print(f"\n[bold]{head} {result.sim_s / 3600:.1f} h in {result.wall_s:.0f} s "
                  f"(x{result.sim_s / max(result.wall_s, 1e-9):.0f} overall, set-up included)[/bold]")
    for c in fleet.cars:
        t = result.tally.cars.get(c.car)
        if t is None:
            continue
        console.print(f"\n[bold]{c.car}[/bold]  {c.building}")
        rq = f", worst vertical A95 {t.rq_worst_z_a95_mg:.1f} mg" if t.rq_worst_z_a95_mg is not None else ""
        console.print(f"  trips {t.trips}{rq}")
        for ftype, n in sorted(t.raised.items()):
            console.print(f"  fault {ftype}: raised {n}")
        for ev in t.cleared:
            console.print(f"  cleared {ev.get('type')}: lasted {_minutes(ev.get('duration_s'))}, "
                          f"response {_minutes(ev.get('response_s'))}, repair {_minutes(ev.get('repair_s'))}")
        for ftype in sorted(t.open_faults):
            console.print(f"  [red]still open[/red]: {ftype}")
        for v in t.visits:
            short = " [red]TOO SHORT[/red] (contract: 40 min)" if v.get("too_short") else ""
            console.print(f"  maintenance visit {_minutes(v.get('duration_s'))}, "
                          f"{v.get('inspection_runs', 0)} inspection runs{short}")
        if not (t.raised or t.visits):
            console.print("  no faults, no maintenance visit")
    label = "broker archive:    " if result.journal.name == "broker-archive.jsonl" else "JSON Lines journal:"
    console.print(f"\n{label} {result.journal}")
    console.print(f"daemon config:      {result.config}  (liftwatch report --config reads it)")
    for r in result.reports:
        console.print(f"report:             {r}")
    if result.status_url:
        console.print(f"status page:        {result.status_url} (served while the demo ran; to keep one up, run the "
                      "daemon with the config above)")


# -- CLI ------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="simulated cars on mock boards running the real firmware, the daemon, a day played quickly",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--cars", type=int, default=3, help="how many cars of the fleet file (default 3)")
    p.add_argument("--speed", type=float, default=DEFAULT_SPEED,
                   help=f"sim seconds per real second, at most (default {DEFAULT_SPEED:g}; the boards slow it on a busy CPU)")
    p.add_argument("--duration", default=DEFAULT_DURATION, help=f"simulated time to run: 24h, 90m, 1h30m (default {DEFAULT_DURATION}: 06:00-16:00)")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="outbox, journal, reports (default var/demo)")
    p.add_argument("--mqtt", action="store_true", help="deliver through a local Mosquitto (must be installed)")
    p.add_argument("--fleet", type=Path, default=FLEET_FILE, help="fleet file (default hil_tests/demo_fleet.toml)")
    p.add_argument("--day", type=dt.date.fromisoformat, default=None,
                   help="local day to simulate, YYYY-MM-DD (default: yesterday)")
    p.add_argument("--plain", action="store_true", help="print table snapshots instead of a live table")
    p.add_argument("--status-port", type=int, default=DEFAULT_STATUS_PORT,
                   help=f"status page port on 127.0.0.1 (default {DEFAULT_STATUS_PORT}; 0: any free port; -1: none)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # a log file or a pipe: wide enough for every column
        console = Console(width=max(console.width, 132))
    try:
        duration_s = parse_duration(args.duration)
    except ValueError as err:
        print(f"liftwatch demo: {err}", file=sys.stderr)
        return 2
    if args.speed <= 0:
        print("liftwatch demo: --speed must be > 0", file=sys.stderr)
        return 2
    opts = DemoOptions(fleet=args.fleet, cars=args.cars, speed=args.speed, duration_s=duration_s,
                       state_dir=args.state_dir, mqtt=args.mqtt, day=args.day, live=False if args.plain else None,
                       status_port=None if args.status_port < 0 else args.status_port)
    try:
        fleet = DemoFleet.load(opts.fleet)
        result = run_demo(opts, console)
    except DemoError as err:
        print(f"liftwatch demo: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C during set-up or a second Ctrl-C: boards are already stopped
        print("liftwatch demo: interrupted", file=sys.stderr)
        return 130
    print_summary(dataclasses.replace(fleet, cars=fleet.cars[: opts.cars]), result, console)
    return 0
