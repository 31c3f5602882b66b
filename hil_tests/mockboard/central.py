"""The Pi's side of the virtual radio: a Bumble host behind bleak's `BleakClient` API.

`BleTransport` (edge_daemon/transport/ble.py) takes a client factory; on a Pi it builds bleak's
BlueZ client, here `VirtualAdapter.client_factory()` builds `BumbleBleakClient`, which does the same
steps over a real host stack on the virtual link (radio.py): scan for the board's advertisement (by
name or address), connect, exchange the ATT MTU as BlueZ does on connect, discover the GATT services,
pair (LE Secure Connections, passkey entry: the adapter's agent types the board's passkey, as an
operator does once with `bluetoothctl`) or, once bonded, encrypt with the stored key, subscribe to
notifications (CCCD write), write without response, disconnect. The adapter keeps its bonds across
its own restarts, as BlueZ keeps them in /var/lib/bluetooth. The adapter's host runs on the caller's
event loop and talks HCI to its controller over a unix socket.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bumble import hci
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy
from bumble.keys import MemoryKeyStore, PairingKeys
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport import open_transport

from liftwatch.edge_daemon.transport import TransportClosedError, TransportOpenError
from liftwatch.edge_daemon.transport.ble import BleTransport, ClientFactory
from liftwatch.protocol import lwproto
from liftwatch.protocol.framing import Frame, FrameReader, encode_frame
from liftwatch.protocol.messages import Command, MessageType
from liftwatch.hil.mockboard.radio import VirtualRadio, bond_name

OPEN_TIMEOUT_S = 30.0  # a booting board advertises within a few real seconds
# BlueZ offers its maximum on every connection; the board's own limit (ble_nus: 247) wins.
BLUEZ_ATT_MTU = 517
SCAN_TIMEOUT_S = 5.0
_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


class _Bonds(MemoryKeyStore):
    """The adapter's bonds, by the board's address (see radio.bond_name)."""

    async def update(self, name: str, keys: PairingKeys) -> None:
        await super().update(bond_name(name), keys)

    async def get(self, name: str) -> PairingKeys | None:
        return await super().get(bond_name(name))

    async def delete(self, name: str) -> None:
        await super().delete(bond_name(name))


class _PasskeyAgent(PairingDelegate):
    """BlueZ's agent at `bluetoothctl`: types the board's passkey (keyboard only); without one it can
    only offer Just Works (no input, no output)."""

    def __init__(self, passkey: int | None) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT if passkey is None
                         else PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY)
        self.passkey = passkey

    async def get_number(self) -> int | None:
        return self.passkey


class VirtualAdapter:
    """One Bluetooth adapter (a Pi's hci0) on the virtual radio; its clients share it, as on BlueZ.
    ``passkey``: what its agent types when a board asks for one (None: it has none)."""

    def __init__(self, radio: VirtualRadio, socket_dir: Path, address: str = "DC:A6:32:00:00:01",
                 passkey: int | None = None) -> None:
        self.address = address
        self.hci_socket = socket_dir / f"hci-{address.replace(':', '')}"
        radio.add_adapter(self.hci_socket, address)
        self.passkey = passkey
        self.keystore = _Bonds()  # the bonds, kept while the adapter's host is closed and reopened
        self.device: Device | None = None
        self._transport: Any = None
        self._lock = asyncio.Lock()

    async def power_on(self) -> Device:
        """The host side of the adapter, on the running loop (opened on first use)."""
        async with self._lock:
            if self.device is None:
                self._transport = await open_transport(f"unix:{self.hci_socket}")
                device = Device.with_hci("pi", hci.Address(self.address), self._transport.source,
                                         self._transport.sink)
                device.keystore = self.keystore
                device.pairing_config_factory = lambda _connection: PairingConfig(
                    sc=True, mitm=True, bonding=True, delegate=_PasskeyAgent(self.passkey))
                await device.power_on()
                self.device = device
            return self.device

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()
            self._transport = None
            self.device = None

    async def scan(self, target: str, timeout_s: float = SCAN_TIMEOUT_S) -> hci.Address:
        """The address of the first board advertising ``target`` (its name, or its address)."""
        device = await self.power_on()
        found: asyncio.Future[hci.Address] = asyncio.get_running_loop().create_future()
        by_address = bool(_MAC.match(target))

        def on_advertisement(adv: Advertisement) -> None:
            name = adv.data.get(adv.data.COMPLETE_LOCAL_NAME) if adv.data else None
            hit = str(adv.address).split("/")[0].upper() == target.upper() if by_address else name == target
            if hit and adv.is_connectable and not found.done():
                found.set_result(adv.address)

        device.on("advertisement", on_advertisement)
        await device.start_scanning(filter_duplicates=True)
        try:
            return await asyncio.wait_for(found, timeout_s)
        except TimeoutError:
            raise TimeoutError(f"Device with address {target} was not found") from None
        finally:
            device.remove_listener("advertisement", on_advertisement)
            await device.stop_scanning()

    def client_factory(self) -> ClientFactory:
        def make(address: str, on_disconnect: Callable[[Any], None]) -> BumbleBleakClient:
            return BumbleBleakClient(self, address, on_disconnect)

        return make


class BumbleBleakClient:
    """What BleTransport uses of bleak.BleakClient (see tests/test_transport_ble.py), on Bumble."""

    def __init__(self, adapter: VirtualAdapter, address: str, disconnected_callback: Callable[[Any], None]) -> None:
        self.adapter = adapter
        self.address = address
        self._disconnected_callback = disconnected_callback
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._chars: dict[str, CharacteristicProxy] = {}

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else 23

    async def connect(self, **_kwargs: Any) -> bool:
        address = await self.adapter.scan(self.address)
        device = await self.adapter.power_on()
        connection = await device.connect(address, timeout=SCAN_TIMEOUT_S)
        self._connection = connection
        connection.on("disconnection", self._on_disconnection)
        peer = Peer(connection)
        await peer.request_mtu(BLUEZ_ATT_MTU)
        await peer.discover_services()
        for service in peer.services:
            await service.discover_characteristics()
            for char in service.characteristics:
                self._chars[str(char.uuid).lower()] = char
        self._peer = peer
        return True

    async def pair(self, **_kwargs: Any) -> None:
        """bleak's pair(): once bonded, the stored key encrypts the link (BlueZ does that itself for a
        bonded device, and bleak's pair() then returns at once); else a pairing with the agent's passkey.
        Raises if the board refuses (a wrong passkey, or none) or the link drops meanwhile."""
        connection = self._connection
        if connection is None:
            raise OSError("Not connected")
        if await self.adapter.keystore.get(str(connection.peer_address)) is not None:
            await connection.encrypt()
        else:
            await connection.pair()

    def _on_disconnection(self, _reason: int) -> None:
        self._connection = None
        self._disconnected_callback(self)

    def _char(self, uuid: str) -> CharacteristicProxy:
        char = self._chars.get(uuid.lower())
        if char is None or self._peer is None:
            raise OSError(f"characteristic {uuid} not found on {self.address}")
        return char

    async def start_notify(self, char_specifier: str, callback: Callable[[Any, bytearray], None],
                           **_kwargs: Any) -> None:
        char = self._char(char_specifier)
        await char.subscribe(lambda value: callback(char, bytearray(value)))

    async def write_gatt_char(self, char_specifier: str, data: bytes, response: bool | None = None) -> None:
        if self._connection is None:
            raise OSError("Not connected")
        await self._char(char_specifier).write_value(bytes(data), with_response=bool(response))

    async def disconnect(self) -> bool:
        connection = self._connection
        if connection is not None:
            await connection.disconnect()
        return True


def board_name(uid_hex: str) -> str:
    """What ble_nus advertises: hal's "liftwatch-" + the last 6 hex digits of the board's uid."""
    return "liftwatch-" + uid_hex[-6:]


async def open_link(adapter: VirtualAdapter, name: str, timeout_s: float = OPEN_TIMEOUT_S) -> BleTransport:
    """The daemon's transport to the board advertising ``name``, once it is found."""
    link = BleTransport(name, client_factory=adapter.client_factory())
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await link.open()
            return link
        except TransportOpenError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


class HostLink:
    """The host's end of one link: frames in through a FrameReader, host frames out as GATT writes."""

    def __init__(self, link: BleTransport) -> None:
        self.link = link
        self.reader = FrameReader()
        self.frames: list[Frame] = []
        self.chunks: list[int] = []  # notification sizes
        self.seq = 0

    async def send(self, mtype: int, payload: list, boot_id: int = 0) -> None:
        self.seq += 1
        await self.link.write(encode_frame(mtype, payload, boot_id, self.seq, 0, sender=lwproto.FROM_HOST))

    async def until(self, pred: Callable[[Frame], bool], timeout_s: float = 20.0) -> Frame:
        deadline = time.monotonic() + timeout_s
        while True:
            for f in self.frames:
                if pred(f):
                    return f
            chunk = await asyncio.wait_for(self.link.read(), max(0.1, deadline - time.monotonic()))
            self.chunks.append(len(chunk))
            self.frames += self.reader.feed(chunk)

    async def closed(self, timeout_s: float = 10.0) -> None:
        """Read until the link reports it is gone (what arrived before still counts); TimeoutError
        if it stays up."""
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                chunk = await asyncio.wait_for(self.link.read(), max(0.1, deadline - time.monotonic()))
                self.frames += self.reader.feed(chunk)
        except TransportClosedError:
            return

    async def calibrate(self) -> Frame:
        """HELLO (asked for), then CONTROL calibrate -> ACK; returns the HELLO."""
        await self.send(MessageType.CONTROL, [Command.REQUEST_HELLO, 0])
        hello = await self.until(lambda f: f.type == MessageType.HELLO)
        await self.send(MessageType.CONTROL, [Command.CALIBRATE, 0], hello.boot_id)
        await self.until(lambda f: f.type == MessageType.ACK and f.payload[0] == MessageType.CONTROL)
        return hello
