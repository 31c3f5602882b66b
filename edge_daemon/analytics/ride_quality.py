"""Ride quality and car kinematics of one trip from raw accelerometer counts (ISO 18738-1 method).

Steps, each a pure function so it can be tested alone:
1. `car_frame`: sensor counts -> car axes in m/s^2, z up with gravity removed (the board's
   calibration gravity vector gives "up"; without it the trip mean is gravity, because a car
   that starts and ends at rest has zero mean acceleration).
2. `lowpass`: 10 Hz low-pass for acceleration and jerk (ISO 18738-1), zero phase so peaks keep
   their time; `jerk`: slope of a 0.5 s least-squares line through the low-passed acceleration.
3. `speed_profile`: integral of vertical acceleration, with the linear drift removed that
   brings the speed back to zero at the stop; `constant_speed_region`: where |v| is near peak.
4. Wk (z) / Wd (x, y) weighting over the whole record (so filter transients die before the
   plateau), then `peak_to_peak` over the constant-speed region for z and over the whole run for
   x and y (GB/T 10058-2009 3.3.5): half-cycle peaks between zero crossings, peak-to-peak = sum
   of two adjacent peaks; max and A95 (95 % of values at or below).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from . import dsp
from .config import AnalyticsConfig
from .dsp import butter2_lowpass_sos, sosfilt_columns, sosfilt_zi
from .weighting import Weighting, apply_weighting

__all__ = [
    "G_MPS2",
    "RideQuality",
    "TripKinematics",
    "analyse_trip",
    "car_frame",
    "constant_speed_region",
    "still_m",
    "still_mps",
    "half_cycle_peaks",
    "jerk",
    "lowpass",
    "max_and_a95",
    "peak_to_peak",
    "speed_profile",
]

G_MPS2 = 9.80665
_MG_PER_MPS2 = 1000.0 / G_MPS2


@dataclass(frozen=True, slots=True)
class RideQuality:
    """ISO 18738-1 figures of one trip. The vertical vibration fields are None when the trip had
    no constant-speed plateau long enough to judge (short trips), never a made-up number."""

    z_max_pp_mg: float | None
    z_a95_pp_mg: float | None
    x_max_pp_mg: float | None
    x_a95_pp_mg: float | None
    y_max_pp_mg: float | None
    y_a95_pp_mg: float | None
    accel_max_mps2: float | None
    jerk_max_mps3: float | None

    def to_message(self) -> dict:
        return {
            name: _round(getattr(self, name), 2)
            for name in (
                "z_max_pp_mg",
                "z_a95_pp_mg",
                "x_max_pp_mg",
                "x_a95_pp_mg",
                "y_max_pp_mg",
                "y_a95_pp_mg",
                "accel_max_mps2",
                "jerk_max_mps3",
            )
        }

    def over_limits(self, config: AnalyticsConfig) -> list[str]:
        """Names of the figures above their GB/T 10058 limit (empty when within or unknown)."""
        limits = {
            "z_max_pp_mg": config.vib_z_max_pp_limit_mg,
            "z_a95_pp_mg": config.vib_z_a95_pp_limit_mg,
            "x_max_pp_mg": config.vib_xy_max_pp_limit_mg,
            "x_a95_pp_mg": config.vib_xy_a95_pp_limit_mg,
            "y_max_pp_mg": config.vib_xy_max_pp_limit_mg,
            "y_a95_pp_mg": config.vib_xy_a95_pp_limit_mg,
        }
        return [k for k, lim in limits.items() if (v := getattr(self, k)) is not None and v > lim]

    @property
    def judged(self) -> bool:
        """True when there are vibration figures to hold against the limits."""
        return any(v is not None for v in (self.z_a95_pp_mg, self.x_a95_pp_mg, self.y_a95_pp_mg))


# Below this integrated speed the car did not move, for a sensor with no noise of its own.
STILL_MPS = 0.05


def still_mps(noise_mg: float, rate_hz: float, duration_s: float) -> float:
    """The speed below which a car "did not move", scaled with the sensor's noise (issue 16): white
    noise of ``noise_mg`` rms integrates to a random walk of noise * sqrt(duration / rate) m/s (the
    drift removal pins both ends, so its peak stays below that); twice that, never less than STILL_MPS."""
    if noise_mg <= 0 or rate_hz <= 0:
        return STILL_MPS
    return max(STILL_MPS, 2.0 * noise_mg * 1e-3 * G_MPS2 * math.sqrt(max(duration_s, 0.0) / rate_hz))


# A movement shorter than a trip that travels less than this, rest to rest, never left its level: a
# passenger's jump bounces the car on its ropes and brings it back (to within 5 mm as measured here);
# a re-levelling the board sees moves the car more than 50 mm (accel_on_mg must hold for motion_on_ms).
STILL_M = 0.010


def still_m(noise_mg: float, rate_hz: float, duration_s: float) -> float:
    """The rest-to-rest travel below which the car did not move, scaled with the noise: white noise
    of ``noise_mg`` rms integrated twice, with the speed pinned to zero at both ends (the drift
    removal), wanders noise * sqrt(duration^3 / (12 rate)) m rms; four times that (a day of jumps
    never reaches it), never less than STILL_M."""
    if noise_mg <= 0 or rate_hz <= 0:
        return STILL_M
    wander = noise_mg * 1e-3 * G_MPS2 * math.sqrt(max(duration_s, 0.0) ** 3 / (12.0 * rate_hz))
    return max(STILL_M, 4.0 * wander)


@dataclass(frozen=True, slots=True)
class TripKinematics:
    """Vertical motion of the car over the analysed window (t = t0 + i / rate_hz)."""

    t0: float
    rate_hz: float
    speed_mps: np.ndarray  # signed, up positive
    accel_mps2: np.ndarray  # 10 Hz low-passed, up positive
    still_mps: float = STILL_MPS  # below this |speed| the car did not move (scaled with the noise)

    @property
    def peak_speed_mps(self) -> float:
        return float(np.max(np.abs(self.speed_mps))) if len(self.speed_mps) else 0.0

    @property
    def direction(self) -> int:
        """+1 up, -1 down, 0 when the car hardly moved."""
        if not len(self.speed_mps):
            return 0
        v = self.speed_mps[int(np.argmax(np.abs(self.speed_mps)))]
        return 0 if abs(v) < self.still_mps else (1 if v > 0 else -1)

    def index(self, ts: float) -> int:
        return int(np.clip(round((ts - self.t0) * self.rate_hz), 0, len(self.speed_mps) - 1))

    def displacement_m(self, ts_from: float, ts_to: float) -> float:
        """Signed travel between two times inside the window (trapezoid rule)."""
        i, j = self.index(ts_from), self.index(ts_to)
        if j <= i:
            return 0.0
        return float(np.trapezoid(self.speed_mps[i : j + 1], dx=1.0 / self.rate_hz))


def car_frame(samples: np.ndarray, lsb_per_g: int, gravity: tuple[int, int, int] | None) -> np.ndarray:
    """(n, 3) counts on sensor axes -> (n, 3) m/s^2 as [x, y, z]: z up, gravity removed.

    x and y are the sensor axes least aligned with gravity, made orthogonal to it: the kit does
    not know which way the car doors face, so horizontal axes are reported in sensor terms.
    """
    s = np.asarray(samples, dtype=float)
    g = np.asarray(gravity, dtype=float) if gravity is not None else s.mean(axis=0)
    g_norm = float(np.linalg.norm(g))
    if g_norm < lsb_per_g / 2:  # a broken calibration: the trip's mean is gravity (see above)
        g = s.mean(axis=0)
        g_norm = float(np.linalg.norm(g))
    if g_norm < lsb_per_g / 2:
        raise ValueError(f"no gravity in the record (|g| = {g_norm:.0f} counts, 1 g = {lsb_per_g})")
    up = g / g_norm
    e = np.eye(3)[int(np.argmin(np.abs(up)))]
    ex = e - np.dot(e, up) * up
    ex /= np.linalg.norm(ex)
    # up x ex written out: np.cross costs ~25 us of argument handling for three products
    (u0, u1, u2), (x0, x1, x2) = up.tolist(), ex.tolist()
    ey = np.array([u1 * x2 - u2 * x1, u2 * x0 - u0 * x2, u0 * x1 - u1 * x0])
    out = np.empty((len(s), 3))
    np.matmul(s, ex, out=out[:, 0])
    np.matmul(s, ey, out=out[:, 1])
    np.matmul(s, up, out=out[:, 2])
    out[:, 2] -= g_norm
    out *= G_MPS2 / lsb_per_g
    return out


@functools.lru_cache(maxsize=32)
def _butter_sos(cutoff_hz: float, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """(sos, steady-state initial conditions per unit input): designed once per rate (scipy's
    sosfiltfilt solved for the initial conditions on every call, as costly as the filtering)."""
    sos = butter2_lowpass_sos(cutoff_hz, rate_hz)
    sos.flags.writeable = False
    zi = sosfilt_zi(sos)
    zi.flags.writeable = False
    return sos, zi


def lowpass(x: np.ndarray, rate_hz: float, cutoff_hz: float) -> np.ndarray:
    """2-pole Butterworth run forwards and backwards (zero phase): scipy's
    `sosfiltfilt(sos, x, padlen=min(len(x) - 1, 21))` step for step (odd extension, forward pass
    started in steady state, backward pass likewise), with the initial conditions cached."""
    x = np.asarray(x, dtype=float)
    if cutoff_hz >= 0.45 * rate_hz or len(x) < 16:
        return x
    sos, zi = _butter_sos(float(cutoff_hz), float(rate_hz))
    edge = min(len(x) - 1, 3 * 7)
    if dsp.fast is not None:  # the same steps in one C call (extension, both passes)
        y = np.empty(len(x) + 2 * edge)
        dsp.fast.lowpass_filtfilt(sos, zi, np.ascontiguousarray(x), y)
        return y[edge:-edge]
    y = np.concatenate((2 * x[:1] - x[edge:0:-1], x, 2 * x[-1:] - x[-2 : -(edge + 2) : -1]))
    sosfilt_columns(sos, y, (zi * y[:1])[np.newaxis])
    y = y[::-1].copy()
    sosfilt_columns(sos, y, (zi * y[:1])[np.newaxis])
    return y[::-1][edge:-edge]


def jerk(accel: np.ndarray, rate_hz: float, window_s: float) -> np.ndarray:
    """Slope (units/s) of the least-squares line over a centred `window_s` window; NaN at the edges."""
    n = max(3, round(window_s * rate_hz) | 1)  # odd, centred
    out = np.full(len(accel), np.nan)
    if len(accel) < n:
        return out
    # slope_i = sum_k (k - c) a[i+k] / (dt sum_k (k - c)^2), from running sums instead of a
    # correlation: O(n) rather than O(n x window); windows by slicing (no index arrays)
    a = np.asarray(accel, dtype=float)
    m = len(a)
    c = (n - 1) / 2
    if dsp.fast is not None:  # the same sums and products in one C pass
        dsp.fast.ls_slope(np.ascontiguousarray(a), n, float(rate_hz), float(np.sum((np.arange(n) - c) ** 2)), out)
        return out
    s0 = np.zeros(m + 1)
    np.cumsum(a, out=s0[1:])
    s1 = np.zeros(m + 1)
    np.cumsum(np.arange(m) * a, out=s1[1:])
    win0 = s0[n:] - s0[: m - n + 1]
    win1 = s1[n:] - s1[: m - n + 1] - np.arange(m - n + 1) * win0  # sum_k k a[i+k]
    out[n // 2 : m - n // 2] = (win1 - c * win0) * rate_hz / np.sum((np.arange(n) - c) ** 2)
    return out


def speed_profile(accel: np.ndarray, rate_hz: float) -> np.ndarray:
    """Speed from a rest-to-rest acceleration record: the integration drift is removed linearly
    so the speed is zero at both ends, as it is for a car between two stops."""
    if not len(accel):
        return np.zeros(0)
    v = np.empty(len(accel))
    v[0] = 0.0
    mid = accel[1:] + accel[:-1]
    mid /= 2
    np.cumsum(mid, out=v[1:])
    v[1:] /= rate_hz
    v -= np.linspace(0.0, v[-1], len(v))
    return v


def constant_speed_region(
    speed: np.ndarray, accel_slow: np.ndarray, fraction: float, accel_fraction: float, still: float = STILL_MPS
) -> slice | None:
    """Longest run where |v| >= fraction x peak |v| and the slow (1 Hz) acceleration is below
    accel_fraction x its peak, i.e. the jerk zones at the ends of the ramps are left out.
    None for a car that did not move."""
    mag = np.abs(speed)
    if not len(mag) or mag.max() <= still:
        return None
    a_mag = np.abs(accel_slow)
    steady = (mag >= fraction * mag.max()) & (a_mag <= accel_fraction * max(a_mag.max(), 1e-9))
    above = np.concatenate([[False], steady, [False]])
    edges = np.flatnonzero(above[1:] != above[:-1])
    starts, stops = edges[::2], edges[1::2]
    k = int(np.argmax(stops - starts))
    return slice(int(starts[k]), int(stops[k]))


def half_cycle_peaks(x: np.ndarray) -> np.ndarray:
    """Signed extreme of each stretch between zero crossings (the first and last stretches are
    partial and are dropped)."""
    x = np.asarray(x, dtype=float)
    if dsp.fast is not None:  # one C pass over the stretches, the same comparisons
        peaks = np.empty(len(x))
        return peaks[: dsp.fast.half_cycle_peaks(np.ascontiguousarray(x), peaks)]
    sign = np.signbit(x)
    cuts = np.flatnonzero(sign[1:] != sign[:-1]) + 1
    if len(cuts) < 2:
        return np.empty(0)
    # The sign bit is constant inside a stretch, so its extreme is its max (positive stretch) or
    # its min (negative one): one reduceat over all stretches instead of a Python loop per stretch.
    body, starts = x[: cuts[-1]], cuts[:-1]
    return np.where(sign[starts], np.minimum.reduceat(body, starts), np.maximum.reduceat(body, starts))


def peak_to_peak(x: np.ndarray) -> np.ndarray:
    """Sums of the magnitudes of adjacent half-cycle peaks (opposite signs by construction)."""
    p = np.abs(half_cycle_peaks(np.asarray(x, dtype=float)))
    return p[:-1] + p[1:] if len(p) >= 2 else np.empty(0)


def max_and_a95(x: np.ndarray) -> tuple[float | None, float | None]:
    """(max peak-to-peak, A95 peak-to-peak): A95 is the smallest value with >= 95 % at or below."""
    pp = peak_to_peak(x)
    if not len(pp):
        if not len(x):
            return None, None
        span = float(np.ptp(x))  # fewer than two full half-cycles: the plain peak-to-peak
        return span, span
    return float(pp.max()), _a95(pp)


def _a95(pp: np.ndarray) -> float:
    """np.quantile(pp, 0.95, method="inverted_cdf") by one partition: the same order statistic
    (numpy's index rule, float for float), without quantile's ~200 us of generic machinery."""
    index = len(pp) * 0.95 - 1
    k = math.floor(index)
    if index != k:
        k += 1
    k = min(max(k, 0), len(pp) - 1)
    return float(np.partition(pp, k)[k])


def analyse_trip(
    samples: np.ndarray,
    rate_hz: float,
    lsb_per_g: int,
    gravity: tuple[int, int, int] | None,
    t0: float,
    config: AnalyticsConfig,
    motion_span: tuple[float, float] | None = None,
    noise_mg: float = 0.0,
) -> tuple[RideQuality, TripKinematics]:
    """Ride quality and kinematics of a contiguous, rest-to-rest window of raw samples.
    ``noise_mg``: the sensor's noise at rest (STATS rms), which sets how fast is "moving".

    Vertical vibration is judged over the constant-speed region, horizontal vibration over the
    whole run (`motion_span`, start and stop times; default the whole window), as GB/T 10058-2009
    3.3.5 sets its limits: z "in the constant-speed region", x and y "while the car runs".
    """
    car = car_frame(samples, lsb_per_g, gravity)
    a_z = lowpass(car[:, 2], rate_hz, config.accel_lowpass_hz)
    v = speed_profile(a_z, rate_hz)
    j = jerk(a_z, rate_hz, config.jerk_window_s)
    a_slow = lowpass(a_z, rate_hz, 1.0)
    still = still_mps(noise_mg, rate_hz, len(a_z) / rate_hz)
    region = constant_speed_region(v, a_slow, config.constant_speed_fraction, config.constant_speed_accel_fraction,
                                   still)
    figures: dict[str, float | None] = {}
    if region is not None:
        # the 0.4 Hz band-limit of Wk/Wd rings for about a second after the ramp ends
        region = slice(min(region.stop, region.start + int(config.rq_settle_s * rate_hz)), region.stop)
    long_enough = region is not None and (region.stop - region.start) >= config.rq_min_region_s * rate_hz
    run = slice(0, len(car))
    if motion_span is not None:
        run = slice(max(0, round((motion_span[0] - t0) * rate_hz)), round((motion_span[1] - t0) * rate_hz))
    run_ok = run.stop - run.start >= 2
    # x and y share the Wd weighting: one filter call over both columns (each filtered alone)
    wd = apply_weighting(Weighting.WD, car[:, :2], rate_hz, axis=0) if run_ok else None
    for axis, col, w, where, ok in (
        ("x", 0, Weighting.WD, run, run_ok),
        ("y", 1, Weighting.WD, run, run_ok),
        ("z", 2, Weighting.WK, region, long_enough),
    ):
        mx = a95 = None
        if ok:
            full = wd[:, col] if wd is not None and col < 2 else apply_weighting(w, car[:, col], rate_hz)
            weighted = full[where] * _MG_PER_MPS2
            mx, a95 = max_and_a95(weighted)
        figures[f"{axis}_max_pp_mg"] = mx
        figures[f"{axis}_a95_pp_mg"] = a95
    finite_j = j[np.isfinite(j)]
    rq = RideQuality(
        **figures,
        accel_max_mps2=float(np.max(np.abs(a_z))) if len(a_z) else None,
        jerk_max_mps3=float(np.max(np.abs(finite_j))) if len(finite_j) else None,
    )
    return rq, TripKinematics(t0=t0, rate_hz=float(rate_hz), speed_mps=v, accel_mps2=a_z, still_mps=still)


def _round(v: float | None, nd: int) -> float | None:
    return None if v is None else round(float(v), nd)
