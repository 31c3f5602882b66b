"""BLE end to end on a VIRTUAL radio: the real firmware's ble_nus.py under MicroPython on a mock
board, Bumble's real host stack (HCI, L2CAP, ATT, GATT, SMP) on both ends, the daemon's BleTransport.

The radio is virtual (hil_tests/mockboard/radio.py): Bumble controllers on a simulated link, no RF.
These tests show the protocol stack and our code on it (advertising, scan by name, connect, MTU
exchange, pairing with the passkey and bonded reconnects, centrals without it refused, notifications,
write without response, disconnects, reconnects); they cannot show range,
interference or a real controller's timing (docs/operations.md, "BLE on a real Pi").
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from liftwatch.edge_daemon.transport import TransportOpenError
from liftwatch.edge_daemon.transport.ble import NUS_RX_UUID, NUS_TX_UUID, BleTransport
from liftwatch.hil.mockboard.board import Direction, MockBoard, ResetCause
from liftwatch.hil.mockboard.central import HostLink, VirtualAdapter, board_name, open_link
from liftwatch.hil.mockboard.radio import VirtualRadio, board_address
from liftwatch.hil.sim.scenario import Scenario
from liftwatch.protocol import lwproto
from liftwatch.protocol.framing import encode_frame
from liftwatch.protocol.messages import Command, MessageType
from liftwatch.protocol.trace import DOOR_CLOSED, CarSample

from .conftest import (BLE_PASSKEY, REST_PREFIX_S, RUN_SPEED, TALK_SPEED, ble_flash_args, boards_from, daemon_config,
                       expected_raised, flash_image, run_daemon, upstream_journal)

pytestmark = [pytest.mark.hil, pytest.mark.mock_only]


@pytest.fixture(scope="session")
def ble_firmware_image(tmp_path_factory: pytest.TempPathFactory, board_heap_k: int) -> Path:
    """The real firmware, flashed with `transport = 1` (BLE) in its board settings and BLE_PASSKEY."""
    return flash_image(tmp_path_factory.mktemp("ble-firmware") / "ble.img", board_heap_k,
                       *ble_flash_args(tmp_path_factory.mktemp("ble-config")))


@pytest.fixture
def radio() -> Iterator[VirtualRadio]:
    with VirtualRadio() as r:
        yield r


@pytest.fixture
def ble_flashed(ble_firmware_image: Path, board_heap_k: int, tmp_path: Path, mock_board_factory,
                radio: VirtualRadio) -> Callable[..., MockBoard]:
    make = boards_from(ble_firmware_image, board_heap_k, tmp_path, mock_board_factory)
    return lambda samples=None, **kw: make(samples, radio=radio, **kw)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer
    with tempfile.TemporaryDirectory(prefix="lw-ble-") as d:
        yield Path(d)


def test_firmware_talks_over_a_real_gatt_stack(ble_flashed, radio: VirtualRadio, socket_dir: Path) -> None:
    """Scan by name, connect, MTU 247, notifications, host frames written without response, all through
    ATT/GATT; nothing goes over the board's UART."""
    board = ble_flashed(speed=TALK_SPEED)

    async def main() -> None:
        adapter = VirtualAdapter(radio, socket_dir, passkey=BLE_PASSKEY)
        host = HostLink(await open_link(adapter, board_name(board.uid)))
        hello = await host.calibrate()
        assert hello.payload[0] == board.uid  # board_id
        assert "ble" in hello.payload[5]  # capabilities: the firmware says which link it is on
        await host.send(MessageType.CONTROL, [Command.REQUEST_COUNTERS, 0], hello.boot_id)
        await host.until(lambda f: f.type == MessageType.COUNTERS)
        assert host.reader.drops == {}
        # The board's ATT MTU 247 (ble_nus) won the exchange with BlueZ's 517: full 244-byte notifications.
        assert max(host.chunks) == 244
        await host.link.close()
        await adapter.close()

    asyncio.run(main())
    assert board.stats.uart_bytes[Direction.TO_HOST] == 0
    assert radio.stats.writes >= 3 and radio.stats.notifications > 0 and radio.stats.refused_writes == 0
    # one LE Secure Connections pairing with the passkey: encrypted, authenticated (MITM), bonded
    assert radio.stats.pairings == 1 and radio.stats.encryption_updates == [(True, True, True)]


