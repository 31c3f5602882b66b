# Register-level fake of ST's LIS3DH (see fakeaccel.py for what is modelled).
from fakeaccel import FakeAccel


class FakeLIS3DH(FakeAccel):
    """STMicro LIS3DH: WHO_AM_I 0x33, 32-sample FIFO, 12-bit high-resolution output left-justified."""

    WHO = 0x33
    MASK = -16  # 12-bit in HR mode: the low 4 bits read 0
    NOISE_UG_RTHZ = 220
    _ODR = (0, 1000, 10000, 25000, 50000, 100000, 200000, 400000, 1600000, 1344000)

    def reset_regs(self):
        super().reset_regs()
        self.regs[0x20] = 0x07  # CTRL_REG1: power-down, axes enabled

    def fifo_on(self):
        return (self.regs[0x24] & 0x40) and (self.regs[0x2E] >> 6)

    def read_into(self, reg, buf):
        autoinc = reg & 0x80
        reg &= 0x7F
        n = len(buf)
        if reg == 0x28 and autoinc:
            # Burst from OUT_X_L: with the FIFO on, the address rolls over 0x2D -> 0x28 (AN3308).
            self.pop_into(buf, n)
            return
        if reg == 0x2F:
            self.regs[0x2F] = self._fifo_src()
        for i in range(n):
            buf[i] = self.regs[(reg + i) & 0x3F] if autoinc or i == 0 else self.regs[reg]

    def _fifo_src(self):
        c = self.count
        src = 0x20 if c == 0 else 0
        if self.overrun:
            src |= 0x40
        if c > (self.regs[0x2E] & 0x1F):
            src |= 0x80
        return src | (31 if c >= 32 else c)

    def write(self, reg, buf):
        reg &= 0x7F
        for i in range(len(buf)):
            r = reg + i
            v = buf[i]
            if r == 0x24 and v & 0x80:  # CTRL_REG5 BOOT: reload trimming, registers to defaults
                self.power_cycle()
                continue
            self.regs[r] = v
            if r == 0x20:
                self.set_odr(self._ODR[v >> 4] if (v >> 4) < len(self._ODR) and v & 7 else 0)
            elif r == 0x2E or r == 0x24:
                self.clear_fifo()  # changing the FIFO mode empties it (bypass resets it)
