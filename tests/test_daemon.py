"""The daemon end to end on real ptys, the real SQLite outbox and the JSON Lines journal.

Each simulated board is a pty master driven by the test the way firmware drives its UART: it sends
HELLO, heartbeats and EVENTs (re-sending an EVENT until it is ACKed), answers TIME_SYNC, and reads
the host's frames. The daemon opens the slave side through its serial transport, as it opens
/dev/serial/by-id/... on a Pi.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import logging
import os
import time
from pathlib import Path

import pytest
from support.board import ALARM, DOOR_CLOSED_IN_ZONE, HELLO, STATE, PtyBoard, frames
from support.daemon import alarm_events, config_for, fast_backoff, journal, running, serving, wait_until
from support.fullfs import fill, small_tmpfs

from liftwatch.edge_daemon.upstream_codec import decode_payload
from liftwatch.edge_daemon.analytics.engine import CarAnalytics
from liftwatch.edge_daemon.daemon import Daemon
from liftwatch.edge_daemon.pipeline import CarPipeline, OutboxStore
from liftwatch.edge_daemon.observations import BoardEventKind
from liftwatch.edge_daemon.outbox import Outbox, OutboxWriteError
from liftwatch.edge_daemon.session import BoardSession, LinkMode, SessionConfig
from liftwatch.edge_daemon.transport import LinkPhase
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import FrameReader, encode_frame

# -- the pipeline: ACK only after the outbox holds the message -------------------------------------


class GatedStore:
    """The real outbox behind a gate the test opens, and a switch that makes commits fail."""

    def __init__(self, outbox: Outbox) -> None:
        self.inner = OutboxStore(outbox)
        self.gate = asyncio.Event()
        self.fail = False
        self.calls = 0

    async def put_many(self, messages):
        self.calls += 1
        await self.gate.wait()
        if self.fail:
            raise OutboxWriteError("disk full (simulated)")
        await self.inner.put_many(messages)




async def test_event_acked_only_after_outbox_committed(tmp_path):
    outbox = Outbox(tmp_path / "outbox.sqlite")
    store = GatedStore(outbox)
    session = BoardSession(SessionConfig(), LinkMode.LIVE)
    pipe = CarPipeline("s", "car-1", session, CarAnalytics("car-1"), store)
    task = asyncio.create_task(pipe.frames(frames(HELLO, STATE, ALARM), 1000.0))
    await asyncio.sleep(0.05)
    acks = [f for f in FrameReader(sender=lw.FROM_HOST).feed(b"".join(session.take_outgoing())) if f.type == lw.T_ACK]
    assert acks == [] and store.calls == 1 and outbox.stats().pending == 0  # storing, not stored
    store.gate.set()
    await task
    (msg,) = [x for x in outbox.pending() if x.kind == "event"]
    assert decode_payload(msg.payload)["type"] == "alarm_button"
    acks = [f for f in FrameReader(sender=lw.FROM_HOST).feed(b"".join(session.take_outgoing())) if f.type == lw.T_ACK]
    assert [(a.payload[0], a.payload[1]) for a in acks] == [(lw.T_EVENT, 77)]
    outbox.close()


async def test_failed_commit_is_retried_and_ack_waits_for_it(tmp_path):
    outbox = Outbox(tmp_path / "outbox.sqlite")
    store = GatedStore(outbox)
    store.gate.set()
    store.fail = True
    session = BoardSession(SessionConfig(), LinkMode.LIVE)
    pipe = CarPipeline("s", "car-1", session, CarAnalytics("car-1"), store)
    await pipe.frames(frames(HELLO, STATE, ALARM), 1000.0)
    assert not [f for f in FrameReader(sender=lw.FROM_HOST).feed(b"".join(session.take_outgoing())) if f.type == lw.T_ACK]
    assert pipe.counters.store_failures == 1
    store.fail = False
    await pipe.tick(1001.0)
    acks = [f for f in FrameReader(sender=lw.FROM_HOST).feed(b"".join(session.take_outgoing())) if f.type == lw.T_ACK]
    assert [a.payload[1] for a in acks] == [77]
    assert len([x for x in outbox.pending() if x.kind == "event"]) == 1
    outbox.close()


# -- a full disk: facts stored from the outbox reserve or shed with a count, never held for a SIGKILL ---

DOOR, ZONE_UP, ZONE_DN = 1, 2, 4


def trip_frames(boot_id: int = 3) -> list:
    """HELLO, then the STATE frames of one trip up one floor, with board times 0..14.8 s after 1 s."""
    level = ZONE_UP | ZONE_DN
    steps = [(0.0, level, 0), (2.0, level | DOOR, 0), (3.0, level | DOOR, 1), (4.0, DOOR | ZONE_DN, 2),
             (4.3, DOOR, 2), (7.0, DOOR | ZONE_UP, 2), (7.3, DOOR | level, 3), (8.8, DOOR | level, 0),
             (9.8, level, 0), (14.8, level | DOOR, 0)]
    reader = FrameReader()
    out = reader.feed(encode_frame(HELLO[0], HELLO[1], boot_id, 0, 1000))
    prev = level | DOOR
    for seq, (t, inputs, motion) in enumerate(steps, 1):
        t_ms = 1000 + int(t * 1000)
        out += reader.feed(encode_frame(lw.T_STATE, [t_ms, inputs, inputs ^ prev, motion], boot_id, seq, t_ms))
        prev = inputs
    return out


def alarm_frame(boot_id: int = 3) -> list:
    """The board's alarm EVENT 77 after the trip (board time 15.5 s)."""
    return FrameReader().feed(encode_frame(ALARM[0], [77, ALARM[1][1], 1, 16500, {}], boot_id, 11, 16500))