def test_a_second_central_finds_no_board_while_the_pi_is_connected(ble_flashed, radio: VirtualRadio,
                                                                   socket_dir: Path) -> None:
    """The board takes one central: connected, it stops advertising, so a second central's scan finds
    nothing and the Pi's link goes on untouched. (Once the Pi lets go, another central can connect,
    and is refused: test_only_a_central_that_paired_with_the_passkey_is_heard.)"""
    board = ble_flashed(speed=TALK_SPEED)

    async def main() -> None:
        pi = VirtualAdapter(radio, socket_dir, passkey=BLE_PASSKEY)
        intruder = VirtualAdapter(radio, socket_dir, address="DC:A6:32:00:00:66")
        host = HostLink(await open_link(pi, board_name(board.uid)))
        await host.calibrate()
        other = BleTransport(board_name(board.uid), client_factory=intruder.client_factory())
        with pytest.raises(TransportOpenError, match="not found"):
            await other.open()
        before = len(host.frames)
        await host.send(MessageType.CONTROL, [Command.REQUEST_COUNTERS, 0], host.frames[-1].boot_id)
        await host.until(lambda f: f.type == MessageType.COUNTERS and host.frames.index(f) >= before)
        assert radio.stats.connections == 1
        await host.link.close()
        await pi.close()
        await intruder.close()

    asyncio.run(main())


def test_link_drops_and_a_reboot_are_recovered(ble_flashed, radio: VirtualRadio, socket_dir: Path) -> None:
    """Three drops by supervision timeout (the board out of range) and a board reboot: each time the
    host sees the link close, finds the board advertising again and talks to it; the reboot shows as
    the next boot id in a fresh HELLO."""
    board = ble_flashed(speed=TALK_SPEED)
    address = board_address(board.uid)

    async def main() -> None:
        adapter = VirtualAdapter(radio, socket_dir, passkey=BLE_PASSKEY)
        host = HostLink(await open_link(adapter, board_name(board.uid)))
        hello = await host.calibrate()
        for _ in range(3):
            assert await asyncio.to_thread(radio.drop_links, address) == 1
            await host.closed()
            host.link = await open_link(adapter, board_name(board.uid))
            before = len(host.frames)
            await host.send(MessageType.CONTROL, [Command.REQUEST_COUNTERS, 0], hello.boot_id)
            await host.until(lambda f: f.type == MessageType.COUNTERS and host.frames.index(f) >= before)
        board.reset(ResetCause.HARD)
        await host.closed()
        host.link = await open_link(adapter, board_name(board.uid))
        await host.send(MessageType.CONTROL, [Command.REQUEST_HELLO, 0])
        again = await host.until(lambda f: f.type == MessageType.HELLO and f.boot_id != hello.boot_id)
        assert again.boot_id == (hello.boot_id + 1) & 0xFFFF
        assert again.payload[4] == "hard"  # reset_cause
        await host.link.close()
        await adapter.close()

    asyncio.run(main())
    assert radio.stats.connections == 5
    assert radio.stats.board_boots[address] == 2
    # paired once: every reconnect, the one after the reboot too, encrypted with the bond (the board's
    # from its own flash, as the fresh controller after the reboot knows nothing)
    assert radio.stats.pairings == 1
    assert radio.stats.encryption_updates == [(True, True, True)] * 5


