# Per-burst analysis, the STATS window, gravity calibration and rest offset tracking, and the
# car's motion state.
#
# Each FIFO burst, once in the ring (ring.py), is analysed once by a viper loop: vertical
# acceleration with gravity and mounting removed (projection on the calibrated gravity direction,
# minus |g|), sums for the STATS window, and the peak. The motion state machine then runs once per
# burst (10-40 ms), not per sample. All arithmetic is on ints that stay below 2**30, so nothing here
# allocates on an ESP32.
import array

import lwproto
import micropython
from micropython import const

from fwutil import BIAS, isqrt
from ring import RING_SAMPLES, SAMPLE_BYTES

_CLAMP = const(2047)  # deviation clamp (counts, about 128 mg) for the sums of squares
_MOVED_MM = const(20)  # a car that integrates to less than this has not left its landing
# Gravity is the mean of a run of steady windows, averaged until its standard error is small: a
# noisy part (or a vibrating car roof) takes more windows, never more quiet. _QUIET_MG only rejects
# a shaken window (door slam, people stepping in): 5x the worst datasheet noise of the parts we
# drive (LIS3DH at 1344 Hz: 220 ug/rtHz over 672 Hz, about 6 mg rms).
_QUIET_MG = const(40)
_SE_UG = const(300)  # standard error of the calibrated gravity's mean, micro-g
_AGREE = const(6)  # two windows' means agree within this many standard errors (+1 mg)
_CAL_MAX_WINDOWS = const(60)  # a minute of steady windows is enough at any noise we accept

# Analysis state array (_an) layout: what _analyse reads (offset .. reference) and writes (sums, peak).
_A_OFF = const(0)  # byte offset of the burst in the ring
_A_N = const(1)  # samples in the burst
_A_GU = const(2)  # 2..4 unit gravity * 4096 (+BIAS)
_A_GMAG = const(5)  # |gravity| in counts
_A_REF = const(6)  # 6..8 reference (+BIAS)
_A_SUM = const(9)  # 9..11 sum of deviations
_A_SQ = const(12)  # 12..14 sum of squared deviations
_A_AV = const(15)  # sum of vertical acceleration
_A_PEAK = const(16)  # max |vertical acceleration|
_A_LEN = const(17)

# Thresholds (configure) and the two integers the rest logic keeps, in one array (th) rather than
# seven attributes: Motion's attribute table stays at 23 slots, one block the heap still has when
# the sensor starts after Link, Store and config.
_T_ON = const(0)  # vertical acceleration that starts a run (counts)
_T_OFF = const(1)  # below this the car is steady (counts)
_T_ON_MS = const(2)
_T_OFF_MS = const(3)
_T_VMIN = const(4)  # 0.05 m/s in counts * samples: slower than any real run
_T_X = const(5)  # displacement since the run began, counts * samples^2 (until it proves the run)
_T_NOISE = const(6)  # rms at rest (counts, largest axis): set by calibration, tracked at every rest
_T_LEN = const(7)

# Calibration's state array (cal): the last window and the run of steady windows since.
_C_PREV = const(0)  # 0..2 means x, y, z; 3..5 rms x, y, z of the last window
_C_HAVE = const(6)  # 1 once there is a last window
_C_SUM = const(7)  # 7..9 sums of the run's means x, y, z
_C_WINDOWS = const(10)
_C_SAMPLES = const(11)
_C_LEN = const(12)

# Open STATS window accumulators (win).
_S_SUM = const(0)  # 0..2 sums of deviations x, y, z
_S_SQ = const(3)  # 3..5 sums of squared deviations x, y, z (>>5)
_S_N = const(6)  # samples
_S_PEAK = const(7)  # max |vertical acceleration|
_S_LEN = const(8)

# A closed STATS window, as window() returns it (counts): the streamer's STATS payload.
W_COUNT = const(0)
W_MEAN = const(1)  # 1..3 mean x, y, z
W_RMS = const(4)  # 4..6 rms x, y, z
W_PEAK = const(7)  # peak |vertical acceleration|
_W_LEN = const(8)


