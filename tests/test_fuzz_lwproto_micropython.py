"""Fuzzing the board-side decoder under the real MicroPython (-X heapsize=96k, via liftwatch.upy).

The host makes a few thousand mutated host->board and board->host frames (bit flips, inserted,
deleted and zeroed bytes, truncation, splices, and mutations *resealed* with a fresh tag, CRC and
COBS so they reach the msgpack decoder: absurd lengths, deep nesting, bad UTF-8, ext types; a
quarter are the board's own frames, fed back as a reflection must be refused, and sequence numbers
and boot ids take any value) and
one MicroPython process decodes them all with `lwproto.FrameDecoder` (no key, with a key, and the
firmware's own 512-byte link decoder behind a `FrameAssembler` fed in UART-sized pieces). Required:
only `ProtocolError` with a known reason, never another exception, never a MemoryError on inputs
within MAX_WIRE, the heap back where it was afterwards; and the same verdict as CPython running
the same lwproto on the same input (one codec, two interpreters).
Budget: tests/support/fuzzing.py (``LIFTWATCH_FUZZ_EXAMPLES``; default 3 x 1000 frames).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import msgpack
import pytest
from cobs import cobs

from support.fuzzing import budget
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol import lwtag
from liftwatch.protocol.chaskey import chaskey_tag
from liftwatch.protocol.framing import encode_frame
from support.fwharness import mpy_dir

from liftwatch.upy import run_micropython

pytestmark = pytest.mark.micropython

KEY = b"liftwatch-example-key-000000000!"
LINK_MAX_BODY = 512  # firmware/link.py SLOT_BYTES: the decoder the firmware really runs

BOARD_SCRIPT = r"""
import gc, sys, struct
import lwproto
KEY = b"liftwatch-example-key-000000000!"
decoders = (lwproto.FrameDecoder(), lwproto.FrameDecoder(KEY))
link_dec = lwproto.FrameDecoder(KEY, max_body=%(link)d)
asm = lwproto.FrameAssembler(%(link)d + 8)
buf = bytearray(%(maxrec)d)
mv = memoryview(buf)
hdr = bytearray(2)
gc.collect()
heap_before = gc.mem_alloc()
out = sys.stdout
n_cases = 0
with open(sys.argv[1], "rb") as f:
    while f.readinto(hdr) == 2:
        n = hdr[0] | (hdr[1] << 8)
        f.readinto(mv[:n])
        verdicts = []
        for d in decoders:
            try:
                d.decode(buf, n)
                verdicts.append("0")
            except lwproto.ProtocolError as e:
                verdicts.append(str(e.reason) if 1 <= e.reason < len(lwproto.REASON_NAMES) else "BADREASON")
            except MemoryError:
                verdicts.append("MEM")
            except Exception as e:
                verdicts.append("X:" + type(e).__name__ + ":" + str(e).replace(" ", "_"))
        out.write(" ".join(verdicts) + "\n")
        n_cases += 1
        # The same bytes as a UART stream through the firmware's assembler and link decoder.
        buf[n] = 0
        start = 0
        while start <= n:
            take = min(64, n + 1 - start)
            pos = start
            while pos < start + take:
                nxt = asm.push(buf, pos, start + take - pos)
                if nxt < 0:
                    break
                try:
                    link_dec.decode(asm.frame, asm.length)
                except lwproto.ProtocolError as e:
                    if not 1 <= e.reason < len(lwproto.REASON_NAMES):
                        out.write("LINK BADREASON\n")
                except MemoryError:
                    out.write("LINK MEM\n")
                except Exception as e:
                    out.write("LINK X:" + type(e).__name__ + ":" + str(e) + "\n")
                pos = nxt
            start += take
