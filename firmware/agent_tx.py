# The agent's outgoing side: streaming policy (VIB around trips, STATS at rest), calibration, and the
# frames packed in place (no allocation except HELLO, ACK and TIME_SYNC, which carry strings or big
# ints and are rare). A mixin of agent.Agent, split out so each module compiles in a 96 KiB heap.
from micropython import const

import events as ev
import lwproto
import motion as mo
from fwutil import TICKS_MASK, isqrt, tdiff
from link import P_EVENT, P_STATE, P_STATS, P_VIB

_VIB_SAMPLES = const(64)
_QUIET_MG = const(8)  # rms below this on every axis: the car is at rest (or cruising) for calibration
C_BOOTS = const(3)
C_RING = const(5)
FW_VERSION = "1.0.0"

_pack_int = lwproto.pack_int
_pack_arr = lwproto.pack_array_header
_pack_bool = lwproto.pack_bool


def _pack_key(buf, off, key):
    # A short str from bytes without encoding (so without allocating).
    n = len(key)
    buf[off] = 0xA0 | n
    off += 1
    for i in range(n):
        buf[off + i] = key[i]
    return off + n


class Tx:
    # ---- streaming ----------------------------------------------------------------------------
    def _stream(self, now):
        m = self.motion
        ring = self.ring
        mode = self.stream_mode
        if mode == 1:
            want = True
        elif mode == 2 or not m.calibrated:
            want = False
        elif m.state != mo.REST:
            want = True
            self._stream_end = (now + self.cfg["margin_ms"]) & TICKS_MASK
        else:
            want = self.streaming and tdiff(now, self._stream_end) < 0
        was = self.streaming
        self.streaming = want
        if not want and not was:
            return
        if want and not was:
            pre = (self.cfg["margin_ms"] + self.cfg["motion_on_ms"]) * m.rate // 1000 + _VIB_SAMPLES
            if pre > mo.RING_SAMPLES - 2 * _VIB_SAMPLES:
                pre = mo.RING_SAMPLES - 2 * _VIB_SAMPLES
            if pre > self.samples:
                pre = self.samples
            self._vib_idx = (ring.count - pre) & TICKS_MASK
        lag = ring.lag(self._vib_idx)
        if lag > mo.RING_SAMPLES - _VIB_SAMPLES:
            lost = lag - (mo.RING_SAMPLES - _VIB_SAMPLES)
            self._vib_idx = (self._vib_idx + lost) & TICKS_MASK
            self.c[C_RING] += 1
            if self._overrun_at < 0:
                self.condition(ev.RING_OVERRUN, True, lost)
            self._overrun_at = now
            lag -= lost
        while lag >= _VIB_SAMPLES:
            self._send_vib(_VIB_SAMPLES)
            lag -= _VIB_SAMPLES
        if not want and lag:
            self._send_vib(lag)  # the stream just ended: its tail

    def _send_vib(self, n):
        ring = self.ring
        lk = self.link
        body = lk.enc.body
        off = lk.begin(lwproto.T_VIB, (self.now - (ring.lag(self._vib_idx) - n) * 1000 // self.motion.rate) & TICKS_MASK)  # SPEC: t_ms = time of the block's last sample (pre-trigger blocks are older than now)
        off = _pack_arr(body, off, 5)
        off = _pack_int(body, off, self.motion.rate)
        off = _pack_int(body, off, self.motion.lsb)
        off = _pack_int(body, off, self._vib_idx & 0xFFFF)
        off = _pack_int(body, off, n)
        off = lwproto.pack_bin_header(body, off, n * 6)
        i = self._vib_idx & (mo.RING_SAMPLES - 1)
        first = mo.RING_SAMPLES - i
        if first > n:
            first = n
        lwproto.copy_into(body, off, ring.buf, i * 6, first * 6)
        if n > first:
            lwproto.copy_into(body, off + first * 6, ring.buf, 0, (n - first) * 6)
        lk.commit(off + n * 6, P_VIB)
        self._vib_idx = (self._vib_idx + n) & TICKS_MASK

    def _window(self, now):
        m = self.motion
        win_ms = tdiff(now, self._win_at)
        self._win_at = now
        w = m.window()
        n = w[0]
        if not n:
            return
        k = m.lsb
        quiet = w[4] * 1000 < _QUIET_MG * k and w[5] * 1000 < _QUIET_MG * k and w[6] * 1000 < _QUIET_MG * k
        if self._cal_seq >= 0 or (not m.calibrated and self.cfg["auto_calibrate"]):
            self._try_calibrate(w, quiet)
        if self.streaming or self.stream_mode == 1:
            return
        lk = self.link
        body = lk.enc.body
        off = lk.begin(lwproto.T_STATS, now)
        off = _pack_arr(body, off, 6)
        off = _pack_int(body, off, win_ms)
        off = _pack_int(body, off, n)
        off = _pack_arr(body, off, 3)
        for i in (1, 2, 3):
            off = _pack_int(body, off, w[i] * 1000 // k)
        off = _pack_arr(body, off, 3)
        for i in (4, 5, 6):
            off = _pack_int(body, off, w[i] * 1000 // k)
        off = _pack_int(body, off, w[7] * 1000 // k)
        off = _pack_int(body, off, m.state)
        lk.commit(off, P_STATS)

    def _try_calibrate(self, w, quiet):
        # Gravity = the mean of a quiet window that agrees with the previous quiet window.
        m = self.motion
        k = m.lsb
        ok = False
        if quiet:
            g2 = w[1] * w[1] + w[2] * w[2] + w[3] * w[3]
            g = isqrt(g2)
            prev = self._quiet_prev
            if prev is not None and abs(g - k) < k // 5:
                d = abs(prev[0] - w[1]) + abs(prev[1] - w[2]) + abs(prev[2] - w[3])
                ok = d * 1000 < 6 * k
            self._quiet_prev = (w[1], w[2], w[3])
        else:
            self._quiet_prev = None
        if ok and m.set_gravity(w[1], w[2], w[3]):
            v = self.cal.values
            v[0] = 1
            v[1] = w[1]
            v[2] = w[2]
            v[3] = w[3]
            self.cal.save()
            self._rest_since = self.now
            if self._cal_seq >= 0:
                self.send_ack(lwproto.T_CONTROL, self._cal_seq, 0, "", [w[1], w[2], w[3]])
                self._cal_seq = -1
            self.send_state(self.now, 0)
        elif self._cal_seq >= 0 and not quiet:
            self.send_ack(lwproto.T_CONTROL, self._cal_seq, 1, "car not at rest", None)
            self._cal_seq = -1

    # ---- frames out ---------------------------------------------------------------------------
    def motion_code(self):
        return self.motion.state if self.motion is not None else mo.UNCALIBRATED

    def send_state(self, t_ms, changed):
        lk = self.link
        body = lk.enc.body
        off = lk.begin(lwproto.T_STATE, self.now)
        off = _pack_arr(body, off, 4)
        off = _pack_int(body, off, t_ms)
        off = _pack_int(body, off, self.inputs.stable)
        off = _pack_int(body, off, changed)
        off = _pack_int(body, off, self.motion_code())
        lk.commit(off, P_STATE)

    def send_hello(self):
        b = self.board
        m = self.motion
        s = self.sensor
        caps = ["vib", "stats", "events", "config", "calibrate"]
        if self.transport == 1:
            caps.append("ble")
        payload = [
            b.uid_hex(), FW_VERSION, s.MODEL if s else "none", self.cfg_hash,
            b.reset_cause(), caps, m.rate if m else 0, m.lsb if m else 0,
            bool(m and m.calibrated), self.safe_mode, self.c[C_BOOTS],
            list(m.gravity) if m and m.calibrated else None,
        ]
        lk = self.link
        off = lk.begin(lwproto.T_HELLO, self.now)
        lk.commit(lwproto.pack_into(lk.enc.body, off, payload), P_EVENT)
        self.hello_sent += 1

    def send_heartbeat(self):
        lk = self.link
        body = lk.enc.body
        off = lk.begin(lwproto.T_HEARTBEAT, self.now)
        off = _pack_arr(body, off, 7)
        off = _pack_int(body, off, self.up_ms // 1000)
        off = _pack_int(body, off, self.board.mem_free())
        off = _pack_int(body, off, lk.depth + self.evq.n)
        off = _pack_int(body, off, self.motion_code())
        off = _pack_int(body, off, self.inputs.stable)
        off = _pack_bool(body, off, self.motion is not None and self.motion.calibrated)
        off = _pack_bool(body, off, self.safe_mode)
        lk.commit(off, P_STATE)

    def send_counters(self):
        self.sync_counters()
        lk = self.link
        body = lk.enc.body
        off = lk.begin(lwproto.T_COUNTERS, self.now)
        off = _pack_arr(body, off, 8)
        for i in range(8):
            off = _pack_int(body, off, self.c[i])
        lk.commit(off, P_STATE)

    def send_ack(self, ack_type, ack_id, status, reason, extra):
        lk = self.link
        off = lk.begin(lwproto.T_ACK, self.now)
        lk.commit(lwproto.pack_into(lk.enc.body, off, [ack_type, ack_id, status, reason, extra]), P_EVENT)

    def _send_events(self, now):
        q = self.evq
        i = q.due(now)
        if i < 0:
            return
        eid, kind, state, t_ms, value, boot = q.fields(i)
        lk = self.link
        body = lk.enc.body
        off = lk.begin(lwproto.T_EVENT, now)
        off = _pack_arr(body, off, 5)
        off = _pack_int(body, off, eid)
        off = _pack_int(body, off, kind)
        off = _pack_int(body, off, state)
        off = _pack_int(body, off, t_ms)
        off = lwproto.pack_map_header(body, off, 2)
        off = _pack_key(body, off, b"boot")
        off = _pack_int(body, off, boot)
        off = _pack_key(body, off, ev.VALUE_KEYS[kind] if kind < len(ev.VALUE_KEYS) else b"value")
        off = _pack_int(body, off, value)
        lk.commit(off, P_EVENT)
        q.sent(i, now)
