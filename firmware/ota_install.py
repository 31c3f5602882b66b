# Firmware update on the board, installing half (ota.py receives): check the received bundle's
# signature, arch, version and hashes, stage it in the slot beside the running firmware and switch
# the boot record (otaboot.py), in a boot of its own before the agent takes the heap. A refusal never
# touches the running firmware or the boot record.
import os
import sys
from hashlib import sha256

from lwota import BOOT_LOADER, ID_FILE, PART, PUBKEY, RESULT
from otaboot import record, write

MAGIC = b"LWOTA1\n"
_COPY = 512


def rm(name):
    try:
        os.remove(name)
    except OSError:
        pass


def install(running):
    """Install PART over nothing that runs. A refusal goes to RESULT for the host's next OTA_QUERY
    (ID_FILE stays: it names the bundle refused); staged, both go. ``running`` is the version of
    the firmware that asked."""
    import gc

    gc.collect()
    try:
        reason = _install(running)
    except MemoryError as e:
        sys.print_exception(e)  # on the console: where an install ran out
        reason = "board out of memory while installing"
    except OSError as e:
        reason = "flash error %s while staging (flash full?)" % e
    rm(PART)
    if reason:
        with open(RESULT, "w") as f:
            f.write(reason)
    else:
        rm(ID_FILE)
        rm(RESULT)


def _install(running):
    try:
        with open(ID_FILE) as f:
            total = int(f.read().split()[1])
        with open(PUBKEY, "rb") as f:
            pub = f.read()
    except (OSError, ValueError, IndexError):
        return "no bundle, or no update key on this board (liftwatch flash --ota-key)"
    if os.stat(PART)[6] != total:
        return "bundle truncated: %d of %d bytes" % (os.stat(PART)[6], total)
    with open(PART, "rb") as f:
        m = _manifest(f, pub)
        if type(m) is str:
            return m
        reason = _fits(m, total, running)
        if reason:
            return reason
        rec = record() or ["-", "-", "c", running, "-"]  # the first update: the root runs
        slot = "fw_b" if rec[0] == "fw_a" else "fw_a"
        reason = _stage(f, slot, m["files"])
        if reason:
            return reason
    write([slot, rec[0], "0", m["version"], rec[3]])  # the switch
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
    sys.modules.pop("ed25519", None)
    if not ok:
        return "bad signature: not signed by this board's release key"
    import json

    m = json.loads(manifest)
    m["size"] = len(MAGIC) + 2 + n + 64
    return m


def _newer(a, b):
    """Version string a > b, comparing dotted numbers ("1.10.0" > "1.9.2")."""
    try:
        return [int(x) for x in a.split(".")] > [int(x) for x in b.split(".")]
    except ValueError:
        return False


def _fits(m, total, running):
    """The reason a signed bundle is not for this board, or ""."""
    mpy = getattr(sys.implementation, "_mpy", 0)
    if m["mpy"] != mpy:
        return "bundle for mpy %d, this board runs %d (another arch)" % (m["mpy"], mpy)
    if not _newer(m["version"], running):
        return "version %s is not newer than the running %s" % (m["version"], running)
    if m["size"] + sum(e[1] for e in m["files"]) != total:
        return "bundle size does not match its manifest"
    return ""


def _rmtree(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for n in names:
        rm(path + "/" + n)
    try:
        os.rmdir(path)
    except OSError:
        pass


def _stage(f, root, files):
    """Copy the files into the slot folder ``root``, checking each sha256; "" or the reason."""
    _rmtree(root)
    os.mkdir(root)
    mv = memoryview(bytearray(_COPY))
    for name, size, digest in files:
        if "/" in name or name in BOOT_LOADER:
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