gc.collect()
out.write("END %%d %%d %%d\n" %% (n_cases, heap_before, gc.mem_alloc()))
"""


def _seal(body: bytearray, key: bytes | None) -> bytes:
    """Tag (if keyed and flagged), CRC and COBS over a possibly mutated body: reaches the payload decoder."""
    body = bytearray(body)
    if key is not None and len(body) > 2 and body[2] & lw.FLAG_TAGGED:
        sender = lw.sender_of(body[2])  # the key of the direction the (mutated) flags claim
        body += chaskey_tag(lwtag.direction_key(key, sender), bytes(body))
    body += lw.crc16(body, 0, len(body)).to_bytes(2, "big")
    return cobs.encode(bytes(body))


_HOSTILE_PAYLOADS = [
    b"\xdd\xff\xff\xff\xff",  # array of 4 billion
    b"\xdf\x7f\xff\xff\xff",  # map of 2 billion
    b"\xc6\xff\xff\xff\xff",  # bin of 4 GiB
    b"\xdb\x00\x10\x00\x00abc",  # str of 1 MiB
    b"\x91" * 200 + b"\x00",  # nesting 200 deep
    b"\x81" * 50 + b"\xa1k" * 50 + b"\x00",
    b"\x92\xa2\xff\xfe\x01",  # invalid UTF-8
    b"\x92\xa3\xed\xa0\x80\x01",  # UTF-8 surrogate
    b"\xc7\x01\x05x",  # ext 8
    b"\xd4\x01\x01",  # fixext 1
    b"\xc1",  # never used
    b"\x82\x90\x01\x02\x03",  # array as a map key
    b"\x81\xc0\x01",  # nil as a map key
    b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN
    b"\x92\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xd3\x80\x00\x00\x00\x00\x00\x00\x00",  # u64 max, i64 min
    b"\x95\x01\x02",  # truncated array
    b"\x90\x90",  # trailing bytes
]


def make_cases(n: int, seed: int) -> list[bytes]:
    """n wire frames (without delimiter), about half reaching the payload decoder."""
    rng = random.Random(seed)
    cases: list[bytes] = []

    def rand_value(depth: int = 0):
        kind = rng.randrange(9 if depth < 3 else 6)
        return [lambda: rng.randrange(-(1 << 40), 1 << 40), lambda: rng.random() < 0.5, lambda: None,
                lambda: "".join(rng.choice("abcé字") for _ in range(rng.randrange(12))),
                lambda: rng.randbytes(rng.randrange(40)), lambda: rng.uniform(-1e6, 1e6),
                lambda: [rand_value(depth + 1) for _ in range(rng.randrange(4))],
                lambda: {f"k{rng.randrange(9)}": rand_value(depth + 1) for _ in range(rng.randrange(4))},
                lambda: rng.randrange(1 << 64)][kind]()

    while len(cases) < n:
        key = KEY if rng.random() < 0.5 else None
        sender = lw.FROM_BOARD if rng.random() < 0.25 else lw.FROM_HOST  # the board's own frames, reflected
        if sender == lw.FROM_HOST:
            mtype = rng.choice((lw.T_CONFIG, lw.T_CONTROL, lw.T_ACK, lw.T_TIME_SYNC, rng.randrange(256)))
        else:
            mtype = rng.choice((lw.T_HEARTBEAT, lw.T_STATE, lw.T_EVENT, lw.T_ACK, lw.T_TIME_SYNC))
        payload = [rand_value() for _ in range(rng.randrange(6))]
        if mtype == lw.T_CONFIG:
            payload = [{f"setting_{i}": rand_value() for i in range(rng.randrange(6))}]
        try:
            wire = encode_frame(mtype, payload, rng.randrange(1 << 16), rng.randrange(1 << 16),
                                rng.randrange(1 << 30), key=key, sender=sender)[:-1]
        except ValueError:
            continue
        body = bytearray(cobs.decode(wire))[:-2]
        if key is not None:
            del body[-lw.TAG_LEN:]
        how = rng.randrange(12)
        if how == 0:
            cases.append(wire)  # valid
            continue
        if how <= 4:  # raw damage on the wire
            w = bytearray(wire)
            for _ in range(rng.randrange(1, 4)):
                op = rng.randrange(5)
                if op == 0 and w:
                    w[rng.randrange(len(w))] ^= 1 << rng.randrange(8)
                elif op == 1:
                    w.insert(rng.randrange(len(w) + 1), rng.randrange(256))
                elif op == 2 and len(w) > 1:
                    del w[rng.randrange(len(w))]
                elif op == 3:
                    del w[rng.randrange(1, len(w) + 1):]
                else:
                    w[rng.randrange(len(w)):] = rng.randbytes(rng.randrange(1, 30))
            cases.append(bytes(w).replace(b"\x00", b"\x01") or b"\x01")
            continue
        # Resealed: damage inside the body (header or payload), then a valid tag, CRC and COBS.
        if how <= 7:
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(body))
                body[i] = rng.randrange(256) if rng.random() < 0.5 else body[i] ^ (1 << rng.randrange(8))
        elif how <= 9:
            body[lw.HEADER_LEN:] = rng.choice(_HOSTILE_PAYLOADS) if rng.random() < 0.6 else rng.randbytes(rng.randrange(60))
        elif how == 10:
            body[lw.HEADER_LEN:] = msgpack.packb(rand_value()) + (rng.randbytes(rng.randrange(3)))
        else:  # oversized: a body up to MAX_BODY + 30 (bigger than a frame may be; must be TOO_LARGE, no crash)
            body += rng.randbytes(rng.randrange(max(1, lw.MAX_BODY - len(body) - 40), lw.MAX_BODY - len(body) + 30))
        cases.append(_seal(body, key))
    return cases


def cpython_verdicts(wire: bytes) -> tuple[list[str], list[str]]:
    """(reason per decoder, error text per decoder) of CPython's run of the same lwproto."""
    out, details = [], []
    for d in (lw.FrameDecoder(), lw.FrameDecoder(KEY)):
        buf = bytearray(wire) + bytearray(16)
        try:
            d.decode(buf, len(wire))
            out.append("0")
            details.append("")
        except lw.ProtocolError as e:
            out.append(str(e.reason))
            details.append(str(e))
    return out, details


