"""systemd integration: sd_notify over a real AF_UNIX datagram socket, the progress-tied watchdog,
journald-style logging, and the unit file checked by systemd's own tools when they are installed."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import resource
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.systemd import NotifySocket

from liftwatch.edge_daemon.service import (
    JournalFormatter,
    ProgressWatchdog,
    Stage,
    WANTED_FDS,
    SystemdNotifier,
    configure_logging,
    raise_fd_limit,
    watchdog_interval_s,
)

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "liftwatch.service"


@pytest.fixture
def notify_socket(tmp_path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify")
    yield sock
    sock.close()


def test_ready_status_watchdog_stopping_arrive_as_systemd_expects(notify_socket):
    path = notify_socket.path
    n = SystemdNotifier(path)
    assert n.enabled
    assert n.ready("3 boards, broker ready")
    assert n.status("line one\nline two")
    assert n.watchdog()
    assert n.stopping()
    msgs = notify_socket.messages()
    assert msgs[0] == {"READY": "1", "MAINPID": str(os.getpid()), "STATUS": "3 boards, broker ready"}
    assert msgs[1] == {"STATUS": "line one line two"}  # a newline would start a new assignment
    assert msgs[2] == {"WATCHDOG": "1"}
    assert msgs[3] == {"STOPPING": "1"}
    assert n.sent == 4
    n.close()


def test_abstract_socket_name(tmp_path):
    name = f"liftwatch-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        n = SystemdNotifier("@" + name)
        assert n.watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_no_notify_socket_is_a_quiet_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SystemdNotifier()
    assert not n.enabled
    assert n.ready() is False and n.sent == 0


def test_vanished_systemd_socket_is_counted_not_raised(tmp_path):
    n = SystemdNotifier(str(tmp_path / "gone"))
    assert n.watchdog() is False
    assert n.errors == 1


def test_watchdog_interval_from_environment():
    pid = str(os.getpid())
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": pid}) == 60.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000"}) == 60.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None  # another process
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval_s({}) is None


class _Pipeline:
    """Counters the way the daemon exposes them: frames read, messages delivered, pending."""

    def __init__(self) -> None:
        self.frames = 0
        self.boards_connected = 1
        self.delivered = 0
        self.pending = 0
        self.broker_ready = True

    def stages(self, stall_s: float = 10.0) -> list[Stage]:
        return [
            Stage("frames", lambda: self.frames, lambda: self.boards_connected > 0, stall_s),
            Stage("outbox", lambda: self.delivered, lambda: self.pending > 0 and self.broker_ready, stall_s),
        ]


def test_watchdog_pings_only_while_the_pipeline_moves(notify_socket):
    path = notify_socket.path
    now = [0.0]
    p = _Pipeline()
    wd = ProgressWatchdog(SystemdNotifier(path), p.stages(), 5.0, clock=lambda: now[0], status=lambda: "ok")
    for _ in range(3):  # frames flowing, nothing pending: healthy
        p.frames += 50
        now[0] += 5
        assert wd.tick()
    p.pending = 20  # outbox has work, broker ready, nothing delivered for > stall_s: wedged publisher
    for _ in range(2):
        p.frames += 50
        now[0] += 5
        wd.tick()
    now[0] += 5
    p.frames += 50
    assert not wd.tick()
    assert wd.stalled == ("outbox",)
    p.delivered += 20  # it moves again
    p.pending = 0
    now[0] += 5
    p.frames += 50
    assert wd.tick()
    msgs = notify_socket.messages()
    assert sum(m.get("WATCHDOG") == "1" for m in msgs) == wd.pings
    assert any(m.get("STATUS") == "stalled: outbox" for m in msgs)
    assert wd.withheld >= 1


def test_idle_but_healthy_keeps_pinging(notify_socket):
    """No board connected and broker down with mail pending: not the daemon's fault, no restart."""
    path = notify_socket.path
    now = [0.0]
    p = _Pipeline()
    p.boards_connected = 0
    p.pending, p.broker_ready = 100, False
    wd = ProgressWatchdog(SystemdNotifier(path), p.stages(stall_s=10), 5.0, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 5
        assert wd.tick()


def test_connected_board_that_stops_producing_frames_stalls(notify_socket):
    path = notify_socket.path
    now = [0.0]
    p = _Pipeline()
    wd = ProgressWatchdog(SystemdNotifier(path), p.stages(stall_s=12), 5.0, clock=lambda: now[0])
    results = []
    for _ in range(5):
        now[0] += 5
        results.append(wd.tick())
    assert results[:2] == [True, True] and results[-1] is False
    assert wd.stalled == ("frames",)


def test_a_stage_that_raises_counts_as_stalled(notify_socket):
    path = notify_socket.path

    def broken() -> int:
        raise RuntimeError("outbox closed")

    wd = ProgressWatchdog(SystemdNotifier(path), [Stage("outbox", broken, lambda: True, 10)], 5.0)
    assert not wd.tick()
    assert wd.stalled == ("outbox",)


async def test_run_loop_pings_and_stops(notify_socket):
    path = notify_socket.path
    p = _Pipeline()
    p.boards_connected = 0
    wd = ProgressWatchdog(SystemdNotifier(path), p.stages(), 0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(wd.run(stop), name="service: watchdog")
    await asyncio.sleep(0.15)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert wd.pings >= 3
    assert len(notify_socket.messages()) == wd.pings


def _record(msg: str, level: int = logging.INFO, **extra) -> logging.LogRecord:
    logger = logging.getLogger("liftwatch.session")
    return logger.makeRecord(logger.name, level, __file__, 1, msg, (), None, extra=extra)


def test_journald_lines_carry_priority_and_logfmt_fields():
    f = JournalFormatter(journald=True)
    line = f.format(_record("board online", car="bldg3-lift1", boot_id=42, reason='said "hi" twice'))
    assert line == '<6>liftwatch.session: board online car=bldg3-lift1 boot_id=42 reason="said \\"hi\\" twice"'
    assert f.format(_record("stalled", logging.ERROR)).startswith("<3>")
    assert f.format(_record("retry", logging.WARNING)).startswith("<4>")
    assert f.format(_record("frame", logging.DEBUG)).startswith("<7>")
    assert "\n" not in f.format(_record("two\nlines"))


def test_terminal_lines_carry_utc_time_and_level():
    line = JournalFormatter(journald=False).format(_record("board online", car="c1"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO    liftwatch\.session: board online car=c1", line)


def test_configure_logging_detects_the_journal_stream(tmp_path):
    path = tmp_path / "stderr"
    with open(path, "w") as stream:
        st = os.fstat(stream.fileno())
        assert configure_logging("debug", stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}) is True
        logging.getLogger("liftwatch.test").info("hello", extra={"car": "c1"})
        assert configure_logging("info", stream, {"JOURNAL_STREAM": "1:2"}) is False
        logging.getLogger("liftwatch.test").debug("hidden at info")
    assert path.read_text().splitlines() == ["<6>liftwatch.test: hello car=c1"]
    assert configure_logging("info", io.StringIO(), {}) is False


def _unit_directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_asks_for_notify_watchdog_restart_and_hardening():
    d = _unit_directives()
    assert d["Type"] == ["notify"]
    assert d["Restart"] == ["on-failure"]
    assert int(d["WatchdogSec"][0]) >= 30
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "RestrictNamespaces",
                "SystemCallFilter", "RestrictAddressFamilies", "CapabilityBoundingSet", "DevicePolicy"):
        assert key in d, key
    assert d["User"] != ["root"]
    assert d["LimitNOFILE"] == [str(WANTED_FDS)]  # soft = hard: nothing to raise under systemd


def test_raise_fd_limit_lifts_the_soft_limit_up_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert raise_fd_limit(1000) == 1000 == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if hard != resource.RLIM_INFINITY:
            assert raise_fd_limit(hard + 1000) == hard  # never above the hard limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (2000, hard))
        assert raise_fd_limit(1000) == 2000  # and never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit_and_rates_it_well_hardened(tmp_path):
    # verify needs an existing ExecStart and user; swap in /bin/true and root for the syntax check only.
    text = UNIT.read_text()
    text = re.sub(r"^ExecStart=.*$", "ExecStart=/bin/true", text, flags=re.MULTILINE)
    text = re.sub(r"^(User|Group)=.*$", r"\1=root", text, flags=re.MULTILINE)
    unit = tmp_path / "liftwatch.service"
    unit.write_text(text)
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == ""
    sec = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)],
                         capture_output=True, text=True, timeout=60, check=False)
    m = re.search(r"Overall exposure level for liftwatch.service: ([\d.]+)", sec.stdout)
    assert m, sec.stdout + sec.stderr
    assert float(m.group(1)) <= 2.5  # systemd's scale: 0 locked down .. 10 exposed; "OK" is below ~4


def test_a_full_systemd_queue_never_blocks_the_caller(tmp_path):
    """Nobody reads the socket: sends fail fast and are counted instead of stalling the loop."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        n = SystemdNotifier(str(path))
        results = [n.status("x" * 1000) for _ in range(2000)]
        assert results[0] is True and results[-1] is False
        assert n.errors > 0 and n.sent + n.errors == 2000
    finally:
        sock.close()
