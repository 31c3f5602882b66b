"""Ride quality and kinematics on synthetic signals with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.analytics_synth import G, cosine_trip, to_counts
from liftwatch.edge_daemon.analytics.config import AnalyticsConfig
from liftwatch.edge_daemon.analytics.ride_quality import (
    analyse_trip,
    still_mps,
    car_frame,
    half_cycle_peaks,
    jerk,
    lowpass,
    max_and_a95,
    peak_to_peak,
    speed_profile,
)
from liftwatch.edge_daemon.analytics.weighting import Weighting, analog_response

RATE = 400
CFG = AnalyticsConfig()


def test_peak_to_peak_of_a_sine_is_twice_its_amplitude():
    t = np.arange(0, 3, 1 / RATE)
    pp = peak_to_peak(7.0 * np.sin(2 * np.pi * 5 * t + 0.3))
    assert len(pp) == 28  # 30 half cycles in 3 s, the partial first and last are dropped
    np.testing.assert_allclose(pp, 14.0, rtol=1e-3)


def test_half_cycle_peaks_alternate_in_sign_and_take_the_extreme():
    x = np.array([0.5, 2.0, 1.0, -0.5, -3.0, -1.0, 0.2, 4.0, 0.1, -1.0])
    np.testing.assert_array_equal(half_cycle_peaks(x), [-3.0, 4.0])


def test_max_and_a95_on_a_signal_with_one_burst():
    """40 cycles at amplitude 1 and one cycle at amplitude 5: A95 ignores the burst, max sees it."""
    t = np.arange(0, 41 / 4, 1 / RATE)
    amp = np.where((t > 5) & (t < 5.25), 5.0, 1.0)
    mx, a95 = max_and_a95(amp * np.sin(2 * np.pi * 4 * t))
    assert mx == pytest.approx(10.0, rel=1e-2)
    assert a95 == pytest.approx(2.0, rel=1e-2)


def test_max_and_a95_without_zero_crossings_fall_back_to_the_plain_span():
    assert max_and_a95(np.linspace(1.0, 3.0, 100)) == (pytest.approx(2.0), pytest.approx(2.0))
    assert max_and_a95(np.empty(0)) == (None, None)


def test_jerk_is_the_least_squares_slope_over_half_a_second():
    t = np.arange(0, 2, 1 / RATE)
    a = 0.8 * t + 0.05 * np.sin(2 * np.pi * 50 * t)  # 50 Hz ripple averages out in 0.5 s
    j = jerk(a, RATE, 0.5)
    assert np.isnan(j[:50]).all() and np.isnan(j[-50:]).all()
    np.testing.assert_allclose(j[np.isfinite(j)], 0.8, atol=0.02)


def test_lowpass_passes_ride_motion_and_removes_30_hz():
    t = np.arange(0, 4, 1 / RATE)
    y = lowpass(np.sin(2 * np.pi * 1 * t) + np.sin(2 * np.pi * 30 * t), RATE, 10.0)
    mid = slice(RATE, 3 * RATE)
    np.testing.assert_allclose(y[mid], np.sin(2 * np.pi * t[mid]), atol=0.03)


def test_speed_profile_recovers_the_trip_and_removes_drift():
    _t, a, v = cosine_trip(RATE, 1.6, 2.0, 5.0)
    got = speed_profile(a + 0.02, RATE)  # a 2 mg bias, as from a slightly wrong gravity
    np.testing.assert_allclose(got, v, atol=0.01)
    assert got[0] == 0.0 and abs(got[-1]) < 1e-9


@pytest.mark.parametrize("tilt", [0.0, 25.0])
def test_car_frame_removes_gravity_whatever_the_mounting_tilt(tilt):
    car = np.zeros((RATE, 3))
    car[:, 2] = 0.5
    car[:, 0] = 0.1
    counts, grav = to_counts(car, 16384, tilt_deg=tilt)
    got = car_frame(counts, 16384, grav)
    assert got[:, 2].mean() == pytest.approx(0.5, abs=0.002)
    assert np.hypot(got[:, 0], got[:, 1]).mean() == pytest.approx(0.1, abs=0.002)


def test_car_frame_refuses_a_record_without_gravity():
    with pytest.raises(ValueError, match="no gravity"):
        car_frame(np.zeros((10, 3), np.int16), 16384, (0, 0, 0))


def test_car_frame_without_calibration_uses_the_trip_mean_as_gravity():
    _, a, _ = cosine_trip(RATE, 1.0, 2.0, 3.0)
    car = np.zeros((len(a), 3))
    car[:, 2] = a
    counts, grav = to_counts(car, 16384, tilt_deg=15)
    np.testing.assert_allclose(car_frame(counts, 16384, None)[:, 2], car_frame(counts, 16384, grav)[:, 2], atol=0.01)


def _trip_counts(vib_z_mg=0.0, vib_x_mg=0.0, f_hz=5.0, v_max=1.0, tilt=10.0):
    t, a, _v = cosine_trip(RATE, v_max, 2.5, 8.0)
    car = np.zeros((len(t), 3))
    car[:, 2] = a + vib_z_mg * G / 1000 * np.sin(2 * np.pi * f_hz * t)
    car[:, 0] = vib_x_mg * G / 1000 * np.sin(2 * np.pi * f_hz * t)
    counts, grav = to_counts(car, 16384, tilt_deg=tilt)
    return t, counts, grav


def test_analyse_trip_known_vertical_vibration_gives_wk_weighted_peak_to_peak():
    _, counts, grav = _trip_counts(vib_z_mg=10.0, f_hz=5.0)
    rq, kin = analyse_trip(counts, RATE, 16384, grav, 0.0, CFG)
    want = 2 * 10.0 * float(analog_response(Weighting.WK, np.array([5.0]))[0])
    assert rq.z_a95_pp_mg == pytest.approx(want, rel=0.04)
    assert rq.z_max_pp_mg == pytest.approx(want, rel=0.06)
    assert rq.x_a95_pp_mg < 0.5 and rq.y_a95_pp_mg < 0.5
    assert kin.peak_speed_mps == pytest.approx(1.0, abs=0.01)
    assert kin.direction == 1


def test_analyse_trip_horizontal_vibration_uses_wd():
    _, counts, grav = _trip_counts(vib_x_mg=8.0, f_hz=2.0)
    rq, _ = analyse_trip(counts, RATE, 16384, grav, 0.0, CFG)
    want = 2 * 8.0 * float(analog_response(Weighting.WD, np.array([2.0]))[0])
    horizontal = max(rq.x_a95_pp_mg, rq.y_a95_pp_mg)
    assert horizontal == pytest.approx(want, rel=0.05)
    assert rq.z_a95_pp_mg < 1.0


def test_analyse_trip_acceleration_and_jerk_of_a_clean_down_trip():
    t, counts, grav = _trip_counts(v_max=-1.75)
    rq, kin = analyse_trip(counts, RATE, 16384, grav, 100.0, CFG)
    assert rq.accel_max_mps2 == pytest.approx(1.75 * math.pi / 5.0, rel=0.02)
    # the jerk of a cosine ramp jumps at the ramp ends, so the 0.5 s line fit sees less than the
    # analytic peak (1.38 m/s^3): compare with an independent fit on the true acceleration
    _, a_true, _ = cosine_trip(RATE, -1.75, 2.5, 8.0)
    half = RATE // 4
    fits = [np.polyfit(np.arange(-half, half + 1) / RATE, a_true[i - half : i + half + 1], 1)[0]
            for i in range(half, len(a_true) - half, 4)]
    assert rq.jerk_max_mps3 == pytest.approx(max(np.abs(fits)), rel=0.03)
    assert rq.jerk_max_mps3 < 1.75 * math.pi**2 / (2 * 2.5**2)
    assert kin.direction == -1
    assert kin.displacement_m(100.0, 100.0 + t[-1]) == pytest.approx(-1.75 * 10.5, rel=0.01)
    assert rq.z_a95_pp_mg < 2.0  # nothing but quantisation on the plateau


def test_short_trip_without_a_plateau_gives_horizontal_figures_only():
    t, a, _ = cosine_trip(RATE, 0.5, 2.0, 0.2)
    car = np.zeros((len(t), 3))
    car[:, 2] = a
    car[:, 1] = 5.0 * G / 1000 * np.sin(2 * np.pi * 4.0 * t)
    counts, grav = to_counts(car, 16384)
    rq, _ = analyse_trip(counts, RATE, 16384, grav, 0.0, CFG, motion_span=(0.5, t[-1] - 0.5))
    assert rq.z_a95_pp_mg is None and rq.z_max_pp_mg is None
    want = 2 * 5.0 * float(analog_response(Weighting.WD, np.array([4.0]))[0])
    assert max(rq.x_a95_pp_mg, rq.y_a95_pp_mg) == pytest.approx(want, rel=0.05)
    assert rq.judged and rq.accel_max_mps2 is not None


def test_horizontal_vibration_counts_only_while_the_car_runs():
    t, a, _ = cosine_trip(RATE, 1.0, 2.5, 4.0, rest_s=3.0)
    car = np.zeros((len(t), 3))
    car[:, 2] = a
    car[:, 0] = np.where(t < 2.0, 30.0 * G / 1000, 0.0) * np.sin(2 * np.pi * 5.0 * t)  # door bang at rest
    counts, grav = to_counts(car, 16384)
    rq, _ = analyse_trip(counts, RATE, 16384, grav, 0.0, CFG, motion_span=(3.0, t[-1] - 3.0))
    assert max(rq.x_max_pp_mg, rq.y_max_pp_mg) < 2.0


def test_over_limits_names_the_gbt10058_figures_exceeded():
    _, counts, grav = _trip_counts(vib_z_mg=12.0)
    rq, _ = analyse_trip(counts, RATE, 16384, grav, 0.0, CFG)
    assert rq.over_limits(CFG) == ["z_a95_pp_mg"]  # 25 mg A95 > 20.4; max pp 25 < 30.6


def test_what_moving_means_scales_with_the_sensor_noise():
    """Issue 16: a car standing still for 30 s on a 35 mg rms sensor (the most calibration accepts).
    Judged as a quiet sensor, the integrated noise looks like a crawl (a direction, a constant-speed
    region); judged with the noise its STATS at rest reported, it did not move."""
    assert still_mps(0.0, 400, 30) == still_mps(1.0, 400, 30) == 0.05
    assert still_mps(35.0, 400, 30) == pytest.approx(2 * 0.035 * 9.80665 * math.sqrt(30 / 400))
    rng = np.random.default_rng(4)
    counts = np.round(rng.normal(0.0, 35 * 16.384, (30 * 400, 3)) + [0.0, 0.0, 16384.0]).astype(np.int64)
    _, quiet = analyse_trip(counts, 400, 16384, (0, 0, 16384), 0.0, CFG)
    rq, noisy = analyse_trip(counts, 400, 16384, (0, 0, 16384), 0.0, CFG, noise_mg=35.0)
    assert quiet.direction != 0 and quiet.peak_speed_mps > 0.05
    assert noisy.direction == 0 and noisy.still_mps > quiet.peak_speed_mps
    assert rq.z_a95_pp_mg is None  # no constant-speed region in a car that did not move
