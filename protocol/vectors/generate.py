"""Regenerate the protocol v2 test vectors from lwproto: ``python protocol/vectors/generate.py``.

The vectors are what both interpreters are tested against (tests/test_lwproto.py,
tests/test_framing.py, tests/mpy/vectors.py), so the committed JSON must equal a fresh generation
(``--check`` exits 1 if it does not; a test runs the same comparison). Bytes are produced by
lwproto's FrameEncoder and packb; the tests then check them against the independent host path
(`msgpack`, `cobs`, `hmac`, the C Chaskey of `_fastframe`) so a generator bug cannot confirm itself.

File layout, chosen so a board with a 96 KiB heap can stream the files line by line: line 1 is
``{"meta": {...},``, line 2 is ``"cases": [``, then exactly one case object per line (comma
terminated except the last), then ``]}``. Payload objects are JSON with bytes written as
``{"hex": "..."}``; wire hex strings are complete frames, 0x00 delimiter included.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from liftwatch.protocol import lwota
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.messages import pack_journal_record
from liftwatch.protocol import lwtag
from liftwatch.protocol.chaskey import chaskey_tag

VECTORS_DIR = Path(__file__).resolve().parent
TEST_KEY = b"liftwatch-example-key-000000000!"  # 32-byte per-board key of SPEC.md's examples; tests only
OTHER_KEY = bytes(range(0x60, 0x80))  # a different board's key: its tags must not verify
BOARD_BOOT_ID = 0x0107  # boot counter of the example board

FLAG_COMPAT_EXAMPLE = 0x10  # a may-ignore bit no v2 reader knows
FLAG_INCOMPAT_UNKNOWN = 0x04  # a must-understand bit no v2 reader knows
# Frame cases the host sends (the rest are the board's): they carry FROM_HOST and the host->board key.
HOST_CASES = frozenset({"spec_control_calibrate", "ack_event", "time_sync_host", "config", "control_calibrate",
                        "ack_journal", "ota_chunk"})


# ---------------------------------------------------------------- realistic accelerometer samples


def realistic_vib_samples(count: int, seed: int, lsb_per_g: int = 16384) -> bytes:
    """``count`` x,y,z int16 LE samples of a running car: gravity on z, 1-30 Hz ride vibration of
    some 10-20 mg, sensor noise, 14-bit left-justified counts (multiples of 4) as a LIS2DW12 at +-2 g
    gives them. Deterministic in ``seed`` (integer LCG, no platform-dependent randomness)."""
    state = (seed * 2654435761 + 1) & 0xFFFFFFFF

    def noise(spread: int) -> int:
        nonlocal state
        total = 0
        for _ in range(4):  # sum of 4 uniforms: close enough to Gaussian sensor noise
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
            total += (state >> 8) % (2 * spread + 1) - spread
        return total // 2

    mg = lsb_per_g / 1000
    out = bytearray()
    rate_hz = 400
    for i in range(count):
        t = (seed * count + i) / rate_hz
        x = 12 * math.sin(2 * math.pi * 7.3 * t) + 5 * math.sin(2 * math.pi * 23.0 * t + 1.0)
        y = 9 * math.sin(2 * math.pi * 4.1 * t + 0.5) + 4 * math.sin(2 * math.pi * 17.5 * t)
        z = 1000 + 15 * math.sin(2 * math.pi * 11.0 * t + 2.0) + 6 * math.sin(2 * math.pi * 1.2 * t)
        for axis_mg in (x, y, z):
            counts = int(round(axis_mg * mg)) + noise(40)
            counts = max(-32768, min(32767, counts)) & ~3
            out += (counts & 0xFFFF).to_bytes(2, "little")
    return bytes(out)


# ---------------------------------------------------------------- JSON helpers


def to_json(obj: Any) -> Any:
    """Payload object -> JSON value (bytes as {"hex": ...}; tuples as lists)."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"hex": bytes(obj).hex()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj


