"""BLE transport against an in-process fake with bleak's BleakClient API.

The radio cannot run in CI, so these tests check our side of the contract only: the fake records
what bleak would be asked to do and plays notifications and disconnects the way bleak delivers
them (callbacks on the event loop). The same transport over a real Bluetooth host stack (MTU
exchange, notifications, drops) against the real firmware is hil_tests/test_ble.py, on a virtual
radio; BlueZ itself is not covered (docs/operations.md, "BLE on a real Pi").
"""

from __future__ import annotations

import asyncio

import pytest

from liftwatch.edge_daemon.transport import TransportClosedError, TransportOpenError
from liftwatch.edge_daemon.transport.ble import NUS_RX_UUID, NUS_TX_UUID, BleTransport


class FakeBleakClient:
    """Same call shapes as bleak.BleakClient for what BleTransport uses."""

    def __init__(self, address, disconnected_callback=None, *, mtu_size=23, fail_connect=False, fail_pair=False):
        self.address = address
        self._disconnected_callback = disconnected_callback
        self.mtu_size = mtu_size
        self.fail_connect = fail_connect
        self.fail_pair = fail_pair
        self.paired = False
        self.is_connected = False
        self.notify: dict[str, object] = {}
        self.writes: list[tuple[str, bytes, bool | None]] = []
        self.disconnects = 0

    async def connect(self, **kwargs):
        await asyncio.sleep(0)
        if self.fail_connect:
            raise TimeoutError(f"Device with address {self.address} was not found")
        self.is_connected = True

    async def pair(self, **kwargs):
        assert self.is_connected
        if self.fail_pair:
            raise OSError("Authentication Failed")  # what BlueZ says when no agent has the passkey
        self.paired = True

    async def start_notify(self, char_specifier, callback, **kwargs):
        assert self.is_connected and self.paired  # the board sends nothing before pairing
        self.notify[str(char_specifier)] = callback

    async def write_gatt_char(self, char_specifier, data, response=None):
        if not self.is_connected:
            raise OSError("Not connected")
        self.writes.append((str(char_specifier), bytes(data), response))

    async def disconnect(self):
        self.disconnects += 1
        self.is_connected = False

    # What the radio does, driven by the test:
    def board_notifies(self, payload: bytes) -> None:
        self.notify[NUS_TX_UUID](object(), bytearray(payload))

    def board_goes_away(self) -> None:
        self.is_connected = False
        if self._disconnected_callback:
            self._disconnected_callback(self)


def factory(clients: list[FakeBleakClient], **kw):
    def make(address, on_disconnect):
        c = FakeBleakClient(address, on_disconnect, **kw)
        clients.append(c)
        return c

    return make


async def test_notifications_are_read_in_order_and_writes_chunked_to_mtu():
    clients: list[FakeBleakClient] = []
    t = BleTransport("AA:BB:CC:DD:EE:01", client_factory=factory(clients, mtu_size=23))
    await t.open()
    c = clients[0]
    assert NUS_TX_UUID in c.notify
    for part in (b"\x05abc", b"def\x00", b"\x02x\x00"):
        c.board_notifies(part)
    got = b""
    while len(got) < 11:
        got += await asyncio.wait_for(t.read(), 1.0)
    assert got == b"\x05abcdef\x00\x02x\x00"

    frame = bytes(range(50))
    await t.write(frame)
    assert [w[0] for w in c.writes] == [NUS_RX_UUID] * 3
    assert [len(w[1]) for w in c.writes] == [20, 20, 10]  # MTU 23 - 3 bytes ATT header
    assert b"".join(w[1] for w in c.writes) == frame
    assert all(w[2] is False for w in c.writes)  # write without response: no round trip per chunk
    await t.close()
    assert c.disconnects == 1


async def test_disconnect_raises_closed_and_reopen_uses_new_client():
    clients: list[FakeBleakClient] = []
    t = BleTransport("AA:BB:CC:DD:EE:02", client_factory=factory(clients))
    await t.open()
    clients[0].board_notifies(b"one")
    clients[0].board_goes_away()
    assert await t.read() == b"one"  # bytes that arrived before the drop are not lost
    with pytest.raises(TransportClosedError):
        await asyncio.wait_for(t.read(), 1.0)
    with pytest.raises(TransportClosedError):
        await t.write(b"x")

    await t.open()
    assert len(clients) == 2
    clients[1].board_notifies(b"two")
    assert await asyncio.wait_for(t.read(), 1.0) == b"two"
    await t.close()


