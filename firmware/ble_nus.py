# The radio half of the BLE link (ESP32 only: the unix port has no `bluetooth`). Nordic UART Service
# UUIDs so generic tools (nRF Connect, bleak) find it: RX written by the central, TX notified.
# All logic (chunking, pacing, reassembly) is in ble.py; the IRQ handler only records and forwards.
import bluetooth
from micropython import const

from ble import BleStream

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_MTU_EXCHANGED = const(21)
_NUS = bluetooth.UUID("6E400001-B5A3-F393-E0A9-E50E24DCCA9E")
_RX = (bluetooth.UUID("6E400002-B5A3-F393-E0A9-E50E24DCCA9E"), bluetooth.FLAG_WRITE | bluetooth.FLAG_WRITE_NO_RESPONSE)
_TX = (bluetooth.UUID("6E400003-B5A3-F393-E0A9-E50E24DCCA9E"), bluetooth.FLAG_NOTIFY)


class BleNus(BleStream):
    def __init__(self, name):
        super().__init__()
        self.ble = bluetooth.BLE()
        self.ble.active(True)
        self.ble.config(mtu=247, gap_name=name)
        self.ble.irq(self._irq)
        ((self._h_rx, self._h_tx),) = self.ble.gatts_register_services(((_NUS, (_RX, _TX)),))
        self.ble.gatts_set_buffer(self._h_rx, 256, True)
        self._conn = None
        self._adv = bytes((2, 1, 6, len(name) + 1, 9)) + name.encode()
        self.advertise()

    def advertise(self):
        self.ble.gap_advertise(100000, adv_data=self._adv)

    def _irq(self, event, data):
        if event == _IRQ_CENTRAL_CONNECT:
            self._conn = data[0]
            self.on_connect()
            self.subscribed = True  # NUS centrals subscribe at once; a notify before that is dropped
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self._conn = None
            self.on_disconnect()
            self.advertise()
        elif event == _IRQ_GATTS_WRITE and data[1] == self._h_rx:
            self.on_write(self.ble.gatts_read(self._h_rx))
        elif event == _IRQ_MTU_EXCHANGED:
            self.on_mtu(data[1])

    def service(self, now_ms):
        """Called from the main loop: send the notifications the pacing allows."""
        while self._conn is not None:
            chunk = self.next_notification(now_ms)
            if chunk is None:
                return
            try:
                self.ble.gatts_notify(self._conn, self._h_tx, chunk)
                self.notified(True)
            except OSError:
                self.notified(False)
