"""Replay protection end to end, across board reboots and daemon restarts (SPEC.md section 4).

Board side: the firmware's own `Store` (persistent boot counter) and `Link` (tagged frames out,
host frames in) under MicroPython, one interpreter process per boot, its flash a folder that
survives between them; only the UART is a test double (bytes out to the test, host bytes in).
Host side: the daemon's `KeyStore` (key), its replay window file (replay_window.py) and `FrameReader`.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
from cobs import cobs

from support.fwharness import UART_DOUBLE, mpy_dir
from liftwatch.edge_daemon.keystore import KeyStore
from liftwatch.edge_daemon.replay_window import load_replay_window, replay_window_path, save_replay_window
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import DropReason, FrameReader, ReplayGuard, encode_frame
from liftwatch.upy import run_micropython

pytestmark = pytest.mark.micropython

BOARD_ID = "lw-replaytest01"
FRAMES_PER_BOOT = 20

# The only test double is the board's UART (fwharness.UART_DOUBLE); host bytes come from a file.
BOOT_SCRIPT = UART_DOUBLE + r"""
import sys
import lwproto
from link import Link
from store import Store

flash, n_frames, host_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(flash + "/auth.key", "rb") as f:
    key = f.read()
counters = Store(flash + "/lw_counters.bin", 0x43, 10)  # the agent's counters record; word 3 = boots
counters.load()
counters.values[3] += 1
counters.save()
boot_id = counters.values[3] & 0xFFFF
try:
    with open(host_file, "rb") as f:
        rx = f.read()
except OSError:
    rx = b""
uart = Uart(rx)
link = Link(uart, boot_id, key)
accepted = []
while uart.rx:
    link.poll(lambda mtype, b, seq, p: accepted.append((mtype, seq)))
for i in range(n_frames):
    off = link.begin(lwproto.T_HEARTBEAT, 1000 + 10 * i)
    end = lwproto.pack_into(link.enc.body, off, [i, 50000, 0, 0, 7, True, False])
    link.commit(end, 2)
    link.pump(uart.ticks_ms(), True)
