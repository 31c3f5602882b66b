"""A virtual Bluetooth LE radio: Bumble controllers on one simulated link, for mock boards and centrals.

No Bluetooth hardware or kernel device is needed (or used): Bumble's `LocalLink` carries link-layer
traffic between its software controllers, and everything above the controller (HCI, L2CAP, ATT,
GATT, SMP) is Bumble's real host stack. The radio runs on its own thread and event loop:

- a mock board's `bluetooth` stand-in (board_ble.py, under MicroPython) connects to a unix socket
  served here; each connection is one boot of that board's radio: a fresh controller and Bumble
  device at the board's address, whose GATT server, advertising, notifications and connection events
  the stand-in drives and sees as the ESP32 port's NimBLE binding would show them. Pairing is Bumble's
  SMP with the board's `config(bond=, mitm=, le_secure=, io=)`; what NimBLE asks the application
  (the passkey, the bonds to keep and give back) goes to the firmware's IRQ handler, so bonds live in
  the board's own files, and the port's permission check on writes is applied to the stand-in's;
- a central (the daemon's side, liftwatch.hil.mockboard.central) gets an adapter: a controller on the
  same link whose HCI is served on another unix socket, so its Bumble host runs in the central's own
  event loop, as BlueZ talks HCI to a Pi's adapter.

What the link does not model: RF range, interference, packet loss and connection-interval timing
(packets cross the link as fast as the event loop runs). docs/operations.md says what that means.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bumble import att, gatt, hci
from bumble.controller import Controller
from bumble.device import Connection, Device
from bumble.host import Host
from bumble.keys import KeyStore, PairingKeys
from bumble.link import LocalLink
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.smp import PairingMethod
from bumble.transport.common import AsyncPipeSink
from bumble.transport.unix import open_unix_server_transport

from liftwatch.errors import LiftwatchError

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# NimBLE on an ESP32 has a handful of ACL buffers for notifications; a notification beyond them
# fails with ENOMEM and the firmware retries it (ble.py). The board gets this many credits back as
# the link carries its notifications.
NOTIFY_CREDITS = 8
# The ESP32's controller supports the LE Data Length Extension (251-byte link-layer payloads);
# Bumble's default controller has 27, which would cut every notification into ten packets.
LE_ACL_PACKET_BYTES = 251
# What the central sees when a board loses power or resets: no goodbye, its supervision timeout ends
# the connection (HCI reason 0x08).
LOST_BOARD_REASON = hci.HCI_CONNECTION_TIMEOUT_ERROR
CALL_TIMEOUT_S = 10.0

# How long the radio waits for the firmware's answer to a pairing question (its IRQs run once per loop
# pass; Bumble's SMP gives up after 30 s itself).
BOARD_ANSWER_TIMEOUT_S = 20.0
# NimBLE's store record type for a peer's security keys (the stand-in keeps the whole bond under it).
_PEER_SEC = 2
# MicroPython's _PASSKEY_ACTION_* (NimBLE's BLE_SM_IOACT_*), asked of the firmware by _IRQ_PASSKEY_ACTION
_PASSKEY_INPUT = 2
_PASSKEY_DISPLAY = 3
_PASSKEY_NUMERIC_COMPARISON = 4
# MicroPython's _FLAG_WRITE_ENCRYPTED / _FLAG_WRITE_AUTHENTICATED: NimBLE refuses a write (a write
# command silently) on a link that lacks them.
_FLAG_WRITE_ENCRYPTED = 0x1000
_FLAG_WRITE_AUTHENTICATED = 0x2000

# MicroPython's bluetooth.FLAG_* -> Bumble's characteristic properties and permissions.
_PROPERTIES = {
    0x0002: gatt.Characteristic.Properties.READ,
    0x0004: gatt.Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
    0x0008: gatt.Characteristic.Properties.WRITE,
    0x0010: gatt.Characteristic.Properties.NOTIFY,
    0x0020: gatt.Characteristic.Properties.INDICATE,
}


class RadioError(LiftwatchError, RuntimeError):
    """The virtual radio is not running or was asked something it cannot do."""


def board_address(uid_hex: str) -> str:
    """The Bluetooth address of a board: the ESP32's base MAC (its uid) + 2, as the chip derives it."""
    mac = (int(uid_hex, 16) + 2) & 0xFFFF_FFFF_FFFF
    return ":".join(f"{b:02X}" for b in mac.to_bytes(6, "big"))


