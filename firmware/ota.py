# Firmware update on the board, receiving half: take a signed bundle in chunks over the link into
# flash (PART) and answer with OTA_STATUS, while the agent samples and streams as usual; confirm or
# roll back a new firmware on trial. ota_install.py checks and stages a bundle in a boot of its own.
#
# Loaded only in a boot that needs it, by main.py before the agent takes the heap (a running board's
# largest free block is a few hundred bytes: no module of this size can be imported then): a boot
# with RX_MODE on the flash (commands.py leaves it and reboots at an update's first frame) or with a
# firmware on trial. Idle boards never load it.
import os
import sys

import lwota
import lwproto
from agent import FW_VERSION
from link import P_EVENT
from lwota import ID_FILE, INSTALL, PART, RESULT, RX_MODE
from otaboot import record, write

sys.modules.pop("otaboot", None)  # its names above keep what they need of it

MAX_BUNDLE = 196608  # a full firmware is about 70 KB of .mpy for xtensawin: room to grow
_STAGING_SLACK = 8192  # littlefs metadata and the boot record beside two copies of the bundle
CONFIRM_MS = 60000  # a new firmware healthy (sampling, linked to the host) this long is kept
TRIAL_MS = 300000  # not confirmed by then: roll back


def rm(name):
    try:
        os.remove(name)
    except OSError:
        pass


def _size(name):
    try:
        return os.stat(name)[6]
    except OSError:
        return -1


def _free_bytes():
    try:
        st = os.statvfs("/")
        return st[0] * st[3]
    except OSError:
        return 1 << 30  # a file system that cannot say: the writes will tell


_job = None  # this boot's Updater: module state, so nothing resident holds it


def on_frame(agent, mtype, seq, p):
    """commands.py's entry: an OTA_CHUNK or a CONTROL it does not know."""
    global _job
    if _job is None:
        _job = Updater(agent)
    _job.on_frame(mtype, seq, p)
    if not _in_progress():
        rm(RX_MODE)  # the next boot is an ordinary one


def poll(agent):
    """At each heartbeat: a new firmware on trial is confirmed once it has sampled and been linked
    to the host for CONFIRM_MS, and rolled back (a reboot into the previous one) in safe mode or
    when TRIAL_MS pass unconfirmed."""
    rec = record()
    if rec is None or rec[2] in ("c", "r"):
        return
    healthy = agent.samples > 0 and agent.sensor is not None and agent.link.host_top >= 0  # linked: a host frame
    if agent.safe_mode or (agent.up_ms >= TRIAL_MS and not healthy):
        rollback()
        agent.shutdown()
        agent.board.reset("soft")
    elif healthy and agent.up_ms >= CONFIRM_MS:
        rec[2] = "c"
        write(rec)


def rollback():
    """Back to the previous firmware at the next boot (CONTROL ota_rollback, a failed trial): ""
    or why not."""
    rec = record()
    if rec is None or rec[0] == rec[1]:
        return "no previous firmware on this board"
    write([rec[1], rec[0], "r", rec[4], rec[3]])
    return ""


def _in_progress():
    return _job is not None and _job.bundle_id >= 0


