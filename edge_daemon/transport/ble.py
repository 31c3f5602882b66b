"""BLE link to a board through bleak: the board's UART-over-GATT service (Nordic UART layout).

The board notifies frames on its TX characteristic and accepts host->board frames written to its RX
characteristic without response, and only over a bonded link: LE Secure Connections pairing with the
passkey provisioned at flash time (docs/operations.md, "Pairing"). The Pi pairs once (bluetoothctl,
BlueZ's agent types the passkey) and BlueZ keeps the bond; the transport asks bleak to pair on every
open, which for a bonded board returns at once, and for one not bonded fails the open. Notifications arrive on bleak's callback; they are queued and
`read()` hands them out, so the board's task reads BLE exactly as it reads a serial port.

`client_factory` exists because the radio cannot run in CI: tests pass an in-process fake with
bleak's `BleakClient` API (connect, pair, start_notify, write_gatt_char, disconnect, mtu_size,
disconnected_callback), or a real host stack on a virtual radio (hil_tests/mockboard/central.py). Bleak is imported only when a real client is built, to keep its D-Bus
stack out of a serial-only daemon.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from liftwatch.edge_daemon.transport.base import Transport, TransportClosedError, TransportOpenError

# Nordic UART Service: the de-facto UART-over-BLE layout, which MicroPython's aioble examples use.
NUS_SERVICE_UUID = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
NUS_RX_UUID = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"  # host writes here
NUS_TX_UUID = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"  # board notifies here

# ATT header bytes taken from the MTU in every write.
_ATT_HEADER = 3
# Notifications held while the board's task is busy: at 20-244 bytes each this is 20-250 kB, a few
# seconds of a VIB stream; beyond it bytes are dropped (counted) and framing resynchronises.
RX_QUEUE_CHUNKS = 1024
CONNECT_TIMEOUT_S = 20.0

ClientFactory = Callable[[str, Callable[[Any], None]], Any]
"""(address, disconnected_callback) -> an object with the BleakClient API."""


def _bleak_client(address: str, on_disconnect: Callable[[Any], None]) -> Any:
    from bleak import BleakClient  # noqa: PLC0415 - only BLE users pay for bleak's import

    return BleakClient(address, disconnected_callback=on_disconnect, timeout=CONNECT_TIMEOUT_S)


class BleTransport(Transport):
    """A board reached over BLE at `address` (MAC on Linux/BlueZ)."""

    def __init__(
        self,
        address: str,
        *,
        rx_uuid: str = NUS_RX_UUID,
        tx_uuid: str = NUS_TX_UUID,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.address = address
        self.rx_uuid = rx_uuid
        self.tx_uuid = tx_uuid
        self.link = f"ble:{address}"
        self._factory = client_factory or _bleak_client
        self._client: Any = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(RX_QUEUE_CHUNKS)
        self.dropped_bytes = 0

    async def open(self) -> None:
        """Step 1 connect, step 2 pair (or encrypt with the bond), step 3 subscribe to the board's TX
        notifications: the board sends nothing and hears nothing before step 2."""
        if self._client is not None:
            await self.close()
        self._queue = asyncio.Queue(RX_QUEUE_CHUNKS)
        client = self._factory(self.address, self._on_disconnect)
        try:
            await client.connect()
            await client.pair()
            await client.start_notify(self.tx_uuid, self._on_notify)
        except Exception as exc:  # bleak raises BleakError, TimeoutError, OSError, D-Bus errors
            try:
                await client.disconnect()
            except Exception:  # noqa: BLE001 - already failed; the open error is what matters
                pass
            raise TransportOpenError(self.link, f"{type(exc).__name__}: {exc}") from exc
        self._client = client

    def _on_notify(self, _characteristic: Any, payload: bytearray) -> None:
        try:
            self._queue.put_nowait(bytes(payload))
        except asyncio.QueueFull:
            self.dropped_bytes += len(payload)

    def _on_disconnect(self, _client: Any) -> None:
        # The sentinel may not fit a full queue; then make room, the link is gone anyway.
        while True:
            try:
                self._queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()

    async def read(self) -> bytes:
        if self._client is None:
            raise TransportClosedError(self.link, "not connected")
        chunk = await self._queue.get()
        if chunk is None:
            self._client = None
            raise TransportClosedError(self.link, "disconnected")
        return chunk

    async def write(self, data: bytes) -> None:
        client = self._client
        if client is None or not client.is_connected:
            raise TransportClosedError(self.link, "not connected")
        step = max(20, int(client.mtu_size) - _ATT_HEADER)
        try:
            for start in range(0, len(data), step):
                await client.write_gatt_char(self.rx_uuid, data[start : start + step], response=False)
        except Exception as exc:  # bleak surfaces a dropped link as BleakError or OSError
            raise TransportClosedError(self.link, f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), timeout=5.0)
        except Exception:  # noqa: BLE001 - closing a dead link must not raise
            pass
