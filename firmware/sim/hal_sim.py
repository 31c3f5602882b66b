# Simulated board: the HAL the firmware gets under the unix MicroPython interpreter (tests, the mock
# board, `liftwatch replay`).
#
# The car arrives as a *sim feed*: 12-byte records struct "<IhhhBB" (dt_us, ax_mg, ay_mg, az_mg,
# inputs, ctrl), sample-and-hold. The board's clock is the feed's time: wait_ms() consumes records up
# to the deadline, advancing the register-level fake accelerometer (fakeaccel.py) behind a fake I2C
# bus so the real driver reads a real-looking FIFO. A board therefore runs exactly as fast as its
# feed is written, and a file feed runs as fast as the CPU allows.
#
# ctrl values (sim control, unknown values ignored): 1 = crash (the firmware raises a RuntimeError
# as a bug would), 2 = power cut (hal.PowerCut: the process stops with no shutdown).
import gc
import os
import sys


from micropython import const

import fakeaccel
from lwproto import copy_into
from fwutil import TICKS_MASK
from hal import EDGE_LOG, BoardReset, PowerCut

CTRL_CRASH = const(1)
CTRL_POWER_CUT = const(2)
_REC = const(12)
_CHUNK_RECORDS = const(64)


class SimCrash(RuntimeError):
    """Injected by a feed record with ctrl=1: stands for a firmware bug."""


class SimI2C:
    """Fake I2C bus: devices by address, ESP32-style ENODEV for an absent address."""

    def __init__(self, *devices):
        self.devices = {}
        for d in devices:
            self.devices[d.addr] = d

    def scan(self):
        return sorted(self.devices)

    def _dev(self, addr):
        d = self.devices.get(addr)
        if d is None:
            raise OSError(19)  # ENODEV, as machine.I2C raises for a missing device
        return d

    def readfrom_mem_into(self, addr, reg, buf):
        self._dev(addr).read_into(reg, buf)

    def readfrom_mem(self, addr, reg, n):
        b = bytearray(n)
        self._dev(addr).read_into(reg, b)
        return bytes(b)

    def writeto_mem(self, addr, reg, buf):
        self._dev(addr).write(reg, buf)