def bond_name(name: str) -> str:
    """A bond's name in a key store: the peer's address without Bumble's type qualifier, which it
    writes when storing a pairing's keys ("…/P") but not when looking them up for a connection."""
    return name.split("/")[0]


@dataclass(slots=True)
class RadioStats:
    """Counters for tests and benchmarks (touched on the radio thread only)."""

    board_boots: collections.Counter = field(default_factory=collections.Counter)  # address -> radio sessions
    notifications: int = 0
    writes: int = 0
    refused_writes: int = 0  # writes the board's stack refused: the link lacked the characteristic's security
    connections: int = 0
    pairings: int = 0  # pairings the board's stack completed (a bonded reconnect is not one)
    encryption_updates: list[tuple[bool, bool, bool]] = field(default_factory=list)  # (encrypted, authenticated, bonded)


class VirtualRadio:
    """The air around the mock boards and the Pi. ``start()``/``stop()`` or a ``with`` block."""

    def __init__(self) -> None:
        self.stats = RadioStats()
        self.link: LocalLink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: dict[Path, asyncio.AbstractServer] = {}
        self._adapters: list[Any] = []
        self._sessions: set[_BoardSession] = set()

    def start(self) -> VirtualRadio:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self.link = LocalLink()
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="virtual radio", daemon=True)
        self._thread.start()
        ready.wait(CALL_TIMEOUT_S)
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            for server in self._servers.values():
                server.close()
            for session in list(self._sessions):
                await session.power_off()
            for transport in self._adapters:
                await transport.close()

        try:
            self.call(shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT_S)
            self._thread = None
            self._loop = None

    def __enter__(self) -> VirtualRadio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float = CALL_TIMEOUT_S) -> _T:
        """Run ``coro`` on the radio's loop from another thread and return its result."""
        if self._loop is None:
            coro.close()
            raise RadioError("virtual radio not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def attach_board(self, socket_path: Path, address: str) -> None:
        """Serve a mock board's `bluetooth` stand-in at ``socket_path``; its radio has ``address``."""

        async def serve() -> None:
            async def on_boot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                session = _BoardSession(self, address, reader, writer)
                self._sessions.add(session)
                try:
                    await session.run()
                finally:
                    self._sessions.discard(session)

            self._servers[socket_path] = await asyncio.start_unix_server(on_boot, str(socket_path))

        self.call(serve())

    def detach_board(self, socket_path: Path) -> None:
        """The mock board is gone: no more boots at that socket (a running session ends with its child)."""

        async def close() -> None:
            server = self._servers.pop(socket_path, None)
            if server is not None:
                server.close()

        if self._loop is not None:
            self.call(close())

    def drop_links(self, address: str) -> int:
        """The board at ``address`` goes out of range: its connections end by supervision timeout on
        both sides (the board keeps running and advertises again). Returns how many were dropped."""

        async def drop() -> int:
            dropped = 0
            for session in self._sessions:
                if session.address == address and session.device is not None:
                    for connection in list(session.device.connections.values()):
                        await connection.disconnect(LOST_BOARD_REASON)
                        dropped += 1
            return dropped

        return self.call(drop())

    def add_adapter(self, hci_socket: Path, address: str) -> None:
        """A controller on the link whose HCI is served at ``hci_socket`` (a central's adapter)."""

        async def add() -> None:
            transport = await open_unix_server_transport(str(hci_socket))
            controller = Controller(f"adapter {address}", host_source=transport.source, host_sink=transport.sink,
                                    link=self.link, public_address=address)
            controller.le_acl_data_packet_length = LE_ACL_PACKET_BYTES
            self._adapters.append(transport)

        self.call(add())


class _BoardSession:
    """One boot of a board's radio: the stand-in's calls in, the stack's events out (radio thread)."""

    def __init__(self, radio: VirtualRadio, address: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.radio = radio
        self.address = address
        self.reader = reader
        self.writer = writer
        self.device: Device | None = None
        self.controller: Controller | None = None
        self.name = "MPY NIMBLE"
        self.mtu = 23
        self.chars: dict[int, gatt.Characteristic] = {}
        self.done_marks: collections.deque[int] = collections.deque()  # packets queued after each notification
        self.security = {"bond": False, "mitm": False, "le_secure": False, "io": 3}  # the port's defaults
        self.trusted: dict[int, tuple[bool, bool]] = {}  # connection handle -> (encrypted, authenticated)
        self.pairing: set[int] = set()  # connection handles with a pairing in progress
        self.bonds_read: dict[str, PairingKeys] = {}  # bond name -> the keys the firmware last gave
        # questions to the firmware: g/s, answered in order (R); p, answered per connection (P)
        self.answers: collections.deque[asyncio.Future[bytes | None]] = collections.deque()
        self.passkeys: dict[int, asyncio.Future[bytes | None]] = {}
        self.calls: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    def send(self, kind: str, body: bytes = b"") -> None:
        if not self.writer.is_closing():
            self.writer.write(struct.pack("<BH", ord(kind), len(body)) + body)

    async def run(self) -> None:
        self.radio.stats.board_boots[self.address] += 1
        # Calls run in order on a task of their own, so an answer the stack awaits from the board
        # (a bond while it powers on, a passkey) is read while a call waits for it.
        worker = asyncio.create_task(self._calls(), name=f"board {self.address}: calls")
        try:
            while True:
                kind, n = struct.unpack("<BH", await self.reader.readexactly(3))
                body = await self.reader.readexactly(n)
                if kind == ord("R"):
                    self._answered(body)
                elif kind == ord("P"):
                    answer = self.passkeys.pop(struct.unpack_from("<H", body)[0], None)
                    if answer is not None and not answer.done():
                        answer.set_result(body)
                else:
                    self.calls.put_nowait((chr(kind), body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the board's process is gone: reset, power cut or stop
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            for answer in [*self.answers, *self.passkeys.values()]:
                answer.cancel()
            await self.power_off()

    async def _calls(self) -> None:
        while True:
            kind, body = await self.calls.get()
            try:
                await self.on_call(kind, body)
            except Exception:  # noqa: BLE001 - a radio that cannot go on is a board that lost its radio
                log.exception("board %s: radio call %r failed; its radio goes off", self.address, kind)
                self.writer.close()  # the stand-in sees the radio gone (ENODEV), run() powers it off
                return

    def _answered(self, body: bytes) -> None:
        # The stand-in answers every g and s at once, in order: R is the oldest question's
        while self.answers:
            answer = self.answers.popleft()
            if not answer.done():
                answer.set_result(body)
                return

    async def ask(self, kind: str, body: bytes) -> bytes | None:
        """Put a question to the firmware's IRQ handler and wait for its answer (None: the board is gone,
        or for a passkey (p), it did not answer: it may disconnect instead)."""
        answer: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        if kind == "p":
            self.passkeys[struct.unpack_from("<H", body)[0]] = answer
        else:
            self.answers.append(answer)
        self.send(kind, body)
        try:
            return await asyncio.wait_for(answer, BOARD_ANSWER_TIMEOUT_S)
        except (TimeoutError, asyncio.CancelledError):
            return None

    async def power_off(self) -> None:
        """The chip lost power: its connections drop as a supervision timeout, its controller leaves."""
        device, self.device = self.device, None
        if device is not None:
            for connection in list(device.connections.values()):
                try:
                    await connection.disconnect(LOST_BOARD_REASON)
                except Exception:  # noqa: BLE001 - the link may already be down
                    pass
            try:
                await device.stop_advertising()
            except Exception:  # noqa: BLE001
                pass
        if self.controller is not None and self.radio.link is not None:
            self.radio.link.remove_controller(self.controller)
            self.controller = None
        self.writer.close()

    async def _ensure_device(self) -> Device:
        if self.device is None:
            controller = Controller(f"board {self.address}", link=self.radio.link, public_address=self.address)
            controller.le_acl_data_packet_length = LE_ACL_PACKET_BYTES
            device = Device(name=self.name, address=hci.Address(self.address),
                            host=Host(controller, AsyncPipeSink(controller)))
            device.gatt_server.max_mtu = self.mtu
            device.keystore = _BoardKeyStore(self)
            device.pairing_config_factory = self._pairing_config
            device.on("connection", self._on_connection)
            await device.power_on()
            queue = device.host.le_acl_packet_queue
            if queue is not None:
                queue.on("flow", self._on_flow)
            self.controller, self.device = controller, device
        return self.device

    def _on_connection(self, connection: Connection) -> None:
        self.radio.stats.connections += 1
        peer = self._peer(connection)
        handle = connection.handle
        self.trusted[handle] = (False, False)
        self.send("c", peer)

        def gone(_reason: int) -> None:
            self.trusted.pop(handle, None)
            self.pairing.discard(handle)
            asked = self.passkeys.pop(handle, None)
            if asked is not None:
                asked.cancel()
            self.send("d", peer)

        connection.on("disconnection", gone)
        connection.on("connection_att_mtu_update", lambda: self.send("m", struct.pack("<HH", handle,
                                                                                       connection.att_mtu)))
        connection.on("pairing_start", lambda: self.pairing.add(handle))
        connection.on("pairing", lambda keys: self._paired(connection, keys))
        connection.on("pairing_failure", lambda _reason: self._paired(connection, None))
        connection.on("connection_encryption_change", lambda: self._encrypted(connection))
        connection.on("connection_encryption_failure", lambda _error: self._encryption_update(handle, False, False,
                                                                                                False, 0))

    def _pairing_config(self, connection: Connection) -> PairingConfig:
        sec = self.security
        return PairingConfig(sc=bool(sec["le_secure"]), mitm=bool(sec["mitm"]), bonding=bool(sec["bond"]),
                             delegate=_BoardDelegate(self, connection.handle, int(sec["io"]), bool(sec["mitm"])))

    def _paired(self, connection: Connection, keys: PairingKeys | None) -> None:
        """A pairing ended (keys None: it failed): NimBLE reports the link's state as it is now."""
        handle = connection.handle
        self.pairing.discard(handle)
        if keys is None:
            self._encryption_update(handle, bool(connection.encryption), False, False, 0)
            return
        self.radio.stats.pairings += 1
        # le_secure: only an LE Secure Connections key counts; Just Works is never authenticated
        secure = keys.ltk is not None or not self.security["le_secure"]
        authenticated = secure and any(k is not None and k.authenticated
                                       for k in (keys.ltk, keys.ltk_peripheral))
        self._encryption_update(handle, True, authenticated, bool(self.security["bond"]),
                                connection.encryption_key_size)

    def _encrypted(self, connection: Connection) -> None:
        """Encryption started. NimBLE's permission checks see the new security at once (a write right
        behind it is taken). In a pairing the firmware hears at its end, after the keys are exchanged
        and stored; else a bonded central's LTK did it, the bond just read from the board for it
        (bonds_read), which says whether that pairing was authenticated."""
        handle = connection.handle
        if not connection.encryption:
            return
        if handle in self.pairing:
            session = self.device.smp_manager.sessions.get(handle) if self.device else None
            authenticated = session is not None and session.pairing_method != PairingMethod.JUST_WORKS and (
                session.sc or not self.security["le_secure"])
            self.trusted[handle] = (True, authenticated)
            return
        keys = self.bonds_read.get(bond_name(str(connection.peer_address)))
        authenticated = keys is not None and keys.ltk is not None and keys.ltk.authenticated
        self._encryption_update(handle, True, authenticated, keys is not None, connection.encryption_key_size)

    def _encryption_update(self, handle: int, encrypted: bool, authenticated: bool, bonded: bool,
                           key_size: int) -> None:
        if handle in self.trusted:
            self.trusted[handle] = (encrypted, authenticated)
        self.radio.stats.encryption_updates.append((encrypted, authenticated, bonded))
        self.send("e", struct.pack("<HBBBB", handle, encrypted, authenticated, bonded, key_size))

    @staticmethod
    def _peer(connection: Connection) -> bytes:
        addr = connection.peer_address
        return struct.pack("<HB", connection.handle, 0 if addr.is_public else 1) + bytes(reversed(bytes(addr)))

    def _on_flow(self) -> None:
        queue = self.device.host.le_acl_packet_queue if self.device is not None else None
        done = 0
        while self.done_marks and queue is not None and queue.completed >= self.done_marks[0]:
            self.done_marks.popleft()
            done += 1
        if done:
            self.send("k", bytes((done,)))

    async def on_call(self, kind: str, body: bytes) -> None:
        if kind == "A":
            if body[0]:
                self.send("a", bytes.fromhex(self.address.replace(":", "")))
                self.send("k", bytes((NOTIFY_CREDITS,)))
        elif kind == "G":
            key, _, value = body.decode().partition("=")
            if key == "gap_name":
                self.name = value
            elif key in ("bond", "mitm", "le_secure"):
                self.security[key] = value == "True"
            elif key == "io":
                self.security[key] = int(value)
            elif key == "mtu":
                self.mtu = int(value)
                if self.device is not None:
                    self.device.gatt_server.max_mtu = self.mtu
        elif kind == "S":
            device = await self._ensure_device()
            handles = []
            for text in body.decode().split(";"):
                svc_uuid, *chars = text.split(",")
                made = [self._characteristic(c) for c in chars]
                device.add_service(gatt.Service(svc_uuid, made))
                for c in made:
                    self.chars[c.handle] = c
                    handles.append(c.handle)
            self.send("h", struct.pack(f"<{len(handles)}H", *handles))
        elif kind == "V":
            device = await self._ensure_device()
            (interval_us,) = struct.unpack_from("<I", body)
            if interval_us:
                await device.start_advertising(advertising_data=body[4:],
                                               advertising_interval_min=max(20.0, interval_us / 1000))
            else:
                await device.stop_advertising()
        elif kind == "T":
            await self._notify(body)
        elif kind == "D":
            (handle,) = struct.unpack_from("<H", body)
            connection = self.device.lookup_connection(handle) if self.device else None
            if connection is not None:
                await connection.disconnect()

    def _characteristic(self, text: str) -> gatt.Characteristic:
        uuid, _, flags_text = text.partition("/")
        flags = int(flags_text)
        props = gatt.Characteristic.Properties(0)
        for bit, prop in _PROPERTIES.items():
            if flags & bit:
                props |= prop
        perms = gatt.Characteristic.Permissions(0)
        if flags & 0x0002:
            perms |= gatt.Characteristic.READABLE
        if flags & 0x000C:
            perms |= gatt.Characteristic.WRITEABLE
        holder: list[gatt.Characteristic] = []

        def written(connection: Connection, value: bytes) -> None:
            # NimBLE's permission check, on the security the board's stack knows (Bumble's own check
            # would take any encrypted LE link for an authenticated one): a write request gets the
            # error, a write command is dropped (Bumble logs the error and ignores it)
            encrypted, authenticated = self.trusted.get(connection.handle, (False, False))
            if flags & _FLAG_WRITE_ENCRYPTED and not encrypted:
                self.radio.stats.refused_writes += 1
                raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_ENCRYPTION, holder[0].handle)
            if flags & _FLAG_WRITE_AUTHENTICATED and not authenticated:
                self.radio.stats.refused_writes += 1
                raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_AUTHENTICATION, holder[0].handle)
            self.radio.stats.writes += 1
            self.send("w", struct.pack("<HH", connection.handle, holder[0].handle) + bytes(value))

        char = gatt.Characteristic(uuid, props, perms, gatt.CharacteristicValue(write=written, read=lambda _c: b""))
        holder.append(char)
        return char

    async def _notify(self, body: bytes) -> None:
        conn_handle, value_handle = struct.unpack_from("<HH", body)
        device = self.device
        connection = device.lookup_connection(conn_handle) if device else None
        char = self.chars.get(value_handle)
        queue = device.host.le_acl_packet_queue if device else None
        if connection is None or char is None or queue is None:
            self.send("k", b"\x01")  # nothing went on the air: the buffer is free again
            return
        # MicroPython's gatts_notify sends whether or not the central subscribed (force=True)
        await device.notify_subscriber(connection, char, body[4:], force=True)
        self.radio.stats.notifications += 1
        self.done_marks.append(queue.queued)
        self._on_flow()


class _BoardDelegate(PairingDelegate):
    """The board's side of a pairing: the questions NimBLE puts to the application (_IRQ_PASSKEY_ACTION)
    go to the firmware, whose gap_passkey() answers them; a board that answers nothing (it
    disconnects) fails the pairing."""

    def __init__(self, session: _BoardSession, handle: int, io: int, mitm: bool) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability(io))
        self.session = session
        self.handle = handle
        self.mitm = mitm

    async def confirm(self, auto: bool = False) -> bool:
        # Just Works (the central has no keyboard, or pretends so): no MITM protection, so a board that
        # requires it (config mitm=True) fails the pairing and keeps nothing.
        return not self.mitm

    async def _passkey_action(self, action: int, number: int = 0) -> int | None:
        answer = await self.session.ask("p", struct.pack("<HBI", self.handle, action, number))
        if answer is None or len(answer) < 7:
            return None
        conn, answered, passkey = struct.unpack_from("<HBI", answer)
        return passkey if (conn, answered) == (self.handle, action) else None

    async def generate_passkey(self) -> int:
        passkey = await self._passkey_action(_PASSKEY_DISPLAY)
        if passkey is None or not 0 <= passkey <= 999_999:
            raise RadioError("the board gave no passkey")  # Bumble's SMP fails the pairing
        return passkey

    async def get_number(self) -> int | None:
        return await self._passkey_action(_PASSKEY_INPUT)

    async def compare_numbers(self, number: int, digits: int) -> bool:
        return bool(await self._passkey_action(_PASSKEY_NUMERIC_COMPARISON, number))


class _BoardKeyStore(KeyStore):
    """Bumble's key store backed by the firmware's _IRQ_GET_SECRET / _IRQ_SET_SECRET, so bonds are kept
    in the board's own files as on the port. A bond is one record: authenticated (u8), the peer's
    address type (u8), its LTK (16 bytes). No resolving keys (get_all is empty): the Pi connects with
    its public address."""

    def __init__(self, session: _BoardSession) -> None:
        self.session = session

    async def get(self, name: str) -> PairingKeys | None:
        answer = await self.session.ask("g", struct.pack("<BH", _PEER_SEC, 0) + bond_name(name).encode())
        if not answer or answer[0] != 1 or len(answer) != 19:
            self.session.bonds_read.pop(bond_name(name), None)
            return None
        keys = PairingKeys()
        keys.address_type = hci.AddressType(answer[2])
        keys.ltk = PairingKeys.Key(value=answer[3:19], authenticated=bool(answer[1]))
        self.session.bonds_read[bond_name(name)] = keys
        return keys

    async def update(self, name: str, keys: PairingKeys) -> None:
        if keys.ltk is None:
            return  # legacy pairing (no LE Secure Connections key): not kept, as le_secure refuses it
        value = bytes((keys.ltk.authenticated, keys.address_type or 0)) + keys.ltk.value
        await self._set(name, value)

    async def delete(self, name: str) -> None:
        await self._set(name, None)

    async def _set(self, name: str, value: bytes | None) -> None:
        key = bond_name(name).encode()
        body = bytes((_PEER_SEC, len(key))) + key + (b"\x01" + value if value is not None else b"\x00")
        if await self.session.ask("s", body) != b"\x01":
            raise RadioError(f"the board did not store the bond of {name}")
