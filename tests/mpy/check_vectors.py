# Runs under MicroPython (unix port, -X heapsize=96k): checks lwproto against protocol/vectors/.
# Usage: micropython -c "import lwproto; import check_vectors; check_vectors.main('<vectors dir>')" with this
# folder on MICROPYPATH (tests/test_lwproto_micropython.py does that). lwproto is imported first so
# that, run from source, it is compiled while the heap is still in one piece: compiling lwproto.py
# (viper included) needs most of a 96 KiB heap; a board would carry it as .mpy or frozen.
#
# Encode: pack_into and FrameEncoder (and for VIB the allocation-free primitives) must produce the
# vector bytes. Decode: unpack and FrameDecoder must return the vector's header and object. Damaged
# frames: FrameDecoder must raise ProtocolError with the vector's reason.
#
# Two things MicroPython cannot reproduce byte for byte, handled explicitly:
# - dict order: MicroPython dicts do not keep insertion order, so a map is packed in another key
#   order. Cases with maps are checked by length and by decoding what was packed.
# - float text: MicroPython's float parser is not correctly rounded ("9.80665" is one ulp off), so
#   objects are encoded from the vector's own msgpack bytes (decoded by unpack) after checking the
#   JSON object equals them (floats to 1e-6 relative).
# The files are streamed one case per line (see generate.py) straight into json.load.

import sys
import gc
from binascii import hexlify, unhexlify

import io
import json

import lwproto as lw

failures = []
counts = {}


def fail(name, what):
    failures.append(name + ": " + what)
    print("FAIL", name, what)


def count(section):
    counts[section] = counts.get(section, 0) + 1


class _Line(io.IOBase):
    """The rest of the current line of ``f`` as a stream for json.load, without the comma that
    ends a case line, so no whole line ever has to be in RAM (the longest is ~8 KB, more than the
    largest free block of a 96 KiB heap after lwproto.py is compiled)."""

    def __init__(self, f):
        self._f = f
        self._one = bytearray(1)
        self._pending = -1
        self.ended = False

    def _next(self):
        if self._pending >= 0:
            b = self._pending
            self._pending = -1
            return b
        return self._one[0] if self._f.readinto(self._one) else -1

    def readinto(self, buf):
        if self.ended:
            return 0
        b = self._next()
        if b == 0x2C:  # ",": the end of a case line if a newline follows
            nxt = self._next()
            if nxt == 10 or nxt < 0:
                b = nxt
            else:
                self._pending = nxt
        if b == 10 or b < 0:
            self.ended = True
            return 0
        buf[0] = b
        return 1


def cases(path):
    """(meta, case) for each case line; see generate.py for the layout."""
    meta = None
    with open(path, "rb") as f:
        head = bytearray(9)
        while f.readinto(head) == 9:
            line = _Line(f)
            if head == b'{"meta": ':
                meta = json.load(line)
            elif head[0] == 0x7B:  # "{": a case
                # put the 9 bytes back in front: json.load must see the whole object
                yield meta, json.load(_Prefixed(head, line))
            while not line.ended:  # the rest of a line that is no case ('"cases": [', ']}')
                line.readinto(head)
            gc.collect()


class _Prefixed(io.IOBase):
    def __init__(self, prefix, rest):
        self._prefix = prefix
        self._i = 0
        self._rest = rest

    def readinto(self, buf):
        if self._i < len(self._prefix):
            buf[0] = self._prefix[self._i]
            self._i += 1
            return 1
        return self._rest.readinto(buf)


def from_json(obj):
    if isinstance(obj, dict):
        if len(obj) == 1 and "hex" in obj:
            return unhexlify(obj["hex"])
        out = {}
        for k in obj:
            out[k] = from_json(obj[k])
        return out
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    return obj


def has_map(obj):
    if isinstance(obj, dict):
        return True
    if isinstance(obj, list):
        for v in obj:
            if has_map(v):
                return True
    return False


