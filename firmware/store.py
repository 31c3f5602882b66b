# Power-cut-safe persistent records: two alternating slots, each with a sequence number and a CRC.
#
# A write only ever touches the slot that does not hold the newest good record, so a power cut at any
# byte of a write leaves the previous record intact: loading picks the valid slot with the higher
# sequence number. The worst case loses the one write that was cut. Flash wear: callers write at most
# every few minutes (counters) or on rare events (event queue, calibration).
import struct

from micropython import const

import lwproto

_MAGIC0 = const(0x4C)  # "LW"
_MAGIC1 = const(0x57)
_HDR = const(8)  # magic(2) kind(1) len(1, payload words) seq(4)


class Store:
    """One record of ``words`` signed 32-bit ints, kept in a two-slot file at ``path``."""

    def __init__(self, path, kind, words):
        self.path = path
        self.kind = kind
        self.words = words
        self.slot_len = _HDR + 4 * words + 2
        self.buf = bytearray(self.slot_len)
        self.values = [0] * words
        self.seq = 0
        self.slot = 1  # slot of the newest good record (so the first write goes to slot 0)
        self.writes = 0
        self._fmt = "<%di" % words
        # Tests replace this to cut the power part-way through a write (see tests/test_fw_store.py).
        self.write_at = _write_at

    def _valid(self, b):
        if b[0] != _MAGIC0 or b[1] != _MAGIC1 or b[2] != self.kind or b[3] != self.words:
            return False
        return lwproto.crc16(b, 0, self.slot_len) == 0

    def load(self):
        """Read the newest valid slot into ``values``; False (values unchanged) if there is none."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except OSError:
            return False
        best = -1
        best_seq = 0
        n = self.slot_len
        for slot in (0, 1):
            b = raw[slot * n : slot * n + n]
            if len(b) == n and self._valid(b):
                seq = struct.unpack_from("<I", b, 4)[0]
                if best < 0 or ((seq - best_seq) & 0xFFFFFFFF) < 0x80000000:
                    best = slot
                    best_seq = seq
        if best < 0:
            return False
        vals = struct.unpack_from(self._fmt, raw, best * n + _HDR)
        for i in range(self.words):
            self.values[i] = vals[i]
        self.seq = best_seq
        self.slot = best
        return True

    def save(self):
        """Write values to the other slot (the newest good one stays untouched until this succeeds)."""
        seq = (self.seq + 1) & 0xFFFFFFFF
        b = self.buf
        b[0] = _MAGIC0
        b[1] = _MAGIC1
        b[2] = self.kind
        b[3] = self.words
        struct.pack_into("<I", b, 4, seq)
        for i in range(self.words):
            struct.pack_into("<i", b, _HDR + 4 * i, self.values[i])
        crc = lwproto.crc16(b, 0, self.slot_len - 2)
        b[self.slot_len - 2] = crc >> 8
        b[self.slot_len - 1] = crc & 0xFF
        slot = self.slot ^ 1
        self.write_at(self.path, slot * self.slot_len, b, 2 * self.slot_len)
        self.seq = seq
        self.slot = slot
        self.writes += 1


def _write_at(path, off, b, file_len):
    try:
        f = open(path, "r+b")
    except OSError:
        f = open(path, "wb")
        f.write(bytearray(file_len))
        f.close()
        f = open(path, "r+b")
    try:
        f.seek(off)
        f.write(b)
        f.flush()
    finally:
        f.close()
