# Board entry point: run at boot (ESP32, mock board) or as `micropython main.py` (simulated board from
# the LIFTWATCH_SIM_* environment, see docs/firmware.md). Ctrl-C reaches the REPL: agent.run shuts
# down cleanly and re-raises KeyboardInterrupt.
#
# It is also the boot loader of firmware updates (firmware/ota.py), and is never replaced by one: the
# boot record ota.boot names the slot folder to run; a boot of a firmware on trial is counted here,
# and past _TRIAL_BOOTS unconfirmed boots (a crash loop) or a trial firmware that cannot even be
# imported, the previous firmware runs again.
import sys

import micropython

if hasattr(micropython, "alloc_emergency_exception_buf"):  # the ESP32 has it, the unix port not
    micropython.alloc_emergency_exception_buf(100)

_BOOT = "ota.boot"
_TRIAL_BOOTS = 3  # ota.TRIAL_BOOTS (this file imports nothing of the firmware before picking it)


def _write_boot(rec):
    import os

    with open(_BOOT + ".new", "w") as f:
        f.write(" ".join(rec))
    os.rename(_BOOT + ".new", _BOOT)


def _boot_record():
    """[cur, prev, trial, cur_version, prev_version] with this boot counted, or None."""
    try:
        with open(_BOOT) as f:
            rec = f.read().split()
    except OSError:
        return None
    if len(rec) != 5:
        return None
    if rec[2] not in ("c", "r"):
        n = int(rec[2]) + 1 if rec[2].isdigit() else _TRIAL_BOOTS + 1
        rec = [rec[1], rec[0], "r", rec[4], rec[3]] if n > _TRIAL_BOOTS else rec[:2] + [str(n)] + rec[3:]
        _write_boot(rec)
    return rec


def _install_pending():
    """The boot CONTROL ota_install asked for: install the received bundle while the heap is whole
    (firmware/ota_install.py), then reset into whatever the boot record now names."""
    import os

    try:
        os.remove("ota.install")  # first: an install that crashes must not loop
    except OSError:
        return
    import ota_install

    ota_install.install_at_boot()
    import machine

    machine.reset()


_rec = _boot_record()
if _rec is not None and _rec[0] != "-":
    sys.path.insert(0, "/" + _rec[0])
_install_pending()
try:
    import agent  # first: its modules reserve the big buffers before anything fragments the heap
    import hal
except Exception as e:
    if _rec is None or _rec[2] in ("c", "r"):
        raise
    # A firmware on trial that does not even import: the next boot runs the previous one.
    sys.print_exception(e)
    _rec[2] = str(_TRIAL_BOOTS)
    _write_boot(_rec)
    import machine  # the boot loader's own reset: hal may be what failed to import

    machine.reset()
_rec = None


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
