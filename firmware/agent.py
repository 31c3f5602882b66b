# The board agent: boot, the sampling loop, conditions, counters, the board's own reports, safe mode.
#
# run(board) is the whole program. One loop pass (step) every FIFO half-fill: drain the FIFO into the
# ring, analyse the burst, run the motion state machine, let the streamer send VIB/STATS, debounce
# inputs, send STATE and EVENT, let the host commands handler answer host frames, pace the link, feed
# the watchdog if samples came in. A pass allocates nothing unless it handles a rare thing (a host
# frame, an EVENT, HELLO, a flash write); tests/test_fw_agent.py proves it with micropython.heap_lock().
# The parts: ring.py (samples), motion.py (analysis, window, calibration), streamer.py (ring -> VIB
# and STATS), commands.py (host -> board), events.py (EVENT queue), inputs.py, link.py.
import gc
import sys

from micropython import const

import accel
import lwproto
import motion as mo
from commands import CONFIG_FILE, HostCommands
from events import EventQueue, VALUE_KEYS
from fwutil import TICKS_MASK, tdiff, unload
from hal import BoardReset
from inputs import Inputs
from link import P_EVENT, P_STATE, Link
from ring import RING_SAMPLES, Ring
from settings import DEFAULTS, config_hash
from store import Store
from streamer import Streamer

FW_VERSION = "1.0.0"
KEY_FILE = "auth.key"  # what `liftwatch flash --key-file` writes (edge_daemon/flash.py)

# Persistent counters (store words).
_C_DOOR = const(0)
_C_TRIPS = const(1)
_C_RUN_S = const(2)
_C_BOOTS = const(3)
_C_FIFO = const(4)
_C_RING = const(5)
_C_LINK = const(6)
_C_EVDROP = const(7)
_N_WIRE = const(8)  # _C_DOOR.._C_EVDROP are the COUNTERS payload, in that order
_C_STREAK = const(8)  # crash-reboots in a row
_C_DIRTY = const(9)  # 1 while a boot has neither shut down cleanly nor run stable_ms
_NCOUNT = const(10)
_OVERRUN_CLEAR_MS = const(10000)  # a ring overrun condition clears after this long without another

_SAFE_PASS_MS = const(50)
_FAULT_RETRY_MS = const(1000)
_STALL_MS = const(250)


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


