"""The link's bounded TX queue: when the host cannot take frames, the oldest lowest-priority frame
goes first (VIB, then STATS, then state/heartbeat; EVENT last), every drop counted (micropython)."""

from __future__ import annotations

import pytest
from support.fwharness import run_script
from liftwatch.protocol.framing import FrameReader

pytestmark = pytest.mark.micropython

SCRIPT = r"""
import link, lwproto

class Board:
    # A host that is away (BLE not connected): nothing can be written until `up`.
    def __init__(self):
        self.up = False
        self.out = bytearray()
        self.t = 0
    def ticks_ms(self):
        return self.t
    def uart_write(self, buf, off, n):
        if not self.up:
            return False
        self.out += buf[off:off + n]
        return True
    def uart_readinto(self, buf):
        return 0

b = Board()
lk = link.Link(b, 9)
def send(mtype, tag, prio):
    off = lk.begin(mtype, b.t)
    off = lwproto.pack_array_header(lk.enc.body, off, 1)
    off = lwproto.pack_int(lk.enc.body, off, tag)
    return lk.commit(off, prio)

res = []
res.append(send(5, 100, link.P_EVENT))   # event 100
for i in range(3):
    res.append(send(3, i, link.P_VIB))   # VIB 0..2
res.append(send(4, 50, link.P_STATS))    # STATS 50
res.append(send(2, 60, link.P_STATE))    # STATE 60  -> queue full (6)
res.append(send(5, 101, link.P_EVENT))   # drops VIB 0 (oldest lowest)
res.append(send(4, 51, link.P_STATS))    # drops VIB 1
res.append(send(3, 3, link.P_VIB))       # drops VIB 2 (same priority, older)
res.append(send(5, 102, link.P_EVENT))   # drops VIB 3
res.append(send(5, 103, link.P_EVENT))   # drops STATS 50
res.append(send(3, 4, link.P_VIB))       # nothing lower queued: the new VIB is the one dropped
print("COMMITS", res, lk.drops, lk.depth)
b.up = True
b.t = 1000
lk.pump(b.t)
print("DEPTH", lk.depth, lk.sent)
open("out.bin", "wb").write(b.out)
"""


def test_queue_drops_oldest_low_priority_first_and_counts(tmp_path):
    proc = run_script(tmp_path, SCRIPT)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    commits = out.split("COMMITS ")[1].splitlines()[0]
    assert commits == "[True, True, True, True, True, True, True, True, True, True, True, False] 6 6"
    frames = FrameReader().feed((tmp_path / "out.bin").read_bytes())
    # what survived, in send order: events kept, the STATE kept, VIB gone first, then the older STATS
    assert [(f.type, f.payload[0]) for f in frames] == [(5, 100), (2, 60), (5, 101), (4, 51), (5, 102), (5, 103)]
    assert [f.seq for f in frames] == [0, 5, 6, 7, 9, 10]  # dropped frames leave seq gaps the host counts
    assert "DEPTH 0 6" in out
