# The mock board's `bluetooth` module: MicroPython's BLE API, as the ESP32 port's NimBLE binding
# offers it, for firmware running under the unix port (which has no radio). The radio is virtual: a
# Bumble host and controller in the mock board's parent (liftwatch.hil.mockboard.radio) on a
# simulated link, reached over the unix socket named by LIFTWATCH_SIM_BLE. Everything the firmware
# sees on the air side (connections, ATT writes, MTU exchange, notifications, disconnects) comes from
# that real Bluetooth stack; this module only carries calls there and events back.
#
# For a board with a radio the parent starts this file in place of board_rom.py: it registers itself as
# `bluetooth` and then boots the ROM. IRQs: the port
# runs the handler from its scheduler between bytecodes; here they are delivered once per loop pass
# (firmware/sim/sim_ble.py calls `bluetooth._irqs()`, a mock-only hook, before the link's
# notifications), and while gatts_notify waits for a free buffer. Buffers: the controller has a few
# ACL buffers; the parent returns one credit per notification the link has carried, and
# gatts_notify without a credit raises OSError(ENOMEM)
# as NimBLE does when its mbufs are spent.
#
# Messages on the socket, both ways: type (1 byte), length (u16 LE), body. Board -> radio: A active,
# G config (key=value), S services (text: see gatts_register_services), V advertise (interval_us u32,
# adv_data), T notify (conn u16, handle u16, data), D disconnect (conn u16). Radio -> board: a the
# address (6 bytes), h handles (u16 each), c connect / d disconnect (conn u16, addr_type, addr 6),
# w write (conn u16, handle u16, data), m MTU (conn u16, mtu u16), k credits (u8). Pairing (SMP runs in
# the radio; what NimBLE asks the application, the firmware answers): board -> radio P passkey (conn
# u16, action u8, passkey u32), R the IRQ handler's answer to g/s (u8 1 + value, or u8 0 for None);
# radio -> board e encryption update (conn u16, encrypted, authenticated, bonded, key_size: u8 each),
# p passkey action (conn u16, action u8, passkey u32), g get secret (sec_type u8, index u16, key:
# the rest, absent for None), s set secret (sec_type u8, key length u8, key, value: the rest, absent
# for None, after a u8 flag). Keys and values reach the handler as memoryviews valid for the call only,
# as on the port.
import os
import select
import socket
import struct

from micropython import const

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_MTU_EXCHANGED = const(21)
_IRQ_ENCRYPTION_UPDATE = const(28)
_IRQ_GET_SECRET = const(29)
_IRQ_SET_SECRET = const(30)
_IRQ_PASSKEY_ACTION = const(31)
_ENOMEM = const(12)
_DEFAULT_VALUE_BYTES = const(20)  # what NimBLE gives a characteristic until gatts_set_buffer
_RX = bytearray(1024)  # a whole radio message fits (the largest: a write of an ATT MTU of 517)
_RX_VIEW = memoryview(_RX)


class UUID:
    """bluetooth.UUID: a 16-bit int or a 128-bit string, compared by value."""

    def __init__(self, value):
        self._v = ("%04X" % value) if isinstance(value, int) else value.upper()

    def __eq__(self, other):
        return isinstance(other, UUID) and other._v == self._v

    def __hash__(self):
        return hash(self._v)

    def __str__(self):
        return self._v

    def __repr__(self):
        return "UUID(%s)" % (("0x" + self._v) if len(self._v) == 4 else repr(self._v))


