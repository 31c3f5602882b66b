# The streamer: what leaves the ring. VIB blocks while the car moves (with a margin of ring before
# and after each trip), or always, or never, per the stream mode; a STATS frame per closed window
# while no VIB flows. Frames are packed in place into the link's body: nothing here allocates.
from micropython import const

import lwproto
from fwutil import TICKS_MASK, tdiff
from link import P_STATS, P_VIB
from motion import W_COUNT, W_MEAN, W_PEAK, W_RMS
from ring import RING_SAMPLES, SAMPLE_BYTES

_VIB_SAMPLES = const(64)  # a block: 384 bytes of samples in a 413-byte frame (SPEC.md section 5)

_pack_int = lwproto.pack_int
_pack_arr = lwproto.pack_array_header


class Streamer:
    """Turns the ring into VIB frames and closed motion windows into STATS frames."""

    def __init__(self, link, ring, cfg):
        self.link = link
        self.ring = ring
        self.streaming = False
        self.overruns = 0  # times the link fell a whole ring behind (COUNTERS `ring_overruns`)
        self.win_at = 0  # board ms the open STATS window started
        self._win_ms = 0  # length of the window last closed
        self._vib_idx = 0  # ring index of the next sample to send
        self._stream_end = 0  # board ms the post-trip margin ends
        self.configure(cfg)

    def configure(self, cfg):
        self.mode = cfg["stream"]
        self.margin_ms = cfg["margin_ms"]
        self.motion_on_ms = cfg["motion_on_ms"]
        self.stats_ms = cfg["stats_ms"]

    # ---- VIB ------------------------------------------------------------------------------------
    def stream(self, now, m):
        """Send the VIB blocks due after a burst (motion m analysed it); returns the samples lost to
        a ring overrun (0: none)."""
        ring = self.ring
        mode = self.mode
        if mode == lwproto.STREAM_ALWAYS_VIB:
            want = True
        elif mode == lwproto.STREAM_NO_VIB or not m.calibrated:
            want = False
        elif m.state != lwproto.MOTION_REST:
            want = True
            self._stream_end = (now + self.margin_ms) & TICKS_MASK
        else:
            want = self.streaming and tdiff(now, self._stream_end) < 0
        was = self.streaming
        self.streaming = want
        if not want and not was:
            return 0
        if want and not was:
            # The trip began motion_on_ms before it was recognised: start a margin before that.
            pre = (self.margin_ms + self.motion_on_ms) * m.rate // 1000 + _VIB_SAMPLES
            if pre > RING_SAMPLES - 2 * _VIB_SAMPLES:
                pre = RING_SAMPLES - 2 * _VIB_SAMPLES
            if pre > ring.filled:
                pre = ring.filled
            self._vib_idx = (ring.count - pre) & TICKS_MASK
        lost = 0
        lag = ring.lag(self._vib_idx)
        if lag > RING_SAMPLES - _VIB_SAMPLES:  # the link fell behind: skip what the ring overwrote
            lost = lag - (RING_SAMPLES - _VIB_SAMPLES)
            self._vib_idx = (self._vib_idx + lost) & TICKS_MASK
            self.overruns += 1
            lag -= lost
        while lag >= _VIB_SAMPLES:
            self._send_vib(now, m, _VIB_SAMPLES)
            lag -= _VIB_SAMPLES
        if not want and lag:
            self._send_vib(now, m, lag)  # the stream just ended: its tail
        return lost

    def _send_vib(self, now, m, n):
        ring = self.ring
        lk = self.link
        body = lk.enc.body
        idx = self._vib_idx
        # SPEC: t_ms is the time of the block's last sample; pre-trigger blocks are older than now.
        newer = ring.lag(idx) - n  # samples written after the block's last one
        off = lk.begin(lwproto.T_VIB, (now - newer * 1000 // m.rate) & TICKS_MASK)
        off = _pack_arr(body, off, 5)
        off = _pack_int(body, off, m.rate)
        off = _pack_int(body, off, m.lsb)
        off = _pack_int(body, off, idx & 0xFFFF)  # first_index, mod 2**16
        off = _pack_int(body, off, n)
        off = lwproto.pack_bin_header(body, off, n * SAMPLE_BYTES)
        ring.read_into(body, off, idx, n)
        lk.commit(off + n * SAMPLE_BYTES, P_VIB)
        self._vib_idx = (idx + n) & TICKS_MASK

    # ---- STATS ----------------------------------------------------------------------------------
    def close_window(self, now, m):
        """Close motion m's STATS window once stats_ms have passed: its W_* slots, or None (not due
        yet, or no sample in it)."""
        if tdiff(now, self.win_at) < self.stats_ms:
            return None
        self._win_ms = tdiff(now, self.win_at)
        self.win_at = now
        w = m.window()
        return w if w[W_COUNT] else None

    def send_stats(self, now, m, w):
        """The STATS frame of closed window w, unless VIB is flowing (it carries the same)."""
        if self.streaming or self.mode == lwproto.STREAM_ALWAYS_VIB:
            return
        k = m.lsb
        lk = self.link
        body = lk.enc.body
        off = lk.begin(lwproto.T_STATS, now)
        off = _pack_arr(body, off, 6)
        off = _pack_int(body, off, self._win_ms)
        off = _pack_int(body, off, w[W_COUNT])
        off = _pack_arr(body, off, 3)
        for i in range(W_MEAN, W_MEAN + 3):
            off = _pack_int(body, off, w[i] * 1000 // k)
        off = _pack_arr(body, off, 3)
        for i in range(W_RMS, W_RMS + 3):
            off = _pack_int(body, off, w[i] * 1000 // k)
        off = _pack_int(body, off, w[W_PEAK] * 1000 // k)
        off = _pack_int(body, off, m.state)
        lk.commit(off, P_STATS)
