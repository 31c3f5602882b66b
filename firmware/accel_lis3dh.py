# LIS3DH driver (see accel.py for why this part and the sample format).
from accel import _Driver


class LIS3DH(_Driver):
    MODEL = "lis3dh"
    LSB_PER_G = 16000  # 1 mg/digit in 12-bit high-resolution mode, +-2 g, read as a 16-bit word
    WHO = 0x33
    # CTRL_REG1 ODR codes (normal/high-resolution mode); no 800 Hz, so 800 runs at 1344 Hz.
    RATES = ((100, 5), (200, 6), (400, 7), (1344, 9))

    def start(self, rate_hz):
        r, code = self._pick(rate_hz)
        self._wr(0x24, 0x80)  # CTRL_REG5: BOOT, back to defaults
        self._wr(0x20, (code << 4) | 0x07)  # CTRL_REG1: ODR, X/Y/Z on, not low-power
        self._wr(0x23, 0x88)  # CTRL_REG4: BDU, +-2 g, HR
        self._wr(0x24, 0x40)  # CTRL_REG5: FIFO_EN
        self._wr(0x2E, 0x00)  # FIFO_CTRL_REG: bypass empties the FIFO
        self._wr(0x2E, 0x80 | 16)  # stream mode, watermark 16
        self.rate_hz = r
        return r

    def read(self):
        """Drain the FIFO into scratch; returns the number of samples."""
        src = self._rd(0x2F)  # FIFO_SRC_REG: WTM, OVRN_FIFO, EMPTY, FSS[4:0]
        n = src & 0x1F
        if src & 0x40:
            self.overruns += 1
            n = 32
        if n:
            # 0x80 sets auto-increment; with the FIFO on, the address rolls over 0x2D -> 0x28.
            self.i2c.readfrom_mem_into(self.addr, 0xA8, self._views[n])
        return n
