# The link: frames out through a bounded priority queue paced at the line rate, frames in decoded.
#
# Frames are built in place (lwproto.FrameEncoder) and copied into one of _SLOTS fixed slots. The
# queue drains at the UART's byte rate in board time, so a write never blocks the sampling loop on
# the ESP32 (its driver buffer never overfills). When the host cannot take frames (BLE down, pty
# full) the queue fills; then the oldest frame of the lowest priority goes first (VIB, then STATS,
# then state and heartbeats; EVENT frames last: they are re-sent until ACKed anyway). A new frame of
# lower priority than everything queued is the one dropped. Every drop is counted in ``drops``.
#
# In: only host frames pass (lwproto.FrameDecoder checks the direction flag and the type, so the
# board's own frames echoed back are refused); a keyed board also wants the host's tag and a host seq
# not seen in this boot, and moves its window only for a frame it hands on. What an unkeyed board
# takes from its link is limited (SECURITY.md, "An unkeyed board"): see ``volatile_only``.
import array

from micropython import const

import lwproto
from fwutil import copy, tdiff

P_VIB = const(0)
P_STATS = const(1)
P_STATE = const(2)
P_EVENT = const(3)

_SLOTS = const(6)
SLOT_BYTES = const(512)  # every board frame fits: a 64-sample VIB is about 415 wire bytes
_TXBUF = const(4096)  # the ESP32 UART driver's TX ring we never overfill
_RXBUF = const(64)
_RX_BODY = const(320)  # host frames are small: a CONFIG with every setting is about 300 bytes
# Settings that decide how the board reaches its host: from an unkeyed link, whoever is on the wires
# (or in radio range) could move the board to BLE or to another baud rate and cut the host off.
UNKEYED_REFUSED = ("transport", "baud")


# Allocated at import, while the heap is still in one piece.
_QUEUE = bytearray(_SLOTS * SLOT_BYTES)