@micropython.viper
def _analyse(ring: ptr8, st: ptr32):
    off = st[_A_OFF]
    n = st[_A_N]
    gx = st[_A_GU] - 0x20000000
    gy = st[_A_GU + 1] - 0x20000000
    gz = st[_A_GU + 2] - 0x20000000
    gmag = st[_A_GMAG]
    rx = st[_A_REF] - 0x20000000
    ry = st[_A_REF + 1] - 0x20000000
    rz = st[_A_REF + 2] - 0x20000000
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
        off += 6  # ring.SAMPLE_BYTES (viper sees only this module's consts)
        av = ((gx * x + gy * y + gz * z) >> 12) - gmag
        sav += av
        if av < 0:
            av = 0 - av
        if av > peak:
            peak = av
        d = x - rx
        if d > _CLAMP:
            d = _CLAMP
        if d < -_CLAMP:
            d = -_CLAMP
        s0 += d
        q0 += d * d
        d = y - ry
        if d > _CLAMP:
            d = _CLAMP
        if d < -_CLAMP:
            d = -_CLAMP
        s1 += d
        q1 += d * d
        d = z - rz
        if d > _CLAMP:
            d = _CLAMP
        if d < -_CLAMP:
            d = -_CLAMP
        s2 += d
        q2 += d * d
        k += 1
    st[_A_SUM] = s0
    st[_A_SUM + 1] = s1
    st[_A_SUM + 2] = s2
    st[_A_SQ] = q0
    st[_A_SQ + 1] = q1
    st[_A_SQ + 2] = q2
    st[_A_AV] = sav
    st[_A_PEAK] = peak


