"""The real firmware on a mock board under faults: power cuts, a hung CPU, link cuts, line noise.

The board must come back by itself every time, keep its counters (losing at most one persistence
interval), and never lose an event it has not seen acknowledged.
"""

from __future__ import annotations

import random
import time

import pytest

from liftwatch.hil.mockboard.board import Direction, ResetCause
from liftwatch.hil.sim.scenario import Scenario
from liftwatch.protocol.messages import Command, Counters, Event, Heartbeat, Hello, MessageType

from .conftest import REST_PREFIX_S, TALK_SPEED, mpremote

pytestmark = pytest.mark.hil


def _hellos(tap, cause: str) -> list[Hello]:
    return [h for h in tap.of(Hello) if h.reset_cause == cause]


def test_boots_says_hello_and_heartbeats(firmware_ports, frame_tap) -> None:
    """Also on a real board (--board/--board-data): flashed, it boots, says HELLO and heartbeats."""
    tap = frame_tap(firmware_ports.data)
    tap.send_message(MessageType.CONTROL, [Command.REQUEST_HELLO, 0])
    hello = tap.wait_for(Hello, timeout=30)
    assert hello.board_id and hello.fw_version and hello.sensor_model
    assert hello.reset_cause in ("soft", "power_on")
    assert not hello.safe_mode
    hb = tap.wait_for(Heartbeat, timeout=30)
    # Headroom for bursts (retransmit queue, pre-trip margin): 20 KiB measured on the mock board.
    assert hb.heap_free >= 8192, hb.heap_free
    assert tap.reader.drops.total() == 0  # a clean link: every frame checks


@pytest.mark.mock_only
def test_power_cuts_at_random_moments_keep_counters_and_boot_count(flashed, frame_tap) -> None:
    rng = random.Random(5)
    sc = Scenario.load("normal_hour")
    board = flashed(sc.timeline(rest_prefix_s=REST_PREFIX_S), speed=TALK_SPEED)
    tap = frame_tap(board.ports.data)
    tap.calibrate()
    board.set_speed(0.0)
    boots = []
    for _ in range(3):
        board.wait_board_time(board.board_time_us() + rng.randint(20, 200) * 1_000_000, timeout=60)
        tap.send_message(MessageType.CONTROL, [Command.REQUEST_COUNTERS, 0])
        before = tap.wait_for(Counters, timeout=30)
        seen = len(_hellos(tap, "power_on"))
        board.power_cut(rng.uniform(0.5, 5.0))
        tap.wait_for(Hello, lambda h, n=seen: len(_hellos(tap, "power_on")) > n, timeout=30)
        boots.append(_hellos(tap, "power_on")[-1].boots)
        tap.send_message(MessageType.CONTROL, [Command.REQUEST_COUNTERS, 0])
        after = tap.wait_for(Counters, lambda c, b=before: c.boots > b.boots, timeout=30)
        assert after.boots == before.boots + 1
        assert after.door_cycles >= before.door_cycles  # never goes back: at most an interval is lost
        assert after.trips >= 0 and after.run_time_s >= 0
    assert boots == sorted(boots) and len(set(boots)) == 3
    assert board.stats.boots[ResetCause.POWER_ON] == 4


@pytest.mark.mock_only
def test_unacked_event_survives_a_power_cut(flashed, frame_tap) -> None:
    sc = Scenario.load("entrapment")  # a stop outside the door zone 60 s into the run of floor 2 -> 5
    board = flashed(sc.timeline(rest_prefix_s=REST_PREFIX_S), speed=TALK_SPEED)
    tap = frame_tap(board.ports.data)
    tap.ack_events = False
    tap.calibrate()
    board.set_speed(0.0)
    first = tap.wait_for(Event, lambda e: e.kind == 2 and e.state == 1, timeout=120)
    board.power_cut(1.0)
    tap.wait_for(Hello, lambda h: h.reset_cause == "power_on", timeout=30)
    again = tap.wait_for(
        Event,
        lambda e: e.event_id == first.event_id and len([x for x in tap.of(Event) if x.event_id == first.event_id]) > 1,
        timeout=60,
    )
    assert again.kind == first.kind
    tap.ack_events = True
    board.set_speed(100.0)  # the ACK's real-time trip is a few car seconds, not minutes
    tap.send_message(MessageType.ACK, [MessageType.EVENT, first.event_id, 0, "", None])
    board.wait_board_time(board.board_time_us() + 60_000_000)  # the ACK is in; a re-send under way is here
    tap.barrier()
    n = len([e for e in tap.of(Event) if e.event_id == first.event_id])
    # two of the longest re-send delays (settings event_retry_ms doubles up to 60 s) of car time
    board.wait_board_time(board.board_time_us() + 120_000_000)
    tap.barrier()
    assert len([e for e in tap.of(Event) if e.event_id == first.event_id]) == n  # acked: no more re-sends


