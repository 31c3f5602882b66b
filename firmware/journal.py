# The board's own journal: every trip, door cycle and inspection period as a record in flash, so no
# fact is lost while the link or the Pi is down.
#
# One file: a 32-byte header naming the board it belongs to, then SLOTS fixed 24-byte records; record
# seq n lives in slot n % SLOTS, so the ring needs no index and a slot is its own address. Each record
# carries a magic byte, its seq and a CRC-16, so a torn write (a power cut mid-record) or a flipped
# bit fails the check: that record is skipped and counted (``skipped``), never the ones around it.
# A write touches one slot only, so a power cut loses at most the record being written.
#
# Records are sent as JOURNAL frames as they are written and re-sent, oldest first, until the host
# ACKs each one (ack_type JOURNAL, ack_id seq): up to _WINDOW frames in flight, one per loop pass,
# only while the link queue is empty (live data first). Without progress for retry_ms the sending
# goes back to the oldest unACKed record. The ACK cursor (``tail``) is kept in a two-slot store and
# saved with the counters (every persist_s), so a reboot re-sends at most that long of records; the
# host recognises them by seq.
import struct

from micropython import const

import lwproto
from fwutil import tdiff, unload
from store import Store

SLOTS = const(9600)  # 7 days at 600 trips and 600 door cycles a day, plus inspection periods
REC_BYTES = const(24)
HDR_BYTES = const(32)
_MAGIC = const(0x4A)  # "J"
_WINDOW = const(16)  # records sent before the oldest one is ACKed
_MAX_RETRY_MS = const(60000)
# A door closed this long without reopening ends its cycle (the daemon's door_reopen_window_s).
DOOR_REOPEN_WINDOW_MS = const(4000)
_ZONES = const(0x06)  # lwproto.IN_ZONE_UP | IN_ZONE_DN
# Record layout (little-endian): magic u8, kind u8, boot u16, seq u32, start u32, end u32,
# peak_speed_mm_s u16, direction i8, count u8, inputs_start u8, inputs_end u8, crc u16 (big-endian,
# so the CRC over the whole record is 0).
_FMT = "<BBHIIIHbBBB"


