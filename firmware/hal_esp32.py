# The ESP32 HAL: the only module that imports `machine`. Default board wiring (docs/firmware.md):
#   I2C0  SCL GPIO22, SDA GPIO21, 400 kHz   accelerometer (ADXL355 / LIS2DW12 / LIS3DH)
#   UART2 TX GPIO17, RX GPIO16              link to the Pi (921600 baud 8N1 by default)
#   inputs, all active low (contact or open-collector to GND, pulled up):
#     door_closed GPIO25, zone_up GPIO26, zone_dn GPIO27, presence GPIO32, inspection GPIO33,
#     alarm_button GPIO34 (input-only pin: external 10k pull-up),
#     mains GPIO35 (input-only pin: external 10k pull-up; opto-isolated sense of the car's mains rail)
import binascii
import gc
import time

import machine

from hal import EDGE_LOG

INPUT_PINS = (25, 26, 27, 32, 33, 34, 35)  # bit order of the input bitmask
WDT_PARK_MS = 1800000  # 30 min at the REPL after Ctrl-C (flashing, calibration by hand)
_CAUSES = {machine.PWRON_RESET: "power_on", machine.HARD_RESET: "hard", machine.WDT_RESET: "wdt",
           machine.SOFT_RESET: "soft", machine.DEEPSLEEP_RESET: "soft"}


class Esp32Board:
    def __init__(self, baud=921600):
        import array

        self.i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21), freq=400000)
        self.uart = machine.UART(2, baudrate=baud, tx=17, rx=16, txbuf=4096, rxbuf=1024, timeout=0)
        self.edge_t = array.array("i", [0] * EDGE_LOG)
        self.edge_v = bytearray(EDGE_LOG)
        self.edge_count = 0
        self._pins = []
        for p in INPUT_PINS:
            pin = machine.Pin(p, machine.Pin.IN, machine.Pin.PULL_UP if p < 34 else None)
            self._pins.append(pin)
        self.inputs = self._levels()
        self._edge_cb = self._edge  # bound once: an IRQ must not allocate a bound method
        for pin in self._pins:
            pin.irq(self._edge_cb, machine.Pin.IRQ_RISING | machine.Pin.IRQ_FALLING)
        self._wdt = None
        self._ble = None
        self._ble_service = None
        self._cause = _CAUSES.get(machine.reset_cause(), "hard")

    def _levels(self):
        m = 0
        bit = 1
        for pin in self._pins:
            if not pin.value():
                m |= bit
            bit <<= 1
        return m

    def _edge(self, _pin):
        # Pin IRQ: record tick and levels in the preallocated log; the loop debounces (inputs.py).
        v = self._levels()
        i = self.edge_count & (EDGE_LOG - 1)
        self.edge_t[i] = time.ticks_ms()
        self.edge_v[i] = v
        self.edge_count += 1
        self.inputs = v

    def ticks_ms(self):
        return time.ticks_ms()  # wraps at 2**30 on the ESP32, as board time does

    def wait_ms(self, ms):
        time.sleep_ms(ms)
        return True

    def wdt_start(self, timeout_ms):
        self._wdt = machine.WDT(timeout=timeout_ms)

    def wdt_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def wdt_park(self):
        # machine.WDT cannot be stopped, and it keeps running at the REPL and across soft resets:
        # after Ctrl-C a technician flashing the board would be reset mid-copy after wdt_ms. The
        # ESP32 port re-configures the task watchdog when WDT() is called again (esp_task_wdt_
        # reconfigure), so give the REPL WDT_PARK_MS; a board left at the REPL still comes back.
        if self._wdt is not None:
            try:
                self._wdt = machine.WDT(timeout=WDT_PARK_MS)
            except (OSError, ValueError):
                pass  # a port that cannot re-configure: keep feeding what there is
            self._wdt.feed()

    def set_baud(self, baud):
        self.uart.init(baudrate=baud)

    def uart_write(self, buf, off, n):
        self.uart.write(buf, off, n)  # the link paces frames so the 4 KiB TX buffer never fills
        return True

    def uart_readinto(self, buf):
        return self.uart.readinto(buf) or 0

    def uart_flush(self):
        self.uart.flush()

    def reset(self, cause="hard"):
        machine.reset()

    def reset_cause(self):
        return self._cause

    def uid_hex(self):
        return binascii.hexlify(machine.unique_id()).decode()

    def path(self, name):
        return "/" + name

    def mem_free(self):
        return gc.mem_free()

    def set_transport(self, transport):
        """0: frames over UART2; 1: over BLE (the same byte stream, see ble.py). Returns the one in use."""
        if transport == 1:
            b = self.ble()
            if b is not None:
                self.uart_write = b.uart_write  # instance attributes: bound once, no allocation per frame
                self.uart_readinto = b.uart_readinto
                self._ble_service = b.service
                return 1
        return 0

    def service(self, now_ms):
        """Main-loop hook: BLE notifications the pacing allows (nothing to do for the UART)."""
        if self._ble_service is not None:
            self._ble_service(now_ms)

    def ble(self):
        """The BLE link (Nordic UART Service), started on first use; None without a radio."""
        if self._ble is None:
            try:
                from ble_nus import BleNus
            except ImportError:
                return None
            self._ble = BleNus("liftwatch-" + self.uid_hex()[-6:], self.path(""))
        return self._ble
