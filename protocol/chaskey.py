"""Chaskey-12 in plain Python, for the host: lwtag's board code is viper, and the daemon's reader
uses the C version in `_fastframe` when it is built. Kept out of lwtag so that it never takes room
on the board's heap. Same contract as lwtag's viper `_chaskey` (SPEC.md section 4)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

TAG_LEN = 8
_M32 = 0xFFFFFFFF


def _rounds(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    for _ in range(12):
        v0 = (v0 + v1) & _M32
        v1 = (((v1 << 5) | (v1 >> 27)) & _M32) ^ v0
        v0 = ((v0 << 16) | (v0 >> 16)) & _M32
        v2 = (v2 + v3) & _M32
        v3 = (((v3 << 8) | (v3 >> 24)) & _M32) ^ v2
        v0 = (v0 + v3) & _M32
        v3 = (((v3 << 13) | (v3 >> 19)) & _M32) ^ v0
        v2 = (v2 + v1) & _M32
        v1 = (((v1 << 7) | (v1 >> 25)) & _M32) ^ v2
        v2 = ((v2 << 16) | (v2 >> 16)) & _M32
    return v0, v1, v2, v3


def chaskey_into(keys: Sequence[int], buf: bytearray, n: int, verify: int) -> int:
    """Chaskey-12 of buf[0:n] under a key schedule (K, 2K, 4K: 12 words). verify 0: write the tag
    at buf[n:n+8], return 0; else compare with buf[n:n+8] (every byte) and return non-zero if unequal."""
    v0, v1, v2, v3 = keys[0], keys[1], keys[2], keys[3]
    last = ((n - 1) >> 4) << 4 if n else 0
    for i in range(0, last, 16):
        w0, w1, w2, w3 = struct.unpack_from("<4I", buf, i)
        v0, v1, v2, v3 = _rounds(v0 ^ w0, v1 ^ w1, v2 ^ w2, v3 ^ w3)
    koff = 4 if n and not n & 15 else 8  # K1 for a whole last block, K2 for a padded one
    block = bytearray(16)
    block[0 : n - last] = memoryview(buf)[last:n]
    if koff == 8:
        block[n - last] = 1
    w0, w1, w2, w3 = struct.unpack("<4I", block)
    v0, v1, v2, v3 = _rounds(v0 ^ w0 ^ keys[koff], v1 ^ w1 ^ keys[koff + 1], v2 ^ w2 ^ keys[koff + 2],
                             v3 ^ w3 ^ keys[koff + 3])
    tag = struct.pack("<II", v0 ^ keys[koff], v1 ^ keys[koff + 1])
    if verify:
        diff = 0
        for i in range(TAG_LEN):  # every byte looked at, whatever the first mismatch
            diff |= tag[i] ^ buf[n + i]
        return diff
    buf[n : n + TAG_LEN] = tag
    return 0


def chaskey_tag(key16: bytes, data: bytes | bytearray | memoryview) -> bytes:
    """The 8-byte tag of ``data`` under a 16-byte key (allocates: host tools, vectors, tests)."""
    from liftwatch.protocol.lwtag import key_schedule  # lwtag imports this module: import it late

    buf = bytearray(len(data) + TAG_LEN)
    buf[0 : len(data)] = data
    chaskey_into(key_schedule(key16), buf, len(data), 0)
    return bytes(buf[len(data) :])
