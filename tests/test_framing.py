"""Host framing: FrameReader on the vectors, any chunking, 10,000 damaged frames, authentication,
replay and the compatibility rule.

Every FrameReader test runs on each implementation of the per-chunk work (the pure-Python path and,
when built, the C accelerator `liftwatch.protocol._fastframe`) through the ``make_reader`` fixture.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st
from support.values import as_lists

from liftwatch.protocol import framing
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import (
    MAX_WIRE,
    DropReason,
    Frame,
    FrameReader,
    ReplayGuard,
    encode_frame,
)
from liftwatch.protocol.vectors import generate as gen

VECTORS_DIR = Path(lw.__file__).resolve().parent / "vectors"

FRAMES = json.loads((VECTORS_DIR / "frames.json").read_text(encoding="utf-8"))
CORRUPT = json.loads((VECTORS_DIR / "corrupt.json").read_text(encoding="utf-8"))
TEST_KEY = bytes.fromhex(FRAMES["meta"]["test_key_hex"])
OTHER_KEY = bytes.fromhex(CORRUPT["meta"]["other_key_hex"])

ReaderFactory = Callable[..., FrameReader]


def _fast_available() -> bool:
    return getattr(framing, "_fastframe", None) is not None


@pytest.fixture(params=["python", "c"], scope="module")
def make_reader(request: pytest.FixtureRequest) -> ReaderFactory:
    """FrameReader constructor bound to one implementation of the chunk loop."""
    if request.param == "c":
        if not _fast_available():
            pytest.skip("C accelerator liftwatch.protocol._fastframe is not built")
        return lambda **kw: FrameReader(accelerated=True, **kw)
    if "accelerated" in FrameReader.__dataclass_fields__:
        return lambda **kw: FrameReader(accelerated=False, **kw)
    return FrameReader


def by_name(cases: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(c, id=c["name"]) for c in cases]


def drop_total(reader: FrameReader) -> int:
    return sum(reader.drops.values())


# ---------------------------------------------------------------- vectors


@pytest.mark.parametrize("case", by_name(FRAMES["cases"]))
def test_frame_vector(make_reader: ReaderFactory, case: dict[str, Any]) -> None:
    h = case["header"]
    payload = as_lists(gen.from_json(case["payload"]))
    runs = (
        (make_reader(), case["framed_hex"], h["flags"], False),
        (make_reader(key=TEST_KEY, require_tag=True), case["tagged_hex"], case["tagged_flags"], True),
    )
    for reader, field, flags, tagged in runs:
        wire = bytes.fromhex(field)
        frames = reader.feed(wire)
        if h["type"] not in lw.KNOWN_TYPES:
            assert frames == [] and reader.drops == Counter({DropReason.UNKNOWN_TYPE: 1})
            assert reader.unknown_types == Counter({h["type"]: 1})
            continue
        assert frames == [Frame(h["type"], flags, h["boot_id"], h["seq"], h["t_ms"], payload, tagged, len(wire))]
        assert reader.drops == Counter() and reader.frames == 1


def _host_outcomes(reader: FrameReader, wires: list[bytes]) -> list[str]:
    out = []
    for wire in wires:
        before = reader.drops.copy()
        frames = reader.feed(wire)
        new = reader.drops - before
        if frames:
            assert len(frames) == 1 and not new
            out.append("ok")
        else:
            assert sum(new.values()) == 1, new
            out.append(next(iter(new)).name.lower())
    return out


@pytest.mark.parametrize("case", by_name(CORRUPT["cases"]))
def test_corrupt_vector(make_reader: ReaderFactory, case: dict[str, Any]) -> None:
    key = bytes.fromhex(case["key_hex"]) if case["key_hex"] else None
    wires = [bytes.fromhex(f["wire_hex"]) for f in case["frames"]]
    expect = [f["host"] for f in case["frames"]]
    assert _host_outcomes(make_reader(key=key, require_tag=case["require_tag"]), wires) == expect
    # the same stream in one chunk: same frames and the same drop reasons
    reader = make_reader(key=key, require_tag=case["require_tag"])
    frames = reader.feed(b"".join(wires))
    assert len(frames) == expect.count("ok")
    assert reader.drops == Counter(DropReason[e.upper()] for e in expect if e != "ok")


def test_drop_reason_names_match_lwproto() -> None:
    assert {r.name.lower(): int(r) for r in DropReason} == {
        name: i for i, name in enumerate(lw.REASON_NAMES) if name
    }


# ---------------------------------------------------------------- authentication and replay


def _hb(seq: int, boot_id: int = 7, key: bytes | None = TEST_KEY) -> bytes:
    return encode_frame(lw.T_HEARTBEAT, [seq, 60000, 0, 0, 1, True, False], boot_id, seq, 1000 + seq, key)


def test_each_auth_failure_has_its_typed_reason(make_reader: ReaderFactory) -> None:
    reader = make_reader(key=TEST_KEY, require_tag=True)
    assert len(reader.feed(_hb(1))) == 1
    reader.feed(_hb(2, key=OTHER_KEY))  # wrong key
    reader.feed(_hb(1))  # replayed sequence, same boot
    reader.feed(_hb(900, boot_id=6))  # older boot
    reader.feed(_hb(3, key=None))  # stripped tag while tags are required
    assert reader.drops == Counter({DropReason.AUTH: 2, DropReason.REPLAY: 2})
    assert [f.seq for f in reader.feed(_hb(3) + _hb(5) + _hb(4))] == [3, 5, 4]  # late inside the window


def test_untagged_frames_pass_when_tags_are_not_required(make_reader: ReaderFactory) -> None:
    reader = make_reader(key=TEST_KEY)
    assert [f.tagged for f in reader.feed(_hb(1, key=None) + _hb(2))] == [False, True]


def test_key_rotation_promotes_the_next_key_and_then_refuses_the_old(make_reader: ReaderFactory) -> None:
    reader = make_reader(key=TEST_KEY, next_key=OTHER_KEY, require_tag=True)
    assert len(reader.feed(_hb(1) + _hb(2, key=OTHER_KEY))) == 2
    assert reader.key == OTHER_KEY and reader.key_rotations == 1
    assert reader.feed(_hb(3)) == [] and reader.drops == Counter({DropReason.AUTH: 1})


def test_replay_guard_window_and_wraps() -> None:
    guard = ReplayGuard()
    assert guard.check(5, 65534) and guard.check(5, 65535) and guard.check(5, 0)  # seq wraps
    assert not guard.check(5, 65535)
    assert guard.check(5, 100)
    assert guard.check(5, 100 - 63) and not guard.check(5, 100 - 64)  # window of 64
    assert not guard.check(4, 101)  # older boot
    assert guard.check(0, 0) is False  # 0 is older than 5 in serial arithmetic
    assert guard.check(5 + 0x7FFF, 3)  # newer boot (wrap-aware), any seq
    assert guard.state() == (5 + 0x7FFF, 3, 1)
    wrapped = ReplayGuard(boot_id=65535, top_seq=10, seen=1)
    assert wrapped.check(0, 0)  # boot counter wraps 65535 -> 0


# ---------------------------------------------------------------- compatibility rule


def test_unknown_type_is_skipped_and_counted_and_reading_goes_on(make_reader: ReaderFactory) -> None:
    reader = make_reader()
    stream = encode_frame(200, [1], 7, 1, 10) + _hb(2, key=None) + encode_frame(201, [], 7, 3, 12) + _hb(4, key=None)
    assert [f.seq for f in reader.feed(stream)] == [2, 4]
    assert reader.unknown_types == Counter({200: 1, 201: 1})
    assert reader.drops == Counter({DropReason.UNKNOWN_TYPE: 2})


def test_flag_bits_must_understand_versus_may_ignore(make_reader: ReaderFactory) -> None:
    """Bits 1-3 are must-understand (none known in v1: drop), bits 4-7 may be ignored (deliver).
    Bit 0 (TAGGED) is covered by the tag tests."""
    reader = make_reader()
    delivered = []
    for bit in range(1, 8):
        delivered += reader.feed(gen.encode(lw.T_STATE, 7, bit, 100, [100, 1, 1, 0], extra_flags=1 << bit))
    assert [(f.seq, f.flags) for f in delivered] == [(4, 0x10), (5, 0x20), (6, 0x40), (7, 0x80)]
    assert reader.drops == Counter({DropReason.BAD_FLAGS: 3})


def test_extra_trailing_payload_fields_reach_the_message_layer(make_reader: ReaderFactory) -> None:
    from liftwatch.protocol.messages import decode_message

    case = next(c for c in FRAMES["cases"] if c["name"] == "heartbeat_extra_fields")
    (frame,) = make_reader().feed(bytes.fromhex(case["framed_hex"]))
    assert len(frame.payload) == 9
    unknown: Counter = Counter()
    hb = decode_message(frame, unknown)
    assert hb.uptime_s == 1045 and hb.safe_mode is False
    assert unknown == Counter({"HEARTBEAT": 2})


# ---------------------------------------------------------------- streams and chunking


def _random_frame(draw: Any, seq: int) -> bytes:
    payload = draw(
        st.lists(
            st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=40)
            | st.binary(max_size=300),
            max_size=8,
        )
    )
    mtype = draw(st.sampled_from(sorted(lw.KNOWN_TYPES)))
    return encode_frame(mtype, payload, draw(st.integers(0, 0xFFFF)), seq, draw(st.integers(0, lw.T_MS_MODULO - 1)))


@st.composite
def streams(draw: Any) -> tuple[bytes, int]:
    """Frames, each maybe behind junk of up to 100 bytes (0x00 allowed); parts stay < MAX_WIRE."""
    out = bytearray()
    n = draw(st.integers(0, 12))
    for seq in range(n):
        out += draw(st.binary(max_size=100))
        out += _random_frame(draw, seq)
    out += draw(st.binary(max_size=50))  # an unfinished tail
    return bytes(out), n


@settings(max_examples=100, deadline=None)
@given(streams(), st.lists(st.integers(1, 700), min_size=1, max_size=50))
def test_any_chunking_yields_the_same_frames_and_drops(make_reader: ReaderFactory, stream: tuple[bytes, int],
                                                       sizes: list[int]) -> None:
    data, n = stream
    whole = make_reader()
    expect = whole.feed(data)
    assert [f.seq for f in expect] == list(range(n))  # junk in front never costs a frame
    chunked = make_reader()
    got: list[Frame] = []
    pos = i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        got += chunked.feed(memoryview(data)[pos : pos + size] if i % 2 else data[pos : pos + size])
        pos += size
        i += 1
    assert got == expect
    assert chunked.drops == whole.drops


def test_vectors_byte_by_byte(make_reader: ReaderFactory) -> None:
    data = b"".join(bytes.fromhex(c["framed_hex"]) for c in FRAMES["cases"])
    whole = make_reader().feed(data)
    reader = make_reader()
    got = [f for i in range(len(data)) for f in reader.feed(data[i : i + 1])]
    assert got == whole and len(got) == len(FRAMES["cases"]) - 1  # all but the unknown type


def test_long_garbage_costs_one_drop_and_not_the_next_frame(make_reader: ReaderFactory) -> None:
    reader = make_reader()
    junk = bytes(range(1, 256)) * 20  # 5100 bytes, no delimiter
    out = []
    for i in range(0, len(junk), 97):
        out += reader.feed(junk[i : i + 97])
    out += reader.feed(b"\x00" + _hb(1, key=None))
    assert [f.seq for f in out] == [1]
    # one TOO_LARGE while it streams in; the newest MAX_WIRE bytes kept (they could have held the
    # start of a frame) are dropped at the delimiter as what they are
    assert reader.drops[DropReason.TOO_LARGE] == 1 and drop_total(reader) == 2


def test_garbage_glued_to_a_frame_is_salvaged(make_reader: ReaderFactory) -> None:
    reader = make_reader()
    frames = reader.feed(b"boot: rst:0x1 (POWERON)\r\n" + _hb(1, key=None) + b"\xff\x01\x02" + _hb(2, key=None))
    assert [f.seq for f in frames] == [1, 2]
    assert reader.drops == Counter({DropReason.FRAMING: 2})


# Garbage crafted so that a frame could start every few bytes (issue 14, item 7): `02 01` repeated,
# and patterns that also pass salvage's header filter (code byte, ver 1, a known type, clean flags).
CRAFTED_GARBAGE = (b"\x02\x01" * 515, b"\x05\x01\x01\x01\x01" * 206, b"\x04\x01\x01\x01" * 257,
                   b"\x03\x01\x07" * 343)


@pytest.mark.parametrize("accelerated", [False, True])
def test_crafted_garbage_costs_a_bounded_number_of_checks(accelerated: bool) -> None:
    if accelerated and not _fast_available():
        pytest.skip("C accelerator liftwatch.protocol._fastframe is not built")

    class CountingReader(FrameReader):
        checks = 0

        def _check(self, part):  # type: ignore[no-untyped-def]
            CountingReader.checks += 1
            return super()._check(part)

    for garbage in CRAFTED_GARBAGE:
        CountingReader.checks = 0
        reader = CountingReader(accelerated=accelerated)
        parts = 20
        assert reader.feed((garbage + b"\x00") * parts) == []
        assert drop_total(reader) == parts  # each part counted once, as what it is
        # one check of the part itself, then at most MAX_SALVAGE_TRIES offsets (hundreds without the bound)
        assert CountingReader.checks <= parts * (1 + framing.MAX_SALVAGE_TRIES)
        assert reader.salvage_tries <= parts * framing.MAX_SALVAGE_TRIES
        # and the bound never hides a frame glued behind such garbage: the search starts at the end
        frames = reader.feed(garbage[-800:] + _hb(1, key=None))
        assert [f.seq for f in frames] == [1] and reader.drops[DropReason.FRAMING] >= 1


def test_frame_fields_and_repr() -> None:
    frame = FrameReader().feed(_hb(9, key=None))[0]
    assert (frame.type, frame.boot_id, frame.seq, frame.t_ms, frame.tagged) == (lw.T_HEARTBEAT, 7, 9, 1009, False)
    assert frame.wire_len == len(_hb(9, key=None)) and frame.flags == 0
    assert "seq=9" in repr(frame)


def test_encode_frame_refuses_an_oversized_body() -> None:
    with pytest.raises(ValueError):
        encode_frame(lw.T_ACK, [b"\x01" * 1010], 1, 1, 1)


# ---------------------------------------------------------------- corruption

CORRUPTION_SEED = 20261125
CORRUPTION_FRAMES = 10_000


def _corruption_frames(rng: random.Random) -> list[bytes]:
    """10,000 valid frames of the sampling path's mix: VIB, STATE, HEARTBEAT, STATS, EVENT."""
    blocks = [gen.realistic_vib_samples(64, seed=s) for s in range(16)]
    frames = []
    for i in range(CORRUPTION_FRAMES):
        t_ms = 1000 + 40 * i
        kind = rng.random()
        if kind < 0.5:
            mtype, payload = lw.T_VIB, [400, 16384, (64 * i) & 0xFFFF, 64, blocks[i % 16]]
        elif kind < 0.7:
            mtype, payload = lw.T_STATE, [t_ms - 3, rng.getrandbits(6), rng.getrandbits(6), rng.randrange(4)]
        elif kind < 0.85:
            mtype, payload = lw.T_HEARTBEAT, [i, 60000 - i, rng.randrange(8), 0, 1, True, False]
        elif kind < 0.95:
            mtype, payload = lw.T_STATS, [10000, 1000, [3, -20, 996], [1, 2, 1], rng.randrange(50), 0]
        else:
            mtype, payload = lw.T_EVENT, [i, 2, 1, t_ms, {"leveling_offset_mm": rng.randrange(-300, 300)}]
        frames.append(encode_frame(mtype, payload, 263, i & 0xFFFF, t_ms))
    return frames


