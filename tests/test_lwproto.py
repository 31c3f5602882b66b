"""lwproto under CPython: the test vectors, msgpack equality with the real `msgpack`, COBS and CRC
against the `cobs` package and binascii, the board-side FrameDecoder and FrameAssembler.

The same vectors run under MicroPython in tests/test_lwproto_micropython.py.
"""

from __future__ import annotations

import json
import math
import re
import struct
from binascii import crc_hqx
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st
from support.values import as_lists

from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import encode_frame
from liftwatch.protocol.vectors import generate as gen

VECTORS_DIR = Path(lw.__file__).resolve().parent / "vectors"




def vectors(name: str) -> dict[str, Any]:
    return json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))


FRAMES = vectors("frames.json")
MSGPACK = vectors("msgpack.json")
CORRUPT = vectors("corrupt.json")
TEST_KEY = bytes.fromhex(FRAMES["meta"]["test_key_hex"])


def by_name(cases: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(c, id=c["name"]) for c in cases]


# ---------------------------------------------------------------- the vectors themselves


def test_committed_vectors_equal_a_fresh_generation() -> None:
    for name, text in gen.generate().items():
        assert (VECTORS_DIR / name).read_text(encoding="utf-8") == text, f"{name} is stale: run generate.py"


def test_generator_check_flags_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in gen.generate():
        (tmp_path / name).write_text((VECTORS_DIR / name).read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(gen, "VECTORS_DIR", tmp_path)
    assert gen.main(["--check"]) == 0
    (tmp_path / "corrupt.json").write_text("{}", encoding="utf-8")
    assert gen.main(["--check"]) == 1


def test_vectors_cover_every_message_type_and_every_drop_reason() -> None:
    assert {c["type"] for c in FRAMES["cases"]} >= set(lw.KNOWN_TYPES)
    host = {f["host"] for c in CORRUPT["cases"] for f in c["frames"]}
    assert host == {"ok"} | {n for n in lw.REASON_NAMES if n}


def test_spec_worked_examples_are_vectors() -> None:
    """SPEC.md section 6 says its worked examples are in the vectors: every wire hex shown there is
    the framed (or, for the tagged example, tagged) hex of a spec_* case, byte for byte."""
    spec = (VECTORS_DIR.parent / "SPEC.md").read_text(encoding="utf-8")
    examples = spec.split("## 6. Worked examples", 1)[1].split("\n## ", 1)[0]
    wires = []
    for block in re.findall(r"^wire[^\n]*\n(?: {9}[0-9a-f ]+\n)*", examples, re.M):
        hex_part = re.sub(r"^wire(?: \(\d+ bytes\))? +", "", block)
        wires.append("".join(re.findall(r"\b[0-9a-f]{2}\b", hex_part)))
    cases = {c["name"]: c for c in FRAMES["cases"] if c["name"].startswith("spec_")}
    assert len(wires) == len(cases) == 5
    assert wires[:3] == [cases[n]["framed_hex"] for n in ("spec_heartbeat", "spec_state", "spec_vib")]
    assert wires[3] == cases["spec_control_calibrate"]["tagged_hex"]
    assert wires[4] == cases["spec_journal_trip"]["framed_hex"]


def test_vectors_file_layout_is_one_case_per_line() -> None:
    """The MicroPython script streams the files line by line on a 96 KiB heap."""
    for name in ("frames.json", "msgpack.json", "corrupt.json"):
        lines = (VECTORS_DIR / name).read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith('{"meta": ') and lines[1] == '"cases": [' and lines[-1] == "]}"
        for line in lines[2:-1]:
            json.loads(line.removesuffix(","))


def test_realistic_vib_samples_look_like_a_running_car() -> None:
    raw = gen.realistic_vib_samples(64, seed=1)
    xyz = struct.unpack("<192h", raw)
    z = xyz[2::3]
    assert abs(sum(z) / 64 - 16384) < 500  # gravity, 1 g = 16384 counts
    assert 50 < max(abs(v) for v in xyz[0::3]) < 1000  # lateral ride vibration, tens of mg
    assert all(v % 4 == 0 for v in xyz)  # 14-bit left-justified
    assert raw.count(0) > 20  # why COBS has many short blocks on VIB frames


# ---------------------------------------------------------------- msgpack


@pytest.mark.parametrize("case", by_name(MSGPACK["cases"]))
def test_msgpack_vector(case: dict[str, Any]) -> None:
    obj = gen.from_json(case["object"])
    single = case["single_float"]
    expect = bytes.fromhex(case["msgpack_hex"])
    assert lw.packb(obj, single) == expect
    assert msgpack.packb(obj, use_bin_type=True, use_single_float=single) == expect
    back = lw.unpackb(expect)
    if single:
        assert back == struct.unpack(">f", struct.pack(">f", obj))[0]
    else:
        assert back == obj
        assert msgpack.unpackb(expect, raw=False) == obj


def test_pack_into_smaller_types_and_memoryview() -> None:
    buf = bytearray(16)
    assert lw.pack_into(buf, 3, memoryview(b"ab")) == 3 + 4
    assert bytes(buf[3:7]) == b"\xc4\x02ab"
    assert lw.packb(bytearray(b"\x00")) == b"\xc4\x01\x00"
    assert lw.packb((1, 2)) == msgpack.packb((1, 2))


def test_int_enum_packs_as_its_value() -> None:
    import enum

    class Kind(enum.IntEnum):
        SAFE_MODE = 5

    assert lw.packb([Kind.SAFE_MODE]) == b"\x91\x05"


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1])
def test_int_out_of_msgpack_range_raises(value: int) -> None:
    with pytest.raises(OverflowError):
        lw.packb(value)


