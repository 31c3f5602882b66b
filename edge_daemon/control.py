"""The running daemon's control socket: `liftwatch ota push | rollout` hand their jobs to it, so a
firmware update travels on the daemon's own session, between its live frames (issue 18).

Without it an update had to open the car's port itself, with the daemon stopped: the board kept its
facts, but they came late, and trips of those minutes had no ride quality.

The socket is ``<state_dir>/control.sock``, mode 0600: only the daemon's user (and root) may ask.
The board accepts only bundles signed by the release key whoever sends them; the socket guards the
link's time, not the firmware. One request per connection, JSON Lines both ways:

| request | answers, one per line |
|---|---|
| ``{"op": "push", "car", "bundle": base64, "timeout_s", "confirm", "install_idle_s"}`` | ``{"progress": [have, total]}``, ``{"step": s}``, then ``{"ok": PushResult}`` or ``{"error": why}`` |
| ``{"op": "watch", "car", "version", "hold_s", "timeout_s"}`` | ``{"held": s}``, then ``{"ok": HELLO}`` or ``{"error": why}`` |

A client that hangs up cancels its job (a push resumes from the board's flash next time).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from liftwatch.edge_daemon.ota_jobs import INSTALL_IDLE_S, HealthError, HealthJob, Job, OtaError, PushJob, PushResult
from liftwatch.protocol import messages as m

_LOG = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
# A request line carries a whole bundle in base64 (4/3 of lwota.MAX_BUNDLE's 192 KiB), with room.
REQUEST_LIMIT = 512 * 1024
EXPIRY_CHECK_S = 0.5  # how often a job's clock is read while its board's link may be down
CLIENT_GRACE_S = 30.0  # a client waits this long past the job's own timeout for the daemon's answer


class ControlError(OtaError):
    """The running daemon could not be asked (no access to its socket, or it answered nonsense)."""


def control_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


@contextlib.contextmanager
def _short(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits AF_UNIX's 108 bytes: through the folder's descriptor when the
    path is longer (a deep state_dir), which Linux resolves like the path itself."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class JobCarrier(Protocol):
    """What a job needs of a board task (daemon.BoardTask): a slot for one job at a time."""

    @property
    def car(self) -> str: ...

    def start_job(self, job: Job) -> asyncio.Future: ...

    def end_job(self, job: Job) -> None: ...


class ControlServer:
    """Serves the control socket until the daemon stops; each job runs on its car's board task."""

    def __init__(self, path: Path, carriers: Mapping[str, JobCarrier]) -> None:
        self.path = path
        self.carriers = carriers
        self._clients: set[asyncio.Task] = set()

    async def run(self, stop: asyncio.Event) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a daemon killed -9 leaves its socket behind
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _short(self.path) as name:
                sock.bind(name)
            os.chmod(self.path, 0o600)
        except OSError:
            sock.close()
            raise
        server = await asyncio.start_unix_server(self._client, sock=sock, limit=REQUEST_LIMIT)
        try:
            await stop.wait()
        finally:
            server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            answer = await self._serve(reader, writer)
        except asyncio.CancelledError:
            answer = {"error": "the daemon stopped (run the command again once it is back: a push resumes)"}
        except (ValueError, KeyError, TypeError, binascii.Error) as err:
            answer = {"error": f"not a control request: {err}"}
        except OtaError as err:
            answer = {"error": str(err)}
        finally:
            self._clients.discard(task)
        with contextlib.suppress(ConnectionError, RuntimeError):
            if answer is not None:
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> dict[str, Any] | None:
        line = await reader.readline()
        if not line:  # DaemonLink.find asking whether anyone listens: nothing to answer
            return None
        req = json.loads(line)

        def say(item: dict[str, Any]) -> None:
            if not writer.is_closing():
                writer.write(json.dumps(item).encode() + b"\n")

        carrier = self.carriers.get(req["car"])
        if carrier is None:
            raise OtaError(f"the daemon serves no car {req['car']!r}")
        job: Job
        if req["op"] == "push":
            from liftwatch.edge_daemon.ota import parse

            raw = base64.b64decode(req["bundle"], validate=True)
            bundle = parse(raw)
            job = PushJob(raw, bundle.bundle_id, bundle.version, timeout_s=float(req["timeout_s"]),
                          confirm=bool(req["confirm"]), progress=lambda h, t: say({"progress": [h, t]}),
                          step=lambda s: say({"step": s}), own_session=False,
                          install_idle_s=float(req.get("install_idle_s", INSTALL_IDLE_S)))
        elif req["op"] == "watch":
            job = HealthJob(req["version"], float(req["hold_s"]), timeout_s=float(req["timeout_s"]),
                            held=lambda s: say({"held": round(s, 1)}))
        else:
            raise ValueError(f"unknown op {req['op']!r}")
        done = carrier.start_job(job)
        hangup = asyncio.ensure_future(reader.read(1))  # EOF: the client is gone
        try:
            while not done.done():
                await asyncio.wait({done, hangup}, timeout=EXPIRY_CHECK_S, return_when=asyncio.FIRST_COMPLETED)
                if hangup.done() and not done.done():
                    _LOG.info("car %s: the %s job's client hung up: job cancelled", carrier.car, job.kind)
                    return {"error": "hung up"}
                err = job.expired(asyncio.get_running_loop().time())
                if err is not None and not done.done():
                    raise err
                await writer.drain()
            result = done.result()  # raises the job's OtaError
        finally:
            hangup.cancel()
            carrier.end_job(job)
        return {"ok": dataclasses.asdict(result)}  # a PushResult, or the HELLO a watch ended on