class Link:
    def __init__(self, board, boot_id, key=None, baud=921600):
        self.board = board
        self.boot_id = boot_id
        self.enc = lwproto.FrameEncoder(key, max_body=SLOT_BYTES - 8)
        self.dec = lwproto.FrameDecoder(key, max_body=_RX_BODY)
        self.asm = lwproto.FrameAssembler(_RX_BODY + 8)
        self.authenticated = bool(key)
        # An unkeyed link cannot tell the host from anyone else: what it changes must not outlive a reboot.
        self.volatile_only = not key
        self.seq = 0
        self.q = _QUEUE
        self.qlen = array.array("H", [0] * _SLOTS)
        self.qprio = bytearray(_SLOTS)
        self.order = bytearray(_SLOTS)  # slot numbers, oldest first
        self.depth = 0
        self.drops = 0
        self.rx_drops = 0
        self.sent = 0
        self.rx = bytearray(_RXBUF)
        # SPEC "Replay protection" rules 3-5 for tagged host frames: newest host seq and a 64-frame
        # window (bit i of the 8 bytes: seq top - i seen). New per boot, as the boot id is.
        self.host_top = -1
        self._window = bytearray(8)
        self.set_baud(baud)
        self._t = board.ticks_ms()
        self._tokens = _TXBUF

    def set_baud(self, baud):
        self.bytes_per_s = baud // 10  # 8N1

    # ---- out --------------------------------------------------------------------------------------
    def begin(self, mtype, t_ms):
        """Start a frame; pack the payload into self.enc.body from the returned offset."""
        return self.enc.begin(mtype, self.boot_id, self.seq, t_ms)

    def commit(self, end, prio):
        """Seal the frame that ends at ``end`` and queue it; False if it was dropped."""
        n = self.enc.finish(end)
        self.seq = (self.seq + 1) & 0xFFFF
        if n > SLOT_BYTES:
            self.drops += 1
            return False
        if self.depth == _SLOTS:
            self.pump(self.board.ticks_ms())  # a burst (the pre-trip margin) may fit the line already
        if self.depth == _SLOTS:
            victim = -1
            for j in range(_SLOTS):
                s = self.order[j]
                if self.qprio[s] <= prio and (victim < 0 or self.qprio[s] < self.qprio[self.order[victim]]):
                    victim = j
            self.drops += 1
            if victim < 0 or self.qprio[self.order[victim]] > prio:
                return False
            slot = self.order[victim]
            for j in range(victim, _SLOTS - 1):
                self.order[j] = self.order[j + 1]
            self.depth -= 1
        else:
            slot = self._free_slot()
        copy(self.q, slot * SLOT_BYTES, self.enc.wire, 0, n)
        self.qlen[slot] = n
        self.qprio[slot] = prio
        self.order[self.depth] = slot
        self.depth += 1
        return True

    def _free_slot(self):
        for s in range(_SLOTS):
            used = False
            for j in range(self.depth):
                if self.order[j] == s:
                    used = True
                    break
            if not used:
                return s
        return 0

    def pump(self, now, flush=False):
        """Send queued frames as the line rate allows (all of them when flushing at shutdown)."""
        dt = tdiff(now, self._t)
        self._t = now
        if dt > 0:
            self._tokens += dt * self.bytes_per_s // 1000
            if self._tokens > _TXBUF:
                self._tokens = _TXBUF
        while self.depth:
            slot = self.order[0]
            n = self.qlen[slot]
            if n > self._tokens and not flush:
                return
            if not self.board.uart_write(self.q, slot * SLOT_BYTES, n):
                return  # the TX side is full: keep the frame, try on a later pass
            self._tokens -= n
            for j in range(self.depth - 1):
                self.order[j] = self.order[j + 1]
            self.depth -= 1
            self.sent += 1

    def _fresh(self, seq):
        """True if a host seq is new in this boot (ahead of the window, or inside it and unseen)."""
        if self.host_top < 0:
            return True
        d = (seq - self.host_top) & 0xFFFF
        if d == 0:
            return False
        if d < 0x8000:
            return True
        back = 0x10000 - d
        return back < 64 and not (self._window[back >> 3] >> (back & 7)) & 1

    def _accept(self, seq):
        """Remember a fresh host seq: called only for a frame handed on, so nothing else moves it."""
        w = self._window
        if self.host_top < 0:
            self.host_top = seq
            w[0] = 1
            return
        d = (seq - self.host_top) & 0xFFFF
        if d < 0x8000:  # ahead: slide the window by d
            for i in range(63, -1, -1):
                j = i - d
                bit = j >= 0 and (w[j >> 3] >> (j & 7)) & 1
                if bit:
                    w[i >> 3] |= 1 << (i & 7)
                else:
                    w[i >> 3] &= ~(1 << (i & 7)) & 0xFF
            w[0] |= 1
            self.host_top = seq
            return
        back = 0x10000 - d
        w[back >> 3] |= 1 << (back & 7)

    def refused_unkeyed(self, settings):
        """The reason to refuse a CONFIG from an unkeyed link, or None (SECURITY.md, "An unkeyed board")."""
        if self.volatile_only and type(settings) is dict:
            for name in UNKEYED_REFUSED:
                if name in settings:
                    return name + ": only over a keyed link or with liftwatch flash --config"
        return None

    # ---- in ---------------------------------------------------------------------------------------
    def poll(self, handler):
        """Decode what the host sent; handler(mtype, boot_id, seq, payload) per good frame."""
        n = self.board.uart_readinto(self.rx)
        i = 0
        asm = self.asm
        while i < n:
            j = asm.push(self.rx, i, n - i)
            if j < 0:
                return
            i = j
            try:
                mtype, _flags, boot_id, seq, _t, payload = self.dec.decode(asm.frame, asm.length)
            except lwproto.ProtocolError:
                self.rx_drops += 1
                continue
            if self.authenticated and (boot_id != self.boot_id or not self._fresh(seq)):
                self.rx_drops += 1  # replay rules: this boot's id, a host seq not seen before
                continue
            if type(payload) is not list:
                self.rx_drops += 1
                continue
            if self.authenticated:
                self._accept(seq)
            else:
                self.host_top = seq  # the host is there (a firmware update on trial waits for it)
            handler(mtype, boot_id, seq, payload)
