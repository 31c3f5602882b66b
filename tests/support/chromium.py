"""Headless Chromium driven over the DevTools protocol, for the pages' browser tests (the daemon's
status page, the fleet dashboard). Needs Debian's `chromium` and the `websockets` package."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"  # screenshots for a person to look at (gitignored)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-port=0")


class Cdp:
    """Minimal DevTools client: one browser websocket, flattened sessions, events collected."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self.reader = asyncio.create_task(self._read(), name="cdp reader")

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            fut = self.pending.pop(msg.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            elif "method" in msg:
                self.events.append(msg)

    async def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        i = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        msg: dict[str, Any] = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        reply = await asyncio.wait_for(fut, 20)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def eval(self, session: str, expression: str) -> Any:
        r = await self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                            session)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait_for(self, session: str, expression: str, timeout_s: float = 10.0) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            value = await self.eval(session, expression)
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for: {expression}")
            await asyncio.sleep(0.05)

    async def screenshot(self, session: str, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session)
        path.write_bytes(base64.b64decode(shot["data"]))


async def launch(user_dir: str, tz: str | None = None) -> tuple[asyncio.subprocess.Process, str]:
    """Start headless Chromium (in time zone `tz`); its DevTools websocket URL."""
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, *FLAGS, f"--user-data-dir={user_dir}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **({"TZ": tz} if tz else {})},
    )
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        if not line:
            raise RuntimeError(f"chromium exited with {await proc.wait()} before DevTools came up")
        m = re.search(rb"DevTools listening on (ws://\S+)", line)
        if m:
            # Keep draining stderr so chromium never blocks on a full pipe.
            asyncio.get_running_loop().create_task(proc.stderr.read())
            return proc, m.group(1).decode()


def problems(events: list[dict]) -> list[str]:
    """Exceptions, console errors and error log entries among the collected events."""
    out = []
    for e in events:
        if e["method"] == "Runtime.exceptionThrown":
            out.append(json.dumps(e["params"]["exceptionDetails"])[:300])
        elif e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error":
            out.append(e["params"]["entry"]["text"][:300])
        elif e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error":
            out.append(json.dumps(e["params"]["args"])[:300])
    return out
