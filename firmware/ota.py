# Firmware update on the board, receiving half: take a signed bundle in chunks over the link into
# flash (PART, see otaboot.py for the layout) and answer with OTA_STATUS; ota_install.py checks and
# stages it in a boot of its own. Imported at an update's first frame (commands.py) and dropped
# when nothing is in progress: idle, it costs no heap.
import os

import lwproto
from agent import FW_VERSION
from link import P_EVENT
from otaboot import ID_FILE, INSTALL, PART, RESULT, record, rm

MAX_BUNDLE = 196608  # a full firmware is about 70 KB of .mpy for xtensawin: room to grow
_STAGING_SLACK = 8192  # littlefs metadata and the boot record beside two copies of the bundle


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

    def status(self, state, reason=""):
        a = self.agent
        lk = a.link
        rec = record()
        off = lk.begin(lwproto.T_OTA_STATUS, a.now)
        payload = [self.bundle_id, self.have, state, reason, FW_VERSION, rec[4] if rec else ""]
        lk.commit(lwproto.pack_into(lk.enc.body, off, payload), P_EVENT)

    def refuse(self, reason):
        """Drop the download, keep the running firmware, tell the host why."""
        self.discard()
        self.reason = reason
        self.status(lwproto.OTA_REFUSED, reason)

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
            return self.status(lwproto.OTA_REFUSED, "bad chunk")
        bid, offset, total, chunk = p[0], p[1], p[2], p[3]
        if bid != self.bundle_id:
            if offset != 0:
                return self.status(lwproto.OTA_RECEIVING)  # `have` is of another bundle: start at 0
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
        self.status(lwproto.OTA_RECEIVING)

    def install(self):
        """CONTROL ota_install: the complete bundle is checked and staged in a boot of its own
        (otaboot.py), where the heap is still whole; the answer is INSTALLING, then the reboot."""
        if self.bundle_id < 0 or self.have != self.total:
            return self.status(lwproto.OTA_REFUSED, "bundle truncated: %d of %d bytes" % (self.have, self.total))
        rm(RESULT)
        with open(INSTALL, "w") as f:
            f.write(FW_VERSION)
        self.status(lwproto.OTA_INSTALLING)
        a = self.agent
        a.shutdown()
        a.board.reset("soft")
