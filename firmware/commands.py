# Host commands: what the board does with each host->board frame. ACK of an EVENT (drop it from the
# queue), TIME_SYNC (echo with board time), CONFIG (validated, saved, ACKed with the new config hash
# or refused with a reason), CONTROL (reboot, calibrate, stream mode, HELLO or COUNTERS on request).
# Every CONFIG and CONTROL is answered by an ACK naming the host frame's seq. A firmware update's
# frames (OTA_CHUNK, CONTROL 6..9) go to otarx.py, imported at the first of them: a board that is
# not being updated never has it on its heap.
import gc

import lwproto
from fwutil import tdiff, unload
from link import P_EVENT
from ring import RING_SAMPLES

CONFIG_FILE = "config.json"  # what `liftwatch flash --config` writes (edge_daemon/flash.py)


class HostCommands:
    """The handler of host frames for one boot; ``agent`` is the board it reconfigures and reboots."""

    def __init__(self, agent):
        self.agent = agent
        self.link = agent.link
        self.cal_seq = -1  # seq of a CONTROL calibrate answered when a window closes, or -1
        self.heard_at = agent.now  # board ms of the last host frame

    def on_frame(self, mtype, boot_id, seq, p):
        """Link.poll's callback: one checked host frame (type, boot id, seq, payload)."""
        a = self.agent
        now = a.now
        # A host that is there answers an EVENT or a JOURNAL record within a base retry; silent that
        # long (or longer than tdiff reaches), it was away or the link was down (BLE out of range, a
        # cable, the Pi rebooting). What waits for its ACK goes again now, not after the back-off
        # grown meanwhile. A host heard all along changes nothing: its silence, not its frames, says
        # it was away.
        if not 0 <= tdiff(now, self.heard_at) < a.evq.retry_ms:
            a.evq.restart(now)
            a.journal.restart(now)
        self.heard_at = now
        if mtype == lwproto.T_ACK:
            if len(p) >= 2 and p[0] == lwproto.T_EVENT:
                a.evq.ack(p[1])
            elif len(p) >= 2 and p[0] == lwproto.T_JOURNAL:
                a.journal.ack(p[1])
        elif mtype == lwproto.T_TIME_SYNC:
            lk = self.link
            off = lk.begin(lwproto.T_TIME_SYNC, now)
            lk.commit(lwproto.pack_into(lk.enc.body, off, [p[0] if p else 0, now]), P_EVENT)
        elif mtype == lwproto.T_CONFIG:
            self._on_config(seq, p[0] if p else None)
        elif mtype == lwproto.T_CONTROL and (p[0] if p else 0) not in b"\x06\x07\x08\x09":  # lwota.CMD_OTA_*
            self._on_control(seq, p[0] if p else 0, p[1] if len(p) > 1 else 0)
        else:  # OTA_CHUNK or CONTROL 6..9: a firmware update, received by otarx.py, loaded for it
            gc.collect()
            try:
                import otarx
            except MemoryError:  # no answer: the host asks again (edge_daemon/ota.py STATUS_TIMEOUT_S)
                return
            otarx.on_frame(self, p)

    def send_ack(self, ack_type, ack_id, status, reason, extra):
        lk = self.link
        off = lk.begin(lwproto.T_ACK, self.agent.now)
        lk.commit(lwproto.pack_into(lk.enc.body, off, [ack_type, ack_id, status, reason, extra]), P_EVENT)

    # ---- CONFIG ---------------------------------------------------------------------------------
    def _on_config(self, seq, settings):
        gc.collect()  # room for the validation code, loaded for the job and dropped after
        try:
            self._apply_config(seq, settings)
        except MemoryError:
            # Never a crash for want of heap: the host is told and may send the CONFIG again.
            gc.collect()
            busy = lwproto.ACK_BUSY
            self.send_ack(lwproto.T_CONFIG, seq, busy, "board out of memory, retry", self.agent.cfg_hash)
        finally:
            unload("config")

    def _apply_config(self, seq, settings):
        a = self.agent
        new = dict(a.cfg)  # before the code is loaded, while the holes are largest: its table is one block
        import config

        max_rate = a.sensor.rates()[-1] if a.sensor is not None else 1600
        refused = a.link.refused_unkeyed(settings)  # SECURITY.md, "An unkeyed board"
        if refused:
            self.send_ack(lwproto.T_CONFIG, seq, lwproto.ACK_REFUSED, refused, a.cfg_hash)
            return
        try:
            config.merge(new, settings, RING_SAMPLES, max_rate)
        except config.ConfigError as e:
            self.send_ack(lwproto.T_CONFIG, seq, lwproto.ACK_REFUSED, e.reason, a.cfg_hash)
            return
        if not a.link.volatile_only:  # unkeyed: applied until the next boot, never saved to flash
            config.save_file(a.board.path(CONFIG_FILE), new)
        a.configure(new)
        self.send_ack(lwproto.T_CONFIG, seq, lwproto.ACK_OK, "", a.cfg_hash)

    # ---- CONTROL --------------------------------------------------------------------------------
    def _on_control(self, seq, cmd, arg):
        a = self.agent
        if cmd == lwproto.CMD_REBOOT:
            self.send_ack(lwproto.T_CONTROL, seq, lwproto.ACK_OK, "", None)
            a.shutdown()
            a.board.reset("soft")
        elif cmd == lwproto.CMD_CALIBRATE:
            if a.motion is None:
                self.send_ack(lwproto.T_CONTROL, seq, lwproto.ACK_REFUSED, "no sensor", None)
            else:
                self.cal_seq = seq  # answered when the next STATS window closes
                a.motion.recalibrate()
        elif cmd == lwproto.CMD_STREAM_MODE:
            if arg < lwproto.STREAM_AUTO or arg > lwproto.STREAM_NO_VIB:
                self.send_ack(lwproto.T_CONTROL, seq, lwproto.ACK_REFUSED, "stream mode must be 0..2", None)
            else:
                a.streamer.mode = arg
                self.send_ack(lwproto.T_CONTROL, seq, lwproto.ACK_OK, "", None)
        elif cmd == lwproto.CMD_REQUEST_HELLO:
            a.send_hello()
        elif cmd == lwproto.CMD_REQUEST_COUNTERS:
            a.send_counters()
        else:
            self.send_ack(lwproto.T_CONTROL, seq, lwproto.ACK_UNKNOWN, "unknown command", None)

    def answer_calibrate(self, gravity):
        """Answer a pending CONTROL calibrate when a window closed: with the gravity it set, or (None)
        refused because the window was not quiet."""
        if self.cal_seq < 0:
            return
        if gravity is None:
            self.send_ack(lwproto.T_CONTROL, self.cal_seq, lwproto.ACK_REFUSED, "car not at rest", None)
        else:
            self.send_ack(lwproto.T_CONTROL, self.cal_seq, lwproto.ACK_OK, "", gravity)
        self.cal_seq = -1
