"""`liftwatch record`: frames from a board's data port become a trace CSV the mock board can replay."""

from __future__ import annotations

import os
import pty
import struct
import subprocess
import sys
import tty
from pathlib import Path

from liftwatch.protocol.trace import DOOR_CLOSED, ZONE_DN, ZONE_UP, read_trace
from liftwatch.protocol.framing import encode_frame
from liftwatch.protocol.messages import MessageType

LSB_PER_G = 1000  # 1 count = 1 mg keeps the expected values readable


def _record(tmp_path: Path, frames: list[bytes]) -> list:
    master, slave = pty.openpty()
    tty.setraw(slave)
    out = tmp_path / "rec.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "liftwatch", "record", os.ttyname(slave), "--out", str(out), "--duration-s", "3"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert "reading" in proc.stderr.readline()
    os.write(master, b"".join(frames))
    assert proc.wait(20) == 0, proc.stderr.read()
    os.close(master)
    os.close(slave)
    return list(read_trace(out))


def test_record_places_vib_blocks_on_board_time_across_a_long_rest(tmp_path: Path) -> None:
    """first_index wraps every 164 s at 400 Hz while the car rests and sends no VIB: 200 s later the
    next block must land 200 s later, not 200 - 163.84 s."""

    def vib(first_index: int, t_ms: int) -> bytes:
        return encode_frame(MessageType.VIB, [400, LSB_PER_G, first_index, 4, struct.pack("<12h", *([0, 0, 1000] * 4))],
                            1, first_index & 0xFFFF, t_ms)

    rows = _record(tmp_path, [vib(65534, 1000), vib((65534 + 80_000) % 65536, 201_000)])
    assert [r.t_us for r in rows] == [992_500 + 2500 * i for i in range(4)] + [200_992_500 + 2500 * i for i in range(4)]


def test_record_writes_vib_stats_and_state_in_time_order(tmp_path: Path) -> None:
    frames = [
        encode_frame(MessageType.STATS, [1000, 400, [0, -1000, 0], [1, 1, 1], 2, 0], 1, 1, 500),
        encode_frame(MessageType.STATE, [900, DOOR_CLOSED | ZONE_UP | ZONE_DN, DOOR_CLOSED, 0], 1, 2, 900),
        # 4 samples from sample index 65534 (wraps): 400 Hz -> 2500 us apart
        encode_frame(
            MessageType.VIB,
            [400, LSB_PER_G, 65534, 4, struct.pack("<12h", 0, -1000, 5, 1, -1010, 4, 2, -1020, 3, 3, -1030, 2)],
            1,
            3,
            1000,
        ),
        encode_frame(
            MessageType.VIB,
            [400, LSB_PER_G, 2, 2, struct.pack("<6h", 4, -1040, 1, 5, -1050, 0)],
            1,
            4,
            1010,
        ),
        b"\x01\x02garbage\x00",  # line noise is dropped by the frame reader, not fatal
    ]
    rows = _record(tmp_path, frames)
    assert [r.t_us for r in rows] == sorted(r.t_us for r in rows)
    vib = [r for r in rows if r.t_us > 900_000]  # after the STATE at 900 ms of board time
    assert [(r.ax_mg, r.ay_mg) for r in vib] == [(0, -1000), (1, -1010), (2, -1020), (3, -1030), (4, -1040), (5, -1050)]
    # On board time: the frame's time is its last sample's; spacing from the (unwrapped) index.
    assert [r.t_us for r in vib] == [992_500 + 2500 * i for i in range(6)]
    assert vib[-1].inputs == DOOR_CLOSED | ZONE_UP | ZONE_DN
    stats = [r for r in rows if r.t_us == 500_000]
    assert stats and (stats[0].ax_mg, stats[0].ay_mg, stats[0].az_mg) == (0, -1000, 0)


def test_record_takes_the_inputs_at_rest_from_heartbeats_before_any_state(tmp_path: Path) -> None:
    """A car at rest sends no STATE; its HEARTBEAT carries the inputs, so the rows read before it (and
    after) show the door closed at the floor, not door_closed=0 zone_*=0."""
    level = DOOR_CLOSED | ZONE_UP | ZONE_DN
    frames = [
        encode_frame(MessageType.STATS, [1000, 400, [0, 0, 1000], [1, 1, 1], 2, 0], 1, 1, 500),
        encode_frame(MessageType.HEARTBEAT, [10, 50000, 0, 0, level, True, False], 1, 2, 600),
        encode_frame(MessageType.STATS, [1000, 400, [0, 0, 1001], [1, 1, 1], 2, 0], 1, 3, 1500),
        # then the door opens: the STATE says which input changed, and rows after it follow it
        encode_frame(MessageType.STATE, [1700, ZONE_UP | ZONE_DN, DOOR_CLOSED, 0], 1, 4, 1700),
        encode_frame(MessageType.STATS, [1000, 400, [0, 0, 1002], [1, 1, 1], 2, 0], 1, 5, 2500),
    ]
    rows = _record(tmp_path, frames)
    assert [(r.t_us, r.inputs) for r in rows] == [
        (500_000, level), (1_500_000, level), (1_700_000, ZONE_UP | ZONE_DN), (2_500_000, ZONE_UP | ZONE_DN)]


def test_record_fills_the_rows_before_the_first_state_with_the_inputs_before_its_change(tmp_path: Path) -> None:
    frames = [
        encode_frame(MessageType.STATS, [1000, 400, [0, 0, 1000], [1, 1, 1], 2, 0], 1, 1, 500),
        encode_frame(MessageType.STATE, [900, DOOR_CLOSED | ZONE_UP | ZONE_DN, DOOR_CLOSED, 0], 1, 2, 900),
    ]
    rows = _record(tmp_path, frames)
    assert [(r.t_us, r.inputs) for r in rows] == [(500_000, ZONE_UP | ZONE_DN), (900_000, DOOR_CLOSED | ZONE_UP | ZONE_DN)]