async def test_connect_failure_is_typed_open_error():
    clients: list[FakeBleakClient] = []
    t = BleTransport("AA:BB:CC:DD:EE:03", client_factory=factory(clients, fail_connect=True))
    with pytest.raises(TransportOpenError) as err:
        await t.open()
    assert "was not found" in str(err.value)
    assert clients[0].disconnects == 1
    with pytest.raises(TransportClosedError):
        await t.read()


async def test_a_refused_pairing_is_a_typed_open_error_and_nothing_is_subscribed():
    clients: list[FakeBleakClient] = []
    t = BleTransport("AA:BB:CC:DD:EE:06", client_factory=factory(clients, fail_pair=True))
    with pytest.raises(TransportOpenError, match="Authentication Failed"):
        await t.open()
    assert clients[0].notify == {} and clients[0].disconnects == 1
    with pytest.raises(TransportClosedError):
        await t.read()


async def test_overflowing_queue_counts_dropped_bytes_and_still_reports_disconnect():
    clients: list[FakeBleakClient] = []
    t = BleTransport("AA:BB:CC:DD:EE:04", client_factory=factory(clients))
    await t.open()
    from liftwatch.edge_daemon.transport.ble import RX_QUEUE_CHUNKS

    for _ in range(RX_QUEUE_CHUNKS + 5):
        clients[0].board_notifies(b"0123456789")
    assert t.dropped_bytes == 50
    clients[0].board_goes_away()
    with pytest.raises(TransportClosedError):
        for _ in range(RX_QUEUE_CHUNKS + 1):
            await t.read()


async def test_daemon_serves_a_ble_board_and_acks_through_gatt_writes(tmp_path):
    """The whole daemon over the fake: notifications in, EVENT stored, ACK written to the RX char."""
    from liftwatch.edge_daemon.config import parse_config
    from liftwatch.edge_daemon.daemon import Daemon
    from liftwatch.protocol import lwproto as lw
    from liftwatch.protocol.framing import FrameReader, encode_frame

    clients: list[FakeBleakClient] = []
    transport = BleTransport("AA:BB:CC:DD:EE:05", client_factory=factory(clients, mtu_size=185))
    cfg = parse_config({"daemon": {"site": "s", "state_dir": str(tmp_path / "state")},
                        "boards": [{"car": "car-ble", "link": "ble", "address": "AA:BB:CC:DD:EE:05",
                                    "require_tag": False}]},  # the transport under test, not auth
                       "test", tmp_path)
    daemon = Daemon(cfg, transports={"car-ble": transport})
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    try:
        for _ in range(200):
            if clients and clients[0].is_connected and NUS_TX_UUID in clients[0].notify:
                break
            await asyncio.sleep(0.01)
        wires = [
            encode_frame(lw.T_HELLO, ["ble-board", "1.0", "lis3dh", 0, "power_on", [], 400, 16384, True, False, 4,
                                      [0, 0, 16384]], 4, 0, 100),
            encode_frame(lw.T_EVENT, [31, 3, 1, 100, {}], 4, 1, 110),
        ]
        stream = b"".join(wires)
        for i in range(0, len(stream), 20):  # 20-byte notifications: frames split across them
            clients[0].board_notifies(stream[i : i + 20])
        acks = []
        for _ in range(300):
            acks = [f for f in FrameReader(sender=lw.FROM_HOST).feed(b"".join(w[1] for w in clients[0].writes)) if f.type == lw.T_ACK]
            if acks:
                break
            await asyncio.sleep(0.01)
        assert [(a.payload[0], a.payload[1], a.boot_id) for a in acks] == [(lw.T_EVENT, 31, 4)]
        assert daemon.boards[0].pipeline.session.board_id == "ble-board"
    finally:
        stop.set()
        await asyncio.wait_for(run, 10)