def _damage(rng: random.Random, wire: bytes) -> tuple[bytes, str]:
    """One kind of damage inside a frame (its delimiter included)."""
    n = len(wire)
    kind = rng.choice(("flip", "insert", "delete", "truncate"))
    out = bytearray(wire)
    if kind == "flip":  # 1-3 bytes XORed with a non-zero mask: may create or destroy a 0x00
        for pos in rng.sample(range(n), rng.randint(1, min(3, n))):
            out[pos] ^= rng.randint(1, 255)
    elif kind == "insert":  # 1-8 random bytes strictly inside
        pos = rng.randint(1, n - 1)
        out[pos:pos] = rng.randbytes(rng.randint(1, 8))
    elif kind == "delete":  # 1-8 bytes, possibly the delimiter (the frame then runs into the next)
        pos = rng.randrange(n)
        del out[pos : pos + rng.randint(1, 8)]
    else:  # cut short: the line went idle (delimiter kept) or the next frame follows directly
        out = out[: rng.randint(1, n - 2)] + (b"\x00" if rng.random() < 0.5 else b"")
    return bytes(out), kind


def _build_damaged_stream(rng: random.Random, frames: list[bytes]) -> tuple[bytes, list[int]]:
    """The frames with damage inside 40% of them and junk between 10% of them; the indexes of
    frames left intact (their own bytes and delimiter untouched: junk in front does not count)."""
    stream = bytearray()
    intact = []
    for i, wire in enumerate(frames):
        if rng.random() < 0.10:
            stream += rng.randbytes(rng.randint(1, 40))
        if rng.random() < 0.40:
            damaged, _ = _damage(rng, wire)
            stream += damaged
        else:
            stream += wire
            intact.append(i)
    return bytes(stream), intact


