"""A traction elevator as the retrofit board on its roof feels it: S-curve trips, doors, vanes, vibration.

The car is described by a car file (``hil_tests/cars/*.toml``, see ``CarSpec.from_toml``). ``CarSim``
turns actions (trip, door cycle, wait, inspection run, ...) into ``CarSample``s: the specific force on
the sensor's axes in milli-g (gravity included, mounting orientation applied) and the input bits.
Samples are sparse where nothing changes (sample-and-hold): every ``moving_rate_hz`` while the car
moves, on every input change, and once per ``rest_record_s`` at rest. The board's simulated
accelerometer adds its own noise, so none is added here: a car file's ``[sensor] noise_mg`` is
carried in the trace header to the board's accelerometer fake (sample-and-hold at rest would turn
noise added here into a 1 Hz staircase). What real cars and parts add beyond that (``Imperfections``:
offset drift, jumping passengers, door contact bounce, door-zone chatter) is in the samples, drawn
from a random stream of its own so a car with them makes the same trips as the same car without.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from liftwatch.errors import LiftwatchError
from liftwatch.protocol.trace import (
    ALARM_BUTTON,
    DOOR_CLOSED,
    INSPECTION,
    MAINS,
    PRESENCE,
    ZONE_DN,
    ZONE_UP,
    CarSample,
    TraceCar,
)

CARS_DIR = Path(__file__).resolve().parent.parent / "cars"
G_MPS2 = 9.80665


class CarSpecError(LiftwatchError, ValueError):
    """A car file with a missing, mistyped or out-of-range parameter; names the key."""


def read_toml(path: Path, error: type[ValueError]) -> dict:
    """A car or scenario file; a syntax error becomes ``error`` naming the file and the place."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Vibration:
    """Vibration sources; amplitudes are at rated speed and scale with speed (rails) or run time (motor)."""

    rail_roughness_mg: float = 3.0  # lateral rms from guide-rail roughness (band 1-30 Hz)
    rail_joint_spacing_m: float = 5.0  # a bump at every rail joint
    rail_joint_mg: float = 6.0
    vertical_roughness_mg: float = 2.0
    motor_hz: float = 24.0  # machine/motor rotation seen through the ropes
    motor_mg: float = 1.5
    rope_hz: float = 3.2  # rope bounce
    rope_mg: float = 2.5
    roller_diameter_m: float = 0.125  # guide roller: a worn one hits once per turn
    roller_wear_mg: float = 0.0


@dataclass(frozen=True, slots=True)
class Imperfections:
    """What real sensors, contacts and passengers add to a clean car (issue 16); all off by default.

    Car-file keys: ``[sensor] noise_mg, drift_mg_per_h, drift_max_mg``, ``[passengers] jumps_per_min,
    jump_mg, jump_s``, ``[doors] bounce, bounce_ms``, ``[zones] chatter, chatter_ms``."""

    noise_mg: float = 0.0  # extra white noise rms per sensor axis (the board's accelerometer adds it)
    drift_mg_per_h: tuple[float, float, float] = (0.0, 0.0, 0.0)  # zero-g offset ramp, sensor axes
    drift_max_mg: float = 25.0  # the ramp stops at this offset (a day's temperature swing)
    jumps_per_min: float = 0.0  # passengers jumping while the door is open (Poisson rate)
    jump_mg: tuple[float, float] = (150.0, 300.0)  # peak vertical acceleration of one jump, drawn uniform
    jump_s: float = 0.3
    door_bounce: tuple[int, int] = (0, 0)  # contact bounces (back and forth) at each door edge, drawn uniform
    door_bounce_ms: float = 15.0  # all within this long after the edge
    zone_chatter: tuple[int, int] = (0, 0)  # door-zone sensor bounces at each vane edge
    zone_chatter_ms: float = 5.0


