# ADXL355 driver (see accel.py for why this part and the sample format).
import micropython
from micropython import const

from accel import _Driver

_MAX_SAMPLES = const(32)


@micropython.viper
def _adxl_to_le(dst: ptr8, src: ptr8, n_entries: int) -> int:
    # Each 3-byte FIFO entry holds 20 bits big-endian, left-justified; its top 16 bits are the value
    # >> 4 (16000 counts per g) and become one int16 LE. Returns -1 if the x markers are misaligned.
    i = 0
    while i < n_entries:
        s = i * 3
        want = 1 if i % 3 == 0 else 0
        if (src[s + 2] & 1) != want:
            return -1
        dst[i * 2] = src[s + 1]
        dst[i * 2 + 1] = src[s]
        i += 1
    return n_entries


class ADXL355(_Driver):
    MODEL = "adxl355"
    LSB_PER_G = 16000  # 256000 LSB/g at 20 bits, +-2 g; we keep the top 16 bits
    # FILTER ODR_LPF codes: 4000 Hz >> code. No 400 or 800: they run at 500 and 1000 Hz.
    RATES = ((125, 5), (250, 4), (500, 3), (1000, 2), (2000, 1))

    def __init__(self, i2c, addr):
        super().__init__(i2c, addr)
        self.raw = bytearray(_MAX_SAMPLES * 9)
        mv = memoryview(self.raw)
        self._raw_views = [mv[0 : 9 * k] for k in range(_MAX_SAMPLES + 1)]
        self.misaligned = 0

    def start(self, rate_hz):
        r, code = self._pick(rate_hz)
        self._wr(0x2F, 0x52)  # RESET
        self._wr(0x2C, 0x81)  # RANGE: +-2 g (I2C high speed bit kept)
        self._wr(0x28, code)  # FILTER: no high-pass, ODR
        self._wr(0x2D, 0x00)  # POWER_CTL: measurement mode
        self.rate_hz = r
        return r

    def read(self):
        self.i2c.readfrom_mem_into(self.addr, 0x04, self._b2)  # STATUS, FIFO_ENTRIES
        if self._b2[0] & 0x04:
            self.overruns += 1
        n = self._b2[1] // 3
        if n > 32:
            n = 32
        if n:
            self.i2c.readfrom_mem_into(self.addr, 0x11, self._raw_views[n])
            if _adxl_to_le(self.scratch, self.raw, n * 3) < 0:
                # Lost alignment (a partial read): drop this burst, the next starts at an x entry.
                self.misaligned += 1
                return 0
        return n
