"""Fuzzing the trace CSV reader (protocol/trace.py), the input of `liftwatch replay` and the mock board.

Property: `read_trace` yields valid `CarSample`s or raises `TraceFormatError` (with a line number),
never another exception; `trace_to_feed` finishes in time bounded by the file, not by the numbers
in it; a trace it accepts round-trips through the feed. Budget: tests/support/fuzzing.py.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from support.fuzzing import fuzz
from liftwatch.protocol.trace import (
    FEED_RECORD_SIZE,
    TRACE_HEADER,
    CarSample,
    TraceError,
    TraceFormatError,
    feed_to_samples,
    read_trace,
    trace_text,
    trace_to_feed,
)

HEADER = ",".join(TRACE_HEADER) + "\n"
VALID = trace_text([CarSample(0, 0, 0, 1000, 0b000111), CarSample(2500, 12, -8, 1016, 0b000111),
                    CarSample(5000, 20, -3, 990, 0b010110), CarSample(1_000_000, -32768, 32767, 0, 0b111111)])


def read_all(source) -> list[CarSample] | TraceFormatError:
    try:
        samples = list(read_trace(source))
    except TraceFormatError as err:
        assert err.line_no >= 0 and err.reason
        return err
    last = -1
    for s in samples:
        assert s.t_us >= last and s.t_us >= 0
        assert all(-32768 <= v <= 32767 for v in (s.ax_mg, s.ay_mg, s.az_mg))
        assert 0 <= s.inputs < 64
        last = s.t_us
    return samples


def feed_or_error(text: str) -> None:
    started = time.monotonic()
    try:
        feed = b"".join(trace_to_feed(io.StringIO(text)))
    except TraceError:
        return
    assert time.monotonic() - started < 5.0, "trace_to_feed time must be bounded by the file size"
    assert len(feed) % FEED_RECORD_SIZE == 0
    samples = list(read_trace(io.StringIO(text)))
    decoded = list(feed_to_samples(feed))
    # Sample-and-hold: every trace sample is in the feed at its time (long gaps add held records).
    assert [s for s in decoded if s in samples] == samples or len(decoded) >= len(samples)


_cells = st.one_of(st.integers(-(1 << 70), 1 << 70).map(str), st.sampled_from(
    ["0", "1", "-1", "32767", "32768", "-32769", "1_000", "+5", " 7 ", "0x10", "1e3", "", "nan", "١", "9" * 5000,
     "\x00", "é"]))
_row = st.lists(_cells, min_size=0, max_size=12).map(",".join)


@st.composite
def mutated_trace(draw: st.DrawFn) -> str:
    lines = VALID.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines)))
        op = draw(st.sampled_from(["insert_row", "replace_row", "delete", "swap", "comment", "blank", "bom"]))
        if op == "insert_row":
            lines.insert(i, draw(_row))
        elif op == "replace_row" and i < len(lines):
            cells = lines[i].split(",")
            j = draw(st.integers(0, len(cells) - 1))
            cells[j] = draw(_cells)
            lines[i] = ",".join(cells)
        elif op == "delete" and i < len(lines):
            del lines[i]
        elif op == "swap" and len(lines) > 2:
            j = draw(st.integers(0, len(lines) - 1))
            if i < len(lines):
                lines[i], lines[j] = lines[j], lines[i]
        elif op == "comment":
            lines.insert(i, "# " + draw(st.text(max_size=20)))
        elif op == "blank":
            lines.insert(i, draw(st.sampled_from(["", "   ", "\t"])))
        elif op == "bom":
            lines[0] = "\ufeff" + lines[0]
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))


@fuzz(0.3)
@given(text=st.one_of(mutated_trace(), st.text(max_size=400), st.lists(_row, max_size=6).map(
    lambda rows: HEADER + "\n".join(rows))))
def test_any_trace_text_is_samples_or_a_trace_format_error(text: str) -> None:
    read_all(io.StringIO(text))
    feed_or_error(text)


@fuzz(0.1)
@given(raw=st.one_of(st.binary(max_size=300), mutated_trace().map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_any_trace_file_is_samples_or_a_trace_format_error(tmp_path_factory, raw: bytes) -> None:
    path: Path = tmp_path_factory.mktemp("trace") / "t.csv"
    path.write_bytes(raw)
    read_all(path)


def test_the_valid_trace_round_trips() -> None:
    samples = read_all(io.StringIO(VALID))
    assert isinstance(samples, list) and len(samples) == 4
    assert list(feed_to_samples(b"".join(trace_to_feed(io.StringIO(VALID))))) == samples


def test_a_far_future_time_is_refused_not_expanded() -> None:
    """One line with t_us = 10**30 would otherwise become 2**68 held feed records (a hang)."""
    text = HEADER + "0,0,0,1000,1,1,1,0,0,0,1\n" + f"{10**30},0,0,1000,1,1,1,0,0,0,1\n"
    started = time.monotonic()
    result = read_all(io.StringIO(text))
    assert isinstance(result, TraceFormatError) and result.line_no == 3
    assert time.monotonic() - started < 1.0
