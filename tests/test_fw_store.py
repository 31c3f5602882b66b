"""Two-slot counter store: a power cut at every byte of a write never corrupts it (micropython)."""

from __future__ import annotations

import pytest
from support.fwharness import run_script

pytestmark = pytest.mark.micropython

SCRIPT = r"""
import store

PATH = "cnt.bin"
try:
    import os; os.remove(PATH)
except OSError:
    pass

class Cut(Exception):
    pass

def torn(limit, fill):
    # A flash write that stops after `limit` bytes; the rest of the slot keeps its old bytes or
    # reads as erased flash (0xFF), depending on `fill`.
    def write_at(path, off, b, file_len):
        with open(path, "r+b") as f:
            f.seek(off)
            f.write(bytes(b[:limit]))
            if fill is not None:
                f.write(bytes([fill]) * (len(b) - limit))
        raise Cut()
    return write_at

s = store.Store(PATH, 0x43, 10)
for i in range(10):
    s.values[i] = 1000 + i
s.save()                      # generation 1 in slot 0
for i in range(10):
    s.values[i] = 2000 + i
s.save()                      # generation 2 in slot 1
good = open(PATH, "rb").read()
for fill in (None, 0xFF, 0x00):
    for limit in range(s.slot_len + 1):
        with open(PATH, "wb") as f:
            f.write(good)
        w = store.Store(PATH, 0x43, 10)
        assert w.load()
        for i in range(10):
            w.values[i] = 3000 + i
        w.write_at = torn(limit, fill)
        try:
            w.save()
        except Cut:
            pass
        r = store.Store(PATH, 0x43, 10)
        ok = r.load()
        print("R", fill if fill is not None else -1, limit, 1 if ok else 0, r.values[0], r.values[9])
# both slots destroyed: load says so and leaves the values alone
with open(PATH, "wb") as f:
    f.write(bytes(len(good)))
z = store.Store(PATH, 0x43, 10)
print("S", s.slot_len, 1 if z.load() else 0, sum(z.values))
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    proc = run_script(tmp_path_factory.mktemp("store"), SCRIPT)
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [line.split() for line in proc.stdout.decode().splitlines()]
    results = [[int(x) for x in r[1:]] for r in rows if r and r[0] == "R"]
    (_, slot_len, empty_ok, empty_sum), = [r for r in rows if r and r[0] == "S"]
    return {"slot_len": int(slot_len), "results": results, "empty_load": empty_ok == "1", "values_sum": int(empty_sum)}


def test_power_cut_at_every_byte_keeps_a_valid_generation(result):
    n = result["slot_len"]
    assert len(result["results"]) == 3 * (n + 1)
    for fill, limit, ok, first, last in result["results"]:
        assert ok == 1, (fill, limit)
        if limit == n:
            assert (first, last) == (3000, 3009)  # the write completed
        else:
            assert (first, last) == (2000, 2009), (fill, limit)  # the previous generation, intact


def test_no_valid_slot_is_reported_not_invented(result):
    assert result["empty_load"] is False
    assert result["values_sum"] == 0