def from_json(obj: Any) -> Any:
    """Inverse of to_json (a dict whose only key is "hex" is bytes)."""
    if isinstance(obj, dict):
        if len(obj) == 1 and "hex" in obj:
            return bytes.fromhex(obj["hex"])
        return {k: from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    return obj


# ---------------------------------------------------------------- frames


def encode(mtype: int, boot_id: int, seq: int, t_ms: int, payload: Any, key: bytes | None = None,
           extra_flags: int = 0, sender: int = lw.FROM_BOARD) -> bytes:
    """One frame through lwproto.FrameEncoder; ``extra_flags`` are ORed into the header after begin()."""
    enc = lw.FrameEncoder(key, sender=sender)
    off = enc.begin(mtype, boot_id, seq, t_ms)
    enc.body[2] |= extra_flags
    n = enc.finish(lw.pack_into(enc.body, off, payload))
    return bytes(enc.wire[:n])


def seal(body: bytes, key: bytes | None = None, sender: int = lw.FROM_BOARD) -> bytes:
    """Add tag (if key, under ``sender``'s direction key), CRC and COBS to a hand-made body: for
    frames FrameEncoder refuses to build."""
    buf = bytearray(body)
    if key:
        buf += chaskey_tag(lwtag.direction_key(key, sender), bytes(buf))
    buf += lw.crc16(buf, 0, len(buf)).to_bytes(2, "big")
    out = bytearray(len(buf) + len(buf) // 254 + 2)
    n = lw.cobs_encode_into(buf, len(buf), out)
    return bytes(out[:n]) + b"\x00"


def body_of(wire: bytes) -> bytearray:
    """Decoded body (header..CRC) of a wire frame."""
    out = bytearray(len(wire))
    n = lw.cobs_decode_into(wire, len(wire) - 1, out)
    assert n > 0
    return out[:n]


def frame_cases() -> list[dict[str, Any]]:
    vib64 = realistic_vib_samples(64, seed=1)
    vib_max = realistic_vib_samples(164, seed=2)  # the largest VIB that still fits tagged (body 1019)
    no_zero_run = bytes(range(1, 256)) * 2  # 510 non-zero bytes: COBS 0xFF blocks, incl. the end rule
    b = BOARD_BOOT_ID
    rows: list[tuple[str, str, int, int, int, int, Any, int]] = [
        # name, what it shows, type, boot_id, seq, t_ms, payload, extra flags
        # SPEC.md section 6 worked examples (the CONTROL one is the tagged frame there)
        ("spec_heartbeat", "SPEC.md worked example", lw.T_HEARTBEAT, 42, 7, 123456, [3600, 61234, 0, 0, 25, True, False], 0),
        ("spec_state", "SPEC.md worked example", lw.T_STATE, 42, 8, 123500, [123498, 14, 1, 0], 0),
        ("spec_vib", "SPEC.md worked example", lw.T_VIB, 42, 9, 123510,
         [400, 16384, 1000, 2, bytes.fromhex("0c00f8ff06400a00f9ff1240")], 0),
        ("spec_control_calibrate", "SPEC.md worked example (tagged_hex)", lw.T_CONTROL, 42, 1, 5000, [2, 0], 0),
        ("hello", "board greeting after boot", lw.T_HELLO, b, 0, 1532,
         ["lw-3c71bf0a12c4", "1.0.0", "lis2dw12", 0x2A3B4C5, "power_on", ["vib", "stats", "tag"], 400, 16384,
          True, False, 263, [118, -342, 16301]], 0),
        ("hello_uncalibrated", "gravity is null before calibration", lw.T_HELLO, b, 1, 1533,
         ["lw-3c71bf0a12c4", "1.0.0", "adxl355", 0, "wdt", [], 125, 256000, False, True, 264, None], 0),
        ("state_door_opens", "door_closed cleared in the up zone", lw.T_STATE, b, 2, 1017342,
         [1017330, 0b000010, 0b000001, 0], 0),
        ("state_alarm_moving", "alarm button pressed while moving", lw.T_STATE, b, 3, 1030001,
         [1030000, 0b100001, 0b100000, 2], 0),
        ("vib_64", "a realistic 64-sample block (the sampling path's frame)", lw.T_VIB, b, 4, 1031000,
         [400, 16384, 2560, 64, vib64], 0),
        ("vib_4", "a short block, easy to read by hand", lw.T_VIB, b, 5, 1031160,
         [400, 16384, 2624, 4, realistic_vib_samples(4, seed=3)], 0),
        ("vib_max", "164 samples: the largest VIB whose tagged body fits 1024 bytes", lw.T_VIB, b, 6, 1031170,
         [400, 16384, 2628, 164, vib_max], 0),
        ("stats", "at-rest summary", lw.T_STATS, b, 7, 1041000,
         [10000, 1000, [7, -21, 996], [1, 1, 2], 4, 0], 0),
        ("event_outside_zone", "stopped outside door zone, raised", lw.T_EVENT, b, 8, 1042000,
         [42, 2, 1, 1041990, {"leveling_offset_mm": -137, "door_closed": True, "inputs": 1}], 0),
        ("counters", "persistent counters", lw.T_COUNTERS, b, 9, 1043000,
         [15204, 7331, 864123, 263, 0, 2, 3, 0], 0),
        ("heartbeat", "periodic liveness", lw.T_HEARTBEAT, b, 10, 1044000,
         [1044, 61234, 0, 0, 1, True, False], 0),
        ("heartbeat_extra_fields", "a newer board appended two fields: readers keep the known ones",
         lw.T_HEARTBEAT, b, 11, 1045000, [1045, 61200, 1, 0, 1, True, False, 3, "future"], 0),
        ("heartbeat_compat_flag", "flags bit 4 (may-ignore) set: accepted", lw.T_HEARTBEAT, b, 12, 1046000,
         [1046, 61180, 0, 0, 1, True, False], FLAG_COMPAT_EXAMPLE),
        ("ack_event", "board acks nothing; host acks EVENT 42", lw.T_ACK, b, 13, 1047000,
         [lw.T_EVENT, 42, 0, "", None], 0),
        ("ack_config_rejected", "board refuses a CONFIG, with reason and extra", lw.T_ACK, b, 14, 1047100,
         [lw.T_CONFIG, 7, 2, "rate_hz: not in (100, 200, 400)", 0x2A3B4C5], 0),
        ("time_sync_host", "host->board: unix ms needs uint64", lw.T_TIME_SYNC, b, 15, 0,
         [1764099000123], 0),
        ("time_sync_reply", "board->host echo with board time", lw.T_TIME_SYNC, b, 16, 1048000,
         [1764099000123, 1048000], 0),
        ("config", "host->board settings map (float64, str, bool, int)", lw.T_CONFIG, b, 17, 0,
         [{"stats_window_ms": 10000, "vib_stream": True, "rate_hz": 400, "site": "SH-0042", "gain": 1.5,
           "door_open_limit_ms": 60000}], 0),
        ("control_calibrate", "host->board command", lw.T_CONTROL, b, 18, 0, [2, 0], 0),
        ("ota_chunk", "host->board firmware bundle bytes (bin 8)", lwota.T_OTA_CHUNK, b, 21, 0,
         [0x1234567, 512, 63000, bytes(range(256))], 0),
        ("ota_status", "board->host where a firmware update stands", lwota.T_OTA_STATUS, b, 22, 1051000,
         [0x1234567, 768, lwota.OTA_RECEIVING, ""], 0),
        ("wrap_edges", "seq 65535, t_ms 2**30-1, boot_id 65535", lw.T_HEARTBEAT, 0xFFFF, 0xFFFF,
         lw.T_MS_MODULO - 1, [4294967, 0, 0, 255, 0, False, True], 0),
        ("cobs_long_run", "510 non-zero payload bytes: COBS 0xFF blocks", lw.T_ACK, b, 19, 1049000,
         [lw.T_CONFIG, 8, 0, "", no_zero_run], 0),
        ("unknown_type", "type 200 from a newer board: readers skip and count it", 200, b, 20, 1050000,
         [1, "x"], 0),
        # The board's journal (SPEC.md section 5, JOURNAL): a trip record, the worked example of section 6
        ("spec_journal_trip", "SPEC.md worked example: a journal trip up one floor", lw.T_JOURNAL, 42, 30, 13500,
         ["0badc0ffee00", pack_journal_record(41, lw.J_TRIP, 42, 4320, 13240, 1, 1, 1554, 7, 7), 0], 0),
        ("journal_door_cycle", "a door cycle with one reopening, from an earlier boot", lw.T_JOURNAL, b, 21, 1051000,
         ["lw-3c71bf0a12c4", pack_journal_record(1000, lw.J_DOOR_CYCLE, b - 1, 16011, 23011, 0, 1, 0, 14, 15), 2], 0),
        ("journal_inspection", "an inspection period, seq at the u30 top", lw.T_JOURNAL, b, 22, 1052000,
         ["lw-3c71bf0a12c4", pack_journal_record(lw.T_MS_MODULO - 1, lw.J_INSPECTION, b, 1000000, 1900000, 0, 0, 0,
                                                 0x17, 0x07), 0], 0),
        ("ack_journal", "host acks journal record 41 once stored", lw.T_ACK, b, 23, 0,
         [lw.T_JOURNAL, 41, 0, "", None], 0),
    ]
    cases = []
    for name, what, mtype, boot_id, seq, t_ms, payload, extra in rows:
        msgpack_bytes = lw.packb(payload)
        sender = lw.FROM_HOST if name in HOST_CASES else lw.FROM_BOARD
        if sender == lw.FROM_HOST:
            extra |= lw.FLAG_FROM_HOST
        plain = encode(mtype, boot_id, seq, t_ms, payload, None, extra, sender)
        tagged = encode(mtype, boot_id, seq, t_ms, payload, TEST_KEY, extra, sender)
        cases.append({
            "name": name,
            "what": what,
            "type": mtype,
            "sender": "host" if sender == lw.FROM_HOST else "board",
            "header": {"ver": lw.VERSION, "type": mtype, "flags": extra, "boot_id": boot_id, "seq": seq,
                       "t_ms": t_ms},
            "payload": to_json(payload),
            "msgpack_hex": msgpack_bytes.hex(),
            "framed_hex": plain.hex(),
            "tagged_flags": extra | lw.FLAG_TAGGED,
            "tagged_hex": tagged.hex(),
        })
    return cases


# ---------------------------------------------------------------- msgpack encodings


def msgpack_cases() -> list[dict[str, Any]]:
    """Every encoding boundary of the subset lwproto packs (smallest form, as msgpack.packb)."""
    ints = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1,
            -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)]
    objs: list[tuple[str, Any, bool]] = [("nil", None, False), ("true", True, False), ("false", False, False)]
    objs += [(f"int_{v}", v, False) for v in ints]
    objs += [("float64_zero", 0.0, False), ("float64_neg", -1.5, False), ("float64_big", 1e300, False),
             ("float64_tiny", 5e-324, False), ("float32_one_and_half", 1.5, True),
             ("float32_g", 9.80665, True)]
    for n in (0, 1, 31, 32, 255, 256):
        objs.append((f"str_{n}", "e" * n, False))
    objs.append(("str_utf8", "电梯 lift ✓", False))
    for n in (0, 1, 255, 256):
        objs.append((f"bin_{n}", bytes((i * 7 + 1) & 0xFF for i in range(n)), False))
    for n in (0, 15, 16):
        objs.append((f"array_{n}", list(range(n)), False))
        objs.append((f"map_{n}", {f"k{i}": i for i in range(n)}, False))
    objs.append(("nested", {"a": [1, [2, [3, {"b": None}]]], "c": {"d": b"\x00\x01"}}, False))
    cases = []
    for name, obj, single in objs:
        cases.append({"name": name, "object": to_json(obj), "single_float": single,
                      "msgpack_hex": lw.packb(obj, single).hex()})
    return cases