def test_only_a_central_that_paired_with_the_passkey_is_heard(ble_flashed, radio: VirtualRadio,
                                                              socket_dir: Path) -> None:
    """The attack: while the Pi is away, centrals without the passkey connect to the (unkeyed) board and
    write a CONTROL reboot, which the board would obey from its Pi: one that never pairs, one that tries
    Just Works (no keyboard), one with a wrong passkey. Each is disconnected by the board, receives
    no notification, and no write of theirs reaches the firmware; the bonded Pi then reconnects
    without pairing again and finds the board not rebooted."""
    board = ble_flashed(speed=TALK_SPEED)
    name = board_name(board.uid)

    async def intrude(adapter: VirtualAdapter, pair: bool, boot_id: int) -> bytes:
        gone = asyncio.Event()
        client = adapter.client_factory()(name, lambda _client: gone.set())
        await client.connect()
        notified = bytearray()
        await client.start_notify(NUS_TX_UUID, lambda _char, chunk: notified.extend(chunk))
        if pair:
            with contextlib.suppress(Exception):  # refused: the board fails the pairing
                await client.pair()
        with contextlib.suppress(OSError):  # not connected any more: the board was quicker
            reboot = encode_frame(MessageType.CONTROL, [Command.REBOOT, 0], boot_id, 100, 0, sender=lwproto.FROM_HOST)
            await client.write_gatt_char(NUS_RX_UUID, reboot, response=False)
        # the board shows it the door: at once after a failed pairing, else after its pairing time
        await asyncio.wait_for(gone.wait(), 30.0)
        return bytes(notified)

    async def main() -> None:
        pi = VirtualAdapter(radio, socket_dir, passkey=BLE_PASSKEY)
        host = HostLink(await open_link(pi, name))
        hello = await host.calibrate()
        await host.link.close()
        writes = radio.stats.writes
        intruders = [(VirtualAdapter(radio, socket_dir, address="DC:A6:32:00:00:61"), False),
                     (VirtualAdapter(radio, socket_dir, address="DC:A6:32:00:00:62"), True),
                     (VirtualAdapter(radio, socket_dir, address="DC:A6:32:00:00:63", passkey=BLE_PASSKEY + 1), True)]
        for adapter, pair in intruders:
            assert await intrude(adapter, pair, hello.boot_id) == b""
            await adapter.close()
        assert radio.stats.writes == writes and radio.stats.refused_writes >= 1
        host.link = await open_link(pi, name)
        await host.send(MessageType.CONTROL, [Command.REQUEST_HELLO, 0], hello.boot_id)
        again = await host.until(lambda f: f.type == MessageType.HELLO and host.frames.index(f) > 0)
        assert again.boot_id == hello.boot_id  # not rebooted
        await host.link.close()
        await pi.close()

    asyncio.run(main())
    assert radio.stats.pairings == 1  # the Pi's; the Just Works and wrong-passkey attempts failed
    # the Pi, bonded the second time; the Just Works and wrong-passkey pairings failed (nothing encrypted,
    # nothing kept); the central that never paired got no update at all
    assert radio.stats.encryption_updates == [(True, True, True), (False, False, False), (False, False, False),
                                              (True, True, True)]
    assert radio.stats.board_boots[board_address(board.uid)] == 1


# Longer than the UART run's rest: calibrating over BLE and the daemon's first connection take some
# real seconds at talking speed, and the drops must find the daemon connected.
BLE_REST_PREFIX_S = 3 * REST_PREFIX_S


def _trip_starts_us(sc: Scenario) -> list[int]:
    """Car times at which the car starts moving after standing still (its trips begin)."""
    rest: CarSample | None = None
    still_since = 0
    starts = []
    for s in sc.timeline(rest_prefix_s=BLE_REST_PREFIX_S):
        if isinstance(s, CarSample):
            rest = rest or s
            moved = max(abs(s.ax_mg - rest.ax_mg), abs(s.ay_mg - rest.ay_mg), abs(s.az_mg - rest.az_mg)) > 10
            if not moved:
                still_since = still_since or s.t_us
            elif still_since and s.t_us - still_since > 3_000_000 and s.t_us > BLE_REST_PREFIX_S * 1e6:
                starts.append(s.t_us)
                still_since = 0
            else:
                still_since = 0
    return starts


# Car seconds a reconnect may take: at the run's speed, the real half second the central needs to back
# off, scan and connect again, with room for a loaded machine.
DROP_GAP_US = 20_000_000


def _door_opens_moving_us(sc: Scenario, starts: list[int]) -> int:
    """Car time at which the door opens during the scenario's last trip (moving_door_open's)."""
    return next(s.t_us for s in sc.timeline(rest_prefix_s=BLE_REST_PREFIX_S)
                if isinstance(s, CarSample) and s.t_us > starts[-1] and not s.inputs & DOOR_CLOSED)


