"""A trip's vibration trace for the status page: raw samples kept cheaply per trip, weighted and
decimated only when someone opens the trace."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from liftwatch.edge_daemon.analytics.common import ts_ms
from liftwatch.edge_daemon.analytics.config import AnalyticsConfig
from liftwatch.edge_daemon.analytics.ride_quality import (
    G_MPS2,
    car_frame,
    constant_speed_region,
    lowpass,
    speed_profile,
)
from liftwatch.edge_daemon.analytics.trips import Trip
from liftwatch.edge_daemon.analytics.weighting import Weighting, apply_weighting
from liftwatch.edge_daemon.observations import VibBlock

__all__ = ["TRACE_POINTS", "TraceSource", "TripTrace", "cut_trace"]

_MG_PER_MPS2 = 1000.0 / G_MPS2
# Points per series sent to the browser: a 30 s trip at 400 Hz is 12 000 samples; min/max
# buckets keep every peak visible at screen resolution.
TRACE_POINTS = 1600


@dataclass(frozen=True, slots=True, eq=False)
class TripTrace:
    """Vibration of one trip in car axes (x, y horizontal, z up), gravity removed, in mg.

    `raw_mg` is the car-frame acceleration, `weighted_mg` the ISO 2631-1 weighted one (Wd on x
    and y, Wk on z) that the ride-quality figures are taken from; `region_s` is the
    constant-speed plateau they are judged over (None if the trip had none). Gaps in the VIB
    stream are bridged linearly and listed in `gaps_s` so the page can mark them.
    """

    car: str
    trip_id: int
    t0: float
    rate_hz: float
    raw_mg: np.ndarray = field(repr=False)  # (n, 3) float32
    weighted_mg: np.ndarray = field(repr=False)  # (n, 3) float32
    region_s: tuple[float, float] | None
    gaps_s: tuple[tuple[float, float], ...]
    limits_mg: Mapping[str, float]
    trip_start_s: float  # trip start and end relative to t0 (the trace has a margin around them)
    trip_end_s: float

    def to_json(self, max_points: int = TRACE_POINTS) -> dict[str, Any]:
        """Decimated for drawing: every bucket keeps its min and max so no peak disappears."""
        n = len(self.raw_mg)
        idx = _minmax_index(np.vstack([self.raw_mg.T, self.weighted_mg.T]), max_points)
        t = (idx / self.rate_hz).round(4)
        names = ("x", "y", "z")
        return {
            "car": self.car,
            "trip_id": self.trip_id,
            "t0": self.t0,
            "rate_hz": self.rate_hz,
            "samples": n,
            "t_s": t.tolist(),
            "raw_mg": {a: _rounded(self.raw_mg[idx, i]) for i, a in enumerate(names)},
            "weighted_mg": {a: _rounded(self.weighted_mg[idx, i]) for i, a in enumerate(names)},
            "region_s": list(self.region_s) if self.region_s else None,
            "gaps_s": [list(g) for g in self.gaps_s],
            "limits_mg": dict(self.limits_mg),
            "trip_s": [self.trip_start_s, self.trip_end_s],
        }


def _judged_region(z_mps2: np.ndarray, rate: float, cfg: AnalyticsConfig) -> tuple[float, float] | None:
    """The plateau the ride-quality figures are judged over, found as analyse_trip() finds it.

    Only for shading the trace: if the analytics' region rules change shape, the page shows no
    shading rather than a wrong one.
    """
    a_z = lowpass(z_mps2, rate, cfg.accel_lowpass_hz)
    try:
        plateau = constant_speed_region(
            speed_profile(a_z, rate), lowpass(a_z, rate, 1.0),
            cfg.constant_speed_fraction, cfg.constant_speed_accel_fraction,
        )
    except (TypeError, AttributeError):
        return None
    if plateau is None:
        return None
    start = min(plateau.stop, plateau.start + int(getattr(cfg, "rq_settle_s", 0.0) * rate))
    if plateau.stop - start < cfg.rq_min_region_s * rate:
        return None
    return (round(start / rate, 3), round(plateau.stop / rate, 3))


def _rounded(x: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in x]


def _minmax_index(series: np.ndarray, max_points: int) -> np.ndarray:
    """Sample indexes keeping, per bucket, the min and max of every series (in time order)."""
    n = series.shape[1]
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, max_points // (2 * len(series)))
    edges = np.linspace(0, n, buckets + 1).astype(int)
    keep: set[int] = set()
    for lo, hi in pairwise(edges):
        if hi <= lo:
            continue
        chunk = series[:, lo:hi]
        keep.update((lo + chunk.argmin(axis=1)).tolist())
        keep.update((lo + chunk.argmax(axis=1)).tolist())
    return np.array(sorted(keep))


@dataclass(slots=True, eq=False)
class TraceSource:
    """A trip's raw samples, kept as int16 counts (48 kB for a 20 s trip at 400 Hz).

    The weighting filters run only when someone looks at the trace (`trace()`, then cached):
    on a Pi they take tens of milliseconds per trip, which the daemon's loop should not spend
    on every trip of every car for a page nobody may be watching.
    """

    car: str
    trip_id: int
    t0: float
    rate_hz: float
    lsb_per_g: int
    gravity: tuple[int, int, int] | None
    samples: np.ndarray
    gaps_s: tuple[tuple[float, float], ...]
    config: AnalyticsConfig
    trip_start_s: float
    trip_end_s: float
    cached: TripTrace | None = None
    failed: bool = False

    def trace(self) -> TripTrace | None:
        if self.cached is None and not self.failed:
            try:
                self.cached = self._compute()
            except ValueError:  # zero gravity vector: a dead sensor, nothing to draw
                self.failed = True
        return self.cached

    def _compute(self) -> TripTrace:
        cfg, rate = self.config, self.rate_hz
        car_mps2 = car_frame(self.samples, self.lsb_per_g, self.gravity)
        weighted = np.column_stack([
            apply_weighting(Weighting.WD, car_mps2[:, 0], rate),
            apply_weighting(Weighting.WD, car_mps2[:, 1], rate),
            apply_weighting(Weighting.WK, car_mps2[:, 2], rate),
        ])
        return TripTrace(
            car=self.car,
            trip_id=self.trip_id,
            t0=self.t0,
            rate_hz=rate,
            raw_mg=(car_mps2 * _MG_PER_MPS2).astype(np.float32),
            weighted_mg=(weighted * _MG_PER_MPS2).astype(np.float32),
            region_s=_judged_region(car_mps2[:, 2], rate, cfg),
            gaps_s=self.gaps_s,
            limits_mg={
                "z_max_pp": cfg.vib_z_max_pp_limit_mg,
                "z_a95_pp": cfg.vib_z_a95_pp_limit_mg,
                "xy_max_pp": cfg.vib_xy_max_pp_limit_mg,
                "xy_a95_pp": cfg.vib_xy_a95_pp_limit_mg,
            },
            trip_start_s=self.trip_start_s,
            trip_end_s=self.trip_end_s,
        )


def cut_trace(car: str, trip: Trip, vib: Iterable[VibBlock], cfg: AnalyticsConfig) -> TraceSource | None:
    """Cut the trip's raw samples out of the VIB buffer (cheap: copies, no filtering)."""
    t_from, t_to = trip.start_ts - 0.5, trip.end_ts + cfg.vib_post_s
    blocks = [b for b in vib if b.ts_end > t_from and b.ts_first < t_to]
    if not blocks:
        return None
    rate = blocks[0].rate_hz
    blocks = [b for b in blocks if b.rate_hz == rate and b.lsb_per_g == blocks[0].lsb_per_g]
    t0 = blocks[0].ts_first
    parts: list[np.ndarray] = []
    gaps: list[tuple[float, float]] = []
    n_total = 0
    for b in blocks:
        start = round((b.ts_first - t0) * rate)
        if start > n_total and parts:
            # Bridge lost samples linearly so the weighting filter runs over the right time base.
            missing = start - n_total
            last, nxt = parts[-1][-1].astype(float), np.asarray(b.samples[0], dtype=float)
            frac = (np.arange(1, missing + 1) / (missing + 1))[:, None]
            parts.append(np.round(last + (nxt - last) * frac).astype(np.int16))
            gaps.append((round(n_total / rate, 3), round(start / rate, 3)))
            n_total = start
        elif start < n_total:
            skip = n_total - start  # overlap (re-anchored clock): keep what we have
            if skip >= len(b.samples):
                continue
            parts.append(np.asarray(b.samples[skip:], dtype=np.int16))
            n_total += len(b.samples) - skip
            continue
        parts.append(np.asarray(b.samples, dtype=np.int16))
        n_total += len(b.samples)
    return TraceSource(
        car=car, trip_id=ts_ms(trip.start_ts), t0=t0, rate_hz=float(rate), lsb_per_g=blocks[0].lsb_per_g,
        gravity=blocks[-1].gravity, samples=np.vstack(parts), gaps_s=tuple(gaps), config=cfg,
        trip_start_s=round(trip.start_ts - t0, 3), trip_end_s=round(trip.end_ts - t0, 3),
    )
