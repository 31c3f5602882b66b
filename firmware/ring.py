# The sample ring: the last RING_SAMPLES accelerometer samples, as the VIB frames carry them.
#
# Each FIFO burst is written in (int16 LE x,y,z, 6 bytes a sample: the wire format, so a VIB block is
# one copy out); the motion analysis reads a burst where it landed and the streamer copies blocks out
# into frames. Sample indices count every sample since boot, modulo 2**30 (a small int on the ESP32).
from micropython import const

from fwutil import TICKS_MASK, copy

RING_SAMPLES = const(512)  # power of two; 3 KiB: 1.28 s at 400 Hz, the pre-trip margin
SAMPLE_BYTES = const(6)

# Allocated at import, while the heap is still in one piece (a 3 KiB block is hard to find later).
_RING_BUF = bytearray(RING_SAMPLES * SAMPLE_BYTES)


class Ring:
    """``count`` is the index of the next sample; ``filled`` how many samples the ring holds."""

    def __init__(self):
        self.buf = _RING_BUF
        self.count = 0
        self.filled = 0

    def write(self, src, n):
        """Append n samples from src[0:n*6] (a FIFO burst)."""
        w = self.count & (RING_SAMPLES - 1)
        first = RING_SAMPLES - w
        if first > n:
            first = n
        copy(self.buf, w * SAMPLE_BYTES, src, 0, first * SAMPLE_BYTES)
        if n > first:
            copy(self.buf, 0, src, first * SAMPLE_BYTES, (n - first) * SAMPLE_BYTES)
        self.count = (self.count + n) & TICKS_MASK
        if self.filled < RING_SAMPLES:
            self.filled = min(self.filled + n, RING_SAMPLES)

    def lag(self, index):
        """Samples written since sample ``index``."""
        return (self.count - index) & TICKS_MASK

    def read_into(self, dst, off, index, n):
        """Copy n samples from sample ``index`` on into dst[off:], across the wrap, without allocating."""
        i = index & (RING_SAMPLES - 1)
        first = RING_SAMPLES - i
        if first > n:
            first = n
        copy(dst, off, self.buf, i * SAMPLE_BYTES, first * SAMPLE_BYTES)
        if n > first:
            copy(dst, off + first * SAMPLE_BYTES, self.buf, 0, (n - first) * SAMPLE_BYTES)
