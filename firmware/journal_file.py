# Opening the board's journal file at boot (journal.py): loaded for the job and dropped after, so
# its code never stays in the heap.
#
# The file starts with a 32-byte header naming the board it belongs to: "LWJ1", the length of the
# board id, the id, a CRC-16. A file with another board's id (its flash moved to this board) or a
# damaged header is renamed ``<path>.foreign``, kept for whoever owns it and never sent: the records
# of one lift must never land in another lift's file.
import os
import struct

import lwproto
from journal import HDR_BYTES, REC_BYTES, SLOTS, valid

_HDR_MAGIC = b"LWJ1"
_UID_MAX = 24


def open_journal(j, path, uid):
    """Open (or start) the file into journal ``j``, find its newest and oldest records, restore the
    ACK cursor: the records after it are sent again."""
    j.f, hi, lo, j.foreign = _open_file(j.f, path, uid)
    acked = j.cursor.values[0] if j.cursor.load() else 0
    j.head = max(hi + 1, acked)
    j.tail = max(acked, lo, j.head - SLOTS)


def _open_file(f, path, uid):
    """The journal file ``f`` (None: none yet) checked or started: (file open r+b, newest seq or -1,
    oldest seq or -1, 1 if a foreign file was set aside)."""
    u = uid.encode()[:_UID_MAX]
    foreign = 0
    if f is not None:
        h = f.read(HDR_BYTES)
        if len(h) != HDR_BYTES or h[0:4] != _HDR_MAGIC or lwproto.crc16(h, 0, HDR_BYTES) != 0 or h[5 : 5 + h[4]] != u:
            f.close()
            f = None
            foreign = 1
            try:
                os.remove(path + ".foreign")
            except OSError:
                pass
            os.rename(path, path + ".foreign")
    if f is None:
        f = open(path, "w+b")
        h = bytearray(HDR_BYTES)
        h[0:4] = _HDR_MAGIC
        h[4] = len(u)
        h[5 : 5 + len(u)] = u
        crc = lwproto.crc16(h, 0, HDR_BYTES - 2)
        h[HDR_BYTES - 2] = crc >> 8
        h[HDR_BYTES - 1] = crc & 0xFF
        f.write(h)
        f.flush()
    lo = hi = -1
    r = bytearray(REC_BYTES)
    f.seek(HDR_BYTES)
    for _ in range(SLOTS):
        if f.readinto(r) != REC_BYTES:
            break
        if valid(r):
            seq = struct.unpack_from("<I", r, 4)[0]
            if seq > hi:
                hi = seq
            if lo < 0 or seq < lo:
                lo = seq
    return f, hi, lo, foreign
