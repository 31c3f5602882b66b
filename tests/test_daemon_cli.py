"""`liftwatch run | status | calibrate` as a user runs them: the real console script, real ptys."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.board import PtyBoard, hello_payload
from support.daemon import LIFTWATCH, alarm_events, liftwatch_run, wait_until

from liftwatch.edge_daemon.cli import CalibrationError, calibrate, format_status, parse_start
from liftwatch.edge_daemon.transport.serial import SerialTransport
from liftwatch.hil.mockboard.ptys import PtyPort
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol import messages as m
from liftwatch.protocol.framing import DropReason


def write_config(tmp_path: Path, port: str) -> Path:
    cfg = tmp_path / "site.toml"
    cfg.write_text(
        f"""
[daemon]
site = "cli-site"
pi = "pi-cli"
state_dir = "state"
status_interval_s = 0.5
[session]
heartbeat_timeout_s = 3.0
[status]
port = 0  # any free port: a CI machine may have something on 8080
[[boards]]
car = "lift-a"
port = "{port}"
"""
    )
    return cfg


def test_run_check_and_config_errors(tmp_path):
    cfg = write_config(tmp_path, "/dev/ttyUSB7")
    ok = subprocess.run(LIFTWATCH + ["run", "--config", str(cfg), "--check"], capture_output=True, text=True)
    assert ok.returncode == 0 and "(1 board, site cli-site)" in ok.stdout
    cfg.write_text(cfg.read_text().replace("heartbeat_timeout_s", "heartbeat_timout_s"))
    bad = subprocess.run(LIFTWATCH + ["run", "--config", str(cfg)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "session.heartbeat_timout_s: unknown key; did you mean 'heartbeat_timeout_s'?" in bad.stderr
    (tmp_path / "blocker").write_text("a file where the state directory should be")
    cfg.write_text(write_config(tmp_path, "/dev/ttyUSB7").read_text().replace('"state"', '"blocker/state"'))
    unusable = subprocess.run(LIFTWATCH + ["run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert unusable.returncode == 1 and "cannot open the outbox" in unusable.stderr
    assert "Traceback" not in unusable.stderr


async def test_run_serves_a_board_until_sigterm_and_status_reports_it(tmp_path):
    board = PtyBoard(str(tmp_path / "ttyA"), "board-a")
    cfg = write_config(tmp_path, board.link_path)
    status_path = tmp_path / "state" / "status.json"
    async with liftwatch_run(cfg, board) as run:

        def status_board() -> dict:
            try:
                (b,) = json.loads(status_path.read_text())["boards"]
            except (OSError, ValueError):  # not written yet, or caught mid-replace
                return {}
            return b

        # the status file is rewritten every 0.5 s: wait for one that has the event (a fixed sleep
        # is not enough on a loaded machine)
        assert await wait_until(lambda: status_board().get("counters", {}).get("events") == 1, 10.0)
        b = status_board()
        assert b["car"] == "lift-a" and b["board"] == "board-a" and b["online"] and b["phase"] == "ready"
        assert b["counters"]["events"] == 1 and b["counters"]["acks_sent"] >= 1
        assert [(e["type"], e["state"]) for e in b["last_events"]] == [("alarm_button", "raised")]
        assert 0.99 <= b["link_quality"] <= 1.0
        shown = subprocess.run(LIFTWATCH + ["status", "--config", str(cfg)], capture_output=True, text=True)
        assert shown.returncode == 0, shown.stderr
        assert "lift-a" in shown.stdout and "board-a" in shown.stdout and "STALE" not in shown.stdout
        assert await run.terminate() == 0
    lines = [json.loads(x) for x in (tmp_path / "state" / "upstream.jsonl").read_text().splitlines()]
    assert [x["state"] for x in alarm_events(lines, "lift-a")] == ["raised"]
    assert lines[-1]["kind"] == "status" and lines[-1]["state"] == "offline"  # clean shutdown
    shown = subprocess.run(LIFTWATCH + ["status", "--state-dir", str(tmp_path / "state")], capture_output=True,
                           text=True)
    assert shown.returncode == 0 and "NO" in shown.stdout  # the board went offline at shutdown


def test_status_table_flags_stale_snapshot_and_board_problems():
    now = 1_800_000_000.0
    status = {
        "ts": "2027-01-15T07:00:00.000Z", "site": "s", "pi": "p",
        "upstream": {"state": "ready", "delivered": 5}, "outbox": {"pending": 2, "pending_bytes": 900, "budget_bytes": 64e6},
        "boards": [{"car": "c1", "board": "b1", "phase": "ready", "online": True, "last_heard_ts": now - 3600 - 3,
                    "counters": {"frames": 10, "lost_frames": 1, "reboots": 2, "drops": {"late": 1}},
                    "framing_drops": {"crc": 2}, "active_faults": ["entrapment"], "config_error": "1: rate_hz",
                    "calibrated": False, "safe_mode": False, "link_counters": {}, "link_quality": 0.7692,
                    "expected_board": "b7", "fw_version": "1.0.0", "prev_fw_version": "1.1.0", "update": "rolled_back",
                    "update_refused": "bad signature: not signed by this board's release key",
                    "last_events": [{"type": "entrapment", "state": "raised", "event_ts": "2027-01-15T07:59:00.000Z"}]}],
    }
    text = format_status(status, now)
    assert "firmware 1.0.0 rolled_back, previous 1.1.0" in text
    assert "update refused: bad signature" in text
    assert "STALE" in text  # written long before `now`; the board heard 3 s before that
    row = next(line for line in text.splitlines() if line.startswith("c1"))
    assert row.split()[:11] == ["c1", "b1", "ready", "yes", "60m", "ago", "10", "1", "3", "76.9%", "2"]
    assert "entrapment" in row
    assert "config refused: 1: rate_hz" in text and "not calibrated" in text
    assert "2027-01-15 07:59:00 UTC entrapment raised" in text  # no utc_offset_h (an older daemon): UTC, said
    assert "WRONG BOARD: config expects b7" in text


def test_status_shows_why_the_last_update_of_a_car_was_refused():
    """A refusal leaves the board's boot record as it was: the reason is what `liftwatch ota push` or
    `rollout` kept on the Pi (edge_daemon/ota.py record_outcome), shown until the next update."""
    base = {"car": "c1", "online": True, "counters": {}, "fw_version": "1.0.0"}
    status = {"site": "s", "pi": "p", "upstream": {}, "outbox": {}, "boards": [
        {**base, "last_update": {"version": "1.1.0", "outcome": "refused", "ts": "2027-01-15T07:00:00Z",
                                 "reason": "board refused the bundle: flash full: 4096 bytes free, the update needs 90000"}},
        {**base, "car": "c2", "last_update": {"version": "1.1.0", "outcome": "updated", "reason": ""}},
        {**base, "car": "c3", "update_running": {"kind": "push", "version": "1.2.0", "have": 40960, "total": 81920,
                                                 "step": "sending"}},
    ]}
    text = format_status(status, 1_800_000_000.0)
    assert "update to 1.1.0 refused: board refused the bundle: flash full: 4096 bytes free" in text
    assert text.count("update to") == 1  # an update that went through is not a problem to show
    assert "updating to 1.2.0: sending, 40960 of 81920 bytes on the board" in text  # through the daemon, now


def test_status_of_a_simulated_clock_is_fresh_and_in_the_site_zone():
    """The demo's daemon runs yesterday's simulated day: its clock (`ts`) is a day behind, and a
    sped-up board's own timestamps run ahead; neither is how old the snapshot or the last frame is."""
    now = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
    status = {
        "ts": "2027-01-14T04:20:00.000Z", "written_ts": "2027-01-15T07:59:59.000Z", "utc_offset_h": 8.0,
        "site": "s", "pi": "p", "upstream": {}, "outbox": {},
        "boards": [{"car": "c1", "online": True, "last_heard_ts": now + 1841, "heard_age_s": 4.0, "counters": {},
                    "last_events": [{"type": "entrapment", "state": "raised", "event_ts": "2027-01-14T04:19:00Z"}]}],
    }
    text = format_status(status, now)
    assert "STALE" not in text and "snapshot 1s ago" in text
    assert "at 2027-01-14 12:20:00 UTC+08:00" in text  # the daemon's (simulated) time, as the site reads it
    row = next(line for line in text.splitlines() if line.startswith("c1"))
    assert "5s ago" in row  # 4 s before the snapshot, written 1 s ago
    assert "2027-01-14 12:19:00 UTC+08:00 entrapment raised" in text


