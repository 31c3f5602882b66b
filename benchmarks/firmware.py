"""Firmware sampling-path benchmark under the unix MicroPython, deploy form (.mpy), board heap.

Prints a table; with --json the last line is one JSON object with at least:
- us_per_sample: the whole loop pass (FIFO burst read through the fake I2C, ring, burst analysis,
  motion state machine, streaming/STATS decisions, framing, link pacing) per sample, at 400 Hz over a
  mix of rest and trips; the simulator's own cost (feed, fake sample generation) is reported apart.
- alloc_bytes_per_sample: heap left allocated per sample over a window of passes with the collector
  off (must be 0), plus how many passes ran under micropython.heap_lock() without a MemoryError.
- max_rate_hz_no_drop: the highest output data rate that ran with no FIFO, ring or link loss.
- heap_free_min: lowest gc.mem_free() the board reported (HEARTBEAT) over the long run, brought back
  to a 96 KiB board: minus the allowances the run got (liftwatch/upy.py: SIM_HEAP_ALLOWANCE_K, POINTER_WIDTH_HEAP_K), plus
  what the simulated hardware (hal_sim, the fake accelerometer, feed buffers) measured in that run.
- viper_gain_*: the burst analysis (motion._analyse) as viper vs the same code as plain bytecode
  and as @micropython.native.
The ESP32 is roughly 30-60x slower per bytecode than this machine; esp32_busy_pct_800hz_est takes
45x and 800 Hz.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from figures import print_figures
from support import fwharness as h

from liftwatch.upy import FIRMWARE_DIR, PROTOCOL_DIR, run_micropython

TIMING = r"""
import time, gc, micropython, agent
b.busy_us = 0
b.sim_us = 0
b.locked = 0
b.garbage = 0
b.win_samples = 0
_step = agent.Agent.step
_wait = b.wait_ms
def _timed_wait(ms):
    t = time.ticks_us()
    r = _wait(ms)
    b.sim_us += time.ticks_diff(time.ticks_us(), t)
    return r
b.wait_ms = _timed_wait
def _timed(self):
    t = time.ticks_us()
    _step(self)
    b.busy_us += time.ticks_diff(time.ticks_us(), t)
agent.Agent.step = _timed
# Allocation window: board time 30-90 s (calibrated, a trip and rest), collector off, then every
# pass of 90-150 s under heap_lock.
_w = [None, 0]
def _measured(self):
    now = self.board.ticks_ms()
    if 30000 <= now < 90000:
        if _w[0] is None:
            gc.collect(); gc.disable(); _w[0] = gc.mem_alloc(); _w[1] = self.samples
        _timed(self)
        return
    if _w[0] is not None and now >= 90000 and b.win_samples == 0:
        b.garbage = gc.mem_alloc() - _w[0]
        b.win_samples = self.samples - _w[1]
        gc.enable()
    if 90000 <= now < 150000:
        micropython.heap_lock()
        try:
            _timed(self)
        finally:
            micropython.heap_unlock()
        b.locked += 1
        return
    _timed(self)
agent.Agent.step = _measured
"""

EXTRA = (
    'put("busy_us", b.busy_us)\nput("sim_us", b.sim_us)\nput("locked", b.locked)\nput("garbage", b.garbage)\n'
    'put("win_samples", b.win_samples)\nput("rate", a.motion.rate)\nput("ring_overruns", a.c[5])'
)


def day(minutes: float) -> bytes:
    fb = h.FeedBuilder()
    while fb.t_us < minutes * 60e6:
        fb.rest(40, 1000).trip().door_cycle().rest(40, 1000)
    return fb.bytes()


def run(rate: int, sensor: str, feed: bytes) -> dict:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "fs").mkdir()
        if rate != 400:
            (tmp / "fs" / "config.json").write_text(json.dumps({"rate_hz": rate}))
        r = h.run_firmware(tmp, feed, sensor=sensor, setup=TIMING, extra=EXTRA, timeout=600)
    s = r.summary
    hb = [f.payload[1] for f in r.of(h.T_HEARTBEAT)]
    c = s.get("counters", [0] * 10)
    return {"rate": s.get("rate", 0), "samples": s.get("samples", 0), "busy_us": s.get("busy_us", 0),
            "sim_us": s.get("sim_us", 0), "locked": s.get("locked", 0), "garbage": s.get("garbage", -1),
            "win_samples": s.get("win_samples", 0), "lost": c[4] + c[5] + c[6],
            "heap_free_min": min(hb) if hb else 0, "sim_bytes": s.get("sim_bytes", 0),
            "ok": r.returncode == 0 and bool(s.get("samples")),
            "err": (r.stdout + r.stderr)[-400:] if r.returncode else ""}


VIPER_BENCH = r"""
import time, array, motion_viper, motion_native, motion_plain
n = 512
ring = bytearray(n * 6)
for i in range(n):
    ring[6 * i + 4] = 0x80; ring[6 * i + 5] = 0x3E  # z = 16000