async def feed_live(pipe: CarPipeline, frames: list, host0: float = 1000.0) -> None:
    """Frames one by one at the host times the board's clock says (as they would arrive)."""
    for f in frames:
        t = (f.t_ms - 1000) / 1000
        await pipe.frames([f], host0 + t, t)


@pytest.fixture
def full_fs(tmp_path: Path):
    """A 2 MiB tmpfs and a function that fills it to the last byte."""
    with small_tmpfs(tmp_path, 2) as mount:
        yield mount, lambda: fill(mount / "filler")


async def test_trip_on_a_disk_full_beyond_the_reserve_is_shed_with_a_count_and_events_wait(full_fs):
    mount, fill = full_fs
    outbox = Outbox(mount / "outbox.sqlite", reserve_bytes=0)  # no reserve: the worst case at once
    store = OutboxStore(outbox)
    session = BoardSession(SessionConfig(), LinkMode.LIVE)
    pipe = CarPipeline("s", "car-1", session, CarAnalytics("car-1"), store)
    fill()
    frames = trip_frames()
    await feed_live(pipe, frames)
    await feed_live(pipe, alarm_frame())
    for i in range(16, 24):  # the trip ends once its VIB wait is over
        await pipe.tick(1000.0 + i, float(i))
    # The trip is neither stored nor held in memory (a SIGKILL would take it uncounted): it is counted.
    assert outbox.drop_counts().get("disk_full", {}).get("trip") == 1
    assert [m for m in pipe._unstored if m["kind"] == "trip"] == [] and pipe.counters.shed >= 1
    # The board's EVENT waits un-ACKed (its board re-sends it) instead of being shed.
    held = [m for m in pipe._unstored if m["kind"] == "event"]
    assert [m["detail"]["board_event_id"] for m in held] == [77]
    assert not [f for f in FrameReader(sender=lw.FROM_HOST).feed(b"".join(session.take_outgoing())) if f.type == lw.T_ACK]
    outbox.close()
    (mount / "filler").unlink()
    with Outbox(mount / "outbox.sqlite", reserve_bytes=0) as reopened:  # the count outlives the process
        assert reopened.drop_counts()["disk_full"]["trip"] == 1
        assert reopened.pending() == []


