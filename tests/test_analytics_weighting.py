"""ISO 2631-1 Wk / Wd weightings against the standard's tabulated values (Table 3, x1000)."""

from __future__ import annotations

import numpy as np
import pytest
from liftwatch.edge_daemon.analytics.weighting import (
    Weighting,
    analog_response,
    apply_weighting,
    weighting_sos,
)
from scipy import signal

# One-third-octave bands -10 (0.1 Hz) .. 26 (400 Hz); the standard evaluates at the exact
# frequencies 10^(n/10). Values x1000 as printed in ISO 2631-1:1997 Table 3.
BAND_HZ = 10 ** (np.arange(-10, 27) / 10)
WK_X1000 = [31.2, 48.6, 79.0, 121, 182, 263, 352, 418, 459, 477, 482, 484, 494, 531, 631, 804, 967, 1039,
            1054, 1036, 988, 902, 768, 636, 513, 405, 314, 246, 186, 132, 88.7, 54.0, 28.5, 15.2, 7.90, 3.98, 1.95]
WD_X1000 = [62.4, 97.3, 158, 243, 365, 530, 713, 853, 944, 992, 1011, 1008, 968, 890, 776, 642, 512, 409,
            323, 253, 212, 161, 125, 100, 80.0, 63.2, 49.4, 38.8, 29.5, 21.1, 14.1, 8.63, 4.55, 2.43, 1.26, 0.64, 0.31]
TABLE = {Weighting.WK: np.array(WK_X1000) / 1000, Weighting.WD: np.array(WD_X1000) / 1000}
# Wd at 10 Hz is printed as 212 but the standard's own filter definition and both neighbours
# (253 at 8 Hz, 161 at 12.5 Hz) give 202; the entry is checked with a wider tolerance.
WIDE = {(Weighting.WD, 10.0): 0.06}


def _tolerance(w: Weighting, f: float) -> float:
    return WIDE.get((w, round(f, 1)), 0.03)  # 3 significant figures in the table


@pytest.mark.parametrize("w", list(Weighting))
def test_analog_weighting_matches_table(w):
    got = analog_response(w, BAND_HZ)
    for f, g, want in zip(BAND_HZ, got, TABLE[w]):
        assert g == pytest.approx(want, rel=_tolerance(w, f)), f"{w.value} at {f:.3g} Hz"


@pytest.mark.parametrize("rate_hz", [100, 400, 1600])
@pytest.mark.parametrize("w", list(Weighting))
def test_digital_weighting_follows_the_analog_curve_below_an_eighth_of_the_rate(w, rate_hz):
    """Pre-warped bilinear sections: within 4 % of the analog weighting up to rate/8 (50 Hz at
    400 Hz, the LIS3DH rate), hence within table tolerance + 4 % of the printed values."""
    band = BAND_HZ <= min(rate_hz / 8, 50.0)
    _, h = signal.sosfreqz(weighting_sos(w, rate_hz), worN=BAND_HZ[band], fs=rate_hz)
    np.testing.assert_allclose(np.abs(h), analog_response(w, BAND_HZ[band]), rtol=0.04)
    for f, g, want in zip(BAND_HZ[band], np.abs(h), TABLE[w][band]):
        assert g == pytest.approx(want, rel=_tolerance(w, f) + 0.04), f"{w.value} at {f:.3g} Hz, fs {rate_hz}"


def test_weighting_of_a_sine_scales_its_amplitude_by_the_table_value():
    rate = 400
    t = np.arange(0, 20, 1 / rate)
    y = apply_weighting(Weighting.WK, np.sin(2 * np.pi * 6.3 * t), rate)
    steady = y[len(y) // 2 :]
    assert steady.max() == pytest.approx(1.054, rel=0.02)


def test_wk_rejects_gravity_and_slow_drift():
    rate = 400
    t = np.arange(0, 30, 1 / rate)
    y = apply_weighting(Weighting.WK, 9.81 + 0.01 * t, rate)
    assert np.abs(y[-rate:]).max() < 0.01
