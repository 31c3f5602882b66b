"""The upstream JSON schemas validate what analytics produces, wrapped in the real envelope."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from support.analytics_synth import CarStream
from support.upstream import schema_validator

from liftwatch.edge_daemon.analytics import (
    AnalyticsConfig,
    CarAnalytics,
    FaultEvent,
    FaultType,
)
from liftwatch.edge_daemon.envelope import encode_message, make_message, utc_iso
from liftwatch.edge_daemon.observations import (
    BoardEvent,
    CountersSnapshot,
    LinkState,
    MotionChanged,
)

KINDS = ("trip", "event", "maintenance", "daily", "door_cycle")


def everything_stream():
    """One car's eventful day: every fault type, a visit, trips with and without VIB, a midnight."""
    cfg = AnalyticsConfig(floor_count=5, emit_door_cycles=True)
    midnight_cst = 1_764_000_000 - (1_764_000_000 + 8 * 3600) % 86400 + 86400
    s = CarStream(cfg, t0=midnight_cst - 4 * 3600)
    rough = lambda t: 14.0 * np.sin(2 * np.pi * 6.3 * t)
    s.wait(2).trip(4).wait(2).door_cycle().trip(-4).wait(2).door_cycle(reopen=[1.0] * 6).wait(5)
    s.set(presence=True).trip(1).wait(20).door_cycle().set(presence=False).wait(2)  # door fails to open
    s.trip(3, offset_mm=400).wait(8).trip(-1).wait(2)  # 冲顶: 400 mm past the top landing, then down to 3
    s.trip(-3, offset_mm=400).wait(8).trip(1, to_m=0.0).wait(2)  # 蹲底, then back up to the bottom landing
    s.set(mains=True).wait(2).set(presence=True, mains=False).wait(30).set(mains=True, presence=False).wait(2)
    s.set(alarm=True).wait(3).set(alarm=False).wait(2)
    s.trip(2, door_open_during=True).wait(1).set(door_closed=True).wait(2)
    s.trip(-2, vib_mg=rough).wait(3).trip(2, vib_mg=rough).wait(3)
    for k in range(3):
        s.trip(-1 if k % 2 == 0 else 1, offset_mm=50).wait(3)
    s.trip(2, v_max=1.3).wait(3)
    s.set(presence=True).trip(-1, offset_mm=1500).wait(20).trip(-1).wait(1).door_cycle().set(presence=False)
    s.trip(4, vib=False).wait(6).trip(2).wait(3)  # two landings above the top: a missed pulse
    s.add(MotionChanged(s.t, 255)).wait(cfg.uncalibrated_grace_s + 3).add(MotionChanged(s.t, 0)).wait(2)
    s.add(BoardEvent(s.t, 41, 6, 1, {})).add(CountersSnapshot(s.t, 50, 20, 300, 3)).wait(1)
    s.add(LinkState(s.t, False)).wait(120).add(LinkState(s.t, True)).wait(2)
    s.door_cycle(open_s=150).wait(600)
    s.set(inspection=True).trip(-1).wait(1500).set(inspection=False).wait(4 * 3600)
    return s, cfg


@pytest.fixture(scope="module")
def outputs():
    s, cfg = everything_stream()
    return s.run(CarAnalytics("bldg3-lift1", cfg))


def test_the_scenario_covers_every_kind_and_fault_type(outputs):
    assert {o.kind for o in outputs} == set(KINDS)
    raised = {o.type for o in outputs if isinstance(o, FaultEvent) and o.state == "raised"}
    cleared = {o.type for o in outputs if isinstance(o, FaultEvent) and o.state == "cleared"}
    assert raised == set(FaultType)
    assert FaultType.ENTRAPMENT in cleared and FaultType.BOARD_OFFLINE in cleared
    assert any(o.kind == "daily" and not o.partial for o in outputs)
    assert any(o.kind == "trip" and o.ride_quality is None for o in outputs)
    assert any(o.kind == "maintenance" and o.faults_responded for o in outputs)


@pytest.mark.parametrize("kind", KINDS)
def test_every_output_validates_against_its_kind_schema(outputs, kind):
    v = schema_validator(kind)
    mine = [o for o in outputs if o.kind == kind]
    assert mine
    for o in mine:
        message = make_message(o.kind, "site-1", "bldg3-lift1", "b-0042", utc_iso(1_764_000_000.0), o.key,
                               o.to_message())
        errors = sorted(v.iter_errors(message), key=str)
        assert not errors, f"{o.key}: {errors[0].message} at {list(errors[0].absolute_path)}"
        json.loads(encode_message(message))  # plain JSON: no NaN, no numpy types


def test_ids_are_unique_per_output(outputs):
    ids = [make_message(o.kind, "s", "c", None, utc_iso(0), o.key, o.to_message())["id"] for o in outputs]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    "kind,breakage",
    [
        ("trip", {"direction": "sideways"}),
        ("trip", {"leveling": {"status": "level"}}),
        ("event", {"type": "fire"}),
        ("event", {"state": "cleared"}),  # a cleared event needs raised_ts, duration_s, ...
        ("maintenance", {"too_short": "no"}),
        ("daily", {"trips": -1}),
    ],
)
def test_schemas_reject_broken_messages(outputs, kind, breakage):
    o = next(x for x in outputs if x.kind == kind and getattr(x, "state", "raised") == "raised")
    message = make_message(o.kind, "s", "c", "b", utc_iso(0), o.key, o.to_message())
    message.update(breakage)
    assert not schema_validator(kind).is_valid(message)


def test_envelope_fields_are_required_by_every_kind_schema(outputs):
    o = next(x for x in outputs if x.kind == "trip")
    message = make_message(o.kind, "s", "c", "b", utc_iso(0), o.key, o.to_message())
    del message["site"]
    assert not schema_validator("trip").is_valid(message)
    message = dataclasses.replace(o).to_message() | {"v": 1}
    assert not schema_validator("trip").is_valid(message)
