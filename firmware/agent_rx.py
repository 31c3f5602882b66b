# The agent's incoming side: ACKs of events, TIME_SYNC, CONFIG (validated, saved, ACKed with the
# config hash or refused with a reason) and CONTROL commands. A mixin of agent.Agent.
import gc

from micropython import const

import lwproto
import motion as mo
from fwutil import unload
from link import P_EVENT

CONFIG_FILE = "config.json"  # what `liftwatch flash --config` writes (edge_daemon/flash.py)
_CONTROL_REBOOT = const(1)
_CONTROL_CALIBRATE = const(2)
_CONTROL_STREAM = const(3)
_CONTROL_HELLO = const(4)
_CONTROL_COUNTERS = const(5)


class Rx:
    # ---- frames in ----------------------------------------------------------------------------
    def on_frame(self, mtype, boot_id, seq, p):
        if mtype == lwproto.T_ACK:
            if len(p) >= 2 and p[0] == lwproto.T_EVENT:
                self.evq.ack(p[1])
        elif mtype == lwproto.T_TIME_SYNC:
            lk = self.link
            off = lk.begin(lwproto.T_TIME_SYNC, self.now)
            lk.commit(lwproto.pack_into(lk.enc.body, off, [p[0] if p else 0, self.now]), P_EVENT)
        elif mtype == lwproto.T_CONFIG:
            self._on_config(seq, p[0] if p else None)
        elif mtype == lwproto.T_CONTROL:
            self._on_control(seq, p[0] if p else 0, p[1] if len(p) > 1 else 0)

    def _on_config(self, seq, settings):
        gc.collect()  # room for the validation code, loaded for the job and dropped after
        try:
            import config

            self._apply_config(config, seq, settings)
        except MemoryError:
            # Never a crash for want of heap: the host is told and may send the CONFIG again.
            gc.collect()
            self.send_ack(lwproto.T_CONFIG, seq, 3, "board out of memory, retry", self.cfg_hash)
        finally:
            unload("config")

    def _apply_config(self, config, seq, settings):
        max_rate = self.sensor.rates()[-1] if self.sensor is not None else 1600
        refused = self.link.refused_unkeyed(settings)  # SECURITY.md, "An unkeyed board"
        if refused:
            self.send_ack(lwproto.T_CONFIG, seq, 1, refused, self.cfg_hash)
            return
        try:
            new = config.merge(self.cfg, settings, mo.RING_SAMPLES, max_rate)
        except config.ConfigError as e:
            self.send_ack(lwproto.T_CONFIG, seq, 1, e.reason, self.cfg_hash)
            return
        old = self.cfg
        self.cfg = new
        if not self.link.volatile_only:  # unkeyed: applied until the next boot, never saved to flash
            config.save_file(self.board.path(CONFIG_FILE), new)
        self.inputs.debounce_ms = new["debounce_ms"]
        self.evq.retry_ms = new["event_retry_ms"]
        self.stream_mode = new["stream"]
        if self.motion is not None:
            self.motion.configure(new)
        if new["rate_hz"] != old["rate_hz"] and self.sensor is not None:
            self._start_sensor()
        self.cfg_hash = config.config_hash(new)
        self.send_ack(lwproto.T_CONFIG, seq, 0, "", self.cfg_hash)

    def _on_control(self, seq, cmd, arg):
        T = lwproto.T_CONTROL
        if cmd == _CONTROL_REBOOT:
            self.send_ack(T, seq, 0, "", None)
            self.shutdown()
            self.board.reset("soft")
        elif cmd == _CONTROL_CALIBRATE:
            if self.motion is None:
                self.send_ack(T, seq, 1, "no sensor", None)
            else:
                self._cal_seq = seq  # answered when the next STATS window closes
                self._quiet_prev = None
                self.motion.calibrated = False
        elif cmd == _CONTROL_STREAM:
            if arg < 0 or arg > 2:
                self.send_ack(T, seq, 1, "stream mode must be 0..2", None)
            else:
                self.stream_mode = arg
                self.send_ack(T, seq, 0, "", None)
        elif cmd == _CONTROL_HELLO:
            self.send_hello()
        elif cmd == _CONTROL_COUNTERS:
            self.send_counters()
        else:
            self.send_ack(T, seq, 2, "unknown command", None)
