"""ble_nus's pairing gate and bond store under micropython -X heapsize=96k, with a recording double
of the port's `bluetooth` (the IRQs are driven by the test). The same module against a real stack
(Bumble's SMP on a virtual radio) is hil_tests/test_ble.py; this checks the firmware's own rules
where the stack's checks cannot be told apart from them: nothing sent to or taken from a central
before an authenticated, bonded link, whatever the stack lets through."""

from __future__ import annotations

import pytest
from support.fwharness import run_script

pytestmark = pytest.mark.micropython

SCRIPT = r"""
import sys

class UUID:
    def __init__(self, v):
        self.v = v

class BLE:
    def __init__(self):
        self.calls = []
        self.handler = None
        self.rx = b""
    def active(self, *a):
        return True
    def config(self, **kw):
        self.calls.append(("config", sorted(kw.items())))
    def irq(self, handler):
        self.handler = handler
    def gatts_register_services(self, services):
        self.rx_flags = services[0][1][0][1]
        return ((21, 23),)
    def gatts_set_buffer(self, *a):
        pass
    def gatts_read(self, handle):
        v, self.rx = self.rx, b""
        return v
    def gatts_notify(self, conn, handle, data):
        self.calls.append(("notify", conn, bytes(data)))
    def gap_advertise(self, *a, **kw):
        self.calls.append(("advertise",))
    def gap_disconnect(self, conn):
        self.calls.append(("disconnect", conn))
        return True
    def gap_passkey(self, conn, action, passkey):
        self.calls.append(("passkey", conn, action, passkey))

radio = BLE()

class bluetooth:
    FLAG_WRITE = 8
    FLAG_WRITE_NO_RESPONSE = 4
    FLAG_NOTIFY = 16
    UUID = UUID
    BLE = staticmethod(lambda: radio)

sys.modules["bluetooth"] = bluetooth
import gc
gc.collect()
before = gc.mem_free()
import ble_nus
nus = ble_nus.BleNus("liftwatch-e0b001", "")
gc.collect()
print("RESIDENT", before - gc.mem_free())
print("CONFIG", radio.calls[0][1])
print("RXFLAGS", hex(radio.rx_flags))
irq = radio.handler
frame = bytearray(b"\x05abcd\x00")

def sent():
    return [c[2] for c in radio.calls if c[0] == "notify"]

def host_writes(data):
    radio.rx = data
    irq(3, (1, 21))
    buf = bytearray(16)
    return bytes(buf[:nus.uart_readinto(buf)])

# 1: connects, never pairs: nothing out, nothing in, shown the door after the pairing time
irq(1, (1, 0, b"\x00" * 6))
for t in range(0, 29000, 1000):
    nus.uart_write(frame, 0, len(frame))
    nus.service(t)
print("UNPAIRED", sent(), host_writes(b"\x05reboot\x00"), radio.calls[-1])
nus.service(31000)
print("TIMEOUT", radio.calls[-1])
irq(2, (1, 0, b"\x00" * 6))
# 2: Just Works (encrypted and bonded, not authenticated), 3: a failed pairing: disconnected at once
for conn, update in ((2, (2, 1, 0, 1, 16)), (3, (3, 0, 0, 0, 0))):
    irq(1, (conn, 0, b"\x00" * 6))
    irq(28, update)
    print("REFUSED", conn, radio.calls[-1], sent(), host_writes(b"\x05x\x00"))
    irq(2, (conn, 0, b"\x00" * 6))
# 4: the passkey asked for: none provisioned -> disconnected; provisioned -> displayed (given to NimBLE)
irq(1, (4, 0, b"\x00" * 6))
irq(31, (4, 3, 0))
print("NOPASSKEY", radio.calls[-1])
with open("ble_passkey.txt", "w") as f:
    f.write("004711\n")
irq(31, (4, 3, 0))
print("PASSKEY", radio.calls[-1])
# the bond NimBLE hands over, in buffers it reuses after the IRQ (memoryviews, as on the port)
key = bytearray(b"DC:A6:32:00:00:01")
value = bytearray(b"\x01\x00" + bytes(range(16)))
print("SET", irq(30, (2, memoryview(key), memoryview(value))))
key[0] = 0x58
value[2] = 0xFF
irq(28, (4, 1, 1, 1, 16))
while not nus.uart_write(frame, 0, len(frame)):
    nus.service(40000)
print("TRUSTED", sent(), host_writes(b"\x05ok\x00"))
# after a reboot: a new store reads the file back; a forgotten bond is gone
import ble_bonds
bonds = ble_bonds.Bonds("ble_bonds.bin")
print("GET", bonds.get(2, 0, b"DC:A6:32:00:00:01") == b"\x01\x00" + bytes(range(16)), bonds.get(2, 0, None) is not None,
      bonds.get(2, 1, None), bonds.get(1, 0, b"DC:A6:32:00:00:01"))
print("DELETE", irq(30, (2, memoryview(b"DC:A6:32:00:00:01"), None)), irq(29, (2, 0, memoryview(b"DC:A6:32:00:00:01"))),
      ble_bonds.Bonds("ble_bonds.bin").records)
for i in range(12):
    bonds.set(2, b"peer%d" % i, b"v%d" % i)
print("CAP", len(bonds.records), bonds.records[0][1], len(ble_bonds.Bonds("ble_bonds.bin").records))
"""


def test_only_an_authenticated_bonded_central_is_served_and_bonds_survive_a_reboot(tmp_path):
    proc = run_script(tmp_path, SCRIPT)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    lines = {line.split()[0]: line.split(maxsplit=1)[1] for line in out.splitlines() if line.split()}
    assert lines["CONFIG"] == "[('bond', True), ('gap_name', 'liftwatch-e0b001'), ('io', 0), ('le_secure', True), " \
                              "('mitm', True), ('mtu', 247)]"
    assert int(lines["RXFLAGS"], 16) & 0x2000  # RX: the port's stack refuses unauthenticated writes too
    assert lines["UNPAIRED"] == "[] b'' ('advertise',)"  # nothing notified, its write not taken
    assert lines["TIMEOUT"] == "('disconnect', 1)"
    assert "REFUSED 2 ('disconnect', 2) [] b''" in out  # Just Works: not authenticated
    assert "REFUSED 3 ('disconnect', 3) [] b''" in out  # a failed pairing
    assert lines["NOPASSKEY"] == "('disconnect', 4)"
    assert lines["PASSKEY"] == "('passkey', 4, 3, 4711)"
    assert lines["SET"] == "True"
    assert lines["TRUSTED"] == r"[b'\x05abcd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'] b'\x05ok\x00'"
    assert lines["GET"] == "True True None None"
    assert lines["DELETE"] == "True None []"
    assert lines["CAP"] == "8 b'peer4' 8"  # the oldest forgotten first
