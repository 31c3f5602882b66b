"""Filter primitives for ride quality, without scipy: second-order-section designs (bilinear
transform, 2-pole Butterworth, steady-state initial conditions) and `sosfilt_columns`, which runs
them over the columns of an array in place.

scipy is not imported here, nor anywhere in the daemon: `import scipy.signal` alone costs ~75 MB of
resident memory and over a second of start-up, more than the rest of a 10-board daemon (issue 17;
benchmarks/daemon.py `rss_mb`, `start_s`). The designs are closed forms of the same maths as
scipy's `bilinear`, `butter(2, ..., output="sos")` and `sosfilt_zi` and agree with them to a few
ulps (tests/test_dsp.py); the filtering is scipy.signal.sosfilt's arithmetic bit for bit, in the
optional C kernel (`_fastdsp.c`, built by setup.py) or, without it, in a plain Python loop: ~40 ms
per signal of an 8800-sample trip, some 400x the kernel, so a few hundred ms per trip; enough for
a few cars, and `pip install` builds the kernel wherever a C compiler is present.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["ACCELERATED", "bilinear_section", "butter2_lowpass_sos", "fast", "sosfilt_columns", "sosfilt_zi"]

try:  # optional C kernel, built by setup.py (edge_daemon/analytics/_fastdsp.c)
    from liftwatch.edge_daemon.analytics import _fastdsp
except ImportError:  # not built: the Python loop gives the same results, slower
    _fastdsp = None

ACCELERATED = _fastdsp is not None
# The kernels themselves for ride_quality's other loops (filtfilt, least-squares slope, half-cycle
# peaks); None without the build. ride_quality keeps the numpy form of each beside it, and tests
# compare the two bit for bit.
fast = _fastdsp


def bilinear_section(b: Sequence[float], a: Sequence[float], rate_hz: float) -> list[float]:
    """One analog section b(s)/a(s) (coefficients of s^2, s, 1) as a digital sos row
    [b0, b1, b2, 1, a1, a2]: s = 2 fs (1 - 1/z) / (1 + 1/z), normalised to a0 = 1."""
    k = 2.0 * rate_hz
    kk = k * k

    def mapped(p: Sequence[float]) -> tuple[float, float, float]:
        return p[0] * kk + p[1] * k + p[2], 2.0 * (p[2] - p[0] * kk), p[0] * kk - p[1] * k + p[2]

    bz, az = mapped(b), mapped(a)
    return [bz[0] / az[0], bz[1] / az[0], bz[2] / az[0], 1.0, az[1] / az[0], az[2] / az[0]]


def butter2_lowpass_sos(cutoff_hz: float, rate_hz: float) -> np.ndarray:
    """scipy.signal.butter(2, cutoff_hz, fs=rate_hz, output="sos"): the analog prototype
    wc^2 / (s^2 + sqrt(2) wc s + wc^2) with wc pre-warped so the digital corner is at cutoff_hz."""
    wc = 2.0 * rate_hz * math.tan(math.pi * cutoff_hz / rate_hz)
    return np.array([bilinear_section([0.0, 0.0, wc * wc], [1.0, math.sqrt(2.0) * wc, wc * wc], rate_hz)])


def sosfilt_zi(sos: np.ndarray) -> np.ndarray:
    """scipy.signal.sosfilt_zi: the (n_sections, 2) state of a cascade that has seen a unit step
    forever, so filtering from x[0] * zi starts without a transient. A section fed a constant x in
    steady state puts out g x (g its DC gain), and its transposed direct form II state is then
    z0 = (g - b0) x, z1 = (b2 - a2 g) x; x is the gain of the sections before it."""
    zi = np.empty((len(sos), 2))
    x = 1.0
    for s, (b0, b1, b2, a0, a1, a2) in enumerate(np.asarray(sos, dtype=float)):
        b0, b1, b2, a1, a2 = b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0
        g = (b0 + b1 + b2) / (1.0 + a1 + a2)
        zi[s] = (g - b0) * x, (b2 - a2 * g) * x
        x *= g
    return zi


def sosfilt_columns(sos: np.ndarray, x: np.ndarray, zi: np.ndarray, accelerated: bool = ACCELERATED) -> None:
    """Filter `x` (n_samples,) or (n_samples, n_signals), C-contiguous float64, in place along axis 0.

    `zi` (n_signals, n_sections, 2) is the filter state on entry (zeros: at rest) and is updated.
    """
    if accelerated:
        _fastdsp.sosfilt(sos, x, zi)
        return
    signals = 1 if x.ndim == 1 else x.shape[1]
    if zi.shape != (signals, len(sos), 2):
        raise ValueError(f"zi must be (n_signals, n_sections, 2) = {(signals, len(sos), 2)}, got {zi.shape}")
    rows = np.asarray(sos, dtype=float).tolist()
    columns = x.reshape(len(x), signals)
    for i in range(signals):
        state = zi[i].tolist()
        out = columns[:, i].tolist()
        for n, x_cur in enumerate(out):  # direct form II transposed, scipy's operations in its order
            for z, (b0, b1, b2, _, a1, a2) in zip(state, rows):
                x_new = b0 * x_cur + z[0]
                z[0] = b1 * x_cur - a1 * x_new + z[1]
                z[1] = b2 * x_cur - a2 * x_new
                x_cur = x_new
            out[n] = x_cur
        columns[:, i] = out
        zi[i] = state
