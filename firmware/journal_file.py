# Opening the board's journal file at boot (journal.py): loaded for the job and dropped after, so
# its code never stays in the heap.
#
# The file starts with a 32-byte header naming the board it belongs to: "LWJ1", the length of the
# board id, the id, a CRC-16. A file with another board's id (its flash moved to this board) or a
# damaged header is renamed ``<path>.foreign``, kept for whoever owns it and never sent: the records
# of one lift must never land in another lift's file.
import array
import os
import struct

import lwproto
from journal import CURSOR, HDR_BYTES, REC_BYTES, SLOTS, valid

_HDR_MAGIC = b"LWJ1"
_UID_MAX = 24


def open_journal(j, agent):
    """Set up journal ``j`` (journal.Journal) of the agent's board: open (or start) its file, find its
    newest and oldest records and the ACK cursor its newest cursor record holds: the records after
    the cursor are sent again."""
    board = agent.board
    uid = board.uid_hex()
    path = board.path("lw_journal.bin")
    j.uid_b = uid.encode()[:31]
    j.retry_ms = retry_ms = agent.cfg["event_retry_ms"]  # as EVENTs'; a new value takes effect at boot
    j.rec = bytearray(REC_BYTES)
    # journal.py's state words in order: next, acked, due, wait, trip_t, trip_in, trip_zones, door_t,
    # door_shut, door_reopen, door_in, insp_t, saved (-1: nothing in progress).
    j.st = array.array("i", (0, 0, 0, retry_ms, -1, 0, 0, -1, -1, 0, 0, -1, 0))
    j.skipped = j.overwritten = 0
    try:
        f = open(path, "r+b")
    except OSError:
        f = None  # a new board: start the file
    j.f, hi, lo, acked, j.foreign = _open_file(f, path, uid)
    j.head = max(hi + 1, acked)
    j.tail = max(acked, lo, j.head - SLOTS)
    j.st[0] = j.st[12] = j.tail


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