def test_unsupported_type_raises_type_error() -> None:
    with pytest.raises(TypeError):
        lw.packb({1, 2})


@pytest.mark.parametrize("obj", ["hello", b"hello", [1, 2, 3, 4, 5]])
def test_pack_into_full_buffer_raises_index_error_and_never_grows_it(obj: Any) -> None:
    """On the board an overrun would be a write past the buffer (viper copies unchecked)."""
    buf = bytearray(4)
    with pytest.raises(IndexError):
        lw.pack_into(buf, 0, obj)
    assert len(buf) == 4


def test_copy_into_refuses_a_short_source() -> None:
    with pytest.raises(IndexError):
        lw.copy_into(bytearray(10), 0, b"abc", 1, 3)


_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=300)
    | st.binary(max_size=300)
)
# JSON-like trees of everything the protocol uses; tuples pack as arrays, like lists.
_objects = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=20)
    | st.lists(inner, max_size=5).map(tuple)
    | st.dictionaries(st.text(max_size=20) | st.integers(-(2**31), 2**32), inner, max_size=20),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(_objects)
def test_packb_equals_msgpack_and_round_trips(obj: Any) -> None:
    packed = lw.packb(obj)
    assert packed == msgpack.packb(obj, use_bin_type=True)
    assert lw.unpackb(packed) == as_lists(obj)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False), max_size=10))
def test_single_float_equals_msgpack_float32_and_round_trips(values: list[float]) -> None:
    packed = lw.packb(values, single_float=True)
    assert packed == msgpack.packb(values, use_bin_type=True, use_single_float=True)
    assert lw.unpackb(packed) == values  # float32-representable values survive exactly


def test_nan_packs_like_msgpack() -> None:
    packed = lw.packb(math.nan)
    assert packed == msgpack.packb(math.nan)
    assert math.isnan(lw.unpackb(packed))


@settings(max_examples=200, deadline=None)
@given(_objects, st.data())
def test_every_strict_prefix_is_refused_as_bad_payload(obj: Any, data: st.DataObject) -> None:
    packed = lw.packb(obj)
    cut = data.draw(st.integers(0, len(packed) - 1))
    with pytest.raises(lw.ProtocolError) as err:
        lw.unpackb(packed[:cut])
    assert err.value.reason == lw.R_BAD_PAYLOAD