class Motion:
    """Analyses bursts; keeps the STATS window, calibration and the motion state machine."""

    def __init__(self, lsb_per_g, rate_hz, settings):
        self.an = array.array("i", [0] * _A_LEN)
        self.th = array.array("i", [0] * _T_LEN)
        self.cal = array.array("i", [0] * _C_LEN)
        self.lsb = lsb_per_g
        self.rate = rate_hz
        self.state = lwproto.MOTION_UNCALIBRATED
        self.calibrated = False
        self.gravity = [0, 0, 0]  # counts at rest, sensor axes
        self.ref = [0, 0, 0]
        self.have_ref = False
        self.win = [0] * _S_LEN
        self.win_av = 0
        self.trips = 0
        self.run_ms = 0
        self.v = 0  # integrated vertical velocity, counts * samples
        self.v_peak = 0
        self.moved = False  # the run has integrated to _MOVED_MM while accelerating (th[_T_X])
        self.trip_dir = 0
        self._on_ms = 0
        self._quiet_ms = 0
        self._trip_ms = 0
        self.changed = False
        self._out = [0] * _W_LEN
        self.configure(settings)

    def configure(self, s):
        k = self.lsb
        th = self.th
        th[_T_ON] = s["accel_on_mg"] * k // 1000
        th[_T_OFF] = s["accel_off_mg"] * k // 1000
        th[_T_ON_MS] = s["motion_on_ms"]
        th[_T_OFF_MS] = s["motion_off_ms"]
        # 0.05 m/s in counts*samples: slower than any real run, faster than drift over one start.
        th[_T_VMIN] = 5 * k * self.rate // 981

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
        self.state = lwproto.MOTION_REST
        self.v = 0
        self._quiet_ms = self.th[_T_OFF_MS]
        return True

    def recalibrate(self):
        """Forget the calibration (CONTROL calibrate): the next steady windows find gravity again."""
        self.cal[_C_HAVE] = 0
        self.calibrated = False

    def _steady(self, w):
        """Window w's mean agrees with the previous window's within _AGREE standard errors of the
        noisier of the two (+1 mg): the car neither started nor stopped between them. Keeps w."""
        c = self.cal
        ok = c[_C_HAVE]
        slack = self.lsb // 1000
        root = isqrt(w[W_COUNT]) or 1
        for i in range(3):
            rms = max(w[W_RMS + i], c[_C_PREV + 3 + i])
            if ok and abs(w[W_MEAN + i] - c[_C_PREV + i]) > _AGREE * rms // root + slack:
                ok = 0
            c[_C_PREV + i] = w[W_MEAN + i]
            c[_C_PREV + 3 + i] = w[W_RMS + i]
        c[_C_HAVE] = 1
        return ok

    def calibrate(self, w):
        """One closed window toward calibration: 1 once gravity is set (the mean of a run of steady
        windows whose standard error is below _SE_UG, near 1 g), 0 while the run grows, -1 when w
        was shaken or its mean moved from the previous window's (the car is not at rest)."""
        k = self.lsb
        c = self.cal
        rms = max(w[W_RMS], w[W_RMS + 1], w[W_RMS + 2])
        if rms * 1000 >= _QUIET_MG * k:
            c[_C_HAVE] = 0
            return -1
        had_prev = c[_C_HAVE]
        steady = self._steady(w)
        if not steady or c[_C_WINDOWS] >= _CAL_MAX_WINDOWS:
            for i in range(_C_SUM, _C_LEN):  # a new run starts with w
                c[i] = 0
        for i in range(3):
            c[_C_SUM + i] += w[W_MEAN + i]
        c[_C_WINDOWS] += 1
        c[_C_SAMPLES] += w[W_COUNT]
        if had_prev and not steady:
            return -1
        # standard error rms / sqrt(samples) <= _SE_UG (rms in counts * 1000, ints below 2**30)
        n = c[_C_WINDOWS]
        if n < 2 or rms * 1000 // (_SE_UG * k // 1000) > isqrt(c[_C_SAMPLES]):
            return 0
        gx = c[_C_SUM] // n
        gy = c[_C_SUM + 1] // n
        gz = c[_C_SUM + 2] // n
        if abs(isqrt(gx * gx + gy * gy + gz * gz) - k) >= k // 5 or not self.set_gravity(gx, gy, gz):
            return 0
        self.th[_T_NOISE] = rms
        c[_C_WINDOWS] = 0
        return 1

    def track(self, w):
        """Re-zero at a confirmed rest (the caller knows the car is at rest in a door zone whose
        sensors held still through window w): gravity follows the sensor's offset drift, a quarter
        of the way per window whose rms is within what the rest noise allows (a jumping passenger,
        a door slam or someone stepping in shakes the window well past it)."""
        rms = max(w[W_RMS], w[W_RMS + 1], w[W_RMS + 2])
        th = self.th
        noise = th[_T_NOISE]
        th[_T_NOISE] = noise + (rms - noise) // 16  # the noise floor itself may change (a louder roof)
        # Not while a burst over a_on is being integrated (set_gravity starts the rest afresh).
        if rms <= noise + noise // 2 + self.lsb // 1000 and self._quiet_ms >= th[_T_OFF_MS]:
            g = self.gravity
            self.set_gravity(g[0] + (w[W_MEAN] - g[0]) // 4, g[1] + (w[W_MEAN + 1] - g[1]) // 4,
                             g[2] + (w[W_MEAN + 2] - g[2]) // 4)

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
            o = (start & (RING_SAMPLES - 1)) * SAMPLE_BYTES
            self._ref_from(_s16(buf, o), _s16(buf, o + 2), _s16(buf, o + 4))
        w = self.win
        sav = 0
        i = start & (RING_SAMPLES - 1)
        left = n
        while left:
            m = RING_SAMPLES - i
            if m > left:
                m = left
            an[_A_OFF] = i * SAMPLE_BYTES
            an[_A_N] = m
            _analyse(buf, an)
            w[_S_SUM] += an[_A_SUM]
            w[_S_SUM + 1] += an[_A_SUM + 1]
            w[_S_SUM + 2] += an[_A_SUM + 2]
            w[_S_SQ] += an[_A_SQ] >> 5
            w[_S_SQ + 1] += an[_A_SQ + 1] >> 5
            w[_S_SQ + 2] += an[_A_SQ + 2] >> 5
            if an[_A_PEAK] > w[_S_PEAK]:
                w[_S_PEAK] = an[_A_PEAK]
            sav += an[_A_AV]
            left -= m
            i = 0
        w[_S_N] += n
        self.win_av += sav
        self._step(sav // n, n * 1000 // self.rate, n)

    def _step(self, a, dt_ms, n):
        # One burst: a = mean vertical acceleration (counts, + is up along gravity's opposite... the
        # sign only matters relative to the start of the trip), dt_ms = burst duration.
        st = self.state
        if st == lwproto.MOTION_UNCALIBRATED:
            return
        mag = a if a >= 0 else -a
        th = self.th
        a_on = th[_T_ON]
        a_off = th[_T_OFF]
        on_ms = th[_T_ON_MS]
        off_ms = th[_T_OFF_MS]
        v_min = th[_T_VMIN]
        if st == lwproto.MOTION_REST:
            # v and x integrate from the first burst over a_on through short lulls (a jump's
            # acceleration crosses zero at its fastest: restarting there would double its speed);
            # only off_ms of quiet starts them afresh.
            if mag > a_on:
                if self._quiet_ms >= off_ms:
                    th[_T_X] = 0
                    self.moved = False
                self._quiet_ms = 0
                self._on_ms += dt_ms
            else:
                self._on_ms = 0
                if self._quiet_ms >= off_ms:
                    return
                self._quiet_ms += dt_ms
                if self._quiet_ms >= off_ms:
                    self.v = 0  # at rest: nothing carried to the next start
                    return
            self.v += a * n
            self._displace(n)
            if self._on_ms >= on_ms:
                self.trip_dir = 1 if a > 0 else -1
                self._set(lwproto.MOTION_ACCELERATING)
                self._trip_ms = self._on_ms
                self.v_peak = 0
                self._quiet_ms = 0
            return
        self.v += a * n
        if st == lwproto.MOTION_ACCELERATING:
            self._displace(n)  # a jump turns within 0.3 s: what it integrates after that is not travel
        self._trip_ms += dt_ms
        self.run_ms += dt_ms
        av = self.v if self.v >= 0 else -self.v
        if av > self.v_peak:
            self.v_peak = av
        along = a * self.trip_dir
        if st == lwproto.MOTION_ACCELERATING:
            if along < -a_on:
                self._set(lwproto.MOTION_DECELERATING)
                self._quiet_ms = 0
            elif mag < a_off:
                self._quiet_ms += dt_ms
                if self._quiet_ms >= off_ms:
                    if self.v_peak < v_min or not self.moved:
                        self._end(False)  # a bump (a jump, a door slam), not a run
                    else:
                        self._set(lwproto.MOTION_MOVING)
            else:
                self._quiet_ms = 0
        elif st == lwproto.MOTION_MOVING:
            if along < -a_on:
                self._set(lwproto.MOTION_DECELERATING)
                self._quiet_ms = 0
            elif av < v_min // 2:
                self._end(True)  # velocity gone without a clear deceleration
        elif st == lwproto.MOTION_DECELERATING:
            if mag < a_off:
                self._quiet_ms += dt_ms
                if self._quiet_ms >= off_ms:
                    self._end(self.v_peak >= v_min and self.moved)  # a jump bounces, never leaves
            else:
                self._quiet_ms = 0
        if self._trip_ms > 300000:
            self._end(False)  # no run lasts 5 minutes: integration drift, start over at rest

    def _displace(self, n):
        # Displacement only until it proves the run (then it stops growing: ints stay small). The
        # limit, _MOVED_MM in counts * samples^2, is v_min (50 mm/s) for _MOVED_MM / 50 s.
        if not self.moved:
            th = self.th
            x = th[_T_X] + self.v * n
            th[_T_X] = x
            lim = th[_T_VMIN] * self.rate // 50 * _MOVED_MM
            if x >= lim or -x >= lim:
                self.moved = True

    def _set(self, st):
        self.state = st
        self.changed = True

    def _end(self, trip):
        if trip:
            self.trips += 1
        self.v = 0
        self._on_ms = 0
        self._quiet_ms = self.th[_T_OFF_MS]  # the next burst over a_on starts afresh
        self._set(lwproto.MOTION_REST)

    def window(self):
        """Close the STATS window: the W_* slots, in counts; resets it. The next window's reference
        is this window's mean, so the sums stay small."""
        w = self.win
        n = w[_S_N]
        out = self._out
        if n:
            for i in range(3):
                mean_d = w[_S_SUM + i] // n
                ex2 = (w[_S_SQ + i] // n) << 5
                var = ex2 - mean_d * mean_d
                out[W_MEAN + i] = self.ref[i] + mean_d
                out[W_RMS + i] = isqrt(var) if var > 0 else 0
            out[W_PEAK] = w[_S_PEAK]
            self._ref_from(out[W_MEAN], out[W_MEAN + 1], out[W_MEAN + 2])
        out[W_COUNT] = n
        for i in range(_S_LEN):
            w[i] = 0
        self.win_av = 0
        return out


def _s16(b, o):
    v = b[o] | (b[o + 1] << 8)
    return v - 0x10000 if v & 0x8000 else v