async def test_trip_on_a_full_disk_is_stored_from_the_reserve(full_fs):
    mount, fill = full_fs
    outbox = Outbox(mount / "outbox.sqlite", reserve_bytes=256 * 1024)
    store = OutboxStore(outbox)
    session = BoardSession(SessionConfig(), LinkMode.LIVE)
    pipe = CarPipeline("s", "car-1", session, CarAnalytics("car-1"), store)
    fill()
    await feed_live(pipe, trip_frames())
    await feed_live(pipe, alarm_frame())
    for i in range(16, 24):
        await pipe.tick(1000.0 + i, float(i))
    assert sorted(m.kind for m in outbox.pending()) == ["event", "trip"]
    assert outbox.stats().reserve_released and pipe.counters.shed == 0
    acks = [f for f in FrameReader(sender=lw.FROM_HOST).feed(b"".join(session.take_outgoing())) if f.type == lw.T_ACK]
    assert [a.payload[1] for a in acks] == [77]
    outbox.close()


async def test_state_file_on_a_full_disk_delays_the_ack_and_the_board_task_goes_on(tmp_path, monkeypatch):
    import liftwatch.edge_daemon.pipeline as pipeline_module

    real_save = pipeline_module.save_session_state
    disk_full = [True]

    def save(path: Path, state) -> None:
        if disk_full[0]:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_save(path, state)

    monkeypatch.setattr(pipeline_module, "save_session_state", save)
    board = PtyBoard(str(tmp_path / "tty0"), "board-0")
    cfg = config_for(tmp_path, [board])
    async with running(cfg, board) as daemon:
        board.hello()
        board.raise_event(9)
        assert await wait_until(lambda: alarm_events(journal(cfg), "car-0"))  # stored (and already published)
        await asyncio.sleep(1.0)  # several re-sends and commits, each failing to write the state file
        task = daemon.boards[0]
        # Stored in the outbox, but not ACKed: after a restart the daemon could not tell it was stored.
        assert board.unacked and board.acked == []
        disk_full[0] = False
        assert await wait_until(lambda: board.acked == [9], 5.0)  # the board's task went on serving
        assert task.pipeline.counters.state_save_failures >= 2
        assert task.counters.task_errors == 0 and task.counters.connects == 1
    # Raised once, though re-sent all along (the board's input later clears it).
    assert [x["state"] for x in alarm_events(journal(cfg), "car-0")][:2] in (["raised"], ["raised", "cleared"])


# -- the daemon on ptys ------------------------------------------------------------------------------


