"""Serial transport over a real pty pair: bytes both ways, unplug (master closed) and replug.

The board side is the pty master held by the test, as the mock board holds it; the daemon side
opens the slave path through pyserial-asyncio-fast exactly as it opens /dev/ttyUSB0. A USB adapter
that vanishes and comes back keeps its /dev/serial/by-id name: a symlink plays that name here.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest

from liftwatch.edge_daemon.transport import (
    ReconnectBackoff,
    TransportBusyError,
    TransportClosedError,
    TransportOpenError,
)
from liftwatch.edge_daemon.transport.base import BACKOFF_MAX_S
from liftwatch.edge_daemon.transport.serial import SerialTransport
from liftwatch.hil.mockboard.ptys import PtyPort


@pytest.fixture
def board(tmp_path):
    b = PtyPort(str(tmp_path / "usb-liftwatch-board0"))
    yield b
    b.close()


async def receive(board: PtyPort, n: int, timeout_s: float = 2.0) -> bytes:
    """Up to ``n`` bytes the host wrote to the board, waiting at most ``timeout_s``."""
    got = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(got) < n and loop.time() < deadline:
        got += board.read()
        await asyncio.sleep(0.005)
    return got


async def read_exactly(t: SerialTransport, n: int) -> bytes:
    got = b""
    while len(got) < n:
        got += await asyncio.wait_for(t.read(), 2.0)
    return got


async def test_bytes_flow_both_ways(board):
    t = SerialTransport(board.link_path)
    await t.open()
    try:
        payload = bytes(range(256)) * 8  # all byte values, raw mode: no echo, no CR/LF mangling
        board.write(payload)
        assert await read_exactly(t, len(payload)) == payload
        await t.write(b"\x00ack\x00\x0a\x0d")
        assert await receive(board, 7) == b"\x00ack\x00\x0a\x0d"
    finally:
        await t.close()


async def test_unplug_raises_closed_then_replug_reopens_same_path(board):
    t = SerialTransport(board.link_path)
    await t.open()
    board.write(b"before")
    assert await read_exactly(t, 6) == b"before"

    board.unplug()
    with pytest.raises(TransportClosedError) as err:
        await asyncio.wait_for(t.read(), 2.0)
    assert err.value.link == f"serial:{board.link_path}"
    await t.close()

    # While unplugged the path is gone: opening fails with a typed error, not a hang.
    with pytest.raises(TransportOpenError):
        await t.open()

    board.plug()
    await t.open()
    try:
        board.write(b"after")
        assert await read_exactly(t, 5) == b"after"
        await t.write(b"hi")
        assert await receive(board, 2) == b"hi"
    finally:
        await t.close()


def fill_until_the_transports_write_would_block(t: SerialTransport) -> None:
    """Write through the transport's descriptor until the kernel refuses a single byte, twice in a
    row with a pause between: the pty moves bytes to the other side's buffer in a kernel work item,
    so room can reappear just after the first refusal."""
    fd = t._writer.transport.serial.fd  # the descriptor SerialTransport writes through
    quiet_rounds = 0
    while quiet_rounds < 2:
        written = 0
        for size in (4096, 1):  # big writes stop with some room left: top it up byte by byte
            try:
                while True:
                    written += os.write(fd, b"\x55" * size)
            except BlockingIOError:
                pass
        quiet_rounds = quiet_rounds + 1 if written == 0 else 0
        time.sleep(0.05)


async def test_board_that_stops_reading_never_blocks_the_event_loop(board):
    t = SerialTransport(board.link_path)
    await t.open()
    # Fill the tty's board-bound buffer, as a board does that has stopped reading its UART, through
    # the transport's own descriptor: how much room the kernel reports depends on the descriptor and
    # the kernel version (a second descriptor of the same pty blocked while this one still had room on
    # kernel 6.18), so only "this descriptor would block" is a condition that holds on every machine.
    fill_until_the_transports_write_would_block(t)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    tick_task = asyncio.create_task(ticker())
    try:
        await asyncio.wait_for(t.write(b"\x00ack frame\x00"), 0.3)  # queued, not blocking
        assert t.backlog_bytes == 11
        await asyncio.sleep(0.2)
        assert ticks >= 10  # the loop kept running with the board's buffer full
        assert t.backlog_bytes == 11
        busy = False
        for _ in range(100):
            try:
                await asyncio.wait_for(t.write(b"x" * 1024), 0.1)
            except TransportBusyError:
                busy = True  # the backlog is bounded: more is refused, nothing blocks
                break
        assert busy
    finally:
        tick_task.cancel()
        await t.close()


async def test_write_after_close_is_typed_error(board):
    t = SerialTransport(board.link_path)
    await t.open()
    await t.close()
    await t.close()  # idempotent
    with pytest.raises(TransportClosedError):
        await t.write(b"x")
    with pytest.raises(TransportClosedError):
        await t.read()


async def test_missing_port_is_open_error(tmp_path):
    t = SerialTransport(str(tmp_path / "no-such-tty"))
    with pytest.raises(TransportOpenError) as err:
        await t.open()
    assert "no-such-tty" in str(err.value)


def test_backoff_grows_caps_and_resets():
    b = ReconnectBackoff(jitter=0.0)
    delays = [b.next_delay_s() for _ in range(20)]
    assert delays[0] == pytest.approx(0.5)
    assert delays[1] == pytest.approx(0.9)
    assert all(later >= earlier for earlier, later in zip(delays, delays[1:]))
    assert delays[-1] == BACKOFF_MAX_S
    b.reset()
    assert b.next_delay_s() == pytest.approx(0.5)


def test_backoff_jitter_stays_within_band_and_cap():
    rng = random.Random(7)
    b = ReconnectBackoff()
    for tries in range(30):
        d = b.next_delay_s(rng)
        nominal = min(0.5 * 1.8**tries, BACKOFF_MAX_S)
        assert nominal * 0.8 - 1e-9 <= d <= min(nominal * 1.2, BACKOFF_MAX_S) + 1e-9