@pytest.mark.parametrize(("name", "later_drops"), [
    pytest.param("moving_door_open", ("at_rest", "in_the_door_open_move"), id="moving_door_open"),
    pytest.param("normal_hour", ("at_rest",), marks=pytest.mark.long, id="normal_hour"),
])
def test_daemon_over_ble_gets_every_fact_through_drops_mid_trip(name: str, later_drops: tuple[str, ...], ble_flashed,
                                                                radio: VirtualRadio, socket_dir: Path,
                                                                tmp_path: Path) -> None:
    """The scenarios test_e2e_daemon runs over the UART, over BLE: the daemon's own BleTransport, the
    link dropped mid-trip and again at rest and while the car moves with its door open (out of range:
    supervision timeout) and re-found by name each time. Events and trips upstream are the scenario's,
    each exactly once: a fault the link dropped out of is still one fact with one id."""
    sc = Scenario.load(name)
    truth = sc.ground_truth(BLE_REST_PREFIX_S)
    board = ble_flashed(sc.timeline(rest_prefix_s=BLE_REST_PREFIX_S), speed=TALK_SPEED)
    address = board_address(board.uid)
    adapter = VirtualAdapter(radio, socket_dir, passkey=BLE_PASSKEY)

    async def calibrate() -> None:
        host = HostLink(await open_link(adapter, board_name(board.uid)))
        await host.calibrate()
        await host.link.close()
        await adapter.close()  # its host lives on this loop; the daemon's run opens it on its own

    asyncio.run(calibrate())
    starts = _trip_starts_us(sc)
    first = starts[0] + 1_000_000  # a second into the first trip
    drop_at = [first]
    if "at_rest" in later_drops:  # half way to the next trip
        following = next((t for t in starts if t > first + 2 * DROP_GAP_US), first + 4 * DROP_GAP_US)
        drop_at.append((first + following) // 2)
    if "in_the_door_open_move" in later_drops:
        # a second after the door opened on the move: the board has raised its EVENT, and the car
        # arrives and stops while the link is down (the daemon raised moving_with_door_open a second
        # time at the reconnect, judging the inputs of before the gap: test_analytics_faults.py)
        drop_at.append(_door_opens_moving_us(sc, starts) + 1_000_000)
    assert all(b - a >= DROP_GAP_US for a, b in zip(drop_at, drop_at[1:])), drop_at  # each finds the link back
    drops: list[int] = []
    for at_us in drop_at:
        board.at(at_us, lambda: drops.append(radio.drop_links(address)))
    state = tmp_path / "state"
    state.mkdir()
    config = daemon_config(tmp_path / "liftwatch.toml", state, "\n".join([
        'link = "ble"', f'address = "{board_name(board.uid)}"',
        "require_tag = false"]),  # the link under test, not frame tags (a keyed board: test_replay_protection)
                           board.uid, sc)
    transport = BleTransport(board_name(board.uid), client_factory=adapter.client_factory())
    # The daemon's clock is the car's: from the car's first trip on slower than the UART run, so a
    # reconnect (a few tenths of a real second) costs car seconds, not minutes. The car at rest before
    # (the daemon connected) runs at the UART run's speed.
    speed = RUN_SPEED / 8
    run_daemon(config, board, truth.t_us, timeout_s=truth.t_us / 1e6 / speed * 4 + 60,
               transports={sc.car.name: transport}, speed=RUN_SPEED,
               speed_changes=[(starts[0] - DROP_GAP_US, speed)])
    assert drops == [1] * len(drop_at), (radio.stats, starts)  # every drop hit a live connection
    messages, raised, seen = upstream_journal(state)
    assert raised == expected_raised(sc), [(m["kind"], m.get("type"), m.get("state"), m["id"][:8], m.get("ts"))
                                           for m in messages if m["kind"] == "event"]
    # A trip is computed from the stream (the board keeps events, not samples): one the link was down
    # for is lost, as over a cut UART (link_cut_hour).
    unreportable = sc.expect.trips - sc.expect.trips_reported
    trips = sum(m["kind"] == "trip" for m in messages)
    assert truth.trips - unreportable - len(drops) <= trips <= truth.trips - unreportable, seen
    assert len({m["id"] for m in messages}) == len(messages)  # exactly once per id
    assert radio.stats.connections >= 2 + len(drop_at)  # calibration, the daemon's first link, one after each drop
