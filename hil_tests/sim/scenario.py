"""Scenarios: a car, a list of steps (what the car and the people in it do), board faults, and what
must come out of it.

A scenario file (``hil_tests/scenarios/*.toml``)::

    [scenario]
    name = "entrapment"
    car = "office6"            # hil_tests/cars/office6.toml, or a path
    seed = 7
    start_floor = 0
    long = false                # true: too slow for the default HIL run (pytest -m long)

    [car_changes.sensor]        # optional: car-file keys replaced for this scenario (issue 16's
    noise_mg = 8                # imperfections: [sensor], [passengers], [doors], [zones]; see car.py)

    [[step]]                    # steps run in order; car time advances with each
    do = "ride"                 # ride | trip | relevel | door | wait | set | traffic | inspection | wear | repeat | fault
    to = 4

    [expect]                    # outcomes, exact counts; what is not listed must not happen
    board_events = { stopped_outside_door_zone = 1 }   # board EVENT kinds (raised)
    events = { entrapment = 1, stopped_outside_door_zone = 1 }  # daemon upstream event types (raised)
    trips = 3                   # trips the car makes (checked against the simulator)
    trips_reported = 2          # trips the daemon reports, where it differs (board off, link cut)
    relevels = 0                # re-levellings in the daemon's daily records (optional)
    maintenance = []            # one entry per visit: { too_short = false, inspection_runs = 5 }
    boots = { wdt = 0 }         # board boots by reset cause after the first power-on

Steps (all times in seconds):
- ``ride``: a passenger call: door cycle with the passenger stepping in, trip ``to`` floor
  (``offset_mm`` off level), door cycle with the passenger leaving.
- ``trip``: just the run: ``to``, ``offset_mm``, ``speed_mps``, ``stop_at`` (fraction of the run
  where the brake drops: emergency stop), ``door_opens_at`` (fraction where the door contact opens).
- ``relevel``: the car creeps back to the level of the landing it stopped near (no trip).
- ``door``: ``dwell_s``, ``reopen``. ``wait``: ``s``. ``set``: ``door_closed``, ``presence``,
  ``inspection``, ``alarm``, ``mains`` (booleans; the mains-sense input reads 0 until first set).
- ``traffic``: ``hours``, ``trips_per_hour`` (number, or 24 numbers by hour of day): random rides.
- ``inspection``: ``runs`` slow runs between floors at inspection speed, door closed, ``pause_s``.
- ``wear``: ``roller_wear_mg`` (set) or ``roller_wear_step_mg`` (add): a wearing guide roller.
- ``repeat``: ``n`` times the nested ``steps``.
- ``fault``: board-side: ``kind`` = ``power_cut`` (``off_s``), ``link_cut`` (``s``), ``reset``
  (``cause``), ``garbage`` (``bytes``, ``direction``), ``delay_s`` after the current car time (so a
  fault step before a trip step strikes during that trip). ``pi_down`` (``s``): the daemon is
  stopped that long, then started again (the end-to-end runner does it); to the board it is a link
  nobody reads, as a ``link_cut``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liftwatch.errors import LiftwatchError
from liftwatch.hil.sim.car import CarSim, CarSpec, load_car, read_toml
from liftwatch.protocol.trace import CarSample

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"
FAULT_KINDS = ("power_cut", "link_cut", "reset", "garbage", "pi_down")
_STEP_KINDS = ("ride", "trip", "relevel", "door", "wait", "set", "traffic", "inspection", "wear", "repeat", "fault")


class ScenarioError(LiftwatchError, ValueError):
    """A scenario file that cannot run: names the file and the step."""


@dataclass(frozen=True, slots=True)
class BoardFault:
    """Something that happens to the board, not the car, at car time ``t_us``."""

    t_us: int
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the scenario must produce. Counts are exact; absent kinds must not appear."""

    board_events: dict[str, int]
    events: dict[str, int]
    trips: int | None
    trips_reported: int | None
    relevels: int | None
    maintenance: tuple[dict[str, Any], ...]
    boots: dict[str, int]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    car: CarSpec
    seed: int
    start_floor: int
    steps: tuple[dict[str, Any], ...]
    expect: Expectation
    long: bool
    source: str

    @classmethod
    def load(cls, name_or_path: str) -> Scenario:
        """A scenario by path or by name in ``hil_tests/scenarios/``."""
        p = Path(name_or_path)
        if not p.exists():
            p = SCENARIOS_DIR / (name_or_path if name_or_path.endswith(".toml") else name_or_path + ".toml")
        if not p.exists():
            raise ScenarioError(f"no scenario {name_or_path!r} (looked in {SCENARIOS_DIR})")
        return cls.from_dict(read_toml(p, ScenarioError), str(p))

    @classmethod
    def from_dict(cls, doc: dict[str, Any], source: str = "<scenario>") -> Scenario:
        meta = doc.get("scenario", {})
        steps = tuple(doc.get("step", []))
        _check_steps(steps, source)
        exp = doc.get("expect", {})
        car = load_car(str(meta.get("car", "office6")), doc.get("car_changes"))
        start_floor = int(meta.get("start_floor", 0))
        if not 0 <= start_floor < car.floors:
            raise ScenarioError(f"{source}: start_floor {start_floor} outside 0..{car.floors - 1}")
        return cls(
            name=str(meta.get("name", Path(source).stem)),
            description=str(meta.get("description", "")),
            car=car,
            seed=int(meta.get("seed", 0)),
            start_floor=start_floor,
            steps=steps,
            expect=Expectation(
                board_events=dict(exp.get("board_events", {})),
                events=dict(exp.get("events", {})),
                trips=exp.get("trips"),
                trips_reported=exp.get("trips_reported", exp.get("trips")),
                relevels=exp.get("relevels"),
                maintenance=tuple(exp.get("maintenance", [])),
                boots=dict(exp.get("boots", {})),
            ),
            long=bool(meta.get("long", False)),
            source=source,
        )

    def timeline(self, seed: int | None = None, rest_prefix_s: float = 0.0) -> Iterator[CarSample | BoardFault]:
        """The car's samples in time order, with board faults interleaved at their times.

        ``rest_prefix_s``: the car first stands still that long (a board calibrates at rest)."""
        sim = CarSim(self.car, seed=self.seed if seed is None else seed, start_floor=self.start_floor)
        yield from sim.now()
        if rest_prefix_s:
            yield from sim.wait(rest_prefix_s)
        yield from _run_steps(sim, self.steps, self.source)

    def samples(self, seed: int | None = None) -> Iterator[CarSample]:
        """Only the samples (for a trace file)."""
        return (x for x in self.timeline(seed) if isinstance(x, CarSample))

    def ground_truth(self, rest_prefix_s: float = 0.0) -> CarSim:
        """Run the car through the whole scenario and return it: its ``trips``, ``door_cycles``, ``t_us``."""
        sim = CarSim(self.car, seed=self.seed, start_floor=self.start_floor)
        for _ in sim.wait(rest_prefix_s) if rest_prefix_s else ():
            pass
        for _ in _run_steps(sim, self.steps, self.source):
            pass
        return sim


