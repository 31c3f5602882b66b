# Board entry point: run at boot (ESP32, mock board) or as `micropython main.py` (simulated board from
# the LIFTWATCH_SIM_* environment, see docs/firmware.md). Ctrl-C reaches the REPL: agent.run shuts
# down cleanly and re-raises KeyboardInterrupt.
#
# Firmware updates: once one has been asked for, otaboot.py (the boot loader) installs, rolls back,
# counts boots on trial and picks which firmware to import (the root or a slot); it leaves the heap
# before the agent's buffers are made. A board never updated does not load it.
import os
import sys

import micropython

if hasattr(micropython, "alloc_emergency_exception_buf"):  # the ESP32 has it, the unix port not
    micropython.alloc_emergency_exception_buf(100)

_trial = False  # otaboot.boot(): the firmware this boot runs is a new one, on trial
try:
    os.stat("ota.boot")  # otaboot.BOOT: written when an update is first asked for (otarx.py)
    import otaboot

    _trial = otaboot.boot()  # an install or a rollback resets the board in there
    del otaboot
    sys.modules.pop("otaboot", None)
except OSError:
    pass
try:
    if _trial:
        import ota  # noqa: F401 (judges the firmware on trial, from the agent's import on)
    import agent  # first of the firmware: its modules reserve the big buffers before anything fragments the heap
    import hal
except Exception as e:
    if not _trial:
        raise
    import otaboot

    otaboot.fail_trial(e)


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
        boots += 1
        if boots >= max_boots:
            return None
        board.rebooted(cause)


if __name__ == "__main__":
    main()