class Agent:
    """One boot of the firmware on one board (a reboot makes a new Agent)."""

    def __init__(self, board):
        # Every attribute first, while the heap still has room in one piece: this object's attribute
        # table is one block (37 slots for its 36 attributes: 592 bytes on a 64-bit port) and the
        # old one stays live while it grows. Grown last, after Link, Store and config had cut the
        # heap into small holes, it found none that size (MemoryError on the boot after a reset).
        self.board = board
        self.now = board.ticks_ms()
        self.up_ms = 0
        self.sensor = None
        self.motion = None
        self.transport = 0
        self.period_ms = _SAFE_PASS_MS  # until a sensor runs
        self.active = bytearray(8)  # per event kind: condition currently raised
        self._synced = [0, 0, 0, 0, 0, 0, 0]  # trips, run_ms, fifo, link, evdrop, doors, ring already counted
        self._persisted_at = 0
        self._stable = False
        self._hb_at = 0
        self._cnt_at = 0
        self._last_samples = self.now
        self._fault_at = 0
        self._rest_since = self.now
        self._alarm_since = 0
        self._overrun_at = -1
        self.hello_sent = 0
        self.passes = 0
        self.samples = 0
        self.ring = Ring()  # its 3 KiB buffer was reserved when ring.py was imported
        self.link = self.cnt = self.c = self.cfg = self.config_error = self.cfg_hash = None
        self.boot_id = self.safe_mode = self.evq = self.cal = self.inputs = self.streamer = None
        self.commands = self._on_frame = self.journal = None
        key = None
        try:
            with open(board.path(KEY_FILE), "rb") as f:
                key = f.read() or None
        except OSError:
            pass
        self.link = Link(board, 0, key, 921600)

        cnt = Store(board.path("lw_counters.bin"), 0x43, _NCOUNT)
        cnt.load()
        self.cnt = cnt
        self.c = cnt.values
        self.cfg, self.config_error = self._load_config()
        self.cfg_hash = config_hash(self.cfg)
        # Boot accounting: an unclean previous boot that was not a power loss counts as a crash.
        c = self.c
        c[_C_BOOTS] += 1
        cause = board.reset_cause()
        if c[_C_DIRTY] and cause not in ("power_on", "brownout"):
            c[_C_STREAK] += 1
        elif not c[_C_DIRTY]:
            c[_C_STREAK] = 0
        c[_C_DIRTY] = 1
        cnt.save()
        self.boot_id = c[_C_BOOTS] & 0xFFFF
        self.safe_mode = c[_C_STREAK] >= self.cfg["safe_mode_crashes"]
        self.link.boot_id = self.boot_id
        self.link.set_baud(self.cfg["baud"])
        self.evq = EventQueue(board.path("lw_events.bin"), self.cfg["event_retry_ms"])
        self.cal = Store(board.path("lw_calib.bin"), 0x47, 4)
        self.inputs = Inputs(board, self.cfg["debounce_ms"])
        self.streamer = Streamer(self.link, self.ring, self.cfg)
        self.commands = HostCommands(self)
        self._on_frame = self.commands.on_frame  # bound once: a bound method made per pass would allocate
        # The journal's file is opened and scanned here (that code comes and goes; on the mock board
        # in start() it left no 348 B hole after a power cut); the Journal is built last, in start().
        import journal_file

        self.journal = journal_file.load(board)
        del journal_file
        unload("journal_file")

    def _load_config(self):
        import os

        p = self.board.path(CONFIG_FILE)
        for name in (p, p + ".new"):
            try:
                os.stat(name)
            except OSError:
                continue
            import config  # validation is loaded only when there is something to validate

            try:
                return config.load_file(p, RING_SAMPLES)
            finally:
                del config
                unload("config")
        return dict(DEFAULTS), None

    # ---- boot ---------------------------------------------------------------------------------
    def start(self):
        b = self.board
        b.wdt_start(self.cfg["wdt_ms"])
        self.transport = b.set_transport(self.cfg["transport"])
        b.set_baud(self.cfg["baud"])  # at boot only: a CONFIG's ACK still goes out at the old speed
        if not self.safe_mode:
            self._start_sensor()
        # Last of the parts, imported here, not with the agent: the sensor's and the motion's buffers
        # need their blocks whole; the journal's small pieces fit in what is left.
        from journal import Journal

        self.journal = Journal(self, self.journal)
        if self.config_error:
            print("liftwatch:", self.config_error)
        self.send_hello()
        if self.safe_mode:
            self.condition(lwproto.KIND_SAFE_MODE, True, self.c[_C_STREAK])

    def _start_sensor(self):
        try:
            self.sensor = accel.detect(self.board.i2c)
            rate = self.sensor.start(self.cfg["rate_hz"])
        except OSError:
            self.sensor = None
            self._fault_at = self.now
            self.condition(lwproto.KIND_SENSOR_FAULT, True, 1)
            return
        if self.motion is None or self.motion.rate != rate or self.motion.lsb != self.sensor.LSB_PER_G:
            self.motion = mo.Motion(self.sensor.LSB_PER_G, rate, self.cfg)
            if self.cal.load() and self.cal.values[0]:
                v = self.cal.values
                self.motion.set_gravity(v[1], v[2], v[3])
        self.period_ms = max(5, 16000 // rate)
        self._last_samples = self.now
        self.condition(lwproto.KIND_SENSOR_FAULT, False, 0)

    # ---- the loop -----------------------------------------------------------------------------
    def loop(self):
        b = self.board
        nxt = self.now
        while True:
            period = _SAFE_PASS_MS if self.safe_mode or self.sensor is None else self.period_ms
            nxt = (nxt + period) & TICKS_MASK
            wait = tdiff(nxt, b.ticks_ms())
            if wait < 1:
                wait = 1
                nxt = (b.ticks_ms() + 1) & TICKS_MASK
            if not b.wait_ms(wait):
                return
            self.step()

    def step(self):
        """One loop pass (see the module comment)."""
        b = self.board
        now = b.ticks_ms()
        dt = tdiff(now, self.now)
        self.now = now
        self.up_ms += dt
        self.passes += 1
        progress = False
        if not self.safe_mode:
            if self.sensor is not None:
                progress = self._sample(now)
            elif tdiff(now, self._fault_at) >= _FAULT_RETRY_MS:
                self._fault_at = now
                self._start_sensor()
                progress = True  # a deliberate retry is progress: the loop is alive
            else:
                progress = True
            if self.inputs.poll(now):
                self._on_inputs()
            if self.motion is not None:
                self._conditions(now)
        else:
            progress = True
            self.inputs.poll(now)
        self.link.poll(self._on_frame)
        self._send_events(now)
        self.journal.poll(self, now)
        self._periodic(now)
        self.link.pump(now)
        b.service(now)
        if progress:
            b.wdt_feed()

    def _sample(self, now):
        s = self.sensor
        try:
            n = s.read()
        except OSError:
            self.sensor = None
            self._fault_at = now
            self.condition(lwproto.KIND_SENSOR_FAULT, True, 1)
            return True
        if n == 0:
            if tdiff(now, self._last_samples) > _STALL_MS:
                self.sensor = None
                self._fault_at = now
                self.condition(lwproto.KIND_SENSOR_FAULT, True, 2)
            return False
        self._last_samples = now
        ring = self.ring
        start = ring.count
        ring.write(s.scratch, n)
        self.samples += n
        m = self.motion
        prev = m.state
        m.process(ring, start, n)
        if m.changed:
            m.changed = False
            self._on_motion(prev, now)
        st = self.streamer
        lost = st.stream(now, m)
        if lost:
            if self._overrun_at < 0:
                self.condition(lwproto.KIND_RING_OVERRUN, True, lost)
            self._overrun_at = now
        w = st.close_window(now, m)
        if w is not None:
            self._calibrate(w)
            st.send_stats(now, m, w)
        return True

    # ---- motion, inputs, conditions ---------------------------------------------------------------
    def _on_motion(self, prev, now):
        st = self.motion.state
        if st == lwproto.MOTION_REST:
            self._rest_since = now
        self.send_state(now, 0)
        self.journal.motion(self, now)

    def _on_inputs(self):
        inp = self.inputs
        if inp.changed & lwproto.IN_ALARM_BUTTON and inp.stable & lwproto.IN_ALARM_BUTTON:
            self._alarm_since = inp.t_ms
        if inp.changed & (lwproto.IN_ZONE_UP | lwproto.IN_ZONE_DN):
            self._rest_since = inp.t_ms  # a door-zone edge: the car moved, whatever motion says
        self.send_state(inp.t_ms, inp.changed)
        self.journal.inputs(self)

    def _conditions(self, now):
        st = self.motion.state
        inp = self.inputs.stable
        decelerating = st == lwproto.MOTION_DECELERATING
        moving = st == lwproto.MOTION_ACCELERATING or st == lwproto.MOTION_MOVING or decelerating
        in_zone = inp & (lwproto.IN_ZONE_UP | lwproto.IN_ZONE_DN)
        # Door pre-opening while levelling inside the door zone is normal on many controllers.
        door_open = not inp & lwproto.IN_DOOR_CLOSED
        # In a door zone, a run that has not integrated to a displacement (a passenger jumping, the
        # car bouncing on its ropes) has not left the landing: motion.moved says when it has.
        self.condition(lwproto.KIND_DOOR_OPEN_WHILE_MOVING,
                       moving and door_open and (self.motion.moved or not in_zone)
                       and not (decelerating and in_zone), st)
        # Outside the door zone = neither zone sensor: a stop off level but inside the zone (one
        # sensor) is a leveling matter for the daemon, not a possible entrapment.
        outside = (st == lwproto.MOTION_REST and not in_zone and not inp & lwproto.IN_INSPECTION
                   and tdiff(now, self._rest_since) >= self.cfg["zone_stop_ms"])
        self.condition(lwproto.KIND_STOPPED_OUTSIDE_DOOR_ZONE, outside, inp)
        held = tdiff(now, self._alarm_since) if inp & lwproto.IN_ALARM_BUTTON else 0
        self.condition(lwproto.KIND_ALARM_BUTTON_HELD, held >= self.cfg["alarm_hold_ms"], held)
        if self._overrun_at >= 0 and tdiff(now, self._overrun_at) > _OVERRUN_CLEAR_MS:
            self._overrun_at = -1
            self.condition(lwproto.KIND_RING_OVERRUN, False, 0)

    def _calibrate(self, w):
        """A closed window toward calibration, while it is asked for (CONTROL calibrate) or automatic;
        once calibrated, the rest offset is tracked in every window of confirmed rest: motion at
        rest, in a door zone, no door-zone edge and no motion change since before the window."""
        m = self.motion
        cmd = self.commands
        if cmd.cal_seq < 0 and m.calibrated:
            if (m.state == lwproto.MOTION_REST and self.inputs.stable & (lwproto.IN_ZONE_UP | lwproto.IN_ZONE_DN)
                    and tdiff(self.now, self._rest_since) > 2 * self.cfg["stats_ms"]):
                m.track(w)
            return
        if cmd.cal_seq < 0 and not self.cfg["auto_calibrate"]:
            return
        found = m.calibrate(w)
        if found > 0:
            v = self.cal.values
            g = m.gravity
            v[0] = 1
            v[1] = g[0]
            v[2] = g[1]
            v[3] = g[2]
            self.cal.save()
            self._rest_since = self.now
            cmd.answer_calibrate(g)
            self.send_state(self.now, 0)
        elif found < 0:
            cmd.answer_calibrate(None)

    def condition(self, kind, on, value):
        """Raise or clear a board-detected condition: an EVENT on each edge, queued until ACKed."""
        on = 1 if on else 0
        if self.active[kind] == on:
            return
        self.active[kind] = on
        self.evq.add(kind, on, self.now, value, self.boot_id, self.now)

    # ---- counters -------------------------------------------------------------------------------
    def sync_counters(self):
        """Fold what the parts counted since the last sync into the persistent counters."""
        c = self.c
        s = self._synced
        m = self.motion
        if m is not None:
            c[_C_TRIPS] += m.trips - s[0]
            s[0] = m.trips
            run = m.run_ms - s[1]
            c[_C_RUN_S] += run // 1000
            s[1] += run - run % 1000
        if self.sensor is not None:
            c[_C_FIFO] += self.sensor.overruns - s[2]
            s[2] = self.sensor.overruns
        c[_C_LINK] += self.link.drops - s[3]
        s[3] = self.link.drops
        c[_C_EVDROP] += self.evq.dropped - s[4]
        s[4] = self.evq.dropped
        c[_C_DOOR] += self.inputs.door_cycles - s[5]
        s[5] = self.inputs.door_cycles
        c[_C_RING] += self.streamer.overruns - s[6]
        s[6] = self.streamer.overruns

    def configure(self, new):
        """A validated CONFIG's settings (saved already) take effect in every part."""
        old = self.cfg
        self.cfg = new
        self.inputs.debounce_ms = new["debounce_ms"]
        self.evq.retry_ms = self.journal.retry_ms = new["event_retry_ms"]
        self.streamer.configure(new)
        if self.motion is not None:
            self.motion.configure(new)
        if new["rate_hz"] != old["rate_hz"] and self.sensor is not None:
            self._start_sensor()
        self.cfg_hash = config_hash(new)

    def persist(self):
        self.sync_counters()
        self.cnt.save()
        if not isinstance(self.journal, tuple):  # the file as opened, until start() builds the Journal
            self.journal.persist()
        self._persisted_at = self.up_ms

    def _periodic(self, now):
        cfg = self.cfg
        up = self.up_ms
        if up - self._hb_at >= cfg["heartbeat_ms"]:
            self._hb_at = up
            # The one known point where the collector runs (a few ms on an ESP32): rare jobs (HELLO,
            # ACKs, flash writes) leave a little garbage, the sampling path none.
            gc.collect()
            self.send_heartbeat()
        if up - self._cnt_at >= cfg["counters_ms"]:
            self._cnt_at = up
            self.send_counters()
        if not self._stable and up >= cfg["stable_ms"] and not self.safe_mode:
            self._stable = True
            self.c[_C_STREAK] = 0
            self.c[_C_DIRTY] = 0
            self.persist()
        elif up - self._persisted_at >= cfg["persist_s"] * 1000:
            self.persist()

    # ---- the board's own reports ------------------------------------------------------------------
    def motion_code(self):
        return self.motion.state if self.motion is not None else lwproto.MOTION_UNCALIBRATED

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
        try:  # the firmware update boot record (otaboot.py): HELLO carries it, the host reads it
            with open(b.path("ota.boot")) as f:
                update = f.read()
        except OSError:
            update = ""
        m = self.motion
        s = self.sensor
        caps = ["vib", "stats", "events", "config", "calibrate"]
        if self.transport == 1:
            caps.append("ble")
        payload = [
            b.uid_hex(), FW_VERSION, s.MODEL if s else "none", self.cfg_hash,
            b.reset_cause(), caps, m.rate if m else 0, m.lsb if m else 0,
            bool(m and m.calibrated), self.safe_mode, self.c[_C_BOOTS],
            list(m.gravity) if m and m.calibrated else None, update,
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
        off = _pack_arr(body, off, _N_WIRE)
        for i in range(_N_WIRE):
            off = _pack_int(body, off, self.c[i])
        lk.commit(off, P_STATE)

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
        off = lwproto.pack_map_header(body, off, 2)  # detail: the boot it happened in, and its value
        off = _pack_key(body, off, b"boot")
        off = _pack_int(body, off, boot)
        off = _pack_key(body, off, VALUE_KEYS[kind] if kind < len(VALUE_KEYS) else b"value")
        off = _pack_int(body, off, value)
        lk.commit(off, P_EVENT)
        q.sent(i, now)

    # ---- the end ------------------------------------------------------------------------------
    def shutdown(self):
        """Clean stop: counters to flash (this boot ends well), queued frames out."""
        self.c[_C_DIRTY] = 0
        self.c[_C_STREAK] = 0
        self.persist()
        self.link.pump(self.board.ticks_ms(), True)
        self.board.uart_flush()

    def crash(self, exc):
        sys.print_exception(exc)
        try:
            self.persist()  # _C_DIRTY stays set: the next boot counts this as a crash
        except Exception:
            pass
        self.board.reset("hard")


def run(board):
    """Boot and run until the feed ends (simulator) or forever (ESP32); Ctrl-C stops cleanly and
    propagates to the REPL; an unexpected exception is a crash: record it and reset."""
    gc.collect()
    a = Agent(board)
    try:
        a.start()
        if a.safe_mode:
            a.period_ms = _SAFE_PASS_MS
        a.loop()
    except KeyboardInterrupt:
        a.shutdown()
        board.wdt_park()  # the REPL (flashing, calibration by hand) must not be reset after wdt_ms
        raise
    except BoardReset:
        raise
    except Exception as e:
        a.crash(e)
    a.shutdown()
    return a