def list_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIOS_DIR.glob("*.toml"))


def _check_steps(steps: tuple[dict[str, Any], ...], source: str) -> None:
    for i, step in enumerate(steps, 1):
        kind = step.get("do")
        if kind not in _STEP_KINDS:
            raise ScenarioError(f"{source}: step {i}: do={kind!r}, expected one of {', '.join(_STEP_KINDS)}")
        if kind == "fault" and step.get("kind") not in FAULT_KINDS:
            raise ScenarioError(f"{source}: step {i}: fault kind {step.get('kind')!r}, expected one of {FAULT_KINDS}")
        if kind == "repeat":
            _check_steps(tuple(step.get("steps", [])), source)


def _passenger_door_cycle(sim: CarSim, opened_s: float, presence: bool) -> Iterator[CarSample]:
    """The door opens, stays ``opened_s`` beyond its opening time while a passenger gets in
    (``presence``) or out, dwells and closes."""
    yield from sim.set(door_closed=False)
    sim.door_cycles += 1
    yield from sim.wait(sim.spec.door_open_s + opened_s)
    yield from sim.set(presence=presence)
    yield from sim.wait(sim.spec.door_dwell_s)
    yield from sim.wait(sim.spec.door_close_s)
    yield from sim.set(door_closed=True)


def _ride(sim: CarSim, to: int, offset_mm: float = 0.0) -> Iterator[CarSample]:
    yield from _passenger_door_cycle(sim, 1.5, presence=True)
    yield from sim.wait(1.0)
    yield from sim.trip(to, offset_mm=offset_mm)
    yield from sim.wait(0.8)
    yield from _passenger_door_cycle(sim, 1.0, presence=False)