def test_parse_start():
    assert parse_start("1970-01-01T00:00:00Z") == 0.0
    assert parse_start("2026-03-01T08:00:00+08:00") == parse_start("2026-03-01T00:00:00Z")
    assert parse_start("2026-03-01T00:00:00") == parse_start("2026-03-01T00:00:00Z")  # naive = UTC
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_start("yesterday")


class CalibratingBoard(PtyBoard):
    """Answers CONTROL calibrate with ACK, then reports the gravity it found in its next HELLO."""

    def __init__(self, *a, refuse: bool = False, **kw) -> None:
        super().__init__(*a, **kw)
        self.refuse = refuse
        self.calibrated = False

    def hello(self) -> None:
        g = [12, -40, 16390] if self.calibrated else None
        self.send(lw.T_HELLO, hello_payload(self.board_id, self.boot_id, gravity=g))

    def poll(self) -> None:
        before = len(self.host_frames)
        super().poll()
        for f in self.host_frames[before:]:
            if f.type == lw.T_CONTROL and f.payload[0] == m.Command.CALIBRATE:
                assert f.boot_id == self.boot_id  # commands carry the board's boot id
                if self.refuse:
                    self.send(lw.T_ACK, [lw.T_CONTROL, f.seq, int(m.AckStatus.REFUSED), "car is moving", None])
                else:
                    self.calibrated = True
                    self.send(lw.T_ACK, [lw.T_CONTROL, f.seq, 0, "", None])


