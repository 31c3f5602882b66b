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
# goes back to the oldest unACKed record. The ACK cursor (``tail``) is itself written to the ring as
# a cursor record (never sent) when the counters are saved (every persist_s), so a reboot re-sends at
# most that long of records; the host recognises them by seq.
import array
import struct

from micropython import const

import lwproto
from fwutil import tdiff
from link import P_STATS

# journal_file.py's file layout (underscored: no room taken in the heap; the tests check they agree).
_SLOTS = const(10800)
_REC_BYTES = const(24)
_HDR_BYTES = const(32)
_MAGIC = const(0x4A)
_CURSOR = const(0)  # record kind of the ACK cursor (its start field); J_* are the kinds that are sent
_WINDOW = const(16)  # records sent before the oldest one is ACKed
_MAX_RETRY_MS = const(60000)
# A door closed this long without reopening ends its cycle (the daemon's door_reopen_window_s).
_DOOR_REOPEN_MS = const(4000)
_ZONES = const(0x06)  # lwproto.IN_ZONE_UP | IN_ZONE_DN
# Record layout (little-endian): magic u8, kind u8, boot u16, seq u32, start u32, end u32,
# peak_speed_mm_s u16, direction i8, count u8, inputs_start u8, inputs_end u8, crc u16 (big-endian,
# so the CRC over the whole record is 0).
_FMT = "<BBHIIIHbBBB"
# State words (one int array: a small instance, its attribute table made once).
_NEXT = const(0)  # seq of the next record to send
_ACKED = const(1)  # bit i: tail + i ACKed (out of order)
_DUE = const(2)  # board ms the go-back to the tail is due
_WAIT = const(3)  # current back-off
_TRIP_T = const(4)  # trip in progress: start ms, -1 none
_TRIP_IN = const(5)  # its inputs at the start
_TRIP_ZONES = const(6)  # door zones it entered
_DOOR_T = const(7)  # door cycle in progress: first opening, -1 none
_DOOR_SHUT = const(8)  # door closed (the cycle maybe ending) at, -1 open
_DOOR_REOPEN = const(9)
_DOOR_IN = const(10)
_INSP_T = const(11)  # inspection on since, -1 off
_SAVED = const(12)  # tail last written as a cursor record
_N = const(13)