class _BLE:
    # bluetooth.BLE: one per board (BLE() returns the same object, as on the port).
    def __init__(self):
        self._sock = None
        self._poll = None
        self._handler = None
        self._active = False
        self._addr = b"\x00" * 6
        self._mtu = 23
        self._name = "MPY NIMBLE"
        self._values = {}  # value handle -> [bytearray, used, append]
        self._credits = 0
        self._rxn = 0  # bytes of _RX held (a message not yet whole)
        self._replies = []

    # ---- the socket to the radio ----------------------------------------------------------------
    def _send(self, kind, body=b""):
        if self._sock is None:  # the radio went away with the mock board
            return
        msg = memoryview(struct.pack("<BH", ord(kind), len(body)) + body)
        while len(msg):  # non-blocking socket: a full socket buffer takes part of it
            n = self._sock.write(msg)
            if n:
                msg = msg[n:]
            else:
                self._poll.poll(10)

    def _pump(self, wait_ms=0):
        # Read what the radio sent and act on it: IRQs to the handler, credits, replies. Returns
        # False once the radio is gone (the mock board is stopping). The receive buffer was made
        # with the ROM, before the firmware cut the heap into small pieces (as the port's is C).
        if self._sock is None:
            return False
        if not self._poll.poll(wait_ms):
            return True
        rx = _RX
        got = self._sock.readinto(_RX_VIEW[self._rxn :])
        if got is None:
            return True  # woken for nothing
        if not got:
            self._sock = None
            return False
        end = self._rxn + got
        off = 0
        while end - off >= 3:
            kind, n = struct.unpack_from("<BH", rx, off)
            if end - off < 3 + n:
                break
            self._event(chr(kind), off + 3, n)
            off += 3 + n
        rx[0 : end - off] = rx[off:end]
        self._rxn = end - off
        return True

    def _await(self, kind):
        while True:
            for r in self._replies:
                if r[0] == kind:
                    self._replies.remove(r)
                    return r[1]
            if not self._pump(1000):
                raise OSError(19)  # ENODEV: no radio

    def _event(self, kind, at, n):
        rx = _RX
        if kind in "ah":
            self._replies.append((kind, bytes(rx[at : at + n])))
        elif kind == "k":
            self._credits += rx[at]
        elif kind == "w":
            conn, handle = struct.unpack_from("<HH", rx, at)
            v = self._values.get(handle)
            if v is not None:
                buf, used, append = v
                start = used if append else 0
                k = min(n - 4, len(buf) - start)  # NimBLE truncates to the buffer
                buf[start : start + k] = _RX_VIEW[at + 4 : at + 4 + k]
                v[1] = start + k
            self._irq(_IRQ_GATTS_WRITE, (conn, handle))
        elif kind in "cd":
            conn, addr_type = struct.unpack_from("<HB", rx, at)
            self._irq(_IRQ_CENTRAL_CONNECT if kind == "c" else _IRQ_CENTRAL_DISCONNECT,
                      (conn, addr_type, bytes(rx[at + 3 : at + 9])))
        elif kind == "m":
            self._irq(_IRQ_MTU_EXCHANGED, struct.unpack_from("<HH", rx, at))
        elif kind == "e":
            self._irq(_IRQ_ENCRYPTION_UPDATE, struct.unpack_from("<HBBBB", rx, at))
        elif kind == "p":
            self._irq(_IRQ_PASSKEY_ACTION, struct.unpack_from("<HBI", rx, at))
        elif kind == "g":
            sec_type, index = struct.unpack_from("<BH", rx, at)
            key = _RX_VIEW[at + 3 : at + n] if n > 3 else None
            self._answer(self._irq(_IRQ_GET_SECRET, (sec_type, index, key)))
        elif kind == "s":
            sec_type, k = rx[at], rx[at + 1]
            has_value = rx[at + 2 + k]
            value = _RX_VIEW[at + 3 + k : at + n] if has_value else None
            self._answer(self._irq(_IRQ_SET_SECRET, (sec_type, _RX_VIEW[at + 2 : at + 2 + k], value)))

    def _answer(self, result):
        # NimBLE waits for the handler's return value; the radio waits for this reply.
        if result is None or result is False:
            self._send("R", b"\x00")
        else:
            self._send("R", b"\x01" + (b"" if result is True else bytes(result)))

    def _irq(self, event, data):
        if self._handler is not None:
            return self._handler(event, data)
        return None

    # ---- bluetooth.BLE ----------------------------------------------------------------------------
    def active(self, *state):
        if state and bool(state[0]) != self._active:
            if state[0] and self._sock is None:
                path = os.getenv("LIFTWATCH_SIM_BLE")
                if not path:
                    raise OSError(19)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(struct.pack("H", socket.AF_UNIX) + path.encode() + b"\x00")
                # non-blocking: a stream's readinto() would wait for the whole buffer to fill
                s.setblocking(False)
                self._sock = s
                self._poll = select.poll()
                self._poll.register(s, select.POLLIN)
            self._active = bool(state[0])
            self._send("A", b"\x01" if self._active else b"\x00")
            if self._active:
                self._addr = self._await("a")
        return self._active

    def config(self, *param, **kw):
        if param:
            key = param[0]
            if key == "mac":
                return (0, self._addr)
            if key == "mtu":
                return self._mtu
            if key == "gap_name":
                return self._name
            raise ValueError("unknown config param")
        for key, value in kw.items():
            if key == "mtu":
                self._mtu = value
            elif key == "gap_name":
                self._name = value
            self._send("G", ("%s=%s" % (key, value)).encode())

    def irq(self, handler):
        self._handler = handler

    def gatts_register_services(self, services_definition):
        # Text the radio parses: services separated by ";", a service's UUID then its characteristics
        # separated by ",", each "uuid/flags".
        parts = []
        for uuid, chars in services_definition:
            parts.append(",".join([str(uuid)] + ["%s/%d" % (str(c[0]), c[1]) for c in chars]))
        self._send("S", ";".join(parts).encode())
        body = self._await("h")
        handles = struct.unpack("<%dH" % (len(body) // 2), body)
        out = []
        i = 0
        for _, chars in services_definition:
            out.append(tuple(handles[i : i + len(chars)]))
            i += len(chars)
        for h in handles:
            self._values[h] = [bytearray(_DEFAULT_VALUE_BYTES), 0, False]
        return tuple(out)

    def gatts_set_buffer(self, value_handle, len_bytes, append=False):
        self._values[value_handle] = [bytearray(len_bytes), 0, bool(append)]

    def gatts_read(self, value_handle):
        buf, used, append = self._values[value_handle]
        if append:
            self._values[value_handle][1] = 0  # an append buffer is emptied by reading it
        return bytes(buf[:used])

    def gatts_write(self, value_handle, data, send_update=False):
        v = self._values[value_handle]
        if len(data) > len(v[0]):
            v[0] = bytearray(len(data))
        v[0][: len(data)] = data
        v[1] = len(data)

    def gatts_notify(self, conn_handle, value_handle, data=None):
        if data is None:
            data = self.gatts_read(value_handle)
        if not self._credits:
            self._pump()
        if not self._credits or self._sock is None:
            raise OSError(_ENOMEM)
        self._credits -= 1
        self._send("T", struct.pack("<HH", conn_handle, value_handle) + bytes(data))

    def gap_advertise(self, interval_us, adv_data=None, *, resp_data=None, connectable=True):
        self._send("V", struct.pack("<I", interval_us or 0) + bytes(adv_data or b""))

    def gap_passkey(self, conn_handle, action, passkey):
        self._send("P", struct.pack("<HBI", conn_handle, action, passkey))

    def gap_disconnect(self, conn_handle):
        self._send("D", struct.pack("<H", conn_handle))
        return True


_ble = None


def _the_ble():
    global _ble
    if _ble is None:
        _ble = _BLE()
    return _ble


class _Bluetooth:
    # What the firmware imports as `bluetooth` (the ROM puts an instance in sys.modules).
    FLAG_READ = 0x0002
    FLAG_WRITE_NO_RESPONSE = 0x0004
    FLAG_WRITE = 0x0008
    FLAG_NOTIFY = 0x0010
    FLAG_INDICATE = 0x0020
    UUID = UUID
    BLE = staticmethod(_the_ble)
    _irqs = staticmethod(lambda: _ble is not None and _ble._active and _ble._pump())  # sim_ble's hook


if __name__ == "__main__":
    # Started by the mock board for a board with a radio, in place of its ROM: `bluetooth` is built in
    # on the port, so it is there before the ROM boots, which then runs as for any board.
    import sys

    sys.modules["bluetooth"] = _Bluetooth()
    import board_rom  # noqa: F401 - boots the board (board_rom.py runs at import)
