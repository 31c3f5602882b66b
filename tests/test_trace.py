"""Trace CSV <-> feed conversion (liftwatch.protocol.trace): round trips and typed errors with line numbers."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liftwatch.protocol.trace import (
    FEED_RECORD,
    FEED_RECORD_SIZE,
    MAX_DT_US,
    CarSample,
    FeedFormatError,
    TraceFormatError,
    feed_to_samples,
    read_trace,
    samples_to_feed,
    trace_text,
    trace_to_feed,
)

HEADER = "t_us,ax_mg,ay_mg,az_mg,door_closed,zone_up,zone_dn,presence,inspection,alarm_button\n"

_int16 = st.integers(-32768, 32767)


@st.composite
def _samples(draw: st.DrawFn) -> list[CarSample]:
    t = 0
    out = []
    for _ in range(draw(st.integers(0, 40))):
        t += draw(st.integers(0, 10**7))
        out.append(CarSample(t, draw(_int16), draw(_int16), draw(_int16), draw(st.integers(0, 63))))
    return out


@given(_samples())
def test_trace_and_feed_round_trip(samples: list[CarSample]) -> None:
    text = trace_text(samples)
    assert list(read_trace(io.StringIO(text))) == samples
    feed = b"".join(trace_to_feed(io.StringIO(text), chunk_records=7))
    assert len(feed) == FEED_RECORD_SIZE * len(samples)
    assert list(feed_to_samples(feed)) == samples


def test_gap_longer_than_u32_repeats_the_held_state() -> None:
    samples = [CarSample(0, 1, 2, 1000, 1), CarSample(MAX_DT_US * 2 + 10, 5, 6, 990, 3)]
    records = list(samples_to_feed(samples))
    assert [FEED_RECORD.unpack(r) for r in records] == [
        (0, 1, 2, 1000, 1, 0),
        (MAX_DT_US, 1, 2, 1000, 1, 0),  # held state, not the next sample early
        (MAX_DT_US, 1, 2, 1000, 1, 0),
        (10, 5, 6, 990, 3, 0),
    ]
    assert list(feed_to_samples(b"".join(records)))[-1] == samples[-1]


@pytest.mark.parametrize(
    ("body", "line_no", "words"),
    [
        ("0,0,0,1000,1,0,0,0,0,0\n5,0,0,x,1,0,0,0,0,0\n", 3, "not an integer"),
        ("0,0,0,1000,1,0,0,0,0\n", 2, "expected 10 columns"),
        ("0,0,0,1000,2,0,0,0,0,0\n", 2, "door_closed must be 0 or 1"),
        ("0,0,0,40000,1,0,0,0,0,0\n", 2, "az_mg=40000 outside int16"),
        ("10,0,0,1000,1,0,0,0,0,0\n# note\n5,0,0,1000,1,0,0,0,0,0\n", 4, "backwards"),
        ("-1,0,0,1000,1,0,0,0,0,0\n", 2, "t_us must be >= 0"),
    ],
)
def test_malformed_lines_name_their_line(body: str, line_no: int, words: str) -> None:
    with pytest.raises(TraceFormatError) as err:
        list(read_trace(io.StringIO(HEADER + body)))
    assert err.value.line_no == line_no
    assert words in err.value.reason


def test_wrong_header_and_empty_trace() -> None:
    with pytest.raises(TraceFormatError, match="header must be") as err:
        list(read_trace(io.StringIO("t,ax\n1,2\n")))
    assert err.value.line_no == 1
    with pytest.raises(TraceFormatError, match="empty trace"):
        list(read_trace(io.StringIO("# only a comment\n")))


def test_partial_feed_record_is_a_typed_error() -> None:
    with pytest.raises(FeedFormatError) as err:
        list(feed_to_samples(b"\x00" * 13))
    assert err.value.offset == 12


def test_the_car_in_a_trace_header_round_trips_and_a_bare_name_is_no_car(tmp_path):
    from liftwatch.protocol.trace import TraceCar, TraceWriter, read_trace_car

    car = TraceCar("office6", 1.6, 6, 250.0, 150.0)
    path = tmp_path / "t.csv"
    with TraceWriter(path) as writer:
        writer.comment("liftwatch simulate x seed=1")
        writer.comment(car.comment())
    assert read_trace_car(path) == car
    bare = tmp_path / "bare.csv"  # as traces were written before they carried their car
    bare.write_text(path.read_text().replace(car.comment(), "car office6; board faults are not part of a trace"))
    assert read_trace_car(bare) is None
    assert read_trace_car(tmp_path / "missing.csv") is None


def test_the_mains_column_round_trips_and_a_trace_without_it_still_reads():
    """Issue 20 added bit 6 (`mains`); traces written before it have 10 columns and read mains = 0."""
    samples = [CarSample(0, 0, 0, 1000, 0x41), CarSample(5, 0, 0, 1000, 0x01)]
    text = trace_text(samples)
    assert text.splitlines()[0].endswith(",alarm_button,mains")
    assert list(read_trace(io.StringIO(text))) == samples
    old = HEADER + "0,0,0,1000,1,0,0,0,0,0\n"
    assert list(read_trace(io.StringIO(old))) == [CarSample(0, 0, 0, 1000, 0x01)]
    with pytest.raises(TraceFormatError, match="expected 10 columns"):
        list(read_trace(io.StringIO(old + "5,0,0,1000,1,0,0,0,0,0,1\n")))


def test_the_trace_car_carries_the_landing_levels_and_names(tmp_path):
    from liftwatch.protocol.trace import TraceCar, read_trace_car

    car = TraceCar("office6", 1.6, 6, 250.0, 150.0, 8.0, (0.0, 4.2, 7.6, 11.0, 14.4, 17.8), ("G", "1", "2", "3", "5", "6"))
    path = tmp_path / "t.csv"
    path.write_text(f"# {car.comment()}\n" + HEADER)
    assert read_trace_car(path) == car
    old = TraceCar("office6", 1.6, 6, 250.0, 150.0)  # a header written before levels and names
    path.write_text(f"# {old.comment()}\n" + HEADER)
    assert read_trace_car(path) == old
