"""Firmware updates over the link (issue 18): Ed25519 verification on the board's interpreter, the
size of a signed bundle, and updates of mock boards through power cuts, bad images and forged bundles.

    python benchmarks/ota.py --json              # everything: tens of minutes on 2 cores
    python benchmarks/ota.py --no-boards --json  # only the verification cost and the bundle size
    python benchmarks/ota.py --quick --json      # a smoke run (hil_tests/test_ota_benchmark.py)

`verify_ms_unix`: protocol/ed25519.py verifying a signature under the unix `micropython -X
heapsize=96k` (pure SHA-512 too: MicroPython's hashlib has none), median over the RFC 8032 vectors
and --repeats runs. `verify_min_heap_k`: the smallest -X heapsize (KiB) at which one verification
still runs, i.e. the contiguous heap the check needs. `verify_s_esp32_estimate`: not a measurement;
`verify_ms_unix` x ESP32_SLOWDOWN (see below). `bundle_bytes_xtensawin`: `liftwatch ota build` of
the current firmware for an ESP32.

On mock boards (the real firmware at --heap-k, flashed with `liftwatch flash --ota-key`, pushed to
by `edge_daemon.ota.push`; bundles from hil_tests/ota_kit.py), one fresh flash image per trial:
- `update_s`: one update in real time (speed 1), from the push's start to the new firmware's first
  boot (its confirmation takes another 60 s of health by design). The mock board's pty does not
  throttle to a baud rate: `uart_wire_s_921600` is the bundle's bytes on a 921600 baud wire (10
  bits a byte), the floor an ESP32's UART puts under it; the rest is the board's pace (two chunks
  in flight, each answered).
- `power_cut_trials`: boards (speed 10) whose power is cut once, cycling through `PHASES`: the
  transfer (at a random fraction of the bytes), staging and the switch (at a random moment of the
  install boot, whose length `reference_steps_s_at_10x` measures: its first 80 % checking and
  copying, the last 20 % the switch and the reset), the first boot (at a random moment between the
  new firmware's first HELLO and its confirmation). The push carries on; if it gives up, it is run
  again, as an operator would. `bricked`: boards that did not end linked, sampling and off trial on
  the old or the new firmware (`ota.watch`); `ended_on_new` the ones on the new.
- `bad_image_trials` / `bad_image_rolled_back`: images that crash at import, crash later (at their
  first heartbeat) and never link up (they never hear their host), --bad-repeats each: the push
  fails with the board's rollback and the board runs the old firmware, healthy.
- `facts_lost_during_update`: a car riding through an update pushed through the running daemon
  (hil_tests/ota_kit.py LIVE_CAR: six rides during the transfer, a quiet spell for the install, two
  rides after): its trips and door cycles that never reached upstream (`facts_duplicated`: twice
  under one id; `facts_trips_without_ride_quality`: trips that came without it).
- `forged_trials` / `forged_refused`: bundles unsigned, signed by another key, changed after
  signing, not newer, older, for another arch, over the size limit, pushed in turn to one board:
  each refused with the reason the Pi reports, the board on the old firmware with no boot record.
A benchmark reports; it does not pass or fail.
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

from liftwatch.edge_daemon import ota, ota_jobs
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


def measure(repeats: int, search_heap: bool = True) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        us = _run(tmp, _script(repeats, len(VECTORS)), "96k")
        if us is None:
            raise SystemExit("ed25519 verification failed under micropython at 96k")
        min_heap = None
        for k in range(4, 97, 2) if search_heap else ():
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


class Boards:
    """Mock boards flashed with the test release key, one fresh flash image per trial."""

    def __init__(self, d: Path, heap_k: int) -> None:
        from liftwatch.hil.ota_kit import flash_with_release_key

        self.d, self.heap_k, self.n = d, heap_k, 0
        self.image = flash_with_release_key(d, heap_k)

    def start(self, speed: float, samples=None):  # noqa: ANN001, ANN201
        from liftwatch.hil.mockboard.board import MockBoard

        self.n += 1
        shutil.copyfile(self.image, self.d / f"b{self.n}.img")
        b = MockBoard(self.d / f"b{self.n}.img", samples, speed=speed, heap_k=self.heap_k)
        b.start()
        return b


def link_of(board) -> ota.CarLink:  # noqa: ANN001
    from liftwatch.edge_daemon.transport import LinkKind, make_transport

    return ota.CarLink("bench", lambda: make_transport(LinkKind.SERIAL, board.ports.data))


def timeline(boards: Boards, raw: bytes, speed: float, confirm: bool) -> dict[str, float]:
    """Seconds from the push's start to each step: installing (all received), trial (the new
    firmware's first HELLO), and, with ``confirm``, confirmed."""
    b = boards.start(speed)
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        asyncio.run(ota.push_car(link_of(b), raw, timeout_s=600, confirm=confirm,
                                 step=lambda s: marks.setdefault(s, time.perf_counter() - t0)))
        marks["confirmed" if confirm else "done"] = time.perf_counter() - t0
    finally:
        b.stop()
    return marks