# ---------------------------------------------------------------- damaged and refused frames


def _flip(wire: bytes, index: int, mask: int = 0x40) -> bytes:
    out = bytearray(wire)
    out[index] ^= mask
    assert out[index] != 0
    return bytes(out)


def corrupt_cases() -> list[dict[str, Any]]:
    """Streams of frames with the reason each one is dropped for.

    Every stream is what a board sends, so both readers read board->host frames: ``host`` is what
    FrameReader(key, require_tag) does with each frame fed in order ("ok" or a DropReason name in
    lower case); ``board`` is what lwproto.FrameDecoder(key, sender=FROM_BOARD) (the codec both
    interpreters share) raises for each frame decoded alone. That decoder leaves the replay rule and
    the unknown-type count to its caller (it returns boot_id, seq and type), so replayed and
    unknown-type frames are "ok" there.
    """
    b = BOARD_BOOT_ID
    hb = [1044, 61234, 0, 0, 1, True, False]
    vib = [400, 16384, 2560, 16, realistic_vib_samples(16, seed=4)]
    good = encode(lw.T_HEARTBEAT, b, 10, 1044000, hb)
    good_vib = encode(lw.T_VIB, b, 11, 1044010, vib)
    tagged = encode(lw.T_HEARTBEAT, b, 10, 1044000, hb, TEST_KEY)

    def body(mtype=lw.T_HEARTBEAT, flags=0, ver=lw.VERSION, payload_bytes=None, seq=10):
        buf = bytearray(lw.HEADER_LEN)
        lw.write_header(buf, mtype, flags, b, seq, 1044000)
        buf[0] = ver
        return bytes(buf) + (lw.packb(hb) if payload_bytes is None else payload_bytes)

    body_1025 = body(lw.T_VIB, payload_bytes=lw.packb([400, 16384, 0, 166, b"\x01" * 999]))
    assert len(body_1025) + 2 == lw.MAX_BODY + 1

    flipped_tag = bytearray(body_of(tagged)[:-2])
    flipped_tag[-3] ^= 0x01  # a tag byte, CRC recomputed: a forgery the CRC cannot catch
    stripped = bytearray(body_of(tagged)[:-2 - lw.TAG_LEN])
    stripped[2] &= ~lw.FLAG_TAGGED  # tag removed and flag cleared, CRC recomputed

    open_rows = [
        ("crc_payload_flip", "one payload bit flipped on the wire", [(_flip(good_vib, 40), "crc", "crc")]),
        ("crc_field_flip", "one bit of the CRC itself flipped", [(_flip(good, len(good) - 2, 0x01), "crc", "crc")]),
        ("cobs_code_past_end", "first COBS code points past the frame end",
         [(bytes([0xFE]) + good[1:], "framing", "framing")]),
        ("truncated", "frame cut inside a COBS block, then a delimiter", [(good_vib[:25] + b"\x00", "framing", "framing")]),
        ("too_short", "a body shorter than header + CRC", [(bytes([6, 1, 7, 1, 2, 3]) + b"\x00", "framing", "framing")]),
        ("too_large_wire", "1100 bytes without a delimiter", [(b"\x55" * 1100 + b"\x00", "too_large", "too_large")]),
        ("too_large_body", "valid COBS and CRC but a 1025-byte body", [(seal(body_1025), "too_large", "too_large")]),
        ("bad_version", "protocol version 3", [(seal(body(ver=3)), "bad_version", "bad_version")]),
        ("bad_version_v1", "a v1 frame (a board not reflashed since the upgrade)",
         [(seal(body(ver=1)), "bad_version", "bad_version")]),
        ("reflected_host_frame", "a host frame (direction flag set) fed back to the host",
         [(encode(lw.T_TIME_SYNC, b, 5, 5000, [1764099000123], sender=lw.FROM_HOST), "direction", "direction")]),
        ("host_type_from_board", "CONFIG without the host's flag: a type the board never sends",
         [(seal(body(mtype=lw.T_CONFIG, payload_bytes=lw.packb([{"rate_hz": 400}]))), "direction", "direction")]),
        ("bad_flags", "unknown must-understand flag bit 1", [(seal(body(flags=FLAG_INCOMPAT_UNKNOWN)), "bad_flags", "bad_flags")]),
        ("compat_flag_ok", "unknown may-ignore flag bit 7", [(seal(body(flags=0x80)), "ok", "ok")]),
        ("unknown_type", "type 200 is skipped and counted", [(seal(body(mtype=200)), "unknown_type", "ok")]),
        ("bad_payload_reserved", "msgpack 0xc1 (never used)", [(seal(body(payload_bytes=b"\xc1")), "bad_payload", "bad_payload")]),
        ("bad_payload_trailing", "payload followed by a stray byte", [(seal(body(payload_bytes=lw.packb(hb) + b"\x01")), "bad_payload", "bad_payload")]),
        ("bad_payload_short_array", "array header says 7, 3 items follow", [(seal(body(payload_bytes=b"\x97\x01\x02\x03")), "bad_payload", "bad_payload")]),
        ("tag_flag_without_room", "TAGGED set but the body has no room for a tag", [(seal(body(flags=lw.FLAG_TAGGED, payload_bytes=b"\x90")), "framing", "framing")]),
        ("garbage_then_frame", "line noise before a good frame costs nothing",
         [(b"\x11\x22\x33\x00", "framing", "framing"), (good, "ok", "ok")]),
        ("tagged_to_keyless_reader", "a reader without a key accepts a tagged frame unverified", [(tagged, "ok", "ok")]),
    ]
    keyed_rows = [
        ("auth_good", "a tagged frame under the right key", [(tagged, "ok", "ok")]),
        ("auth_wrong_key", "tag made with another board's key",
         [(encode(lw.T_HEARTBEAT, b, 10, 1044000, hb, OTHER_KEY), "auth", "auth")]),
        ("auth_stripped_tag", "tag removed, flag cleared, CRC fixed, while tags are required",
         [(seal(bytes(stripped)), "auth", "auth")]),
        ("auth_flipped_tag_byte", "one tag bit flipped and the CRC fixed", [(seal(bytes(flipped_tag)), "auth", "auth")]),
        ("replay_same_boot", "the same (boot_id, seq) twice",
         [(tagged, "ok", "ok"), (tagged, "replay", "ok")]),
        ("replay_older_boot", "a frame from the previous boot after one from this boot",
         [(encode(lw.T_HEARTBEAT, b, 3, 5000, hb, TEST_KEY), "ok", "ok"),
          (encode(lw.T_HEARTBEAT, b - 1, 900, 9000000, hb, TEST_KEY), "replay", "ok")]),
        ("replay_outside_window", "seq 100 then seq 20 (more than 64 behind)",
         [(encode(lw.T_HEARTBEAT, b, 100, 5000, hb, TEST_KEY), "ok", "ok"),
          (encode(lw.T_HEARTBEAT, b, 20, 4000, hb, TEST_KEY), "replay", "ok")]),
        ("late_inside_window", "seq 10, 12, then a late 11: all fresh",
         [(encode(lw.T_HEARTBEAT, b, s, 5000 + s, hb, TEST_KEY), "ok", "ok") for s in (10, 12, 11)]),
        ("reflected_tagged_host_frame", "a host TIME_SYNC tagged with the same board key, fed back to the host",
         [(tagged, "ok", "ok"), (encode(lw.T_TIME_SYNC, b, 40000, 5000, [1764099000123], TEST_KEY, sender=lw.FROM_HOST),
                                 "direction", "direction"), (encode(lw.T_HEARTBEAT, b, 11, 1044010, hb, TEST_KEY), "ok", "ok")]),
        ("host_key_board_flag", "direction flag cleared on a host frame and the CRC fixed: the host key's tag fails",
         [(seal(body(mtype=lw.T_TIME_SYNC, flags=lw.FLAG_TAGGED, payload_bytes=lw.packb([1764099000123])), TEST_KEY,
                lw.FROM_HOST),
           "auth", "auth")]),
        ("refused_frame_moves_no_window", "a well-tagged frame with a bad payload at seq 12, then the real seq 12",
         [(tagged, "ok", "ok"), (seal(body(flags=lw.FLAG_TAGGED, payload_bytes=b"\xc1", seq=12), TEST_KEY), "bad_payload", "bad_payload"),
          (encode(lw.T_HEARTBEAT, b, 12, 1044020, hb, TEST_KEY), "ok", "ok")]),
        ("unknown_type_moves_no_window", "a well-tagged type 200 at seq 13, then the real seq 13",
         [(tagged, "ok", "ok"), (seal(body(mtype=200, flags=lw.FLAG_TAGGED, seq=13), TEST_KEY), "unknown_type", "ok"),
          (encode(lw.T_HEARTBEAT, b, 13, 1044030, hb, TEST_KEY), "ok", "ok")]),
        ("new_boot_accepted", "the next boot starts a fresh sequence",
         [(encode(lw.T_HEARTBEAT, b, 500, 5000, hb, TEST_KEY), "ok", "ok"),
          (encode(lw.T_HEARTBEAT, b + 1, 0, 10, hb, TEST_KEY), "ok", "ok")]),
    ]
    cases = []
    for rows, key, require in ((open_rows, None, False), (keyed_rows, TEST_KEY, True)):
        for name, what, frames in rows:
            cases.append({
                "name": name,
                "what": what,
                "key_hex": key.hex() if key else None,
                "require_tag": require,
                "frames": [{"wire_hex": w.hex(), "host": h, "board": bd} for w, h, bd in frames],
            })
    return cases


