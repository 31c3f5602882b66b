# The install half of a firmware update (firmware/ota.py receives): check the received bundle's
# signature, arch, version and hashes, stage it in the slot beside the running firmware, switch the
# boot record; and the trial's confirm-or-roll-back. Its own module so that neither half needs a
# big block of the board's fragmented heap at once.
import os
import sys
from hashlib import sha256

from agent import FW_VERSION
from ota import ID_FILE, MAGIC, PART, PUBKEY, RESULT, _rm, read_boot, write_boot

TRIAL_BOOTS = 3  # boots of a new firmware without confirmation before main.py rolls it back
CONFIRM_MS = 60000  # healthy (sampling, linked) this long: the new firmware is kept
TRIAL_MS = 300000  # not confirmed by then: roll back
_COPY = 512


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


def _newer(a, b):
    """Version string a > b, comparing dotted numbers ("1.10.0" > "1.9.2")."""
    try:
        return [int(x) for x in a.split(".")] > [int(x) for x in b.split(".")]
    except ValueError:
        return False


class _Here:
    # The board's flash from main.py, before any HAL exists: names relative to the root it runs in.
    def path(self, name):
        return name


class _Job:
    # What ota.Updater knows of the received bundle, read back from flash in the install boot.
    def __init__(self):
        self.board = _Here()
        self.bundle_id = -1
        self.total = self.have = 0
        try:
            with open(ID_FILE) as f:
                i, t = f.read().split()
            self.bundle_id = int(i)
            self.total = int(t)
            self.have = os.stat(PART)[6]
        except (OSError, ValueError):
            pass

    def discard(self):
        _rm(PART)
        _rm(ID_FILE)


def install_at_boot():
    """Run by main.py in the boot CONTROL ota_install asked for, before the agent takes the heap
    (at 96 KiB a running agent leaves no room for this): check everything, stage into the other
    slot, switch the boot record. A refusal leaves the running firmware and the boot record as
    they were; its reason goes to ota.result for the host's next OTA_QUERY."""
    import gc

    gc.collect()
    job = _Job()
    try:
        reason = _install(job)
    except MemoryError:
        reason = "board out of memory while installing"
    except OSError as e:
        reason = "flash error %s while staging (flash full?)" % e
    if reason:
        job.discard()
    with open(RESULT, "w") as f:
        f.write(reason)


def _install(u):
    if u.bundle_id < 0:
        return "no bundle received"
    if u.have != u.total:
        return "bundle truncated: %d of %d bytes" % (u.have, u.total)
    b = u.board
    try:
        with open(b.path(PUBKEY), "rb") as f:
            pub = f.read()
    except OSError:
        return "no update key on this board (liftwatch flash --ota-key)"
    with open(b.path(PART), "rb") as f:
        m = _manifest(f, pub)
        if type(m) is str:
            return m
        reason = _fits(m, u.total)
        if reason:
            return reason
        rec = read_boot(b) or ["-", "-", "c", FW_VERSION, ""]
        slot = "fw_b" if rec[0] == "fw_a" else "fw_a"
        reason = _stage(f, b.path(slot), m["files"])
        if reason:
            return reason
    write_boot(b, [slot, rec[0], "0", m["version"], rec[3]])  # the switch: one rename
    u.discard()
    return ""


def _manifest(f, pub):
    """The signed manifest (a dict) read from the bundle file, or the reason to refuse it."""
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
    m["size"] = len(MAGIC) + 2 + n + 64
    return m


def _fits(m, total):
    """The reason a signed bundle is not for this board, or ""."""
    if m["mpy"] != getattr(sys.implementation, "_mpy", 0):
        return "bundle for mpy %d, this board runs %d (another arch)" % (m["mpy"], sys.implementation._mpy)
    if not _newer(m["version"], FW_VERSION):
        return "version %s is not newer than the running %s" % (m["version"], FW_VERSION)
    if m["size"] + sum(e[1] for e in m["files"]) != total:
        return "bundle size does not match its manifest"
    return ""


def _stage(f, root, files):
    """Copy the files into the slot folder ``root``, checking each sha256; "" or the reason."""
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