async def test_many_boards_one_stalled_one_garbage_others_unaffected(tmp_path):
    boards = [PtyBoard(str(tmp_path / f"tty{i}"), f"board-{i}") for i in range(6)]
    cfg = config_for(tmp_path, boards)
    daemon = Daemon(cfg, backoff=fast_backoff)
    stop, board_stop = asyncio.Event(), asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    healthy, stalled, garbage = boards[:4], boards[4], boards[5]
    # The stalled board: sends half a frame and then neither reads nor writes; its input buffer
    # is full, so every host->board write to it blocks. (Opening a port flushes its input, so the
    # board speaks once the daemon has it open.)
    assert await wait_until(lambda: len(daemon.boards) == 6 and all(t.phase is LinkPhase.READY for t in daemon.boards))
    # Filled through a duplicate of the daemon's own descriptor: the room a pty reports depends on
    # the open file and the kernel (a second open of the same tty could still block while the
    # daemon's had room, on kernel 6.18), so only the transport's own descriptor tells "full".
    stalled_task = next(t for t in daemon.boards if t.board.car == "car-4")
    filler = os.dup(stalled_task.transport._writer.transport.serial.fd)

    def top_up() -> None:
        """Keep the board-bound tty buffer full (the kernel frees room as it moves flip buffers)."""
        for size in (4096, 1):
            try:
                while True:
                    os.write(filler, b"\x55" * size)
            except BlockingIOError:
                pass

    top_up()
    stalled.hello()
    stalled.raise_event(1)  # its ACK can never be delivered
    os.write(stalled.master, encode_frame(lw.T_HEARTBEAT, [1, 2, 3], 1, 1, 5)[:6])
    lives = [asyncio.create_task(b.live(board_stop)) for b in healthy]

    async def spew() -> None:
        n = 0
        while not board_stop.is_set():
            os.write(garbage.master, os.urandom(512) + b"\x00")
            top_up()
            n += 1
            if n % 10 == 0:  # the stalled board's TX still works: it re-sends its un-ACKed event
                stalled.send(lw.T_EVENT, stalled.unacked[1])
            await asyncio.sleep(0.01)

    lives.append(asyncio.create_task(spew()))
    try:
        for b in healthy:
            b.hello()
            b.raise_event(10)
        assert await wait_until(lambda: all(b.acked == [10] for b in healthy), 8.0), [b.acked for b in healthy]
        for b in healthy:
            b.raise_event(11)
        assert await wait_until(lambda: all(b.acked == [10, 11] for b in healthy), 5.0)
        by_car = {t.board.car: t for t in daemon.boards}
        # The stalled board's host->board frames wait in its own bounded backlog, blocking nothing.
        assert await wait_until(lambda: by_car["car-4"].transport.backlog_bytes > 0, 5.0)
        assert by_car["car-5"].reader.drops  # garbage counted by reason
        assert by_car["car-5"].phase is LinkPhase.READY
        assert await wait_until(lambda: len([x for x in journal(cfg) if x["kind"] == "event"]) >= 4, 5.0)
    finally:
        board_stop.set()
        await asyncio.gather(*lives)
        stop.set()
        await asyncio.wait_for(run, 10)
        os.close(filler)
        for b in boards:
            b.close()
    lines = journal(cfg)
    for i in range(4):
        raised = alarm_events(lines, f"car-{i}")
        assert [x["state"] for x in raised] == ["raised"], raised  # one fault, re-sends not double counted
        assert raised[0]["board"] == f"board-{i}"
    status = json.loads(cfg.status_path.read_text())
    assert [b["car"] for b in status["boards"]] == [f"car-{i}" for i in range(6)]
    assert status["boards"][0]["time_synced"] and status["boards"][0]["online"] is False  # closed at stop
    task_names = {t.get_name() for t in daemon.tasks}
    assert {f"board car-{i}: session" for i in range(6)} <= task_names


async def test_unplug_replug_reconnects_and_stores_event_exactly_once(tmp_path):
    board = PtyBoard(str(tmp_path / "tty0"), "board-0")
    cfg = config_for(tmp_path, [board])
    async with running(cfg, board) as daemon:
        board.hello()
        assert await wait_until(lambda: daemon.boards and daemon.boards[0].pipeline.session.online)
        task = daemon.boards[0]
        board.unplug()
        assert await wait_until(lambda: task.phase is not LinkPhase.READY and not task.pipeline.session.online)
        # While unplugged the board raises an event: it cannot be delivered, so it stays un-ACKed.
        board.raise_event(5)
        await asyncio.sleep(0.3)
        assert task.counters.open_failures >= 1  # retried with backoff, path absent
        board.plug()
        assert await wait_until(lambda: board.acked == [5], 5.0)
        assert task.counters.connects == 2 and task.counters.disconnects == 1
        assert task.pipeline.session.counters.reboots == 0  # a cable is not a reboot
    lines = journal(cfg)
    assert [x["state"] for x in alarm_events(lines, "car-0")] == ["raised"]
    ids = [x["id"] for x in lines]
    assert len(ids) == len(set(ids))
    # The stop that ended the test is not a fault: no board_offline raised at shutdown, neither
    # delivered nor left in the outbox for the next run.
    outbox = Outbox(cfg.outbox_path)
    lines += [json.loads(m.payload) for m in outbox.pending(limit=1000)]
    outbox.close()
    offline = [x for x in lines if x["kind"] == "event" and x["type"] == "board_offline"]
    assert [x["state"] for x in offline] == ["raised", "cleared"]


