"""Mock board figures: how fast the simulated car runs through a board, and what mpremote costs.

    python benchmarks/hil.py [--json] [--scenario normal_hour] [--sim-s 600]

Prints a table; with --json the last line is one JSON object:
``mpremote_exec_s`` (one `mpremote exec`, soft reset included), ``flash_s`` (`liftwatch flash` of the
real firmware, or of the feed probe when the firmware is absent), ``heap_free_at_repl`` (free heap
at an idle mock REPL: 96 KiB plus the qstr-pool and fake-silicon allowances the firmware spends
once it loads, see docs/mockboard.md), ``probe_sim_s_per_real_s`` (the mock board's plumbing:
feed FIFO + a minimal reader), ``firmware_sim_s_per_real_s`` (the real firmware at --speed 0,
null when absent), ``day_real_s_estimate`` (a simulated 24 h at that rate).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import print_figures

from liftwatch.edge_daemon.flash import flash
from liftwatch.hil.mockboard.board import MockBoard
from liftwatch.hil.sim.scenario import Scenario
from liftwatch.upy import FIRMWARE_DIR

PROBE = Path(__file__).resolve().parent.parent / "hil_tests" / "probe_firmware"


def _mpremote(port: str, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args], capture_output=True, text=True, check=True
    )
    return r.stdout


def _sim_rate(tmp: Path, firmware_dir: Path, scenario: str, sim_s: float) -> tuple[float, float]:
    """Sim seconds per real second of ``scenario`` at --speed 0; the real firmware is calibrated first
    (as the HIL tests do: a rest prefix at talking speed), so it streams as it would in a car."""
    from liftwatch.hil.conftest import FrameTap
    from liftwatch.hil.test_board_scenarios import REST_PREFIX_S, TALK_SPEED, _calibrate

    sc = Scenario.load(scenario)
    real_fw = firmware_dir == FIRMWARE_DIR
    board = MockBoard(
        tmp / f"{firmware_dir.name}.img",
        sc.timeline(rest_prefix_s=REST_PREFIX_S if real_fw else 0.0),
        speed=TALK_SPEED if real_fw else 0.0,
    )
    ports = board.start()
    try:
        started = time.monotonic()
        flash(ports.console, firmware_dir=firmware_dir)
        flash_s = time.monotonic() - started
        if real_fw:
            tap = FrameTap(ports.data)
            try:
                _calibrate(tap)
            finally:
                tap.close()
            board.set_speed(0.0)
        time.sleep(0.5)
        t0 = board.board_time_us()
        real0 = time.monotonic()
        board.wait_board_time(t0 + int(sim_s * 1e6), timeout=3600)
        return (board.board_time_us() - t0) / 1e6 / (time.monotonic() - real0), flash_s
    finally:
        board.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--scenario", default="normal_hour")
    ap.add_argument("--sim-s", type=float, default=600.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        board = MockBoard(tmp / "bare.img")
        ports = board.start()
        try:
            _mpremote(ports.console, "exec", "pass")
            n = 5
            t = time.monotonic()
            for _ in range(n):
                _mpremote(ports.console, "exec", "pass")
            exec_s = (time.monotonic() - t) / n
            heap = int(_mpremote(ports.console, "exec", "import gc; gc.collect(); print(gc.mem_free())").strip())
        finally:
            board.stop()
        probe_rate, probe_flash_s = _sim_rate(tmp, PROBE, args.scenario, args.sim_s)
        fw_rate = None
        flash_s = probe_flash_s
        if (FIRMWARE_DIR / "main.py").exists():
            fw_rate, flash_s = _sim_rate(tmp, FIRMWARE_DIR, args.scenario, args.sim_s)
    result = {
        "mpremote_exec_s": round(exec_s, 3),
        "flash_s": round(flash_s, 2),
        "heap_free_at_repl": heap,
        "probe_sim_s_per_real_s": round(probe_rate, 1),
        "firmware_sim_s_per_real_s": None if fw_rate is None else round(fw_rate, 1),
        "day_real_s_estimate": None if not fw_rate else round(86400 / fw_rate, 1),
        "scenario": args.scenario,
    }
    print_figures(result, args.json)


if __name__ == "__main__":
    main()
