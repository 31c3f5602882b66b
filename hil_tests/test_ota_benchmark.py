"""A quick run of benchmarks/ota.py (issue 18) keeps its harness honest: a few power cuts, a bad
image, two forged bundles on mock boards, each counted as the full run counts them (`python
benchmarks/ota.py --json`, tens of minutes, is the measurement). About 75 s, so it runs with
`-m long`: the same behaviours are in the default run as hil_tests/test_ota.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.hil, pytest.mark.mock_only, pytest.mark.long]
BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "ota.py"


@pytest.mark.timeout(600)
def test_quick_ota_benchmark_counts_what_the_full_run_counts(board_heap_k: int) -> None:
    r = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", "--heap-k", str(board_heap_k)],
                       capture_output=True, text=True, timeout=580)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["power_cut_trials"] == 2 and result["bricked"] == 0, result
    assert result["bad_image_trials"] == result["bad_image_rolled_back"] == 1, result
    assert result["forged_trials"] == result["forged_refused"] == 2, result
    assert result["verify_ms_unix"] > 0 and result["bundle_bytes_x64"] > 0
