"""OperatorPlane beside a real Daemon: a board on a real pty, the real outbox and journal publisher,
sd_notify on a real socket, the page and /metrics over HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.board import PtyBoard
from support.daemon import fast_backoff, http_get, wait_until
from support.systemd import NotifySocket

from liftwatch.edge_daemon.config import parse_config
from liftwatch.edge_daemon.daemon import Daemon
from liftwatch.edge_daemon.envelope import make_message, utc_iso
from liftwatch.edge_daemon.outbox import OutboxMessage
from liftwatch.edge_daemon.service import SystemdNotifier
from liftwatch.edge_daemon.status.plane import OperatorPlane
from liftwatch.edge_daemon.status.server import StatusConfig


@pytest.mark.timeout(60)
async def test_plane_beside_a_running_daemon(tmp_path):
    notify = NotifySocket(tmp_path / "notify")
    drain = notify.messages
    board = PtyBoard(str(tmp_path / "tty0"), "board-0", boot_id=3)
    cfg = parse_config({
        "daemon": {"site": "test-site", "pi": "pi-test", "state_dir": str(tmp_path / "state")},
        "session": {"heartbeat_timeout_s": 1.0},
        "boards": [{"car": "car-0", "port": str(tmp_path / "tty0"), "board_id": "board-0"}],
    }, "test", tmp_path)
    daemon = Daemon(cfg, backoff=fast_backoff)
    plane = OperatorPlane(cfg.site, cfg.boards, StatusConfig(port=0),
                          notifier=SystemdNotifier(str(tmp_path / "notify")), watchdog_s=0.3, frames_stall_s=2.0)
    stop, board_stop = asyncio.Event(), asyncio.Event()
    run = asyncio.create_task(daemon.run(stop), name="daemon")
    assert await wait_until(lambda: daemon.upstream is not None and len(daemon.boards) == 1, 8.0)
    plane_task = asyncio.create_task(plane.run(daemon, stop), name="operator plane")
    board.hello()
    live_task = asyncio.create_task(board.live(board_stop, period_s=0.1, beat_s=0.1))

    async def systemd() -> None:  # reads its socket promptly, as systemd does
        while not board_stop.is_set():
            drain()
            await asyncio.sleep(0.02)

    systemd_task = asyncio.create_task(systemd())
    try:
        assert await wait_until(lambda: any(m.get("READY") == "1" for m in drain()), 8.0)
        assert await wait_until(lambda: plane.live.snapshot()["cars"][0]["board"]["heap_free"] == 50_000, 8.0)
        car = plane.live.snapshot()["cars"][0]
        assert car["car"] == "car-0" and car["board"]["online"] is True and car["board"]["fw_version"] == "1.0.0"
        assert await wait_until(lambda: any("1/1 boards online" in m.get("STATUS", "") for m in drain()), 8.0)

        status, body = await http_get(plane.server.port, "/metrics")
        assert status == 200
        fams = {f.name: f.samples for f in text_string_to_metric_families(body.decode())}
        frames = [s.value for s in fams["liftwatch_board_frames"] if s.labels.get("car") == "car-0"]
        assert frames and frames[0] >= 2
        assert {s.labels["state"]: s.value for s in fams["liftwatch_broker_state"]}["ready"] == 1
        assert [s.value for s in fams["liftwatch_outbox_pending_messages"]] == [0]
        status, body = await http_get(plane.server.port, "/api/snapshot")
        assert status == 200 and json.loads(body)["daemon"]["broker"] == "ready"

        # The board falls silent: after the heartbeat timeout it is offline, i.e. idle, not stuck;
        # the watchdog keeps pinging although no byte arrives for longer than frames_stall_s.
        board.talking = False
        assert await wait_until(lambda: plane.live.snapshot()["cars"][0]["board"]["online"] is False, 5)
        pings_before, quiet_since = plane.watchdog.pings, time.monotonic()
        # 15 pings (0.15 s apart) over more than frames_stall_s of silence; counted, not slept for,
        # so a loaded machine that runs the loop late only makes it take longer
        assert await wait_until(lambda: plane.watchdog.pings >= pings_before + 15
                                and time.monotonic() - quiet_since > 2.5, 15.0)
        assert plane.watchdog.stalled == () and plane.watchdog.withheld == 0
        await asyncio.sleep(0.1)
        assert sum(1 for m in drain() if m.get("WATCHDOG") == "1") == plane.watchdog.pings
    finally:
        board_stop.set()
        stop.set()
        await asyncio.wait_for(asyncio.gather(run, plane_task, live_task, systemd_task), 15)
        board.close()
        stopping = any(m.get("STOPPING") == "1" for m in drain())
        notify.close()
    assert stopping


def test_delivery_latency_from_the_envelope_time():
    plane = OperatorPlane("s", (), None, notifier=SystemdNotifier(""), clock=lambda: 1_795_600_010.0)
    msg = make_message("event", "s", "c1", "b1", utc_iso(1_795_600_000.0), "k1",
                       {"type": "alarm_button", "state": "raised", "event_ts": utc_iso(1_795_600_009.75),
                        "gbt24476_code": None, "detail": {}})
    payload = json.dumps(msg).encode()
    plane.on_delivered([OutboxMessage(1, msg["id"], "event", "s", "c1", payload),
                        OutboxMessage(2, "x", "trip", "s", "c1", b"not json")])
    fams = {f.name: f.samples for f in text_string_to_metric_families(plane.metrics.render())}
    count = [s.value for s in fams["liftwatch_latency_seconds"] if s.name.endswith("_count")]
    total = [s.value for s in fams["liftwatch_latency_seconds"] if s.name.endswith("_sum")]
    assert count == [1] and total == [pytest.approx(0.25)]


def test_observe_never_raises_into_the_pipeline():
    plane = OperatorPlane("s", (), None, notifier=SystemdNotifier(""))

    class Broken:
        ts = float("nan")

    plane.live.apply = lambda car, item: (_ for _ in ()).throw(RuntimeError("bug"))  # a bug in the view
    plane.observe("c1", Broken())
    assert plane.observe_errors == 1
