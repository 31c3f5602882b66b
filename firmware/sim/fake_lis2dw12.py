# Register-level fake of ST's LIS2DW12 (see fakeaccel.py for what is modelled).
from fakeaccel import FakeAccel


class FakeLIS2DW12(FakeAccel):
    """STMicro LIS2DW12: WHO_AM_I 0x44, 32-sample FIFO, 14-bit high-performance output."""

    WHO = 0x44
    MASK = -4  # 14-bit: the low 2 bits read 0
    COUNTS_PER_G = 16393  # 0.061 mg/LSB at +-2 g as a 16-bit left-justified word
    NOISE_UG_RTHZ = 90  # high-performance, low-noise on
    _ODR = (0, 12500, 12500, 25000, 50000, 100000, 200000, 400000, 800000, 1600000)

    def reset_regs(self):
        super().reset_regs()
        self.regs[0x21] = 0x04  # CTRL2: IF_ADD_INC

    def fifo_on(self):
        return self.regs[0x2E] >> 5

    def read_into(self, reg, buf):
        autoinc = self.regs[0x21] & 0x04
        n = len(buf)
        if reg == 0x28 and autoinc:
            self.pop_into(buf, n)
            return
        if reg == 0x2F:
            c = self.count
            v = c if c < 32 else 32
            if self.overrun:
                v |= 0x40
            if c >= (self.regs[0x2E] & 0x1F):
                v |= 0x80
            self.regs[0x2F] = v
        for i in range(n):
            buf[i] = self.regs[(reg + i) & 0x3F] if autoinc or i == 0 else self.regs[reg]

    def write(self, reg, buf):
        for i in range(len(buf)):
            r = reg + i
            v = buf[i]
            if r == 0x21 and v & 0x40:  # SOFT_RESET
                self.power_cycle()
                continue
            self.regs[r] = v
            if r == 0x20:
                code = v >> 4
                self.set_odr(self._ODR[code] if code < len(self._ODR) else 0)
            elif r == 0x2E:
                self.clear_fifo()
