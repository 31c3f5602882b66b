"""The worked examples in protocol/SPEC.md are real frames: decode them, re-encode them."""

import re
from pathlib import Path

import pytest

from liftwatch.protocol import lwproto
from liftwatch.protocol.framing import DropReason, FrameReader

SPEC = Path(__file__).resolve().parent.parent / "protocol" / "SPEC.md"
EXAMPLE_KEY = b"liftwatch-example-key-000000000!"

# (type, boot_id, seq, t_ms, payload, key) in the order the examples appear in SPEC.md section 6.
EXPECTED = [
    (7, 42, 7, 123456, [3600, 61234, 0, 0, 25, True, False], None),
    (2, 42, 8, 123500, [123498, 14, 1, 0], None),
    (3, 42, 9, 123510, [400, 16384, 1000, 2, bytes.fromhex("0c00f8ff06400a00f9ff1240")], None),
    (11, 42, 1, 5000, [2, 0], EXAMPLE_KEY),
    (12, 42, 30, 13500, ["0badc0ffee00", bytes.fromhex("4a012a0029000000e0100000b8330000120601010707375e"), 0],
     None),
]


def spec_wire_examples() -> list[bytes]:
    """Hex of every `wire` line (with its indented continuation lines) in section 6."""
    text = SPEC.read_text(encoding="utf-8").split("## 6. Worked examples", 1)[1].split("## 7.", 1)[0]
    frames = []
    for match in re.finditer(r"^wire[^\n]*?((?:[0-9a-f]{2} ?)+)\n((?: {9}(?:[0-9a-f]{2} ?)+\n)*)", text, re.M):
        frames.append(bytes.fromhex(match.group(1) + match.group(2)))
    return frames


def test_spec_has_all_examples():
    assert len(spec_wire_examples()) == len(EXPECTED)


@pytest.mark.parametrize("index", range(len(EXPECTED)))
def test_spec_example_decodes_and_reencodes(index):
    wire = spec_wire_examples()[index]
    mtype, boot_id, seq, t_ms, payload, key = EXPECTED[index]
    sender = lwproto.FROM_HOST if mtype in (lwproto.T_CONFIG, lwproto.T_CONTROL) else lwproto.FROM_BOARD
    reader = FrameReader(key=key)
    if sender == lwproto.FROM_BOARD:
        (frame,) = reader.feed(wire)
        assert (frame.type, frame.boot_id, frame.seq, frame.t_ms, frame.payload) == (mtype, boot_id, seq, t_ms, payload)
        assert frame.tagged is (key is not None)
    else:  # a host frame: the board decodes it; fed back to the host it is refused as misdirected
        got = lwproto.FrameDecoder(key).decode(wire, len(wire) - 1)
        assert got == (mtype, lwproto.FLAG_TAGGED | lwproto.FLAG_FROM_HOST, boot_id, seq, t_ms, payload)
        assert reader.feed(wire) == [] and reader.drops == {DropReason.DIRECTION: 1}
    encoder = lwproto.FrameEncoder(key=key, sender=sender)
    n = encoder.encode(mtype, boot_id, seq, t_ms, payload)
    assert bytes(encoder.wire[:n]) == wire
