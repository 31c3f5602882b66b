"""Host-side framing: bytes from a board in any chunking -> checked frames, never an exception.

Framing knows COBS, the CRC, the header and the tag; it does not know what payload fields mean
(that is `liftwatch.protocol.messages`). The per-frame work is done in C: `cobs` for unstuffing,
`binascii.crc_hqx` for the CRC-16/CCITT-FALSE, `msgpack` for the payload, `hmac.digest` for tags.
"""

from __future__ import annotations

import enum
import hmac
import re
import struct
from binascii import crc_hqx
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgpack
from cobs import cobs

try:  # Rust-backed, about 10x faster than binascii.crc_hqx on 400-byte frames (benchmarks/protocol.py)
    from fastcrc.crc16 import ibm_3740 as _crc16
except ImportError:  # pragma: no cover - same CRC, slower

    def _crc16(data: bytes) -> int:
        return crc_hqx(data, 0xFFFF)

from liftwatch.protocol import lwproto as _lw

HEADER = struct.Struct("<BBBHHI")
HEADER_LEN = _lw.HEADER_LEN
TAG_LEN = _lw.TAG_LEN
MAX_BODY = _lw.MAX_BODY
MAX_WIRE = _lw.MAX_WIRE
KNOWN_TYPES = frozenset(_lw.KNOWN_TYPES)
_KNOWN_TYPE_TABLE = bytes(t in KNOWN_TYPES for t in range(256))

try:  # optional C accelerator of FrameReader.feed, built by setup.py (protocol/_fastframe.c)
    from liftwatch.protocol import _fastframe
except ImportError:  # not built: the pure-Python path gives the same results, slower
    _fastframe = None
if _fastframe is not None and _fastframe.LAYOUT != (
    _lw.VERSION, HEADER_LEN, TAG_LEN, MAX_BODY, MAX_WIRE, _lw.FLAGS_INCOMPAT_KNOWN
):  # a stale build from another wire layout must not be trusted
    _fastframe = None

def _byte_class(values: list[int]) -> bytes:
    return b"[" + b"".join(re.escape(bytes([v])) for v in values) + b"]"


# Where a frame's COBS form can start inside a damaged part, matched on the part reversed, so the
# search runs from the part's end and stops after MAX_SALVAGE_TRIES. Forward, a frame starts with
# its first code byte c, ver = 0x01 and the type: c = 2 would make the type 0 (never known); c = 3
# makes the flags 0; c >= 4 puts nonzero flags next, with no unknown must-understand bit. The
# pattern starts with the literal 0x01, so the regex engine skips to each one at memchr speed.
_TYPE = _byte_class([t for t in sorted(KNOWN_TYPES) if t])
_FLAGS = _byte_class([f for f in range(1, 256) if not f & _lw.FLAGS_INCOMPAT_MASK & ~_lw.FLAGS_INCOMPAT_KNOWN])
_SALVAGE_START = re.compile(b"\\x01(?:(?<=" + _FLAGS + _TYPE + b"\\x01)(?=[\\x04-\\xff])|(?<=" + _TYPE
                            + b"\\x01)(?=\\x03))")
# Full checks one damaged part may cost. Real frames behind boot text or line noise need one (only
# candidates inside the frame itself are tried before it, and few pass the pattern); garbage
# crafted with a candidate every few bytes then costs a few times what random bytes cost
# (benchmarks/protocol.py `crafted_garbage_cost_ratio`), not a check of up to MAX_WIRE bytes per offset.
MAX_SALVAGE_TRIES = 8
REPLAY_WINDOW = 64  # frames a tagged frame may arrive late (reordering inside one link is rare)


class DropReason(enum.IntEnum):
    """Why a frame was dropped; numbers equal lwproto's R_* codes."""

    FRAMING = _lw.R_FRAMING
    CRC = _lw.R_CRC
    TOO_LARGE = _lw.R_TOO_LARGE
    BAD_VERSION = _lw.R_BAD_VERSION
    UNKNOWN_TYPE = _lw.R_UNKNOWN_TYPE
    AUTH = _lw.R_AUTH
    REPLAY = _lw.R_REPLAY
    BAD_FLAGS = _lw.R_BAD_FLAGS
    BAD_PAYLOAD = _lw.R_BAD_PAYLOAD


_SALVAGEABLE = frozenset({DropReason.FRAMING, DropReason.CRC, DropReason.TOO_LARGE})


class Frame(tuple):
    """One checked frame. A tuple subclass: built once per frame on the hot path, so no dataclass."""

    __slots__ = ()
    type: int
    flags: int
    boot_id: int
    seq: int
    t_ms: int
    payload: Any
    tagged: bool
    wire_len: int

    def __new__(cls, type, flags, boot_id, seq, t_ms, payload, tagged, wire_len):  # noqa: A002
        return tuple.__new__(cls, (type, flags, boot_id, seq, t_ms, payload, tagged, wire_len))

    def __repr__(self) -> str:
        return (
            f"Frame(type={self[0]}, flags={self[1]:#x}, boot_id={self[2]}, seq={self[3]}, "
            f"t_ms={self[4]}, payload={self[5]!r:.80}, tagged={self[6]})"
        )


