"""UART link to a board through a USB serial adapter (or a pty of the mock board), on asyncio.

Built on pyserial-asyncio-fast. When the adapter is unplugged the kernel makes the tty unreadable
(EIO / "readiness to read but returned no data"); pyserial raises, and `read()` turns that into
`TransportClosedError` so the board's task closes us and reopens the same path once it is back.
Use a stable path (`/dev/serial/by-id/...`) in the config: `/dev/ttyUSB0` may be renumbered when
the adapter re-enumerates.
"""

from __future__ import annotations

import asyncio
import os

import serial
import serial_asyncio_fast

from liftwatch.edge_daemon.transport.base import (
    Transport,
    TransportBusyError,
    TransportClosedError,
    TransportOpenError,
)

# The board's UART runs at 921600 so a 400 Hz x 3-axis VIB stream (about 3.5 kB/s with framing)
# leaves headroom for bursts after a link cut; the mock board's pty ignores the rate.
DEFAULT_BAUDRATE = 921_600
# Bytes asked from the stream per read: one USB bulk transfer holds at most a few hundred bytes,
# 4 KiB lets a backlog after a stall drain in few wakeups.
READ_CHUNK = 4096
# Host->board traffic is a few small frames a minute (ACK, TIME_SYNC, CONFIG). Kilobytes still
# unsent mean the board stopped reading; refusing more keeps memory bounded until it recovers.
WRITE_BACKLOG_LIMIT = 16 * 1024


class SerialTransport(Transport):
    """A board on a serial port (device path or any pyserial URL such as `rfc2217://`)."""

    def __init__(self, port: str, baudrate: int = DEFAULT_BAUDRATE) -> None:
        self.port = port
        self.baudrate = baudrate
        self.link = f"serial:{port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Open the port exclusively, so a second daemon cannot steal half of the bytes."""
        if self._writer is not None:
            await self.close()
        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.port, baudrate=self.baudrate, exclusive=True
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportOpenError(self.link, _open_failure(self.port, exc)) from exc
        port = getattr(self._writer.transport, "serial", None)
        if isinstance(port, serial.Serial) and isinstance(getattr(port, "fd", None), int):
            port.write = _NonBlockingWrite(port)

    @property
    def backlog_bytes(self) -> int:
        """Bytes written but not yet taken by the board (grows while it is not reading)."""
        writer = self._writer
        return writer.transport.get_write_buffer_size() if writer is not None else 0

    async def read(self) -> bytes:
        reader = self._reader
        if reader is None:
            raise TransportClosedError(self.link, "not open")
        try:
            chunk = await reader.read(READ_CHUNK)
        except (serial.SerialException, OSError) as exc:
            raise TransportClosedError(self.link, str(exc) or type(exc).__name__) from exc
        if not chunk:
            raise TransportClosedError(self.link, "end of stream (adapter gone?)")
        return chunk

    async def write(self, data: bytes) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise TransportClosedError(self.link, "not open")
        if self.backlog_bytes > WRITE_BACKLOG_LIMIT:
            raise TransportBusyError(self.link, "board is not reading; write dropped")
        try:
            writer.write(data)
            await writer.drain()
        except (serial.SerialException, OSError) as exc:
            raise TransportClosedError(self.link, str(exc) or type(exc).__name__) from exc

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        try:
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), timeout=1.0)
        except (serial.SerialException, OSError, asyncio.TimeoutError):
            pass  # the adapter is already gone; nothing left to release


class _NonBlockingWrite:
    """One `os.write` per call, for pyserial-asyncio-fast's event-loop writer.

    pyserial's POSIX `write()` retries EAGAIN in a loop even with `write_timeout=0`, so once a board
    stops reading and the tty buffer is full it spins inside the event loop and stalls every board
    (found by tests/test_daemon.py). Raising BlockingIOError instead lets the asyncio transport
    buffer the rest and wait for the fd to become writable, as it does for sockets.
    """

    __slots__ = ("port",)

    def __init__(self, port: serial.Serial) -> None:
        self.port = port

    def __call__(self, data: bytes) -> int:
        try:
            return os.write(self.port.fd, data)
        except (BlockingIOError, InterruptedError):
            raise
        except OSError as exc:
            raise serial.SerialException(f"write failed: {exc}") from exc


def _open_failure(port: str, exc: Exception) -> str:
    """Why a port did not open, in the terms an operator acts on (pyserial nests errno texts)."""
    if "://" not in port and not os.path.exists(port):
        return "no such port (board unplugged, or another port name?)"
    if "exclusively lock" in str(exc):
        return "port busy: another program holds it (a running `liftwatch run`? stop it first)"
    return str(exc)
