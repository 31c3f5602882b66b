"""Firmware update costs that exist today (issue 18, host half): Ed25519 verification on the board's
interpreter, and the size of a signed bundle.

    python benchmarks/ota.py            # table
    python benchmarks/ota.py --json     # table, then one JSON object as the last line

`verify_ms_unix`: protocol/ed25519.py verifying a signature under the unix `micropython -X
heapsize=96k` (pure SHA-512 too: MicroPython's hashlib has none), median over the RFC 8032 vectors
and --repeats runs. `verify_min_heap_k`: the smallest -X heapsize (KiB) at which one verification
still runs, i.e. the contiguous heap the check needs. `verify_s_esp32_estimate`: not a measurement;
`verify_ms_unix` x ESP32_SLOWDOWN (see below). `bundle_bytes_xtensawin`: `liftwatch ota build` of
the current firmware for an ESP32.

The issue's update figures (power cuts, bad images, forged bundles on boards, `update_s`,
`facts_lost_during_update`) need the board half of the update, which is not merged (docs/operations.md,
"Firmware updates"): this script does not report them. A benchmark reports; it does not pass or fail.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from liftwatch.edge_daemon import ota
from liftwatch.protocol import ed25519
from liftwatch.upy import PROTOCOL_DIR, run_micropython

VECTORS = json.loads((PROTOCOL_DIR / "vectors" / "ed25519.json").read_text())["vectors"]
# How much longer the ESP32 (Xtensa LX6, 240 MHz) takes than the unix port on a desktop x86-64 core
# for this code: ~50x for interpreted bytecode (the usual ratio of pystone-style figures between the
# two), times ~4 for big-int multiplication, whose mpz digits are 16-bit on a 32-bit port against
# 32-bit on a 64-bit one (schoolbook multiply: 4x the digit products). An estimate, not a measurement.
ESP32_SLOWDOWN = 50 * 4

_SCRIPT = """
import time, binascii, ed25519
u = binascii.unhexlify
vs = [{vectors}]
out = []
for _ in range({repeats}):
    for pk, m, s in vs:
        t = time.ticks_us()
        ok = ed25519.verify(u(pk), u(m), u(s))
        out.append(time.ticks_diff(time.ticks_us(), t))
        assert ok
print("US", out)
"""


def _script(repeats: int, n_vectors: int) -> str:
    vs = ", ".join(f"({v['public']!r}, {v['message']!r}, {v['signature']!r})" for v in VECTORS[:n_vectors])
    return _SCRIPT.format(vectors=vs, repeats=repeats)


def _run(tmp: Path, source: str, heap: str) -> list[int] | None:
    script = tmp / "verify_bench.py"
    script.write_text(source)
    r = run_micropython([str(script)], paths=[PROTOCOL_DIR], heapsize=heap)
    m = re.search(r"US \[([0-9, ]+)\]", r.stdout.decode())
    return [int(x) for x in m.group(1).split(",")] if r.returncode == 0 and m else None


def measure(repeats: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        us = _run(tmp, _script(repeats, len(VECTORS)), "96k")
        if us is None:
            raise SystemExit("ed25519 verification failed under micropython at 96k")
        min_heap = None
        for k in range(4, 97, 2):
            if _run(tmp, _script(1, 1), f"{k}k") is not None:
                min_heap = k
                break
    secret = hashlib.sha256(b"benchmark release key").digest()
    t = time.perf_counter()
    raw = ota.build(secret, "xtensawin")
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    ota.parse(raw, ed25519.public_key(secret))
    host_check_ms = (time.perf_counter() - t) * 1000
    verify_ms = statistics.median(us) / 1000
    return {
        "verify_ms_unix": round(verify_ms, 2),
        "verify_ms_unix_max": round(max(us) / 1000, 2),
        "verify_min_heap_k": min_heap,
        "verify_s_esp32_estimate": round(verify_ms * ESP32_SLOWDOWN / 1000, 1),
        "esp32_slowdown_assumed": ESP32_SLOWDOWN,
        "bundle_bytes_xtensawin": len(raw),
        "bundle_files": len(ota.parse(raw).files),
        "build_s": round(build_s, 2),
        "host_check_ms": round(host_check_ms, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    r = measure(args.repeats)
    for k, v in r.items():
        print(f"{k:28} {v}")
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
