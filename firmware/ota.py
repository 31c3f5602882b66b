# Firmware update on the board: take a signed bundle in chunks over the link, check it, stage it in
# the slot beside the running firmware, switch at a reboot, confirm or roll back (docs/firmware.md,
# "Firmware updates"). Imported only while an update runs (commands.py, agent.py): idle, it costs no
# heap. main.py reads the boot record this module writes and picks the slot.
#
# Flash layout: the running firmware is the root ("-", what `liftwatch flash` wrote) or a slot folder
# (fw_a, fw_b). ota.part holds the bundle as it arrives (littlefs keeps a file's last closed state
# through a power cut, so its size is what arrived), ota.id says which bundle it is. ota.boot is the
# boot record "cur prev trial cur_version prev_version", replaced by a rename: the switch is atomic.
# trial is "c" (confirmed), "r" (rolled back) or the number of boots started on trial.
import os
import sys
from hashlib import sha256

import lwproto
from agent import FW_VERSION
from link import P_EVENT

PART = "ota.part"
ID_FILE = "ota.id"
BOOT = "ota.boot"
PUBKEY = "ota.pub"  # the release key's public half (`liftwatch flash --ota-key`); never in a bundle
MAGIC = b"LWOTA1\n"
MAX_BUNDLE = 196608  # a full firmware is about 90 KB of .mpy for xtensawin; room for two
TRIAL_BOOTS = 3  # boots of a new firmware without confirmation before main.py rolls it back
CONFIRM_MS = 60000  # healthy (sampling, linked) this long: the new firmware is kept
TRIAL_MS = 300000  # not confirmed by then: roll back
_COPY = 512


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


def _rmtree(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for n in names:
        _rm(path + "/" + n)
    try:
        os.rmdir(path)
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


def _newer(a, b):
    """Version string a > b, comparing dotted numbers ("1.10.0" > "1.9.2")."""
    try:
        return [int(x) for x in a.split(".")] > [int(x) for x in b.split(".")]
    except ValueError:
        return False


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

    # ---- installing ---------------------------------------------------------------------------------
    def install(self):
        """Check everything, then stage into the other slot and switch the boot record; any refusal
        leaves the running firmware and the boot record as they were."""
        import gc

        gc.collect()
        try:
            reason = self._install()
        except MemoryError:
            gc.collect()
            reason = "board out of memory while installing"
        except OSError as e:
            reason = "flash error %s while staging (flash full?)" % e
        if reason:
            return self.refuse(reason)
        self.status(lwproto.OTA_INSTALLING)
        a = self.agent
        a.shutdown()
        a.board.reset("soft")

    def _install(self):
        b = self.board
        if self.bundle_id < 0:
            return "no bundle received"
        if self.have != self.total:
            return "bundle truncated: %d of %d bytes" % (self.have, self.total)
        try:
            with open(b.path(PUBKEY), "rb") as f:
                pub = f.read()
        except OSError:
            return "no update key on this board (liftwatch flash --ota-key)"
        with open(b.path(PART), "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return "not a liftwatch bundle"
            n = f.read(2)
            n = n[0] | n[1] << 8 if len(n) == 2 else 0
            manifest = f.read(n)
            sig = f.read(64)
            if len(manifest) != n or len(sig) != 64:
                return "bundle truncated in its header"
            import ed25519

            ok = ed25519.verify(pub, manifest, sig)
            del ed25519
            sys.modules.pop("ed25519", None)
            if not ok:
                return "bad signature: not signed by this board's release key"
            import json

            m = json.loads(manifest)
            version = m["version"]
            if m["mpy"] != getattr(sys.implementation, "_mpy", 0):
                return "bundle for mpy %d, this board runs %d (another arch)" % (m["mpy"], sys.implementation._mpy)
            if not _newer(version, FW_VERSION):
                return "version %s is not newer than the running %s" % (version, FW_VERSION)
            files = m["files"]
            body = len(MAGIC) + 2 + n + 64
            if body + sum(e[1] for e in files) != self.total:
                return "bundle size does not match its manifest"
            rec = read_boot(b) or ["-", "-", "c", FW_VERSION, ""]
            cur = rec[0]
            slot = "fw_b" if cur == "fw_a" else "fw_a"
            root = b.path(slot)
            _rmtree(root)
            os.mkdir(root)
            buf = bytearray(_COPY)
            mv = memoryview(buf)
            for name, size, digest in files:
                if "/" in name or name in ("main.py", "boot.py"):
                    _rmtree(root)
                    return "bundle names a file it may not replace: " + name
                h = sha256()
                left = size
                with open(root + "/" + name, "wb") as out:
                    while left:
                        k = f.readinto(mv[:min(left, _COPY)])
                        if not k:
                            break
                        h.update(mv[:k])
                        out.write(mv[:k])
                        left -= k
                if left or _hex(h.digest()) != digest:
                    _rmtree(root)
                    return "file %s does not match its sha256 in the signed manifest" % name
        write_boot(b, [slot, cur, "0", version, rec[3]])  # the switch: one rename
        self.discard()
        return ""


def _hex(d):
    import binascii

    return binascii.hexlify(d).decode()


def rollback(agent):
    """Back to the previous firmware now (CONTROL ota_rollback, a failed trial): the boot record
    names it, main.py boots it."""
    b = agent.board
    rec = read_boot(b)
    if rec is None or rec[0] == rec[1]:
        return "no previous firmware on this board"
    write_boot(b, [rec[1], rec[0], "r", rec[4], rec[3]])
    return ""


def trial_check(agent):
    """On a new firmware's trial: confirm once it has sampled and been linked for CONFIRM_MS; roll
    back (reboot into the previous one) on safe mode or when TRIAL_MS pass unconfirmed. Returns
    True while still on trial."""
    b = agent.board
    rec = read_boot(b)
    if rec is None or rec[2] in ("c", "r"):
        return False
    healthy = agent.samples > 0 and agent.sensor is not None and agent.commands.host_at >= 0
    if agent.safe_mode or (agent.up_ms >= TRIAL_MS and not healthy):
        rollback(agent)
        agent.shutdown()
        b.reset("soft")
        return False
    if healthy and agent.up_ms >= CONFIRM_MS:
        rec[2] = "c"
        write_boot(b, rec)
        return False
    return True
