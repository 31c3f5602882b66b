# liftwatch wire protocol v2 codec (protocol/SPEC.md is the normative text).
#
# One file for both ends: it runs unchanged under CPython 3.11+ and MicroPython 1.24+, and is copied
# to the board as /lwproto.py. The board's hot path (VIB, STATE, HEARTBEAT) uses the pack_* functions
# into preallocated buffers and FrameEncoder, which allocate nothing after construction, tags
# included (Chaskey-12 in viper over a preallocated key schedule). Everything that may allocate
# (unpack, pack_into of str/float/dict, key derivation) is outside that path.

try:
    from micropython import const
    import micropython

    _BOARD = True
except ImportError:  # CPython: the same code runs as plain functions
    _BOARD = False

    def const(x):
        return x

    class micropython:  # noqa: N801 - stands in for the module so `@micropython.viper` stays literal
        """The MicroPython compiler only recognises the literal `@micropython.viper` decorator."""

        @staticmethod
        def viper(f):
            return f

    def ptr8(x):  # viper's pointer casts are the identity on CPython (indexing gives ints either way)
        return x

    ptr16 = ptr8

import struct

VERSION = const(2)  # v2: direction flag, per-direction keys, Chaskey-12 tags (SPEC.md "Upgrading from v1")
HEADER_LEN = const(11)
CRC_LEN = const(2)
TAG_LEN = const(8)
MAX_BODY = const(1024)
# COBS adds at most one byte per 254 plus one; then the 0x00 delimiter.
MAX_WIRE = const(1024 + 5 + 1)

# Message types.
T_HELLO = const(1)
T_STATE = const(2)
T_VIB = const(3)
T_STATS = const(4)
T_EVENT = const(5)
T_COUNTERS = const(6)
T_HEARTBEAT = const(7)
T_ACK = const(8)
T_TIME_SYNC = const(9)
T_CONFIG = const(10)
T_CONTROL = const(11)
# JOURNAL: a record the board keeps in flash until the host ACKs it; J_* are the record kinds.
T_JOURNAL = const(12)
J_TRIP = const(1)
J_DOOR_CYCLE = const(2)
J_INSPECTION = const(3)
# 13 OTA_CHUNK and 14 OTA_STATUS: the firmware update's codes are in lwota.py (each name here is a
# slot in this module's globals on the board, whose table is a few KiB and grows by reallocation).
KNOWN_TYPES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)

# Field codes, SPEC.md section 5 "Common enumerations" (tests/test_wire_codes.py pins each to it). The
# board, the host's typed views and the simulators all import them from here.
# Inputs bitmask (STATE `inputs`/`changed`, HEARTBEAT `inputs`, the sim feed's `inputs`).
IN_DOOR_CLOSED = const(0x01)
IN_ZONE_UP = const(0x02)  # upper door-zone sensor (vane/magnet) covered
IN_ZONE_DN = const(0x04)  # lower door-zone sensor covered; both covered = level at a floor
IN_PRESENCE = const(0x08)  # someone in the car (PIR / mmWave)
IN_INSPECTION = const(0x10)  # inspection (maintenance) switch on the car top
IN_ALARM_BUTTON = const(0x20)
# Issue 20: the car's mains rail present (opto-isolated sense; the kit itself runs on the car's
# lighting supply, so it sees the rail fall). An unwired input reads 0: the host judges a power loss
# only once it has seen the bit set.
IN_MAINS = const(0x40)
# Motion (STATE, STATS, HEARTBEAT `motion`).
MOTION_REST = const(0)
MOTION_ACCELERATING = const(1)
MOTION_MOVING = const(2)
MOTION_DECELERATING = const(3)
MOTION_UNCALIBRATED = const(255)
# EVENT `kind`: conditions the board detects itself; EVENT `state`.
KIND_DOOR_OPEN_WHILE_MOVING = const(1)
KIND_STOPPED_OUTSIDE_DOOR_ZONE = const(2)
KIND_ALARM_BUTTON_HELD = const(3)
KIND_SENSOR_FAULT = const(4)
KIND_SAFE_MODE = const(5)
KIND_RING_OVERRUN = const(6)
EVENT_CLEARED = const(0)
EVENT_RAISED = const(1)
# CONTROL `command`, and the `arg` of CMD_STREAM_MODE.
CMD_REBOOT = const(1)
CMD_CALIBRATE = const(2)
CMD_STREAM_MODE = const(3)
CMD_REQUEST_HELLO = const(4)
CMD_REQUEST_COUNTERS = const(5)
STREAM_AUTO = const(0)  # VIB around trips, STATS at rest (default)
STREAM_ALWAYS_VIB = const(1)  # raw blocks all the time (commissioning, recording a trace)
STREAM_NO_VIB = const(2)  # STATS only (a starved link)
# ACK `status`.
ACK_OK = const(0)
ACK_REFUSED = const(1)  # e.g. a CONFIG value out of range; `reason` says which
ACK_UNKNOWN = const(2)  # the board does not know what is acknowledged / commanded
ACK_BUSY = const(3)

