# Register-level fake of the Analog Devices ADXL355 (see fakeaccel.py for what is modelled).
from micropython import const

from fakeaccel import FakeAccel

_FMT_ADXL = const(1)  # FIFO entry format, see fakeaccel._gen


class FakeADXL355(FakeAccel):
    """Analog Devices ADXL355: DEVID 0xAD/0x1D/0xED, 96-entry FIFO (32 x,y,z sets), 20-bit output.

    The FIFO data register does not auto-increment: each 3-byte read pops one axis entry, the x entry
    carries a marker bit, and reading an empty FIFO returns entries with the empty bit set."""

    WHO_REG = 0x00
    WHO = 0xAD
    SAMPLE_BYTES = 9
    FMT = _FMT_ADXL
    MASK = -1
    VMAX = 0x7FFFF
    COUNTS_PER_G = 256000  # 3.9 ug/LSB at +-2 g
    NOISE_UG_RTHZ = 22  # 22.5 ug/rtHz; the low-pass corner is ODR/4
    BW_DIV = 4

    def reset_regs(self):
        r = self.regs
        r[0x00] = 0xAD
        r[0x01] = 0x1D
        r[0x02] = 0xED
        r[0x03] = 0x01
        r[0x29] = 0x60  # FIFO_SAMPLES watermark
        r[0x2C] = 0x81  # RANGE: +-2 g
        r[0x2D] = 0x01  # POWER_CTL: standby

    def fifo_on(self):
        return True  # the FIFO always runs while measuring

    def read_into(self, reg, buf):
        n = len(buf)
        if reg == 0x11:
            # FIFO_DATA: whole samples pop; an empty FIFO reads entries with the empty bit (bit 1).
            got = min(n // 9, self.count) * 9
            self.pop_into(buf, got)
            for i in range(got, n):
                buf[i] = 0x02 if i % 3 == 2 else 0
            return
        if reg <= 0x05:
            st = 0
            if self.count:
                st |= 0x01
            if self.count >= self.DEPTH:
                st |= 0x02
            if self.overrun:
                st |= 0x04
            self.regs[0x04] = st
            self.regs[0x05] = self.count * 3
        for i in range(n):
            buf[i] = self.regs[(reg + i) & 0x3F]
        if reg <= 0x04 < reg + n:
            self.overrun = False  # FIFO_OVR clears when STATUS is read

    def write(self, reg, buf):
        for i in range(len(buf)):
            r = reg + i
            v = buf[i]
            if r == 0x2F:
                if v == 0x52:  # RESET code
                    self.power_cycle()
                continue
            self.regs[r] = v
            if r == 0x2D or r == 0x28:
                run = not (self.regs[0x2D] & 0x01)
                self.set_odr((4000000 >> (self.regs[0x28] & 0x0F)) if run else 0)
                self.clear_fifo()
