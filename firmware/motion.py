# Sample ring, per-burst analysis and the car's motion state.
#
# Each FIFO burst is copied into the ring (int16 LE x,y,z, the VIB wire format) and analysed once by
# a viper loop: vertical acceleration with gravity and mounting removed (projection on the
# calibrated gravity direction, minus |g|), sums for the STATS window, and the peak. The motion state
# machine then runs once per burst (10-40 ms), not per sample. All arithmetic is on ints that stay
# below 2**30, so nothing here allocates on an ESP32.
import array

import micropython
from micropython import const

from fwutil import BIAS, TICKS_MASK, copy, isqrt

REST = const(0)
ACCEL = const(1)
MOVING = const(2)
DECEL = const(3)
UNCALIBRATED = const(255)

RING_SAMPLES = const(512)  # power of two; 3 KiB: 1.28 s at 400 Hz, the pre-trip margin
_CLAMP = const(2047)  # deviation clamp (counts, about 128 mg) for the sums of squares

# Analysis state array (_an) layout.
_A_OFF = const(0)
_A_N = const(1)
_A_GU = const(2)  # 2..4 unit gravity * 4096 (+BIAS)
_A_GMAG = const(5)
_A_REF = const(6)  # 6..8 reference (+BIAS)
_A_SUM = const(9)  # 9..11 sum of deviations
_A_SQ = const(12)  # 12..14 sum of squared deviations
_A_AV = const(15)  # sum of vertical acceleration
_A_PEAK = const(16)  # max |vertical acceleration|


@micropython.viper
def _analyse(ring: ptr8, st: ptr32):
    off = st[0]
    n = st[1]
    gx = st[2] - 0x20000000
    gy = st[3] - 0x20000000
    gz = st[4] - 0x20000000
    gmag = st[5]
    rx = st[6] - 0x20000000
    ry = st[7] - 0x20000000
    rz = st[8] - 0x20000000
    s0 = 0
    s1 = 0
    s2 = 0
    q0 = 0
    q1 = 0
    q2 = 0
    sav = 0
    peak = 0
    k = 0
    while k < n:
        x = ring[off] | (ring[off + 1] << 8)
        if x & 0x8000:
            x -= 0x10000
        y = ring[off + 2] | (ring[off + 3] << 8)
        if y & 0x8000:
            y -= 0x10000
        z = ring[off + 4] | (ring[off + 5] << 8)
        if z & 0x8000:
            z -= 0x10000
        off += 6
        av = ((gx * x + gy * y + gz * z) >> 12) - gmag
        sav += av
        if av < 0:
            av = 0 - av
        if av > peak:
            peak = av
        d = x - rx
        if d > 2047:
            d = 2047
        if d < -2047:
            d = -2047
        s0 += d
        q0 += d * d
        d = y - ry
        if d > 2047:
            d = 2047
        if d < -2047:
            d = -2047
        s1 += d
        q1 += d * d
        d = z - rz
        if d > 2047:
            d = 2047
        if d < -2047:
            d = -2047
        s2 += d
        q2 += d * d
        k += 1
    st[9] = s0
    st[10] = s1
    st[11] = s2
    st[12] = q0
    st[13] = q1
    st[14] = q2
    st[15] = sav
    st[16] = peak


# Allocated at import, while the heap is still in one piece (a 3 KiB block is hard to find later).
_RING_BUF = bytearray(RING_SAMPLES * 6)


class Ring:
    """The last RING_SAMPLES samples; ``count`` is the index of the next sample (mod 2**30)."""

    def __init__(self):
        self.buf = _RING_BUF
        self.count = 0

    def write(self, src, n):
        w = self.count & (RING_SAMPLES - 1)
        first = RING_SAMPLES - w
        if first > n:
            first = n
        copy(self.buf, w * 6, src, 0, first * 6)
        if n > first:
            copy(self.buf, 0, src, first * 6, (n - first) * 6)
        self.count = (self.count + n) & TICKS_MASK

    def lag(self, index):
        return (self.count - index) & TICKS_MASK


