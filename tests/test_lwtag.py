"""Frame tags (protocol/lwtag.py, SPEC.md section 4): Chaskey-12 under a key per direction.

Three implementations must agree: plain Python (`protocol/chaskey.py`, host tools), lwtag's viper
function (the board, under the real MicroPython) and the C one in `_fastframe` (the daemon's
reader). They are checked
against an independent reference written here from the Chaskey paper, itself checked against the
published test vectors of the original 8-round Chaskey (the reference takes the round count, so the
vectors pin down everything but the number of rounds).
"""

from __future__ import annotations

import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liftwatch.protocol import chaskey, framing, lwtag
from liftwatch.protocol.chaskey import chaskey_tag
from liftwatch.protocol import lwproto as lw
from liftwatch.upy import PROTOCOL_DIR, run_micropython

M32 = 0xFFFFFFFF


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (32 - b))) & M32


def _permute(v: list[int], rounds: int) -> list[int]:
    v0, v1, v2, v3 = v
    for _ in range(rounds):
        v0 = (v0 + v1) & M32; v1 = _rotl(v1, 5) ^ v0; v0 = _rotl(v0, 16)  # noqa: E702
        v2 = (v2 + v3) & M32; v3 = _rotl(v3, 8) ^ v2  # noqa: E702
        v0 = (v0 + v3) & M32; v3 = _rotl(v3, 13) ^ v0  # noqa: E702
        v2 = (v2 + v1) & M32; v1 = _rotl(v1, 7) ^ v2; v2 = _rotl(v2, 16)  # noqa: E702
    return [v0, v1, v2, v3]


def _times_two(k: list[int]) -> list[int]:
    return [((k[0] << 1) ^ (0x87 if k[3] >> 31 else 0)) & M32, ((k[1] << 1) | (k[0] >> 31)) & M32,
            ((k[2] << 1) | (k[1] >> 31)) & M32, ((k[3] << 1) | (k[2] >> 31)) & M32]


def reference_mac(key_words: list[int], msg: bytes, rounds: int) -> list[int]:
    """The 4-word Chaskey MAC of msg (Mouha et al., SAC 2014, Algorithm 1)."""
    k1 = _times_two(key_words)
    k2 = _times_two(k1)
    v = list(key_words)
    n = len(msg)
    full = ((n - 1) // 16) * 16 if n else 0
    for i in range(0, full, 16):
        v = _permute([a ^ b for a, b in zip(v, struct.unpack_from("<4I", msg, i))], rounds)
    if n and n % 16 == 0:
        last, l = msg[full:], k1
    else:
        last, l = msg[full:] + b"\x01" + bytes(15 - (n - full)), k2
    v = _permute([a ^ b ^ c for a, b, c in zip(v, struct.unpack("<4I", last), l)], rounds)
    return [a ^ b for a, b in zip(v, l)]


def reference_tag(key16: bytes, msg: bytes) -> bytes:
    return struct.pack("<4I", *reference_mac(list(struct.unpack("<4I", key16)), msg, 12))[: lw.TAG_LEN]


# Published test vectors of Chaskey (8 rounds), key 833D3433 009F389F 2398E64F 417ACF39 (as words),
# message bytes 0, 1, ..., n-1: the first two MAC words for a few lengths (whole blocks, padding).
CHASKEY8_KEY = [0x833D3433, 0x009F389F, 0x2398E64F, 0x417ACF39]
CHASKEY8_VECTORS = {
    0: (0x792E8FE5, 0x75CE87AA), 1: (0x13A9307B, 0x50E62C89), 15: (0x51B94DA4, 0xEFCC4DE8),
    16: (0x79271CA9, 0xD66A1C71), 17: (0x048DA968, 0x4E25D096), 32: (0x60B3F7AF, 0x37EEE7C8),
    63: (0x9047FAD7, 0x88136D8C),
}


@pytest.mark.parametrize("n", sorted(CHASKEY8_VECTORS))
def test_the_reference_matches_the_published_vectors(n: int) -> None:
    assert tuple(reference_mac(CHASKEY8_KEY, bytes(range(n)), 8)[:2]) == CHASKEY8_VECTORS[n]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(max_size=200))
