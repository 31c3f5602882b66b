"""`liftwatch demo`: the fleet file, the clock, the tally, and one real short run ended by SIGINT.

The run is the product end to end: mock boards with the real firmware (flashed by `liftwatch flash`),
calibrated over their links, the real daemon with its outbox and journal, the report writer. A
two-car fleet packs its faults into the first simulated half hour so the run stays short.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from liftwatch.edge_daemon.config import parse_config

from liftwatch.demo import daemon_config_toml
from liftwatch.demo_clock import HEARTBEAT_S, FleetClock
from liftwatch.demo_fleet import DemoError, DemoFleet, parse_duration
from liftwatch.demo_table import FleetTally, render_table

# Car t-resi: a door that cannot close, then an entrapment answered by a technician after 5 min
# (inspection on), a 12-minute repair. Car t-hosp: a maintenance visit of 6 minutes (too short).
TEST_FLEET = """
[fleet]
site = "test-estate"
start_local = "08:00"

[[car]]
car = "t-resi"
building = "test residential"
story = "reopen loop, entrapment"
board_uid = "a4cf12e0b201"
car_file = "office6"
seed = 5
step = [
    {do = "ride", to = 2},
    {do = "door", reopen = 8},
    {do = "ride", to = 0},
    {do = "set", presence = true},
    {do = "trip", to = 4, stop_at = 0.5},
    {do = "wait", s = 40},
    {do = "set", alarm = true},
    {do = "wait", s = 5},
    {do = "set", alarm = false},
    {do = "wait", s = 300},
    {do = "set", inspection = true},
    {do = "trip", to = 1, speed_mps = 0.3},
    {do = "door", dwell_s = 15},
    {do = "set", presence = false},
    {do = "inspection", runs = 2, pause_s = 300},
    {do = "set", inspection = false},
    {do = "traffic", hours = 2, trips_per_hour = 20},
]