for _i, _name in enumerate(("type", "flags", "boot_id", "seq", "t_ms", "payload", "tagged", "wire_len")):
    setattr(Frame, _name, property(lambda self, _i=_i: self[_i]))


@dataclass(slots=True)
class ReplayGuard:
    """Replay rule for tagged frames of one board (SPEC.md, "Replay protection").

    boot_id is the board's persistent boot counter: a frame from an older boot is a replay. Within a
    boot, a sequence number already seen, or older than the window, is a replay. Persist ``state()``
    so the rule holds across daemon restarts.
    """

    boot_id: int | None = None
    top_seq: int = 0
    seen: int = 0  # bit i set: top_seq - i was accepted

    def check(self, boot_id: int, seq: int) -> bool:
        """True and remembered if (boot_id, seq) is fresh; False if it is a replay."""
        if self.boot_id is None or _newer16(boot_id, self.boot_id):
            self.boot_id, self.top_seq, self.seen = boot_id, seq, 1
            return True
        if boot_id != self.boot_id:
            return False
        ahead = (seq - self.top_seq) & 0xFFFF
        if 0 < ahead < 0x8000:
            self.seen = ((self.seen << ahead) | 1) & ((1 << REPLAY_WINDOW) - 1)
            self.top_seq = seq
            return True
        behind = (self.top_seq - seq) & 0xFFFF
        if behind >= REPLAY_WINDOW or self.seen >> behind & 1:
            return False
        self.seen |= 1 << behind
        return True

    def state(self) -> tuple[int | None, int, int]:
        return (self.boot_id, self.top_seq, self.seen)


def _newer16(a: int, b: int) -> bool:
    """Serial-number arithmetic on u16 (RFC 1982): a is after b."""
    return 0 < ((a - b) & 0xFFFF) < 0x8000