def test_python_and_c_tags_equal_the_reference(key16: bytes, msg: bytes) -> None:
    expect = reference_tag(key16, msg)
    assert chaskey_tag(key16, msg) == expect
    if framing._fastframe is not None:
        assert framing._fastframe.chaskey(key16, msg) == expect


def test_the_tag_length_is_the_codecs() -> None:
    assert lwtag.TAG_LEN == chaskey.TAG_LEN == lw.TAG_LEN == 8


def test_mac_seals_and_checks_in_place_and_refuses_any_changed_bit() -> None:
    mac = lwtag.Mac(b"k" * 32, lw.FROM_BOARD)
    buf = bytearray(b"header and payload") + bytearray(lw.TAG_LEN)
    mac.seal(buf, 18)
    assert mac.check(buf, 18)
    for i in range(len(buf)):
        buf[i] ^= 0x10
        assert not mac.check(buf, 18)
        buf[i] ^= 0x10


def test_direction_keys_are_hmac_of_the_board_key_and_differ() -> None:
    key = b"liftwatch-example-key-000000000!"
    to_host = lwtag.direction_key(key, lw.FROM_BOARD)
    to_board = lwtag.direction_key(key, lw.FROM_HOST)
    assert to_host == hmac.digest(key, b"liftwatch v2 tag board->host", "sha256")[:16]
    assert to_board == hmac.digest(key, b"liftwatch v2 tag host->board", "sha256")[:16]
    assert to_host != to_board
    assert lwtag.direction_key(b"x" * 100, 0) == hmac.digest(b"x" * 100, b"liftwatch v2 tag board->host", "sha256")[:16]


BOARD_SCRIPT = r"""
import gc, micropython, lwtag
mac = lwtag.Mac(KEY, 0)
src = bytearray(1100)
for i in range(len(src)):
    src[i] = (i * 73 + 5) & 0xFF
buf = bytearray(src)
for n in LENGTHS:
    buf[:] = src  # seal writes the tag over what follows the message
    mac.seal(buf, n)
    ok = mac.check(buf, n)
    buf[n // 2] ^= 1
    bad = mac.check(buf, n)
    buf[n // 2] ^= 1
    print(n, bytes(buf[n:n + 8]).hex(), ok, bad)
def many():
    for i in range(200):
        mac.seal(buf, 410)
        mac.check(buf, 410)
many()
gc.collect()
micropython.heap_lock()
try:
    many()
    print("ALLOC 0")
except MemoryError:
    print("ALLOC some")
micropython.heap_unlock()
"""


@pytest.mark.micropython
def test_the_boards_viper_tags_equal_the_hosts_and_allocate_nothing(tmp_path) -> None:
    """Issue 14 item 9: a tagged frame allocated 608 bytes on the board; the viper Chaskey none."""
    key = bytes(range(7, 39))
    lengths = [0, 1, 11, 15, 16, 17, 31, 32, 33, 64, 410, 1016, 1024]
    script = tmp_path / "tags.py"
    script.write_text(f"KEY = {key!r}\nLENGTHS = {lengths!r}\n" + BOARD_SCRIPT)
    result = run_micropython([str(script)], paths=(PROTOCOL_DIR,), timeout=60)
    out = result.stdout.decode().splitlines()
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    k16 = lwtag.direction_key(key, lw.FROM_BOARD)
    buf = bytes((i * 73 + 5) & 0xFF for i in range(1100))
    for n, line in zip(lengths, out):
        assert line == f"{n} {reference_tag(k16, buf[:n]).hex()} True False"
    assert out[-1] == "ALLOC 0"