[[car]]
car = "t-hosp"
building = "test hospital"
story = "short maintenance"
board_uid = "a4cf12e0b202"
car_file = "office6"
seed = 6
step = [
    {do = "ride", to = 3},
    {do = "set", inspection = true},
    {do = "inspection", runs = 2, pause_s = 150},
    {do = "set", inspection = false},
    {do = "traffic", hours = 2, trips_per_hour = 20},
]
"""

# Typically 30-50 s; generous because CI boxes run other suites beside this one.
RUN_TIMEOUT_S = 150.0


def test_default_fleet_loads_three_buildings() -> None:
    fleet = DemoFleet.load()
    assert len(fleet.cars) == 3
    assert len({c.car for c in fleet.cars}) == 3
    assert len({c.scenario.car.name for c in fleet.cars}) == 3  # three different lifts
    for c in fleet.cars:
        assert c.scenario.steps[0] == {"do": "wait", "s": 60.0}  # the board calibrates at rest first
        assert c.scenario.car.floors >= 6


def test_bad_fleet_names_the_car(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.toml"
    bad.write_text('[[car]]\ncar = "ok"\nsensor = "mpu6050"\n')
    with pytest.raises(DemoError, match=r"car\[0\]: sensor 'mpu6050'"):
        DemoFleet.load(bad)
    bad.write_text('[[car]]\ncar = "ok"\n[[car.step]]\ndo = "fly"\n')
    with pytest.raises(DemoError, match=r"car\[0\].*fly"):
        DemoFleet.load(bad)
    bad.write_text('[[car]]\ncar = "a b"\n')
    with pytest.raises(DemoError, match="car must be"):
        DemoFleet.load(bad)


@pytest.mark.parametrize(("text", "seconds"), [("24h", 86400), ("90m", 5400), ("1h30m", 5400), ("45s", 45),
                                                ("600", 600), ("0.5h", 1800)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1d", "-5", "0", "5 minutes"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_daemon_config_is_valid_for_the_daemon(tmp_path: Path) -> None:
    fleet = DemoFleet.load()
    ports = {c.car: f"/dev/pts/{i}" for i, c in enumerate(fleet.cars)}
    cfg = parse_config(tomllib.loads(daemon_config_toml(fleet, ports, mqtt_port=None)), "demo", tmp_path)
    assert [b.car for b in cfg.boards] == [c.car for c in fleet.cars]
    assert cfg.upstream.mqtt is None and cfg.upstream.journal_path == tmp_path / "upstream.jsonl"
    resi = cfg.boards[1].analytics
    assert (resi.floor_count, resi.rated_speed_mps) == (11, 1.0)
    with_mqtt = parse_config(tomllib.loads(daemon_config_toml(fleet, ports, mqtt_port=18830)), "demo", tmp_path)
    assert with_mqtt.upstream.mqtt is not None and with_mqtt.upstream.mqtt.port == 18830


def test_state_dir_of_a_real_daemon_is_refused(tmp_path: Path) -> None:
    from liftwatch.demo import _fresh_state_dir

    real = tmp_path / "lib"
    real.mkdir()
    (real / "outbox.sqlite").write_bytes(b"undelivered")
    with pytest.raises(DemoError, match="not made by `liftwatch demo`"):
        _fresh_state_dir(real)
    assert (real / "outbox.sqlite").read_bytes() == b"undelivered"
    demo = tmp_path / "demo"
    _fresh_state_dir(demo)
    (demo / "upstream.jsonl").write_text("{}\n")
    _fresh_state_dir(demo)  # its own: emptied
    assert not (demo / "upstream.jsonl").exists()


def _board(t_s: float) -> SimpleNamespace:
    return SimpleNamespace(stats=SimpleNamespace(board_t_us=int(t_s * 1e6)), set_speed=lambda s: None)


def test_clock_gives_each_board_its_own_time_as_the_daemon_read_it() -> None:
    import asyncio

    a, b = _board(100.0), _board(40.0)
    wall = [0.0]
    clock = FleetClock(1000.0, {"a": a, "b": b}, stall_s=3.0, monotonic=lambda: wall[0])
    assert clock.now() == 1040.0  # before the daemon runs, outside a board task: the slowest feed
    # The daemon read b's heartbeat at uptime 20 while b's feed was at 40: b booted at feed 20.
    clock.sessions = {"b": SimpleNamespace(last_heartbeat={"uptime_s": 20}, boot_id=1)}
    assert clock.board_s("b") == 40.0
    b.stats.board_t_us = 60_000_000  # the board goes on; the daemon has not read further yet
    assert clock.board_s("b") == 40.0 + HEARTBEAT_S  # boot 20 + uptime 20 + one heartbeat period, not feed 60
    assert clock.board_s("a") == 100.0

    async def ask(name: str) -> float:
        async def inner() -> float:
            return clock.now()
        return await asyncio.create_task(inner(), name=name)

    assert asyncio.run(ask("board a: session")) == 1100.0
    assert asyncio.run(ask("board b: session")) == 1040.0 + HEARTBEAT_S
    assert asyncio.run(ask("upstream")) == 1040.0 + HEARTBEAT_S
    wall[0] = 10.0  # b's feed has not moved for 10 s: its firmware is gone, its time goes on
    assert clock.board_s("b") == 100.0
    b.stats.board_t_us = 0
    clock.sessions = {}
    wall[0] = 10.5
    assert clock.board_s("b") == 100.0  # never backwards


def test_a_car_at_the_day_end_waits_at_real_time_for_the_others() -> None:
    from liftwatch.demo import CALIBRATION_SPEED, _hold_at_day_end

    speeds: dict[str, float] = {}
    boards = {car: SimpleNamespace(stats=SimpleNamespace(board_t_us=int(t_s * 1e6)),
                                   set_speed=lambda x, car=car: speeds.__setitem__(car, x))
              for car, t_s in (("fast", 3600.0), ("slow", 3000.0))}
    clock = FleetClock(1000.0, boards)
    held: set[str] = set()
    _hold_at_day_end(boards, clock, 1000.0 + 3600, held)
    assert speeds == {"fast": CALIBRATION_SPEED} and held == {"fast"}
    _hold_at_day_end(boards, clock, 1000.0 + 3600, held)  # once per board
    assert speeds == {"fast": CALIBRATION_SPEED}


def test_tally_counts_what_went_upstream() -> None:
    tally = FleetTally(["c1"])
    msgs = [
        {"car": "c1", "kind": "trip", "to_floor": 3, "ride_quality": {"z_a95_pp_mg": 9.5}},
        {"car": "c1", "kind": "event", "type": "entrapment", "state": "raised", "event_ts": "2026-11-24T10:00:00Z"},
        {"car": "c1", "kind": "event", "type": "entrapment", "state": "cleared", "response_s": 300.0,
         "repair_s": 900.0, "duration_s": 900.0},
        {"car": "c1", "kind": "maintenance", "duration_s": 600, "too_short": True},
        {"car": "other", "kind": "trip"},
    ]
    tally.on_delivered([SimpleNamespace(payload=json.dumps(m).encode()) for m in msgs] +
                       [SimpleNamespace(payload=b"not json")])
    t = tally.cars["c1"]
    assert (t.trips, t.floor, t.rq_worst_z_a95_mg) == (1, 3, 9.5)
    assert t.raised == {"entrapment": 1} and not t.open_faults and t.cleared[0]["response_s"] == 300.0
    assert t.visits[0]["too_short"] is True
    assert tally.delivered == 6


def _demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liftwatch", "demo", "--plain", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("cars", ["0", "4", "-1"])
def test_a_car_count_the_fleet_does_not_have_is_a_bad_option(tmp_path: Path, cars: str) -> None:
    done = _demo("--cars", cars, "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "the fleet file has 3 cars" in done.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was made


def test_a_taken_status_port_is_refused_before_flashing(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = _demo("--status-port", str(port), "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 1 and f"127.0.0.1:{port} is taken" in done.stderr and done.stderr.count("\n") == 1
    assert "flashing" not in done.stdout and "powered on" not in done.stdout  # no minutes spent first
    assert time.monotonic() - started < 30
    assert _demo("--status-port", "70000").returncode == 2


def test_table_shows_the_site_time_with_its_zone() -> None:
    import datetime as dt

    from rich.console import Console

    fleet = DemoFleet.load()
    now = fleet.start_utc_s(dt.date(2026, 12, 5)) + 3600
    table = render_table(fleet, FleetTally([c.car for c in fleet.cars]), {}, now, {"pending": 7}, 200.0, "journal")
    console = Console(record=True, width=132)
    console.print(table)
    text = console.export_text()
    assert "2026-12-05 07:00 UTC+08:00 site time" in text and "7 pending" in text


def _descendants(pid: int) -> set[int]:
    rows = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout.split("\n")
    children: dict[int, list[int]] = {}
    for row in rows:
        if row.strip():
            p, pp = map(int, row.split())
            children.setdefault(pp, []).append(p)
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.add(c)
            todo.append(c)
    return found


def _journal(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line being written
    return out


def _upstream(state: Path) -> list[dict]:
    """What the run sent: the journal, and what the outbox still held when the daemon stopped."""
    from liftwatch.edge_daemon.outbox import Outbox

    outbox = Outbox(state / "outbox.sqlite")
    try:
        return _journal(state / "upstream.jsonl") + [json.loads(m.payload) for m in outbox.pending(limit=100_000)]
    finally:
        outbox.close()


def _seen(messages: list[dict]) -> bool:
    kinds = {(m.get("car"), m.get("kind"), m.get("type"), m.get("state")) for m in messages}
    return {("t-resi", "event", "door_reopen_loop", "raised"), ("t-resi", "event", "entrapment", "cleared"),
            ("t-hosp", "maintenance", None, None)} <= kinds


@pytest.mark.hil
@pytest.mark.micropython
def test_demo_runs_the_fleet_and_ends_cleanly_on_sigint(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(TEST_FLEET)
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "liftwatch", "demo", "--fleet", str(fleet), "--cars", "2", "--duration", "8h",
         "--speed", "300", "--state-dir", str(state), "--plain", "--status-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    journal = state / "upstream.jsonl"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    children: set[int] = set()
    try:
        while time.monotonic() < deadline and proc.poll() is None and not _seen(_journal(journal)):
            children |= _descendants(proc.pid)
            time.sleep(0.5)
        assert proc.poll() is None, (lines, proc.stderr.read())
        children |= _descendants(proc.pid)
        url = next(re.search(r"http://127\.0\.0\.1:\d+/", line).group(0) for line in lines if "status page:" in line)
        with urllib.request.urlopen(url + "api/snapshot", timeout=10) as resp:
            snapshot = json.load(resp)
        proc.send_signal(signal.SIGINT)
        err = proc.stderr.read()
        proc.wait(timeout=60)
        reader.join(10)
        out = "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the status page showed the cars live, with their trips
    cars = {c["car"]: c for c in snapshot["cars"]}
    assert set(cars) == {"t-resi", "t-hosp"}
    assert all(c["board"]["online"] for c in cars.values()) and cars["t-resi"]["trips"]
    assert proc.returncode == 0, err[-3000:]
    messages = _journal(journal)
    assert _seen(messages), sorted({str((m.get("car"), m.get("kind"), m.get("type"), m.get("state"))) for m in messages})
    assert any(m["kind"] == "trip" and m["car"] == "t-resi" for m in messages)
    visit = next(m for m in messages if m["kind"] == "maintenance" and m["car"] == "t-hosp")
    assert visit["too_short"] is True and visit["inspection_runs"] == 2
    cleared = next(m for m in messages if m.get("type") == "entrapment" and m.get("state") == "cleared")
    assert cleared["duration_s"] > 300  # the technician came after 5 simulated minutes
    sent = _upstream(state)
    assert not [m for m in sent if m.get("type") == "board_offline"]  # stopping the demo is not a fault
    # The day ended at Ctrl-C: each car's partial daily record, with the door figures the report shows.
    daily = {m["car"]: m for m in sent if m["kind"] == "daily"}
    assert set(daily) == {"t-resi", "t-hosp"} and all(d["partial"] for d in daily.values())
    assert daily["t-resi"]["door_cycles"] > 0 and daily["t-resi"]["door_reopenings"] > 0
    # t-resi's technician was still on site (or within the 10-minute join gap): the visit is sent
    # with the entrapment it answered, so the report does not judge the response late.
    resi_visit = next(m for m in sent if m["kind"] == "maintenance" and m["car"] == "t-resi")
    assert "entrapment" in {f["type"] for f in resi_visit["faults_responded"]}
    # the live table was drawn (plain snapshots), then the summary
    assert "t-resi" in out and "faults open" in out and "raised / cleared" in out
    assert "interrupted (Ctrl-C)" in out and "door_reopen_loop" in out
    assert (state / "reports" / "report-t-resi.html").stat().st_size > 10_000
    assert (state / "reports" / "fleet-report.html").exists()
    assert str(journal) in out and url in out
    # Advice that works after the demo: its boards' ports (/dev/pts/N) are gone, maybe reused by then.
    advice = next(line for line in out.splitlines() if line.startswith("status page:") and "closed" in line)
    assert "/dev/pts" not in advice and "liftwatch demo --duration" in advice
    assert len(children) >= 2  # the mock boards' interpreters were running...
    time.sleep(0.5)
    assert not {p for p in children if Path(f"/proc/{p}").exists()}  # ...and none is left