class Motion:
    """Analyses bursts; keeps the STATS window, calibration and the motion state machine."""

    def __init__(self, lsb_per_g, rate_hz, settings):
        self.an = array.array("i", [0] * 17)
        self.lsb = lsb_per_g
        self.rate = rate_hz
        self.state = UNCALIBRATED
        self.calibrated = False
        self.gravity = [0, 0, 0]  # counts at rest, sensor axes
        self.ref = [0, 0, 0]
        self.have_ref = False
        self.win = [0] * 8  # sums x,y,z, squares x,y,z (>>5), count, peak
        self.win_av = 0
        self.trips = 0
        self.run_ms = 0
        self.v = 0  # integrated vertical velocity, counts * samples
        self.v_peak = 0
        self._dir = 0
        self._on_ms = 0
        self._quiet_ms = 0
        self._trip_ms = 0
        self.changed = False
        self._out = [0] * 8
        self.configure(settings)

    def configure(self, s):
        k = self.lsb
        self.a_on = s["accel_on_mg"] * k // 1000
        self.a_off = s["accel_off_mg"] * k // 1000
        self.on_ms = s["motion_on_ms"]
        self.off_ms = s["motion_off_ms"]
        # 0.05 m/s in counts*samples: slower than any real run, faster than drift over one start.
        self.v_min = 5 * k * self.rate // 981

    def set_gravity(self, gx, gy, gz):
        """Calibrated gravity vector (counts): projection uses its unit vector, scaled by 4096."""
        mag = isqrt(gx * gx + gy * gy + gz * gz)
        if mag < self.lsb // 2:
            return False
        an = self.an
        an[_A_GU] = gx * 4096 // mag + BIAS
        an[_A_GU + 1] = gy * 4096 // mag + BIAS
        an[_A_GU + 2] = gz * 4096 // mag + BIAS
        an[_A_GMAG] = mag
        self.gravity[0] = gx
        self.gravity[1] = gy
        self.gravity[2] = gz
        self.calibrated = True
        self.state = REST
        self.v = 0
        return True

    def _ref_from(self, x, y, z):
        an = self.an
        self.ref[0] = x
        self.ref[1] = y
        self.ref[2] = z
        an[_A_REF] = x + BIAS
        an[_A_REF + 1] = y + BIAS
        an[_A_REF + 2] = z + BIAS
        if not self.calibrated:
            # Until calibrated the "vertical" is the axis gravity pulls on most, sign included.
            ax = 0
            for i in (1, 2):
                if abs(self.ref[i]) > abs(self.ref[ax]):
                    ax = i
            for i in range(3):
                an[_A_GU + i] = BIAS
            an[_A_GU + ax] = (4096 if self.ref[ax] >= 0 else -4096) + BIAS
            an[_A_GMAG] = abs(self.ref[ax])
        self.have_ref = True

    def process(self, ring, start, n):
        """Analyse n new samples at ring index start; runs the motion state machine once."""
        if n <= 0:
            return
        buf = ring.buf
        an = self.an
        if not self.have_ref:
            o = (start & (RING_SAMPLES - 1)) * 6
            self._ref_from(_s16(buf, o), _s16(buf, o + 2), _s16(buf, o + 4))
        w = self.win
        sav = 0
        i = start & (RING_SAMPLES - 1)
        left = n
        while left:
            m = RING_SAMPLES - i
            if m > left:
                m = left
            an[_A_OFF] = i * 6
            an[_A_N] = m
            _analyse(buf, an)
            w[0] += an[9]
            w[1] += an[10]
            w[2] += an[11]
            w[3] += an[12] >> 5
            w[4] += an[13] >> 5
            w[5] += an[14] >> 5
            if an[16] > w[7]:
                w[7] = an[16]
            sav += an[15]
            left -= m
            i = 0
        w[6] += n
        self.win_av += sav
        self._step(sav // n, n * 1000 // self.rate, n)

    def _step(self, a, dt_ms, n):
        # One burst: a = mean vertical acceleration (counts, + is up along gravity's opposite... the
        # sign only matters relative to the start of the trip), dt_ms = burst duration.
        st = self.state
        if st == UNCALIBRATED:
            return
        mag = a if a >= 0 else -a
        if st == REST:
            if mag > self.a_on:
                self._on_ms += dt_ms
                self.v += a * n
                if self._on_ms >= self.on_ms:
                    self._dir = 1 if a > 0 else -1
                    self._set(ACCEL)
                    self._trip_ms = self._on_ms
                    self.v_peak = 0
                    self._quiet_ms = 0
            else:
                self._on_ms = 0
                self.v = 0
            return
        self.v += a * n
        self._trip_ms += dt_ms
        self.run_ms += dt_ms
        av = self.v if self.v >= 0 else -self.v
        if av > self.v_peak:
            self.v_peak = av
        along = a * self._dir
        if st == ACCEL:
            if along < -self.a_on:
                self._set(DECEL)
                self._quiet_ms = 0
            elif mag < self.a_off:
                self._quiet_ms += dt_ms
                if self._quiet_ms >= self.off_ms:
                    if self.v_peak < self.v_min:
                        self._end(False)  # a bump, not a run
                    else:
                        self._set(MOVING)
            else:
                self._quiet_ms = 0
        elif st == MOVING:
            if along < -self.a_on:
                self._set(DECEL)
                self._quiet_ms = 0
            elif av < self.v_min // 2:
                self._end(True)  # velocity gone without a clear deceleration
        elif st == DECEL:
            if mag < self.a_off:
                self._quiet_ms += dt_ms
                if self._quiet_ms >= self.off_ms:
                    self._end(self.v_peak >= self.v_min)
            else:
                self._quiet_ms = 0
        if self._trip_ms > 300000:
            self._end(False)  # no run lasts 5 minutes: integration drift, start over at rest

    def _set(self, st):
        self.state = st
        self.changed = True

    def _end(self, trip):
        if trip:
            self.trips += 1
        self.v = 0
        self._on_ms = 0
        self._set(REST)

    def window(self):
        """Close the STATS window: (count, mean[3], rms[3], peak) in counts; resets it. The next
        window's reference is this window's mean, so the sums stay small."""
        w = self.win
        n = w[6]
        out = self._out
        if n:
            for i in range(3):
                mean_d = w[i] // n
                ex2 = (w[3 + i] // n) << 5
                var = ex2 - mean_d * mean_d
                out[1 + i] = self.ref[i] + mean_d
                out[4 + i] = isqrt(var) if var > 0 else 0
            out[7] = w[7]
            self._ref_from(out[1], out[2], out[3])
        out[0] = n
        for i in range(8):
            w[i] = 0
        self.win_av = 0
        return out


def _s16(b, o):
    v = b[o] | (b[o + 1] << 8)
    return v - 0x10000 if v & 0x8000 else v
