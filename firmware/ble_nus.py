# The radio half of the BLE link (ESP32 only: the unix port has no `bluetooth`). Nordic UART Service
# UUIDs so generic tools (nRF Connect, bleak) find it: RX written by the central, TX notified.
# All logic (chunking, pacing, reassembly) is in ble.py; the IRQ handler only records and forwards.
#
# Pairing: LE Secure Connections with MITM protection and bonding; the board "displays" the passkey
# provisioned at flash time (it has no display: the Pi's operator types the same digits). Only a
# central on an encrypted, authenticated and bonded link gets frames or is heard: RX needs an
# authenticated write, and the board disconnects a central that fails pairing or has not paired
# within _PAIR_MS. Bonds and the passkey are ble_bonds.py's, imported on first use.
import bluetooth
from micropython import const

from ble import BleStream
from fwutil import unload

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_MTU_EXCHANGED = const(21)
_IRQ_ENCRYPTION_UPDATE = const(28)
_IRQ_GET_SECRET = const(29)
_IRQ_PASSKEY_ACTION = const(31)
_IO_CAPABILITY_DISPLAY_ONLY = const(0)
_FLAG_WRITE_AUTHENTICATED = const(0x2000)
_PAIR_MS = const(30000)  # an unpaired central holds the board (not advertising) at most this long
_NUS = bluetooth.UUID("6E400001-B5A3-F393-E0A9-E50E24DCCA9E")
_RX = (bluetooth.UUID("6E400002-B5A3-F393-E0A9-E50E24DCCA9E"),
       bluetooth.FLAG_WRITE | bluetooth.FLAG_WRITE_NO_RESPONSE | _FLAG_WRITE_AUTHENTICATED)
_TX = (bluetooth.UUID("6E400003-B5A3-F393-E0A9-E50E24DCCA9E"), bluetooth.FLAG_NOTIFY)


class BleNus(BleStream):
    def __init__(self, name, root):
        super().__init__()
        self.root = root  # where the board's files are ("/" on an ESP32)
        self.ble = bluetooth.BLE()
        self.ble.active(True)
        self.ble.config(mtu=247, gap_name=name, bond=True, mitm=True, le_secure=True,
                        io=_IO_CAPABILITY_DISPLAY_ONLY)
        self.ble.irq(self._irq)
        ((self._h_rx, self._h_tx),) = self.ble.gatts_register_services(((_NUS, (_RX, _TX)),))
        self.ble.gatts_set_buffer(self._h_rx, 256, True)
        self._conn = None
        self._conn_ms = -1  # board time the central connected (-1: not seen by service() yet)
        self._adv = bytes((2, 1, 6, len(name) + 1, 9)) + name.encode()
        self.advertise()

    def advertise(self):
        self.ble.gap_advertise(100000, adv_data=self._adv)

    def _irq(self, event, data):
        if event == _IRQ_CENTRAL_CONNECT:
            self._conn = data[0]
            self._conn_ms = -1
            self.on_connect()  # not subscribed: nothing is sent until the link is trusted
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self._conn = None
            self.on_disconnect()
            self.advertise()
        elif event == _IRQ_GATTS_WRITE and data[1] == self._h_rx:
            part = self.ble.gatts_read(self._h_rx)  # read anyway: it empties the append buffer
            if self.subscribed:
                self.on_write(part)
        elif event == _IRQ_MTU_EXCHANGED:
            self.on_mtu(data[1])
        elif event == _IRQ_ENCRYPTION_UPDATE:
            # (conn, encrypted, authenticated, bonded, key_size): a passkey pairing or a bonded Pi's
            # reconnect; anything less (Just Works, a failed pairing) is shown the door.
            if data[1] and data[2] and data[3] and data[0] == self._conn:
                self.subscribed = True
            else:
                self.ble.gap_disconnect(data[0])
        elif event >= _IRQ_GET_SECRET:  # _IRQ_SET_SECRET (30), _IRQ_PASSKEY_ACTION too
            return self._secret(event, data)

    def _secret(self, event, data):
        # Only a pairing or a bonded reconnect asks: ble_bonds comes in for the call and goes again,
        # so neither its code nor the bonds stay in RAM. Nothing may leave the handler (the port
        # switches off a handler that raises: no more connections); a bond not read or kept fails
        # that pairing or reconnect, and the central pairs again.
        try:
            import ble_bonds

            return ble_bonds.answer(self.ble, self.root, event, data)
        except Exception:  # MemoryError, OSError
            if event == _IRQ_PASSKEY_ACTION:
                self.ble.gap_disconnect(data[0])
            return None
        finally:
            unload("ble_bonds")

    def service(self, now_ms):
        """Called from the main loop: send the notifications the pacing allows."""
        if self._conn is not None and not self.subscribed:
            if self._conn_ms < 0:
                self._conn_ms = now_ms
            elif now_ms - self._conn_ms > _PAIR_MS:
                self._conn_ms = now_ms  # asked again only after another _PAIR_MS
                self.ble.gap_disconnect(self._conn)
            return
        while self._conn is not None:
            chunk = self.next_notification(now_ms)
            if chunk is None:
                return
            try:
                self.ble.gatts_notify(self._conn, self._h_tx, chunk)
                self.notified(True)
            except OSError:
                self.notified(False)