def _utf8_divergence(board: list[str], host: list[str], host_details: list[str]) -> bool:
    """The one known difference: MicroPython's UTF-8 check is structural (lead byte + continuation
    bytes), so it lets overlong forms (C0/C1 ..) and encoded surrogates (ED A0..BF ..) through where
    CPython refuses them. Harmless on the board (such a string matches no CONFIG key and is refused
    by name), so it is tolerated, and only where CPython's refusal is exactly "bad utf-8"."""
    return all(b == h or (b == "0" and h == str(lw.R_BAD_PAYLOAD) and d.endswith("bad utf-8"))
               for b, h, d in zip(board, host, host_details))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_board_decoder_survives_mutated_frames_under_micropython(tmp_path: Path, seed: int) -> None:
    cases = make_cases(budget(3.0), seed)
    max_rec = max(len(c) for c in cases) + 16
    records = tmp_path / "cases.bin"
    records.write_bytes(b"".join(struct.pack("<H", len(c)) + c for c in cases))
    script = tmp_path / "fuzz_board.py"
    script.write_text(BOARD_SCRIPT % {"link": LINK_MAX_BODY, "maxrec": max_rec})
    result = run_micropython([str(script), str(records)], paths=(mpy_dir(),), timeout=240)  # the deploy form (.mpy)
    out = result.stdout.decode(errors="replace")
    assert result.returncode == 0, out[-2000:] + result.stderr.decode(errors="replace")
    lines = out.splitlines()
    assert lines[-1].startswith("END "), lines[-3:]
    _, n_cases, heap_before, heap_after = lines[-1].split()
    assert int(n_cases) == len(cases)
    assert not [line for line in lines if line.startswith("LINK")], [line for line in lines if line.startswith("LINK")][:5]
    verdict_lines = lines[:-1]
    reached_payload = 0
    mismatches = []
    for wire, line in zip(cases, verdict_lines):
        board = line.split()
        assert all(v == "0" or v.isdigit() for v in board), (wire.hex(), board)  # no MEM, no other exception
        host, details = cpython_verdicts(wire)
        if board != host and not _utf8_divergence(board, host, details):
            mismatches.append((wire.hex(), board, host))
        reached_payload += board[0] in ("0", str(lw.R_BAD_PAYLOAD))
    assert not mismatches, mismatches[:5]
    assert reached_payload > len(cases) // 4  # the resealed mutations really exercise unpack
    assert int(heap_after) - int(heap_before) < 2048  # nothing kept growing on the board's heap