res = {}
for name, mod in (("viper", motion_viper), ("native", motion_native), ("plain", motion_plain)):
    st = array.array("i", [0] * 17)
    st[1] = 32
    for i in (2, 3, 6, 7, 8):
        st[i] = 0x20000000
    st[4] = 0x20000000 + 4096
    st[5] = 16000
    st[8] = 0x20000000 + 16000
    t = time.ticks_us()
    for rep in range(200):
        st[0] = (rep % 16) * 32 * 6
        mod._analyse(ring, st)
    res[name] = time.ticks_diff(time.ticks_us(), t) / (200 * 32)
print(res["viper"], res["native"], res["plain"])
"""


def viper_gain(tmp: Path) -> tuple[float, float, float]:
    src = (FIRMWARE_DIR / "motion.py").read_text()
    fn = src[src.index("@micropython.viper\ndef _analyse"): src.index("\nclass Motion")]
    plain = re.sub(r": ptr(8|32)", "", fn).replace("@micropython.viper\n", "")
    # The function names its slots of the analysis array and its clamp with the module's consts.
    consts = "".join(line + "\n" for line in src.splitlines() if re.match(r"_(A_\w+|CLAMP) = const", line))
    header = "import micropython\nfrom micropython import const\n" + consts
    (tmp / "motion_viper.py").write_text(header + fn)
    (tmp / "motion_plain.py").write_text(header + plain)
    (tmp / "motion_native.py").write_text(header + "@micropython.native\n" + plain)
    for m in ("motion_viper", "motion_plain", "motion_native"):
        h.subprocess.run([h.MPY_CROSS, "-O3", "-march=x64", "-s", f"{m}.py", "-o", str(tmp / f"{m}.mpy"), str(tmp / f"{m}.py")],
                         check=True)
        (tmp / f"{m}.py").unlink()
    (tmp / "vb.py").write_text(VIPER_BENCH)
    p = run_micropython([str(tmp / "vb.py")], paths=(tmp, PROTOCOL_DIR), cwd=tmp)
    v, n, pl = (float(x) for x in p.stdout.split())
    return v, n, pl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--minutes", type=float, default=20, help="simulated board time of the main run")
    args = ap.parse_args()
    base = run(400, "lis3dh", day(args.minutes))
    if not base["ok"]:
        raise SystemExit("firmware run failed: " + base["err"])
    us = base["busy_us"] / base["samples"]
    short = day(3)
    rates = [base] + [run(r, s, short) for r, s in (("800", "lis2dw12"), ("1600", "lis2dw12"), ("1600", "adxl355"))
                      for r in [int(r)]]
    no_drop = [r["rate"] for r in rates if r["ok"] and r["lost"] == 0]
    with tempfile.TemporaryDirectory() as d:
        v, n, pl = viper_gain(Path(d))
    out = {
        "us_per_sample": round(us, 2),
        "alloc_bytes_per_sample": round(base["garbage"] / max(1, base["win_samples"]), 3),
        "alloc_window_samples": base["win_samples"],
        "heap_locked_passes": base["locked"],
        "max_rate_hz_no_drop": max(no_drop) if no_drop else 0,
        "rates_run": {f'{r["rate"]}': ("ok" if r["ok"] and r["lost"] == 0 else f'lost {r["lost"]}') for r in rates},
        # On a 96 KiB board: what the run had, minus the allowance it was given, plus what the
        # simulated hardware took of it (the harness's runner stays charged to the firmware).
        "heap_free_min": base["heap_free_min"] - (h.SIM_HEAP_ALLOWANCE_K + h.POINTER_WIDTH_HEAP_K) * 1024
        + base["sim_bytes"],
        "heap_free_min_sim_heap": base["heap_free_min"],
        "sim_hardware_bytes": base["sim_bytes"],
        "sim_us_per_sample": round(base["sim_us"] / base["samples"], 2),
        "samples": base["samples"],
        "board_minutes": args.minutes,
        "esp32_busy_pct_800hz_est": round(us * 45 * 800 / 1e4, 1),
        "analyse_us_per_sample_viper": round(v, 3),
        "analyse_us_per_sample_native": round(n, 3),
        "analyse_us_per_sample_bytecode": round(pl, 3),
        "viper_gain_vs_bytecode": round(pl / v, 1),
        "viper_gain_vs_native": round(n / v, 1),
        "viper_functions": ["motion._analyse", "accel_adxl355._adxl_to_le", "fakeaccel._gen (sim)",
                            "lwproto crc16/cobs/copy_into"],
    }
    print_figures(out, args.json)


if __name__ == "__main__":
    main()
