"""A boot's VIB stream: continuity of the sample index, sample times, and runs merged into one block.

VIB blocks carry `first_index`, the index of their first sample since sampling started, mod 2**16
(SPEC.md section 5). `VibStream` follows it across blocks: a jump is a measured gap (the block's
`gap_before`), a block behind what we have is a re-send after a link hiccup (dropped), and sample
times come from the index (exact spacing, no frame jitter) anchored to the frame time, which
re-anchors when the two disagree.

`extend_run` merges the VIB frames of one read that continue each other (next seq, next sample
index, same rate and scale, same boot) into the block the first one made, so analytics pays its
per-observation cost once per read instead of once per 64 samples, and the run after the first
frame takes a tight loop with no per-frame observation. That is what lets one core serve hundreds
of boards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from liftwatch.edge_daemon.board_clock import BoardClock
from liftwatch.edge_daemon.observations import VibBlock
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol import messages as m
from liftwatch.protocol.framing import Frame

_U16 = 0x10000
_U16_HALF = 0x8000

# A VIB block whose index-derived start differs this much from its frame time re-anchors the
# sample clock (board crystal drift, or a block that waited in the board's queue after a link cut).
VIB_REANCHOR_MS = 250


@dataclass(frozen=True, slots=True)
class VibRun:
    """What `extend_run` absorbed: `frames` more frames, up to seq `last_seq`, into `block`."""

    frames: int
    last_seq: int
    last_unwrapped: int  # board time of the run's last sample
    block: VibBlock


class VibStream:
    """VIB continuity of one boot. `reset()` at every new boot: indexes restart with sampling."""

    __slots__ = ("next_index", "next_t_ms", "anchor", "last_samples")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.next_index: int | None = None
        self.next_t_ms: float | None = None  # board time (unwrapped ms) of the sample expected next
        self.anchor: tuple[int, float, int] | None = None  # (index, unwrapped ms, rate_hz)
        self.last_samples: bytes | None = None  # samples of the block `block()` made last (for a run)

    def block(self, vib: m.Vib, end_unwrapped: int, clock: BoardClock,
              gravity: tuple[int, int, int] | None) -> VibBlock | None:
        """The observation for one VIB frame whose last sample is at board time `end_unwrapped`;
        None for a block we already have (re-sent after a link hiccup)."""
        rate, first_index, count = vib.rate_hz, vib.first_index, vib.count
        start_by_frame = end_unwrapped - (count - 1) * 1000.0 / rate
        gap = 0
        if self.next_index is not None:
            ahead = (first_index - self.next_index) % _U16
            if self.next_t_ms is None:
                if ahead >= _U16_HALF:
                    return None
            else:
                # first_index is mod 2**16 (164 s at 400 Hz) and counts on while the car rests
                # between trips: unwrap it with the board time, taking the congruent distance
                # nearest to what the time elapsed since the expected next sample predicts.
                elapsed_ms = start_by_frame - self.next_t_ms
                ahead += round((elapsed_ms * rate / 1000.0 - ahead) / _U16) * _U16
                if ahead < 0:
                    if elapsed_ms * rate < _U16_HALF * 1000.0:
                        return None  # behind what we have
                    ahead = ahead % _U16 or _U16  # sensor clock drift over a long rest: a gap anyway
            gap = ahead
        self.next_index = (first_index + count) % _U16
        self.next_t_ms = end_unwrapped + 1000.0 / rate
        start = start_by_frame
        keep_anchor = False
        anchor = self.anchor
        if anchor is not None and anchor[2] == rate and gap == 0:
            since = (first_index - anchor[0]) % _U16
            by_index = anchor[1] + since * 1000.0 / rate
            if since < _U16_HALF and abs(by_index - start_by_frame) <= VIB_REANCHOR_MS:
                start = by_index
                keep_anchor = since < _U16_HALF // 2  # move it on before the u16 distance aliases
        if not keep_anchor:
            self.anchor = (first_index, start, rate)
        self.last_samples = vib.samples
        return VibBlock(
            ts_first=clock.to_utc_s(start), rate_hz=rate, lsb_per_g=vib.lsb_per_g,
            samples=np.frombuffer(vib.samples, dtype="<i2").reshape(count, 3),
            gravity=gravity, gap_before=gap,
        )

    def extend_run(self, first: VibBlock, frames: Sequence[Frame], i: int, boot_id: int | None, seq: int,
                   clock: BoardClock) -> VibRun | None:
        """Absorb the VIB frames from `i` on that continue `first`, the block the frame with seq
        `seq` just made; None if the next frame does not continue it. A frame that leaves the run
        (another boot, a seq or index gap, a payload that does not fit) is left for the session."""
        assert self.last_samples is not None
        rate, lsb, nxt = first.rate_hz, first.lsb_per_g, self.next_index
        fits = m.Vib.fits
        chunks = [self.last_samples]
        total = len(first.samples)
        last_t = 0
        n = len(frames)
        j = i
        while j < n:
            f = frames[j]
            if f[0] != lw.T_VIB or f[2] != boot_id or f[3] != (seq + 1) & 0xFFFF:
                break
            payload = f[5]
            # Anything but exactly what boards send leaves the run: the session decodes it alone.
            if not fits(payload):
                break
            f_rate, f_lsb, f_first, f_count, samples = payload
            if f_first != nxt or f_rate != rate or f_lsb != lsb:
                break
            chunks.append(samples)
            total += f_count
            seq = f[3]
            nxt = (f_first + f_count) & 0xFFFF
            last_t = f[4]
            j += 1
        if j == i:
            return None
        last_unwrapped = clock.unwrap(last_t)
        self.next_index = nxt
        self.next_t_ms = last_unwrapped + 1000.0 / rate
        block = np.frombuffer(b"".join(chunks), dtype="<i2").reshape(total, 3)
        merged = VibBlock(ts_first=first.ts_first, rate_hz=rate, lsb_per_g=lsb, samples=block,
                          gravity=first.gravity, gap_before=first.gap_before)
        return VibRun(frames=j - i, last_seq=seq, last_unwrapped=last_unwrapped, block=merged)
