"""A short soak (benchmarks/soak.py): 2 boards, 3 simulated hours at 600x with faults, reconciled.

The full soak (10 boards, a simulated week, broker outages, disk full) is a benchmark, not a test:
`python benchmarks/soak.py --broker --tmpfs-mb 64 --json`. This one keeps the harness honest in the
default run, in about 25 s: every board EVENT upstream exactly once, no trip or visit missing
without a fault that touched it, nothing stored twice under two ids.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


@pytest.mark.timeout(120)
def test_short_soak_reconciles(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(SOAK), "--boards", "2", "--sim-hours", "3", "--seed", "1", "--faults-per-day", "80",
         "--faults", "serial_garbage,serial_cut,board_power_cut,watchdog_reset,daemon_sigkill,clock_jump",
         "--drain-s", "25", "--workdir", str(tmp_path / "soak"), "--json", "--verbose"],
        capture_output=True, text=True, timeout=110,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    table = result["table"]
    assert sum(result["faults_injected"].values()) >= 3, result["faults_injected"]
    assert table["trip"]["made"] >= 20 and table["trip"].get("once", 0) >= 5, table
    # Every EVENT upstream once, or still in its board's flash being re-sent (a link not back yet).
    assert table["event"]["made"] >= 2, table
    assert table["event"].get("once", 0) + table["event"].get("pending_on_board", 0) == table["event"]["made"], table
    assert result["lost"] == 0, (result["table"], r.stdout[-2000:])
    assert result["duplicated"] == 0, result["table"]
    assert result["rss_growth_mb"] is not None
    assert set(result) >= {"lost", "duplicated", "dropped_by_reason", "faults_injected", "rss_growth_mb"}