class Journal:
    """The journal file of one board (``uid``) at ``path``, its send window and what it recorded."""

    def __init__(self, path, uid, retry_ms, cursor_path):
        self.path = path
        self.uid = uid
        self.uid_b = uid.encode()[:31]  # a fixstr on the wire
        self.retry_ms = retry_ms
        self.rec = bytearray(REC_BYTES)
        self.head = 0  # seq of the next record written
        self.tail = 0  # oldest seq not yet ACKed
        self.next_send = 0
        self.acked = 0  # bit i: tail + i ACKed (out of order)
        self.due_at = 0
        self.wait_ms = retry_ms
        self.skipped = 0  # records found torn or corrupt (never sent)
        self.overwritten = 0  # unACKed records the ring had to overwrite (host away > 7 days)
        self.foreign = 0  # a journal file of another board found at boot (set aside, not sent)
        self.written = 0
        # Trip, door cycle and inspection period in progress: start ms (-1: none) and what they carry.
        self.trip_t = -1
        self.trip_in = 0
        self.trip_zones = 0
        self.door_t = -1
        self.door_closed_t = -1
        self.door_reopen = 0
        self.door_in = 0
        self.insp_t = -1
        self.cursor = Store(cursor_path, 0x4A, 1)
        self.write_at = _write_at  # tests replace it to cut the power mid-write
        self.f = None
        self._open()

    def _open(self):
        import journal_file  # boot only: its code leaves the heap again below

        try:
            self.f, hi, lo, foreign = journal_file.open_file(self.path, self.uid)
        finally:
            del journal_file
            unload("journal_file")
        self.foreign += foreign
        acked = self.cursor.values[0] if self.cursor.load() else 0
        self.head = max(hi + 1, acked)
        self.tail = max(acked, lo, self.head - SLOTS)
        self.next_send = self.tail

    def _read(self, seq):
        """The record of ``seq`` into self.rec; False if it is torn, corrupt or another seq."""
        f = self.f
        f.seek(HDR_BYTES + (seq % SLOTS) * REC_BYTES)
        r = self.rec
        return f.readinto(r) == REC_BYTES and valid(r) and _u32(r, 4) == seq

    def append(self, kind, boot, t0, t1, speed, direction, count, in0, in1):
        """Write one record at the head (one slot, one flush) and make it the next to send."""
        seq = self.head
        r = self.rec
        struct.pack_into(_FMT, r, 0, _MAGIC, kind, boot & 0xFFFF, seq, t0, t1, min(speed, 0xFFFF),
                         direction, min(count, 255), in0, in1)
        crc = lwproto.crc16(r, 0, REC_BYTES - 2)
        r[REC_BYTES - 2] = crc >> 8
        r[REC_BYTES - 1] = crc & 0xFF
        self.head = seq + 1
        self.written += 1
        if self.head - self.tail > SLOTS:
            self.tail = self.head - SLOTS
            self.acked >>= 1
            self.overwritten += 1
            if self.next_send < self.tail:
                self.next_send = self.tail
        self.write_at(self.f, HDR_BYTES + (seq % SLOTS) * REC_BYTES, r)

    def save_cursor(self):
        """Keep the ACK cursor in flash (with the counters: rare writes)."""
        v = self.cursor.values
        if v[0] != self.tail:
            v[0] = self.tail
            self.cursor.save()

    # ---- sending ------------------------------------------------------------------------------
    def send(self, link, now, prio):
        """Send the next record due (one per call, only on an idle link); False if none was."""
        if link.depth:
            return False
        if self.next_send < self.tail:
            self.next_send = self.tail
        if self.next_send >= self.head or self.next_send - self.tail >= _WINDOW:
            if self.tail < self.head and tdiff(now, self.due_at) >= 0:
                self.next_send = self.tail  # nothing ACKed for a while: from the oldest again
                self.due_at = (now + self.wait_ms) & 0x3FFFFFFF
                w = self.wait_ms
                self.wait_ms = w * 2 if w < _MAX_RETRY_MS // 2 else _MAX_RETRY_MS
            return False
        seq = self.next_send
        self.next_send = seq + 1
        d = seq - self.tail
        if self.acked >> d & 1:
            return False
        if not self._read(seq):
            self.skipped += 1
            self.ack(seq)  # nothing to deliver: count it and go on
            return False
        self.due_at = (now + self.wait_ms) & 0x3FFFFFFF  # the go-back waits for a quiet wait_ms
        r = self.rec
        body = link.enc.body
        off = link.begin(lwproto.T_JOURNAL, now)
        off = lwproto.pack_array_header(body, off, 12)
        u = self.uid_b
        n = len(u)
        body[off] = 0xA0 | n  # the board id as a short str, copied without encoding (so without allocating)
        lwproto.copy_into(body, off + 1, u, 0, n)
        off = _int(body, off + 1 + n, seq)
        off = _int(body, off, r[1])  # kind
        off = _int(body, off, r[2] | r[3] << 8)  # boot
        off = _int(body, off, _u32(r, 8))  # start
        off = _int(body, off, _u32(r, 12))  # end
        off = _int(body, off, r[18] - 256 if r[18] > 127 else r[18])  # direction
        off = _int(body, off, r[19])  # count
        off = _int(body, off, r[16] | r[17] << 8)  # peak speed
        off = _int(body, off, r[20])
        off = _int(body, off, r[21])
        off = _int(body, off, self.skipped)
        link.commit(off, prio)
        return True

    def ack(self, seq):
        """The host stored record ``seq``: move the cursor past every ACKed record at the tail."""
        d = seq - self.tail
        if d < 0 or d >= _WINDOW:
            return False
        self.acked |= 1 << d
        moved = False
        while self.acked & 1:
            self.acked >>= 1
            self.tail += 1
            moved = True
        if moved:
            self.wait_ms = self.retry_ms
        return True

    # ---- what becomes a record ------------------------------------------------------------------
    def on_motion(self, moving, now, inputs, boot, motion):
        """The car started (moving) or came to rest: a trip starts or its record is written."""
        if moving:
            if self.trip_t < 0:
                self.trip_t = now
                self.trip_in = inputs
                self.trip_zones = 0
                self._door_done(boot, inputs)  # the car left: the door cycle at this stop is over
            return
        if self.trip_t < 0:
            return
        speed = motion.v_peak // motion.rate * 9807 // motion.lsb if motion.rate and motion.lsb else 0
        self.append(lwproto.J_TRIP, boot, self.trip_t, now, speed, motion.trip_dir, self.trip_zones,
                    self.trip_in, inputs)
        self.trip_t = -1

    def on_inputs(self, changed, stable, t_ms, boot):
        """A debounced input change: door-zone entries, door cycles, inspection periods."""
        if changed & _ZONES and self.trip_t >= 0 and stable & _ZONES and not (stable ^ changed) & _ZONES:
            self.trip_zones += 1  # no zone sensor covered before, one now: a landing reached
        if changed & lwproto.IN_DOOR_CLOSED:
            if stable & lwproto.IN_DOOR_CLOSED:
                if self.door_t >= 0:
                    self.door_closed_t = t_ms
            elif self.door_t < 0:
                self.door_t = t_ms
                self.door_reopen = 0
                self.door_in = stable
                self.door_closed_t = -1
            elif self.door_closed_t >= 0:
                self.door_reopen += 1
                self.door_closed_t = -1
        if changed & lwproto.IN_INSPECTION:
            if stable & lwproto.IN_INSPECTION:
                if self.insp_t < 0:
                    self.insp_t = t_ms
            elif self.insp_t >= 0:
                self.append(lwproto.J_INSPECTION, boot, self.insp_t, t_ms, 0, 0, 0, stable ^ changed, stable)
                self.insp_t = -1

    def tick(self, now, boot, inputs):
        """A door closed for the whole reopen window ends its cycle."""
        if self.door_closed_t >= 0 and tdiff(now, self.door_closed_t) >= DOOR_REOPEN_WINDOW_MS:
            self._door_done(boot, inputs)

    def _door_done(self, boot, inputs):
        if self.door_t >= 0 and self.door_closed_t >= 0:
            self.append(lwproto.J_DOOR_CYCLE, boot, self.door_t, self.door_closed_t, 0, 0, self.door_reopen,
                        self.door_in, inputs)
            self.door_t = -1
            self.door_closed_t = -1


_int = lwproto.pack_int


def _u32(r, o):
    return r[o] | r[o + 1] << 8 | r[o + 2] << 16 | r[o + 3] << 24


def valid(r):
    """A whole record: its magic byte and a CRC over it of 0 (a torn or flipped record fails)."""
    return r[0] == _MAGIC and lwproto.crc16(r, 0, REC_BYTES) == 0


def _write_at(f, off, b):
    f.seek(off)
    f.write(b)
    f.flush()
