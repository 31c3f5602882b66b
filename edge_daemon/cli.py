"""Daemon subcommands: `run`, `replay`, `status`, `calibrate` (registered into `liftwatch`)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from liftwatch.errors import LiftwatchError
from liftwatch.output import atomic_output

# Exit codes: 0 ok, 1 the operation failed, 2 bad input (config, trace, arguments).
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
DEFAULT_STATE_DIR = "/var/lib/liftwatch"
# A status file older than this was not refreshed by a running daemon.
STATUS_STALE_S = 30.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="run the edge daemon (boards -> analytics -> outbox -> upstream)")
    p.add_argument("--config", required=True, type=Path, help="TOML config (docs/config.md)")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser(
        "replay", help="run a trace CSV through the real firmware and the daemon pipeline; JSON Lines out"
    )
    p.add_argument("trace", type=Path, help="trace CSV (t_us,ax_mg,ay_mg,az_mg,door_closed,...)")
    p.add_argument("--config", type=Path, help="TOML config: site, and the car's analytics settings")
    p.add_argument("--car", help="which [[boards]] car of the config to use (default: the first)")
    p.add_argument("--start", default="1970-01-01T00:00:00Z", help="UTC time of trace time 0 (ISO 8601)")
    p.add_argument("--out", type=Path, help="output file (default: stdout)")
    p.add_argument("--keep", metavar="DIR", help="keep the feed, UART capture and console log in DIR")
    p.set_defaults(func=cmd_replay)

    p = subparsers.add_parser("status", help="boards, link quality, outbox depth, last events of the running daemon")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", type=Path, help="the daemon's config (finds its state_dir)")
    src.add_argument("--state-dir", type=Path, help=f"the daemon's state_dir (default {DEFAULT_STATE_DIR})")
    p.add_argument("--json", action="store_true", help="print the raw status JSON")
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("calibrate", help="calibrate a board at rest (gravity vector), over its link")
    p.add_argument("--config", type=Path, help="config naming the board (with --car)")
    p.add_argument("--car", help="car of the board in the config (default: the only one)")
    p.add_argument("--port", help="serial port of the board, without a config")
    p.add_argument("--baudrate", type=int, default=None,
                   help="serial port speed (default: the board's `baudrate` in the config, else 921600)")
    p.add_argument("--key-file", help="with --port: the board's frame-tag key (hex); a config names it as key_file")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the board")
    p.set_defaults(func=cmd_calibrate)


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"liftwatch: {message}", file=sys.stderr)
    return code


def parse_start(text: str) -> float:
    """ISO 8601 to UTC seconds; a time without zone is UTC (traces are in board time, not local)."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise ValueError(f"--start {text!r} is not ISO 8601 (e.g. 2026-03-01T08:00:00Z)") from err
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


# -- run ------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from liftwatch.edge_daemon.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as err:
        return _fail(str(err), EXIT_BAD_INPUT)
    if args.check:
        n = len(config.boards)
        print(f"{args.config}: ok ({n} board{'' if n == 1 else 's'}, site {config.site})")
        return 0
    from liftwatch.edge_daemon.daemon import DaemonStartError

    try:
        return asyncio.run(_run(config))
    except DaemonStartError as err:
        return _fail(str(err))


async def _run(config: Any) -> int:
    """The daemon plus its operator plane, which serves the status page and /metrics (unless
    `[status] enabled = false`), tells systemd READY once the boards and upstream run, pings the
    watchdog while frames and deliveries progress, and says STOPPING on the way out."""
    from liftwatch.edge_daemon.daemon import Daemon
    from liftwatch.edge_daemon.service import configure_logging, raise_fd_limit
    from liftwatch.edge_daemon.status.plane import OperatorPlane

    configure_logging(config.log_level)
    raise_fd_limit()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    plane = OperatorPlane(config.site, config.boards, config.status)
    await Daemon(config, plane=plane).run(stop)
    return 0


# -- replay ---------------------------------------------------------------------------------------


def _topic_safe(name: str) -> str:
    return (re.sub(r"[^A-Za-z0-9_.:-]", "-", name) or "car-1")[:64]


