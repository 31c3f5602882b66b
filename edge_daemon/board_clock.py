"""Board time of one boot: unwrap the frames' `t_ms` (mod 2**30) and map it to UTC.

`t_ms` is the board's monotonic ms modulo 2**30 (SPEC.md section 3). `BoardClock` unwraps it (the
nearest wrap to the previous frame, or to the host's elapsed time after a long silence) and maps it
to UTC with the best TIME_SYNC round trip or, until one arrives, the earliest arrival (least
latency). While the car moves, times keep the offset the trip started with, so a trip's start,
samples and end share one time base.
"""

from __future__ import annotations

from liftwatch.protocol import lwproto as lw

T_MS_MODULO = lw.T_MS_MODULO  # 2**30
_T_HALF = T_MS_MODULO // 2

# A new clock offset waits for the end of a trip at most this long (board ms): a car that reports
# "moving" for longer has a fault, and its times should follow the best offset again.
TRIP_OFFSET_HOLD_MAX_MS = 600_000
# A TIME_SYNC reply slower than this says more about a busy link than about the clock offset.
MAX_SYNC_RTT_MS = 2000


def t_ms_delta(a: int, b: int) -> int:
    """``a - b`` for two raw board times on the wrapping t_ms scale, the shorter way round."""
    return (a - b + _T_HALF) % T_MS_MODULO - _T_HALF


class BoardClock:
    """Board time of one boot: unwrap `t_ms` (mod 2**30) and map it to UTC.

    `offset_ms` is UTC ms minus unwrapped board ms. The unwrapped scale is arbitrary (the first frame
    seen sets it) but consistent within a boot, which is all the offset needs.
    """

    __slots__ = (
        "last_raw", "last_unwrapped", "last_host_ms", "offset_ms", "synced", "sync_rtt_ms", "trip_offset_ms",
        "trip_since",
    )

    def __init__(self, offset_ms: float | None = None) -> None:
        self.last_raw: int | None = None
        self.last_unwrapped = 0
        self.last_host_ms: float | None = None
        self.offset_ms = offset_ms
        self.synced = False
        self.sync_rtt_ms: float | None = None
        # While the car moves, times map with the offset it started with: a new offset (TIME_SYNC,
        # a step of the Pi's wall clock) lands between trips, never inside one, so a trip's start,
        # samples and end share one time base (a step mid-trip once made a 3618 s or negative trip).
        self.trip_offset_ms: float | None = None
        self.trip_since = 0  # unwrapped board ms the trip's offset was taken at

    @classmethod
    def fixed(cls, epoch_ms: float) -> BoardClock:
        """A replayed trace's clock: board time t is `epoch_ms + t`, exact by construction."""
        clock = cls(epoch_ms)
        clock.synced = True
        return clock

    def unwrap(self, t_ms: int, host_ms: float | None = None) -> int:
        """Advance with the frame's send time. After more than a quarter wrap (3 days) of silence
        the host's elapsed time, not the nearest wrap, decides how many wraps passed."""
        if self.last_raw is None:
            self.last_raw, self.last_unwrapped, self.last_host_ms = t_ms, t_ms, host_ms
            return t_ms
        delta = t_ms_delta(t_ms, self.last_raw)
        if host_ms is not None and self.last_host_ms is not None:
            elapsed = host_ms - self.last_host_ms
            if elapsed > T_MS_MODULO // 4:
                predicted = self.last_unwrapped + elapsed
                base = self.last_unwrapped + delta
                wraps = round((predicted - base) / T_MS_MODULO)
                delta += wraps * T_MS_MODULO
        unwrapped = self.last_unwrapped + delta
        if delta > 0:
            self.last_raw, self.last_unwrapped = t_ms, unwrapped
        if host_ms is not None:
            self.last_host_ms = host_ms
        return unwrapped

    def peek(self, t_ms: int) -> int:
        """Unwrap a time carried inside a payload (event_t_ms, board_t_ms) without advancing."""
        if self.last_raw is None:
            return t_ms
        return self.last_unwrapped + t_ms_delta(t_ms, self.last_raw)

    def observe_arrival(self, unwrapped: int, host_ms: float) -> None:
        """Until a TIME_SYNC lands, the smallest host-minus-board difference is the best offset:
        every frame arrives after it was sent, so the least delayed one bounds the offset best."""
        if self.synced:
            return
        candidate = host_ms - unwrapped
        if self.offset_ms is None or candidate < self.offset_ms:
            self.offset_ms = candidate

    def observe_sync(self, host_sent_ms: float, board_unwrapped: int, host_recv_ms: float) -> bool:
        """A TIME_SYNC round trip: the board read its clock about halfway through. Keeps the sample
        with the smallest round trip since the last interval started; returns whether it was used."""
        rtt = host_recv_ms - host_sent_ms
        if rtt < 0 or rtt > MAX_SYNC_RTT_MS:
            return False
        if self.synced and self.sync_rtt_ms is not None and rtt > self.sync_rtt_ms * 2 + 20:
            return False
        self.offset_ms = host_sent_ms + rtt / 2 - board_unwrapped
        self.sync_rtt_ms = rtt
        self.synced = True
        return True

    def forget_offset(self) -> None:
        """The host's wall clock was stepped: offsets measured against it would misplace every
        event, so measure again from the next arrival and the next TIME_SYNC."""
        self.offset_ms = None
        self.synced = False
        self.sync_rtt_ms = None

    def to_utc_s(self, unwrapped: int) -> float:
        offset = self.trip_offset_ms if self.trip_offset_ms is not None else self.offset_ms
        return (unwrapped + (offset or 0.0)) / 1000.0

    def payload_utc_s(self, t_ms: int, frame_ts: float) -> float:
        """UTC of a time carried in a payload. An event cannot happen after the frame reporting it
        was sent; a later value is from a previous boot's clock (re-sent after a reboot)."""
        ts = self.to_utc_s(self.peek(t_ms % T_MS_MODULO))
        return frame_ts if ts > frame_ts else ts

    def hold_for_trip(self, unwrapped: int) -> None:
        """The car started moving: keep mapping with today's offset until `release_after_trip`."""
        if self.trip_offset_ms is None and self.offset_ms is not None:
            self.trip_offset_ms, self.trip_since = self.offset_ms, unwrapped

    def expire_trip_hold(self) -> None:
        """"Moving" for longer than TRIP_OFFSET_HOLD_MAX_MS is a fault, not a trip to keep whole."""
        if self.trip_offset_ms is not None and self.last_unwrapped - self.trip_since > TRIP_OFFSET_HOLD_MAX_MS:
            self.trip_offset_ms = None

    def release_after_trip(self) -> None:
        self.trip_offset_ms = None
