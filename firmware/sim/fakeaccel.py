# Register-level fakes of the accelerometers, for the simulated board (hal_sim) and the tests.
#
# Each fake answers the same registers the datasheet lists, with the same FIFO behaviour (depth,
# stream mode dropping the oldest sample, overrun flag, burst reads with address roll-over), and
# adds the part's own noise, so the real drivers in accel.py run unchanged against them. The car's
# acceleration comes from the sim feed in milli-g and is held until the next record (sample-and-
# hold); the fake samples it at its output data rate (ODR) in the board's virtual time.
#
# Only what the drivers and tests touch is modelled; other registers read back what was written.
import array

import micropython
from micropython import const

from fwutil import BIAS
from lwproto import copy_into

# Formats of a FIFO entry.
_FMT_LIS = const(0)  # one sample = 6 bytes, x/y/z int16 little-endian, left-justified
_FMT_ADXL = const(1)  # one sample = 3 entries of 3 bytes, 20-bit big-endian left-justified

# Generator state array layout (see _gen).
_G_WPOS = const(0)
_G_N = const(1)
_G_X = const(2)
_G_Y = const(3)
_G_Z = const(4)
_G_AMP = const(5)
_G_SEED = const(6)
_G_SIZE = const(7)
_G_FMT = const(8)
_G_MASK = const(9)
_G_MAX = const(10)


@micropython.viper
def _gen(fifo: ptr8, st: ptr32):
    # Writes st[_G_N] noisy samples of the held (x, y, z) into the FIFO ring from byte st[_G_WPOS].
    # Noise: two uniforms from a 30-bit LCG (constants below 2**30 so viper keeps them machine ints),
    # summed and scaled to +-amp: triangular, rms = amp / sqrt(6).
    wpos = st[0]
    n = st[1]
    amp = st[5]
    seed = st[6]
    size = st[7]
    fmt = st[8]
    mask = st[9]
    vmax = st[10] - 0x20000000
    vmin = 0 - vmax - 1
    k = 0
    while k < n:
        axis = 0
        while axis < 3:
            v = st[2 + axis] - 0x20000000
            seed = (seed * 1664525 + 1013904223) & 0x3FFFFFFF
            r = (seed >> 14) & 0xFFFF
            seed = (seed * 1664525 + 1013904223) & 0x3FFFFFFF
            r += (seed >> 14) & 0xFFFF
            v += ((r - 65536) * amp) >> 16
            if v > vmax:
                v = vmax
            if v < vmin:
                v = vmin
            v = v & mask
            if fmt == 0:
                fifo[wpos] = v & 0xFF
                fifo[wpos + 1] = (v >> 8) & 0xFF
                wpos += 2
            else:
                fifo[wpos] = (v >> 12) & 0xFF
                fifo[wpos + 1] = (v >> 4) & 0xFF
                marker = 1 if axis == 0 else 0
                fifo[wpos + 2] = ((v & 0xF) << 4) | marker
                wpos += 3
            if wpos >= size:
                wpos = 0
            axis += 1
        k += 1
    st[0] = wpos
    st[6] = seed


