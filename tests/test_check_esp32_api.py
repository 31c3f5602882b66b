"""scripts/check-esp32-api: what goes to an ESP32, and the mock board's stand-ins for the port, against
the port's own stubs; each wrong call below is one the mock board would have let through."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from liftwatch.upy import FIRMWARE_DIR

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "check-esp32-api"
ROM = REPO / "hil_tests" / "mockboard" / "board_rom.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def _edit(path: Path, old: str, new: str) -> str:
    """Replace `old` (once) and return `file:line` of the edit, as the checker names places: the
    expected errors must not break each time the module above the edit grows."""
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name} changed: update this test's mutation {old!r}"
    path.write_text(text.replace(old, new))
    return f"{path.name}:{text[:text.index(old)].count(chr(10)) + 1}"


def _assert_caught(r: subprocess.CompletedProcess, *expected: str) -> None:
    assert r.returncode == 1, r.stdout + r.stderr
    missing = [e for e in expected if e not in r.stdout]
    assert not missing, r.stdout


def _firmware_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "firmware"
    shutil.copytree(FIRMWARE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_every_real_board_module_and_stand_in_fits_the_esp32_port() -> None:
    r = _run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == "" and "0 error(s)" in r.stderr and "micropython-esp32-stubs 1.29" in r.stderr


def test_calls_the_port_refuses_are_caught(tmp_path) -> None:
    fw = _firmware_copy(tmp_path)
    # a keyword the port's Pin does not take
    pin = _edit(fw / "hal_esp32.py", "scl=machine.Pin(22)", "scl=machine.Pin(22, pul=machine.Pin.PULL_UP)")
    # a name the port does not have
    wdt = _edit(fw / "hal_esp32.py", "machine.WDT(timeout=timeout_ms)", "machine.Watchdog(timeout=timeout_ms)")
    # a driver reading without a buffer: the bus a driver holds is checked as machine.I2C
    read = _edit(fw / "accel.py", "self.i2c.readfrom_mem_into(self.addr, reg, self._b1)",
                 "self.i2c.readfrom_mem_into(self.addr, reg)")
    # the agent calling its board with an argument the ESP32 HAL does not take
    flush = _edit(fw / "agent.py", "self.board.uart_flush()", "self.board.uart_flush(True)")
    r = _run("--firmware-dir", str(fw))
    _assert_caught(
        r,
        f'{pin}: Unexpected keyword argument "pul" for "Pin"',
        f'{wdt}: Module has no attribute "Watchdog"',
        f'{read}: Too few arguments for "readfrom_mem_into" of "I2C" [call-arg]',
        f'{flush}: Too many arguments for "uart_flush" [call-arg]',
    )
    assert "4 error(s)" in r.stderr


def test_an_exception_the_code_no_longer_needs_is_reported(tmp_path) -> None:
    fw = _firmware_copy(tmp_path)
    _edit(fw / "hal_esp32.py", "self.uart.write(buf, off, n)", "self.uart.write(memoryview(buf)[off:off + n])")
    r = _run("--firmware-dir", str(fw))
    assert r.returncode == 1
    assert r.stdout.startswith("check-esp32-api: exception no longer needed (hal_esp32, call-arg"), r.stdout


def test_mock_stand_ins_that_accept_more_than_the_port_are_caught(tmp_path) -> None:
    rom = tmp_path / ROM.name
    shutil.copyfile(ROM, rom)
    # an argument machine.reset_cause() refuses
    _edit(rom, "    def reset_cause(self):", "    def reset_cause(self, cause=None):")
    # enable_irq() without the state the port requires
    _edit(rom, "    def enable_irq(self, state):", "    def enable_irq(self, state=0):")
    # a member the port does not have
    _edit(rom, "    def idle(self):", "    def nap(self):")
    # a reset cause numbered unlike the port's
    _edit(rom, "    WDT_RESET = 3", "    WDT_RESET = 6")
    _assert_caught(
        _run("--rom", str(rom)),
        "mock stand-in _Machine.reset_cause vs machine.reset_cause",
        "mock stand-in _Machine.enable_irq vs machine.enable_irq",
        'mock stand-in _Machine.nap vs machine.nap: Module has no attribute "nap"',
        "_Machine.WDT_RESET = 6, the port's machine.WDT_RESET is 3",
    )
