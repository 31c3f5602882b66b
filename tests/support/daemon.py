"""A Daemon on fake boards: its config, a fast reconnect, waiting for a condition, its journal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liftwatch.edge_daemon.config import parse_config
from liftwatch.edge_daemon.daemon import Daemon
from liftwatch.edge_daemon.transport import ReconnectBackoff

from support.board import PtyBoard


def config_for(tmp_path: Path, boards: list[PtyBoard], **session: Any) -> Any:
    """Car ``car-<i>`` on each board's port, a 2 s heartbeat timeout, the journal in tmp_path/state."""
    doc = {
        "daemon": {"site": "test-site", "pi": "pi-test", "state_dir": str(tmp_path / "state"),
                   "status_interval_s": 0.5},
        "session": {"heartbeat_timeout_s": 2.0, "write_timeout_s": 0.2, **session},
        "boards": [{"car": f"car-{i}", "port": b.link_path, "board_id": b.board_id} for i, b in enumerate(boards)],
    }
    return parse_config(doc, "test", tmp_path)


def fast_backoff() -> ReconnectBackoff:
    """Reconnect within 50-200 ms: a test must not wait for the production backoff."""
    return ReconnectBackoff(base_s=0.05, max_s=0.2, jitter=0.0)


async def wait_until(predicate: Callable[[], object], timeout_s: float = 5.0, step_s: float = 0.02) -> bool:
    """Poll until ``predicate()`` is true; its last answer at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step_s)
    return bool(predicate())


@contextlib.asynccontextmanager
async def serving(cfg: Any) -> AsyncIterator[Daemon]:
    """A Daemon on `cfg` (fast reconnects) for the body of an ``async with``; stopped after it."""
    daemon = Daemon(cfg, backoff=fast_backoff)
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    try:
        yield daemon
    finally:
        stop.set()
        await asyncio.wait_for(run, 10)


@contextlib.asynccontextmanager
async def running(cfg: Any, *boards: PtyBoard) -> AsyncIterator[Daemon]:
    """A Daemon on `cfg` with each board's live loop; on the way out both stop and the boards close."""
    async with contextlib.AsyncExitStack() as stack:
        for b in boards:
            await stack.enter_async_context(b.living())
        yield await stack.enter_async_context(serving(cfg))


def journal(cfg: Any) -> list[dict]:
    """The messages the daemon published to its JSON Lines journal so far."""
    path = cfg.upstream.journal_path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def alarm_events(lines: list[dict], car: str) -> list[dict]:
    return [x for x in lines if x["kind"] == "event" and x["car"] == car and x["type"] == "alarm_button"]


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """One GET on 127.0.0.1 (connection closed after it): status code and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


LIFTWATCH = [sys.executable, "-m", "liftwatch"]
# `liftwatch run` must have the board's EVENT ACKed within this; the interpreter alone takes ~10 s to
# start on a loaded 2-core box.
DAEMON_START_S = 45.0


@dataclass
class LiftwatchRun:
    """A `liftwatch run` process and the lines it has logged to stderr so far (read as they come,
    so a chatty daemon never blocks on a full pipe)."""

    proc: asyncio.subprocess.Process
    stderr: list[str] = field(default_factory=list)

    def status_port(self) -> int | None:
        """The port the status page listens on, from its log line (config `port = 0`: any free one)."""
        for line in self.stderr:
            if "status page listening" in line and (found := re.search(r"127\.0\.0\.1:(\d+)", line)):
                return int(found.group(1))
        return None

    async def terminate(self) -> int:
        """SIGTERM, as systemd stops the service; the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 15)


@contextlib.asynccontextmanager
async def liftwatch_run(config: Path, board: PtyBoard) -> AsyncIterator[LiftwatchRun]:
    """`liftwatch run --config` serving `board`, entered once the daemon has ACKed the board's alarm
    EVENT 3. On the way out the daemon is killed if still running and the board closed."""
    proc = await asyncio.create_subprocess_exec(*LIFTWATCH, "run", "--config", str(config),
                                                stderr=asyncio.subprocess.PIPE)
    run = LiftwatchRun(proc)

    async def read_stderr() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            run.stderr.append(line.decode(errors="replace"))

    reading = asyncio.create_task(read_stderr())
    try:
        async with board.living():
            deadline = time.monotonic() + DAEMON_START_S
            while time.monotonic() < deadline and not board.host_frames and proc.returncode is None:
                board.hello()  # until the daemon has the port open and talks
                await asyncio.sleep(0.2)
            board.raise_event(3)
            while time.monotonic() < deadline and board.acked != [3] and proc.returncode is None:
                await asyncio.sleep(0.05)
            assert board.acked == [3], "".join(run.stderr)[-3000:]
            yield run
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reading
