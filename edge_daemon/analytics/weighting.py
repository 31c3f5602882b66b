"""ISO 2631-1 (Annex A) frequency weightings Wk (vertical) and Wd (horizontal), as second-order sections.

ISO 18738-1 judges lift vibration on Wk-weighted vertical and Wd-weighted horizontal acceleration.
Each weighting is a cascade of second-order analog sections (band-limiting high- and low-pass,
acceleration-velocity transition, upward step). The digital filter maps every section with the
bilinear transform pre-warped at that section's own corner, so the response stays on the analog
curve up to a quarter of the sample rate; tests compare both against the standard's table.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass

import numpy as np

from .dsp import bilinear_section, sosfilt_columns

__all__ = ["Weighting", "analog_response", "apply_weighting", "weighting_sos"]

_Q_BUTTERWORTH = 1 / math.sqrt(2)


class Weighting(enum.Enum):
    WK = "Wk"  # vertical (z), seated/standing comfort
    WD = "Wd"  # horizontal (x, y)


@dataclass(frozen=True, slots=True)
class _Params:
    f1: float  # band-limit high-pass corner, Hz
    f2: float  # band-limit low-pass corner, Hz
    f3: float  # a-v transition numerator corner (inf: none)
    f4: float  # a-v transition pole
    q4: float
    f5: float  # upward step zero pair (inf: none)
    q5: float
    f6: float  # upward step pole pair (inf: none)
    q6: float


# ISO 2631-1:1997 Table A.2 (also ISO 8041 Table 3.1 parameter table)
_PARAMS = {
    Weighting.WK: _Params(0.4, 100.0, 12.5, 12.5, 0.63, 2.37, 0.91, 3.35, 0.91),
    Weighting.WD: _Params(0.4, 100.0, 2.0, 2.0, 0.63, math.inf, 1.0, math.inf, 1.0),
}


def _sections(w: Weighting, warp) -> list[tuple[list[float], list[float]]]:
    """Analog second-order sections (b, a) in s; `warp` maps each corner frequency (Hz) to rad/s."""
    p = _PARAMS[w]
    w1, w2, w3, w4 = warp(p.f1), warp(p.f2), warp(p.f3), warp(p.f4)
    sections = [
        ([1.0, 0.0, 0.0], [1.0, w1 / _Q_BUTTERWORTH, w1 * w1]),  # high-pass
        ([0.0, 0.0, w2 * w2], [1.0, w2 / _Q_BUTTERWORTH, w2 * w2]),  # low-pass
        # a-v transition: (1 + s/w3) / (1 + s/(Q4 w4) + s^2/w4^2), scaled to monic denominator
        ([0.0, w4 * w4 / w3, w4 * w4], [1.0, w4 / p.q4, w4 * w4]),
    ]
    if math.isfinite(p.f5):
        w5, w6 = warp(p.f5), warp(p.f6)
        # upward step: (1 + s/(Q5 w5) + s^2/w5^2) / (1 + s/(Q6 w6) + s^2/w6^2) * (w5/w6)^2,
        # which is the ratio of the two monic quadratics (unity gain at high frequency)
        sections.append(([1.0, w5 / p.q5, w5 * w5], [1.0, w6 / p.q6, w6 * w6]))
    return sections


def analog_response(w: Weighting, freqs_hz: np.ndarray) -> np.ndarray:
    """|H(j 2 pi f)| of the analog weighting, the curve the standard tabulates."""
    s = 2j * np.pi * np.asarray(freqs_hz, dtype=float)
    h = np.ones_like(s)
    for b, a in _sections(w, lambda f: 2 * math.pi * f):
        h *= np.polyval(b, s) / np.polyval(a, s)
    return np.abs(h)


@functools.lru_cache(maxsize=32)
def _cached_sos(w: Weighting, rate_hz: float) -> np.ndarray:
    sos = _design_sos(w, rate_hz)
    sos.flags.writeable = False  # shared by every caller
    return sos


def weighting_sos(w: Weighting, rate_hz: float) -> np.ndarray:
    """Second-order sections of the digital weighting at `rate_hz` (designed once per rate;
    a copy: callers must not share the cached one)."""
    return _cached_sos(w, float(rate_hz)).copy()


def _design_sos(w: Weighting, rate_hz: float) -> np.ndarray:
    """The 100 Hz band-limit low-pass is left out when it lies above 0.45 x rate: the sensor's own
    anti-alias filter already limits the band there, and a bilinear pole at Nyquist is useless.
    """
    fs = float(rate_hz)

    def warp(f: float) -> float:
        if not math.isfinite(f):
            return f
        return 2 * fs * math.tan(math.pi * f / fs)

    p = _PARAMS[w]
    rows = []
    for i, (b, a) in enumerate(_sections(w, warp)):
        if i == 1 and p.f2 >= 0.45 * fs:
            continue
        rows.append(bilinear_section(b, a, fs))
    return np.array(rows)


def apply_weighting(w: Weighting, x: np.ndarray, rate_hz: float, axis: int = -1) -> np.ndarray:
    """Causal weighting of `x` (any unit) along `axis`; the weighting's phase is part of the
    standard's filter. Several signals in one array are each filtered alone, in one call."""
    sos = _cached_sos(w, float(rate_hz))
    x = np.asarray(x)
    if x.ndim == 1 or (x.ndim == 2 and axis in (0, -2) and x.shape[1] <= 8):
        y = np.array(x, dtype=float, order="C")  # a copy, filtered in place from rest
        sosfilt_columns(sos, y, np.zeros((1 if y.ndim == 1 else y.shape[1], len(sos), 2)))
        return y
    # any other layout: the signals side by side as columns, at most 8 per kernel call
    moved = np.moveaxis(np.asarray(x, dtype=float), axis, 0)
    cols = moved.reshape(len(moved), -1)
    out = np.empty_like(cols)
    for first in range(0, cols.shape[1], 8):
        y = np.ascontiguousarray(cols[:, first : first + 8])
        sosfilt_columns(sos, y, np.zeros((y.shape[1], len(sos), 2)))
        out[:, first : first + 8] = y
    return np.moveaxis(out.reshape(moved.shape), 0, axis)