def test_ten_thousand_damaged_frames(make_reader: ReaderFactory) -> None:
    """Every intact frame is delivered exactly once and in order; every damaged part is counted as
    dropped with a reason; no damaged frame is delivered (altered or not).

    Expected false-accept probability: a damaged frame is only delivered if its damaged bytes still
    decode as COBS into at least a header and a CRC, pass CRC-16/CCITT-FALSE, the header checks and
    parse as msgpack of exactly the right length. The CRC catches every error burst of up to 16 bits
    (so every single-byte flip) and any odd number of flipped bits; any other damage passes it with
    probability 2**-16. With this seed about 4,400 parts are damaged and about 1,180 of them reach
    the CRC (the rest already fail COBS), so the expected number of false accepts per run is at most
    1,180 / 2**16 ~= 0.018 (P(any) < 2%), lower still because length-changing damage then fails the
    msgpack length. The test computes that bound and keeps it under 5%; the fixed seed makes the run
    deterministic, so a failure on a new seed must first be checked for that chance event.
    """
    rng = random.Random(CORRUPTION_SEED)
    frames = _corruption_frames(rng)
    stream, intact = _build_damaged_stream(rng, frames)
    reference = make_reader()
    expected = [f for i in intact for f in reference.feed(frames[i])]  # each intact frame, decoded alone
    assert len(expected) == len(intact) and reference.drops == Counter()

    # Expected drops: every non-empty part between delimiters that is not exactly an intact frame is
    # one drop (a salvaged frame behind junk counts the junk as FRAMING). A part longer than
    # MAX_WIRE may count once more when it is trimmed while still arriving.
    intact_parts = Counter(frames[i][:-1] for i in intact)
    bad_parts = [p for p in stream.split(b"\x00") if p and not intact_parts[p]]
    long_parts = sum(len(p) > MAX_WIRE for p in bad_parts)

    reader = make_reader()
    chunk_rng = random.Random(CORRUPTION_SEED + 1)
    got: list[Frame] = []
    pos = 0
    while pos < len(stream):
        size = chunk_rng.choice((1, 7, 64, 413, 1024, 4096)) if chunk_rng.random() < 0.3 else 4096
        got += reader.feed(stream[pos : pos + size])
        pos += size

    reach_crc = 0
    for part in bad_parts:
        try:
            reach_crc += len(cobs.decode(part)) >= lw.HEADER_LEN + lw.CRC_LEN
        except cobs.DecodeError:
            pass
    assert reach_crc / 2**16 < 0.05, f"{reach_crc} damaged parts reach the CRC: false accepts become likely"

    altered = [f for f in got if f not in expected]
    assert not altered, f"{len(altered)} damaged frame(s) delivered: {altered[:3]}"
    assert got == expected  # each intact frame exactly once, in order
    assert all(isinstance(r, DropReason) for r in reader.drops)
    assert len(bad_parts) <= drop_total(reader) <= len(bad_parts) + long_parts, reader.drops
    assert len(intact) < 0.7 * CORRUPTION_FRAMES and len(bad_parts) > 3000  # the damage really happened
    assert {DropReason.CRC, DropReason.FRAMING} <= set(reader.drops)


