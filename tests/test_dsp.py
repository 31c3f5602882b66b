"""The daemon's filter designs and its Python filtering path against scipy, which the daemon itself
never imports (issue 17: `import scipy.signal` cost ~75 MB of a 10-board daemon's 126 MB)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from liftwatch.edge_daemon.analytics import dsp
from liftwatch.edge_daemon.analytics import weighting as wt
from liftwatch.edge_daemon.analytics.weighting import Weighting, apply_weighting, weighting_sos
from scipy import signal

RATES_HZ = (25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0)
CUTOFFS_HZ = (0.5, 1.0, 5.0, 10.0, 20.0)
BUTTER = [(fc, fs) for fs in RATES_HZ for fc in CUTOFFS_HZ if fc < 0.45 * fs]


def _scipy_weighting_sos(w: Weighting, fs: float) -> np.ndarray:
    """The design as the daemon made it with scipy.signal.bilinear before issue 17."""
    p = wt._PARAMS[w]
    rows = []
    for i, (b, a) in enumerate(wt._sections(w, lambda f: 2 * fs * math.tan(math.pi * f / fs) if math.isfinite(f) else f)):
        if i == 1 and p.f2 >= 0.45 * fs:
            continue
        bz, az = signal.bilinear(b, a, fs)
        rows.append(np.concatenate([bz, az]))
    return np.vstack(rows)


@pytest.mark.parametrize(("cutoff_hz", "rate_hz"), BUTTER)
def test_butterworth_design_is_scipys_to_a_few_ulps(cutoff_hz, rate_hz):
    np.testing.assert_array_max_ulp(
        dsp.butter2_lowpass_sos(cutoff_hz, rate_hz), signal.butter(2, cutoff_hz, fs=rate_hz, output="sos"), maxulp=4
    )


@pytest.mark.filterwarnings("ignore::scipy.signal.BadCoefficients")  # scipy's own complaint about its bilinear
@pytest.mark.parametrize("rate_hz", RATES_HZ[1:])
@pytest.mark.parametrize("w", list(Weighting))
def test_weighting_design_is_scipys_bilinear_to_an_ulp_of_each_section(w, rate_hz):
    want = _scipy_weighting_sos(w, rate_hz)
    got = weighting_sos(w, rate_hz)
    assert got.shape == want.shape
    scale = np.abs(want).max(axis=1, keepdims=True)  # zeros in a row are matched to that row's scale
    assert np.max(np.abs(got - want) / scale) <= 2 * np.finfo(float).eps


@pytest.mark.parametrize(("cutoff_hz", "rate_hz"), BUTTER)
def test_steady_state_is_scipys_and_starts_a_constant_without_transient(cutoff_hz, rate_hz):
    sos = signal.butter(2, cutoff_hz, fs=rate_hz, output="sos")
    zi = dsp.sosfilt_zi(sos)
    # scipy solves the same ill-conditioned system (1 + a1 + a2 -> 0 at low cutoff/rate) its own way
    np.testing.assert_allclose(zi, signal.sosfilt_zi(sos), rtol=1e-10)
    y = np.full(200, 3.0)
    dsp.sosfilt_columns(sos, y, (zi * 3.0)[np.newaxis], accelerated=False)
    np.testing.assert_allclose(y, 3.0, rtol=1e-9)


@pytest.mark.parametrize("w", list(Weighting))
def test_steady_state_of_a_weighting_cascade_is_scipys(w):
    sos = weighting_sos(w, 400.0)
    np.testing.assert_allclose(dsp.sosfilt_zi(sos), signal.sosfilt_zi(sos), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("shape", [(3000,), (3000, 1), (3000, 3), (0, 2), (1,)])
def test_python_filter_loop_is_scipys_sosfilt_bit_for_bit(shape):
    """The path without the C kernel: same operations in scipy's order, so the same bits."""
    rng = np.random.default_rng(shape[0] + len(shape))
    x = rng.normal(size=shape).cumsum(axis=0)
    sos = weighting_sos(Weighting.WK, 400.0)
    signals = 1 if len(shape) == 1 else shape[1]
    zi0 = rng.normal(size=(signals, len(sos), 2))
    got, got_zi = x.copy(), zi0.copy()
    dsp.sosfilt_columns(sos, got, got_zi, accelerated=False)
    cols = x.reshape(len(x), signals)
    for col in range(signals if len(x) else 0):
        alone, zf = signal.sosfilt(sos, cols[:, col], zi=zi0[col])
        np.testing.assert_array_equal(got.reshape(len(x), signals)[:, col], alone)
        np.testing.assert_array_equal(got_zi[col], zf)


def test_python_filter_loop_refuses_a_state_for_other_signals():
    sos = weighting_sos(Weighting.WD, 400.0)
    with pytest.raises(ValueError, match="n_signals, n_sections, 2"):
        dsp.sosfilt_columns(sos, np.zeros((10, 2)), np.zeros((1, len(sos), 2)), accelerated=False)


def test_weighting_along_any_axis_filters_each_signal_alone():
    x = np.random.default_rng(5).normal(size=(2, 600, 11))  # 22 signals along axis 1: three kernel batches
    got = apply_weighting(Weighting.WK, x, 400.0, axis=1)
    assert got.shape == x.shape
    for i in range(2):
        for j in range(11):
            np.testing.assert_array_equal(got[i, :, j], apply_weighting(Weighting.WK, x[i, :, j], 400.0))


def test_the_daemon_never_imports_scipy():
    """What `liftwatch run` loads, then every filter it designs and runs: no scipy module appears."""
    probe = (
        "import sys, numpy as np\n"
        "import liftwatch.edge_daemon.cli, liftwatch.edge_daemon.daemon, liftwatch.edge_daemon.service\n"
        "import liftwatch.edge_daemon.status.plane\n"
        "from liftwatch.edge_daemon.analytics.ride_quality import lowpass\n"
        "from liftwatch.edge_daemon.analytics.weighting import Weighting, apply_weighting\n"
        "x = np.random.default_rng(1).normal(size=(4000, 3))\n"
        "lowpass(x[:, 2], 400.0, 10.0)\n"
        "[apply_weighting(w, x, 400.0, axis=0) for w in Weighting]\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
