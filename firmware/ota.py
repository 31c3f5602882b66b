# A new firmware on trial judges itself. main.py imports this only in a boot whose firmware is on
# trial (otaboot.py counted it); it then wraps agent.run and Agent.send_heartbeat for this boot, so a
# board that is not on trial carries no code for it (the resident heap has no bytes to spare). The boot loader is
# imported only to write the verdict. otarx.py receives updates; ota_install.py installs them in a
# boot of its own.
import gc
import sys

from micropython import const

import agent
from agent import Agent

_CONFIRM_MS = const(60000)  # healthy (sampling, linked to the host) this long: the firmware is kept
_TRIAL_MS = const(300000)  # not confirmed by then: roll back
_heartbeat = Agent.send_heartbeat


def _judged_heartbeat(agent):
    _heartbeat(agent)
    poll(agent)


Agent.send_heartbeat = _judged_heartbeat
_run = agent.run


def _judged_run(board):
    """agent.run, but a firmware on trial that cannot start (Agent.__init__) hands over to the
    previous one at the next boot."""
    try:
        return _run(board)
    except Exception as e:  # hal.BoardReset and PowerCut are not Exceptions: they pass
        import otaboot

        otaboot.fail_trial(e)


agent.run = _judged_run


def poll(agent):
    """Confirm the firmware once it has sampled and been linked to the host for _CONFIRM_MS; roll
    it back (a reboot into the previous one) in safe mode or when _TRIAL_MS pass unconfirmed."""
    healthy = agent.samples > 0 and agent.sensor is not None and agent.link.host_top >= 0  # linked: a host frame
    bad = agent.safe_mode or (agent.up_ms >= _TRIAL_MS and not healthy)
    if not bad and not (healthy and agent.up_ms >= _CONFIRM_MS):
        return
    gc.collect()
    import otaboot

    if bad:
        otaboot.rollback()
        agent.shutdown()
        agent.board.reset("soft")
    rec = otaboot.record()
    rec[2] = "c"
    otaboot.write(rec)
    Agent.send_heartbeat = _heartbeat  # judged: the heartbeat stops asking
    sys.modules.pop("otaboot", None)
    sys.modules.pop("ota", None)