# ---------------------------------------------------------------- the C accelerator's own parts

fast = pytest.mark.skipif(not _fast_available(), reason="C accelerator liftwatch.protocol._fastframe is not built")


@fast
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1100), st.integers(0, 0xFFFF))
def test_fast_crc16_equals_binascii(data: bytes, init: int) -> None:
    from binascii import crc_hqx

    assert framing._fastframe.crc16(data, init) == crc_hqx(data, init)  # PCLMUL where the CPU has it
    assert framing._fastframe.crc16_tables(data, init) == crc_hqx(data, init)  # e.g. a Raspberry Pi


@fast
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1100))
def test_fast_cobs_decode_round_trips(data: bytes) -> None:
    assert framing._fastframe.cobs_decode(cobs.encode(data)) == data


@fast
@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([1, 2, 3, 7, 0xFE, 0xFF]) | st.integers(1, 255), min_size=1, max_size=600))
def test_fast_cobs_decode_refuses_what_cobs_refuses(values: list[int]) -> None:
    part = bytes(values)
    try:
        expect = cobs.decode(part)
    except cobs.DecodeError:
        expect = None
    assert framing._fastframe.cobs_decode(part) == expect


_part = st.lists(st.sampled_from([1, 2, 3, 7, 0xFE, 0xFF]) | st.integers(1, 255), min_size=1, max_size=600).map(bytes)


