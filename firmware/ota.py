# Firmware update on the board, receiving half: take a signed bundle in chunks over the link into
# flash (ota_install.py checks, stages and switches; docs/firmware.md, "Firmware updates"). Imported
# only while an update runs (commands.py, agent.py): idle, it costs no heap. main.py reads the boot
# record these modules write and picks the slot.
#
# Flash layout: the running firmware is the root ("-", what `liftwatch flash` wrote) or a slot folder
# (fw_a, fw_b). ota.part holds the bundle as it arrives (littlefs keeps a file's last closed state
# through a power cut, so its size is what arrived), ota.id says which bundle it is. ota.boot is the
# boot record "cur prev trial cur_version prev_version", replaced by a rename: the switch is atomic.
# trial is "c" (confirmed), "r" (rolled back) or the number of boots started on trial.
import os
import sys

import lwproto
from agent import FW_VERSION
from link import P_EVENT

PART = "ota.part"
ID_FILE = "ota.id"
BOOT = "ota.boot"
INSTALL = "ota.install"  # present: main.py installs the received bundle at the next boot
RESULT = "ota.result"  # why the last install was refused ("" when it was staged)
PUBKEY = "ota.pub"  # the release key's public half (`liftwatch flash --ota-key`); never in a bundle
MAGIC = b"LWOTA1\n"
MAX_BUNDLE = 196608  # a full firmware is about 90 KB of .mpy for xtensawin; room for two


def read_boot(board):
    """The boot record as [cur, prev, trial, cur_version, prev_version], or None (never updated)."""
    try:
        with open(board.path(BOOT)) as f:
            r = f.read().split()
    except OSError:
        return None
    return r if len(r) == 5 else None


def write_boot(board, rec):
    p = board.path(BOOT)
    with open(p + ".new", "w") as f:
        f.write(" ".join(rec))
    os.rename(p + ".new", p)


def _rm(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _free_bytes(board):
    try:
        st = os.statvfs(board.path(""))
        return st[0] * st[3]
    except OSError:
        return 1 << 30  # a file system that cannot say: the writes will tell


class Updater:
    """One boot's update job: the bundle being received and the status answers to the host."""

    def __init__(self, agent):
        self.agent = agent
        self.board = agent.board
        self.bundle_id = -1
        self.total = 0
        self.have = 0
        self.reason = ""
        try:
            with open(self.board.path(ID_FILE)) as f:
                i, t = f.read().split()
            self.bundle_id = int(i)
            self.total = int(t)
            self.have = max(0, _size(self.board.path(PART)))
        except (OSError, ValueError):
            pass
        try:
            with open(self.board.path(RESULT)) as f:
                self.reason = f.read()
        except OSError:
            pass

    # ---- answers ----------------------------------------------------------------------------------
    def status(self, state, reason=""):
        a = self.agent
        lk = a.link
        rec = read_boot(self.board)
        off = lk.begin(lwproto.T_OTA_STATUS, a.now)
        payload = [self.bundle_id, self.have, state, reason, FW_VERSION, rec[4] if rec else ""]
        lk.commit(lwproto.pack_into(lk.enc.body, off, payload), P_EVENT)

    def refuse(self, reason):
        """Drop the download, keep the running firmware, tell the host why."""
        self.discard()
        self.reason = reason
        self.status(lwproto.OTA_REFUSED, reason)

    def discard(self):
        b = self.board
        _rm(b.path(PART))
        _rm(b.path(ID_FILE))
        self.bundle_id = -1
        self.have = self.total = 0

    # ---- receiving ----------------------------------------------------------------------------------
    def on_chunk(self, p):
        """OTA_CHUNK [bundle_id, offset, total, chunk]: append at the end of what arrived, else say
        where the end is (the host resends from there: after a cut, a reboot, a lost frame)."""
        if len(p) < 4 or type(p[3]) is not bytes:
            return self.status(lwproto.OTA_REFUSED, "bad chunk")
        bid, offset, total, chunk = p[0], p[1], p[2], p[3]
        b = self.board
        if bid != self.bundle_id:
            if offset != 0:
                return self.status(lwproto.OTA_RECEIVING)  # have names the bundle we hold: start over
            if total > MAX_BUNDLE:
                return self.refuse("bundle of %d bytes is over the %d byte limit" % (total, MAX_BUNDLE))
            self.discard()
            # Room for the download and for staging it beside the running firmware.
            if _free_bytes(b) < 2 * total + 8192:
                return self.refuse("flash full: %d bytes free, need %d" % (_free_bytes(b), 2 * total + 8192))
            self.bundle_id = bid
            self.total = total
            self.reason = ""
            with open(b.path(ID_FILE), "w") as f:
                f.write("%d %d" % (bid, total))
            with open(b.path(PART), "wb"):
                pass
        if offset == self.have and offset + len(chunk) <= self.total:
            try:
                with open(b.path(PART), "ab") as f:
                    f.write(chunk)
            except OSError:
                return self.refuse("flash full while receiving")
            self.have += len(chunk)
        elif offset + len(chunk) > self.total:
            return self.refuse("chunk past the announced size")
        self.status(lwproto.OTA_RECEIVING)

    def install(self):
        """CONTROL ota_install: a complete bundle is installed in a boot of its own (main.py), where
        the heap is still whole; the answer is INSTALLING, then the reboot."""
        if self.bundle_id < 0 or self.have != self.total:
            return self.status(lwproto.OTA_REFUSED, "bundle truncated: %d of %d bytes" % (self.have, self.total))
        _rm(self.board.path(RESULT))
        with open(self.board.path(INSTALL), "w"):
            pass
        self.status(lwproto.OTA_INSTALLING)
        a = self.agent
        a.shutdown()
        a.board.reset("soft")
