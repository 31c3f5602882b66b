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

With `--boards` it also updates mock boards (the real firmware at 96 KiB, flashed with `liftwatch
flash --ota-key`, pushed to by `edge_daemon.ota.push`; hil_tests/test_ota.py's bundles):
`update_s` one update over the mock UART at 921600 baud in real time (speed 1), transfer to the new
firmware's first boot (its confirmation takes another 60 s of health by design); `power_cut_trials`
boards whose power is cut once at a random moment of transfer, install and first boots (speed 10),
then pushed again; `bricked` those that did not end on the new firmware, confirmed, or answer on the
old one; `resumed_from_nonzero` cuts during the transfer that resumed from the flash, not from 0;
`bad_image_trials` / `bad_image_rolled_back` images that crash at import; `forged_trials` /
`forged_refused` bundles unsigned, signed by another key, changed after signing, not newer, older,
for another arch. Not measured yet: images that crash later or never link up, and
`facts_lost_during_update` (while `push` holds the port the daemon does not see the live frames;
EVENTs are kept by the board until the daemon ACKs them). A benchmark reports; it does not pass or fail.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import shutil
import statistics
import tempfile
import threading
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


def measure_boards(power_cuts: int, seed: int) -> dict[str, object]:
    """Updates on mock boards (see the module docstring)."""
    from hil_tests.conftest import TALK_SPEED
    from hil_tests.test_ota import NEW, SECRET, _forged, firmware_copy, flash_with_release_key
    from liftwatch.edge_daemon.transport import LinkKind, make_transport
    from liftwatch.hil.mockboard.board import MockBoard

    rng = random.Random(seed)
    d = Path(tempfile.mkdtemp(prefix="ota-bench-"))
    image = flash_with_release_key(d)
    good = ota.build(SECRET, "x64", firmware_copy(d / "fw", NEW))

    def crash(fw: Path) -> None:
        s = fw / "streamer.py"
        s.write_text(s.read_text() + "\nraise RuntimeError('bad image')\n")

    bad = ota.build(SECRET, "x64", firmware_copy(d / "bad", NEW, crash))
    n = 0

    def push(raw: bytes, speed: float, confirm: bool = True, cut_after_s: float | None = None):  # noqa: ANN202
        nonlocal n
        n += 1
        shutil.copyfile(image, d / f"b{n}.img")
        b = MockBoard(d / f"b{n}.img", speed=speed, heap_k=96)
        b.start()
        timer = threading.Timer(cut_after_s, b.power_cut, kwargs={"off_s": 0.5}) if cut_after_s else None
        outcome: list[object] = []
        try:
            if timer:
                timer.start()
            for _attempt in range(2 if timer else 1):  # after a cut: push again, as an operator would
                try:
                    outcome.append(asyncio.run(ota.push(make_transport(LinkKind.SERIAL, b.ports.data), raw,
                                                        timeout_s=240, confirm=confirm)))
                    break
                except ota.OtaError as err:
                    outcome.append(err)
            if timer and not isinstance(outcome[-1], ota.PushResult):  # does it still answer (old firmware)?
                try:
                    asyncio.run(ota.push(make_transport(LinkKind.SERIAL, b.ports.data), _forged()["older"][0],
                                         timeout_s=60))
                except ota.OtaError as err:
                    outcome.append(err)
        finally:
            if timer:
                timer.cancel()
            b.stop()
        return outcome

    t = time.perf_counter()
    first = push(good, 1.0, confirm=False)[-1]
    update_s = round(time.perf_counter() - t, 1) if isinstance(first, ota.PushResult) else None
    bricked = resumed = 0
    for _ in range(power_cuts):
        out = push(good, TALK_SPEED, cut_after_s=rng.uniform(0.3, 9.0))
        last = out[-1]
        ok = isinstance(last, ota.PushResult) or "not newer" in str(last)
        bricked += not ok
        resumed += any(isinstance(o, ota.PushResult) and any(o.resumed_from) for o in out)
    rolled = sum("rolled back" in str(push(bad, TALK_SPEED)[-1]) for _ in range(1))
    forged = _forged()
    refused = sum(why in str(push(raw, TALK_SPEED)[-1]) for raw, why in forged.values())
    shutil.rmtree(d, ignore_errors=True)
    return {
        "update_s": update_s, "power_cut_trials": power_cuts, "bricked": bricked,
        "resumed_from_nonzero": resumed, "bad_image_trials": 1, "bad_image_rolled_back": rolled,
        "forged_trials": len(forged), "forged_refused": refused,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--boards", action="store_true", help="also update mock boards (minutes)")
    ap.add_argument("--power-cuts", type=int, default=50, help="with --boards: boards cut once each")
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    r = measure(args.repeats)
    if args.boards:
        r.update(measure_boards(args.power_cuts, args.seed))
    for k, v in r.items():
        print(f"{k:28} {v}")
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