@pytest.mark.mock_only
def test_ctrl_c_gives_the_repl_the_long_watchdog_timeout(flashed) -> None:
    """machine.WDT cannot be stopped: without parking it, an integrator's mpremote session (flashing
    takes longer than wdt_ms on a real UART) would be reset mid-copy. The mock's strict watchdog runs
    at the REPL as the ESP32's does (test_strict_watchdog_keeps_running_at_the_repl)."""
    board = flashed(speed=5.0, strict_watchdog=True, watchdog_s=2.0)
    deadline = time.monotonic() + 20
    while board.stats.feed_bytes_consumed == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mpremote(board.ports.console, "exec", "print(1 + 1)").strip() == "2"  # Ctrl-C, soft reset
    time.sleep(5.0)  # 2.5 watchdog periods at the REPL
    assert mpremote(board.ports.console, "resume", "exec", "print(2 + 2)").strip() == "4"
    assert board.stats.watchdog_resets == 0 and board.stats.boots[ResetCause.WDT] == 0, board.stats


@pytest.mark.mock_only
def test_hung_cpu_is_reset_by_the_watchdog(flashed, frame_tap) -> None:
    board = flashed(speed=0.0)
    tap = frame_tap(board.ports.data)
    tap.wait_for(Heartbeat, timeout=30)
    board.freeze()
    hello = tap.wait_for(Hello, lambda h: h.reset_cause == "wdt", timeout=30)
    assert board.stats.watchdog_resets == 1
    assert not hello.safe_mode  # one crash is not a crash loop
    tap.wait_for(Heartbeat, lambda h: True, timeout=30)


@pytest.mark.mock_only
def test_link_cut_and_line_noise_recover(flashed, frame_tap) -> None:
    board = flashed(speed=20.0)
    tap = frame_tap(board.ports.data)
    tap.wait_for(Heartbeat, timeout=30)
    board.set_link(False)
    time.sleep(1.0)
    n = len(tap.tapped())
    time.sleep(1.0)
    assert len(tap.tapped()) == n  # nothing crosses a cut cable
    board.set_link(True)
    board.inject_garbage(2000, Direction.TO_BOARD)
    board.inject_garbage(2000, Direction.TO_HOST)
    deadline = time.monotonic() + 30
    while len(tap.of(Heartbeat)) < 3 + n and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(tap.tapped()) > n  # the board still talks, and still understands us:
    tap.send_message(MessageType.CONTROL, [Command.REQUEST_COUNTERS, 0])
    tap.wait_for(Counters, timeout=30)
    assert tap.reader.drops.total() > 0  # the noise was seen and dropped, not decoded
    assert board.stats.boots[ResetCause.WDT] == 0


@pytest.mark.mock_only
def test_events_raised_during_a_link_cut_arrive_after_it(flashed, frame_tap) -> None:
    """The cable is cut before the car stops between floors: the board queues the event and delivers it
    once the link is back, with line noise on both sides for good measure."""
    sc = Scenario.load("entrapment")
    board = flashed(sc.timeline(rest_prefix_s=REST_PREFIX_S), speed=TALK_SPEED)
    tap = frame_tap(board.ports.data)
    tap.calibrate()
    board.set_link(False)
    board.set_speed(0.0)
    board.wait_board_time(int((REST_PREFIX_S + 600) * 1e6), timeout=120)  # well past the stop
    assert not tap.of(Event)
    board.inject_garbage(500, Direction.TO_BOARD)
    board.set_link(True)
    board.inject_garbage(500, Direction.TO_HOST)
    stop = tap.wait_for(Event, lambda e: e.kind == 2 and e.state == 1, timeout=60)
    assert stop.event_id > 0
