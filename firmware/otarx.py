# A firmware update received over the link, beside the running agent: each OTA_CHUNK is written at
# its offset into PART straight from the link's receive buffer (lwproto decodes a bin as a view of
# it), and every frame is answered with OTA_STATUS. commands.py imports this at an update's first
# frame, so a board that is not being updated never has it on its heap; it holds no buffer of its
# own. What is heavy (signature, hashes, staging, the switch, a rollback) runs in a boot of its own,
# without the agent (otaboot.py, ota_install.py): CONTROL ota_install and ota_rollback leave the
# request in INSTALL and reboot. PART and ID_FILE ("bundle_id total") survive a power cut: the
# first frame after a boot resumes from them.
import os
import sys

from micropython import const

import lwproto
from fwutil import unload
from link import P_EVENT
from lwota import (CMD_OTA_ABORT, CMD_OTA_INSTALL, CMD_OTA_QUERY, ID_FILE, INSTALL, MAX_BUNDLE, OTA_IDLE,
                   OTA_INSTALLING, OTA_RECEIVING, OTA_REFUSED, OTA_ROLLING_BACK, PART, RESULT, T_OTA_STATUS)

unload("lwota")  # the names above are all this needs of it

_STAGING_SLACK = const(8192)  # littlefs metadata and the boot record beside two copies of the bundle
_got = None  # [bundle_id, total, have]: from ID_FILE and PART at the first frame of a boot (resumes)


def on_frame(cmds, p):
    """OTA_CHUNK [bundle_id, offset, total, chunk] or CONTROL [6..9] from commands.HostCommands."""
    global _got
    a = cmds.agent
    b = a.board
    if _got is None:
        _got = [-1, 0, 0]
        try:
            with open(b.path(ID_FILE)) as f:
                _got[:2] = [int(x) for x in f.read().split()]
            _got[2] = os.stat(b.path(PART))[6]
        except (OSError, ValueError):
            pass
    s = _got
    why = ""
    state = OTA_RECEIVING
    try:
        if len(p) == 4:
            why = _chunk(b, s, p)
        elif p[0] == CMD_OTA_QUERY:
            with open(b.path(RESULT)) as f:
                why = f.read()  # the install boot's refusal
        elif p[0] == CMD_OTA_ABORT:
            s[:] = [-1, 0, 0]
            state = OTA_IDLE
            for name in (PART, ID_FILE, RESULT):
                try:
                    os.remove(b.path(name))
                except OSError:
                    pass
        else:  # install or roll back, in a boot of its own (otaboot.py), after this answer
            v = sys.modules["agent"].FW_VERSION
            with open(b.path(INSTALL), "w") as f:
                f.write("%d %s" % (p[0], v))
            try:
                os.stat(b.path("ota.boot"))
            except OSError:  # the first update: main.py runs the boot loader once a record is there
                with open(b.path("ota.boot"), "w") as f:  # otaboot.BOOT: the root runs, confirmed
                    f.write("- - c %s -" % v)
            state = OTA_INSTALLING if p[0] == CMD_OTA_INSTALL else OTA_ROLLING_BACK
    except OSError as e:  # a QUERY's: RESULT missing, nothing was refused; else the flash failed
        if len(p) == 4 or p[0] != CMD_OTA_QUERY:
            why = "flash error %s" % e
    lk = cmds.link
    off = lk.begin(T_OTA_STATUS, a.now)
    lk.commit(lwproto.pack_into(lk.enc.body, off, [s[0], s[2], OTA_REFUSED if why else state, why]), P_EVENT)
    if state > OTA_RECEIVING:
        a.shutdown()
        b.reset("soft")


def _chunk(b, s, p):
    """Write one chunk if it is the next one: "" or the reason to refuse the bundle. Offset 0
    begins a bundle; a resend or a gap is not written (`have` tells the host where to go on)."""
    bid, off, total, chunk = p
    if type(bid) is not int or type(off) is not int or type(total) is not int or type(chunk) is not memoryview:
        return "bad chunk"
    if off == 0:
        s[:] = [bid, total, 0]
        with open(b.path(ID_FILE), "w") as f:
            f.write("%d %d" % (bid, total))
        open(b.path(PART), "wb").close()
        try:
            os.remove(b.path(RESULT))
        except OSError:
            pass
        if total > MAX_BUNDLE:
            return "bundle of %d bytes is over the %d byte limit" % (total, MAX_BUNDLE)
        st = os.statvfs(b.path(""))
        need = 2 * total + _STAGING_SLACK  # the download, and its files staged beside the running firmware
        if st[0] * st[3] < need:
            return "flash full: %d bytes free, the update needs %d" % (st[0] * st[3], need)
    if bid == s[0] and off == s[2] and off + len(chunk) <= total == s[1]:
        try:
            with open(b.path(PART), "ab") as f:
                f.write(chunk)
        except OSError:
            return "flash full while receiving"
        s[2] += len(chunk)
    return ""
