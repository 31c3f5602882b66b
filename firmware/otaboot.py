# The boot loader of firmware updates (ota.py receives a bundle, ota_install.py installs it): run by
# main.py before the firmware is imported, and dropped again before the agent takes the heap. It
# never comes in a bundle (edge_daemon/ota.py leaves it out, the board refuses a bundle naming it):
# what decides which firmware runs is the copy `liftwatch flash` wrote.
#
# Flash layout (names relative to the flash root, the working directory on the ESP32 and the mock
# board): the running firmware is the root ("-", what `liftwatch flash` wrote) or a slot folder
# (fw_a, fw_b). The boot record BOOT is "cur prev trial cur_version prev_version", replaced by a
# rename, so the switch between firmwares is atomic; trial is "c" (confirmed), "r" (rolled back) or
# the boots started on trial. Past TRIAL_BOOTS of them without a confirmation (a crash loop, a
# firmware that cannot confirm) the previous firmware runs again.
import os
import sys

BOOT = "ota.boot"
PART = "ota.part"  # the bundle as it arrives (littlefs keeps a file's last closed state through a power cut)
ID_FILE = "ota.id"  # "bundle_id total" of PART
INSTALL = "ota.install"  # present: install PART at this boot; holds the running version
RESULT = "ota.result"  # why the last install was refused ("" when it was staged)
PUBKEY = "ota.pub"  # the release key's public half (`liftwatch flash --ota-key`)
LOADER = ("main.py", "boot.py", "otaboot.py", "otaboot.mpy")  # never replaced by a bundle
TRIAL_BOOTS = 3
CONFIRM_MS = 60000  # healthy (sampling, linked to the host) this long: a new firmware is kept
TRIAL_MS = 300000  # not confirmed by then: roll back


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


def rm(name):
    try:
        os.remove(name)
    except OSError:
        pass


def boot():
    """Count this boot, put the firmware to run on sys.path, and run the install CONTROL ota_install
    asked for (then reset). True when the firmware to run is on trial."""
    rec = record()
    if rec is not None and rec[2] not in ("c", "r"):
        n = int(rec[2]) + 1 if rec[2].isdigit() else TRIAL_BOOTS + 1
        rec = [rec[1], rec[0], "r", rec[4], rec[3]] if n > TRIAL_BOOTS else rec[:2] + [str(n)] + rec[3:]
        write(rec)
    if rec is not None and rec[0] != "-":
        sys.path.insert(0, "/" + rec[0])
    try:
        with open(INSTALL) as f:
            running = f.read()
    except OSError:
        return rec is not None and rec[2] not in ("c", "r")
    rm(INSTALL)  # first: an install that crashes must not loop
    import ota_install  # the running firmware's: it checks what would replace it

    ota_install.install(running)
    reset()


def rollback():
    """Back to the previous firmware at the next boot (CONTROL ota_rollback, a failed trial): ""
    or why not."""
    rec = record()
    if rec is None or rec[0] == rec[1]:
        return "no previous firmware on this board"
    write([rec[1], rec[0], "r", rec[4], rec[3]])
    return ""


def trial_check(agent):
    """In a new firmware on trial, at each heartbeat: confirm it once it has sampled and been linked
    to the host for CONFIRM_MS; roll back (reboot into the previous one) in safe mode or when
    TRIAL_MS pass unconfirmed. True while still on trial."""
    rec = record()
    if rec is None or rec[2] in ("c", "r"):
        return False
    healthy = agent.samples > 0 and agent.sensor is not None and agent.commands.host_at >= 0
    if agent.safe_mode or (agent.up_ms >= TRIAL_MS and not healthy):
        rollback()
        agent.shutdown()
        agent.board.reset("soft")
        return False
    if healthy and agent.up_ms >= CONFIRM_MS:
        rec[2] = "c"
        write(rec)
        return False
    return True


def fail_trial():
    """A firmware on trial that does not even import: the next boot runs the previous one."""
    rec = record()
    if rec is not None:
        rec[2] = str(TRIAL_BOOTS)
        write(rec)
    reset()


def reset():
    import machine  # no HAL here: hal.py may be what failed to import

    machine.reset()
