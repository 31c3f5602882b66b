"""The car's side of the mock board: sim-feed records written into the FIFO the board's simulated
HAL reads, paced by the speed, and actions that wait for the board to reach a car time.

The board's clock is its feed: a record says how many microseconds passed since the last one, so
the firmware only runs as far as it has consumed. The pump keeps at most a small pipe of records
ahead of the board (its clock stays close to the car's), knows which car time the board has
reached from how many bytes it has read, and runs an action (a fault, a test's ``at()``) once the
board has consumed everything before that action's time. Everything here runs on the mock board's
loop thread.
"""

from __future__ import annotations

import collections
import fcntl
import os
import struct
import termios
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from liftwatch.hil.sim.scenario import BoardFault
from liftwatch.protocol.trace import FEED_RECORD, CarSample

_F_SETPIPE_SZ = 1031
# A small feed pipe keeps the board's clock close to the car's: 4096 bytes = 341 records.
FEED_PIPE_BYTES = 4096
# The loop wakes at least this often; the pump says when it is worth calling again, at most this.
TICK_S = 0.02
# An idle car still gets a record this often (sim time), so a board clock never waits long for news.
IDLE_RECORD_US = 1_000_000


def _idle_car() -> Iterator[CarSample]:
    """A car parked at a floor, door closed, nobody inside: what an unconfigured mock board feels."""
    t = 0
    while True:
        yield CarSample(t, 0, 0, 1000, 0b0111)
        t += IDLE_RECORD_US


def hold_after(samples: Iterable[CarSample | BoardFault]) -> Iterator[CarSample | BoardFault]:
    """The samples, then the last one held forever (a trace that ends leaves the car as it was)."""
    last = None
    for s in samples:
        if isinstance(s, CarSample):
            last = s
        yield s
    if last is None:
        yield from _idle_car()
        return
    t = last.t_us
    while True:
        t += IDLE_RECORD_US
        yield CarSample(t, last.ax_mg, last.ay_mg, last.az_mg, last.inputs)


@dataclass(order=True, slots=True)
class _Action:
    t_us: int
    seq: int
    run: Callable[[], None] = field(compare=False)


class FeedStats(Protocol):
    """The counters the pump keeps up to date (fields of the board's `BoardStats`)."""

    board_t_us: int  # sim time of the last record the board consumed (absolute, car time)
    feed_records: int
    feed_bytes_consumed: int  # over all boots


class FeedPump:
    """Writes the car's samples into the feed FIFO ``fd`` as the board consumes them.

    ``on_fault`` turns a scenario's `BoardFault` into an action (the board knows how to cut power);
    ``running()`` says whether a board process is there to read; ``on_progress()`` is called when
    the board has read more of its feed (what its watchdog watches)."""

    def __init__(
        self,
        fd: int,
        samples: Iterable[CarSample | BoardFault],
        speed: float,
        stats: FeedStats,
        *,
        on_fault: Callable[[BoardFault], None],
        running: Callable[[], bool],
        on_progress: Callable[[], None],
    ) -> None:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, FEED_PIPE_BYTES)
        self.fd = fd
        self.speed = speed
        self.stats = stats
        self.boot_consumed = 0  # bytes the board read since it was powered on
        self.stall_since: float | None = None  # the board has not taken what was ready since then
        self._on_fault, self._running, self._on_progress = on_fault, running, on_progress
        self._samples = hold_after(samples)
        self._next: CarSample | None = None
        self._held: CarSample | None = None
        self._actions: list[_Action] = []
        self._action_seq = 0
        self._out = bytearray()
        self._marks: collections.deque[tuple[int, int]] = collections.deque()  # (bytes written, car time)
        self._written = 0
        self._anchor: tuple[float, int] | None = None  # (real time, car time) the pacing counts from

    def set_speed(self, speed: float) -> None:
        self.speed = speed
        self._anchor = None

    def add_action(self, t_us: int, run: Callable[[], None]) -> None:
        """Run ``run`` once the board has consumed its feed up to car time ``t_us``."""
        self._action_seq += 1
        self._actions.append(_Action(t_us, self._action_seq, run))
        self._actions.sort()

    def unread(self) -> int:
        buf = struct.pack("i", 0)
        return struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, buf))[0]

    def restart(self) -> None:
        """A board powers on: what the dead board did not read is gone with it; the next board starts
        from the car's now."""
        while True:
            try:
                if not os.read(self.fd, 65536):
                    break
            except BlockingIOError:
                break
        self._out.clear()
        self._marks.clear()
        self._written = 0
        self._anchor = None
        self.boot_consumed = 0
        self.stall_since = None
        if self._held is not None:
            self._queue_record(0, self._held)

    def skip(self, dt_us: int) -> None:
        """Advance the car by ``dt_us`` without the board seeing it (it is off)."""
        end = self.stats.board_t_us + dt_us
        while True:
            nxt = self._peek()
            if nxt.t_us > end:
                break
            self._held = nxt
            self._next = None
        self.stats.board_t_us = end
        if self._held is not None:
            held = self._held
            self._held = CarSample(end, held.ax_mg, held.ay_mg, held.az_mg, held.inputs)

    def pump(self) -> float:
        """Write what the car has for the board, paced by ``speed``; returns seconds until worth retrying."""
        if not self._running():
            return TICK_S
        self._consumed()
        wait = TICK_S
        now = time.monotonic()
        while True:
            if self._out:
                try:
                    n = os.write(self.fd, self._out)
                except BlockingIOError:
                    n = 0
                self._written += n
                del self._out[:n]
                if self._out:
                    if self.stall_since is None:
                        self.stall_since = now
                    self._anchor = None  # the board is the bottleneck: no catching up later
                    return TICK_S
            nxt = self._peek()
            if self._actions and self._actions[0].t_us < nxt.t_us:
                if self.unread() == 0 and self.stats.board_t_us >= min(self._last_t(), self._actions[0].t_us):
                    action = self._actions.pop(0)
                    action.run()
                    if not self._running():
                        return TICK_S
                    continue
                return 0.002
            if self.speed:
                if self._anchor is None:
                    self._anchor = (now, self._last_t())
                due = self._anchor[0] + (nxt.t_us - self._anchor[1]) / 1e6 / self.speed
                if due > now:
                    return min(wait, due - now)
            last = self._last_t()
            self._queue_record(nxt.t_us - last if self._held is not None else 0, nxt)
            self._held = nxt
            self._next = None
            self.stats.feed_records += 1
            if len(self._out) >= FEED_PIPE_BYTES:
                continue

    def _queue_record(self, dt_us: int, s: CarSample) -> None:
        self._out += FEED_RECORD.pack(dt_us, s.ax_mg, s.ay_mg, s.az_mg, s.inputs, 0)
        self._marks.append((self._written + len(self._out), s.t_us))

    def _peek(self) -> CarSample:
        while self._next is None:
            item = next(self._samples)
            if isinstance(item, BoardFault):
                self._on_fault(item)
            else:
                self._next = item
        return self._next

    def _consumed(self) -> None:
        consumed = self._written - self.unread()
        while self._marks and self._marks[0][0] <= consumed:
            _, t = self._marks.popleft()
            self.stats.board_t_us = max(self.stats.board_t_us, t)
        if consumed > self.boot_consumed:
            self.stats.feed_bytes_consumed += consumed - self.boot_consumed
            self.boot_consumed = consumed
            self.stall_since = None
            self._on_progress()

    def _last_t(self) -> int:
        return self._held.t_us if self._held is not None else 0
