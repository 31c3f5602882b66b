"""Fuzzing the host FrameReader: arbitrary bytes, any chunking, mutated valid streams, both implementations.

Properties: `feed` never raises; the reader keeps at most one maximum frame between calls (the
Python path's buffer is checked after every call; the C path's allocations with tracemalloc);
every part that yields no frame is counted under a `DropReason`; an intact frame behind any damage
is still delivered; with tags required nothing but the sender's own frames comes out.
Budgets: tests/support/fuzzing.py (``LIFTWATCH_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fuzzing import fuzz
from support.values import as_lists

from liftwatch.protocol import framing
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import MAX_WIRE, DropReason, FrameReader, encode_frame

KEY = bytes(range(32))
IMPLS = ["python"] + (["c"] if framing._fastframe is not None else [])


def make_reader(impl: str, **kw) -> FrameReader:
    return FrameReader(accelerated=(impl == "c"), **kw)


def chunked(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts}) if stream else []
    out, last = [], 0
    for p in points + [len(stream)]:
        out.append(stream[last:p])
        last = p
    return out


def completed_parts(stream: bytes) -> int:
    """Non-empty parts closed by a delimiter: each must become a frame or at least one counted drop."""
    return sum(1 for part in stream.split(b"\x00")[:-1] if part)


def check_feed(reader: FrameReader, chunks: list[bytes]) -> list:
    frames = []
    for chunk in chunks:
        frames += reader.feed(chunk)
        if not reader.accelerated:
            assert len(reader._buf) <= MAX_WIRE  # between calls: at most one (unfinished) frame
    assert all(isinstance(r, DropReason) for r in reader.drops)
    assert all(n > 0 for n in reader.drops.values())
    assert reader.frames == len(frames)
    return frames


# ---------------------------------------------------------------- arbitrary bytes

# Bytes rich in delimiters and in the values that matter to the parser (0x00, 0x01, code bytes).
_byte_soup = st.lists(
    st.one_of(st.binary(max_size=64), st.sampled_from([b"\x00", b"\x01", b"\x02\x01", b"\xff" * 255, b"\x00\x00"])),
    max_size=40,
).map(b"".join)


@pytest.mark.parametrize("impl", IMPLS)
@fuzz(0.4)
@given(stream=st.one_of(st.binary(max_size=4096), _byte_soup), cuts=st.lists(st.integers(0, 1 << 16), max_size=12),
       keyed=st.booleans(), require=st.booleans())
def test_arbitrary_bytes_any_chunking(impl: str, stream: bytes, cuts: list[int], keyed: bool, require: bool) -> None:
    reader = make_reader(impl, key=KEY if keyed else None, require_tag=require and keyed)
    frames = check_feed(reader, chunked(stream, cuts))
    parts = completed_parts(stream)
    assert len(frames) <= parts
    assert len(frames) + sum(reader.drops.values()) >= parts  # no part vanishes uncounted


# ---------------------------------------------------------------- mutated valid streams

_scalar = st.one_of(st.integers(-(1 << 63), (1 << 64) - 1), st.booleans(), st.none(), st.text(max_size=12),
                    st.binary(max_size=48), st.floats(allow_nan=False))
_payload = st.lists(st.one_of(_scalar, st.lists(_scalar, max_size=4),
                              st.dictionaries(st.text(max_size=6), _scalar, max_size=3)), max_size=8)
_MUTATIONS = ("flip", "insert", "delete", "truncate", "garbage_before", "cut", "zero", "duplicate")


@st.composite
def mutated_stream(draw: st.DrawFn, tagged: bool) -> tuple[bytes, list, list, list[int]]:
    """(stream, frames that stay intact and must come out, every frame sent, chunk cuts)."""
    n = draw(st.integers(1, 12))
    stream = bytearray(b"\x00")  # a sender's first 0x00 after boot (SPEC section 1)
    intact, sent = [], []
    for seq in range(n):
        mtype = draw(st.sampled_from(lw.KNOWN_TYPES))
        payload = draw(_payload)
        try:
            wire = bytearray(encode_frame(mtype, payload, 300, seq, 1000 + seq, key=KEY if tagged else None))
        except ValueError:  # over MAX_BODY: not a frame a sender could make
            continue
        sent.append((mtype, seq, as_lists(payload)))
        mutation = draw(st.sampled_from(_MUTATIONS + ("none",) * 4))
        body = wire[:-1]
        if mutation == "none":
            intact.append((mtype, seq, payload))
        elif mutation == "flip":
            i = draw(st.integers(0, len(body) - 1))
            body[i] ^= 1 << draw(st.integers(0, 7))
            if body[i] == 0:
                body[i] = 0x5A
        elif mutation == "insert":
            body.insert(draw(st.integers(0, len(body))), draw(st.integers(1, 255)))
        elif mutation == "delete":
            del body[draw(st.integers(0, len(body) - 1))]
        elif mutation == "truncate":
            del body[draw(st.integers(1, len(body))) :]
        elif mutation == "garbage_before":  # a board's boot text: no 0x00 in it, glued to the frame
            stream += draw(st.binary(min_size=1, max_size=1500)).replace(b"\x00", b"\x01")
            intact.append((mtype, seq, payload))  # salvage must find the frame behind it
        elif mutation == "zero":  # a 0x00 in the middle: two broken parts
            body.insert(draw(st.integers(1, len(body))), 0)
        elif mutation == "duplicate":  # the same frame twice: with tags the copy is a replay
            stream += wire
            intact.append((mtype, seq, payload))
        if mutation == "cut":  # board reset mid-frame: a prefix without delimiter; the next frame is glued on
            stream += body[: draw(st.integers(0, len(body) - 1))]
            continue
        stream += body + b"\x00"
    cuts = draw(st.lists(st.integers(0, 1 << 16), max_size=10))
    return bytes(stream), intact, sent, cuts


def _delivered(frames: list) -> list[tuple[int, int, object]]:
    return [(f.type, f.seq, as_lists(f.payload)) for f in frames]


@pytest.mark.parametrize("impl", IMPLS)
@fuzz(0.15)
@given(case=mutated_stream(tagged=True))
def test_mutated_tagged_stream_yields_exactly_the_intact_frames(impl: str, case) -> None:
    stream, intact, sent, cuts = case
    reader = make_reader(impl, key=KEY, require_tag=True)
    frames = check_feed(reader, chunked(stream, cuts))
    delivered = _delivered(frames)
    # Tag + replay window: only frames the sender made come out, none twice (a byte inserted in front
    # of a frame is garbage the reader salvages the frame from, so "damaged" frames may come out whole).
    assert all(f in sent for f in delivered)
    assert len({f[1] for f in delivered}) == len(delivered)
    for frame in intact:  # damage never costs a frame behind it
        assert (frame[0], frame[1], as_lists(frame[2])) in delivered
    assert len(frames) + sum(reader.drops.values()) >= completed_parts(stream)


@pytest.mark.parametrize("impl", IMPLS)
@fuzz(0.15)
@given(case=mutated_stream(tagged=False))
def test_mutated_untagged_stream_delivers_every_intact_frame(impl: str, case) -> None:
    stream, intact, _, cuts = case
    reader = make_reader(impl)
    frames = check_feed(reader, chunked(stream, cuts))
    delivered = _delivered(frames)
    for frame in intact:  # CRC only: a damaged frame passing as another is a 2^-16 event, so no subset check
        assert (frame[0], frame[1], as_lists(frame[2])) in delivered
    assert len(frames) + sum(reader.drops.values()) >= completed_parts(stream)


# ---------------------------------------------------------------- memory bound


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", ["one_huge_chunk", "endless_no_delimiter", "huge_part_then_frames"])
def test_memory_kept_between_calls_is_bounded(impl: str, shape: str) -> None:
    """Whatever arrives, a reader holds at most about one maximum frame once `feed` returns."""
    reader = make_reader(impl)
    frame = encode_frame(lw.T_HEARTBEAT, [1, 2, 3, 0, 0, False, False], 1, 1, 1)
    feeds: dict[str, Callable[[], Iterator[bytes]]] = {
        "one_huge_chunk": lambda: iter([b"\x05" * 500, b"\x07" * 4_000_000 + b"\x00"]),
        "endless_no_delimiter": lambda: (b"\x09" * 65536 for _ in range(64)),
        "huge_part_then_frames": lambda: iter([b"\x03" * 2_000_000 + frame * 3]),
    }
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for chunk in feeds[shape]():
            reader.feed(chunk)
        del chunk  # the test's own reference to the last chunk
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert kept < 8 * MAX_WIRE, f"{kept} bytes kept by the reader after {shape}"
    # The garbage is counted: TOO_LARGE when it was cut between calls; when it arrives in the same
    # call as the frame behind it, the salvage counts it as one FRAMING drop (both paths agree).
    assert reader.drops[DropReason.TOO_LARGE] + reader.drops[DropReason.FRAMING] >= 1
    if shape == "huge_part_then_frames":
        assert reader.frames == 3  # the frames behind the long run still come out (salvage, SPEC section 1)
