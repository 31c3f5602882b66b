"""The mock board's silicon: the simulated HAL and fake accelerometers (firmware/sim/), compiled once.

On an ESP32 the sensor and the UART are chips; on the mock board they are `hal_sim` and the fakes,
which the ROM imports from its own directory (``/sim/hw``), never from the board's flash: so
`liftwatch flash` deploys to the mock board exactly what it deploys to a real one.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from liftwatch.upy import SIM_HARDWARE_DIR, interpreter_mpy


@functools.cache
def sim_hardware_image() -> Path:
    """A folder of the simulated hardware's .mpy files for this interpreter (built once per process)."""
    from liftwatch.edge_daemon.flash import _NATIVE_ARCH, mpy_cross

    arch = _NATIVE_ARCH.get((interpreter_mpy() >> 10) & 0xF)
    out = Path(tempfile.mkdtemp(prefix="liftwatch-sim-hw-"))
    for src in sorted(SIM_HARDWARE_DIR.glob("*.py")):
        mpy_cross(src, out / (src.stem + ".mpy"), arch)
    return out
