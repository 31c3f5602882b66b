"""The soak's plan: each simulated day's trips, visits, alarms and faults, and how each is done.

Faults, at random times (seeded): serial garbage (bytes injected between frames and frames corrupted
on the line), serial cuts (the adapter vanishes and comes back), board power cuts and watchdog
resets, daemon SIGKILL and restart, broker outages of hours (--broker), disk nearly full (a small
outbox budget while the broker is away, --broker; a full tmpfs with --tmpfs-mb) and steps of the
daemon's wall clock. Each fault's window goes into the ledger: reconciliation names the faults
that touched a missing item.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

from soak_board import INSPECTION, SimBoard
from soak_reconcile import Item

from liftwatch.protocol import lwproto as lw

if TYPE_CHECKING:
    from soak import Soak

JUMP_FORWARD_S = 3600.0  # SIGUSR1: the daemon's clock steps forward an hour (NTP after a dead RTC)
JUMP_BACK_S = 600.0  # SIGUSR2: ...and back ten minutes
# Frames still in the kernel's tty buffer when the daemon is SIGKILLed are lost with it (a serial open
# flushes input). How far back that reaches depends on how far the daemon lagged: simulated seconds.
KILL_BACKLOG_S = 300.0


def plan_day(soak: Soak, day_start: float, until: float) -> list[tuple[float, str, Any]]:
    """Activity and faults for one simulated day, as (sim time, action, arg), sorted."""
    rng = soak.rng
    plan: list[tuple[float, str, Any]] = []
    day_end = min(day_start + 86400, until)
    for b in soak.boards:
        t = day_start + rng.uniform(60, 300)
        while t < day_end - 120:
            plan.append((t, "trip", b))
            t += rng.uniform(120, 600)
        visit_at = day_start + rng.uniform(1800, max(1800.0, min(20000.0, day_end - day_start - 5000)))
        if visit_at + 4000 < day_end:
            plan.append((visit_at, "visit", (b, rng.choice([1800.0, 2700.0, 3000.0]))))
        for _ in range(3):
            at = rng.uniform(day_start + 300, day_end - 300)
            plan.append((at, "alarm", b))
    span = day_end - day_start
    n_faults = max(1, int(soak.args.faults_per_day * span / 86400))
    kinds = ["serial_garbage", "serial_cut", "board_power_cut", "watchdog_reset", "daemon_sigkill",
             "clock_jump"]
    if soak.broker is not None:
        kinds += ["broker_outage"]
    if soak.tmpfs:
        kinds += ["disk_nearly_full"]
    if soak.args.faults:
        kinds = [k for k in kinds if k in soak.args.faults.split(",")]
    for _ in range(n_faults):
        plan.append((rng.uniform(day_start + 600, day_end - 600), rng.choice(kinds), rng.choice(soak.boards)))
    return sorted(plan, key=lambda p: p[0])

def apply(soak: Soak, now: float, action: str, arg: Any) -> None:
    """Do one planned action: activity, a fault, or the end of one (a replug, a restart)."""
    rng = soak.rng
    if action == "trip":
        # Under inspection the car makes inspection runs, not passenger trips (the daemon counts
        # them in the visit): no trip is planned while the switch is on.
        if arg.powered and not arg.script and not arg.inputs & INSPECTION:
            arg.plan_trip(now + 4.0)
        return
    if action == "visit":
        board, duration = arg
        if board.script:  # a trip is under way: the technician arrives once it is over
            soak.pending.append((now + 60.0, action, arg))
        elif board.powered:
            start_visit(soak, board, now, duration)
        return
    if action == "alarm":
        if arg.powered and not arg.unacked and arg.alarm_clear_sent:
            arg.raise_alarm(now)
            soak.pending.append((now + 30.0, "clear_alarm", (arg, arg.next_event_id - 1)))
        return
    if action == "clear_alarm":
        board, eid = arg
        if board.powered and eid not in board.unacked:
            board.clear_alarm(now, eid)
        else:  # the raise is not settled yet (ACKs name the id, not the state): try again later
            soak.pending.append((now + 30.0, "clear_alarm", arg))
        return
    if action == "visit_end":
        board, item = arg
        if item in board.open_items:
            board.set_inputs(now, board.inputs & ~INSPECTION)
            board.open_items.remove(item)
            item.end_sim = now
            if board.powered and item.start_sim >= board.boot_sim:  # the period is whole in this boot
                board.journal(item, lw.J_INSPECTION, now, board.inputs | INSPECTION, board.inputs)
        return
    if action == "power_on":
        board, cause = arg
        board.boot(now, cause)
        return
    if action == "replug":
        arg.plug()
        arg.transmit(b"\x00", now, [])
        return
    # faults
    soak.faults[action] += 1
    board: SimBoard = arg
    if action == "serial_garbage":
        board.garbage_until = now + rng.uniform(60, 900)
        soak.ledger.fault_windows.append((now, board.garbage_until, action, board.index))
        try:
            board.write(rng.randbytes(rng.randrange(10, 3000)))
        except OSError:
            pass  # unplugged, or the daemon's side full: the noise is lost too
    elif action == "serial_cut":
        off = rng.uniform(30, 1800)
        board.cut_until = now + off
        board.unplug()
        board.listening = False
        soak.ledger.fault_windows.append((now, now + off, action, board.index))
        soak.pending.append((now + off, "replug", board))
    elif action in ("board_power_cut", "watchdog_reset"):
        if not board.powered:
            return
        off = rng.uniform(60, 3600) if action == "board_power_cut" else rng.uniform(1, 5)
        board.power_off(now, action)
        soak.ledger.fault_windows.append((now, now + off, action, board.index))
        soak.pending.append((now + off, "power_on", (board, "power_on" if action == "board_power_cut" else "wdt")))
    elif action == "daemon_sigkill":
        if not soak.daemon_up:
            return
        soak.kill_daemon()
        down_real = rng.uniform(0.3, 2.0)
        soak.ledger.fault_windows.append((now - KILL_BACKLOG_S, now + down_real * soak.speed, action, None))
        soak.pending.append((now + down_real * soak.speed, "daemon_restart", None))
    elif action == "daemon_restart":
        soak.faults[action] -= 1  # not a fault of its own
        soak.start_daemon()
    elif action == "clock_jump":
        if soak.daemon_up:
            forward = rng.random() < 0.5
            soak.daemon.send_signal(signal.SIGUSR1 if forward else signal.SIGUSR2)
            soak.daemon_offset_s += JUMP_FORWARD_S if forward else -JUMP_BACK_S
            soak.ledger.fault_windows.append((now, now + 700, action, None))  # until the next TIME_SYNC
            soak.ledger.clock_steps.append(now)
            soak.ledger.offset_history.append((now, soak.daemon_offset_s))
    elif action == "broker_outage":
        if soak.broker.running:
            hours = rng.uniform(1, 4)
            soak.broker.stop()
            soak.ledger.fault_windows.append((now, now + hours * 3600, action, None))
            soak.pending.append((now + hours * 3600, "broker_up", None))
    elif action == "broker_up":
        soak.faults[action] -= 1
        soak.broker.start()
    elif action == "disk_nearly_full":
        ballast = soak.workdir / "state" / "ballast"
        if soak.tmpfs and not ballast.exists():
            # Fill the daemon's filesystem (a tmpfs of --tmpfs-mb) up to 64 KiB: SQLite and the
            # journal now fail with ENOSPC; the outbox must keep what it acknowledged.
            st = os.statvfs(soak.workdir / "state")
            free = st.f_bavail * st.f_frsize - 64 * 1024
            if free > 0:
                fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.posix_fallocate(fd, 0, free)
                except OSError:
                    pass
                finally:
                    os.close(fd)
                off = rng.uniform(600, 7200)
                soak.ledger.fault_windows.append((now, now + off, action, None))
                soak.pending.append((now + off, "disk_freed", None))
        elif not soak.tmpfs:
            soak.faults[action] -= 1  # without --tmpfs-mb there is no disk to fill
    elif action == "disk_freed":
        soak.faults[action] -= 1
        (soak.workdir / "state" / "ballast").unlink(missing_ok=True)

def start_visit(soak: Soak, board: SimBoard, now: float, duration: float) -> None:
    """The technician turns the inspection switch on for ``duration`` simulated seconds."""
    item = Item("maintenance", board.index, now)
    board.open_items.append(item)
    board.set_inputs(now, board.inputs | INSPECTION)
    soak.ledger.items.append(item)
    soak.pending.append((now + duration, "visit_end", (board, item)))
