"""The ride-quality speed-ups compute exactly what the straightforward forms compute."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from liftwatch.edge_daemon.analytics import dsp
from liftwatch.edge_daemon.analytics.ride_quality import (
    _a95,
    half_cycle_peaks,
    jerk,
    lowpass,
)
from liftwatch.edge_daemon.analytics.weighting import (
    Weighting,
    apply_weighting,
    weighting_sos,
)
from scipy import signal


def _peaks_by_loop(x: np.ndarray) -> np.ndarray:
    sign = np.signbit(x)
    cuts = np.flatnonzero(sign[1:] != sign[:-1]) + 1
    return np.asarray([x[a:b][int(np.argmax(np.abs(x[a:b])))] for a, b in itertools.pairwise(cuts)])


@pytest.mark.parametrize("seed", range(5))
def test_half_cycle_peaks_equal_the_per_stretch_loop(seed):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=3000) + np.sin(np.arange(3000) / 7.0), 1)  # exact zeros and ties
    x[100:110] = -0.0
    got = half_cycle_peaks(x)
    want = _peaks_by_loop(x)
    assert len(want) > 100
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_half_cycle_peaks_without_two_crossings_are_empty():
    assert half_cycle_peaks(np.array([1.0, 2.0, 3.0])).size == 0
    assert half_cycle_peaks(np.array([1.0, -2.0, -3.0])).size == 0


@pytest.mark.parametrize(("n", "cutoff"), [(16, 10.0), (22, 10.0), (23, 1.0), (8000, 10.0), (8000, 1.0)])
def test_lowpass_equals_scipy_sosfiltfilt(n, cutoff):
    """Same steps as scipy's; the design (tests/test_dsp.py) differs from scipy's by a few ulps,
    which the filtering carries to at most 1e-11 of the signal's scale."""
    x = np.random.default_rng(n).normal(size=n).cumsum()
    sos = signal.butter(2, cutoff, fs=400.0, output="sos")
    want = signal.sosfiltfilt(sos, x, padlen=min(n - 1, 21))
    got = lowpass(x, 400.0, cutoff)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-11 * np.abs(x).max())
    np.testing.assert_array_equal(lowpass(x, 400.0, cutoff), got)  # the cached design is not altered


def test_weighting_of_two_columns_equals_each_column_alone():
    car = np.random.default_rng(3).normal(size=(4000, 3))
    both = apply_weighting(Weighting.WD, car[:, :2], 400.0, axis=0)
    for col in range(2):
        np.testing.assert_array_equal(both[:, col], signal.sosfilt(weighting_sos(Weighting.WD, 400.0), car[:, col]))


@pytest.mark.parametrize("shape", [(5000,), (5000, 1), (5000, 2), (5000, 3), (0, 2), (1,)])
@pytest.mark.parametrize("w", list(Weighting))
def test_c_filter_kernel_equals_scipy(shape, w):
    """The optional C kernel (_fastdsp) and scipy's sosfilt give the same bits, state included."""
    if not dsp.ACCELERATED:
        pytest.skip("_fastdsp not built (python setup.py build_ext --inplace)")
    rng = np.random.default_rng(len(shape) * 10 + shape[-1])
    x = rng.normal(size=shape).cumsum(axis=0)
    sos = weighting_sos(w, 400.0)
    signals = 1 if len(shape) == 1 else shape[1]
    zi0 = rng.normal(size=(signals, len(sos), 2))
    got, got_zi = x.copy(), zi0.copy()
    dsp.sosfilt_columns(sos, got, got_zi, accelerated=True)
    want, want_zi = x.copy(), zi0.copy()
    dsp.sosfilt_columns(sos, want, want_zi, accelerated=False)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_zi, want_zi)
    cols = x.reshape(len(x), signals)
    for col in range(signals if len(x) else 0):  # and each column is what scipy makes of it alone
        alone, _ = signal.sosfilt(sos, cols[:, col], zi=zi0[col])
        np.testing.assert_array_equal(got.reshape(len(x), signals)[:, col], alone)


def test_c_filter_kernel_refuses_wrong_arrays():
    if not dsp.ACCELERATED:
        pytest.skip("_fastdsp not built")
    sos = weighting_sos(Weighting.WK, 400.0)
    with pytest.raises(TypeError):
        dsp.sosfilt_columns(sos, np.zeros(10, dtype=np.float32), np.zeros((1, len(sos), 2)))
    with pytest.raises(ValueError):
        dsp.sosfilt_columns(sos, np.zeros(10), np.zeros((2, len(sos), 2)))  # state for two signals
    with pytest.raises(ValueError, match="contiguous"):
        dsp.sosfilt_columns(sos, np.zeros((10, 4))[:, :2], np.zeros((2, len(sos), 2)))  # not contiguous