async def test_board_reboot_is_counted_once_and_events_of_both_boots_kept(tmp_path):
    board = PtyBoard(str(tmp_path / "tty0"), "board-0", boot_id=41)
    cfg = config_for(tmp_path, [board])
    async with running(cfg, board) as daemon:
        board.hello()
        board.raise_event(1)
        assert await wait_until(lambda: board.acked == [1])
        board.boot_id, board.seq, board.t0 = 42, 0, time.monotonic()  # watchdog reset
        board.hello()
        board.raise_event(2, BoardEventKind.SENSOR_FAULT)
        assert await wait_until(lambda: board.acked == [1, 2])
        session = daemon.boards[0].pipeline.session
        assert session.counters.reboots == 1 and session.boot_id == 42
    lines = journal(cfg)
    types = sorted(x["type"] for x in lines if x["kind"] == "event" and x["state"] == "raised")
    assert "alarm_button" in types and "sensor_fault" in types



async def test_event_stored_before_a_restart_is_not_reported_twice(tmp_path):
    board = PtyBoard(str(tmp_path / "tty0"), "board-0")
    cfg = config_for(tmp_path, [board])
    board.deaf_to_acks = True
    async with board.living():
        async with serving(cfg) as first:
            board.hello()
            board.raise_event(7)
            # Stored and ACKed, but the board never heard the ACK: it keeps re-sending.
            assert await wait_until(lambda: first.boards and first.boards[0].pipeline.session.counters.acks_sent >= 1)
        assert board.unacked  # still pending on the board
        await asyncio.sleep(0.2)
        board.poll()  # whatever the first daemon sent is gone
        first_run_frames = len(board.host_frames)

        board.deaf_to_acks = False
        async with serving(cfg) as second:
            assert await wait_until(lambda: board.acked == [7], 5.0)
            counters = second.boards[0].pipeline.session.counters
            assert counters.events == 0 and counters.events_resent >= 1  # recognised, not re-emitted
            # Host->board seqs go on above the first run's (a tagged board refuses seqs it has seen).
            first_run_max = max(f.seq for f in board.host_frames[:first_run_frames])
            assert min(f.seq for f in board.host_frames[first_run_frames:]) > first_run_max
    # Raised once across both runs. The board's heartbeats show the button released, so the fault may
    # also have cleared, once, if a heartbeat was handled after the raise (on a loaded machine it was).
    assert [x["state"] for x in alarm_events(journal(cfg), "car-0")] in (["raised"], ["raised", "cleared"])


async def test_silent_board_goes_offline_after_the_heartbeat_timeout_and_back(tmp_path):
    board = PtyBoard(str(tmp_path / "tty0"), "board-0")
    cfg = config_for(tmp_path, [board])  # heartbeat_timeout_s = 2
    daemon = Daemon(cfg, backoff=fast_backoff)
    stop, board_stop = asyncio.Event(), asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    live = asyncio.create_task(board.live(board_stop))
    try:
        board.hello()
        assert await wait_until(lambda: daemon.boards and daemon.boards[0].pipeline.session.online)
        session = daemon.boards[0].pipeline.session
        board_stop.set()  # the board hangs: the port stays open, nothing more arrives
        await live
        silent_at = time.time()
        assert await wait_until(lambda: not session.online, 6.0)
        assert time.time() - silent_at >= 1.5  # not before the timeout
        assert daemon.boards[0].phase is LinkPhase.READY  # the link itself is fine
        board_stop = asyncio.Event()
        live = asyncio.create_task(board.live(board_stop))
        assert await wait_until(lambda: session.online, 5.0)
        assert session.counters.offline_periods == 1
    finally:
        board_stop.set()
        await live
        stop.set()
        await asyncio.wait_for(run, 10)
        board.close()
    offline = [x for x in journal(cfg) if x["kind"] == "event" and x["type"] == "board_offline"]
    assert [x["state"] for x in offline] == ["raised", "cleared"]
    # Raised at the last frame heard, not at the timeout: offline minutes are not shortened.
    assert offline[1]["duration_s"] >= 2.0


