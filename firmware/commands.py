# Host commands: what the board does with each host->board frame. ACK of an EVENT (drop it from the
# queue), TIME_SYNC (echo with board time), CONFIG (validated, saved, ACKed with the new config hash
# or refused with a reason), CONTROL (reboot, calibrate, stream mode, HELLO or COUNTERS on request).
# Every CONFIG and CONTROL is answered by an ACK naming the host frame's seq.
import gc

import lwproto
from fwutil import unload
from link import P_EVENT
from lwproto import (
    ACK_BUSY,
    ACK_OK,
    ACK_REFUSED,
    ACK_UNKNOWN,
    CMD_CALIBRATE,
    CMD_REBOOT,
    CMD_REQUEST_COUNTERS,
    CMD_REQUEST_HELLO,
    CMD_STREAM_MODE,
    STREAM_AUTO,
    STREAM_NO_VIB,
    T_ACK,
    T_CONFIG,
    T_CONTROL,
    T_EVENT,
    T_TIME_SYNC,
)
from ring import RING_SAMPLES

CONFIG_FILE = "config.json"  # what `liftwatch flash --config` writes (edge_daemon/flash.py)


class HostCommands:
    """The handler of host frames for one boot; ``agent`` is the board it reconfigures and reboots."""

    def __init__(self, agent):
        self.agent = agent
        self.link = agent.link
        self.cal_seq = -1  # seq of a CONTROL calibrate answered when a window closes, or -1

    def on_frame(self, mtype, boot_id, seq, p):
        """Link.poll's callback: one checked host frame (type, boot id, seq, payload)."""
        if mtype == T_ACK:
            if len(p) >= 2 and p[0] == T_EVENT:
                self.agent.evq.ack(p[1])
        elif mtype == T_TIME_SYNC:
            lk = self.link
            now = self.agent.now
            off = lk.begin(T_TIME_SYNC, now)
            lk.commit(lwproto.pack_into(lk.enc.body, off, [p[0] if p else 0, now]), P_EVENT)
        elif mtype == T_CONFIG:
            self._on_config(seq, p[0] if p else None)
        elif mtype == T_CONTROL:
            self._on_control(seq, p[0] if p else 0, p[1] if len(p) > 1 else 0)

    def send_ack(self, ack_type, ack_id, status, reason, extra):
        lk = self.link
        off = lk.begin(T_ACK, self.agent.now)
        lk.commit(lwproto.pack_into(lk.enc.body, off, [ack_type, ack_id, status, reason, extra]), P_EVENT)

    # ---- CONFIG ---------------------------------------------------------------------------------
    def _on_config(self, seq, settings):
        gc.collect()  # room for the validation code, loaded for the job and dropped after
        try:
            import config

            self._apply_config(config, seq, settings)
        except MemoryError:
            # Never a crash for want of heap: the host is told and may send the CONFIG again.
            gc.collect()
            self.send_ack(T_CONFIG, seq, ACK_BUSY, "board out of memory, retry", self.agent.cfg_hash)
        finally:
            unload("config")

    def _apply_config(self, config, seq, settings):
        a = self.agent
        max_rate = a.sensor.rates()[-1] if a.sensor is not None else 1600
        try:
            new = config.merge(a.cfg, settings, RING_SAMPLES, max_rate)
        except config.ConfigError as e:
            self.send_ack(T_CONFIG, seq, ACK_REFUSED, e.reason, a.cfg_hash)
            return
        config.save_file(a.board.path(CONFIG_FILE), new)
        a.configure(new)
        self.send_ack(T_CONFIG, seq, ACK_OK, "", a.cfg_hash)

    # ---- CONTROL --------------------------------------------------------------------------------
    def _on_control(self, seq, cmd, arg):
        a = self.agent
        if cmd == CMD_REBOOT:
            self.send_ack(T_CONTROL, seq, ACK_OK, "", None)
            a.shutdown()
            a.board.reset("soft")
        elif cmd == CMD_CALIBRATE:
            if a.motion is None:
                self.send_ack(T_CONTROL, seq, ACK_REFUSED, "no sensor", None)
            else:
                self.cal_seq = seq  # answered when the next STATS window closes
                a.motion.recalibrate()
        elif cmd == CMD_STREAM_MODE:
            if arg < STREAM_AUTO or arg > STREAM_NO_VIB:
                self.send_ack(T_CONTROL, seq, ACK_REFUSED, "stream mode must be 0..2", None)
            else:
                a.streamer.mode = arg
                self.send_ack(T_CONTROL, seq, ACK_OK, "", None)
        elif cmd == CMD_REQUEST_HELLO:
            a.send_hello()
        elif cmd == CMD_REQUEST_COUNTERS:
            a.send_counters()
        else:
            self.send_ack(T_CONTROL, seq, ACK_UNKNOWN, "unknown command", None)

    def calibration_done(self, gravity):
        """The window that set gravity closed: answer a pending CONTROL calibrate with it."""
        if self.cal_seq >= 0:
            self.send_ack(T_CONTROL, self.cal_seq, ACK_OK, "", gravity)
            self.cal_seq = -1

    def calibration_refused(self):
        """A window that was not quiet closed: a pending CONTROL calibrate is refused."""
        if self.cal_seq >= 0:
            self.send_ack(T_CONTROL, self.cal_seq, ACK_REFUSED, "car not at rest", None)
            self.cal_seq = -1
