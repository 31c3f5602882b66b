"""BLE on the VIRTUAL radio: throughput, reconnect time and facts across drops.

    python benchmarks/ble.py [--json] [--drops 20] [--window-s 10]

The board is the real firmware (flashed with `transport = 1` and a pairing passkey; the Pi's adapter
pairs once and then reconnects bonded) on a mock board with the board's 96 KiB of heap (plus the
mock's measured allowances, docs/mockboard.md), its radio and the Pi's adapter
are Bumble stacks on a simulated link (hil_tests/mockboard/radio.py). No RF: the link carries packets
as fast as the event loop runs, so these are figures of the stacks and of our code, not of the air.
Prints a table; with --json the last line is one JSON object:

``frames_per_s``: board frames the host decoded per real second over --window-s, the board running
its car flat out (--speed 0: board time as fast as it goes), at the firmware's defaults (ATT MTU 247
after the exchange, 4 notifications per 15 ms connection interval of board time);
``frames_per_s_realtime``: the same with board time = real time (what a car produces);
``reconnect_s_p50``/``reconnect_s_max``: from a drop (supervision timeout) to the first frame on the
new connection, the host re-scanning at once, over --drops drops;
``facts_lost``: the scenario's events the daemon did not deliver upstream across --drops drops spread
over the run (each event re-sent by the board until ACKed: target 0); ``trips_lost`` beside it (a
trip is computed from the stream: one the link was down for is lost, as over a cut UART).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from figures import print_figures

from liftwatch.edge_daemon.transport.ble import BleTransport
from liftwatch.hil.conftest import (BLE_PASSKEY, REST_PREFIX_S, TALK_SPEED, ble_flash_args, daemon_config,
                                    expected_raised, flash_image, run_daemon, upstream_journal)
from liftwatch.hil.mockboard.board import MockBoard
from liftwatch.hil.mockboard.central import HostLink, VirtualAdapter, board_name, open_link
from liftwatch.hil.mockboard.radio import VirtualRadio, board_address
from liftwatch.hil.sim.scenario import Scenario
from liftwatch.upy import ESP32_HEAP_K

SCENARIO = "entrapment"  # three board and daemon events, half an hour of car time


async def _throughput(adapter: VirtualAdapter, board: MockBoard, speed: float, window_s: float) -> float:
    host = HostLink(await open_link(adapter, board_name(board.uid)))
    await host.calibrate()
    board.set_speed(speed)
    start = len(host.frames)
    t0 = time.monotonic()
    while time.monotonic() - t0 < window_s:
        host.frames += host.reader.feed(await asyncio.wait_for(host.link.read(), 10))
    rate = (len(host.frames) - start) / (time.monotonic() - t0)
    board.set_speed(TALK_SPEED)
    await host.link.close()
    return rate


async def _reconnects(adapter: VirtualAdapter, radio: VirtualRadio, board: MockBoard, drops: int) -> list[float]:
    host = HostLink(await open_link(adapter, board_name(board.uid)))
    times = []
    for _ in range(drops):
        await host.until(lambda f: True)
        host.frames.clear()
        started = time.monotonic()
        await asyncio.to_thread(radio.drop_links, board_address(board.uid))
        await host.closed()
        host.link = await open_link(adapter, board_name(board.uid))
        await host.until(lambda f: True)
        times.append(time.monotonic() - started)
    await host.link.close()
    return times


def _facts(tmp: Path, image: Path, radio: VirtualRadio, drops: int) -> tuple[int, int, int]:
    """(facts_lost, trips_lost, drops that hit a connection) for SCENARIO through the daemon."""
    sc = Scenario.load(SCENARIO)
    prefix = 3 * REST_PREFIX_S
    truth = sc.ground_truth(prefix)
    shutil.copyfile(image, tmp / "facts.img")
    board = MockBoard(tmp / "facts.img", sc.timeline(rest_prefix_s=prefix), speed=TALK_SPEED, radio=radio)
    board.start()
    sockets = Path(tempfile.mkdtemp(prefix="lw-ble-"))
    try:
        adapter = VirtualAdapter(radio, sockets, address="DC:A6:32:00:00:02", passkey=BLE_PASSKEY)

        async def calibrate() -> None:
            host = HostLink(await open_link(adapter, board_name(board.uid)))
            await host.calibrate()
            await host.link.close()
            await adapter.close()

        asyncio.run(calibrate())
        hit: list[int] = []
        start_us, end_us = int(prefix * 1e6), truth.t_us
        for i in range(1, drops + 1):
            board.at(start_us + (end_us - start_us) * i // (drops + 1),
                     lambda: hit.append(radio.drop_links(board_address(board.uid))))
        state = tmp / "state"
        state.mkdir()
        link = "\n".join(['link = "ble"', f'address = "{board_name(board.uid)}"', "require_tag = false"])
        config = daemon_config(tmp / "liftwatch.toml", state, link, board.uid, sc)
        transport = BleTransport(board_name(board.uid), client_factory=adapter.client_factory())
        speed = 25.0  # car seconds per real second: a reconnect costs tens of car seconds
        run_daemon(config, board, end_us, timeout_s=end_us / 1e6 / speed * 4 + 60,
                   transports={sc.car.name: transport}, speed=speed)
    finally:
        board.stop()
    messages, raised, _ = upstream_journal(state)
    facts_lost = sum(max(0, n - raised.get(k, 0)) for k, n in expected_raised(sc).items())
    trips = sum(m["kind"] == "trip" for m in messages)
    return facts_lost, truth.trips - (sc.expect.trips - sc.expect.trips_reported) - trips, sum(hit)


def main() -> None:
    # Bumble warns for every notification that arrives before the central subscribed (the board
    # notifies from connect on, as MicroPython's gatts_notify does regardless of subscription)
    logging.getLogger("bumble").setLevel(logging.ERROR)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--drops", type=int, default=20)
    p.add_argument("--window-s", type=float, default=10.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="liftwatch-ble-bench-") as d, VirtualRadio() as radio:
        tmp = Path(d)
        image = flash_image(tmp / "flashed.img", ESP32_HEAP_K, *ble_flash_args(tmp))
        shutil.copyfile(image, tmp / "link.img")
        board = MockBoard(tmp / "link.img", speed=TALK_SPEED, radio=radio)
        board.start()
        sockets = Path(tempfile.mkdtemp(prefix="lw-ble-"))
        try:
            adapter = VirtualAdapter(radio, sockets, passkey=BLE_PASSKEY)

            async def link_figures() -> tuple[float, float, list[float]]:
                flat_out = await _throughput(adapter, board, 0.0, args.window_s)
                realtime = await _throughput(adapter, board, 1.0, args.window_s)
                reconnects = await _reconnects(adapter, radio, board, args.drops)
                await adapter.close()
                return flat_out, realtime, reconnects

            flat_out, realtime, reconnects = asyncio.run(link_figures())
        finally:
            board.stop()
        (tmp / "facts").mkdir()
        facts_lost, trips_lost, hit = _facts(tmp / "facts", image, radio, args.drops)
    print_figures(
        {
            "radio": "virtual (Bumble LocalLink, no RF)",
            "frames_per_s": round(flat_out, 1),
            "frames_per_s_realtime": round(realtime, 1),
            "reconnect_s_p50": round(statistics.median(reconnects), 3),
            "reconnect_s_max": round(max(reconnects), 3),
            "drops": args.drops,
            "drops_on_a_connection": hit,
            "facts_lost": facts_lost,
            "trips_lost": trips_lost,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
