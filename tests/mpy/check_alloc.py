# Runs under MicroPython: the sampling path's frames (VIB, STATE, HEARTBEAT) are encoded with
# FrameEncoder and the pack_* primitives without allocating.
# Usage: micropython -c "import lwproto; import check_alloc; check_alloc.main(10000)"
#
# Two independent checks over the same loop:
# 1. inside micropython.heap_lock() any allocation raises MemoryError at once;
# 2. with gc disabled, gc.mem_free() before and after must be equal (heap_lock would not notice
#    memory taken some other way, e.g. by a C function that allocates with the lock off).
# The last frame of each type is printed in hex so the host checks the loop made real frames.

import gc
import micropython
from binascii import hexlify

import lwproto as lw

_SAMPLES = bytearray(64 * 3 * 2)  # one VIB block, as the sampler's ring holds it
for _i in range(len(_SAMPLES)):
    _SAMPLES[_i] = (_i * 37 + 11) & 0xFF


def encode_vib(enc, seq, t_ms, first_index):
    body = enc.body
    off = enc.begin(lw.T_VIB, 263, seq, t_ms)
    off = lw.pack_array_header(body, off, 5)
    off = lw.pack_int(body, off, 400)
    off = lw.pack_int(body, off, 16384)
    off = lw.pack_int(body, off, first_index)
    off = lw.pack_int(body, off, 64)
    off = lw.pack_bin_from(body, off, _SAMPLES, 0, 384)
    return enc.finish(off)


def encode_state(enc, seq, t_ms, inputs):
    body = enc.body
    off = enc.begin(lw.T_STATE, 263, seq, t_ms)
    off = lw.pack_array_header(body, off, 4)
    off = lw.pack_int(body, off, t_ms)
    off = lw.pack_int(body, off, inputs)
    off = lw.pack_int(body, off, 1)
    off = lw.pack_int(body, off, 2)
    return enc.finish(off)


def encode_heartbeat(enc, seq, t_ms, uptime_s):
    body = enc.body
    off = enc.begin(lw.T_HEARTBEAT, 263, seq, t_ms)
    off = lw.pack_array_header(body, off, 7)
    off = lw.pack_int(body, off, uptime_s)
    off = lw.pack_int(body, off, 61234)
    off = lw.pack_int(body, off, 0)
    off = lw.pack_int(body, off, 2)
    off = lw.pack_int(body, off, 1)
    off = lw.pack_bool(body, off, True)
    off = lw.pack_bool(body, off, False)
    return enc.finish(off)


def run(enc, n, lengths):
    # lengths: preallocated array of the three last wire lengths; ints stay small (< 2**30)
    for i in range(n):
        seq = i & 0xFFFF
        t_ms = (1000 + 10 * i) & 0x3FFFFFFF
        kind = i % 3
        if kind == 0:
            lengths[0] = encode_vib(enc, seq, t_ms, (64 * i) & 0xFFFF)
        elif kind == 1:
            lengths[1] = encode_state(enc, seq, t_ms, i & 0x3F)
        else:
            lengths[2] = encode_heartbeat(enc, seq, t_ms, i)


def main(n):
    import array

    enc = lw.FrameEncoder()
    lengths = array.array("i", [0, 0, 0])
    run(enc, 30, lengths)  # warm-up: first calls may intern or cache

    gc.collect()
    micropython.heap_lock()
    try:
        run(enc, n, lengths)
        locked = "ok"
    except MemoryError:
        locked = "MemoryError"
    micropython.heap_unlock()

    gc.collect()
    gc.disable()
    before = gc.mem_free()
    run(enc, n, lengths)
    after = gc.mem_free()
    gc.enable()

    print("frames", n, "heap_lock", locked, "mem_free_delta", before - after)
    # one last frame of each type, for the host to decode
    for kind, encode in ((0, encode_vib), (1, encode_state), (2, encode_heartbeat)):
        m = encode(enc, n + kind, 5000, 7)
        print("frame", kind, hexlify(enc.wire[:m]).decode())
