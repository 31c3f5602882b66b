"""Invariants of CarAnalytics on arbitrary observation streams (hypothesis)."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from liftwatch.edge_daemon.analytics import (
    AnalyticsConfig,
    CarAnalytics,
    FaultEvent,
    Trip,
)
from liftwatch.edge_daemon.observations import (
    BoardBooted,
    BoardEvent,
    CountersSnapshot,
    InputsChanged,
    LinkState,
    MotionChanged,
    RestStats,
    VibBlock,
)

T0 = 1_764_000_000.0
CFG = AnalyticsConfig(floor_count=4, door_open_too_long_s=20.0, entrapment_at_floor_s=30.0)


@st.composite
def streams(draw):
    n = draw(st.integers(1, 60))
    t = T0
    out = []
    for _ in range(n):
        t += draw(st.floats(0.0, 40.0))
        kind = draw(st.integers(0, 8))
        if kind <= 2:
            out.append(InputsChanged(t, draw(st.integers(0, 63)), draw(st.integers(0, 63))))
        elif kind <= 4:
            out.append(MotionChanged(t, draw(st.sampled_from([0, 1, 2, 3, 255, 7]))))
        elif kind == 5:
            rows = draw(st.integers(1, 200))
            samples = np.tile(np.array([0, 0, 16384], np.int16), (rows, 1))
            samples[:, 2] += np.int16(draw(st.integers(-500, 500)))
            out.append(VibBlock(t - rows / 400, 400, 16384, samples, draw(st.sampled_from([None, (0, 0, 16384)])),
                                draw(st.sampled_from([0, 0, 37]))))
        elif kind == 6:
            out.append(BoardEvent(t, draw(st.integers(0, 9)), draw(st.integers(0, 9)), draw(st.integers(0, 1)), {}))
        elif kind == 7:
            out.append(LinkState(t, draw(st.booleans())))
        else:
            out.append(draw(st.sampled_from([
                BoardBooted(t, 3, "wdt"), CountersSnapshot(t, 1, 2, 3), RestStats(t, 1000, (0, 0, 1000), (1, 1, 1), 4),
            ])))
    ticks = draw(st.lists(st.floats(0.0, 3600.0), max_size=10))
    return out, sorted(T0 + x for x in ticks)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_any_stream_gives_consistent_faults_and_plain_json(stream):
    observations, ticks = stream
    car = CarAnalytics("c", CFG)
    out = []
    for obs in observations:
        while ticks and ticks[0] < obs.ts:
            out += car.tick(ticks.pop(0))
        out += car.feed(obs)
    end = max([o.ts for o in observations] + ticks) + 7200
    out += car.flush(end)

    keys = [o.key for o in out]
    assert len(keys) == len(set(keys))
    for o in out:
        json.dumps(o.to_message(), allow_nan=False)
    by_type: dict = {}
    for e in (o for o in out if isinstance(o, FaultEvent)):
        by_type.setdefault(e.type, []).append(e)
    for events in by_type.values():
        assert [e.state for e in events] == ["raised", "cleared"] * (len(events) // 2) + ["raised"] * (len(events) % 2)
        for raised, cleared in zip(events[::2], events[1::2]):
            assert cleared.raised_ts == raised.event_ts <= cleared.event_ts
            assert cleared.duration_s == cleared.event_ts - raised.event_ts
    for trip in (o for o in out if isinstance(o, Trip)):
        assert trip.start_ts < trip.end_ts
        assert trip.floors is None or trip.floors >= 0
    assert out[-1].kind == "daily" and out[-1].partial
