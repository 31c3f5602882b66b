"""OperatorPlane beside a real Daemon: a board on a real pty, the real outbox and journal publisher,
sd_notify on a real socket, the page and /metrics over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import pytest
from liftwatch.edge_daemon.config import parse_config
from liftwatch.edge_daemon.daemon import Daemon
from liftwatch.edge_daemon.envelope import make_message, utc_iso
from liftwatch.edge_daemon.outbox import OutboxMessage
from liftwatch.edge_daemon.service import SystemdNotifier
from liftwatch.edge_daemon.status.plane import OperatorPlane
from liftwatch.edge_daemon.status.server import StatusConfig
from liftwatch.edge_daemon.transport import ReconnectBackoff
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import encode_frame
from prometheus_client.parser import text_string_to_metric_families

AT_FLOOR = 0b111


class PtyBoard:
    """The board end of a pty: HELLO, then heartbeats while `talking`."""

    def __init__(self, link_path: str) -> None:
        self.master, slave = os.openpty()
        os.symlink(os.ttyname(slave), link_path)
        os.close(slave)
        os.set_blocking(self.master, False)
        self.seq = 0
        self.t0 = time.monotonic()
        self.talking = True

    def send(self, mtype: int, payload: list) -> None:
        t_ms = int((time.monotonic() - self.t0) * 1000)
        os.write(self.master, encode_frame(mtype, payload, 3, self.seq, t_ms))
        self.seq += 1

    async def live(self, stop: asyncio.Event) -> None:
        self.send(lw.T_HELLO, ["board-0", "1.0.0", "lis3dh", 5, "power_on", [], 400, 16384, True, False, 3,
                               [0, 0, 16384]])
        while not stop.is_set():
            try:
                os.read(self.master, 65536)  # drain host frames (TIME_SYNC, ...)
            except (BlockingIOError, OSError):
                pass
            if self.talking:
                self.send(lw.T_HEARTBEAT, [int(time.monotonic() - self.t0), 48_000, 0, 0, AT_FLOOR, True, False])
            await asyncio.sleep(0.1)


async def _http(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def _until(predicate, timeout_s: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


@pytest.mark.timeout(60)
async def test_plane_beside_a_running_daemon(tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    received: list[dict[str, str]] = []

    def drain() -> list[dict[str, str]]:
        try:
            while True:
                raw = notify.recv(4096).decode()
                received.append(dict(line.split("=", 1) for line in raw.split("\n")))
        except BlockingIOError:
            pass
        return received

    board = PtyBoard(str(tmp_path / "tty0"))
    cfg = parse_config({
        "daemon": {"site": "test-site", "pi": "pi-test", "state_dir": str(tmp_path / "state")},
        "session": {"heartbeat_timeout_s": 1.0},
        "boards": [{"car": "car-0", "port": str(tmp_path / "tty0"), "board_id": "board-0"}],
    }, "test", tmp_path)
    daemon = Daemon(cfg, backoff=lambda: ReconnectBackoff(base_s=0.05, max_s=0.2, jitter=0.0))
    plane = OperatorPlane(cfg.site, cfg.boards, StatusConfig(port=0),
                          notifier=SystemdNotifier(str(tmp_path / "notify")), watchdog_s=0.3, frames_stall_s=2.0)
    stop, board_stop = asyncio.Event(), asyncio.Event()
    run = asyncio.create_task(daemon.run(stop), name="daemon")
    assert await _until(lambda: daemon.upstream is not None and len(daemon.boards) == 1)
    plane_task = asyncio.create_task(plane.run(daemon, stop), name="operator plane")
    live_task = asyncio.create_task(board.live(board_stop))

    async def systemd() -> None:  # reads its socket promptly, as systemd does
        while not board_stop.is_set():
            drain()
            await asyncio.sleep(0.02)

    systemd_task = asyncio.create_task(systemd())
    try:
        assert await _until(lambda: any(m.get("READY") == "1" for m in drain()))
        assert await _until(lambda: plane.live.snapshot()["cars"][0]["board"]["heap_free"] == 48_000)
        car = plane.live.snapshot()["cars"][0]
        assert car["car"] == "car-0" and car["board"]["online"] is True and car["board"]["fw_version"] == "1.0.0"
        assert await _until(lambda: any("1/1 boards online" in m.get("STATUS", "") for m in drain()))

        status, body = await _http(plane.server.port, "/metrics")
        assert status == 200
        fams = {f.name: f.samples for f in text_string_to_metric_families(body.decode())}
        frames = [s.value for s in fams["liftwatch_board_frames"] if s.labels.get("car") == "car-0"]
        assert frames and frames[0] >= 2
        assert {s.labels["state"]: s.value for s in fams["liftwatch_broker_state"]}["ready"] == 1
        assert [s.value for s in fams["liftwatch_outbox_pending_messages"]] == [0]
        status, body = await _http(plane.server.port, "/api/snapshot")
        assert status == 200 and json.loads(body)["daemon"]["broker"] == "ready"

        # The board falls silent: after the heartbeat timeout it is offline, i.e. idle, not stuck;
        # the watchdog keeps pinging although no byte arrives for longer than frames_stall_s.
        board.talking = False
        assert await _until(lambda: plane.live.snapshot()["cars"][0]["board"]["online"] is False, 5)
        pings_before = plane.watchdog.pings
        await asyncio.sleep(2.5)
        assert plane.watchdog.pings >= pings_before + 15
        assert plane.watchdog.stalled == () and plane.watchdog.withheld == 0
        await asyncio.sleep(0.1)
        assert sum(1 for m in drain() if m.get("WATCHDOG") == "1") == plane.watchdog.pings
    finally:
        board_stop.set()
        stop.set()
        await asyncio.wait_for(asyncio.gather(run, plane_task, live_task, systemd_task), 15)
        os.close(board.master)
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