class SimBoard:
    """A board whose time, car and links are simulated.

    feed: bytes-like, an iterator of bytes chunks (whole records), a path, or an open binary file.
    uart: None (output counted and discarded), a bytearray (fixed-size capture; ``uart_len`` bytes
    used, writes that do not fit fail as a full TX buffer would), or a path (a regular file gets
    frames appended; a pty or FIFO is written and read). fs_root: the host directory that stands for
    the board's flash."""

    def __init__(self, feed, uart=None, sensor="lis3dh", uid="0badc0ffee00", reset_cause="power_on",
                 fs_root=".", seed=1, noise_mg=0):
        import array

        self.sensor_model = sensor
        self.sensor = fakeaccel.make(sensor, seed, noise_mg) if sensor != "none" else None
        self.i2c = SimI2C(self.sensor) if self.sensor else SimI2C()
        self._uid = uid
        self._cause = reset_cause
        self.fs_root = fs_root.rstrip("/")
        self.t_us = 0
        self.ended = False
        self.boots = []  # causes of the reboots this board went through (in-process runner)
        # Inputs and their edge log, as the ESP32's pin IRQs fill it.
        self.inputs = 0
        self.edge_t = array.array("i", [0] * EDGE_LOG)
        self.edge_v = bytearray(EDGE_LOG)
        self.edge_count = 0
        # Watchdog in board time.
        self._wdt_ms = 0
        self._wdt_fed_us = 0
        # UART.
        self.uart_len = 0
        self.uart_bytes = 0
        self._uart_buf = None
        self._uart_file = None
        self._uart_poll = None
        self._rx = bytearray(0)
        self._rx_off = 0
        self._one = bytearray(1)
        if isinstance(uart, bytearray):
            self._uart_buf = uart
        elif uart:
            self._open_uart(uart)
        # Feed.
        self._chunk = bytearray(_CHUNK_RECORDS * _REC)
        self._buf = self._chunk
        self._off = 0
        self._end = 0
        self._feed_file = None
        self._feed_iter = None
        self._feed_step = _CHUNK_RECORDS * _REC
        self._next_t = 0
        self._rec = [0, 0, 1000, 0, 0]  # ax, ay, az, inputs, ctrl of the pending record
        if isinstance(feed, (bytes, bytearray, memoryview)):
            self._buf = feed
            self._end = len(feed) - len(feed) % _REC
        elif isinstance(feed, str):
            self._open_feed(open(feed, "rb"), feed)
        elif hasattr(feed, "readinto"):
            self._open_feed(feed, None)
        else:
            self._feed_iter = iter(feed)
        if self._load_next():
            # Before its first record the car is as that record says (no edge: nothing changed).
            r = self._rec
            self.inputs = r[3]
            if self.sensor:
                self.sensor.set_mg(r[0], r[1], r[2])
        else:
            self.ended = True

    @classmethod
    def from_env(cls):
        """The board the mock board and `liftwatch replay` describe through LIFTWATCH_SIM_*."""
        g = os.getenv
        feed = g("LIFTWATCH_SIM_FEED")
        if not feed:
            raise OSError("LIFTWATCH_SIM_FEED is not set: the simulated board has no car")
        return cls(feed, uart=g("LIFTWATCH_SIM_UART") or None, sensor=g("LIFTWATCH_SIM_SENSOR") or "lis3dh",
                   uid=g("LIFTWATCH_SIM_UID") or "0badc0ffee00",
                   reset_cause=g("LIFTWATCH_SIM_RESET_CAUSE") or "power_on",
                   fs_root=g("LIFTWATCH_SIM_FS") or ".", noise_mg=float(g("LIFTWATCH_SIM_NOISE_MG") or 0))

    # ---- feed -------------------------------------------------------------------------------------
    def _open_feed(self, f, path):
        self._feed_file = f
        if path is not None:
            try:
                if os.stat(path)[0] & 0o170000 != 0o100000:  # FIFO or pty: read record by record
                    self._feed_step = _REC
            except OSError:
                pass
        self._view = memoryview(self._chunk)[0 : self._feed_step]

    def _refill(self):
        # True when at least one whole record is buffered.
        if self._feed_file is not None:
            n = self._feed_file.readinto(self._view)
            self._buf = self._chunk
            self._off = 0
            self._end = (n or 0) - (n or 0) % _REC
            return self._end > 0
        if self._feed_iter is not None:
            for chunk in self._feed_iter:
                if len(chunk) >= _REC:
                    self._buf = chunk
                    self._off = 0
                    self._end = len(chunk) - len(chunk) % _REC
                    return True
            self._feed_iter = None
        return False

    def _load_next(self):
        if self._off + _REC > self._end and not self._refill():
            return False
        b = self._buf
        o = self._off
        self._off = o + _REC
        self._next_t = self.t_us + (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24))
        r = self._rec
        for i in range(3):
            v = b[o + 4 + 2 * i] | (b[o + 5 + 2 * i] << 8)
            r[i] = v - 0x10000 if v & 0x8000 else v
        r[3] = b[o + 10]
        r[4] = b[o + 11]
        return True

    def _apply(self):
        r = self._rec
        if self.sensor:
            self.sensor.set_mg(r[0], r[1], r[2])
        if r[3] != self.inputs:
            self.inputs = r[3]
            i = self.edge_count & (EDGE_LOG - 1)
            self.edge_t[i] = self.ticks_ms()
            self.edge_v[i] = r[3]
            self.edge_count += 1
        return r[4]

    def _ctrl(self, c):
        if c == CTRL_CRASH:
            raise SimCrash("crash injected by the sim feed")
        if c == CTRL_POWER_CUT:
            raise PowerCut()

    # ---- time -------------------------------------------------------------------------------------
    def ticks_ms(self):
        return (self.t_us // 1000) & TICKS_MASK

    def wait_ms(self, ms):
        """Let ms of board time pass; False when the feed has ended (the run is over)."""
        if self.ended:
            return False
        target = self.t_us + ms * 1000
        sensor = self.sensor
        while self._next_t <= target:
            if sensor:
                sensor.advance_to(self._next_t)
            self.t_us = self._next_t
            c = self._apply()
            more = self._load_next()  # first, so a reboot goes on with the next record
            if c:
                self._ctrl(c)
            if not more:
                self.ended = True
                return False
        if sensor:
            sensor.advance_to(target)
        self.t_us = target
        if self._wdt_ms and self.t_us - self._wdt_fed_us > self._wdt_ms * 1000:
            self.reset("wdt")
        return True

    # ---- watchdog, reset, identity ------------------------------------------------------------------
    def wdt_start(self, timeout_ms):
        self._wdt_ms = timeout_ms
        self._wdt_fed_us = self.t_us

    def wdt_feed(self):
        self._wdt_fed_us = self.t_us

    def wdt_park(self):
        """Ctrl-C: the chip's watchdog gets the long REPL timeout (hal_esp32.wdt_park); the mock
        board, whose real-time watchdog stands for the chip's, is told so."""
        if self._wdt_ms:
            self._wdt_ms = 0
            hooks = sys.modules.get("_mockboard")
            if hooks is not None:
                hooks.wdt_park()

    def reset(self, cause="hard"):
        """machine.reset(): under the mock board its ROM restarts this process; elsewhere the runner
        catches hal.BoardReset and starts the next boot."""
        m = sys.modules.get("machine")
        if m is not None and hasattr(m, "reset"):
            m.reset()
        raise BoardReset(cause)

    def rebooted(self, cause):
        """The firmware restarts on this board (in-process runner): the chip's state is new, the car's
        is not. A power loss also resets the accelerometer."""
        self.boots.append(cause)
        self._cause = cause
        self._wdt_ms = 0
        if cause == "power_on" and self.sensor:
            self.sensor.power_cycle()

    def reset_cause(self):
        return self._cause

    def uid_hex(self):
        return self._uid

    def path(self, name):
        return self.fs_root + "/" + name

    def mem_free(self):
        return gc.mem_free()

    def ble(self):
        return None  # no radio until set_transport(1) on a mock board with one (sim_ble.attach)

    def set_transport(self, transport):
        # 1: BLE on the mock board's virtual radio (sim_ble.py; its import fails without a radio)
        if transport == 1:
            try:
                import sim_ble
            except ImportError:
                return 0
            return sim_ble.attach(self)
        return 0

    def set_baud(self, baud):
        pass  # a pty or a file has no line rate; the link still paces frames at `baud` in board time

    def service(self, now_ms):
        pass  # nothing for the UART (sim_ble.attach puts the BLE link's hook here)

    # ---- UART -------------------------------------------------------------------------------------
    def _open_uart(self, path):
        try:
            mode = os.stat(path)[0] & 0o170000
        except OSError:
            mode = 0o100000  # not there yet: a capture file
        if mode == 0o100000:
            self._uart_file = open(path, "ab")
        else:
            import select

            self._uart_file = open(path, "r+b")
            self._uart_poll = select.poll()
            self._uart_poll.register(self._uart_file, select.POLLIN)

    def uart_write(self, buf, off, n):
        """Send buf[off:off+n]; False (nothing written) when the TX side cannot take them."""
        ub = self._uart_buf
        if ub is not None:
            end = self.uart_len + n
            if end > len(ub):
                return False
            copy_into(ub, self.uart_len, buf, off, n)
            self.uart_len = end
        elif self._uart_file is not None:
            self._uart_file.write(buf, off, n)
        self.uart_bytes += n
        return True

    def uart_flush(self):
        if self._uart_file is not None:
            try:
                self._uart_file.flush()
            except OSError:
                pass  # a pty has nothing to flush (EINVAL)

    def inject_rx(self, data):
        """Bytes the host sends (tests): read back by uart_readinto."""
        self._rx = bytearray(self._rx[self._rx_off :]) + data
        self._rx_off = 0

    def uart_readinto(self, buf):
        n = 0
        rx = self._rx
        while self._rx_off < len(rx) and n < len(buf):
            buf[n] = rx[self._rx_off]
            self._rx_off += 1
            n += 1
        p = self._uart_poll
        if p is not None:
            f = self._uart_file
            one = self._one
            while n < len(buf) and p.poll(0):
                if f.readinto(one) != 1:
                    break
                buf[n] = one[0]
                n += 1
        return n