# Flags: bits 0-3 must be understood (a reader drops a frame with an unknown one), bits 4-7 may be ignored.
FLAG_TAGGED = const(0x01)
FLAG_FROM_HOST = const(0x02)  # set on every host->board frame, clear on every board->host frame
FLAGS_INCOMPAT_KNOWN = const(0x03)
FLAGS_INCOMPAT_MASK = const(0x0F)

# Senders, and the message types each may send (bit t set: type t). A reader drops a frame of the
# other sender, or a known type its sender may not send, before any state moves (R_DIRECTION): a
# frame reflected back to where it came from is never taken for the other end's.
FROM_BOARD = const(0)
FROM_HOST = const(1)
BOARD_TYPES = const(0x53FE)  # HELLO..HEARTBEAT, ACK, TIME_SYNC, JOURNAL, OTA_STATUS
HOST_TYPES = const(0x2F00)  # ACK, TIME_SYNC, CONFIG, CONTROL, OTA_CHUNK


def _mac(key, sender):
    # Tags live in their own module (lwproto alone already fills the heap it is compiled in on a
    # board), imported on first use: an unkeyed board never loads it.
    try:
        from lwtag import Mac
    except ImportError:  # CPython: inside the liftwatch.protocol package
        from liftwatch.protocol.lwtag import Mac
    return Mac(key, sender)


# Drop reasons, shared with the host's DropReason enum (same numbers, same names).
R_FRAMING = const(1)
R_CRC = const(2)
R_TOO_LARGE = const(3)
R_BAD_VERSION = const(4)
R_UNKNOWN_TYPE = const(5)
R_AUTH = const(6)
R_REPLAY = const(7)
R_BAD_FLAGS = const(8)
R_BAD_PAYLOAD = const(9)
R_DIRECTION = const(10)
REASON_NAMES = ("", "framing", "crc", "too_large", "bad_version", "unknown_type", "auth", "replay", "bad_flags",
                "bad_payload", "direction")

T_MS_MODULO = const(0x40000000)  # board time wraps at 2**30 ms (12.4 days): a small int on the ESP32
SEQ_MODULO = const(0x10000)
MAX_DEPTH = const(8)  # nesting limit of unpack(): the board's C stack is small


class ProtocolError(ValueError):
    """A frame or payload the codec refuses; ``reason`` is one of the R_* codes."""

    def __init__(self, reason, detail=""):
        # super(): MicroPython's ValueError has no __init__ attribute to call directly.
        super().__init__(REASON_NAMES[reason] + (": " + detail if detail else ""))
        self.reason = reason


# ---------------------------------------------------------------- CRC-16/CCITT-FALSE
# width 16, poly 0x1021, init 0xFFFF, refin/refout false, xorout 0x0000, check("123456789") = 0x29B1.
# Chosen over CRC-32 because its value is always a small int on the ESP32 (no heap object per frame),
# and for bodies up to 1024 bytes it still detects every error of up to 3 flipped bits.


def _make_crc_table():
    import array

    table = array.array("H", [0] * 256)
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table[i] = crc & 0xFFFF
    return table


_CRC_TABLE = _make_crc_table()