def test_unpack_refuses_deep_nesting_ext_and_bad_keys() -> None:
    deep = b"\x91" * (lw.MAX_DEPTH + 2) + b"\x00"
    for bad in (deep, b"\xd4\x01\x00", b"\x81\xc0\x00", b"\xa2\xff\xfe", b"\x00\x00"):
        with pytest.raises(lw.ProtocolError) as err:
            lw.unpackb(bad)
        assert err.value.reason == lw.R_BAD_PAYLOAD, bad
    ok = b"\x91" * lw.MAX_DEPTH + b"\x00"
    assert lw.unpackb(ok) is not None


def test_unpack_refuses_absurd_lengths_before_allocating() -> None:
    for bad in (b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff\x00"):
        with pytest.raises(lw.ProtocolError):
            lw.unpackb(bad)


# ---------------------------------------------------------------- CRC, COBS, HMAC


def test_crc16_check_value_and_running_crc() -> None:
    assert lw.crc16(b"123456789", 0, 9) == 0x29B1
    assert lw.crc16(b"xx123456789", 2, 11) == 0x29B1
    assert lw.crc16(b"56789", 0, 5, lw.crc16(b"1234", 0, 4)) == 0x29B1


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600))
def test_board_crc_table_equals_binascii(data: bytes) -> None:
    """The table the board's viper CRC reads (the viper code itself runs in the MicroPython tests)."""
    crc = 0xFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ lw._CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]
    assert crc == crc_hqx(data, 0xFFFF)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1100))
def test_cobs_encode_equals_cobs_package_and_round_trips(data: bytes) -> None:
    out = bytearray(len(data) + len(data) // 254 + 1)
    n = lw.cobs_encode_into(data, len(data), out)
    assert bytes(out[:n]) == cobs.encode(data)
    back = bytearray(n)
    m = lw.cobs_decode_into(out, n, back)
    assert bytes(back[:m]) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=600).filter(lambda b: b"\x00" not in b))
def test_cobs_decode_agrees_with_cobs_package_on_any_input(data: bytes) -> None:
    out = bytearray(len(data))
    n = lw.cobs_decode_into(data, len(data), out)
    try:
        expect = cobs.decode(data)
    except cobs.DecodeError:
        assert n == -1
    else:
        assert bytes(out[:n]) == expect


def test_copy_into_copies_without_touching_neighbours() -> None:
    dst = bytearray(b"..........")
    lw.copy_into(dst, 2, b"abcdef", 1, 4)
    assert dst == bytearray(b"..bcde....")


# ---------------------------------------------------------------- frames: encoder


def _sender(case: dict[str, Any]) -> int:
    return lw.FROM_HOST if case["sender"] == "host" else lw.FROM_BOARD


def _encode_with_lwproto(case: dict[str, Any], key: bytes | None) -> bytes:
    h = case["header"]
    return gen.encode(h["type"], h["boot_id"], h["seq"], h["t_ms"], gen.from_json(case["payload"]), key, h["flags"],
                      _sender(case))