@dataclass(frozen=True, slots=True)
class CarSpec:
    """One car's parameters (SI units; suffixes say which)."""

    name: str
    floor_levels_m: tuple[float, ...]
    rated_speed_mps: float = 1.6
    accel_mps2: float = 0.8
    jerk_mps3: float = 1.0
    inspection_speed_mps: float = 0.3
    door_open_s: float = 2.5
    door_close_s: float = 3.0
    door_dwell_s: float = 4.0
    vane_length_mm: int = 250  # vane/magnet per floor, centred on the floor level
    zone_sensor_spacing_mm: int = 150  # zone_up sits this far above zone_dn; both on = level
    sensor_axes: tuple[str, str, str] = ("+x", "+y", "+z")  # car axis seen by sensor x, y, z
    sensor_tilt_deg: tuple[float, float] = (0.0, 0.0)  # mounting error about car x and y
    moving_rate_hz: int = 400
    rest_record_s: float = 1.0
    vibration: Vibration = field(default_factory=Vibration)
    imperfections: Imperfections = field(default_factory=Imperfections)
    floor_labels: tuple[str, ...] | None = None  # the landings' names, bottom to top (B1, G, 1...)

    @property
    def floors(self) -> int:
        return len(self.floor_levels_m)

    def trace_car(self) -> TraceCar:
        """This car as a simulated trace's header carries it, for the replay's analytics."""
        base = self.floor_levels_m[0]
        return TraceCar(self.name, self.rated_speed_mps, self.floors, float(self.vane_length_mm),
                        float(self.zone_sensor_spacing_mm), self.imperfections.noise_mg,
                        tuple(round(x - base, 3) for x in self.floor_levels_m), self.floor_labels)

    @classmethod
    def from_toml(cls, path: str | Path) -> CarSpec:
        """Load a car file; ``CarSpecError`` names the offending key."""
        path = Path(path)
        return cls.from_dict(read_toml(path, CarSpecError), str(path))

    @classmethod
    def from_dict(cls, doc: dict, source: str = "<car>") -> CarSpec:
        def num(table: dict, key: str, default: float, lo: float, hi: float) -> float:
            v = table.get(key, default)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise CarSpecError(f"{source}: {key} must be a number, got {v!r}")
            if not lo <= v <= hi:
                raise CarSpecError(f"{source}: {key}={v} outside [{lo}, {hi}]")
            return float(v)

        car = doc.get("car", {})
        levels = car.get("floor_levels_m")
        if not isinstance(levels, list) or len(levels) < 2 or any(not isinstance(x, (int, float)) for x in levels):
            raise CarSpecError(f"{source}: car.floor_levels_m must be a list of at least 2 numbers")
        if any(b - a < 2.0 for a, b in zip(levels, levels[1:])):
            raise CarSpecError(f"{source}: car.floor_levels_m must rise by at least 2 m per floor")
        labels = car.get("floor_labels")
        if labels is not None and (
            not isinstance(labels, list) or len(labels) != len(levels) or len(set(labels)) != len(labels)
            or not all(isinstance(x, str) and x and not any(c in x for c in " ,") for x in labels)
        ):
            raise CarSpecError(f"{source}: car.floor_labels must name each landing once (no spaces or commas)")
        doors = doc.get("doors", {})
        zones = doc.get("zones", {})
        sensor = doc.get("sensor", {})
        vib = doc.get("vibration", {})
        axes = tuple(sensor.get("axes", ["+x", "+y", "+z"]))
        if len(axes) != 3 or sorted(a[-1] for a in axes) != ["x", "y", "z"] or any(a[0] not in "+-" for a in axes):
            raise CarSpecError(f"{source}: sensor.axes must be a permutation of signed car axes, e.g. ['+y','-z','+x']")
        d = Vibration()
        people = doc.get("passengers", {})

        def numbers(table: dict, key: str, default: tuple, lo: float, hi: float, n: int = 2) -> tuple:
            v = table.get(key, list(default))
            if not isinstance(v, list) or len(v) != n:
                raise CarSpecError(f"{source}: {key} must be a list of {n} numbers, got {v!r}")
            return tuple(num({key: x}, key, 0, lo, hi) for x in v)

        def pair(table: dict, key: str, default: tuple, lo: float, hi: float) -> tuple:
            vals = numbers(table, key, default, lo, hi)
            if vals[0] > vals[1]:
                raise CarSpecError(f"{source}: {key}={list(vals)}: the range's low end is above its high end")
            return vals

        tilt = numbers(sensor, "tilt_deg", (0.0, 0.0), -20.0, 20.0)
        imperfections = Imperfections(
            noise_mg=num(sensor, "noise_mg", 0.0, 0.0, 50.0),
            drift_mg_per_h=numbers(sensor, "drift_mg_per_h", (0.0, 0.0, 0.0), -1000.0, 1000.0, 3),
            drift_max_mg=num(sensor, "drift_max_mg", 25.0, 0.0, 100.0),
            jumps_per_min=num(people, "jumps_per_min", 0.0, 0.0, 60.0),
            jump_mg=pair(people, "jump_mg", (150.0, 300.0), 0.0, 1000.0),
            jump_s=num(people, "jump_s", 0.3, 0.1, 2.0),
            door_bounce=tuple(int(x) for x in pair(doors, "bounce", (0, 0), 0, 10)),  # type: ignore[arg-type]
            door_bounce_ms=num(doors, "bounce_ms", 15.0, 1.0, 100.0),
            zone_chatter=tuple(int(x) for x in pair(zones, "chatter", (0, 0), 0, 10)),  # type: ignore[arg-type]
            zone_chatter_ms=num(zones, "chatter_ms", 5.0, 0.5, 50.0),
        )
        return cls(
            name=str(car.get("name", Path(source).stem)),
            floor_levels_m=tuple(float(x) for x in levels),
            rated_speed_mps=num(car, "rated_speed_mps", 1.6, 0.1, 10.0),
            accel_mps2=num(car, "accel_mps2", 0.8, 0.1, 2.0),
            jerk_mps3=num(car, "jerk_mps3", 1.0, 0.1, 5.0),
            inspection_speed_mps=num(car, "inspection_speed_mps", 0.3, 0.05, 0.63),
            door_open_s=num(doors, "open_s", 2.5, 0.5, 10),
            door_close_s=num(doors, "close_s", 3.0, 0.5, 10),
            door_dwell_s=num(doors, "dwell_s", 4.0, 0.5, 60),
            vane_length_mm=int(num(zones, "vane_length_mm", 250, 50, 600)),
            zone_sensor_spacing_mm=int(num(zones, "sensor_spacing_mm", 150, 10, 500)),
            sensor_axes=axes,  # type: ignore[arg-type]
            sensor_tilt_deg=tilt,  # type: ignore[arg-type]
            moving_rate_hz=int(num(sensor, "moving_rate_hz", 400, 50, 1600)),
            rest_record_s=num(sensor, "rest_record_s", 1.0, 0.05, 60),
            vibration=Vibration(**{k: num(vib, k, getattr(d, k), 0.0, 1000.0) for k in Vibration.__slots__}),
            imperfections=imperfections,
            floor_labels=tuple(labels) if labels is not None else None,
        )


