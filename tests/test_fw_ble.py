"""BLE link logic (ble.BleStream): chunking to the MTU, pacing per connection interval, retry of a
failed notify, reassembly of host writes into frames; under micropython -X heapsize=96k."""

from __future__ import annotations

import pytest
from support.fwharness import T_ACK, T_CONFIG, host_frame, run_script
from liftwatch.protocol.framing import FrameReader

pytestmark = pytest.mark.micropython

SCRIPT = r"""
import ble, lwproto
enc = lwproto.FrameEncoder(max_body=504)
def frame(i, n):
    off = enc.begin(3, 7, i, i * 10)
    off = lwproto.pack_array_header(enc.body, off, 2)
    off = lwproto.pack_int(enc.body, off, i)
    off = lwproto.pack_bin_from(enc.body, off, bytes([(i + k) & 0xFF for k in range(n)]), 0, n)
    return enc.finish(off)

s = ble.BleStream()
# nobody connected: the link must keep its frames (uart_write refuses whole frames)
n = frame(0, 100)
print("DISCONNECTED", s.uart_write(enc.wire, 0, n))
s.on_connect(); s.subscribed = True
s.on_mtu(185)
print("PAYLOAD", s.payload)
stream = bytearray()
t = 0
sizes = []
per_interval_max = 0
queued = 0
notifications = 0
fail = 0

def drain_interval():
    # one connection interval: notify what the pacing allows; every 5th notify fails once (ENOMEM)
    global t, fail, stream, per_interval_max
    t += 15
    k = 0
    c = s.next_notification(t)
    while c is not None:
        fail += 1
        if fail % 5 == 0:
            s.notified(False)  # the stack had no buffer: same chunk again next interval
            break
        stream += c; sizes.append(len(c)); s.notified(True); k += 1
        c = s.next_notification(t)
    per_interval_max = max(per_interval_max, k)

for i in range(1, 21):
    n = frame(i, 60 + 17 * i)
    queued += n
    notifications += (n + 181) // 182
    while not s.uart_write(enc.wire, 0, n):  # the link keeps the frame until all of it went out
        drain_interval()
print("SIZES", max(sizes), min(sizes), len(sizes), per_interval_max, s.retries)
print("STREAM", len(stream), queued, notifications)
# the link dropped its head frame half-sent (queue overflow): a 0x00 ends the part already sent
n = frame(21, 400)
s.uart_write(enc.wire, 0, n)
drain_interval()
n = frame(22, 30)
while not s.uart_write(enc.wire, 0, n):
    drain_interval()
# the connection drops half-way through a frame: it goes again whole on the next connection
n = frame(23, 400)
s.uart_write(enc.wire, 0, n)
s.per_interval = 1
drain_interval()
s.on_disconnect()
print("DOWN", s.uart_write(enc.wire, 0, n), s.next_notification(t + 100))
s.on_connect(); s.subscribed = True
s.per_interval = 4
while not s.uart_write(enc.wire, 0, n):
    drain_interval()
print("CUTS", s.cuts)
open("ble_stream.bin", "wb").write(stream)
# RX: the host's frames written in odd chunks come back out as the same bytes
data = open("host.bin", "rb").read()
i = 0
step = 1
buf = bytearray(64)
rx = bytearray()
while i < len(data):
    for _ in range(3):  # a few writes arrive between two link polls
        s.on_write(data[i:i + step]); i += step; step = step % 23 + 1
    s.on_write(b"")  # a late IRQ for bytes an earlier gatts_read already took
    while True:
        m = s.uart_readinto(buf)
        if not m:
            break
        rx += buf[:m]
open("ble_rx.bin", "wb").write(rx)
print("RX", s.rx_overflows)
for _ in range(9):
    s.on_write(b"x")
print("OVERFLOW", s.rx_overflows)
"""


def test_ble_stream_chunks_paces_and_reassembles(tmp_path):
    host = b"".join(host_frame(T_CONFIG if i % 2 else T_ACK, [{"stats_ms": 1000 + i}] if i % 2 else [5, i, 0, "", None], seq=i)
                    for i in range(12))
    (tmp_path / "host.bin").write_bytes(host)
    proc = run_script(tmp_path, SCRIPT)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    lines = {line.split()[0]: line.split(maxsplit=1)[1] for line in out.splitlines() if line.split()}
    assert lines["DISCONNECTED"] == "False"
    assert lines["PAYLOAD"] == "182"  # ATT MTU 185 - 3
    biggest, smallest, _count, per_interval, retries = map(int, lines["SIZES"].split())
    assert biggest == 182 and smallest >= 1
    assert per_interval <= 4  # pacing: at most 4 notifications per connection interval
    assert retries > 0
    sent, queued, notifications = map(int, lines["STREAM"].split())
    assert sent == notifications * 182  # each frame in whole notifications, its last one padded
    # the concatenated notifications are exactly the frames, in order, nothing lost or duplicated;
    # the frame cut by the link's drop and the part sent before the disconnect are each one damaged
    # frame for the reader (counted), and what follows them arrives whole
    reader = FrameReader()
    frames = reader.feed((tmp_path / "ble_stream.bin").read_bytes())
    assert sum(reader.drops.values()) == 2, reader.drops
    assert [f.seq for f in frames] == list(range(1, 21)) + [22, 23]
    assert [f.payload[0] for f in frames] == list(range(1, 21)) + [22, 23]
    assert lines["DOWN"] == "False None"
    assert lines["CUTS"] == "1"
    # what the link reads back is the host's byte stream, whole and in order, however it was chunked
    assert lines["RX"] == "0"  # no overflow
    assert (tmp_path / "ble_rx.bin").read_bytes() == host
    assert lines["OVERFLOW"] == "1"  # a ninth write before the link read: counted, not kept
