"""Synthetic lift trips and observation streams with known answers, shared by the analytics tests."""

from __future__ import annotations

import math

import numpy as np
from liftwatch.edge_daemon.observations import VibBlock

G = 9.80665


def cosine_trip(rate_hz: float, v_max: float, ramp_s: float, cruise_s: float, rest_s: float = 0.5):
    """Vertical acceleration (m/s^2, up positive for v_max > 0) of a rest-ramp-cruise-ramp-rest trip.

    Cosine speed ramps: a_max = |v_max| pi / (2 ramp_s), jerk_max = |v_max| pi^2 / (2 ramp_s^2),
    travel = |v_max| (ramp_s + cruise_s). Returns (t, a, v).
    """
    dt = 1.0 / rate_hz
    t = np.arange(0.0, 2 * rest_s + 2 * ramp_s + cruise_s, dt)
    v = np.zeros_like(t)
    a = np.zeros_like(t)
    t1, t2, t3 = rest_s, rest_s + ramp_s, rest_s + ramp_s + cruise_s
    up = (t >= t1) & (t < t2)
    v[up] = v_max / 2 * (1 - np.cos(math.pi * (t[up] - t1) / ramp_s))
    a[up] = v_max * math.pi / (2 * ramp_s) * np.sin(math.pi * (t[up] - t1) / ramp_s)
    cr = (t >= t2) & (t < t3)
    v[cr] = v_max
    dn = (t >= t3) & (t < t3 + ramp_s)
    v[dn] = v_max / 2 * (1 + np.cos(math.pi * (t[dn] - t3) / ramp_s))
    a[dn] = -v_max * math.pi / (2 * ramp_s) * np.sin(math.pi * (t[dn] - t3) / ramp_s)
    return t, a, v