async def test_wrong_board_on_a_port_is_logged_and_flagged(tmp_path, caplog):
    # Directly on the daemon's logger: configure_logging() elsewhere in the run stops propagation.
    log = logging.getLogger("liftwatch.edge_daemon.daemon")
    log.addHandler(caplog.handler)
    board = PtyBoard(str(tmp_path / "tty0"), "board-from-lift-9")
    cfg = config_for(tmp_path, [board])
    cfg = dataclasses.replace(cfg, boards=(dataclasses.replace(cfg.boards[0], board_id="board-0"),))
    try:
        async with running(cfg, board) as daemon:
            board.hello()
            assert await wait_until(lambda: daemon.boards and daemon.boards[0].pipeline.session.board_id)
            await asyncio.sleep(0.2)
            status = daemon.boards[0].status()
            assert (status["board"], status["expected_board"]) == ("board-from-lift-9", "board-0")
            # (a record can reach caplog twice: through our handler and through propagation)
            records = {id(r): r for r in caplog.records if r.levelname == "ERROR" and "answers where" in r.getMessage()}
            errors = [r.getMessage() for r in records.values()]
            assert len(errors) == 1 and "board-from-lift-9" in errors[0]  # once, not per frame
    finally:
        log.removeHandler(caplog.handler)


async def test_board_status_carries_the_last_firmware_update_kept_on_the_pi(tmp_path):
    """`liftwatch ota push | rollout` keep a car's outcome in state_dir (a refusal leaves nothing on
    the board to say why); the daemon's status of that car, read by `liftwatch status` and the status
    page, carries it."""
    from liftwatch.edge_daemon import ota

    board = PtyBoard(str(tmp_path / "tty0"), "board-0")
    cfg = config_for(tmp_path, [board])
    car = cfg.boards[0].car
    async with running(cfg, board) as daemon:
        assert await wait_until(lambda: daemon.boards)
        assert daemon.boards[0].status()["last_update"] is None  # never updated
        ota.record_outcome(cfg.state_dir, car, "1.1.0", "refused", "board refused the bundle: flash full")
        assert daemon.boards[0].status()["last_update"]["reason"] == "board refused the bundle: flash full"


async def test_maintenance_visit_survives_a_daemon_kill_inside_it(tmp_path):
    """A visit lasts an hour; a daemon SIGKILLed (here: dropped without any shutdown) inside it must
    still report it once, from the technician's first switch-on, not lose it or cut it in two."""
    board = PtyBoard(str(tmp_path / "tty0"), "board-0")
    doc_cfg = config_for(tmp_path, [board])
    cfg = dataclasses.replace(doc_cfg, analytics=dataclasses.replace(doc_cfg.analytics, maintenance_join_gap_s=1.0))
    cfg = dataclasses.replace(cfg, boards=[dataclasses.replace(b, analytics=cfg.analytics) for b in cfg.boards])
    inspection_on, inspection_off = DOOR_CLOSED_IN_ZONE | 0b10000, DOOR_CLOSED_IN_ZONE
    async with board.living():
        first = Daemon(cfg, backoff=fast_backoff)
        run = asyncio.create_task(first.run(asyncio.Event()))
        board.hello()
        assert await wait_until(lambda: bool(first.boards) and first.boards[0].pipeline.session.online)
        await asyncio.sleep(0.3)
        board.send(lw.T_STATE, [board.t_ms(), inspection_on, 0b10000, 0])
        on_at = time.monotonic()
        state_file = cfg.state_dir / "events-car-0.json"
        assert await wait_until(lambda: state_file.exists() and json.loads(state_file.read_text())["open_visit"])
        run.cancel()  # no shutdown path runs: what survives is what was on disk
        await asyncio.gather(run, return_exceptions=True)
        for b in first.boards:
            await b.transport.close()
        first.outbox.close()

        async with serving(cfg) as second:
            assert await wait_until(lambda: bool(second.boards) and second.boards[0].pipeline.session.online)
            await asyncio.sleep(0.3)
            board.send(lw.T_STATE, [board.t_ms(), inspection_off, 0b10000, 0])
            off_at = time.monotonic()
            assert await wait_until(lambda: any(m["kind"] == "maintenance" for m in journal(cfg)), 8.0)
    (visit,) = [m for m in journal(cfg) if m["kind"] == "maintenance"]
    # From the switch-on the first daemon saw to the switch-off the second one saw, in one piece.
    assert visit["duration_s"] == pytest.approx(off_at - on_at, abs=0.5)
    assert json.loads(state_file.read_text())["open_visit"] is None  # ended: nothing to take up again
