"""The contract every board link follows, and the reconnect policy they share.

A transport moves bytes, nothing else: it knows no frames, no COBS and no board. The per-board task
(edge_daemon/daemon.py) owns one transport, opens it, reads chunks into the FrameReader, writes
host->board frames, and when the link drops it closes it and calls `open()` again after the
`ReconnectBackoff` delay. A transport object can be opened again after `close()`, because a USB
adapter that vanished comes back under the same path and a BLE board comes back at the same address.
"""

from __future__ import annotations

import abc
import enum
import random
from dataclasses import dataclass

from liftwatch.errors import LiftwatchError


class TransportError(LiftwatchError):
    """The link to one board failed; the board's task reconnects, other boards are not affected."""

    def __init__(self, link: str, reason: str) -> None:
        super().__init__(f"{link}: {reason}")
        self.link = link
        self.reason = reason


class TransportOpenError(TransportError):
    """The port or device could not be opened (absent, busy, permission, radio out of range)."""


class TransportClosedError(TransportError):
    """The link went away while in use (adapter unplugged, board powered off, BLE disconnect)."""


class TransportBusyError(TransportError):
    """The board is not taking bytes (its side stopped reading): this write was dropped, the link stays."""


class LinkPhase(enum.Enum):
    """Where a board's link is in its reconnect cycle (reported by `liftwatch status`)."""

    CONNECTING = "connecting"
    READY = "ready"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"  # stopped on purpose, no reconnect


class Transport(abc.ABC):
    """Byte pipe to one board. Implementations: `SerialTransport`, `BleTransport`.

    Contract:
    - `open()` connects or raises `TransportOpenError`; it may be called again after `close()`.
    - `read()` returns the next non-empty chunk of received bytes, waiting as long as needed; it
      raises `TransportClosedError` once the link is gone (never returns b"" as an EOF marker).
    - `write(data)` queues all of `data` and waits until the link accepted it; raises
      `TransportClosedError` when the link is gone, and `TransportBusyError` (nothing queued) when
      so much is still unsent that the board has evidently stopped reading. The caller bounds the
      wait with its own timeout, so a board that stopped reading cannot stall its task forever.
    - `close()` is idempotent and never raises.
    """

    #: human-readable identity for logs and errors: "serial:/dev/ttyUSB0", "ble:AA:BB:..."
    link: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect to the board (step 1 of every connect cycle)."""

    @abc.abstractmethod
    async def read(self) -> bytes:
        """Next chunk of bytes from the board."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Send bytes to the board."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the port or connection."""

    @property
    def backlog_bytes(self) -> int:
        """Bytes accepted by `write()` that the board has not taken yet (for status).

        Not abstract: links that hand every write straight to the radio have none.
        """
        return 0


# Capped exponential backoff, as in aioesphomeapi's reconnect logic: a USB adapter that was yanked
# usually re-enumerates within one to three seconds, so start fast; a board that is gone for good
# (power cut at the car) must not spin the Pi's CPU, so cap at a minute.
BACKOFF_BASE_S = 0.5
BACKOFF_FACTOR = 1.8
BACKOFF_MAX_S = 60.0
# +-20 % jitter so twenty boards on one hub that lost power together do not reconnect in lockstep.
BACKOFF_JITTER = 0.2


@dataclass(slots=True)
class ReconnectBackoff:
    """Delay before the next connect attempt: `base * factor**tries`, capped, jittered, reset on success."""

    base_s: float = BACKOFF_BASE_S
    factor: float = BACKOFF_FACTOR
    max_s: float = BACKOFF_MAX_S
    jitter: float = BACKOFF_JITTER
    tries: int = 0

    def next_delay_s(self, rng: random.Random | None = None) -> float:
        """Delay for this failure; each call counts one more failed try."""
        delay = min(self.base_s * self.factor**self.tries, self.max_s)
        self.tries += 1
        if self.jitter:
            r = (rng or random).uniform(-self.jitter, self.jitter)
            delay = min(delay * (1.0 + r), self.max_s)
        return delay

    def reset(self) -> None:
        """The link worked: the next failure starts from the base delay again."""
        self.tries = 0
