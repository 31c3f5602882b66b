# Board entry point: run at boot (ESP32, mock board) or as `micropython main.py` (simulated board from
# the LIFTWATCH_SIM_* environment, see docs/firmware.md). Ctrl-C reaches the REPL: agent.run shuts
# down cleanly and re-raises KeyboardInterrupt.
#
# Firmware updates: once one has been staged, the boot record picks which firmware to import (the
# root or a slot); otaboot.py installs, rolls back and counts boots on trial, and leaves the heap
# before the agent's buffers are made.
import os
import sys

import micropython

if hasattr(micropython, "alloc_emergency_exception_buf"):  # the ESP32 has it, the unix port not
    micropython.alloc_emergency_exception_buf(100)

# The boot record (otaboot.BOOT, "cur prev trial ..."): an ordinary boot after an update only puts
# its firmware's folder on the path; otaboot.py (the boot loader: names and code that stay on the heap
# as qstrs) is loaded only to install, roll back or count a boot on trial.
_trial = False
try:
    with open("ota.boot") as _f:
        _rec = _f.read().split()
except OSError:
    _rec = _f = ()
try:
    os.stat("ota.install")  # lwota.INSTALL: CONTROL ota_install or ota_rollback asked for this boot
    _rec = ("", "", "")
except OSError:
    pass
if len(_rec) > 2 and _rec[2] not in ("c", "r"):
    import otaboot

    _trial = otaboot.boot()  # an install or a rollback resets the board in there
    del otaboot
    sys.modules.pop("otaboot", None)
elif _rec and _rec[0] != "-":
    sys.path.insert(0, "/" + _rec[0])
del _rec, _f


def _failed(e):
    """A firmware on trial that cannot even start (import, Agent.__init__): the previous one runs
    at the next boot. An ordinary firmware's failure stays what it was."""
    if not _trial:
        raise e
    sys.print_exception(e)
    import otaboot

    otaboot.fail_trial()


try:
    if _trial:
        import ota  # noqa: F401 (judges the firmware on trial at each heartbeat; imports the agent first thing)
    import agent  # first of the firmware: its modules reserve the big buffers before anything fragments the heap
    import hal
except Exception as e:
    _failed(e)


def main(board=None, max_boots=1000):
    """Run the firmware; returns the last Agent when a simulated feed ends."""
    board = board or hal.board()
    boots = 0
    while True:
        try:
            return agent.run(board)
        except hal.BoardReset as r:
            # Only reached on the simulated board outside the mock board (whose ROM restarts the
            # process, as the ESP32 does): the car goes on, the firmware boots afresh.
            cause = r.cause
        except hal.PowerCut:
            cause = "power_on"
        except Exception as e:
            _failed(e)
        boots += 1
        if boots >= max_boots:
            return None
        board.rebooted(cause)


if __name__ == "__main__":
    main()