class Updater:
    """One boot's update job: the bundle being received and the status answers to the host."""

    def __init__(self, agent):
        self.agent = agent
        self.bundle_id = -1
        self.total = 0
        self.have = 0
        self.reason = ""
        try:
            with open(ID_FILE) as f:
                i, t = f.read().split()
            self.bundle_id = int(i)
            self.total = int(t)
            self.have = max(0, _size(PART))
        except (OSError, ValueError):
            pass
        try:
            with open(RESULT) as f:
                self.reason = f.read()  # what the install boot said ("" staged)
        except OSError:
            pass

    def on_frame(self, mtype, seq, p):
        """An OTA_CHUNK or a CONTROL commands.py does not know."""
        if mtype == lwota.T_OTA_CHUNK:
            return self.on_chunk(p)
        cmd = p[0]
        if cmd == lwota.CMD_OTA_INSTALL:
            self.install()  # reboots to install it, or answers why not
        elif cmd == lwota.CMD_OTA_ABORT:
            self.discard()
            self.status(lwota.OTA_IDLE)
        elif cmd == lwota.CMD_OTA_ROLLBACK:
            self.roll_back()
        elif cmd == lwota.CMD_OTA_QUERY:
            if self.reason:  # the install boot refused the bundle
                self.status(lwota.OTA_REFUSED, self.reason)
            else:
                self.status(lwota.OTA_RECEIVING if self.bundle_id >= 0 else lwota.OTA_IDLE)
        else:
            self.agent.commands.send_ack(lwproto.T_CONTROL, seq, lwproto.ACK_UNKNOWN, "unknown command", None)

    def roll_back(self):
        """CONTROL ota_rollback: the previous firmware, now (a reboot)."""
        reason = rollback()
        if reason:
            return self.status(lwota.OTA_REFUSED, reason)
        self.status(lwota.OTA_ROLLING_BACK)
        a = self.agent
        a.shutdown()
        a.board.reset("soft")

    def status(self, state, reason=""):
        a = self.agent
        lk = a.link
        rec = record()
        off = lk.begin(lwota.T_OTA_STATUS, a.now)
        payload = [self.bundle_id, self.have, state, reason, FW_VERSION, rec[4] if rec else ""]
        lk.commit(lwproto.pack_into(lk.enc.body, off, payload), P_EVENT)

    def refuse(self, reason):
        """Drop the download, keep the running firmware, tell the host why."""
        self.discard()
        self.reason = reason
        self.status(lwota.OTA_REFUSED, reason)

    def discard(self):
        rm(PART)
        rm(ID_FILE)
        rm(RESULT)
        self.bundle_id = -1
        self.have = self.total = 0
        self.reason = ""

    def on_chunk(self, p):
        """OTA_CHUNK [bundle_id, offset, total, chunk]: append at the end of what arrived, else say
        where the end is (the host resends from there: after a cut, a reboot, a lost frame)."""
        if len(p) < 4 or type(p[3]) is not bytes:
            return self.status(lwota.OTA_REFUSED, "bad chunk")
        bid, offset, total, chunk = p[0], p[1], p[2], p[3]
        if bid != self.bundle_id:
            if offset != 0:
                return self.status(lwota.OTA_RECEIVING)  # `have` is of another bundle: start at 0
            if total > MAX_BUNDLE:
                return self.refuse("bundle of %d bytes is over the %d byte limit" % (total, MAX_BUNDLE))
            self.discard()
            need = 2 * total + _STAGING_SLACK  # the download, and its files staged beside the running firmware
            if _free_bytes() < need:
                return self.refuse("flash full: %d bytes free, the update needs %d" % (_free_bytes(), need))
            self.bundle_id = bid
            self.total = total
            with open(ID_FILE, "w") as f:
                f.write("%d %d" % (bid, total))
            with open(PART, "wb"):
                pass
        if offset + len(chunk) > self.total:
            return self.refuse("chunk past the announced size")
        if offset == self.have:
            try:
                with open(PART, "ab") as f:
                    f.write(chunk)
            except OSError:
                return self.refuse("flash full while receiving")
            self.have += len(chunk)
        self.status(lwota.OTA_RECEIVING)

    def install(self):
        """CONTROL ota_install: the complete bundle is checked and staged in a boot of its own
        (otaboot.py), where the heap is still whole; the answer is INSTALLING, then the reboot."""
        if self.bundle_id < 0 or self.have != self.total:
            return self.status(lwota.OTA_REFUSED, "bundle truncated: %d of %d bytes" % (self.have, self.total))
        rm(RESULT)
        with open(INSTALL, "w") as f:
            f.write(FW_VERSION)
        if record() is None:  # the boot loader's first record: the running firmware is the root
            write(["-", "-", "c", FW_VERSION, "-"])
        self.status(lwota.OTA_INSTALLING)
        a = self.agent
        a.shutdown()
        a.board.reset("soft")
