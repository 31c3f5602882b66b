# BLE link logic without the radio: the frame byte stream over a Nordic-UART-style GATT service.
#
# Frames are COBS with a 0x00 delimiter, so over BLE they stay a byte stream: the TX side cuts it into
# notifications of at most ATT_MTU - 3 bytes (whatever the MTU exchange gave) and paces them (a few
# notifications per connection interval, so the controller's buffers never overflow and a failed
# notify is retried, not lost); the RX side just concatenates what the central writes and hands it to
# the link's frame assembler, which resynchronises at the next delimiter if anything was lost. The
# radio calls live in ble_nus.py (ESP32 only); everything here runs and is tested on the unix port.
from micropython import const

_DEFAULT_MTU = const(23)  # before the MTU exchange
_MAX_CHUNK = const(244)  # ATT_MTU 247 (BLE 4.2 data length extension) - 3


class BleStream:
    """TX ring of frame bytes cut into paced notifications, RX ring of written bytes.

    The link sees the uart_* interface of a board: uart_write(buf, off, n) takes a whole frame or
    nothing (so the link keeps it queued and its drop policy applies), uart_readinto(buf)."""

    def __init__(self, tx_bytes=2048, rx_bytes=512, per_interval=4, interval_ms=15):
        self.tx = bytearray(tx_bytes)
        self.rx = bytearray(rx_bytes)
        self._th = 0  # TX ring head (oldest byte) and count
        self._tn = 0
        self._rh = 0
        self._rn = 0
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
        self.rx_overflows = 0

    # ---- connection events (from the radio's IRQ handlers) -------------------------------------
    def on_connect(self):
        self.connected = True
        self._set_payload(_DEFAULT_MTU - 3)
        self._credits = self.per_interval

    def _set_payload(self, p):
        # Every notification is exactly `payload` bytes, so one view serves them all (no slice per
        # notification). The tail of the stream always ends a frame, so it is padded with 0x00:
        # empty frames between delimiters, which every COBS reader skips.
        if p != self.payload:
            self.payload = p
            self._view = memoryview(self.chunk)[0:p]

    def on_disconnect(self):
        # What was in flight is dropped: frames resync on the host; unACKed EVENTs are re-sent.
        self.connected = False
        self.subscribed = False
        self._th = self._tn = self._pending = 0

    def on_mtu(self, att_mtu):
        p = att_mtu - 3
        self._set_payload(_MAX_CHUNK if p > _MAX_CHUNK else (20 if p < 20 else p))

    # ---- the link side ------------------------------------------------------------------------
    def uart_write(self, buf, off, n):
        if not (self.connected and self.subscribed) or n > len(self.tx) - self._tn:
            return False
        cap = len(self.tx)
        w = (self._th + self._tn) % cap
        for i in range(n):
            self.tx[w] = buf[off + i]
            w += 1
            if w == cap:
                w = 0
        self._tn += n
        return True

    def uart_readinto(self, buf):
        n = 0
        cap = len(self.rx)
        while self._rn and n < len(buf):
            buf[n] = self.rx[self._rh]
            self._rh = (self._rh + 1) % cap
            self._rn -= 1
            n += 1
        return n

    # ---- the radio side -----------------------------------------------------------------------
    def on_write(self, data):
        """Bytes the central wrote to the RX characteristic (any chunking)."""
        cap = len(self.rx)
        for b in data:
            if self._rn == cap:
                self.rx_overflows += 1  # the assembler drops the damaged frame and resyncs
                return
            self.rx[(self._rh + self._rn) % cap] = b
            self._rn += 1

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
        p = self.payload
        n = self._tn if self._tn < p else p
        if not n:
            return None
        cap = len(self.tx)
        h = self._th
        c = self.chunk
        for i in range(n):
            c[i] = self.tx[h]
            h += 1
            if h == cap:
                h = 0
        for i in range(n, p):
            c[i] = 0  # padding after the last whole frame
        self._th = h
        self._tn -= n
        self._pending = n
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