def cmd_replay(args: argparse.Namespace) -> int:
    from liftwatch.edge_daemon.config import ConfigError, load_config
    from liftwatch.edge_daemon.replay import ReplayError, ReplaySettings, replay_trace
    from liftwatch.protocol.trace import TraceError, read_trace_car

    if not args.trace.is_file():
        return _fail(f"{args.trace}: no such trace file", EXIT_BAD_INPUT)
    try:
        start = parse_start(args.start)
    except ValueError as err:
        return _fail(str(err), EXIT_BAD_INPUT)
    settings = ReplaySettings(car=_topic_safe(args.car or args.trace.stem), start_unix_s=start)
    if args.config:
        try:
            cfg = load_config(args.config)
        except ConfigError as err:
            return _fail(str(err), EXIT_BAD_INPUT)
        boards = [b for b in cfg.boards if args.car in (None, b.car)]
        if args.car and not boards:
            return _fail(f"{args.config}: no [[boards]] with car = {args.car!r}", EXIT_BAD_INPUT)
        board = boards[0] if boards else None
        settings = ReplaySettings(
            site=cfg.site, car=board.car if board else settings.car, board_id=board.board_id if board else "",
            start_unix_s=start, analytics=board.analytics if board else cfg.analytics, session=cfg.session,
        )
    note = ""
    if not args.config:
        analytics, note = _header_car_analytics(args.trace, settings.analytics)
        settings = replace(settings, analytics=analytics)
    header_car = read_trace_car(args.trace)
    if header_car is not None and header_car.sensor_noise_mg:  # the simulated sensor's, whatever the config
        settings = replace(settings, sensor_noise_mg=header_car.sensor_noise_mg)
    try:
        with atomic_output(args.out, "wb") if args.out else nullcontext(sys.stdout.buffer) as out:
            result = asyncio.run(replay_trace(args.trace, out, settings, keep_dir=args.keep))
    except TraceError as err:
        return _fail(f"{args.trace}: {err}" if str(args.trace) not in str(err) else str(err), EXIT_BAD_INPUT)
    except ReplayError as err:
        return _fail(str(err))
    if note:  # after the run: a failed or interrupted replay says only what went wrong
        print(note, file=sys.stderr)
    print(
        f"replay: {result.trace_s:.1f} s of trace in {result.wall_s:.1f} s ({result.speedup:.0f}x), "
        f"{result.frames} frames, {result.messages} messages"
        + (f", framing drops {result.framing_drops}" if result.framing_drops else ""),
        file=sys.stderr,
    )
    return 0


def _header_car_analytics(trace: Path, base: Any) -> tuple[Any, str]:
    """(analytics, note) for a trace replayed without --config: the car its header carries (as
    `liftwatch simulate` writes it); else no overspeed judgement at all, since no rated speed was
    given and a guessed one raises false faults. The note says which, once."""
    from liftwatch.protocol.trace import read_trace_car

    car = read_trace_car(trace)
    if car is not None:
        analytics = replace(base, rated_speed_mps=car.rated_speed_mps, floor_count=car.floors,
                            vane_length_mm=car.vane_length_mm, zone_sensor_spacing_mm=car.zone_sensor_spacing_mm,
                            floor_levels_m=car.levels_m, floor_labels=car.labels)
        return analytics, (f"replay: car {car.name} from the trace header: rated speed {car.rated_speed_mps:g} m/s, "
                           f"{car.floors} floors (--config overrides)")
    return replace(base, rated_speed_mps=None), (
        f"replay: no --config and no car in the trace header: overspeed is not judged "
        f"(no rated speed), floors are not numbered, door-zone vane {base.vane_length_mm:g} mm with sensors "
        f"{base.zone_sensor_spacing_mm:g} mm apart (another geometry gets false leveling faults)")


# -- status ---------------------------------------------------------------------------------------


def _state_dir(args: argparse.Namespace) -> Path:
    if args.config:
        from liftwatch.edge_daemon.config import load_config

        return load_config(args.config).state_dir
    return args.state_dir or Path(DEFAULT_STATE_DIR)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = max(0.0, seconds)
    if s < 120:
        return f"{s:.0f}s ago"
    if s < 7200:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