@pytest.mark.parametrize("refuse", [False, True])
async def test_calibrate_over_the_link(tmp_path, refuse):
    board = CalibratingBoard(str(tmp_path / "tty"), "board-c", boot_id=9, refuse=refuse)
    async with board.living(period_s=0.02):
        if refuse:
            with pytest.raises(CalibrationError, match="car is moving"):
                await calibrate(SerialTransport(board.link_path), 5.0)
        else:
            assert await calibrate(SerialTransport(board.link_path), 5.0) == (12, -40, 16390)


async def test_calibrate_without_board_times_out_clearly(tmp_path):
    silent = PtyPort(str(tmp_path / "tty"))
    try:
        with pytest.raises(CalibrationError, match="no frame from the board"):
            await calibrate(SerialTransport(silent.link_path), 0.5)
    finally:
        silent.close()


async def test_calibrate_a_keyed_board_with_the_key_file_of_its_config(tmp_path):
    """A board flashed with a key (`flash --keystore`; BLE boards by default) drops untagged commands:
    calibrate takes the key from the config's key_file, as the daemon does."""
    key = bytes(range(16))
    key_file = tmp_path / "board-k.key"
    key_file.write_text(key.hex() + "\n")
    key_file.chmod(0o600)
    board = CalibratingBoard(str(tmp_path / "tty"), "board-k", boot_id=4, key=key)
    cfg = write_config(tmp_path, board.link_path)
    cfg.write_text(cfg.read_text() + f'key_file = "{key_file}"\n')
    async with board.living(period_s=0.02):
        proc = await asyncio.create_subprocess_exec(*LIFTWATCH, "calibrate", "--config", str(cfg), "--timeout", "10",
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert "calibrated: gravity vector [12, -40, 16390]" in out.decode()
        assert board.calibrated and board.reader.drops.get(DropReason.AUTH, 0) == 0
        # Without the key the board ignores the command; the error says why instead of timing out vaguely.
        board.calibrated = False
        with pytest.raises(CalibrationError, match="tags its frames and ignores untagged commands"):
            await calibrate(SerialTransport(board.link_path), 1.5)
        assert not board.calibrated and board.reader.drops[DropReason.AUTH] >= 1


def test_calibrate_and_run_name_a_port_that_does_not_exist(tmp_path):
    """Not "is liftwatch run holding the port?": the port is simply not there. The daemon says so once
    and keeps retrying (a USB adapter may be plugged in later)."""
    r = subprocess.run(LIFTWATCH + ["calibrate", "--port", "/dev/ttyUSB9", "--timeout", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == "liftwatch: serial:/dev/ttyUSB9: no such port (board unplugged, or another port name?)"
    cfg = write_config(tmp_path, "/dev/ttyUSB9")
    proc = subprocess.Popen(LIFTWATCH + ["run", "--config", str(cfg)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline:
            lines.append(proc.stderr.readline())
            if "cannot open" in lines[-1]:
                break
        assert "/dev/ttyUSB9: cannot open: no such port" in lines[-1] and "retrying" in lines[-1], lines
        time.sleep(3)  # several retries later: still one line about it
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
    assert "cannot open" not in rest and proc.returncode == 0