@micropython.viper
def _crc16(buf: ptr8, start: int, end: int, crc: int) -> int:
    # Viper passes at most 4 arguments without allocating, so the table is read from the global.
    table = ptr16(_CRC_TABLE)
    i = start
    while i < end:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ buf[i]) & 0xFF]
        i += 1
    return crc


try:
    from binascii import crc_hqx as _crc_hqx  # CPython: the same CRC in C

    def crc16(buf, start, end, crc=0xFFFF):
        """CRC-16/CCITT-FALSE of buf[start:end] (``crc`` continues a running value)."""
        return _crc_hqx(memoryview(buf)[start:end], crc)

except ImportError:

    def crc16(buf, start, end, crc=0xFFFF):
        """CRC-16/CCITT-FALSE of buf[start:end] (``crc`` continues a running value)."""
        return _crc16(buf, start, end, crc)


# ---------------------------------------------------------------- COBS
# Byte-identical to the `cobs` package used on the host: a 254-byte run that ends the input is not
# followed by an extra 0x01 code byte.


@micropython.viper
def cobs_encode_into(src: ptr8, n: int, dst: ptr8) -> int:
    """COBS-encode src[0:n] into dst (room for n + n//254 + 1 bytes); returns the encoded length."""
    code_i = 0
    o = 1
    code = 1
    i = 0
    while i < n:
        b = src[i]
        if b == 0:
            dst[code_i] = code
            code_i = o
            o += 1
            code = 1
        else:
            dst[o] = b
            o += 1
            code += 1
            if code == 0xFF and i + 1 < n:
                dst[code_i] = code
                code_i = o
                o += 1
                code = 1
        i += 1
    dst[code_i] = code
    return o


@micropython.viper
def cobs_decode_into(src: ptr8, n: int, dst: ptr8) -> int:
    """Decode one COBS block sequence src[0:n] (no delimiter) into dst; -1 if malformed."""
    i = 0
    o = 0
    while i < n:
        code = src[i]
        if code == 0:
            return -1
        i += 1
        end = i + code - 1
        if end > n:
            return -1
        while i < end:
            b = src[i]
            if b == 0:
                return -1
            dst[o] = b
            o += 1
            i += 1
        if code < 0xFF and i < n:
            dst[o] = 0
            o += 1
    return o


@micropython.viper
def _copy_v(dst: ptr8, src: ptr8, offsets: int, n: int):
    # offsets = doff << 16 | soff: viper calls with more than 4 arguments allocate.
    doff = offsets >> 16
    soff = offsets & 0xFFFF
    i = 0
    while i < n:
        dst[doff + i] = src[soff + i]
        i += 1


def copy_into(dst, doff, src, soff, n):
    """dst[doff:doff+n] = src[soff:soff+n] without allocating a slice on the board."""
    if doff + n > len(dst) or soff + n > len(src):
        # The viper copy does no bounds checks, and a CPython slice assignment would grow dst.
        raise IndexError("copy_into out of range")
    if _BOARD and doff < 0x8000 and soff < 0x10000:
        _copy_v(dst, src, (doff << 16) | soff, n)
    else:
        dst[doff : doff + n] = memoryview(src)[soff : soff + n]


# ---------------------------------------------------------------- msgpack, into a buffer
# Smallest encodings, as msgpack.packb(obj, use_bin_type=True) writes them. Each function writes at
# buf[off] and returns the offset after what it wrote; a full buffer raises IndexError.


def pack_nil(buf, off):
    buf[off] = 0xC0
    return off + 1


def pack_bool(buf, off, v):
    buf[off] = 0xC3 if v else 0xC2
    return off + 1


def _put_be(buf, off, v, n):
    # Big-endian n bytes of v (v already in range).
    i = off + n - 1
    while i >= off:
        buf[i] = v & 0xFF
        v >>= 8
        i -= 1
    return off + n


