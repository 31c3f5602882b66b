# liftwatch frame tags (protocol/SPEC.md section 4): Chaskey-12 under a key per direction.
#
# Used by lwproto on both interpreters and copied to the board as /lwtag.py beside it (a module of
# its own because the viper code would not compile inside lwproto in a 96 KiB heap).
#
# Why Chaskey-12 and not HMAC-SHA256: MicroPython's hashlib makes a new hash object and a new digest
# per call (608 heap bytes per tagged frame), and its state cannot be copied, so HMAC cannot be
# precomputed. Chaskey is a MAC designed for 32-bit microcontrollers (Mouha et al., SAC 2014; the
# 12-round version is in ISO/IEC 29192-6): a 128-bit key and a permutation of adds, rotations and
# xors on four 32-bit words, which viper runs on machine words with no heap at all.

try:
    import micropython

    _BOARD = True
except ImportError:
    _BOARD = False

import array
import hashlib

TAG_LEN = 8  # = lwproto.TAG_LEN (lwproto imports this module, so not the other way round)
_LABELS = (b"liftwatch v2 tag board->host", b"liftwatch v2 tag host->board")  # by sender: FROM_BOARD, FROM_HOST


def direction_key(key, sender):
    """The 16-byte Chaskey key of one direction, derived from the board key (16-64 bytes):
    HMAC-SHA256(key, label)[0:16]. Each direction has its own, so a frame cannot be reflected."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    ipad = bytearray(64)
    opad = bytearray(64)
    for i in range(64):
        k = key[i] if i < len(key) else 0
        ipad[i] = k ^ 0x36
        opad[i] = k ^ 0x5C
    inner = hashlib.sha256(ipad)
    inner.update(_LABELS[sender])
    outer = hashlib.sha256(opad)
    outer.update(inner.digest())
    return outer.digest()[:16]


def _times_two(k, src, dst):
    # Multiplication by x in GF(2^128) (Chaskey's key schedule), on little-endian 32-bit words.
    k[dst] = ((k[src] << 1) ^ (0x87 if k[src + 3] >> 31 else 0)) & 0xFFFFFFFF
    k[dst + 1] = ((k[src + 1] << 1) | (k[src] >> 31)) & 0xFFFFFFFF
    k[dst + 2] = ((k[src + 2] << 1) | (k[src + 1] >> 31)) & 0xFFFFFFFF
    k[dst + 3] = ((k[src + 3] << 1) | (k[src + 2] >> 31)) & 0xFFFFFFFF


def key_schedule(k16):
    """array('I') of K, K1 = 2K, K2 = 4K (12 words) for a 16-byte Chaskey key."""
    k = array.array("I", [0] * 12)
    for i in range(4):
        k[i] = k16[4 * i] | (k16[4 * i + 1] << 8) | (k16[4 * i + 2] << 16) | (k16[4 * i + 3] << 24)
    _times_two(k, 0, 4)
    _times_two(k, 4, 8)
    return k


if _BOARD:

    @micropython.viper
    def _chaskey(keys: ptr32, buf: ptr8, n: int, verify: int) -> int:
        # Chaskey-12 of buf[0:n]. verify 0: write the 8-byte tag at buf[n:n+8], return 0; else
        # compare with buf[n:n+8] (every byte looked at) and return non-zero on a mismatch.
        m = uint(0xFFFF) | (uint(0xFFFF) << 16)  # machine words are 64 bits on the unix port
        v0 = uint(keys[0])
        v1 = uint(keys[1])
        v2 = uint(keys[2])
        v3 = uint(keys[3])
        last = 0  # offset of the last block
        if n:
            last = ((n - 1) >> 4) << 4
        koff = 8  # K2 for a padded last block, K1 (offset 4) for a whole one
        if n and not (n & 15):
            koff = 4
        i = 0
        while True:
            if i < last:
                v0 ^= uint(buf[i]) | (uint(buf[i + 1]) << 8) | (uint(buf[i + 2]) << 16) | (uint(buf[i + 3]) << 24)
                v1 ^= uint(buf[i + 4]) | (uint(buf[i + 5]) << 8) | (uint(buf[i + 6]) << 16) | (uint(buf[i + 7]) << 24)
                v2 ^= uint(buf[i + 8]) | (uint(buf[i + 9]) << 8) | (uint(buf[i + 10]) << 16) | (uint(buf[i + 11]) << 24)
                v3 ^= uint(buf[i + 12]) | (uint(buf[i + 13]) << 8) | (uint(buf[i + 14]) << 16) | (uint(buf[i + 15]) << 24)
            else:
                w = 0
                while w < 16:  # the last block, padded with 0x01 0x00... when short
                    x = uint(0)
                    if i + w < n:
                        x = uint(buf[i + w])
                    elif i + w == n and koff == 8:
                        x = uint(1)
                    if w < 4:
                        v0 ^= x << (w * 8)
                    elif w < 8:
                        v1 ^= x << ((w - 4) * 8)
                    elif w < 12:
                        v2 ^= x << ((w - 8) * 8)
                    else:
                        v3 ^= x << ((w - 12) * 8)
                    w += 1
                v0 ^= uint(keys[koff])
                v1 ^= uint(keys[koff + 1])
                v2 ^= uint(keys[koff + 2])
                v3 ^= uint(keys[koff + 3])
            r = 0
            while r < 12:  # a right shift must see a clean 32-bit word: hence the masks
                v0 += v1
                v1 = (v1 << 5) | ((v1 & m) >> 27)
                v1 ^= v0
                v0 = (v0 << 16) | ((v0 & m) >> 16)
                v2 += v3
                v3 = (v3 << 8) | ((v3 & m) >> 24)
                v3 ^= v2
                v0 += v3
                v3 = (v3 << 13) | ((v3 & m) >> 19)
                v3 ^= v0
                v2 += v1
                v1 = (v1 << 7) | ((v1 & m) >> 25)
                v1 ^= v2
                v2 = (v2 << 16) | ((v2 & m) >> 16)
                r += 1
            if i >= last:
                break
            i += 16
        v0 ^= uint(keys[koff])
        v1 ^= uint(keys[koff + 1])
        diff = uint(0)
        b = 0
        while b < 4:
            t0 = (v0 >> (b * 8)) & 0xFF
            t1 = (v1 >> (b * 8)) & 0xFF
            if verify:
                diff |= (t0 ^ uint(buf[n + b])) | (t1 ^ uint(buf[n + 4 + b]))
            else:
                buf[n + b] = t0
                buf[n + 4 + b] = t1
            b += 1
        return int(diff)

else:  # CPython (host tools, tests): the same function in plain Python, kept off the board's heap
    from liftwatch.protocol.chaskey import chaskey_into as _chaskey


class Mac:
    """Tags of one direction: seal() appends a tag, check() verifies one, in place and without
    allocating (the key schedule is made once, here)."""

    def __init__(self, key, sender):
        self._keys = key_schedule(direction_key(key, sender))

    def seal(self, buf, end):
        """Write the tag of buf[0:end] at buf[end:end+TAG_LEN]."""
        _chaskey(self._keys, buf, end, 0)

    def check(self, buf, end):
        """True if buf[end:end+TAG_LEN] is the tag of buf[0:end] (constant time)."""
        return _chaskey(self._keys, buf, end, 1) == 0