PHASES = ("transfer", "staging", "switch", "first boot")


def power_cut_trial(boards: Boards, raw: bytes, phase: str, frac: float, ref: dict[str, float]) -> dict[str, object]:
    """Cut the power once at ``frac`` of ``phase`` (transfer: of the bytes; staging and switch: of the
    install boot, from the reference run ``ref``; first boot: of the trial before the confirmation),
    let push carry on (an operator pushes again if it gave up), then check that the board samples,
    linked and off trial, on the old firmware or the new."""
    from liftwatch.hil.conftest import TALK_SPEED
    from liftwatch.hil.ota_kit import NEW, OLD

    b = boards.start(TALK_SPEED)
    link = link_of(b)
    cut: list[float] = []

    def cut_now() -> None:
        if not cut:
            cut.append(time.perf_counter())
            threading.Thread(target=b.power_cut, kwargs={"off_s": 0.5}, daemon=True).start()

    install = ref["trial"] - ref["installing"]  # the install boot: check, stage (copy), switch, reset
    delay = {"staging": frac * 0.8 * install, "switch": (0.8 + 0.2 * frac) * install}.get(phase)

    def progress(have: int, total: int) -> None:
        if phase == "transfer" and have >= frac * total:
            cut_now()

    def step(name: str) -> None:
        if name == "installing" and delay is not None:
            threading.Timer(delay, cut_now).start()
        elif name == "trial" and phase == "first boot":
            threading.Timer(frac * (ref["confirmed"] - ref["trial"]), cut_now).start()

    outcome = ""
    try:
        for attempt in range(2):  # the push, and once more as an operator would if it gave up
            try:
                asyncio.run(ota.push_car(link, raw, timeout_s=300, progress=progress if not attempt else None,
                                         step=step if not attempt else None))
                break
            except ota.OtaError as err:
                outcome = str(err)
        try:
            hello = asyncio.run(ota.watch(link, None))
            hello = asyncio.run(ota.watch(link, hello.fw_version, 2.0, timeout_s=ota_jobs.TRIAL_S))
            ended = hello.fw_version if hello.fw_version in (OLD, NEW) else "other"
        except ota.OtaError as err:
            ended, outcome = "bricked", str(err)
    finally:
        b.stop()
    return {"phase": phase, "cut": bool(cut), "ended": ended, "note": outcome}


def bad_image_trial(boards: Boards, raw: bytes) -> bool:
    """The push fails with the board's rollback, and the board runs the old firmware, healthy."""
    from liftwatch.hil.conftest import TALK_SPEED
    from liftwatch.hil.ota_kit import OLD

    b = boards.start(TALK_SPEED)
    link = link_of(b)
    try:
        try:
            asyncio.run(ota.push_car(link, raw, timeout_s=ota_jobs.TRIAL_S * 2))
            return False
        except ota.OtaError as err:
            if "rolled back" not in str(err):
                return False
        hello = asyncio.run(ota.watch(link, OLD, 2.0, timeout_s=ota_jobs.TRIAL_S))
        return hello.update == "rolled_back"
    except ota.OtaError:
        return False
    finally:
        b.stop()


def forged_trials(boards: Boards, cases: dict[str, tuple[bytes, str]]) -> dict[str, bool]:
    """Each bundle pushed to one board in turn: refused with the expected reason, the board still
    on the old firmware with no update record after each."""
    from liftwatch.hil.conftest import TALK_SPEED
    from liftwatch.hil.ota_kit import OLD

    b = boards.start(TALK_SPEED)
    link = link_of(b)
    refused = {}
    try:
        for name, (raw, why) in cases.items():
            try:
                asyncio.run(ota.push_car(link, raw, timeout_s=120))
                refused[name] = False
                continue
            except ota.OtaError as err:
                said = str(err)
            hello = asyncio.run(ota.watch(link, None))
            refused[name] = why in said and (hello.fw_version, hello.update) == (OLD, "")
    finally:
        b.stop()
    return refused