def pack_int(buf, off, v):
    if v >= 0:
        if v < 0x80:
            buf[off] = v
            return off + 1
        if v < 0x100:
            buf[off] = 0xCC
            buf[off + 1] = v
            return off + 2
        if v < 0x10000:
            buf[off] = 0xCD
            buf[off + 1] = v >> 8
            buf[off + 2] = v & 0xFF
            return off + 3
        if v < 0x100000000:
            buf[off] = 0xCE
            return _put_be(buf, off + 1, v, 4)
        if v < 0x10000000000000000:
            buf[off] = 0xCF
            return _put_be(buf, off + 1, v, 8)
        raise OverflowError("int too big for msgpack")
    if v >= -32:
        buf[off] = v & 0xFF
        return off + 1
    if v >= -0x80:
        buf[off] = 0xD0
        buf[off + 1] = v & 0xFF
        return off + 2
    if v >= -0x8000:
        buf[off] = 0xD1
        return _put_be(buf, off + 1, v & 0xFFFF, 2)
    if v >= -0x80000000:
        buf[off] = 0xD2
        return _put_be(buf, off + 1, v & 0xFFFFFFFF, 4)
    if v >= -0x8000000000000000:
        buf[off] = 0xD3
        return _put_be(buf, off + 1, v & 0xFFFFFFFFFFFFFFFF, 8)
    raise OverflowError("int too small for msgpack")


def _pack_len(buf, off, n, fix_base, fix_max, c8, c16, c32):
    if n <= fix_max and fix_base is not None:
        buf[off] = fix_base | n
        return off + 1
    if n < 0x100 and c8:
        buf[off] = c8
        buf[off + 1] = n
        return off + 2
    if n < 0x10000:
        buf[off] = c16
        return _put_be(buf, off + 1, n, 2)
    buf[off] = c32
    return _put_be(buf, off + 1, n, 4)


def pack_array_header(buf, off, n):
    return _pack_len(buf, off, n, 0x90, 15, 0, 0xDC, 0xDD)


def pack_map_header(buf, off, n):
    return _pack_len(buf, off, n, 0x80, 15, 0, 0xDE, 0xDF)


def pack_bin_header(buf, off, n):
    return _pack_len(buf, off, n, None, -1, 0xC4, 0xC5, 0xC6)


def pack_bin_from(buf, off, src, start, n):
    """A msgpack bin of src[start:start+n], copied without slicing (so without allocating)."""
    off = pack_bin_header(buf, off, n)
    copy_into(buf, off, src, start, n)
    return off + n


def pack_str(buf, off, s):
    b = s.encode("utf-8")
    n = len(b)
    off = _pack_len(buf, off, n, 0xA0, 31, 0xD9, 0xDA, 0xDB)
    if off + n > len(buf):  # a slice assignment past the end would grow buf instead of failing
        raise IndexError("buffer full")
    buf[off : off + n] = b
    return off + n


def pack_float(buf, off, v, single=False):
    if off + (5 if single else 9) > len(buf):  # struct.pack_into would raise its own error type
        raise IndexError("buffer full")
    if single:
        buf[off] = 0xCA
        struct.pack_into(">f", buf, off + 1, v)
        return off + 5
    buf[off] = 0xCB
    struct.pack_into(">d", buf, off + 1, v)
    return off + 9


def pack_into(buf, off, obj, single_float=False):
    """Generic msgpack encoder into ``buf`` at ``off``; returns the end offset.

    Bytes equal msgpack.packb(obj, use_bin_type=True, use_single_float=single_float) for None, bool,
    int, float, str, bytes/bytearray/memoryview, list/tuple and dict (dict order is the dict's own).
    """
    if obj is None:
        return pack_nil(buf, off)
    if obj is True or obj is False:
        return pack_bool(buf, off, obj)
    t = type(obj)
    if t is int:
        return pack_int(buf, off, obj)
    if t is float:
        return pack_float(buf, off, obj, single_float)
    if t is str:
        return pack_str(buf, off, obj)
    if t is bytes or t is bytearray or t is memoryview:
        return pack_bin_from(buf, off, obj, 0, len(obj))
    if t is list or t is tuple:
        off = pack_array_header(buf, off, len(obj))
        for item in obj:
            off = pack_into(buf, off, item, single_float)
        return off
    if t is dict:
        off = pack_map_header(buf, off, len(obj))
        for k in obj:
            off = pack_into(buf, off, k, single_float)
            off = pack_into(buf, off, obj[k], single_float)
        return off
    if isinstance(obj, int):  # bool handled above; int subclasses (IntEnum on the host)
        return pack_int(buf, off, int(obj))
    raise TypeError("cannot pack " + str(t))