@pytest.mark.parametrize("case", by_name(FRAMES["cases"]))
def test_frame_vector_encoding(case: dict[str, Any]) -> None:
    h = case["header"]
    payload = gen.from_json(case["payload"])
    assert msgpack.packb(payload, use_bin_type=True).hex() == case["msgpack_hex"]
    assert lw.packb(payload).hex() == case["msgpack_hex"]
    sender = _sender(case)
    enc = lw.FrameEncoder(sender=sender)
    if not h["flags"] & ~lw.FLAG_FROM_HOST:
        n = enc.encode(h["type"], h["boot_id"], h["seq"], h["t_ms"], payload)
        assert bytes(enc.wire[:n]).hex() == case["framed_hex"]
        # the independent host path: msgpack + cobs + hmac + the C (or reference) Chaskey
        assert encode_frame(h["type"], payload, h["boot_id"], h["seq"], h["t_ms"],
                            sender=sender).hex() == case["framed_hex"]
        tagged = encode_frame(h["type"], payload, h["boot_id"], h["seq"], h["t_ms"], key=TEST_KEY, sender=sender)
        assert tagged.hex() == case["tagged_hex"]
    else:
        assert _encode_with_lwproto(case, None).hex() == case["framed_hex"]
    wire = bytes.fromhex(case["framed_hex"])
    body = cobs.decode(wire[:-1])
    assert body[:lw.HEADER_LEN] == struct.pack("<BBBHHI", 2, h["type"], h["flags"], h["boot_id"], h["seq"], h["t_ms"])
    assert body[lw.HEADER_LEN:-2].hex() == case["msgpack_hex"]
    assert crc_hqx(body, 0xFFFF) == 0
    assert wire.count(0) == 1 and wire[-1] == 0


def test_vib_frame_is_built_from_the_allocation_free_primitives() -> None:
    """The board path: begin, pack_array_header, pack_int, pack_bin_from, finish."""
    case = next(c for c in FRAMES["cases"] if c["name"] == "vib_64")
    h = case["header"]
    rate_hz, lsb_per_g, first_index, count, samples = gen.from_json(case["payload"])
    for key, field in ((None, "framed_hex"), (TEST_KEY, "tagged_hex")):
        enc = lw.FrameEncoder(key)
        off = enc.begin(lw.T_VIB, h["boot_id"], h["seq"], h["t_ms"])
        off = lw.pack_array_header(enc.body, off, 5)
        for v in (rate_hz, lsb_per_g, first_index, count):
            off = lw.pack_int(enc.body, off, v)
        ring = bytearray(1000)
        ring[100 : 100 + len(samples)] = samples
        off = lw.pack_bin_from(enc.body, off, ring, 100, len(samples))
        n = enc.finish(off)
        assert bytes(enc.wire[:n]).hex() == case[field]


def test_encoder_refuses_a_body_over_the_maximum() -> None:
    enc = lw.FrameEncoder()
    with pytest.raises(lw.ProtocolError) as err:
        enc.encode(lw.T_ACK, 1, 1, 1, [b"\x01" * 1010])
    assert err.value.reason == lw.R_TOO_LARGE
    tagged = lw.FrameEncoder(TEST_KEY)
    with pytest.raises(lw.ProtocolError):
        tagged.encode(lw.T_ACK, 1, 1, 1, [b"\x01" * 1000])
    assert tagged.encode(lw.T_ACK, 1, 1, 1, [b"\x01" * 990]) > 1000


# ---------------------------------------------------------------- frames: board-side decoder


@pytest.mark.parametrize("case", by_name(FRAMES["cases"]))
def test_frame_vector_board_decoding(case: dict[str, Any]) -> None:
    h = case["header"]
    payload = as_lists(gen.from_json(case["payload"]))
    for key, field, flags in ((None, "framed_hex", h["flags"]), (TEST_KEY, "tagged_hex", case["tagged_flags"])):
        wire = bytes.fromhex(case[field])
        got = lw.FrameDecoder(key, sender=_sender(case)).decode(wire, len(wire) - 1)
        assert got == (h["type"], flags, h["boot_id"], h["seq"], h["t_ms"], payload)
        # the other end's decoder refuses it: a frame fed back to its sender is never taken for the other's
        other = lw.FROM_BOARD if _sender(case) == lw.FROM_HOST else lw.FROM_HOST
        with pytest.raises(lw.ProtocolError) as err:
            lw.FrameDecoder(key, sender=other).decode(wire, len(wire) - 1)
        assert err.value.reason == lw.R_DIRECTION
    assert lw.unpackb(bytes.fromhex(case["msgpack_hex"])) == payload


