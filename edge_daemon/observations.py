"""What a per-board session hands to the per-car analytics, after board time is mapped to UTC.

The session (edge_daemon/session.py) decodes frames and emits these observations; analytics
(edge_daemon/analytics/) consumes them and never sees frames, bytes or board ticks. Every `ts` is
float seconds since the Unix epoch, UTC. A session emits one board's observations in board-time
order; `VibBlock`s may lag the STATE changes of the same moment (the board ships VIB after it has
filled a block), and analytics waits for them for a short, configured grace period.

Codes and bitmasks are the wire values from protocol/SPEC.md, kept as plain ints so an unknown
value from a newer board passes through; the enums below only name the known ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from liftwatch.protocol.messages import BoardEventKind, Input, Motion

__all__ = [
    "MOVING",
    "BoardBooted",
    "BoardEvent",
    "BoardEventKind",
    "CountersSnapshot",
    "FramesLost",
    "Inputs",
    "InputsChanged",
    "JournalRecord",
    "LinkState",
    "Motion",
    "MotionChanged",
    "Observation",
    "RestStats",
    "VibBlock",
]


# The wire's codes, defined once in protocol/messages.py; analytics names them from here.
Inputs = Input
MOVING = (int(Motion.ACCELERATING), int(Motion.MOVING), int(Motion.DECELERATING))  # a trip under way


@dataclass(frozen=True, slots=True)
class InputsChanged:
    """A STATE frame: the input bitmask after a change, and which bits changed."""

    ts: float
    inputs: int
    changed: int


@dataclass(frozen=True, slots=True)
class MotionChanged:
    """A STATE frame whose motion code changed (the board sends motion with every STATE)."""

    ts: float
    motion: int


@dataclass(frozen=True, slots=True, eq=False)
class VibBlock:
    """A VIB frame: consecutive raw samples on the sensor axes, gravity included.

    `samples` is an int16 array of shape (n, 3) in counts (mg = counts * 1000 / lsb_per_g);
    `ts_first` is the UTC time of samples[0]. `gravity` is the at-rest vector from the board's
    calibration (HELLO), None if uncalibrated; analytics uses it to find the vertical axis and
    remove gravity. `gap_before` is how many samples were lost between the previous block and
    this one (sample index gap, 0 when contiguous), so integration can restart instead of
    silently joining two pieces of signal. Compared by identity (arrays have no truthy `==`).
    """

    ts_first: float
    rate_hz: int
    lsb_per_g: int
    samples: np.ndarray = field(repr=False)
    gravity: tuple[int, int, int] | None = None
    gap_before: int = 0

    @property
    def ts(self) -> float:
        """Same as `ts_first`, so every observation can be ordered by `.ts`."""
        return self.ts_first

    @property
    def ts_end(self) -> float:
        """UTC time just after the last sample."""
        return self.ts_first + len(self.samples) / self.rate_hz


@dataclass(frozen=True, slots=True)
class RestStats:
    """A STATS frame: acceleration summary over a window, sent while the car is not streaming VIB."""

    ts: float  # end of the window
    window_ms: int
    mean_mg: tuple[int, int, int]
    rms_mg: tuple[int, int, int]  # about the mean
    peak_mg: int  # max |deviation| of the vertical axis
    motion: int = Motion.REST
    count: int = 0


@dataclass(frozen=True, slots=True)
class BoardEvent:
    """An EVENT frame (raised or cleared by the board), already durably stored by the session."""

    ts: float
    event_id: int  # persistent across boots on the board
    kind: int  # BoardEventKind value
    state: int  # 1 raised, 0 cleared
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CountersSnapshot:
    """A COUNTERS frame: the board's lifetime counters (they restart only with its storage)."""

    ts: float
    door_cycles: int = 0
    trips: int = 0
    run_time_s: int = 0
    boots: int = 0
    fifo_overruns: int = 0
    ring_overruns: int = 0
    link_drops: int = 0
    events_dropped: int = 0


@dataclass(frozen=True, slots=True)
class LinkState:
    """The session lost (heartbeat timeout, transport gone) or regained the board.

    `online=False` carries the time of the last frame heard, not of the timeout, so offline
    minutes are not shortened by the timeout itself.
    """

    ts: float
    online: bool


@dataclass(frozen=True, slots=True)
class BoardBooted:
    """A HELLO with a new boot id: the board restarted; its motion and door state start over."""

    ts: float
    boot_id: int
    reset_cause: str
    fw_version: str = ""
    sensor_model: str = ""
    rate_hz: int = 0
    lsb_per_g: int = 0
    calibrated: bool = False
    safe_mode: bool = False
    gravity: tuple[int, int, int] | None = None


@dataclass(frozen=True, slots=True)
class FramesLost:
    """Frames of this boot never arrived (a gap in the board's seq), just before the frame at `ts`.

    Which frames is unknown: a trip under way lost maybe a zone pulse, so what is counted from its
    inputs (floors, leveling) is unknown rather than wrong."""

    ts: float
    count: int


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """A record of the board's flash journal (JOURNAL frame), times mapped to UTC: a trip, door cycle
    or inspection period the board saw itself, maybe while nobody listened. `ts` is its end; like a
    `BoardEvent` it is ACKed once stored (`BoardSession.journal_stored`)."""

    ts: float
    seq: int
    kind: int  # JournalKind value
    start_ts: float
    direction: int = 0
    count: int = 0  # trip: door zones entered; door cycle: reopenings
    peak_speed_mm_s: int = 0
    inputs_start: int = 0
    inputs_end: int = 0
    # Its boot was never mapped to UTC (it began and ended while no daemon listened): the times are
    # the arrival's, not the board's.
    timed_by_arrival: bool = False


Observation = (
    InputsChanged | MotionChanged | VibBlock | RestStats | BoardEvent | CountersSnapshot | LinkState | BoardBooted
    | FramesLost | JournalRecord
)