def packb(obj, single_float=False):
    """msgpack bytes of obj (allocates; for tests and host tools)."""
    buf = bytearray(MAX_BODY * 64)
    while True:
        try:
            n = pack_into(buf, 0, obj, single_float)
            return bytes(buf[:n])
        except IndexError:
            buf = bytearray(len(buf) * 4)


# ---------------------------------------------------------------- msgpack, from a buffer


def _get_be(buf, off, n):
    v = 0
    for i in range(off, off + n):
        v = (v << 8) | buf[i]
    return v


def unpack(buf, off, end, depth=0):
    """Decode one msgpack object from buf[off:end]; returns (obj, next_offset).

    For what the board receives (CONFIG, CONTROL, ACK, TIME_SYNC); raises ProtocolError(R_BAD_PAYLOAD)
    on truncation, ext types or nesting deeper than MAX_DEPTH.
    """
    if off >= end:
        raise ProtocolError(R_BAD_PAYLOAD, "truncated")
    if depth > MAX_DEPTH:
        raise ProtocolError(R_BAD_PAYLOAD, "too deep")
    b = buf[off]
    off += 1
    if b < 0x80:
        return b, off
    if b >= 0xE0:
        return b - 0x100, off
    if 0x80 <= b <= 0x8F:
        return _unpack_map(buf, off, end, b & 0x0F, depth)
    if 0x90 <= b <= 0x9F:
        return _unpack_array(buf, off, end, b & 0x0F, depth)
    if 0xA0 <= b <= 0xBF:
        return _unpack_str(buf, off, end, b & 0x1F)
    if b == 0xC0:
        return None, off
    if b == 0xC2:
        return False, off
    if b == 0xC3:
        return True, off
    if b in (0xC4, 0xC5, 0xC6):
        w = 1 << (b - 0xC4)
        _need(off + w, end)
        n = _get_be(buf, off, w)
        off += w
        _need(off + n, end)
        # A view of the frame, valid until the next decode: the board writes firmware update
        # chunks to flash from it, having no heap block to copy one into.
        return memoryview(buf)[off : off + n], off + n
    if b == 0xCA or b == 0xCB:
        w = 4 if b == 0xCA else 8
        _need(off + w, end)
        return struct.unpack_from(">f" if w == 4 else ">d", buf, off)[0], off + w
    if 0xCC <= b <= 0xCF:
        w = 1 << (b - 0xCC)
        _need(off + w, end)
        return _get_be(buf, off, w), off + w
    if 0xD0 <= b <= 0xD3:
        w = 1 << (b - 0xD0)
        _need(off + w, end)
        v = _get_be(buf, off, w)
        if v >= 1 << (8 * w - 1):
            v -= 1 << (8 * w)
        return v, off + w
    if b in (0xD9, 0xDA, 0xDB):
        w = 1 << (b - 0xD9)
        _need(off + w, end)
        return _unpack_str(buf, off + w, end, _get_be(buf, off, w))
    if b == 0xDC or b == 0xDD:
        w = 2 if b == 0xDC else 4
        _need(off + w, end)
        return _unpack_array(buf, off + w, end, _get_be(buf, off, w), depth)
    if b == 0xDE or b == 0xDF:
        w = 2 if b == 0xDE else 4
        _need(off + w, end)
        return _unpack_map(buf, off + w, end, _get_be(buf, off, w), depth)
    raise ProtocolError(R_BAD_PAYLOAD, "unsupported msgpack type 0x%02x" % b)


def _need(upto, end):
    if upto > end:
        raise ProtocolError(R_BAD_PAYLOAD, "truncated")


def _unpack_str(buf, off, end, n):
    _need(off + n, end)
    try:
        return str(bytes(buf[off : off + n]), "utf-8"), off + n
    except UnicodeError:
        raise ProtocolError(R_BAD_PAYLOAD, "bad utf-8")