def load_car(name_or_path: str, changes: dict | None = None) -> CarSpec:
    """A car by file path or by name in ``hil_tests/cars/``; ``changes`` ({table: {key: value}})
    replace keys of its file (a scenario's ``[car_changes]``: the same car with a noisier sensor)."""
    p = Path(name_or_path)
    if not p.exists():
        p = CARS_DIR / (name_or_path if name_or_path.endswith(".toml") else name_or_path + ".toml")
    if not p.exists():
        raise CarSpecError(f"no car file {name_or_path!r} (looked in {CARS_DIR})")
    doc = read_toml(p, CarSpecError)
    for table, keys in (changes or {}).items():
        if not isinstance(keys, dict):
            raise CarSpecError(f"{p}: car_changes.{table} must be a table of keys, got {keys!r}")
        doc[table] = {**doc.get(table, {}), **keys}
    return CarSpec.from_dict(doc, str(p))


# ---- motion -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MotionProfile:
    """Jerk-limited (S-curve) point-to-point move: seven jerk segments, evaluated exactly."""

    segments: tuple[tuple[float, float], ...]  # (duration_s, jerk_mps3)
    direction: int  # +1 up, -1 down

    @property
    def duration_s(self) -> float:
        return sum(d for d, _ in self.segments)

    def states(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``state`` for an array of times (the feed needs hundreds of samples per second of run)."""
        p = np.zeros_like(t)
        v = np.zeros_like(t)
        a = np.zeros_like(t)
        p0 = v0 = a0 = 0.0
        start = 0.0
        for i, (dur, j) in enumerate(self.segments):
            last = i == len(self.segments) - 1
            mask = (t >= start) & ((t < start + dur) | last)
            tau = np.clip(t[mask] - start, 0.0, dur)
            p[mask] = p0 + v0 * tau + a0 * tau**2 / 2 + j * tau**3 / 6
            v[mask] = v0 + a0 * tau + j * tau**2 / 2
            a[mask] = a0 + j * tau
            p0, v0, a0 = p0 + v0 * dur + a0 * dur**2 / 2 + j * dur**3 / 6, v0 + a0 * dur + j * dur**2 / 2, a0 + j * dur
            start += dur
        return self.direction * p, self.direction * v, self.direction * a

    def state(self, t: float) -> tuple[float, float, float]:
        """(distance_m, speed_mps, accel_mps2) along the move at ``t`` seconds, signs by direction."""
        p = v = a = 0.0
        for dur, j in self.segments:
            tau = min(max(t, 0.0), dur)
            p += v * tau + a * tau**2 / 2 + j * tau**3 / 6
            v += a * tau + j * tau**2 / 2
            a += j * tau
            t -= dur
            if t <= 0:
                break
        return self.direction * p, self.direction * v, self.direction * a


def s_curve(distance_m: float, v_max: float, a_max: float, j_max: float) -> MotionProfile:
    """The fastest move over ``distance_m`` within the speed, acceleration and jerk limits."""
    direction = 1 if distance_m >= 0 else -1
    dist = abs(distance_m)
    if dist < 1e-6:
        return MotionProfile((), direction)

    def ramp(v: float) -> tuple[float, float, float]:
        # (t_jerk, t_const_accel, distance to reach v and stop again from it)
        if v * j_max < a_max**2:
            tj, ta = math.sqrt(v / j_max), 0.0
        else:
            tj, ta = a_max / j_max, v / a_max - a_max / j_max
        return tj, ta, v * (2 * tj + ta)

    v = v_max
    tj, ta, d_ramps = ramp(v)
    if d_ramps > dist:  # never reaches rated speed: find the peak speed that fits
        lo, hi = 0.0, v_max
        for _ in range(60):
            mid = (lo + hi) / 2
            if ramp(mid)[2] > dist:
                hi = mid
            else:
                lo = mid
        v = lo
        tj, ta, d_ramps = ramp(v)
    tv = (dist - d_ramps) / v if v > 0 else 0.0
    j = j_max
    segs = ((tj, j), (ta, 0.0), (tj, -j), (tv, 0.0), (tj, -j), (ta, 0.0), (tj, j))
    return MotionProfile(tuple(s for s in segs if s[0] > 0), direction)


# ---- the car ------------------------------------------------------------------------------------


def _axis_matrix(axes: tuple[str, str, str], tilt_deg: tuple[float, float]) -> np.ndarray:
    """Car frame (x lateral, y front-back, z up) -> sensor frame, with a small mounting tilt."""
    rx, ry = (math.radians(d) for d in tilt_deg)
    tilt_x = np.array([[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]])
    tilt_y = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
    pick = np.zeros((3, 3))
    for row, spec in enumerate(axes):
        pick[row, "xyz".index(spec[-1])] = -1.0 if spec[0] == "-" else 1.0
    return pick @ tilt_y @ tilt_x


class CarSim:
    """Generates the board's view of one car, action by action; deterministic for a given seed.

    State: position (m above floor 0 level), door, presence, inspection, alarm. Every action method
    yields samples and leaves the car at rest; ``t_us`` is the current car time.
    """

    def __init__(self, spec: CarSpec, seed: int = 0, start_floor: int = 0) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(seed)
        self.pos_m = spec.floor_levels_m[start_floor]
        self.t_us = 0
        self.door_closed = True
        self.presence = False
        self.inspection = False
        self.alarm = False
        self.mains: bool | None = None  # the mains-sense input: None = not wired (reads 0)
        self.roller_wear_mg = spec.vibration.roller_wear_mg
        self.trips = 0  # runs in normal service
        self.inspection_runs = 0  # runs with the inspection switch on (maintenance)
        self.door_cycles = 0
        self._to_sensor = _axis_matrix(spec.sensor_axes, spec.sensor_tilt_deg)
        self._last: CarSample | None = None
        # The imperfections draw from their own stream: the traffic (self.rng) stays the clean car's.
        self._imp_rng = np.random.default_rng([seed, 16])
        self.jumps = 0  # passenger jumps made (ground truth for tests)
        self.relevels = 0  # creeps back to a landing's level (not trips)

    # -- sensing --

    def zone_bits(self, pos_m: float) -> int:
        """zone_up/zone_dn from the vanes: each sensor is on while over a floor's vane."""
        half_vane = self.spec.vane_length_mm / 2000
        half_gap = self.spec.zone_sensor_spacing_mm / 2000
        bits = 0
        for level in self.spec.floor_levels_m:
            if abs(pos_m + half_gap - level) <= half_vane:
                bits |= ZONE_UP
            if abs(pos_m - half_gap - level) <= half_vane:
                bits |= ZONE_DN
        return bits

    def inputs(self, pos_m: float | None = None) -> int:
        bits = self.zone_bits(self.pos_m if pos_m is None else pos_m)
        if self.door_closed:
            bits |= DOOR_CLOSED
        if self.presence:
            bits |= PRESENCE
        if self.inspection:
            bits |= INSPECTION
        if self.alarm:
            bits |= ALARM_BUTTON
        if self.mains:
            bits |= MAINS
        return bits

    def offset_mg(self, t_us: np.ndarray | int) -> np.ndarray:
        """The sensor's zero-g offset drift (mg, sensor axes) at car time(s) ``t_us``: a ramp at
        ``drift_mg_per_h`` per axis that stops at ``drift_max_mg``; shape (3,) or (3, n)."""
        imp = self.spec.imperfections
        rate = np.asarray(imp.drift_mg_per_h, dtype=float).reshape(3, *([1] * np.ndim(t_us)))
        hours = np.asarray(t_us, dtype=float) / 3.6e9
        return np.clip(rate * hours, -imp.drift_max_mg, imp.drift_max_mg)

    def _sample(self, t_us: int, car_mg: np.ndarray | tuple[float, float, float], inputs: int) -> CarSample:
        f = self._to_sensor @ np.asarray(car_mg, dtype=float) + self.offset_mg(t_us)
        x, y, z = (int(round(max(-32768, min(32767, c)))) for c in f)
        return CarSample(t_us, x, y, z, inputs)

    def _bounce_times_us(self, flips: tuple[int, int], span_ms: float) -> list[int]:
        """Times (us after the edge) where a bouncing contact goes back to its old state and again to
        its new one: 2 per bounce, ``flips`` bounces drawn uniform, all within ``span_ms``."""
        n = int(self._imp_rng.integers(flips[0], flips[1] + 1)) if flips[1] > 0 else 0
        if not n:
            return []
        times = sorted({int(x) for x in self._imp_rng.uniform(50, span_ms * 1000, 2 * n)})
        return times[: len(times) // 2 * 2]  # the contact always ends in its new state

    def _rest_sample(self) -> CarSample:
        return self._sample(self.t_us, (0.0, 0.0, 1000.0), self.inputs())

    def _emit(self, s: CarSample) -> Iterator[CarSample]:
        self._last = s
        yield s

    # -- actions --

    def now(self) -> Iterator[CarSample]:
        """One sample of the current state (after an input change)."""
        yield from self._emit(self._rest_sample())

    def wait(self, seconds: float) -> Iterator[CarSample]:
        """The car at rest for ``seconds``: one sample per ``rest_record_s``; with the door open,
        passengers may jump (``jumps_per_min``)."""
        end = self.t_us + int(seconds * 1e6)
        step = int(self.spec.rest_record_s * 1e6)
        jumps = self._jump_starts_us(end)
        while self.t_us + step < end:
            if jumps and jumps[0] < self.t_us + step:
                yield from self._jump(jumps.pop(0))
                continue
            self.t_us += step
            yield from self._emit(self._rest_sample())
        while jumps:
            yield from self._jump(jumps.pop(0))
        self.t_us = end
        yield from self._emit(self._rest_sample())

    def _jump_starts_us(self, end_us: int) -> list[int]:
        imp = self.spec.imperfections
        if imp.jumps_per_min <= 0 or self.door_closed:
            return []
        span = end_us - self.t_us - int(imp.jump_s * 1e6) - 1000
        n = int(self._imp_rng.poisson(imp.jumps_per_min * max(span, 0) / 60e6)) if span > 0 else 0
        starts = sorted(int(x) for x in self.t_us + 1000 + self._imp_rng.uniform(0, span, n))
        # One jump at a time: a start inside the previous jump waits for its end.
        out: list[int] = []
        for t in starts:
            if out and t < out[-1] + int(imp.jump_s * 1e6) + 1000:
                continue
            out.append(t)
        return out

    def _jump(self, t0_us: int) -> Iterator[CarSample]:
        """A passenger's jump: the car bounces on its ropes, 2 peak-to-peak cycles of vertical force
        that bring speed and displacement back to zero (the car does not move away)."""
        imp = self.spec.imperfections
        peak = float(self._imp_rng.uniform(*imp.jump_mg))
        n = max(2, int(imp.jump_s * self.spec.moving_rate_hz))
        t = np.arange(n + 1) / n  # fraction of the jump
        a_mg = peak / 2 * (np.cos(2 * np.pi * t) - np.cos(4 * np.pi * t))
        bits = self.inputs()
        for k in range(n + 1):
            yield from self._emit(self._sample(t0_us + int(t[k] * imp.jump_s * 1e6), (0.0, 0.0, 1000.0 + a_mg[k]), bits))
        self.t_us = t0_us + int(imp.jump_s * 1e6)
        self.jumps += 1

    def set(self, **state: bool) -> Iterator[CarSample]:
        """Change inputs (door_closed, presence, inspection, alarm, mains) at once."""
        for k in state:
            if k not in ("door_closed", "presence", "inspection", "alarm", "mains"):
                raise ValueError(f"unknown car input {k!r}")
        door_edge = "door_closed" in state and bool(state["door_closed"]) != self.door_closed
        for k, v in state.items():
            setattr(self, k, bool(v))
        yield from self.now()
        if door_edge:
            imp = self.spec.imperfections
            flips = self._bounce_times_us(imp.door_bounce, imp.door_bounce_ms)
            t0 = self.t_us
            for i, dt in enumerate(flips):
                bits = self.inputs() ^ (DOOR_CLOSED if i % 2 == 0 else 0)
                yield from self._emit(self._sample(t0 + dt, (0.0, 0.0, 1000.0), bits))
            if flips:
                self.t_us = t0 + flips[-1]

    def door_cycle(self, dwell_s: float | None = None, reopen: int = 0) -> Iterator[CarSample]:
        """Open, dwell, close. ``reopen``: times the door, once closed, opens again at once (a jammed
        landing button, a faulty lock) before the car can leave: what a re-open loop looks like on
        the door contact."""
        spec = self.spec
        for i in range(reopen + 1):
            yield from self.set(door_closed=False)
            self.door_cycles += 1
            dwell = spec.door_dwell_s if dwell_s is None else dwell_s
            yield from self.wait(spec.door_open_s + (dwell if i == 0 else 1.0))
            yield from self.wait(spec.door_close_s)
            yield from self.set(door_closed=True)
            if i < reopen:
                yield from self.wait(0.6)

    def trip(
        self,
        to_floor: int,
        *,
        offset_mm: float = 0.0,
        speed_mps: float | None = None,
        stop_at_fraction: float | None = None,
        door_opens_at_fraction: float | None = None,
    ) -> Iterator[CarSample]:
        """Run to ``to_floor`` (stopping ``offset_mm`` off level), or stop early at a fraction of the way.

        ``stop_at_fraction`` makes an emergency stop (brake, 0.3 g) part of the way: an entrapment if
        someone is inside. ``door_opens_at_fraction`` opens the door contact mid-run.
        """
        spec = self.spec
        if not 0 <= to_floor < spec.floors:
            raise ValueError(f"floor {to_floor} outside 0..{spec.floors - 1}")
        target = spec.floor_levels_m[to_floor] + offset_mm / 1000
        v_max = speed_mps or spec.rated_speed_mps
        profile = s_curve(target - self.pos_m, v_max, spec.accel_mps2, spec.jerk_mps3)
        if profile.duration_s == 0:
            return
        start_pos = self.pos_m
        dt = 1.0 / spec.moving_rate_hz
        duration = profile.duration_s
        t = np.arange(int(math.ceil(duration / dt)) + 1) * dt
        t[-1] = min(t[-1], duration)
        dist, speed, acc = profile.states(t)
        pos = start_pos + dist
        if stop_at_fraction is not None:
            # The brake drops: constant 0.3 g deceleration from the speed at that moment until stopped.
            ts = duration * stop_at_fraction
            d0, v0, _ = profile.state(ts)
            brake = 0.3 * G_MPS2
            t_stop = abs(v0) / brake
            sign = 1.0 if v0 > 0 else -1.0
            t = np.concatenate([t[t < ts], ts + np.arange(int(math.ceil(t_stop / dt)) + 1) * dt])
            tb = np.clip(t - ts, 0.0, t_stop)
            braking = t >= ts
            dist_b, speed_b, acc_b = profile.states(np.minimum(t, ts))
            pos = np.where(braking, start_pos + d0 + v0 * tb - sign * brake * tb**2 / 2, start_pos + dist_b)
            speed = np.where(braking, v0 - sign * brake * tb, speed_b)
            acc = np.where(braking, np.where(tb < t_stop, -sign * brake, 0.0), acc_b)
        vib = self._vibration(len(t), dt, abs(target - start_pos) / max(duration, 1e-9))
        scale = np.minimum(1.0, np.abs(speed) / spec.rated_speed_mps)
        car = np.vstack([vib[0] * scale, vib[1] * scale, 1000.0 + acc / G_MPS2 * 1000.0 + vib[2] * scale])
        t0 = self.t_us
        t_us = t0 + np.rint(t * 1e6).astype(np.int64)
        sensor = np.clip(np.rint(self._to_sensor @ car + self.offset_mg(t_us)), -32768, 32767).astype(np.int64)
        zones = self._zone_bits_array(pos)
        door_open_from = None if door_opens_at_fraction is None else duration * door_opens_at_fraction
        fixed = self.inputs() & ~(ZONE_UP | ZONE_DN)
        extra, held_back = self._zone_chatter(t_us, zones)
        for k in range(len(t)):
            bits = fixed | int(zones[k])
            if door_open_from is not None and t[k] >= door_open_from:
                bits &= ~DOOR_CLOSED
            x, y, z = int(sensor[0, k]), int(sensor[1, k]), int(sensor[2, k])
            yield from self._emit(CarSample(int(t_us[k]), x, y, z, bits ^ held_back.get(k, 0)))
            for flip_t, mask in extra.get(k, ()):
                yield from self._emit(CarSample(flip_t, x, y, z, bits ^ mask))
        if door_open_from is not None:
            self.door_closed = False
        self.t_us = int(t_us[-1])
        self.pos_m = float(pos[-1])
        if self.inspection:
            self.inspection_runs += 1
        else:
            self.trips += 1
        yield from self.now()

    def relevel(self, floor: int) -> Iterator[CarSample]:
        """The car, stopped off level at ``floor``, creeps back to it (the drive re-levels: a stop
        off level, ropes stretching as people get in): a run inside the door zone, which counts in
        ``relevels``, not in ``trips``."""
        counted = (self.trips, self.inspection_runs)
        before = self.t_us
        yield from self.trip(floor)
        self.trips, self.inspection_runs = counted
        if self.t_us != before:  # already level: nothing moved
            self.relevels += 1

    def _zone_chatter(self, t_us: np.ndarray, zones: np.ndarray) -> tuple[dict[int, list], dict[int, int]]:
        """Door-zone sensor chatter at each vane edge of a run: ({sample index: [(t_us, xor mask)]}
        for the flips between that sample and the next, {sample index: xor mask} for regular
        samples that fall while a sensor is back in its old state)."""
        imp = self.spec.imperfections
        extra: dict[int, list] = {}
        held_back: dict[int, int] = {}
        if imp.zone_chatter[1] <= 0:
            return extra, held_back
        for k in np.flatnonzero(np.diff(zones)) + 1:
            mask = int(zones[k] ^ zones[k - 1])
            flips = self._bounce_times_us(imp.zone_chatter, imp.zone_chatter_ms)
            edge = int(t_us[k])
            for i in range(0, len(flips), 2):
                back, again = edge + flips[i], edge + flips[i + 1]
                j = int(k)
                while j + 1 < len(t_us) and t_us[j + 1] <= back:
                    j += 1
                extra.setdefault(j, []).append((back, mask))
                while j + 1 < len(t_us) and t_us[j + 1] < again:
                    j += 1
                    held_back[j] = held_back.get(j, 0) ^ mask
                extra.setdefault(j, []).append((again, 0))
        return extra, held_back

    def _zone_bits_array(self, pos: np.ndarray) -> np.ndarray:
        half_vane = self.spec.vane_length_mm / 2000
        half_gap = self.spec.zone_sensor_spacing_mm / 2000
        bits = np.zeros(len(pos), dtype=np.int64)
        for level in self.spec.floor_levels_m:
            bits |= np.where(np.abs(pos + half_gap - level) <= half_vane, ZONE_UP, 0)
            bits |= np.where(np.abs(pos - half_gap - level) <= half_vane, ZONE_DN, 0)
        return bits

    def _vibration(self, n: int, dt: float, mean_speed: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lateral x, y and vertical z vibration (mg) at rated-speed amplitude for one run."""
        v = self.spec.vibration
        t = np.arange(n) * dt

        def band_noise(rms: float) -> np.ndarray:
            if rms <= 0 or n < 4:
                return np.zeros(n)
            white = self.rng.standard_normal(n)
            spec = np.fft.rfft(white)
            f = np.fft.rfftfreq(n, dt)
            spec[(f < 1.0) | (f > 30.0)] = 0
            x = np.fft.irfft(spec, n)
            std = x.std()
            return x * (rms / std) if std > 0 else x

        dist = t * mean_speed
        joints = np.zeros(n)
        if v.rail_joint_spacing_m > 0 and v.rail_joint_mg > 0:
            phase = (dist % v.rail_joint_spacing_m) / max(mean_speed, 0.1)  # s since last joint
            joints = v.rail_joint_mg * np.exp(-phase / 0.05) * np.cos(2 * np.pi * 12.0 * phase)
        roller = np.zeros(n)
        if self.roller_wear_mg > 0:
            f_roll = mean_speed / (math.pi * v.roller_diameter_m)
            roller = self.roller_wear_mg * (np.sin(2 * np.pi * f_roll * t) + 0.5 * np.sin(4 * np.pi * f_roll * t))
        x = band_noise(v.rail_roughness_mg) + joints + roller
        y = band_noise(v.rail_roughness_mg * 0.7) + 0.5 * joints + 0.6 * roller
        z = (
            band_noise(v.vertical_roughness_mg)
            + v.motor_mg * np.sin(2 * np.pi * v.motor_hz * t)
            + v.rope_mg * np.sin(2 * np.pi * v.rope_hz * t + self.rng.uniform(0, 2 * np.pi))
        )
        return x, y, z
