"""The demo daemon's clock: each board's simulated time, as far as the daemon has read it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

__all__ = ["BOARD_STALL_S", "HEARTBEAT_S", "FleetClock"]

# A board whose feed has not moved for this many real seconds has stopped for real (crashed
# firmware): its time then follows the fleet's so it goes offline. A live board reads a feed record
# every sim second, many times per real second; but one waiting for the daemon to read its UART
# (back-pressure) or starved of CPU on a loaded machine stops for a few seconds and is not dead.
BOARD_STALL_S = 10.0
# The firmware's default HEARTBEAT period (sim seconds; the demo sets no heartbeat_ms).
HEARTBEAT_S = 10.0  # firmware/settings.py heartbeat_ms


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