def _unpack_array(buf, off, end, n, depth):
    if n > end - off:  # every element takes at least one byte: refuse absurd lengths before allocating
        raise ProtocolError(R_BAD_PAYLOAD, "truncated")
    out = []
    for _ in range(n):
        item, off = unpack(buf, off, end, depth + 1)
        out.append(item)
    return out, off


def _unpack_map(buf, off, end, n, depth):
    if 2 * n > end - off:
        raise ProtocolError(R_BAD_PAYLOAD, "truncated")
    out = {}
    for _ in range(n):
        k, off = unpack(buf, off, end, depth + 1)
        if type(k) not in (str, int):
            raise ProtocolError(R_BAD_PAYLOAD, "map key must be str or int")
        v, off = unpack(buf, off, end, depth + 1)
        out[k] = v
    return out, off


def unpackb(data):
    """Decode exactly one msgpack object from ``data``."""
    obj, n = unpack(data, 0, len(data))
    if n != len(data):
        raise ProtocolError(R_BAD_PAYLOAD, "trailing bytes")
    return obj


# ---------------------------------------------------------------- header and tag


def write_header(buf, mtype, flags, boot_id, seq, t_ms):
    buf[0] = VERSION
    buf[1] = mtype
    buf[2] = flags
    buf[3] = boot_id & 0xFF
    buf[4] = (boot_id >> 8) & 0xFF
    buf[5] = seq & 0xFF
    buf[6] = (seq >> 8) & 0xFF
    buf[7] = t_ms & 0xFF
    buf[8] = (t_ms >> 8) & 0xFF
    buf[9] = (t_ms >> 16) & 0xFF
    buf[10] = (t_ms >> 24) & 0x3F  # t_ms < 2**30


def read_header(buf):
    """(ver, type, flags, boot_id, seq, t_ms) of a decoded body."""
    return (
        buf[0],
        buf[1],
        buf[2],
        buf[3] | (buf[4] << 8),
        buf[5] | (buf[6] << 8),
        buf[7] | (buf[8] << 8) | (buf[9] << 16) | ((buf[10] & 0x3F) << 24),
    )


def sender_of(flags):
    """FROM_HOST or FROM_BOARD, from a frame's flags byte."""
    return FROM_HOST if flags & FLAG_FROM_HOST else FROM_BOARD


def direction_check(flags, mtype, sender):
    """True if a frame with these flags and type may come from ``sender`` (unknown types pass: they
    are skipped and counted as UNKNOWN_TYPE, so a newer peer's message is not called misdirected)."""
    if sender_of(flags) != sender:
        return False
    if not T_HELLO <= mtype <= T_JOURNAL:
        return True
    return bool(((HOST_TYPES if sender == FROM_HOST else BOARD_TYPES) >> mtype) & 1)


# ---------------------------------------------------------------- frames


