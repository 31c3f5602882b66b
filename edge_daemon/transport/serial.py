"""UART link to a board through a USB serial adapter (or a pty of the mock board), on asyncio.

Built on pyserial-asyncio-fast. When the adapter is unplugged the kernel makes the tty unreadable
(EIO / "readiness to read but returned no data"); pyserial raises, and `read()` turns that into
`TransportClosedError` so the board's task closes us and reopens the same path once it is back.
Use a stable path (`/dev/serial/by-id/...`) in the config: `/dev/ttyUSB0` may be renumbered when
the adapter re-enumerates.
"""

from __future__ import annotations

import asyncio

import serial
import serial_asyncio_fast

from liftwatch.edge_daemon.transport.base import Transport, TransportClosedError, TransportOpenError

# The board's UART runs at 921600 so a 400 Hz x 3-axis VIB stream (about 3.5 kB/s with framing)
# leaves headroom for bursts after a link cut; the mock board's pty ignores the rate.
DEFAULT_BAUDRATE = 921_600
# Bytes asked from the stream per read: one USB bulk transfer holds at most a few hundred bytes,
# 4 KiB lets a backlog after a stall drain in few wakeups.
READ_CHUNK = 4096


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
            raise TransportOpenError(self.link, str(exc)) from exc

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