def same(a, b):
    """Equal, floats to 1e-6 relative (the JSON text went through MicroPython's float parser)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= 1e-6 * max(abs(a), abs(b))
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        for i in range(len(a)):
            if not same(a[i], b[i]):
                return False
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        if len(a) != len(b):
            return False
        for k in a:
            if k not in b or not same(a[k], b[k]):
                return False
        return True
    binary = (bytes, bytearray, memoryview)  # a decoded bin is a view of the frame (lwproto.unpack)
    if type(a) in binary and type(b) in binary:
        return bytes(a) == bytes(b)
    return type(a) is type(b) and a == b


BUF = bytearray(2048)


def check_pack(name, obj, expect, single=False):
    """pack_into(obj) == expect; with maps: same length and it decodes back to obj."""
    n = lw.pack_into(BUF, 0, obj, single)
    got = bytes(BUF[:n])
    if has_map(obj):
        if n != len(expect):
            fail(name, "packed length %d != %d" % (n, len(expect)))
        back, end = lw.unpack(BUF, 0, n)
        if end != n or not same(back, obj):
            fail(name, "map payload does not decode back")
    elif got != expect:
        fail(name, "packed %s != %s" % (hexlify(got), hexlify(expect)))


def reference_object(name, case_obj, packed):
    obj, end = lw.unpack(packed, 0, len(packed))
    if end != len(packed):
        fail(name, "unpack stopped at %d of %d" % (end, len(packed)))
    if not same(obj, from_json(case_obj)):
        fail(name, "unpack %r != vector object" % (obj,))
    return obj


def encode_frame(enc, header, payload):
    off = enc.begin(header["type"], header["boot_id"], header["seq"], header["t_ms"])
    enc.body[2] |= header["flags"]
    n = enc.finish(lw.pack_into(enc.body, off, payload))
    return bytes(enc.wire[:n])


def encode_vib_with_primitives(enc, header, payload):
    rate_hz, lsb_per_g, first_index, n_samples, samples = payload
    off = enc.begin(lw.T_VIB, header["boot_id"], header["seq"], header["t_ms"])
    off = lw.pack_array_header(enc.body, off, 5)
    off = lw.pack_int(enc.body, off, rate_hz)
    off = lw.pack_int(enc.body, off, lsb_per_g)
    off = lw.pack_int(enc.body, off, first_index)
    off = lw.pack_int(enc.body, off, n_samples)
    off = lw.pack_bin_from(enc.body, off, samples, 0, len(samples))
    n = enc.finish(off)
    return bytes(enc.wire[:n])


def check_frames(path):
    coders = None  # by sender: (plain encoder, plain decoder, tagged encoder, tagged decoder)
    for meta, case in cases(path):
        name = case["name"]
        if coders is None:
            key = unhexlify(meta["test_key_hex"])
            coders = {}
            for who, sender in (("board", lw.FROM_BOARD), ("host", lw.FROM_HOST)):
                coders[who] = (lw.FrameEncoder(sender=sender), lw.FrameDecoder(sender=sender),
                               lw.FrameEncoder(key, sender=sender), lw.FrameDecoder(key, sender=sender))
        plain_enc, plain_dec, tagged_enc, tagged_dec = coders[case["sender"]]
        h = case["header"]
        packed = unhexlify(case["msgpack_hex"])
        payload = reference_object(name, case["payload"], packed)
        check_pack(name, payload, packed)
        for enc, dec, field, flags in ((plain_enc, plain_dec, "framed_hex", h["flags"]),
                                       (tagged_enc, tagged_dec, "tagged_hex", case["tagged_flags"])):
            wire = unhexlify(case[field])
            got = encode_frame(enc, h, payload)
            if has_map(payload):
                if len(got) != len(wire):
                    fail(name, field + " length %d != %d" % (len(got), len(wire)))
                if dec.decode(got, len(got) - 1)[5] != payload:
                    fail(name, field + " re-decode differs")
            elif got != wire:
                fail(name, field + " encode differs")
            if h["type"] == lw.T_VIB and encode_vib_with_primitives(enc, h, payload) != wire:
                fail(name, field + " primitives encode differs")
            mtype, fl, boot_id, seq, t_ms, obj = dec.decode(wire, len(wire) - 1)
            if (mtype, fl, boot_id, seq, t_ms) != (h["type"], flags, h["boot_id"], h["seq"], h["t_ms"]):
                fail(name, field + " header %r" % ((mtype, fl, boot_id, seq, t_ms),))
            if not same(obj, payload):
                fail(name, field + " payload differs")
        count("frames")


def check_msgpack(path):
    for _, case in cases(path):
        name = case["name"]
        packed = unhexlify(case["msgpack_hex"])
        obj = reference_object(name, case["object"], packed)
        check_pack(name, obj, packed, case["single_float"])
        count("msgpack")


def check_corrupt(path):
    for _, case in cases(path):
        key = unhexlify(case["key_hex"]) if case["key_hex"] else None
        dec = lw.FrameDecoder(key, sender=lw.FROM_BOARD)  # every corrupt stream is a board's
        for i, frame in enumerate(case["frames"]):
            wire = unhexlify(frame["wire_hex"])
            try:
                dec.decode(wire, len(wire) - 1)
                got = "ok"
            except lw.ProtocolError as err:
                got = lw.REASON_NAMES[err.reason]
            if got != frame["board"]:
                fail(case["name"], "frame %d: %s, expected %s" % (i, got, frame["board"]))
        count("corrupt")


def main(base):
    print("lwproto", lw.__file__)
    if lw.crc16(b"123456789", 0, 9) != 0x29B1:
        fail("crc", "check value")
    check_msgpack(base + "/msgpack.json")
    check_frames(base + "/frames.json")
    check_corrupt(base + "/corrupt.json")
    print("cases", json.dumps(counts))
    print("failures", len(failures))
    if failures:
        sys.exit(1)