class FakeAccel:
    """What the three parts share: registers, a FIFO ring of samples, ODR timing and noise."""

    WHO_REG = 0x0F
    WHO = 0
    DEPTH = 32  # FIFO depth in samples
    SAMPLE_BYTES = 6
    FMT = _FMT_LIS
    MASK = -1
    VMAX = 32767
    NOISE_UG_RTHZ = 0  # datasheet noise density, micro-g per root-hertz
    BW_DIV = 2  # bandwidth = ODR / BW_DIV
    COUNTS_PER_G = 16000

    def __init__(self, addr, seed=1, noise_mg=0):
        self.addr = addr
        self.noise_mg = noise_mg  # extra white noise rms per axis (a noisier part, a vibrating roof)
        self.regs = bytearray(0x40)
        self.fifo = bytearray(self.DEPTH * self.SAMPLE_BYTES)
        self._size = len(self.fifo)
        self._st = array.array("i", [0] * 11)
        self._st[_G_SEED] = seed & 0x3FFFFFFF or 1
        self._st[_G_SIZE] = self._size
        self._st[_G_FMT] = self.FMT
        self._st[_G_MASK] = self.MASK
        self._st[_G_MAX] = self.VMAX + BIAS
        self.count = 0  # unread samples in the FIFO
        self.rpos = 0  # byte offset of the oldest unread sample
        self.overrun = False
        self.overruns = 0  # samples overwritten (test observability)
        self.odr_mhz = 0  # 0: powered down
        self._t0_us = 0
        self._k = 0  # samples produced since the ODR started
        self.now_us = 0
        self.set_mg(0, 0, 1000)
        self.reset_regs()

    # ---- the car side -----------------------------------------------------------------------
    def set_mg(self, ax, ay, az):
        cpg = self.COUNTS_PER_G
        st = self._st
        st[_G_X] = ax * cpg // 1000 + BIAS
        st[_G_Y] = ay * cpg // 1000 + BIAS
        st[_G_Z] = az * cpg // 1000 + BIAS

    def advance_to(self, t_us):
        """Produce the samples due up to board time t_us at the current ODR."""
        self.now_us = t_us
        odr = self.odr_mhz
        if not odr:
            return
        due = (t_us - self._t0_us) * odr // 1000000000 - self._k
        if due <= 0:
            return
        self._k += due
        if not self.fifo_on():
            due = 1  # bypass: the output registers hold the newest sample only
            self.count = 0
            self.rpos = 0
            self._st[_G_WPOS] = 0
        depth = self.DEPTH
        if due > depth:
            self.overruns += due - depth
            self.overrun = True
            due = depth
            self.count = depth  # the whole FIFO is rewritten below
        else:
            free = depth - self.count
            if due > free:
                lost = due - free
                self.overruns += lost
                self.overrun = True
                self.count -= lost
                self.rpos = (self.rpos + lost * self.SAMPLE_BYTES) % self._size
            self.count += due
        st = self._st
        st[_G_N] = due
        _gen(self.fifo, st)
        if self.count == depth:
            self.rpos = st[_G_WPOS]

    def set_odr(self, odr_mhz):
        self.odr_mhz = odr_mhz
        self._t0_us = self.now_us
        self._k = 0
        if odr_mhz:
            bw_hz = odr_mhz / 1000 / self.BW_DIV
            rms_mg = ((self.NOISE_UG_RTHZ * bw_hz**0.5 / 1000) ** 2 + self.noise_mg**2) ** 0.5
            rms = rms_mg * self.COUNTS_PER_G / 1000
            self._st[_G_AMP] = int(rms * 2.449 + 0.5)  # _gen's noise has rms = amp / sqrt(6)

    def clear_fifo(self):
        self.count = 0
        self.rpos = self._st[_G_WPOS]
        self.overrun = False

    def pop_into(self, buf, nbytes):
        """Burst read of FIFO bytes; samples past the newest read back as the newest (as the part's
        output registers do when drained)."""
        sb = self.SAMPLE_BYTES
        n = min((nbytes + sb - 1) // sb, self.count)
        if n:
            m = min(n * sb, nbytes)
            first = min(m, self._size - self.rpos)
            copy_into(buf, 0, self.fifo, self.rpos, first)
            if m > first:
                copy_into(buf, first, self.fifo, 0, m - first)
            self.rpos = (self.rpos + n * sb) % self._size
            self.count -= n
            self.overrun = False
        for i in range(n * sb, nbytes):
            buf[i] = 0

    def power_cycle(self):
        """Power-on state; each part's soft-reset command lands here too."""
        self.regs = bytearray(0x40)
        self.reset_regs()
        self.set_odr(0)
        self.clear_fifo()

    # ---- the bus side -----------------------------------------------------------------------
    def reset_regs(self):
        self.regs[self.WHO_REG] = self.WHO


def make(model, seed=1, noise_mg=0):
    """A fake part at its default I2C address: lis3dh 0x18, lis2dw12 0x19, adxl355 0x1D. Each part
    lives in its own module so a board loads only the one it simulates."""
    if model == "lis3dh":
        from fake_lis3dh import FakeLIS3DH

        return FakeLIS3DH(0x18, seed, noise_mg)
    if model == "lis2dw12":
        from fake_lis2dw12 import FakeLIS2DW12

        return FakeLIS2DW12(0x19, seed, noise_mg)
    if model == "adxl355":
        from fake_adxl import FakeADXL355

        return FakeADXL355(0x1D, seed, noise_mg)
    raise ValueError("unknown sensor model: " + str(model))
