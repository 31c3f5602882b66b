"""Pseudo-terminals standing in for a board's USB console and UART.

The mock board's ports (board.py), the tests' frame-level boards (tests/support/board.py) and the
benchmarks' simulated boards all hold the master side of a raw pty and let the daemon or mpremote
open the slave path, as they open /dev/ttyUSB0. `PtyPort` adds what a USB serial adapter does to
that path: it can vanish and come back under the same /dev/serial/by-id name (a symlink here).
"""

from __future__ import annotations

import errno
import os
import pty
import select
import termios
import tty

# What a UART/USB bridge buffers before it drops: beyond this, bytes nobody reads are lost (counted).
RELAY_LIMIT_BYTES = 64 * 1024


def make_pty() -> tuple[int, str]:
    """A raw pty; returns (non-blocking master fd, slave path). The slave is closed: whoever opens it
    is connected. Raw from the start, so no echo or line discipline touches bytes sent before then."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    path = os.ttyname(slave)
    os.close(slave)
    os.set_blocking(master, False)
    return master, path


def hung_up(fd: int) -> bool:
    """True while nobody has the slave side of pty master ``fd`` open."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    return any(ev & select.POLLHUP for _, ev in p.poll(0))


def read_available(fd: int) -> bytes:
    """What a non-blocking pty or pipe has now; b"" when nothing, or when its far end is gone (EIO)."""
    try:
        return os.read(fd, 65536)
    except (BlockingIOError, InterruptedError):
        return b""
    except OSError as exc:
        if exc.errno == errno.EIO:
            return b""
        raise


class Relay:
    """One direction of byte pumping with a bounded buffer, dropping (and counting) when full."""

    __slots__ = ("buf", "dropped")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.dropped = 0

    def push(self, data: bytes) -> None:
        room = RELAY_LIMIT_BYTES - len(self.buf)
        if len(data) > room:
            self.dropped += len(data) - max(room, 0)
            data = data[: max(room, 0)]
        self.buf += data

    def flush_to(self, fd: int) -> None:
        if not self.buf:
            return
        try:
            n = os.write(fd, self.buf)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.EAGAIN):
                raise
            self.buf.clear()  # the far end is gone: a UART into nothing
            return
        del self.buf[:n]


class PtyPort:
    """The board end of a pty whose slave is reachable through a stable symlink (``link_path``), as a
    USB serial adapter is through /dev/serial/by-id. ``unplug()`` makes the adapter vanish, ``plug()``
    brings a new one back under the same name."""

    def __init__(self, link_path: str) -> None:
        self.link_path = link_path
        self.master = -1
        self.plug()

    @property
    def plugged(self) -> bool:
        return self.master >= 0

    def plug(self) -> None:
        if self.master >= 0:  # overlapping cuts: the previous adapter vanishes first, as USB does
            os.close(self.master)
        self.master, path = make_pty()
        tmp = self.link_path + ".new"
        os.symlink(path, tmp)
        os.replace(tmp, self.link_path)

    def unplug(self) -> None:
        self.close()
        try:
            os.unlink(self.link_path)
        except FileNotFoundError:
            pass

    def write(self, data: bytes) -> int:
        """Write what the pty takes now and return how much that was, which can be less than all of
        it: a UART does not wait for a reader either. Raises BlockingIOError when the host's side is
        full, OSError when unplugged."""
        if self.master < 0:
            raise OSError(errno.EBADF, "pty unplugged")
        return os.write(self.master, data)

    def read(self) -> bytes:
        """What the host has written so far (b"" when nothing, or unplugged)."""
        return read_available(self.master) if self.master >= 0 else b""

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
