# Small helpers every board module shares: board-time arithmetic and allocation-free copies.
#
# Board time is milliseconds modulo 2**30 (what ticks_ms() gives on an ESP32, and what the wire
# protocol carries). time.ticks_diff cannot be used for it on the unix port, whose ticks period is
# 2**62, so the firmware does its own arithmetic here.
from micropython import const

import lwproto

TICKS_MASK = const(0x3FFFFFFF)
_TICKS_HALF = const(0x20000000)
# Viper reads ptr32 elements zero-extended on 64-bit ports and sign-extended on the ESP32: signed
# parameters handed to viper code through an array are stored plus this bias so both read the same.
# Viper code must only use constants below 2**30 (larger ones are heap objects on the ESP32).
BIAS = const(0x20000000)  # 2**29: a small int on every port, so viper code can use it


def tdiff(a, b):
    """a - b in board ms, correct across the 2**30 wrap (as time.ticks_diff on an ESP32)."""
    return ((a - b + _TICKS_HALF) & TICKS_MASK) - _TICKS_HALF


def tadd(a, d):
    return (a + d) & TICKS_MASK


def copy(dst, doff, src, soff, n):
    """dst[doff:doff+n] = src[soff:soff+n] without a slice (lwproto's viper copy, bounds-checked)."""
    lwproto.copy_into(dst, doff, src, soff, n)


def isqrt(n):
    """Integer square root (floor) by Newton's method: ints only, for figures computed once a second."""
    if n <= 0:
        return 0
    x = n
    y = (x + 1) >> 1
    while y < x:
        x = y
        y = (x + n // x) >> 1
    return x


def unload(name):
    """Drop a module imported for a rare job (config validation) so its code leaves the heap; the
    next import loads it again."""
    import sys

    sys.modules.pop(name, None)