def _parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _site_time(ts: float, zone: dt.timezone) -> str:
    """A time as people at the site read it, its zone named (`2026-12-05 14:07:00 UTC+08:00`)."""
    local = dt.datetime.fromtimestamp(ts, zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def _heard_s(board: dict[str, Any], written: float | None, daemon_ts: float | None, now: float) -> float | None:
    """Seconds since the daemon last heard the board: its age at the snapshot, on the daemon's own
    clock, plus the snapshot's age."""
    since_written = max(0.0, now - written) if written is not None else 0.0
    age = board.get("heard_age_s")
    if isinstance(age, (int, float)):
        return age + since_written
    last = board.get("last_heard_ts")  # a daemon from before `heard_age_s`
    return None if last is None or daemon_ts is None else max(0.0, daemon_ts - last) + since_written


def format_status(status: dict[str, Any], now: float) -> str:
    """Human table of a status snapshot (the same dict the daemon writes), times in the site's zone.

    Staleness is judged by the real time the snapshot was written (`written_ts`), not by the
    daemon's clock (`ts`), which the demo simulates; a board's last frame is aged on the daemon's
    own clock (`heard_age_s`), not against its board-clock timestamp."""
    daemon_ts = _parse_iso(status.get("ts"))
    written = _parse_iso(status.get("written_ts")) or daemon_ts
    zone = dt.timezone(dt.timedelta(hours=float(status.get("utc_offset_h") or 0.0)))
    stale = written is None or now - written > STATUS_STALE_S
    at = "" if daemon_ts is None else f"  at {_site_time(daemon_ts, zone)}"
    head = f"site {status.get('site')}  pi {status.get('pi')}{at}  snapshot {_ago(None if written is None else now - written)}"
    if stale:
        head += "  (STALE: is `liftwatch run` running?)"
    up = status.get("upstream", {})
    ob = status.get("outbox", {})
    lines = [
        head,
        f"upstream {up.get('state')}  delivered {up.get('delivered', 0)}  connects {up.get('connects', 0)}  "
        f"outbox pending {ob.get('pending', 0)} ({ob.get('pending_bytes', 0) / 1e6:.2f} of "
        f"{ob.get('budget_bytes', 0) / 1e6:.0f} MB)",
        "",
        f"{'car':<16} {'board':<18} {'link':<12} {'online':<6} {'heard':<10} {'frames':>8} {'lost':>6} "
        f"{'drops':>6} {'quality':>7} {'boots':>5}  faults",
    ]
    for b in status.get("boards", []):
        c = b.get("counters", {})
        drops = sum(b.get("framing_drops", {}).values()) + sum(c.get("drops", {}).values())
        lines.append(
            f"{b.get('car', '?'):<16} {str(b.get('board') or '-'):<18} {b.get('phase', '?'):<12} "
            f"{'yes' if b.get('online') else 'NO':<6} {_ago(_heard_s(b, written, daemon_ts, now)):<10} "
            f"{c.get('frames', 0):>8} {c.get('lost_frames', 0):>6} {drops:>6} {_percent(b.get('link_quality')):>7} "
            f"{c.get('reboots', 0):>5}  {', '.join(b.get('active_faults', [])) or '-'}"
        )
        notes = []
        if b.get("config_error"):
            notes.append(f"config refused: {b['config_error']}")
        if b.get("link_counters", {}).get("last_error") and not b.get("online"):
            notes.append(f"last link error: {b['link_counters']['last_error']}")
        if b.get("expected_board") and b.get("board") and b["board"] != b["expected_board"]:
            notes.append(f"WRONG BOARD: config expects {b['expected_board']}")
        if b.get("safe_mode"):
            notes.append("board in SAFE MODE")
        if b.get("update"):  # the firmware update boot record (HELLO)
            notes.append(f"firmware {b.get('fw_version')} {b['update']}, previous {b.get('prev_fw_version') or '-'}")
        running = b.get("update_running")
        if running and running.get("kind") == "push":  # an update riding the daemon's session now
            notes.append(f"updating to {running['version']}: {running['step']}, "
                         f"{running['have']} of {running['total']} bytes on the board")
        last = b.get("last_update") or {}
        if last.get("outcome") not in (None, "updated"):  # `liftwatch ota push | rollout` kept why
            notes.append(f"update to {last.get('version')} {last['outcome'].replace('_', ' ')}: {last.get('reason')}")
        elif b.get("update_refused"):
            notes.append(f"update refused: {b['update_refused']}")
        if b.get("online") and not b.get("calibrated"):
            notes.append("not calibrated: run `liftwatch calibrate`")
        lines += [f"{'':<16} ! {n}" for n in notes]
        for e in b.get("last_events", [])[-3:]:
            event_ts = _parse_iso(e.get("event_ts"))
            when = e.get("event_ts") if event_ts is None else _site_time(event_ts, zone)
            lines.append(f"{'':<16} - {when} {e.get('type')} {e.get('state')}")
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def cmd_status(args: argparse.Namespace) -> int:
    from liftwatch.edge_daemon.config import ConfigError

    try:
        path = _state_dir(args) / "status.json"
    except ConfigError as err:
        return _fail(str(err), EXIT_BAD_INPUT)
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        return _fail(f"{path} not found: the daemon has not run with this state_dir")
    except (OSError, ValueError) as err:
        return _fail(f"{path}: {err}")
    print(json.dumps(status, indent=1) if args.json else format_status(status, time.time()))
    return 0


# -- calibrate ------------------------------------------------------------------------------------


def cmd_calibrate(args: argparse.Namespace) -> int:
    from liftwatch.edge_daemon.config import ConfigError, load_config
    from liftwatch.edge_daemon.session import SessionConfig
    from liftwatch.edge_daemon.transport import LinkKind, make_transport
    from liftwatch.protocol.framing import FrameReader

    if args.port:
        if args.config:
            return _fail("give --port or --config, not both", EXIT_BAD_INPUT)
        try:
            key = bytes.fromhex(Path(args.key_file).read_text().strip()) if args.key_file else None
        except (OSError, ValueError) as err:
            return _fail(f"--key-file {args.key_file}: {getattr(err, 'strerror', None) or 'not a hex key'}",
                         EXIT_BAD_INPUT)
        transport = make_transport(LinkKind.SERIAL, args.port, baudrate=args.baudrate)
        session_config, reader = SessionConfig(key=key), FrameReader(key=key, require_tag=key is not None)
    elif args.config:
        try:
            cfg = load_config(args.config)
        except ConfigError as err:
            return _fail(str(err), EXIT_BAD_INPUT)
        boards = [b for b in cfg.boards if args.car in (None, b.car)]
        if len(boards) != 1:
            return _fail("name the board with --car (the config has several)" if boards else
                         f"no board with car = {args.car!r}", EXIT_BAD_INPUT)
        board = boards[0]
        transport = make_transport(board.link, board.address, baudrate=args.baudrate or board.baudrate)
        # the board's key as the daemon uses it: a keyed board drops untagged commands
        session_config = cfg.session_for(board)
        reader = FrameReader(key=board.key, next_key=board.next_key, require_tag=board.require_tag)
    else:
        return _fail("give --port, or --config (and --car)", EXIT_BAD_INPUT)
    try:
        gravity = asyncio.run(calibrate(transport, args.timeout, session_config, reader))
    except CalibrationError as err:
        return _fail(str(err))
    print(f"calibrated: gravity vector {list(gravity)} counts")
    return 0


class CalibrationError(LiftwatchError, RuntimeError):
    """The board did not calibrate: absent, refused (e.g. not at rest), or timed out."""


async def calibrate(transport: Any, timeout_s: float = 30.0, session_config: Any = None,
                    reader: Any = None) -> tuple[int, int, int]:
    """Step 1 open the link, step 2 hear the board (its boot id is echoed in commands), step 3
    CONTROL calibrate, step 4 wait for the ACK and the HELLO that carries the new gravity vector.

    `session_config` carries the board's key (commands to a keyed board are tagged with it) and
    `reader` verifies its frames; both default to an unkeyed board."""
    from liftwatch.edge_daemon.session import BoardSession, LinkMode, SessionConfig
    from liftwatch.edge_daemon.transport import TransportError
    from liftwatch.protocol import messages as m
    from liftwatch.protocol.framing import FrameReader

    session = BoardSession(session_config or SessionConfig(), LinkMode.LIVE)
    reader = reader or FrameReader()
    try:
        await transport.open()
    except TransportError as err:
        raise CalibrationError(str(err)) from err
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    control_seq: int | None = None
    acked = False
    keyed_board = False
    try:
        while loop.time() < deadline:
            try:
                chunk = await asyncio.wait_for(transport.read(), max(0.01, deadline - loop.time()))
            except asyncio.TimeoutError:
                break
            for frame in reader.feed(chunk):
                if reader.key != session.config.key:  # the board runs its rotated key: answer with it
                    session.config = replace(session.config, key=reader.key)
                session.on_frame(frame, time.time())
                keyed_board = keyed_board or frame.tagged
                if control_seq is None and session.boot_id is not None:
                    session.take_outgoing()  # only our command goes out
                    control_seq = session.request(m.Command.CALIBRATE, 0, time.time())
                ack = session.control_acks.get(control_seq) if control_seq is not None else None
                if ack is not None and not acked:
                    if ack[0] != m.AckStatus.OK:
                        raise CalibrationError(f"board refused calibration: {ack[1] or ack[0]}")
                    acked = True
                    session.request(m.Command.REQUEST_HELLO, 0, time.time())
                if acked and frame.type == m.MessageType.HELLO and session.calibrated and session.gravity:
                    return session.gravity
            for wire in session.take_outgoing():
                await asyncio.wait_for(transport.write(wire), 2.0)
    except TransportError as err:
        raise CalibrationError(str(err)) from err
    finally:
        await transport.close()
    if control_seq is None:
        raise CalibrationError(f"no frame from the board on {transport.link} within {timeout_s:.0f} s")
    if keyed_board and session.config.key is None:
        raise CalibrationError("the board tags its frames and ignores untagged commands: give its key "
                               "(--config whose [[boards]] names key_file, or --key-file with --port)")
    raise CalibrationError(f"board did not confirm calibration within {timeout_s:.0f} s")