def facts_trial(boards: Boards, raw: bytes) -> dict[str, object]:
    """A car riding through an update pushed through the running daemon (`liftwatch ota push` with
    the daemon up, as hil_tests/test_ota_live.py does: six rides during the transfer, a quiet spell
    for the install, two rides on the new firmware). Facts lost: the car's trips and door cycles
    that never reached upstream; duplicates: facts upstream twice under one id; trips upstream
    without ride quality (what a push with the daemon stopped cost: they came from the journal)."""
    from liftwatch.edge_daemon.report.source import load_messages
    from liftwatch.hil.conftest import TALK_SPEED, daemon_for, upstream_journal
    from liftwatch.hil.ota_kit import LIVE_CAR, LIVE_PREFIX_S, update_through_daemon
    from liftwatch.hil.sim.scenario import Scenario

    sc = Scenario.from_dict(LIVE_CAR)
    truth = sc.ground_truth(LIVE_PREFIX_S)
    b = boards.start(TALK_SPEED, sc.timeline(rest_prefix_s=LIVE_PREFIX_S))
    try:
        state, config = daemon_for(b, boards.d, sc, str(boards.n))
        bundle = boards.d / f"live{boards.n}.lwota"
        bundle.write_bytes(raw)
        pushed = update_through_daemon(b, config, bundle, sc.car.name, truth.t_us)
    finally:
        b.stop()
    journal, _raised, _seen = upstream_journal(state)
    messages = list(load_messages([state / "upstream.jsonl"]).messages)
    trips = [m for m in messages if m["kind"] == "trip"]
    cycles = sum(m["kind"] == "door_cycle" for m in messages)
    return {
        "facts_expected": truth.trips + truth.door_cycles,
        "facts_lost_during_update": max(0, truth.trips - len(trips)) + max(0, truth.door_cycles - cycles),
        "facts_duplicated": len(journal) - len({(m["id"], m.get("revision", 0)) for m in journal}),
        "facts_trips_without_ride_quality": sum(t["ride_quality"] is None for t in trips),
        "facts_update": pushed["out"].strip().splitlines()[-1] if pushed["rc"] == 0 else pushed["err"].strip(),
    }


def measure_boards(power_cuts: int, bad_repeats: int, seed: int, heap_k: int, quick: bool) -> dict[str, object]:
    """Updates on mock boards (see the module docstring)."""
    from liftwatch.hil.conftest import TALK_SPEED
    from liftwatch.hil.ota_kit import BAD_IMAGES, NEW, SECRET, bad_bundle, firmware_copy, forged_bundles

    rng = random.Random(seed)
    d = Path(tempfile.mkdtemp(prefix="ota-bench-"))
    try:
        boards = Boards(d, heap_k)
        good = ota.build(SECRET, "x64", firmware_copy(d / "fw", NEW))
        r: dict[str, object] = {"bundle_bytes_x64": len(good),
                                "uart_wire_s_921600": round(len(good) * 10 / 921600, 1)}
        if not quick:  # real time: the board's own pace over the (unthrottled) pty
            r["update_s"] = round(timeline(boards, good, 1.0, confirm=False)["trial"], 1)
        ref = timeline(boards, good, TALK_SPEED, confirm=True)
        r["reference_steps_s_at_10x"] = {k: round(v, 1) for k, v in ref.items()}
        trials = [power_cut_trial(boards, good, PHASES[i % len(PHASES)], rng.random(), ref)
                  for i in range(power_cuts)]
        r["power_cut_trials"] = sum(t["cut"] for t in trials)
        r["power_cuts_by_phase"] = {p: sum(t["cut"] and t["phase"] == p for t in trials) for p in PHASES}
        r["bricked"] = sum(t["ended"] not in ("1.0.0", NEW) for t in trials)
        r["ended_on_new"] = sum(t["ended"] == NEW for t in trials)
        r["bricked_notes"] = [t["note"] for t in trials if t["ended"] not in ("1.0.0", NEW)]
        kinds = ["crash at import"] if quick else list(BAD_IMAGES)
        bad = {k: sum(bad_image_trial(boards, bad_bundle(d / f"bad{i}", k)) for i in range(bad_repeats))
               for k in kinds}
        r["bad_image_trials"] = bad_repeats * len(kinds)
        r["bad_image_rolled_back"] = sum(bad.values())
        r["bad_image_rolled_back_by_kind"] = bad
        cases = forged_bundles()
        cases["oversized"] = (ota.pack(NEW, ota.mpy_value("x64"), "x64", [("big.mpy", bytes(ota.MAX_BUNDLE))], SECRET),
                              "over the")
        if quick:
            cases = {k: cases[k] for k in ("unsigned", "other arch")}
        if not quick:
            r.update(facts_trial(boards, good))
        forged = forged_trials(boards, cases)
        r["forged_trials"] = len(forged)
        r["forged_refused"] = sum(forged.values())
        r["forged_not_refused"] = [k for k, ok in forged.items() if not ok]
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-boards", action="store_true", help="only the verification cost (seconds, not minutes)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run for the test suite: a few trials of each kind, at 10x (no real-time update_s)")
    ap.add_argument("--power-cuts", type=int, default=52, help="boards cut once each, cycling through the phases")
    ap.add_argument("--bad-repeats", type=int, default=2, help="trials of each bad image kind")
    ap.add_argument("--heap-k", type=int, default=96, help="the mock boards' heap (KiB)")
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    if args.quick:
        args.power_cuts, args.bad_repeats, args.repeats = min(args.power_cuts, 2), 1, 1
    r = measure(args.repeats, search_heap=not args.quick)
    if not args.no_boards:
        r.update(measure_boards(args.power_cuts, args.bad_repeats, args.seed, args.heap_k, args.quick))
    for k, v in r.items():
        print(f"{k:28} {v}")
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