# ---------------------------------------------------------------- files


def _dump(meta: dict[str, Any], cases: list[dict[str, Any]]) -> str:
    lines = ['{"meta": ' + json.dumps(meta, ensure_ascii=False, sort_keys=True) + ",", '"cases": [']
    body = [json.dumps(c, ensure_ascii=False) for c in cases]  # dict order is map order on the wire
    lines += [row + "," for row in body[:-1]] + body[-1:]
    lines.append("]}")
    return "\n".join(lines) + "\n"


def generate() -> dict[str, str]:
    """File name -> exact text of every vectors file."""
    common = {"protocol_version": lw.VERSION, "generator": "protocol/vectors/generate.py"}
    return {
        "frames.json": _dump(
            {**common, "what": "one frame per message type: header, payload, msgpack, wire frame without and "
                               "with tag (wire hex includes the 0x00 delimiter)",
             "test_key_hex": TEST_KEY.hex(),
             "tag": "Chaskey-12(direction key, body before tag)[:8]; direction key = "
                    "HMAC-SHA256(test_key, 'liftwatch v2 tag board->host' or 'liftwatch v2 tag host->board')[:16], "
                    "by the case's sender",
             "crc": "CRC-16/CCITT-FALSE over body (+tag), big-endian"},
            frame_cases()),
        "msgpack.json": _dump(
            {**common, "what": "msgpack encodings at every size boundary; single_float packs floats as float32"},
            msgpack_cases()),
        "corrupt.json": _dump(
            {**common, "what": "damaged and refused frames; host = FrameReader(key, require_tag) fed in order, "
                               "board = lwproto.FrameDecoder(key) per frame",
             "test_key_hex": TEST_KEY.hex(), "other_key_hex": OTHER_KEY.hex()},
            corrupt_cases()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files differ")
    args = parser.parse_args(argv)
    stale = []
    for name, text in generate().items():
        path = VECTORS_DIR / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale vectors (run protocol/vectors/generate.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