class FrameEncoder:
    """Builds frames in preallocated buffers: begin() writes the header, the caller packs the payload
    into ``body``, finish() adds tag and CRC, COBS-encodes into ``wire`` and appends the delimiter.
    ``sender`` (FROM_BOARD or FROM_HOST) sets the direction flag and picks the direction's key."""

    def __init__(self, key=None, max_body=MAX_BODY, sender=FROM_BOARD):
        self.body = bytearray(max_body)
        self.wire = bytearray(max_body + max_body // 254 + 2)
        self.max_body = max_body
        self._mac = _mac(key, sender) if key else None
        self._flags = (FLAG_TAGGED if key else 0) | (FLAG_FROM_HOST if sender == FROM_HOST else 0)

    def begin(self, mtype, boot_id, seq, t_ms):
        write_header(self.body, mtype, self._flags, boot_id, seq, t_ms)
        return HEADER_LEN

    def finish(self, end):
        """Seal the body ending at ``end``; returns the wire length (delimiter included)."""
        body = self.body
        if self._mac:
            if end + TAG_LEN + CRC_LEN > self.max_body:
                raise ProtocolError(R_TOO_LARGE)
            self._mac.seal(body, end)
            end += TAG_LEN
        elif end + CRC_LEN > self.max_body:
            raise ProtocolError(R_TOO_LARGE)
        crc = crc16(body, 0, end)
        body[end] = crc >> 8  # big-endian, so the CRC over body + CRC is 0 (the receiver's check)
        body[end + 1] = crc & 0xFF
        n = cobs_encode_into(body, end + CRC_LEN, self.wire)
        self.wire[n] = 0
        return n + 1

    def encode(self, mtype, boot_id, seq, t_ms, payload):
        """Whole frame from a payload object (allocates for str/float/dict payloads)."""
        off = self.begin(mtype, boot_id, seq, t_ms)
        try:
            end = pack_into(self.body, off, payload)
        except IndexError:
            raise ProtocolError(R_TOO_LARGE)
        return self.finish(end)


class FrameDecoder:
    """Checks and decodes one frame (without its delimiter) from ``sender``: by default the host's,
    as the board does. A frame of the other sender, or a type its sender may not send, is refused
    (R_DIRECTION); with a key, untagged frames are refused (R_AUTH). The replay rule is the
    caller's (it knows its boot id): see SPEC.md "Replay protection"."""

    def __init__(self, key=None, max_body=MAX_BODY, sender=FROM_HOST):
        self.body = bytearray(max_body + 8)
        self._mac = _mac(key, sender) if key else None
        self._sender = sender

    def decode(self, wire, n):
        body = self.body
        if n > len(body) + 1:  # COBS of n bytes decodes to up to n - 1: more would overrun body (viper: no checks)
            raise ProtocolError(R_TOO_LARGE)
        m = cobs_decode_into(wire, n, body)
        if m < 0:
            raise ProtocolError(R_FRAMING)
        if m < HEADER_LEN + CRC_LEN:
            raise ProtocolError(R_FRAMING, "short")
        if m > MAX_BODY:
            raise ProtocolError(R_TOO_LARGE)
        if crc16(body, 0, m):
            raise ProtocolError(R_CRC)
        end = m - CRC_LEN
        ver, mtype, flags, boot_id, seq, t_ms = read_header(body)
        if ver != VERSION:
            raise ProtocolError(R_BAD_VERSION)
        if flags & FLAGS_INCOMPAT_MASK & ~FLAGS_INCOMPAT_KNOWN:
            raise ProtocolError(R_BAD_FLAGS)
        if not direction_check(flags, mtype, self._sender):
            raise ProtocolError(R_DIRECTION)
        if flags & FLAG_TAGGED:
            end -= TAG_LEN
            if end < HEADER_LEN:
                raise ProtocolError(R_FRAMING, "short")
            if self._mac and not self._mac.check(body, end):
                raise ProtocolError(R_AUTH, "bad tag")
        elif self._mac:
            raise ProtocolError(R_AUTH, "untagged")
        payload, nxt = unpack(body, HEADER_LEN, end)
        if nxt != end:
            raise ProtocolError(R_BAD_PAYLOAD, "trailing bytes")
        return mtype, flags, boot_id, seq, t_ms, payload


class FrameAssembler:
    """Collects delimited frames from a byte stream (UART reads, BLE notifications) into a
    preallocated buffer, as the board receives them. push(chunk, start, n) consumes bytes until a
    frame completes and returns the index after it (the frame is frame[0:length], without its
    delimiter), or -1 when the chunk ran out first. An over-long frame is skipped up to the next
    delimiter and counted in ``overflows``."""

    def __init__(self, max_wire=MAX_WIRE):
        self.frame = bytearray(max_wire)
        self.length = 0
        self.overflows = 0
        self._n = 0
        self._skipping = False

    def push(self, chunk, start, n):
        frame = self.frame
        cap = len(frame)
        i = start
        end = start + n
        while i < end:
            b = chunk[i]
            i += 1
            if b == 0:
                if self._skipping:
                    self._skipping = False
                    self._n = 0
                    continue
                if self._n:
                    self.length = self._n
                    self._n = 0
                    return i
                continue
            if self._skipping:
                continue
            if self._n >= cap:
                self.overflows += 1
                self._skipping = True
                continue
            frame[self._n] = b
            self._n += 1
        return -1