@dataclass(slots=True)
class FrameReader:
    """Streaming reader for one board's byte stream.

    ``feed(chunk)`` returns the frames completed by ``chunk``; damaged input is counted in ``drops``
    by `DropReason` and reading resumes at the next 0x00 delimiter, so garbage never costs a good frame
    that follows it. With ``key`` set, tags are verified; ``next_key`` is a rotated key the board may
    already use (after `liftwatch flash`): the first frame it verifies promotes it to ``key``, and the
    old key is refused from then on. With ``require_tag`` untagged frames are
    dropped as AUTH, and tagged frames go through the replay guard.
    """

    key: bytes | None = None
    require_tag: bool = False
    next_key: bytes | None = None
    replay: ReplayGuard = field(default_factory=ReplayGuard)
    drops: Counter = field(default_factory=Counter)
    frames: int = 0
    key_rotations: int = 0
    salvage_tries: int = 0  # full checks spent looking for a frame behind garbage (MAX_SALVAGE_TRIES a part)
    unknown_types: Counter = field(default_factory=Counter)
    _buf: bytearray = field(default_factory=bytearray)
    _long: bool = False
    # Use the C accelerator for the chunk loop (default when it is built); False forces the
    # pure-Python path, which tests and benchmarks compare it with.
    accelerated: bool = _fastframe is not None
    _splitter: Any = None  # the C stream state when accelerated

    def __post_init__(self) -> None:
        if self.accelerated:
            if _fastframe is None:
                raise ValueError("accelerated=True but liftwatch.protocol._fastframe is not built")
            self._splitter = _fastframe.Splitter(Frame, msgpack.unpackb, _KNOWN_TYPE_TABLE)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Frame]:
        if self.accelerated:
            # The C splitter keeps the stream state and decodes the clean frames; every other part
            # comes back as bytes for _decode, so drop accounting and salvage exist once.
            items, slow, too_large = self._splitter.feed(chunk, self.key is None and self.next_key is None,
                                                         self.require_tag)
            if too_large:
                self.drops[DropReason.TOO_LARGE] += too_large
            if slow:
                return self._finish_slow(items)
            self.frames += len(items)
            return items
        buf = self._buf
        start = len(buf)
        buf += chunk
        if buf.find(0, start) < 0:  # not `b"\x00" in chunk`: on a memoryview that compares ints, never true
            if len(buf) > MAX_WIRE:
                self._trim()
            return []
        parts = buf.split(b"\x00")
        self._buf = bytearray(parts.pop())  # the unfinished tail
        self._long = False
        out: list[Frame] = []
        decode = self._decode
        for part in parts:
            if part:  # empty parts are idle 0x00 fill between frames
                frame = decode(part)
                if frame is not None:
                    out.append(frame)
        if len(self._buf) > MAX_WIRE:
            self._trim()
        return out

    def _finish_slow(self, items: list[Frame | bytes]) -> list[Frame]:
        out: list[Frame] = []
        for item in items:
            if type(item) is Frame:
                self.frames += 1
                out.append(item)
            else:
                frame = self._decode(item)
                if frame is not None:
                    out.append(frame)
        return out

    def _trim(self) -> None:
        # No delimiter for longer than any frame: what is older than MAX_WIRE bytes cannot belong to
        # a good frame. Keep the newest MAX_WIRE bytes, which may hold the start of one.
        if not self._long:
            self.drops[DropReason.TOO_LARGE] += 1
            self._long = True
        del self._buf[:-MAX_WIRE]

    def _decode(self, part: bytes | bytearray) -> Frame | None:
        result = self._check(part)
        if type(result) is Frame:
            self.frames += 1
            return result
        if result in _SALVAGEABLE:
            # Garbage glued to the front of a good frame (a board's boot text, line noise with no
            # 0x00 in it) makes the whole part fail. Look for a valid frame starting later in it.
            frame = self._salvage(part)
            if frame is not None:
                self.drops[DropReason.FRAMING] += 1  # the garbage in front
                self.frames += 1
                return frame
        self.drops[result] += 1
        return None

    def _salvage(self, part: bytes | bytearray) -> Frame | None:
        # The frame sits at the end of the part, so offsets are tried from the end backwards: the
        # garbage in front (boot text, line noise) is never searched before the frame is found.
        # Only the last MAX_WIRE bytes can hold it, and the part's own start was already checked.
        tail = part[-MAX_WIRE:]
        m = len(tail)
        for tries, match in enumerate(_SALVAGE_START.finditer(tail[::-1], 0, m - 1)):
            if tries == MAX_SALVAGE_TRIES:
                break
            self.salvage_tries += 1
            candidate = self._check(tail[m - 2 - match.start() :])
            if type(candidate) is Frame:
                return candidate
        return None

    def _verify(self, body: bytes, end: int) -> bool:
        tag = body[end : end + TAG_LEN]
        signed = memoryview(body)[:end]
        if self.key is not None and hmac.compare_digest(hmac.digest(self.key, signed, "sha256")[:TAG_LEN], tag):
            return True
        if self.next_key is not None and hmac.compare_digest(
            hmac.digest(self.next_key, signed, "sha256")[:TAG_LEN], tag
        ):
            self.key, self.next_key = self.next_key, None
            self.key_rotations += 1
            return True
        return False

    def _check(self, part: bytes | bytearray) -> Frame | DropReason:
        n = len(part)
        if n > MAX_WIRE:
            return DropReason.TOO_LARGE
        try:
            body = cobs.decode(part)
        except cobs.DecodeError:
            return DropReason.FRAMING
        end = len(body) - 2
        if end < HEADER_LEN:
            return DropReason.FRAMING
        if end + 2 > MAX_BODY:  # up to 1028 bytes fit in MAX_WIRE of COBS, but SPEC caps the body at 1024
            return DropReason.TOO_LARGE
        if _crc16(body):  # the CRC travels big-endian, so over body + CRC it is 0
            return DropReason.CRC
        ver, mtype, flags, boot_id, seq, t_ms = HEADER.unpack_from(body)
        if ver != _lw.VERSION:
            return DropReason.BAD_VERSION
        if flags & _lw.FLAGS_INCOMPAT_MASK & ~_lw.FLAGS_INCOMPAT_KNOWN:
            return DropReason.BAD_FLAGS
        tagged = bool(flags & _lw.FLAG_TAGGED)
        if tagged:
            end -= TAG_LEN
            if end < HEADER_LEN:
                return DropReason.FRAMING
            if self.key is not None or self.next_key is not None:
                if not self._verify(body, end):
                    return DropReason.AUTH
                if not self.replay.check(boot_id, seq):
                    return DropReason.REPLAY
        elif self.require_tag:
            return DropReason.AUTH
        if mtype not in KNOWN_TYPES:
            self.unknown_types[mtype] += 1
            return DropReason.UNKNOWN_TYPE
        try:
            payload = msgpack.unpackb(memoryview(body)[HEADER_LEN:end], raw=False, strict_map_key=False)
        except Exception:  # msgpack raises several unrelated types for bad input
            return DropReason.BAD_PAYLOAD
        return Frame(mtype, flags, boot_id, seq, t_ms & 0x3FFFFFFF, payload, tagged, n + 1)


def encode_frame(
    mtype: int,
    payload: Any,
    boot_id: int,
    seq: int,
    t_ms: int,
    key: bytes | None = None,
) -> bytes:
    """One complete wire frame (delimiter included), e.g. host->board CONFIG/CONTROL/ACK."""
    body = bytearray(HEADER.pack(_lw.VERSION, mtype, _lw.FLAG_TAGGED if key else 0, boot_id & 0xFFFF,
                                 seq & 0xFFFF, t_ms % _lw.T_MS_MODULO))
    body += msgpack.packb(payload, use_bin_type=True)
    if len(body) + (TAG_LEN if key else 0) + 2 > MAX_BODY:
        raise ValueError(f"frame body of {len(body)} bytes exceeds {MAX_BODY}")
    if key:
        body += hmac.digest(key, bytes(body), "sha256")[:TAG_LEN]
    body += crc_hqx(bytes(body), 0xFFFF).to_bytes(2, "big")
    return cobs.encode(bytes(body)) + b"\x00"
