# The boot loader of firmware updates: main.py runs it when a boot record or an install request is
# on the flash (never on a board that was never updated), before the firmware is imported, and
# drops it again before the agent takes the heap. It is small on purpose: every name it brings
# stays on the heap as a qstr. It never comes in a bundle: what decides which firmware runs is the
# copy `liftwatch flash` wrote.
#
# The boot record BOOT is "cur prev trial cur_version prev_version": cur names the firmware to run,
# "-" the root (what `liftwatch flash` wrote) or a slot folder (fw_a, fw_b); trial is "c"
# (confirmed), "r" (rolled back) or the boots started on trial. It is replaced by a rename, so the
# switch between firmwares is atomic. Past _TRIAL_BOOTS boots on trial (a crash loop, a firmware that
# never confirms) the previous firmware runs again. ota.py confirms a new firmware; ota_install.py
# stages one; commands.py receives it and asks for this boot (lwota.py names the files).
import os
import sys

from micropython import const

BOOT = "ota.boot"
_TRIAL_BOOTS = const(3)


def record():
    """The boot record as a list of its 5 fields, or None (never updated)."""
    try:
        with open(BOOT) as f:
            rec = f.read().split()
    except OSError:
        return None
    return rec if len(rec) == 5 else None


def write(rec):
    with open(BOOT + ".new", "w") as f:
        f.write(" ".join(rec))
    os.rename(BOOT + ".new", BOOT)  # littlefs renames atomically


def boot():
    """Run the install or rollback CONTROL ota_install/ota_rollback asked for (then reset), count
    this boot if its firmware is on trial, and put the firmware to run on sys.path. True when the
    firmware it runs is on trial (main.py then loads ota.py, which judges it)."""
    try:
        with open("ota.install") as f:  # lwota.INSTALL: "<command> <running version>" (otarx.py)
            asked = f.read().split()
    except OSError:
        asked = None
    if asked is not None:
        os.remove("ota.install")  # first: an install that crashes must not loop
        if asked[0] == "9":  # CONTROL ota_rollback
            reason = rollback()
            if reason:
                with open("ota.result", "w") as f:  # lwota.RESULT: the host's next OTA_QUERY reads it
                    f.write(reason)
        else:
            import ota_install  # the running firmware's: it checks what would replace it

            ota_install.install(asked[1])
        reset()
    rec = record()
    trial = rec is not None and rec[2] not in ("c", "r")
    if trial:
        n = int(rec[2]) + 1 if rec[2].isdigit() else _TRIAL_BOOTS + 1
        rec = [rec[1], rec[0], "r", rec[4], rec[3]] if n > _TRIAL_BOOTS else rec[:2] + [str(n)] + rec[3:]
        write(rec)
        trial = n <= _TRIAL_BOOTS
    if rec is not None and rec[0] != "-":
        sys.path.insert(0, "/" + rec[0])
    return trial


def rollback():
    """Back to the previous firmware at the next boot: "" or why not."""
    rec = record()
    if rec is None or rec[1] == rec[0] or rec[4] == "-":
        return "no previous firmware on this board"
    write([rec[1], rec[0], "r", rec[4], rec[3]])
    return ""


def fail_trial(e):
    """A firmware on trial that cannot even start (import, Agent.__init__): the next boot runs the
    previous one."""
    sys.print_exception(e)
    rec = record()
    if rec is not None:
        rec[2] = str(_TRIAL_BOOTS)
        write(rec)
    reset()


def reset():
    import machine  # no HAL here: hal.py may be what failed to import

    machine.reset()