def test_c_kernels_release_every_array_they_took_when_a_later_one_is_refused():
    if not dsp.ACCELERATED:
        pytest.skip("_fastdsp not built")
    from array import array

    from liftwatch.edge_daemon.analytics import _fastdsp

    def taken(buf: array) -> bool:
        try:  # an array.array cannot grow while a buffer view of it is held
            buf.append(0.0)
        except BufferError:
            return True
        buf.pop()
        return False

    sos, zi_unit, bad = array("d", [0.0] * 12), array("d", [0.0] * 4), np.zeros(14, dtype=np.float32)
    x, out = array("d", [1.0] * 10), array("d", [0.0] * 10)
    calls = [
        (_fastdsp.lowpass_filtfilt, (sos, zi_unit, x, bad), (sos, zi_unit, x)),
        (_fastdsp.sosfilt, (sos, x, bad), (sos, x)),
        (_fastdsp.ls_slope, (x, 3, 400.0, 2.0, bad), (x,)),
        (_fastdsp.half_cycle_peaks, (x, bad), (x,)),
    ]
    for kernel, args, held_before in calls:
        with pytest.raises(TypeError, match="must be float64"):
            kernel(*args)
        assert not any(taken(buf) for buf in held_before), kernel.__name__
    _fastdsp.half_cycle_peaks(x, out)  # and after a call that succeeds
    assert not taken(x) and not taken(out)


@pytest.mark.parametrize("n", [1, 2, 19, 20, 21, 40, 100, 101, 1000, 2999])
def test_a95_equals_numpy_inverted_cdf_quantile(n):
    rng = np.random.default_rng(n)
    for pp in (rng.normal(size=n), np.round(rng.normal(size=n), 1)):  # ties too
        assert _a95(pp.copy()) == np.quantile(pp, 0.95, method="inverted_cdf")


def _with_and_without_kernels(monkeypatch, fn):
    """fn() computed with the C kernels and with the numpy forms beside them."""
    got = fn()
    monkeypatch.setattr(dsp, "fast", None)
    want = fn()
    monkeypatch.undo()
    return got, want


@pytest.mark.parametrize("n", [16, 17, 22, 23, 400, 8801])
def test_c_kernels_equal_the_numpy_forms_of_lowpass_jerk_and_peaks(monkeypatch, n):
    if not dsp.ACCELERATED:
        pytest.skip("_fastdsp not built")
    rng = np.random.default_rng(n)
    x = rng.normal(size=n).cumsum() + np.round(rng.normal(size=n), 1)
    cols = np.column_stack([x, -x, x]).copy()  # non-contiguous columns, as the car frame gives them
    for cutoff in (10.0, 1.0):
        got, want = _with_and_without_kernels(monkeypatch, lambda cutoff=cutoff: lowpass(cols[:, 1], 400.0, cutoff))
        np.testing.assert_array_equal(got, want)
    got, want = _with_and_without_kernels(monkeypatch, lambda: jerk(cols[:, 2], 400, 0.5))
    np.testing.assert_array_equal(got, want)  # NaN edges included
    assert np.isnan(got).sum() == (n if n < 201 else 200)
    wavy = np.sin(np.arange(n) / 5.0) + np.round(rng.normal(size=n), 1) * 0.3
    wavy[n // 3 : n // 3 + 5] = -0.0  # exact zeros with the sign bit set
    got, want = _with_and_without_kernels(monkeypatch, lambda: half_cycle_peaks(wavy))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    with_nan = wavy.copy()
    with_nan[n // 2] = np.nan
    got, want = _with_and_without_kernels(monkeypatch, lambda: half_cycle_peaks(with_nan))
    np.testing.assert_array_equal(got, want)


def test_analyse_trip_gives_the_same_bits_with_and_without_the_c_kernels(monkeypatch):
    if not dsp.ACCELERATED:
        pytest.skip("_fastdsp not built")
    from support.analytics_synth import cosine_trip, to_counts
    from liftwatch.edge_daemon.analytics.config import AnalyticsConfig
    from liftwatch.edge_daemon.analytics.ride_quality import analyse_trip

    t, a, _ = cosine_trip(400.0, -1.0, 2.0, 6.0)
    rng = np.random.default_rng(5)
    car = np.column_stack([rng.normal(0, 0.05, len(t)), rng.normal(0, 0.05, len(t)), a + 0.1 * np.sin(7 * t)])
    counts, gravity = to_counts(car, 16384, tilt_deg=8.0)

    def run():
        return analyse_trip(counts, 400, 16384, gravity, 100.0, AnalyticsConfig(), (100.5, 110.5))

    (rq, kin), (rq0, kin0) = _with_and_without_kernels(monkeypatch, run)
    assert rq == rq0 and rq.judged
    np.testing.assert_array_equal(kin.speed_mps, kin0.speed_mps)
    np.testing.assert_array_equal(kin.accel_mps2, kin0.accel_mps2)