print(boot_id)
print(bytes(uart.out).hex())
print(repr(accepted), link.rx_drops)
"""


class Board:
    """One board's flash folder; `boot()` runs one boot of the firmware's link under MicroPython."""

    def __init__(self, tmp_path: Path, key: bytes) -> None:
        self.flash = tmp_path / "board_flash"
        self.flash.mkdir()
        (self.flash / "auth.key").write_bytes(key)  # what `liftwatch flash` puts on the board
        self.script = tmp_path / "boot.py"
        self.script.write_text(BOOT_SCRIPT)
        self.host_file = tmp_path / "host_frames.bin"

    def boot(self, host_frames: bytes = b"") -> tuple[int, bytes, list, int]:
        self.host_file.write_bytes(host_frames)
        r = run_micropython([str(self.script), str(self.flash), str(FRAMES_PER_BOOT), str(self.host_file)],
                            paths=(mpy_dir(),), timeout=60)  # the deploy form (.mpy)
        out = r.stdout.decode().split("\n")
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
        accepted, rx_drops = out[2].rsplit(" ", 1)
        return int(out[0]), bytes.fromhex(out[1]), ast.literal_eval(accepted), int(rx_drops)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[KeyStore, Board]:
    store = KeyStore(tmp_path / "keys", create=True)
    key = store.generate(BOARD_ID)
    return store, Board(tmp_path, key)


def daemon_reader(store: KeyStore, window: Path) -> FrameReader:
    """What the daemon builds for the board at start: its keys and its persisted replay window."""
    return store.load(BOARD_ID).reader(require_tag=True, replay=load_replay_window(window))


def test_a_recording_from_an_earlier_boot_is_refused_also_after_a_daemon_restart(setup) -> None:
    store, board = setup
    window = replay_window_path(store.directory.parent, "car-0")
    reader = daemon_reader(store, window)
    boot1, stream1, _, _ = board.boot()
    frames = reader.feed(stream1)
    assert [f.seq for f in frames] == list(range(FRAMES_PER_BOOT)) and all(f.boot_id == boot1 for f in frames)
    save_replay_window(window, reader.replay)

    # Played back in the same boot: every frame was seen.
    assert reader.feed(stream1) == []
    assert reader.drops[DropReason.REPLAY] == FRAMES_PER_BOOT

    boot2, stream2, _, _ = board.boot()
    assert boot2 == boot1 + 1  # the boot counter survived in the board's flash
    assert len(reader.feed(stream2)) == FRAMES_PER_BOOT
    save_replay_window(window, reader.replay)
    assert reader.feed(stream1) == []  # rule 2: older boot
    assert reader.drops[DropReason.REPLAY] == 2 * FRAMES_PER_BOOT

    # The daemon restarts (its memory is gone; the persisted window is not).
    restarted = daemon_reader(store, window)
    assert restarted.feed(stream1) == [] and restarted.feed(stream2) == []
    assert restarted.drops[DropReason.REPLAY] == 2 * FRAMES_PER_BOOT
    assert restarted.frames == 0

    # ...and the board's next boot still gets through.
    boot3, stream3, _, _ = board.boot()
    assert boot3 == boot2 + 1 and len(restarted.feed(stream3)) == FRAMES_PER_BOOT


def test_without_the_persisted_window_a_restarted_daemon_would_accept_the_recording(setup) -> None:
    """Control: the protection above comes from the persisted state, not from something else."""
    store, board = setup
    _, stream1, _, _ = board.boot()
    fresh = store.load(BOARD_ID).reader(require_tag=True, replay=ReplayGuard())
    assert len(fresh.feed(stream1)) == FRAMES_PER_BOOT


def test_a_forged_or_untagged_stream_is_refused(setup) -> None:
    store, board = setup
    _, stream1, _, _ = board.boot()
    reader = daemon_reader(store, replay_window_path(store.directory.parent, "car-0"))
    forged = encode_frame(lw.T_EVENT, [1, 3, 1, 5000, {}], 999, 0, 5000, key=b"\x00" * 32)
    untagged = encode_frame(lw.T_EVENT, [1, 3, 1, 5000, {}], 999, 0, 5000)
    assert reader.feed(forged + untagged) == []
    assert reader.drops[DropReason.AUTH] == 2
    # A bit flipped in a tag, the CRC recomputed by the attacker: only the tag can catch it.
    first = next(part for part in stream1.split(b"\x00") if part)
    body = bytearray(cobs.decode(first))
    body[-3] ^= 0x01  # last tag byte (the CRC follows it)
    body[-2:] = lw.crc16(body, 0, len(body) - 2).to_bytes(2, "big")
    assert reader.feed(cobs.encode(bytes(body)) + b"\x00") == []
    assert reader.drops[DropReason.AUTH] == 3


def test_a_host_command_recorded_in_one_boot_is_refused_in_the_next(setup) -> None:
    store, board = setup
    key = store.load(BOARD_ID).current
    boot1, _, _, _ = board.boot()
    boot2 = boot1 + 1
    # The daemon sends CONTROL request_counters to the board's *next* boot (what it will be after a reboot).
    command = encode_frame(lw.T_CONTROL, [5, 0], boot2, 1, 100, key=key, sender=lw.FROM_HOST)
    _, _, accepted, drops = board.boot(command)
    assert accepted == [(lw.T_CONTROL, 1)] and drops == 0
    _, _, accepted, drops = board.boot(command)  # boot 3: the recording echoes boot 2
    assert accepted == [] and drops == 1
    untagged = encode_frame(lw.T_CONTROL, [5, 0], boot2 + 2, 2, 100, sender=lw.FROM_HOST)
    _, _, accepted, drops = board.boot(untagged)
    assert accepted == [] and drops == 1


def test_a_host_command_replayed_within_the_same_boot_is_refused(setup) -> None:
    store, board = setup
    key = store.load(BOARD_ID).current
    boot1, _, _, _ = board.boot()
    command = encode_frame(lw.T_CONTROL, [5, 0], boot1 + 1, 1, 100, key=key, sender=lw.FROM_HOST)
    _, _, accepted, _ = board.boot(command + command)
    assert accepted == [(lw.T_CONTROL, 1)]


# ---------------------------------------------------------------- the daemon itself


async def test_daemon_persists_the_window_refuses_old_boots_after_restart_and_follows_a_rotation(tmp_path):
    from support.board import PtyBoard
    from support.daemon import journal, serving, wait_until

    from liftwatch.edge_daemon.config import parse_config

    store = KeyStore(tmp_path / "keys", create=True)
    key = store.generate(BOARD_ID)
    board = PtyBoard(str(tmp_path / "tty0"), BOARD_ID, boot_id=41, key=key)

    def config():
        return parse_config({
            "daemon": {"site": "s", "pi": "p", "state_dir": str(tmp_path / "state"), "status_interval_s": 0.5},
            "session": {"heartbeat_timeout_s": 5.0, "write_timeout_s": 0.2},
            "boards": [{"car": "car-0", "port": board.link_path, "board_id": BOARD_ID,
                        "key_file": str(store.key_path(BOARD_ID)), "require_tag": True}],
        }, "test", tmp_path)

    async def run_daemon(body):
        async with board.living(close=False), serving(config()) as daemon:
            await body(daemon)
        return daemon

    async def first_run(daemon):
        # Frames written before the daemon opens the port are lost (as on a UART); a frame the first
        # daemon never received would be a first delivery to the second, so start once it listens.
        assert await wait_until(lambda: daemon.boards and daemon.boards[0].phase.value == "ready")
        board.hello()
        board.raise_event(1)
        assert await wait_until(lambda: board.acked == [1])
        replay_file = tmp_path / "state" / "replay-car-0.json"
        assert await wait_until(lambda: replay_file.exists())
        assert json.loads(replay_file.read_text())["boot_id"] == 41
        # Let the daemon read the event's re-sends still on the line: a copy it never read would be a
        # first delivery to the next daemon, stored again (a daemon dedup limit, not a replay).
        sent = bytes(board.sent).count(b"\x00")
        assert await wait_until(lambda: daemon.boards[0].reader.frames >= sent - 1)

    first = await run_daemon(first_run)
    seen_by_first = first.boards[0].reader.frames
    recording = bytes(board.sent)
    board.boot_id, board.seq = 42, 0  # the board reboots

    async def after_restart(daemon):
        assert await wait_until(lambda: daemon.boards and daemon.boards[0].phase.value == "ready")
        reader = daemon.boards[0].reader
        os.write(board.master, b"\x00" + recording)  # boot 41 played back to a fresh daemon
        # Every frame the first daemon saw is refused; frames still in the pty when it stopped were
        # never received, so for the new daemon they are first deliveries, not replays.
        assert await wait_until(lambda: reader.drops[DropReason.REPLAY] >= seen_by_first), (
            reader.drops, reader.frames, seen_by_first, recording.count(b"\x00"))
        assert reader.frames <= recording.count(b"\x00") - seen_by_first
        board.hello()
        board.raise_event(2)
        assert await wait_until(lambda: board.acked == [1, 2])

    daemon = await run_daemon(after_restart)
    alarms = [x for x in journal(daemon.config) if x["kind"] == "event" and x["type"] == "alarm_button"
              and x["state"] == "raised"]
    assert len(alarms) == 2, alarms  # events 1 and 2, the replayed event 1 not a second time

    # Rotation: the next key is made and flashed; the board comes back on it; the daemon follows,
    # and its ACKs (host->board, tagged) verify with the board's new key.
    new_key = store.rotate(BOARD_ID)
    board.key, board.boot_id, board.seq = new_key, 43, 0
    board.reader = FrameReader(key=new_key, sender=lw.FROM_HOST)

    async def rotated(daemon):
        board.hello()
        board.raise_event(3)
        assert await wait_until(lambda: board.acked == [1, 2, 3])
        assert daemon.boards[0].reader.key_rotations == 1

    await run_daemon(rotated)
    board.close()


class _Recording:
    """A board-side reader that also keeps the raw bytes the daemon wrote (to feed them back)."""

    def __init__(self, reader: FrameReader) -> None:
        self.reader, self.raw = reader, bytearray()

    def feed(self, data: bytes):
        self.raw += data
        return self.reader.feed(data)


async def test_the_daemons_own_frames_fed_back_are_refused_and_move_nothing(tmp_path):
    """Issue 14 item 1 on the real daemon: one host TIME_SYNC fed back (same board key, v1) moved the
    replay window to the host's seq, dropped the next genuine frames as REPLAY, raised a false
    board_offline, counted lost frames that were not lost and read the host's t_ms as board time."""
    import asyncio

    from support.board import PtyBoard
    from support.daemon import journal, running, wait_until

    from liftwatch.edge_daemon.config import parse_config

    store = KeyStore(tmp_path / "keys", create=True)
    key = store.generate(BOARD_ID)
    board = PtyBoard(str(tmp_path / "tty0"), BOARD_ID, boot_id=41, key=key)
    board.seq = 40000  # a board long up: the host's seq (a few) is far behind, the jump the attack used
    board.reader = _Recording(board.reader)
    cfg = parse_config({
        "daemon": {"site": "s", "pi": "p", "state_dir": str(tmp_path / "state"), "status_interval_s": 0.5},
        "session": {"heartbeat_timeout_s": 2.0, "write_timeout_s": 0.2},
        "boards": [{"car": "car-0", "port": board.link_path, "board_id": BOARD_ID,
                    "key_file": str(store.key_path(BOARD_ID))}],  # no require_tag: a key implies it
    }, "test", tmp_path)
    async with running(cfg, board) as daemon:
        assert await wait_until(lambda: daemon.boards and daemon.boards[0].phase.value == "ready")
        await asyncio.sleep(0.3)
        board.reader.raw.clear()  # the pty's echo of what the board wrote before the daemon opened it
        board.hello()
        board.raise_event(1)
        assert await wait_until(lambda: board.acked == [1])
        assert await wait_until(lambda: any(f.type == lw.T_TIME_SYNC for f in board.host_frames))
        task = daemon.boards[0]
        reader, session = task.reader, task.pipeline.session
        raw = bytes(board.reader.raw)
        host_bytes = raw[: raw.rindex(b"\x00") + 1]  # whole frames only
        clock_before = session._clock.offset_ms
        for _ in range(3):  # every host frame so far, fed back into the daemon, three times over
            os.write(board.master, b"\x00" + host_bytes)
        n_host = sum(1 for part in host_bytes.split(b"\x00") if part)
        assert n_host >= 2
        assert await wait_until(lambda: reader.drops[DropReason.DIRECTION] == 3 * n_host), (reader.drops, n_host)
        board.raise_event(2)  # the board goes on talking: every frame of it still gets through
        assert await wait_until(lambda: board.acked == [1, 2])
        await asyncio.sleep(1.0)
        assert reader.drops[DropReason.REPLAY] == 0 and reader.drops[DropReason.AUTH] == 0
        assert reader.replay.boot_id == 41 and reader.replay.top_seq >= 40000
        assert session.counters.lost_frames == 0 and session.last_seq >= 40000
        offset = session._clock.offset_ms
        assert clock_before is None or offset is None or abs(offset - clock_before) < 2000
    offline = [x for x in journal(cfg) if x["kind"] == "event" and x["type"] == "board_offline"]
    assert offline == []
