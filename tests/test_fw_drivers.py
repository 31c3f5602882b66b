"""Accelerometer drivers against the register-level fakes, under micropython -X heapsize=96k."""

from __future__ import annotations

import json

import pytest
from support.fwharness import run_script

pytestmark = pytest.mark.micropython

SCRIPT = r"""
import struct, hal_sim, accel
feed = bytearray()
for i in range(60):
    feed += struct.pack('<IhhhBB', 10000, 120, -250, 960, 0, 0)
out = {}
for model in ('lis3dh', 'lis2dw12', 'adxl355'):
    r = {}
    for ask in (400, 800):
        b = hal_sim.SimBoard(bytes(feed), sensor=model, seed=7)
        d = accel.detect(b.i2c)
        rate = d.start(ask)
        n = 0; s = [0, 0, 0]; q = [0, 0, 0]
        while b.wait_ms(20):
            k = d.read()
            for j in range(k):
                v = struct.unpack_from('<hhh', d.scratch, 6 * j)
                for a in range(3):
                    s[a] += v[a]; q[a] += v[a] * v[a]
            n += k
        mean = [x // n for x in s]
        rms = [int((q[a] / n - (s[a] / n) ** 2) ** 0.5) for a in range(3)]
        r[str(ask)] = dict(model=d.MODEL, rate=rate, n=n, t_ms=b.t_us // 1000, mean=mean, rms=rms,
                           lsb=d.LSB_PER_G, overruns=d.overruns)
    # overrun: nobody reads the FIFO for 200 ms
    b = hal_sim.SimBoard(bytes(feed), sensor=model)
    d = accel.detect(b.i2c)
    d.start(400)
    b.wait_ms(200)
    k1 = d.read()
    b.wait_ms(20)
    k2 = d.read()
    r['overrun'] = dict(first=k1, second=k2, driver=d.overruns, lost=b.sensor.overruns)
    out[model] = r
try:
    accel.detect(hal_sim.SimI2C())
    out['absent'] = 'found?'
except accel.SensorError as e:
    out['absent'] = str(e)
print(repr(out).replace("'", '"'))
"""

NOISE_MG = {"lis3dh": 3.1, "lis2dw12": 1.3, "adxl355": 0.25}  # datasheet density x sqrt(bandwidth)
RATES = {"lis3dh": (400, 1344), "lis2dw12": (400, 800), "adxl355": (500, 1000)}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    proc = run_script(tmp_path_factory.mktemp("drv"), SCRIPT)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


@pytest.mark.parametrize("model", ["lis3dh", "lis2dw12", "adxl355"])
def test_detects_part_and_runs_at_its_output_rate(result, model):
    for ask, want in zip(("400", "800"), RATES[model]):
        r = result[model][ask]
        assert r["model"] == model
        assert r["rate"] == want
        # every sample produced in the run was read (the last burst may still sit in the FIFO)
        expected = r["t_ms"] * want // 1000
        assert expected - 40 <= r["n"] <= expected
        assert r["overruns"] == 0


@pytest.mark.parametrize("model", ["lis3dh", "lis2dw12", "adxl355"])
def test_counts_scale_and_noise_match_the_datasheet(result, model):
    r = result[model]["400"]
    per_mg = r["lsb"] / 1000
    for got, mg in zip(r["mean"], (120, -250, 960)):
        assert abs(got / per_mg - mg) < 2, (got, mg)
    noise = NOISE_MG[model]
    for rms in r["rms"]:
        assert 0.6 * noise <= rms / per_mg <= 1.5 * noise + 0.1, (rms / per_mg, noise)


@pytest.mark.parametrize("model", ["lis3dh", "lis2dw12", "adxl355"])
def test_fifo_overrun_is_seen_and_counted(result, model):
    r = result[model]["overrun"]
    assert r["first"] == 32  # a full FIFO
    assert r["driver"] == 1  # one overrun episode reported by the part
    assert r["lost"] > 0  # the fake really overwrote samples
    assert 0 < r["second"] < 32  # reading resumes normally


def test_absent_sensor_is_a_typed_error(result):
    assert "no accelerometer" in result["absent"]