class Journal:
    """The journal file of one board (``agent.board``), its send window and what is being recorded."""

    def __init__(self, agent, opened):
        """``opened``: what journal_file.open_file found at the start of the boot."""
        self.f, self.head, self.tail, self.foreign = opened  # the file, next seq, oldest seq not ACKed
        self.uid_b = agent.board.uid_hex().encode()[:31]  # a fixstr on the wire
        self.retry_ms = retry_ms = agent.cfg["event_retry_ms"]  # re-sent as EVENTs are
        self.rec = bytearray(_REC_BYTES)
        # The state words above, in order (-1: nothing in progress).
        self.st = array.array("i", (self.tail, 0, 0, retry_ms, -1, 0, 0, -1, -1, 0, 0, -1, self.tail))
        self.skipped = 0  # records found torn or corrupt (never sent)
        self.overwritten = 0  # unACKed records the ring had to overwrite (the host away > 7 days)

    def append(self, kind, boot, t0, t1, speed, direction, count, in0, in1):
        """Write one record at the head (one slot, one flush) and make it the next to send."""
        seq = self.head
        r = self.rec
        struct.pack_into(_FMT, r, 0, _MAGIC, kind, boot & 0xFFFF, seq, t0, t1, min(speed, 0xFFFF),
                         direction, min(count, 255), in0, in1)
        crc = lwproto.crc16(r, 0, _REC_BYTES - 2)
        r[_REC_BYTES - 2] = crc >> 8
        r[_REC_BYTES - 1] = crc & 0xFF
        self.head = seq + 1
        if self.head - self.tail > _SLOTS:
            self.tail = self.head - _SLOTS
            self.st[_ACKED] >>= 1
            self.overwritten += 1
        write_at(self.f, _HDR_BYTES + (seq % _SLOTS) * _REC_BYTES, r)

    def persist(self):
        """Keep the ACK cursor in flash as a cursor record (with the counters: rare writes)."""
        if self.st[_SAVED] != self.tail:
            self.st[_SAVED] = self.tail
            self.append(_CURSOR, 0, self.tail, 0, 0, 0, 0, 0, 0)

    def poll(self, agent, now):
        """Once a loop pass: a door cycle whose reopen window ran out is over; the next record due goes out."""
        self.tick(now, agent.boot_id, agent.inputs.stable)
        self.send(agent.link, now, P_STATS)

    # ---- sending ------------------------------------------------------------------------------
    def send(self, link, now, prio):
        """Send the next record due (one per call, only on an idle link); False if none was."""
        if link.depth:
            return False
        st = self.st
        seq = st[_NEXT]
        if seq < self.tail:
            seq = self.tail
        if seq >= self.head or seq - self.tail >= _WINDOW:
            if self.tail < self.head and tdiff(now, st[_DUE]) >= 0:
                st[_NEXT] = self.tail  # nothing ACKed for a while: from the oldest again
                w = st[_WAIT]
                st[_DUE] = (now + w) & 0x3FFFFFFF
                st[_WAIT] = w * 2 if w < _MAX_RETRY_MS // 2 else _MAX_RETRY_MS
            return False
        st[_NEXT] = seq + 1
        if st[_ACKED] >> (seq - self.tail) & 1:
            return False
        f = self.f
        f.seek(_HDR_BYTES + (seq % _SLOTS) * _REC_BYTES)
        r = self.rec
        if f.readinto(r) != _REC_BYTES or r[0] != _MAGIC or lwproto.crc16(r, 0, _REC_BYTES) or _u32(r, 4) != seq:  # torn, corrupt or overwritten
            self.skipped += 1
            self.ack(seq)  # nothing to deliver: count it and go on
            return False
        if r[1] == _CURSOR:  # the board's own bookkeeping, not a fact
            self.ack(seq)
            return False
        st[_DUE] = (now + st[_WAIT]) & 0x3FFFFFFF  # the go-back waits for a quiet back-off
        body = link.enc.body
        off = link.begin(lwproto.T_JOURNAL, now)
        off = lwproto.pack_array_header(body, off, 3)
        u = self.uid_b
        n = len(u)
        body[off] = 0xA0 | n  # the board id as a short str, copied without encoding (so without allocating)
        lwproto.copy_into(body, off + 1, u, 0, n)
        off = lwproto.pack_bin_from(body, off + 1 + n, r, 0, _REC_BYTES)  # the record as in flash, CRC and all
        off = lwproto.pack_int(body, off, self.skipped)
        link.commit(off, prio)
        return True

    def restart(self, now):
        """The host is heard again after a silence: if the next go-back is more than a base retry
        away, go back to the oldest unACKed record now and back off from the start (as
        EventQueue.restart)."""
        st = self.st
        if tdiff(st[_DUE], now) > self.retry_ms:
            st[_NEXT] = self.tail
            st[_WAIT] = self.retry_ms

    def ack(self, seq):
        """The host stored record ``seq``: move the cursor past every ACKed record at the tail."""
        st = self.st
        d = seq - self.tail
        if d < 0 or d >= _WINDOW:
            return False
        a = st[_ACKED] | 1 << d
        if a & 1:
            st[_WAIT] = self.retry_ms
        while a & 1:
            a >>= 1
            self.tail += 1
        st[_ACKED] = a
        return True

    # ---- what becomes a record ------------------------------------------------------------------
    def motion(self, agent, now):
        """The car's motion changed: it started (a trip starts) or came to rest (its record is
        written). Method names here are ones the firmware already has: a new name is a new qstr, and
        the mock board's heap at 96 KiB sits just below a qstr pool step."""
        motion = agent.motion
        moving = motion.state != lwproto.MOTION_REST and motion.state != lwproto.MOTION_UNCALIBRATED
        inputs = agent.inputs.stable
        boot = agent.boot_id
        st = self.st
        if moving:
            if st[_TRIP_T] < 0:
                st[_TRIP_T] = now
                st[_TRIP_IN] = inputs
                st[_TRIP_ZONES] = 0
                self.tick(now, boot, inputs, True)  # the car left: the door cycle at this stop is over
        elif st[_TRIP_T] >= 0:
            speed = motion.v_peak // motion.rate * 9807 // motion.lsb if motion.rate and motion.lsb else 0
            self.append(lwproto.J_TRIP, boot, st[_TRIP_T], now, speed, motion.trip_dir, st[_TRIP_ZONES],
                        st[_TRIP_IN], inputs)
            st[_TRIP_T] = -1

    def inputs(self, agent):
        """The inputs changed (debounced): door-zone entries, door cycles, inspection periods."""
        inp = agent.inputs
        changed = inp.changed
        stable = inp.stable
        t_ms = inp.t_ms
        boot = agent.boot_id
        st = self.st
        if changed & _ZONES and st[_TRIP_T] >= 0 and stable & _ZONES and not (stable ^ changed) & _ZONES:
            st[_TRIP_ZONES] += 1  # no zone sensor covered before, one now: a landing reached
        if changed & lwproto.IN_DOOR_CLOSED:
            if stable & lwproto.IN_DOOR_CLOSED:
                if st[_DOOR_T] >= 0:
                    st[_DOOR_SHUT] = t_ms
            elif st[_DOOR_T] < 0:
                st[_DOOR_T] = t_ms
                st[_DOOR_REOPEN] = 0
                st[_DOOR_IN] = stable
                st[_DOOR_SHUT] = -1
            elif st[_DOOR_SHUT] >= 0:
                st[_DOOR_REOPEN] += 1
                st[_DOOR_SHUT] = -1
        if changed & lwproto.IN_INSPECTION:
            if stable & lwproto.IN_INSPECTION:
                if st[_INSP_T] < 0:
                    st[_INSP_T] = t_ms
            elif st[_INSP_T] >= 0:
                self.append(lwproto.J_INSPECTION, boot, st[_INSP_T], t_ms, 0, 0, 0, stable ^ changed, stable)
                st[_INSP_T] = -1

    def tick(self, now, boot, inputs, left=False):
        """A door closed for the whole reopen window, or the car leaving (``left``), ends its cycle."""
        st = self.st
        shut = st[_DOOR_SHUT]
        if st[_DOOR_T] >= 0 and shut >= 0 and (left or tdiff(now, shut) >= _DOOR_REOPEN_MS):
            self.append(lwproto.J_DOOR_CYCLE, boot, st[_DOOR_T], shut, 0, 0, st[_DOOR_REOPEN], st[_DOOR_IN], inputs)
            st[_DOOR_T] = st[_DOOR_SHUT] = -1


def _u32(r, o):
    return r[o] | r[o + 1] << 8 | r[o + 2] << 16 | r[o + 3] << 24


def write_at(f, off, b):
    """One record into its slot; tests replace it to cut the power part-way (tests/test_fw_journal.py)."""
    f.seek(off)
    f.write(b)
    f.flush()
