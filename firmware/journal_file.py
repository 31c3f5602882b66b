# Opening the board's journal file at boot (journal.py keeps it): loaded first thing in a boot, while
# the heap is still in one piece, and dropped after, so its code never stays in the heap.
#
# The file: a 32-byte header naming the board it belongs to ("LWJ1", the length of the board id, the
# id, a CRC-16), then SLOTS records of REC_BYTES (SPEC.md, "JOURNAL record"); record seq n lives in
# slot n % SLOTS. A file with another board's id (its flash moved to this board) or a damaged header is
# renamed ``<path>.foreign``, kept for whoever owns it and never sent: the records of one lift must
# never land in another lift's file. journal.py has the same layout constants (tests/test_fw_journal.py
# checks they agree): importing them from here would keep this module in the heap.
import os
import struct

from micropython import const

import lwproto

SLOTS = const(10800)  # 7 days at 600 trips and 600 door cycles a day, a cursor record each 5 minutes
REC_BYTES = const(24)
HDR_BYTES = const(32)
MAGIC = const(0x4A)  # "J", a record's first byte
CURSOR = const(0)  # the kind of the board's cursor record (the ACK cursor in its start field)
_HDR_MAGIC = b"LWJ1"
_UID_MAX = 24


def valid(r):
    """A whole record: its magic byte and a CRC over it of 0 (a torn or flipped record fails)."""
    return r[0] == MAGIC and lwproto.crc16(r, 0, REC_BYTES) == 0


def load(board):
    """The board's journal file, checked or started, and what is in it: (file open r+b, seq of the
    next record, the oldest seq to send: after the ACK cursor its newest cursor record holds, 1 if a
    foreign file was set aside)."""
    uid = board.uid_hex()
    path = board.path("lw_journal.bin")
    try:
        f = open(path, "r+b")
    except OSError:
        f = None  # a new board: start the file
    f, hi, lo, acked, foreign = _open_file(f, path, uid)
    head = max(hi + 1, acked)
    return f, head, max(acked, lo, head - SLOTS), foreign


def _open_file(f, path, uid):
    """The journal file ``f`` (None: none yet) checked or started: (file open r+b, newest seq or -1,
    oldest seq or -1, the ACK cursor of the newest cursor record or 0, 1 if a foreign file was set aside).
    In small functions: on a fragmented heap each piece of code must find a hole of its own size."""
    u = uid.encode()[:_UID_MAX]
    foreign = 0
    if f is not None and not _ours(f, u):
        f.close()
        f = None
        foreign = 1
        _set_aside(path)
    if f is None:
        f = _start_file(path, u)
    hi, lo, acked = _scan(f)
    return f, hi, lo, acked, foreign


def _ours(f, u):
    h = f.read(HDR_BYTES)
    return len(h) == HDR_BYTES and h[0:4] == _HDR_MAGIC and lwproto.crc16(h, 0, HDR_BYTES) == 0 and h[5 : 5 + h[4]] == u


def _set_aside(path):
    try:
        os.remove(path + ".foreign")
    except OSError:
        pass
    os.rename(path, path + ".foreign")


def _start_file(path, u):
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
    return f


def _scan(f):
    """(newest seq or -1, oldest seq or -1, the cursor of the newest cursor record or 0)."""
    lo = hi = -1
    cursor_seq = -1
    acked = 0
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
            if r[1] == CURSOR and seq > cursor_seq:
                cursor_seq = seq
                acked = struct.unpack_from("<I", r, 8)[0]
    return hi, lo, acked
