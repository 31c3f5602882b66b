"""How much more room the firmware's objects have on an ESP32 than under the 64-bit unix interpreter.

Runs tests/support/heapmodel.py's measurement (a heap dump of the firmware after half a minute of a car
on the simulated board, the simulated hardware taken out) and prints, with --json last:
- firmware_unix_bytes / firmware_esp32_bytes_max: the firmware's heap here, and its upper bound on an
  ESP32 (words halve, str data rounds to 16 bytes, anything not recognised keeps its size);
- allowance_bytes: the extra heap a 64-bit run needs to leave the firmware what a 96 KiB ESP32
  leaves it (the saving less the ESP32's bigger GC tables): a lower bound;
- pointer_width_heap_k: the allowance the mock board and the firmware runs use (liftwatch/upy.py);
- by category: allocations, bytes here, bytes on an ESP32 at most.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from figures import print_figures
from support.heapmodel import measure_firmware

from liftwatch.upy import ESP32_HEAP_K, POINTER_WIDTH_HEAP_K


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        fw = measure_firmware(Path(d))
    figures = {
        "firmware_unix_bytes": fw.unix_bytes,
        "firmware_esp32_bytes_max": fw.esp32_bytes,
        "esp32_to_unix_ratio_max": round(fw.esp32_bytes / fw.unix_bytes, 3),
        "allowance_bytes": fw.allowance_bytes(ESP32_HEAP_K),
        "pointer_width_heap_k": POINTER_WIDTH_HEAP_K,
    }
    for cat, (n, unix, esp32) in sorted(fw.by_category.items(), key=lambda kv: -kv[1][1]):
        figures[f"{cat.replace(' ', '_')}: n, unix, esp32_max"] = f"{n}, {unix}, {esp32}"
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