def _floor_now(sim: CarSim) -> int:
    levels = sim.spec.floor_levels_m
    return min(range(len(levels)), key=lambda i: abs(levels[i] - sim.pos_m))


def _run_steps(sim: CarSim, steps: tuple[dict[str, Any], ...], source: str) -> Iterator[CarSample | BoardFault]:
    for i, step in enumerate(steps, 1):
        try:
            yield from _run_step(sim, step, source)
        except (KeyError, TypeError, ValueError) as exc:
            raise ScenarioError(f"{source}: step {i} ({step.get('do')}): {exc}") from None


def _run_step(sim: CarSim, step: dict[str, Any], source: str) -> Iterator[CarSample | BoardFault]:
    kind = step["do"]
    if kind == "ride":
        yield from _ride(sim, int(step["to"]), float(step.get("offset_mm", 0.0)))
    elif kind == "trip":
        yield from sim.trip(
            int(step["to"]),
            offset_mm=float(step.get("offset_mm", 0.0)),
            speed_mps=step.get("speed_mps"),
            stop_at_fraction=step.get("stop_at"),
            door_opens_at_fraction=step.get("door_opens_at"),
        )
    elif kind == "relevel":
        yield from sim.relevel(_floor_now(sim))
    elif kind == "door":
        yield from sim.door_cycle(step.get("dwell_s"), int(step.get("reopen", 0)))
    elif kind == "wait":
        yield from sim.wait(float(step["s"]))
    elif kind == "set":
        yield from sim.set(**{k: v for k, v in step.items() if k != "do"})
    elif kind == "traffic":
        yield from _traffic(sim, float(step["hours"]), step["trips_per_hour"])
    elif kind == "inspection":
        yield from _inspection(sim, int(step.get("runs", 4)), float(step.get("pause_s", 120.0)))
    elif kind == "wear":
        if "roller_wear_mg" in step:
            sim.roller_wear_mg = float(step["roller_wear_mg"])
        sim.roller_wear_mg += float(step.get("roller_wear_step_mg", 0.0))
    elif kind == "repeat":
        for _ in range(int(step["n"])):
            yield from _run_steps(sim, tuple(step["steps"]), source)
    elif kind == "fault":
        params = {k: v for k, v in step.items() if k not in ("do", "kind", "delay_s")}
        yield BoardFault(sim.t_us + int(float(step.get("delay_s", 0.0)) * 1e6), step["kind"], params)


def _traffic(sim: CarSim, hours: float, trips_per_hour: float | list[float]) -> Iterator[CarSample]:
    """Random passenger rides (Poisson arrivals) for ``hours``, by hour-of-day rates when a list."""
    end = sim.t_us + int(hours * 3600e6)
    floors = sim.spec.floors
    while True:
        hour = int(sim.t_us // 3_600_000_000) % 24
        rate = trips_per_hour[hour] if isinstance(trips_per_hour, list) else float(trips_per_hour)
        gap_s = float(sim.rng.exponential(3600.0 / rate)) if rate > 0 else 3600.0
        if sim.t_us + int(gap_s * 1e6) >= end:
            yield from sim.wait(max(0.0, (end - sim.t_us) / 1e6))  # the last ride may have run past the end
            return
        yield from sim.wait(gap_s)
        here = _floor_now(sim)
        to = int(sim.rng.integers(0, floors - 1))
        if to >= here:
            to += 1
        yield from _ride(sim, to)


def _inspection(sim: CarSim, runs: int, pause_s: float) -> Iterator[CarSample]:
    """Inspection runs: slow, door closed, between floors; pauses with the door open for work."""
    speed = sim.spec.inspection_speed_mps
    for _ in range(runs):
        here = _floor_now(sim)
        to = here + 1 if here + 1 < sim.spec.floors else here - 1
        yield from sim.trip(to, speed_mps=speed)
        yield from sim.set(door_closed=False)
        yield from sim.wait(pause_s)
        yield from sim.set(door_closed=True)
        yield from sim.wait(5.0)
