"""Soak: N simulated boards for a simulated week against the real daemon, with faults, then a reconciliation.

    python benchmarks/soak.py                       # 10 boards, 7 days at 600x (about 17 min)
    python benchmarks/soak.py --boards 2 --sim-hours 3 --json
    python benchmarks/soak.py --broker              # upstream through a real Mosquitto, with outages

What runs for real: the daemon (`Daemon` from edge_daemon/daemon.py, in its own process, so it can be
SIGKILLed), its serial transport on ptys, framing, session, analytics, the SQLite outbox, and the JSON
Lines journal or (with --broker) MQTT to a Mosquitto that is stopped for hours of simulated time.

What is simulated: the boards (soak_board.py), protocol-level boards in this process that speak
SPEC.md on their ptys the way firmware/link.py does. The real firmware under the mock board
(hil_tests/mockboard) is not used here: a week at 600x would need each board's MicroPython process
to sample 400 Hz x 600 = 240,000 samples per second. The firmware's own faults (power cuts,
watchdog, link cuts) are tested in hil_tests/test_board_faults.py; the boards here follow the same
protocol rules. `--firmware-probe` checks the real firmware boots.

Speed: the daemon ticks every board once per simulated second, so at 600x ten boards ask for 6,000
ticks per wall second; on a busy 2-core box it falls behind, the ptys fill and frames are lost on
the line (counted as `board_link_full`). Figures meant to show the daemon's own losses need a speed
it keeps up with (e.g. `--speed 200`, or fewer boards); 600x shows behaviour under overload.

Time: the boards and the daemon share one simulated clock, ``t0 + (wall - w0) * speed``. The daemon
gets it as its monotonic clock (`Daemon(monotonic=...)`) and, plus an offset that the harness
changes with SIGUSR1/SIGUSR2 (clock jumps), as its wall clock (`Daemon(clock=...)`): a step moves
the wall clock only, as NTP does on a Pi, so the daemon can tell it from the passing of time.

The modules: soak_board.py (the simulated board), soak_faults.py (each day's activity and faults,
and how each is done), soak_reconcile.py (ground truth against what arrived upstream: lost,
duplicated, dropped under a named fault; its docstring has the rules), this one (the daemon
process, the run, the table). The last line with
--json: {"lost", "duplicated", "mistimed", "dropped_by_reason", "faults_injected", "rss_growth_mb", ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from soak_board import SimBoard
from soak_faults import JUMP_BACK_S, JUMP_FORWARD_S, apply, plan_day
from soak_reconcile import START_UNIX, Ledger, daemon_drops, journal_messages

from liftwatch.broker import Mosquitto, Subscriber
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import FrameReader

# The daemon's default is 15 s; at 600x that is 25 ms of wall time, less than one scheduling hiccup of
# a loaded CI box, so every board would flap offline. 120 s simulated = 200 ms wall.
HEARTBEAT_TIMEOUT_S = 120.0


# ---------------------------------------------------------------- the daemon child process


def daemon_child(config_path: str, w0_file: str, speed: float) -> None:
    """`Daemon` on the simulated clock; SIGTERM stops it cleanly, SIGUSR1/2 jump its clock.

    Simulated time starts when the harness writes ``w0_file`` (once this first daemon listens on
    every port: a slow start must not eat simulated hours); until then the clock stands at zero."""
    from liftwatch.edge_daemon.config import load_config
    from liftwatch.edge_daemon.daemon import Daemon

    offset = [0.0]
    w0: list[float | None] = [None]

    def monotonic() -> float:
        if w0[0] is None:
            try:
                w0[0] = float(Path(w0_file).read_text())
            except (OSError, ValueError):
                return START_UNIX
        return START_UNIX + (time.time() - w0[0]) * speed

    def clock() -> float:
        return monotonic() + offset[0]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: offset.__setitem__(0, offset[0] + JUMP_FORWARD_S))
        loop.add_signal_handler(signal.SIGUSR2, lambda: offset.__setitem__(0, offset[0] - JUMP_BACK_S))
        # A clock jump steps the wall clock only, as NTP does on a Pi: its monotonic clock never jumps,
        # and the daemon tells the two apart (a step re-measures the board time offset at once).
        await Daemon(load_config(config_path), clock=clock, monotonic=monotonic).run(stop)

    asyncio.run(main())


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# ---------------------------------------------------------------- the soak


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.rng = random.Random(args.seed)
        self.speed = args.speed
        self.w0 = time.time()
        self.daemon: subprocess.Popen | None = None
        self.daemon_up = False
        self.ledger = Ledger(self.speed)
        self.faults: collections.Counter = collections.Counter()
        self.rss: list[tuple[int, float, float]] = []  # (pid, first sample, last sample)
        self.broker: Mosquitto | None = None
        self.collector: Subscriber | None = None
        self.daemon_offset_s = 0.0
        self.pending: list[tuple[float, str, Any]] = []  # (sim time, action, arg) still to do
        self.outbox_pending: int | None = None  # from the daemon's status file
        self.status_mtime = 0.0
        self.tmpfs = False  # the daemon's state dir is a small tmpfs we can fill (--tmpfs-mb, needs root)
        self.capture: dict[int, list] | None = {i: [] for i in range(args.boards)} if args.verbose else None
        self.config_path = workdir / "liftwatch.toml"
        self.boards = [SimBoard(i, workdir, random.Random(args.seed * 1000 + i), self) for i in range(args.boards)]

    def now(self) -> float:
        return (time.time() - self.w0) * self.speed

    # -- daemon
    def write_config(self, budget_mb: float) -> Path:
        doc = [
            "[daemon]", 'site = "soak"', 'pi = "pi-soak"', f'state_dir = "{self.workdir / "state"}"',
            "status_interval_s = 0.5", 'log_level = "warning"',
            "[session]", f"heartbeat_timeout_s = {HEARTBEAT_TIMEOUT_S}", "time_sync_interval_s = 600.0", "write_timeout_s = 0.5",
            "[outbox]", f"budget_mb = {budget_mb}",
        ]
        if self.broker is not None:
            doc += ["[upstream.mqtt]", f'host = "{self.broker.host}"', f"port = {self.broker.port}", "tls = false",
                    'client_id = "liftwatch-soak"']
        else:
            doc += ["[upstream]", f'journal = "{self.workdir / "state" / "upstream.jsonl"}"']
        for b in self.boards:
            doc += ["[[boards]]", f'car = "car-{b.index}"', f'port = "{b.link_path}"', f'board_id = "{b.board_id}"',
                    "baudrate = 921600"]
        path = self.workdir / "liftwatch.toml"
        path.write_text("\n".join(doc) + "\n")
        return path

    def start_daemon(self) -> None:
        cmd = [sys.executable, __file__, "--daemon-child", str(self.config_path), "--w0-file",
               str(self.workdir / "w0"), "--speed", repr(self.speed)]
        log = open(self.workdir / "daemon.log", "ab")
        self.daemon = subprocess.Popen(cmd, stdout=log, stderr=log)
        self.daemon_up = True
        for b in self.boards:
            b.listening, b.connects_seen = False, 0
        if self.daemon_offset_s:  # a new process starts from the true simulated time
            self.daemon_offset_s = 0.0
            self.ledger.offset_history.append((self.now(), 0.0))
        self._rss_first: float | None = None
        self._rss_started = time.monotonic()

    def poll_status(self) -> None:
        """Which ports the running daemon has open, from its status file (rewritten every 0.5 s)."""
        path = self.workdir / "state" / "status.json"
        try:
            mtime = path.stat().st_mtime
            snap = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return
        if self.daemon is None or snap.get("pid") != self.daemon.pid:
            return
        self.outbox_pending = (snap.get("outbox") or {}).get("pending")
        self.status_mtime = mtime
        for b, st in zip(self.boards, snap.get("boards", [])):
            connects = (st.get("link_counters") or {}).get("connects", 0)
            if st.get("phase") == "ready" and connects > b.connects_seen:
                b.listening = True
                b.connects_seen = connects

    def sample_rss(self) -> None:
        if self.daemon is None or not self.daemon_up:
            return
        value = rss_mb(self.daemon.pid)
        if value is None:
            return
        if self._rss_first is None:
            if time.monotonic() - self._rss_started > 3.0:  # after imports and the first batches
                self._rss_first = value
                self.rss.append((self.daemon.pid, value, value))
        else:
            self.rss[-1] = (self.daemon.pid, self.rss[-1][1], value)

    def kill_daemon(self) -> None:
        assert self.daemon is not None
        self.sample_rss()
        self.daemon.kill()
        self.daemon.wait()
        self.daemon_up = False

    def stop_daemon(self) -> None:
        if self.daemon is None:
            return
        self.sample_rss()
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(30)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
        self.daemon_up = False

    async def run(self) -> dict[str, Any]:
        args = self.args
        until = args.sim_hours * 3600.0
        if args.broker:
            self.broker = Mosquitto(self.workdir / "broker")
            self.broker.start()
            self.collector = Subscriber(self.broker, topic="liftwatch/#", client_id="soak-collector").start()
        if args.tmpfs_mb:
            state = self.workdir / "state"
            state.mkdir(parents=True)
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.tmpfs_mb}m,mode=0700", "tmpfs", str(state)],
                               capture_output=True, text=True)
            self.tmpfs = r.returncode == 0
            if not self.tmpfs:
                print(f"soak: no tmpfs for the state dir ({r.stderr.strip()}): disk_nearly_full not exercised",
                      file=sys.stderr)
        self.config_path = self.write_config(args.budget_mb)
        self.start_daemon()
        while not all(b.listening for b in self.boards):  # the daemon imports and opens its ports
            await asyncio.sleep(0.1)
            self.poll_status()
            if self.daemon.poll() is not None:
                raise RuntimeError(f"daemon exited: {(self.workdir / 'daemon.log').read_text()[-2000:]}")
        self.w0 = time.time()  # simulated time 0: the daemon and the boards share this clock from now
        (self.workdir / "w0").write_text(repr(self.w0))
        for b in self.boards:
            b.boot(self.now(), "power_on")
        day = 0.0
        last_status = 0.0
        wall_start = time.monotonic()
        while True:
            now = self.now()
            if now >= until:
                break
            if now >= day:
                self.pending += plan_day(self, day, until)
                day += 86400.0
            self.pending.sort(key=lambda p: p[0])
            while self.pending and self.pending[0][0] <= now:
                at, action, arg = self.pending.pop(0)
                apply(self, now, action, arg)
            for b in self.boards:
                b.step(now)
            if time.monotonic() - last_status > 0.1:
                last_status = time.monotonic()
                self.poll_status()
                self.sample_rss()
            await asyncio.sleep(0.002)
        # Drain: faults off, everything back up, boards keep heartbeating and re-sending until settled.
        drain_from = self.now()
        for at, action, arg in sorted(self.pending, key=lambda p: p[0]):
            if action in ("power_on", "replug", "daemon_restart", "broker_up", "visit_end", "clear_alarm",
                          "disk_freed"):
                apply(self, self.now(), action, arg)
        for b in self.boards:
            b.garbage_until = b.cut_until = 0.0
            b.script.clear()
            for item in b.open_items:
                item.risks.add("soak_end")  # still open when the simulated week ended
            b.open_items.clear()
        deadline = time.monotonic() + args.drain_s
        drain_wall = time.time()
        while time.monotonic() < deadline:
            now = self.now()
            self.poll_status()
            for b in self.boards:
                b.step(now)
            settled = (all(not b.unacked and not b.journal_unacked for b in self.boards) and self.outbox_pending == 0
                       and self.status_mtime > drain_wall + 1.0  # a status written since the drain began
                       and (self.broker is None or self.broker.running))
            if settled and self.now() - drain_from > 600:  # and a few status files said so
                break
            await asyncio.sleep(0.005)
        settle_until = time.monotonic() + 1.5
        while time.monotonic() < settle_until:  # the last ACKed facts reach the journal or broker
            for b in self.boards:
                b.step(self.now())
            await asyncio.sleep(0.005)
        self.stop_daemon()
        wall_s = time.monotonic() - wall_start
        upstream = self.upstream_messages()
        drops = daemon_drops(self.workdir / "state" / "status.json")
        result = self.ledger.reconcile(upstream, drops, {b.index: set(b.unacked) for b in self.boards},
                                       {b.index: set(b.journal_unacked) for b in self.boards})
        growth = [last - first for _, first, last in self.rss]
        result.update(
            boards=args.boards, sim_hours=args.sim_hours, speed=self.speed, wall_s=round(wall_s, 1),
            upstream_messages=len(upstream), unacked_at_end=sum(len(b.unacked) for b in self.boards),
            board_frames_sent=sum(b.frames_sent for b in self.boards),
            board_frames_lost_on_line=sum(b.frames_lost for b in self.boards),
            daemon_drops=drops,
            faults_injected={k: v for k, v in sorted(self.faults.items()) if v > 0},
            rss_growth_mb=round(max(growth), 1) if growth else None,
            rss_final_mb=round(self.rss[-1][2], 1) if self.rss else None,
        )
        if self.collector is not None:
            self.collector.stop()
        if self.broker is not None:
            self.broker.stop()
        for b in self.boards:
            b.unplug()
        return result

    def upstream_messages(self) -> list[dict[str, Any]]:
        """What arrived upstream: at the broker's subscriber, or in the daemon's journal."""
        if self.collector is not None:
            time.sleep(2.0)
            messages = [m for _, m, _ in self.collector.snapshot()]
            with open(self.workdir / "collected.jsonl", "w") as f:  # what the broker delivered, for a look
                f.writelines(json.dumps(m) + "\n" for m in messages)
            return messages
        return journal_messages(self.workdir / "state" / "upstream.jsonl")



def firmware_probe(timeout_s: float = 30.0) -> str:
    """Does the real firmware say HELLO on a mock board now? (What this soak could use instead.)"""
    import tempfile

    from liftwatch.hil.mockboard.board import MockBoard

    with tempfile.TemporaryDirectory() as tmp:
        board = MockBoard(Path(tmp) / "flash.img", speed=1.0)
        board.start()
        try:
            import serial

            port = serial.Serial(board.ports.data, 921600, timeout=0.1)  # open first: the HELLO comes at boot
            r = subprocess.run([sys.executable, "-m", "liftwatch", "flash", board.ports.console],
                               capture_output=True, text=True, timeout=180)
            if r.returncode != 0:
                return f"flash failed: {r.stderr.strip()[-300:]}"
            reader = FrameReader()
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                for f in reader.feed(port.read(4096)):
                    if f.type == lw.T_HELLO:
                        return f"firmware says HELLO ({f.payload[0]}, boot {f.boot_id})"
            return f"no HELLO within {timeout_s:.0f} s (drops {dict(reader.drops)})"
        finally:
            board.stop()


def print_table(result: dict[str, Any]) -> None:
    print(f"soak: {result['boards']} boards, {result['sim_hours']:.1f} simulated hours at {result['speed']:.0f}x "
          f"in {result['wall_s']} s; {result['upstream_messages']} upstream messages")
    print(f"{'item':<12} {'made':>6} {'once':>6} {'dup':>5} {'lost':>5}  dropped (named reason) / unmatched upstream")
    for kind, row in result["table"].items():
        drops = ", ".join(f"{k[8:]}={v}" for k, v in sorted(row.items()) if k.startswith("dropped:")) or "-"
        extra = row.get("upstream_unmatched")
        print(f"{kind:<12} {row.get('made', 0):>6} {row.get('once', 0):>6} {row.get('duplicated', 0):>5} "
              f"{row.get('lost', 0):>5}  {drops}" + (f" / {extra} unmatched" if extra else ""))
    if result["lost"]:
        print(f"lost by cause: {result['lost_by_cause']}")
    if result["mistimed"]:
        print(f"mistimed (journal records of a boot no daemon mapped, upstream at their arrival time): "
              f"{result['mistimed']}")
    print(f"trips delivered with floors unknown (frames lost while moving, or ambiguous pulses): {result['trips_floors_unknown']}")
    print(f"faults injected: {result['faults_injected']}")
    print(f"daemon drops: {result['daemon_drops']}; board frames lost on the line: "
          f"{result['board_frames_lost_on_line']} of {result['board_frames_sent']}")
    print(f"same id delivered again: {result['redelivered_same_id']}; EVENTs un-ACKed at the end: "
          f"{result['unacked_at_end']}; daemon RSS growth {result['rss_growth_mb']} MB "
          f"(final {result['rss_final_mb']} MB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=10)
    parser.add_argument("--sim-hours", type=float, default=24 * 7)
    parser.add_argument("--speed", type=float, default=600.0, help="simulated seconds per wall second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults-per-day", type=float, default=24.0, help="faults per simulated day (all boards)")
    parser.add_argument("--broker", action="store_true", help="upstream through Mosquitto (broker outages, small budget)")
    parser.add_argument("--budget-mb", type=float, default=64.0, help="outbox budget (try 1 with --broker: disk nearly full)")
    parser.add_argument("--tmpfs-mb", type=int, default=0,
                        help="put the daemon's state dir on a tmpfs of this size (root) and fill it now and then")
    parser.add_argument("--faults", help="comma-separated fault kinds to inject (default: all that apply)")
    parser.add_argument("--drain-s", type=float, default=60.0, help="wall seconds to let everything settle at the end")
    parser.add_argument("--workdir", type=Path, help="keep the daemon's state, config and log here")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--verbose", action="store_true", help="list lost items and fault windows")
    parser.add_argument("--firmware-probe", action="store_true", help="only check whether the real firmware runs")
    parser.add_argument("--daemon-child", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--w0-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.daemon_child:
        daemon_child(args.daemon_child, args.w0_file, args.speed)
        return 0
    if args.firmware_probe:
        print(firmware_probe())
        return 0
    import tempfile

    with tempfile.TemporaryDirectory(prefix="liftwatch-soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        if (workdir / "state").exists():
            parser.error(f"{workdir / 'state'} exists: a soak needs a fresh daemon state (outbox, journal)")
        workdir.mkdir(parents=True, exist_ok=True)
        soak = Soak(args, workdir)
        try:
            result = asyncio.run(soak.run())
        finally:
            if soak.daemon is not None and soak.daemon.poll() is None:
                soak.daemon.kill()
            if soak.broker is not None and soak.broker.running:
                soak.broker.kill()
            if soak.tmpfs:
                if args.workdir:  # the outbox and logs for a post-mortem, before the tmpfs goes
                    shutil.copytree(workdir / "state", workdir / "state-saved", dirs_exist_ok=True)
                subprocess.run(["umount", str(workdir / "state")], check=False)
    print_table(result)
    if args.verbose:
        for item in soak.ledger.lost_items:
            print(f"lost: {item.kind} car-{item.board} at {item.start_sim:.1f}..{item.end_sim} (event {item.event_id}) "
                  f"risks {sorted(item.risks)}")
        for car, kind, start, floors in soak.ledger.unmatched_upstream:  # beside a lost item: mis-timed, not missing?
            print(f"unmatched upstream: {kind} {car} at {start} (floors {floors})")
        for window in soak.ledger.fault_windows:
            print("fault window", window)
        for at, offset in soak.ledger.offset_history:
            print(f"daemon clock offset from {at:.1f}: {offset:+.0f} s")
        import pickle

        (workdir / "capture.pickle").write_bytes(pickle.dumps(soak.capture))
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
