"""Board links: one `Transport` ABC, serial and BLE implementations, chosen in one function."""

from __future__ import annotations

import enum

from liftwatch.edge_daemon.transport.base import (
    LinkPhase,
    ReconnectBackoff,
    Transport,
    TransportBusyError,
    TransportClosedError,
    TransportError,
    TransportOpenError,
)

__all__ = [
    "LinkKind",
    "LinkPhase",
    "ReconnectBackoff",
    "Transport",
    "TransportBusyError",
    "TransportClosedError",
    "TransportError",
    "TransportOpenError",
    "make_transport",
]


class LinkKind(enum.Enum):
    SERIAL = "serial"
    BLE = "ble"


def make_transport(kind: LinkKind, address: str, *, baudrate: int | None = None) -> Transport:
    """The one place that picks a backend; only the chosen backend's module (and library) is imported."""
    match kind:
        case LinkKind.SERIAL:
            from liftwatch.edge_daemon.transport.serial import DEFAULT_BAUDRATE, SerialTransport

            return SerialTransport(address, baudrate or DEFAULT_BAUDRATE)
        case LinkKind.BLE:
            from liftwatch.edge_daemon.transport.ble import BleTransport

            return BleTransport(address)
    raise ValueError(f"unknown link kind {kind!r}")