class DaemonLink:
    """`liftwatch ota` asking the running daemon (one connection per job, so a rollout's parallel
    pushes each have their own)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def find(cls, state_dir: Path) -> DaemonLink | None:
        """The running daemon's link, or None when no daemon listens (then the CLI opens the port
        itself). A socket it may not use is an error, not "no daemon": that daemon holds the port."""
        path = control_path(state_dir)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _short(path) as name:
                sock.connect(name)
        except (FileNotFoundError, ConnectionRefusedError):
            return None  # no daemon, or one killed -9 that left its socket behind
        except OSError as err:
            raise ControlError(f"cannot ask the running daemon at {path}: {err.strerror} "
                               "(run as the daemon's user)") from None
        finally:
            sock.close()
        return cls(path)

    async def push(self, car: str, raw: bytes, *, timeout_s: float = 600.0, confirm: bool = True,
                   progress: Callable[[int, int], None] | None = None,
                   step: Callable[[str], None] | None = None, install_idle_s: float = INSTALL_IDLE_S) -> PushResult:
        def heard(item: dict[str, Any]) -> None:
            if "progress" in item and progress is not None:
                progress(*item["progress"])
            elif "step" in item and step is not None:
                step(item["step"])

        ok = await self._call({"op": "push", "car": car, "bundle": base64.b64encode(raw).decode(),
                               "timeout_s": timeout_s, "confirm": confirm, "install_idle_s": install_idle_s},
                              heard, timeout_s, OtaError)
        return PushResult(ok["fw_version"], ok["prev_fw_version"], ok["seconds"], ok["resent_bytes"],
                          tuple(ok["resumed_from"]))

    async def watch(self, car: str, version: str | None = None, hold_s: float = 0.0, *, timeout_s: float = 120.0,
                    held: Callable[[float], None] | None = None) -> m.Hello:
        def heard(item: dict[str, Any]) -> None:
            if "held" in item and held is not None:
                held(item["held"])

        ok = await self._call({"op": "watch", "car": car, "version": version, "hold_s": hold_s,
                               "timeout_s": timeout_s}, heard, max(timeout_s, hold_s), HealthError)
        return m.Hello(**ok)

    async def _call(self, request: dict[str, Any], heard: Callable[[dict[str, Any]], None], timeout_s: float,
                    error: type[OtaError]) -> dict[str, Any]:
        try:
            with _short(self.path) as name:
                reader, writer = await asyncio.open_unix_connection(name, limit=REQUEST_LIMIT)
        except OSError as err:
            raise ControlError(f"cannot ask the running daemon at {self.path}: {err.strerror}") from None
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s + CLIENT_GRACE_S
            while True:
                line = await asyncio.wait_for(reader.readline(), max(0.0, deadline - loop.time()))
                if not line:
                    raise error("the daemon closed the control connection mid-job (restarted?): "
                                "run the command again")
                item = json.loads(line)
                if "ok" in item:
                    return item["ok"]
                if "error" in item:
                    raise error(item["error"])
                heard(item)
        except asyncio.TimeoutError:
            raise error(f"the daemon did not answer within {timeout_s + CLIENT_GRACE_S:.0f} s") from None
        except (ValueError, ConnectionError) as err:
            raise error(f"the daemon's control answer: {err}") from None
        finally:
            writer.close()
