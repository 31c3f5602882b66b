# LIS2DW12 driver (see accel.py for why this part and the sample format).
from accel import _Driver


class LIS2DW12(_Driver):
    MODEL = "lis2dw12"
    LSB_PER_G = 16393  # 0.244 mg/digit at 14 bits, +-2 g, read as a 16-bit word
    WHO = 0x44
    RATES = ((100, 5), (200, 6), (400, 7), (800, 8), (1600, 9))

    def start(self, rate_hz):
        r, code = self._pick(rate_hz)
        self._wr(0x21, 0x40)  # CTRL2: SOFT_RESET
        self._wr(0x21, 0x0C)  # CTRL2: BDU, IF_ADD_INC
        self._wr(0x20, (code << 4) | 0x04)  # CTRL1: ODR, high-performance mode
        self._wr(0x25, 0x04)  # CTRL6: BW ODR/2, +-2 g, LOW_NOISE
        self._wr(0x2E, 0x00)  # FIFO_CTRL: bypass empties the FIFO
        self._wr(0x2E, 0xC0 | 16)  # continuous (stream) mode, threshold 16
        self.rate_hz = r
        return r

    def read(self):
        v = self._rd(0x2F)  # FIFO_SAMPLES: FIFO_FTH, FIFO_OVR, Diff[5:0]
        n = v & 0x3F
        if v & 0x40:
            self.overruns += 1
        if n > 32:
            n = 32
        if n:
            self.i2c.readfrom_mem_into(self.addr, 0x28, self._views[n])
        return n
