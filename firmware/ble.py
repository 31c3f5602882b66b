# BLE link logic without the radio: the frame byte stream over a Nordic-UART-style GATT service.
#
# Frames are COBS with a 0x00 delimiter, so over BLE they stay a byte stream: the TX side cuts it into
# notifications of at most ATT_MTU - 3 bytes (whatever the MTU exchange gave) and paces them (a few
# notifications per connection interval, so the controller's buffers never overflow and a failed
# notify is retried, not lost); the RX side just hands what the central wrote to the link's frame
# assembler, which resynchronises at the next delimiter if anything was lost. The radio calls live in
# ble_nus.py; everything here runs and is tested on the unix port.
#
# No ring buffers: when BLE starts (agent start, after boot) the 96 KiB heap is in small pieces (the
# virtual radio showed the largest free block at 320 bytes, and a 2 KiB TX ring crash-looped the
# board). TX notifies straight from the frame in the link's queue slot: uart_write() answers False
# until every byte of that frame has been notified, so the frame stays queued meanwhile (the link's
# drop policy still applies) and goes again whole after a reconnect. RX keeps references to the few
# byte strings the stack handed over (gatts_read makes them anyway) until the link has read them.
from micropython import const

_DEFAULT_MTU = const(23)  # before the MTU exchange
_MAX_CHUNK = const(244)  # ATT_MTU 247 (BLE 4.2 data length extension) - 3
_RX_PARTS = const(8)  # host writes held between two link polls


class BleStream:
    """The frame at the head of the link's queue cut into paced notifications; host writes held.

    The link sees the uart_* interface of a board: uart_write(buf, off, n) is True once the whole
    frame buf[off:off+n] went out (False meanwhile: the link keeps it queued), uart_readinto(buf)."""

    def __init__(self, per_interval=4, interval_ms=15):
        self._src = None  # the frame being sent: buffer, offset, length, next byte to notify
        self._soff = 0
        self._sn = 0
        self._spos = 0
        self._cut = False  # a frame was left half-sent: the next notification starts with a 0x00
        self._parts = [b""] * _RX_PARTS  # b"": an empty place (a constant, nothing allocated)
        self._ph = 0  # oldest part, parts held, bytes of the oldest already read
        self._pn = 0
        self._poff = 0
        self.chunk = bytearray(_MAX_CHUNK)
        self.payload = _DEFAULT_MTU - 3
        self._view = memoryview(self.chunk)[0 : self.payload]
        self.per_interval = per_interval
        self.interval_ms = interval_ms
        self._credits = per_interval
        self._t = 0
        self._pending = 0  # bytes of self.chunk waiting for a retry
        self.connected = False
        self.subscribed = False
        self.notifies = 0
        self.retries = 0
        self.cuts = 0
        self.rx_overflows = 0

    # ---- connection events (from the radio's IRQ handlers) -------------------------------------
    def on_connect(self):
        self.connected = True
        self._set_payload(_DEFAULT_MTU - 3)
        self._credits = self.per_interval

    def _set_payload(self, p):
        # Every notification is exactly `payload` bytes, so one view serves them all (no slice per
        # notification). A frame's last notification is padded with 0x00: empty frames between
        # delimiters, which every COBS reader skips.
        if p != self.payload:
            self.payload = p
            self._view = memoryview(self.chunk)[0:p]

    def on_disconnect(self):
        # The frame in flight goes again from its start on the next connection, after a 0x00 that
        # ends the part the host already has (its reader drops that part as damaged and resyncs).
        self.connected = False
        self.subscribed = False
        if self._src is not None and self._spos != self._soff:
            self._cut = True
        self._spos = self._soff
        self._pending = 0

    def on_mtu(self, att_mtu):
        p = att_mtu - 3
        self._set_payload(_MAX_CHUNK if p > _MAX_CHUNK else (20 if p < 20 else p))

    # ---- the link side ------------------------------------------------------------------------
    def uart_write(self, buf, off, n):
        if not (self.connected and self.subscribed):
            return False
        if self._src is buf and self._soff == off and self._sn == n:
            if self._spos == off + n and not self._pending:
                self._src = None
                return True
            return False
        # A different head frame: the link dropped the one in flight (its queue overflowed).
        if self._src is not None and self._spos != self._soff:
            self._cut = True
            self.cuts += 1
        self._src = buf
        self._soff = off
        self._sn = n
        self._spos = off
        self._pending = 0
        return False

    def uart_readinto(self, buf):
        n = 0
        parts = self._parts
        while self._pn and n < len(buf):
            part = parts[self._ph]
            o = self._poff
            k = len(part) - o
            if k > len(buf) - n:
                k = len(buf) - n
            for i in range(k):
                buf[n + i] = part[o + i]
            n += k
            o += k
            if o == len(part):
                parts[self._ph] = b""
                self._ph = (self._ph + 1) % _RX_PARTS
                self._pn -= 1
                o = 0
            self._poff = o
        return n

    # ---- the radio side -----------------------------------------------------------------------
    def on_write(self, data):
        """Bytes the central wrote to the RX characteristic (any chunking; kept, not copied)."""
        if not data:
            return
        if self._pn == _RX_PARTS:
            self.rx_overflows += 1  # the assembler drops the damaged frame and resyncs
            return
        self._parts[(self._ph + self._pn) % _RX_PARTS] = data
        self._pn += 1

    def next_notification(self, now_ms):
        """The next chunk to notify (a memoryview of self.chunk), or None when nothing is due or the
        pacing budget of this connection interval is spent. Call notified() with the outcome."""
        if not (self.connected and self.subscribed):
            return None
        if now_ms - self._t >= self.interval_ms:
            self._t = now_ms
            self._credits = self.per_interval
        if self._credits <= 0:
            return None
        if self._pending:
            return self._view
        src = self._src
        if src is None:
            return None
        pos = self._spos
        left = self._soff + self._sn - pos
        if left <= 0:
            return None
        c = self.chunk
        i = 0
        if self._cut:
            c[0] = 0
            i = 1
            self._cut = False
        p = self.payload
        n = left if left < p - i else p - i
        for k in range(n):
            c[i + k] = src[pos + k]
        for k in range(i + n, p):
            c[k] = 0  # padding after the end of the frame
        self._spos = pos + n
        self._pending = i + n
        return self._view

    def notified(self, ok):
        """ok False: the stack had no buffer (ENOMEM); the same chunk goes again next interval."""
        if ok:
            self._pending = 0
            self.notifies += 1
            self._credits -= 1
        else:
            self.retries += 1
            self._credits = 0