@settings(max_examples=100, deadline=None)
@given(st.lists(_objects, max_size=4), st.integers(1, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.integers(0, lw.T_MS_MODULO - 1), st.booleans(), st.sampled_from([lw.FROM_BOARD, lw.FROM_HOST]))
def test_frame_encoder_equals_host_encoder_and_decodes_back(payload: list[Any], mtype: int, boot_id: int, seq: int,
                                                            t_ms: int, tagged: bool, sender: int) -> None:
    key = TEST_KEY if tagged else None
    try:
        expect = encode_frame(mtype, payload, boot_id, seq, t_ms, key, sender=sender)
    except ValueError:  # larger than a frame: the board encoder refuses it too
        with pytest.raises(lw.ProtocolError):
            lw.FrameEncoder(key, sender=sender).encode(mtype, boot_id, seq, t_ms, payload)
        return
    enc = lw.FrameEncoder(key, sender=sender)
    n = enc.encode(mtype, boot_id, seq, t_ms, payload)
    assert bytes(enc.wire[:n]) == expect
    decoder = lw.FrameDecoder(key, sender=sender)
    if not lw.direction_check(expect_flags := int(tagged) | (lw.FLAG_FROM_HOST if sender else 0), mtype, sender):
        with pytest.raises(lw.ProtocolError) as err:  # a type this sender never sends
            decoder.decode(expect, len(expect) - 1)
        assert err.value.reason == lw.R_DIRECTION
        return
    got = decoder.decode(expect, len(expect) - 1)
    assert got == (mtype, expect_flags, boot_id, seq, t_ms, as_lists(payload))


def _board_outcome(decoder: lw.FrameDecoder, wire: bytes) -> str:
    try:
        decoder.decode(wire, len(wire) - 1)
    except lw.ProtocolError as err:
        return lw.REASON_NAMES[err.reason]
    return "ok"


@pytest.mark.parametrize("case", by_name(CORRUPT["cases"]))
def test_corrupt_vector_board_decoder(case: dict[str, Any]) -> None:
    key = bytes.fromhex(case["key_hex"]) if case["key_hex"] else None
    decoder = lw.FrameDecoder(key, sender=lw.FROM_BOARD)  # every corrupt stream is a board's
    got = [_board_outcome(decoder, bytes.fromhex(f["wire_hex"])) for f in case["frames"]]
    assert got == [f["board"] for f in case["frames"]]


def test_protocol_error_carries_reason_and_message() -> None:
    err = lw.ProtocolError(lw.R_AUTH, "bad tag")
    assert err.reason == lw.R_AUTH and str(err) == "auth: bad tag" and isinstance(err, ValueError)


# ---------------------------------------------------------------- board-side stream assembly


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=40))
def test_frame_assembler_any_chunking_yields_the_same_frames(cuts: list[int]) -> None:
    wires = [bytes.fromhex(c["framed_hex"]) for c in FRAMES["cases"][:8]]
    stream = b"\x00\x00" + b"".join(wires)
    asm = lw.FrameAssembler()
    got = []
    pos = 0
    i = 0
    while pos < len(stream):
        size = cuts[i % len(cuts)]
        i += 1
        chunk = stream[pos : pos + size]
        pos += size
        start = 0
        while start < len(chunk):
            nxt = asm.push(chunk, start, len(chunk) - start)
            if nxt < 0:
                break
            got.append(bytes(asm.frame[: asm.length]) + b"\x00")
            start = nxt
    assert got == wires


def test_frame_assembler_skips_an_overlong_frame_and_keeps_the_next() -> None:
    asm = lw.FrameAssembler(max_wire=16)
    good = b"\x03ab\x02c"
    stream = b"\x01" * 40 + b"\x00" + good + b"\x00"
    end = asm.push(stream, 0, len(stream))
    assert end == len(stream)
    assert bytes(asm.frame[: asm.length]) == good
    assert asm.overflows == 1