def to_counts(a_xyz_mps2: np.ndarray, lsb_per_g: int, tilt_deg: float = 0.0) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Car-frame acceleration [x, y, z-up] (m/s^2, gravity excluded) -> int16 sensor counts with
    gravity, the sensor tilted by `tilt_deg` about its x axis. Returns (counts, gravity counts)."""
    th = math.radians(tilt_deg)
    # columns: car x, y, up expressed in sensor axes
    rot = np.array([[1, 0, 0], [0, math.cos(th), -math.sin(th)], [0, math.sin(th), math.cos(th)]])
    specific = a_xyz_mps2.copy()
    specific[:, 2] += G
    sensor = specific @ rot.T * (lsb_per_g / G)
    g = rot @ np.array([0.0, 0.0, G]) * (lsb_per_g / G)
    return np.round(sensor).astype(np.int16), tuple(round(c) for c in g)


def vib_blocks(counts: np.ndarray, ts_first: float, rate_hz: int, lsb_per_g: int, gravity, block: int = 100):
    """Split counts into consecutive VibBlocks of `block` samples."""
    out = []
    for i in range(0, len(counts), block):
        out.append(VibBlock(ts_first + i / rate_hz, rate_hz, lsb_per_g, counts[i : i + block], gravity))
    return out


class CarStream:
    """Builds an observation stream of one car with known answers.

    Landings every `floor_height_m`; landing k's vane spans k*H +- vane/2; the car reference is
    midway between its zone sensors (zone_up above). Observations are returned sorted the way a
    session delivers them (VIB blocks when complete, i.e. by their end time).
    """

    def __init__(self, config, t0: float = 1_764_000_000.0, floor_height_m: float = 3.0, rate_hz: int = 400,
                 lsb_per_g: int = 16384, tilt_deg: float = 10.0):
        from liftwatch.edge_daemon.observations import InputsChanged

        self.cfg = config
        self.t = t0
        self.h = floor_height_m
        self.rate = rate_hz
        self.lsb = lsb_per_g
        self.tilt = tilt_deg
        self.pos_m = 0.0  # car reference height
        self.door_closed = True
        self.presence = False
        self.inspection = False
        self.alarm = False
        self.mains = None  # the mains-sense input: None = not wired (reads 0)
        self.zones_dead = False  # door-zone sensors disconnected: never covered
        self.obs: list = []
        self._last_inputs = None
        self._InputsChanged = InputsChanged
        self.emit_inputs()

    # -- inputs ------------------------------------------------------------------------
    def zones(self, y_m: float) -> tuple[bool, bool]:
        if self.zones_dead:
            return False, False
        half_l = self.cfg.vane_length_mm / 2000
        half_d = self.cfg.zone_sensor_spacing_mm / 2000
        k = round(y_m / self.h)
        rel = y_m - k * self.h
        return abs(rel + half_d) <= half_l, abs(rel - half_d) <= half_l

    def inputs_word(self, y_m=None) -> int:
        up, dn = self.zones(self.pos_m if y_m is None else y_m)
        return (self.door_closed * 1 | up * 2 | dn * 4 | self.presence * 8 | self.inspection * 16 | self.alarm * 32
                | bool(self.mains) * 64)

    def emit_inputs(self, ts=None, y_m=None):
        word = self.inputs_word(y_m)
        if word != self._last_inputs:
            changed = word ^ (self._last_inputs or 0)
            self.obs.append(self._InputsChanged(self.t if ts is None else ts, word, changed))
            self._last_inputs = word

    def wait(self, s: float):
        self.t += s
        return self

    def set(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)
        self.emit_inputs()
        return self

    def door_cycle(self, open_s: float = 4.0, reopen=()):
        """Open, (close+reopen after each gap in `reopen`), close."""
        self.set(door_closed=False).wait(open_s)
        for gap in reopen:
            self.set(door_closed=True).wait(gap)
            self.set(door_closed=False).wait(open_s)
        return self.set(door_closed=True)

    # -- motion ------------------------------------------------------------------------
    def trip(self, floors: int, v_max: float = 1.0, ramp_s: float = 2.5, offset_mm: float = 0.0,
             vib_mg=None, vib=True, door_open_during=False, gap_at=None, to_m=None):
        """Move `floors` landings (negative = down), stopping offset_mm past the landing; or, with
        `to_m`, to that height (the sign of `floors` must give the direction)."""
        from liftwatch.edge_daemon.observations import MotionChanged

        sgn = 1.0 if floors > 0 else -1.0
        target = (round(self.pos_m / self.h) + floors) * self.h + sgn * offset_mm / 1000  # overshoot > 0
        if to_m is not None:
            target = to_m
        dist = abs(target - self.pos_m)
        cruise = max(0.0, abs(dist) / v_max - ramp_s)
        vpk = v_max if cruise > 0 else abs(dist) / ramp_s
        t, a, v = cosine_trip(self.rate, sgn * vpk, ramp_s, cruise, rest_s=0.5)
        y = self.pos_m + np.concatenate([[0], np.cumsum((v[1:] + v[:-1]) / 2) / self.rate])
        t0 = self.t - 0.5  # rest_s before the motion starts
        start, cruise_at, decel_at, stop = 0.5, 0.5 + ramp_s, 0.5 + ramp_s + cruise, 0.5 + 2 * ramp_s + cruise
        self.obs.append(MotionChanged(t0 + start, 1))
        self.obs.append(MotionChanged(t0 + cruise_at, 2))
        self.obs.append(MotionChanged(t0 + decel_at, 3))
        door_opens = cruise_at + 0.5 if door_open_during else None
        for i in range(1, len(t)):
            if door_opens is not None and t[i - 1] < door_opens <= t[i]:
                self.door_closed = False
                self.emit_inputs(ts=t0 + t[i], y_m=y[i])
            up, dn = self.zones(y[i])
            if (up, dn) != self.zones(y[i - 1]):
                self.emit_inputs(ts=t0 + t[i], y_m=y[i])
        self.obs.append(MotionChanged(t0 + stop, 0))
        if vib:
            A = np.zeros((len(t), 3))
            A[:, 2] = a
            if vib_mg is not None:
                A[:, 2] += vib_mg(t) * G / 1000  # vertical vibration (mg)
            counts, grav = to_counts(A, self.lsb, self.tilt)
            blocks = vib_blocks(counts, t0, self.rate, self.lsb, grav)
            if gap_at is not None:
                from dataclasses import replace
                blocks[gap_at] = replace(blocks[gap_at], gap_before=40)
            self.obs.extend(blocks)
        self.pos_m = float(y[-1])
        self.t = t0 + t[-1]
        return self

    def jump(self, peak_mg: float = 300.0, jump_s: float = 0.3, noise_mg: float = 0.0, seed: int = 0, times: int = 1):
        """A passenger jumps in the car at rest: two cycles of vertical force that bounce the car on
        its ropes and bring it back (hil_tests/sim/car.py's jump), seen by the board as a short
        motion (150 ms after it began, until 300 ms of quiet) and streamed as VIB from 1 s before it
        to 1 s after; ``times`` jumps back to back; ``noise_mg`` of white noise on every axis."""
        from liftwatch.edge_daemon.observations import MotionChanged

        t = np.arange(0.0, 1.0 + times * jump_s + 1.0, 1.0 / self.rate)
        u = np.clip((t - 1.0) / jump_s, 0.0, times)
        A = np.zeros((len(t), 3))
        A[:, 2] = peak_mg / 2 * (np.cos(2 * math.pi * u) - np.cos(4 * math.pi * u)) * G / 1000
        A += np.random.default_rng(seed).normal(0.0, noise_mg * G / 1000, A.shape)
        t0 = self.t - 1.0
        self.obs.append(MotionChanged(self.t + 0.15, 1))
        self.obs.append(MotionChanged(self.t + times * jump_s + 0.3, 0))
        counts, grav = to_counts(A, self.lsb, self.tilt)
        self.obs.extend(vib_blocks(counts, t0, self.rate, self.lsb, grav))
        self.t = t0 + t[-1]
        return self

    def add(self, *obs):
        self.obs.extend(obs)
        return self

    def sorted(self):
        return sorted(self.obs, key=lambda o: getattr(o, "ts_end", None) or o.ts)

    def run(self, engine, tick_s: float = 1.0, flush: bool = True, before_feed=None):
        """Feed everything, ticking every `tick_s` of stream time; returns all outputs.
        ``before_feed(observation)`` sees each observation before the engine does (as the status
        page does in the daemon's CarPipeline)."""
        out = []
        obs = self.sorted()
        next_tick = obs[0].ts
        for o in obs:
            ts = getattr(o, "ts_end", None) or o.ts
            while next_tick < ts:
                out += engine.tick(next_tick)
                next_tick += tick_s
            if before_feed is not None:
                before_feed(o)
            out += engine.feed(o)
        while next_tick < self.t:
            out += engine.tick(next_tick)
            next_tick += tick_s
        if flush:
            out += engine.flush(self.t)
        return out
