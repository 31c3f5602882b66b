# Board entry point: run at boot (ESP32, mock board) or as `micropython main.py` (simulated board from
# the LIFTWATCH_SIM_* environment, see docs/firmware.md). Ctrl-C reaches the REPL: agent.run shuts
# down cleanly and re-raises KeyboardInterrupt.
#
# Firmware updates: once one has been staged, otaboot.py picks which firmware to import (the root or
# a slot) and counts boots on trial; it leaves the heap before the agent's buffers are made.
import os
import sys

import micropython

if hasattr(micropython, "alloc_emergency_exception_buf"):  # the ESP32 has it, the unix port not
    micropython.alloc_emergency_exception_buf(100)

_update = 0  # otaboot.boot(): 1 load the update code (firmware/ota.py), 2 + a firmware on trial
for _name in ("ota.boot", "ota.rx"):  # otaboot.BOOT, lwota.RX_MODE: an update has begun
    try:
        os.stat(_name)
    except OSError:
        continue
    import otaboot

    _update = otaboot.boot()
    del otaboot
    sys.modules.pop("otaboot", None)
    break
try:
    import agent  # first of the firmware: its modules reserve the big buffers before anything fragments the heap
    import hal
except Exception as e:
    if not _update & 2:
        raise
    sys.print_exception(e)
    import otaboot

    otaboot.fail_trial()


def _load_update():
    try:
        import ota  # noqa: F401 (now, while the heap is still whole: a running board could not load it)
    except MemoryError:  # an ordinary boot next; a firmware on trial is then judged by its boots
        try:
            os.remove("ota.rx")
        except OSError:
            pass


def main(board=None, max_boots=1000):
    """Run the firmware; returns the last Agent when a simulated feed ends."""
    board = board or hal.board()
    if _update:
        _load_update()
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