@fast
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1020) | _part, st.binary(max_size=1020) | _part)
def test_fast_two_chain_cobs_decoder_equals_cobs(a: bytes, b: bytes) -> None:
    """The splitter decodes frames in pairs; each result must be what cobs gives for it alone."""

    def part_and_expect(x: bytes) -> tuple[bytes, bytes | None]:
        if b"\x00" in x or not x:
            return cobs.encode(x), x
        try:
            return x, cobs.decode(x)
        except cobs.DecodeError:
            return x, None

    (pa, ea), (pb, eb) = part_and_expect(a), part_and_expect(b)
    assert framing._fastframe.cobs_decode_pair(pa, pb) == (ea, eb)


@fast
def test_fast_layout_matches_lwproto() -> None:
    assert framing._fastframe.LAYOUT == (lw.VERSION, lw.HEADER_LEN, lw.TAG_LEN, lw.MAX_BODY, lw.MAX_WIRE,
                                         lw.FLAGS_INCOMPAT_KNOWN)
    assert FrameReader().accelerated  # the default when built


@st.composite
def hostile_streams(draw: Any) -> bytes:
    """Everything a link can carry: good frames (tagged under either key, untagged, unknown types),
    damaged ones, junk with and without 0x00, runs longer than any frame."""
    out = bytearray()
    for seq in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["plain", "tagged", "other_key", "unknown", "damaged", "junk", "long"]))
        key = {"tagged": TEST_KEY, "other_key": OTHER_KEY}.get(kind)
        wire = encode_frame(200 if kind == "unknown" else lw.T_STATE, [seq, 1, 0, 2],
                            draw(st.sampled_from([6, 7])), draw(st.sampled_from([seq, seq // 2])), seq, key)
        if kind == "damaged":
            wire = _damage(random.Random(draw(st.integers(0, 2**32))), wire)[0]
        elif kind == "junk":
            wire = draw(st.binary(max_size=80))
        elif kind == "long":
            wire = bytes(range(1, 256)) * draw(st.integers(4, 10)) + draw(st.sampled_from([b"", b"\x00"]))
        out += wire
    return bytes(out)


@fast
@settings(max_examples=300, deadline=None)
@given(hostile_streams(), st.lists(st.integers(1, 3000), min_size=1, max_size=20),
       st.sampled_from([(None, False, None), (TEST_KEY, False, None), (TEST_KEY, True, None),
                        (None, True, None), (TEST_KEY, True, OTHER_KEY)]))
def test_c_and_python_paths_agree_on_any_stream(stream: bytes, sizes: list[int],
                                                config: tuple[bytes | None, bool, bytes | None]) -> None:
    key, require_tag, next_key = config
    readers = [FrameReader(key=key, require_tag=require_tag, next_key=next_key, accelerated=flag)
               for flag in (False, True)]
    outputs: list[list[Frame]] = [[], []]
    pos = i = 0
    while pos < len(stream):
        chunk = stream[pos : pos + sizes[i % len(sizes)]]
        for reader, out in zip(readers, outputs):
            out += reader.feed(chunk)
        pos += len(chunk)
        i += 1
    python, c = readers
    assert outputs[0] == outputs[1]
    assert (python.drops, python.frames, python.unknown_types, python.key, python.key_rotations) == (
        c.drops, c.frames, c.unknown_types, c.key, c.key_rotations)
    assert python.replay.state() == c.replay.state()


def test_accelerated_without_the_extension_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(framing, "_fastframe", None)
    with pytest.raises(ValueError, match="not built"):
        FrameReader(accelerated=True)
    assert FrameReader(accelerated=False).feed(_hb(1, key=None))[0].seq == 1
