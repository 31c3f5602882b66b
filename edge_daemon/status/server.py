"""The status page's HTTP server: a small asyncio server on the daemon's own loop.

Why not a framework: the page needs six GET routes and Server-Sent Events, and a Pi in a machine
room should not carry a web stack for that. Requests are parsed with hard limits (header size,
read timeout, client count), only GET and HEAD are served, and every response carries a strict
Content-Security-Policy: the page loads nothing but its own files (no CDN).

Connections are capped before anything is authenticated (MAX_CONNECTIONS): the page shares the
daemon's file descriptors with its serial ports, the outbox, the replay state and MQTT, so a flood
of half-open connections must not take them. At the cap a new connection evicts the oldest one
that has not finished its request head yet (an idle or slow client, or a flood), or, when every
connection is busy answering, is closed at once. A real request sends its head at once, so it gets
through a flood of idle connections.

DNS rebinding: a web page elsewhere can point its own name at 127.0.0.1 and have the operator's
browser read this page. Requests are answered only when their Host is the configured bind host,
a localhost name, this machine's host name (`pi-bldg3`, `pi-bldg3.local`), or an IP literal: a
rebinding page can only send its own name.

Access: bound to 127.0.0.1 by default (reach it with `ssh -L 8080:localhost:8080 pi`). Bound to
anything else it refuses to start without a bearer token, and then every route except /healthz
wants it, as `Authorization: Bearer <token>`, or once as `/?token=<token>`, which sets an
HttpOnly, SameSite=Strict cookie (EventSource cannot send headers) and redirects to drop the
token from the address bar and the browser history. Prometheus scrapes /metrics with the same
token (`authorization: {credentials_file: ...}`).

Routes:
    GET /                    the page (fleet view; a car's detail at /#car=<car>)
    GET /static/<file>       app.js, app.css (package data)
    GET /api/snapshot        LiveState.snapshot() as JSON
    GET /api/trace?car=C&trip=ID   a trip's vibration trace (decimated) or 404
    GET /events              SSE: `event: snapshot` with the full snapshot on every change
                             (coalesced to at most one per `sse_min_interval_s`), comments as keep-alive
    GET /metrics             Prometheus text exposition, when a metrics renderer is given
    GET /healthz             "ok" (no token: for a local load balancer or a curl from the Pi)
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
import logging
import math
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from liftwatch.edge_daemon.hosts import LOCALHOST_NAMES, is_loopback_host
from liftwatch.edge_daemon.keystore import KeyStoreError, read_private
from liftwatch.errors import LiftwatchError

from .state import LiveState

__all__ = ["StatusConfig", "StatusConfigError", "StatusServer", "load_token"]

log = logging.getLogger("liftwatch.status")

# A request line plus headers from a browser is ~1 kB; anything near this is not a browser.
MAX_HEADER_BYTES = 16 * 1024
# Slow-loris guard: a client gets this long to send its request head (a browser sends it at once).
REQUEST_TIMEOUT_S = 5.0
# Open connections, before authentication. A few operators with a page each (an SSE stream plus a
# request or two) and a Prometheus scrape fit many times over; the daemon's other descriptors
# (boards, outbox, MQTT, state files) stay free whatever a client does (deploy/liftwatch.service
# gives the daemon 4096).
MAX_CONNECTIONS = 64
# Each SSE client holds a task and a socket; a handful of operators is the expected audience.
MAX_SSE_CLIENTS = 16
# Comment line every so often so proxies and NAT boxes keep an idle stream open.
SSE_KEEPALIVE_S = 15.0
_COOKIE = "liftwatch_token"
_TRIP_ID = re.compile(r"-?[0-9]{1,19}")  # ASCII digits only: int() also takes "²" and "٣", then fails
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-]+\.[a-z]+")
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
_SECURITY_HEADERS = (
    ("Content-Security-Policy", ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                 "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                                 "base-uri 'none'; form-action 'none'")),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)


class StatusConfigError(LiftwatchError, ValueError):
    """The status page cannot start as configured (e.g. exposed without a token)."""


@dataclass(frozen=True, slots=True)
class StatusConfig:
    """`[status]` of the daemon config. Port 0 picks a free port (tests)."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = field(default=None, repr=False)  # required when `host` is not loopback; never in logs
    sse_min_interval_s: float = 0.25  # a burst of changes (a trip ends) becomes one update

    @property
    def loopback_only(self) -> bool:
        return is_loopback_host(self.host)  # a host name could resolve to anything

    def host_allowed(self, host_header: str) -> bool:
        """The Host a browser sent names this page: the bind host, a localhost name or an IP literal
        (a DNS-rebinding page sends its own name)."""
        host = host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header
        host = host.lower()
        if host.startswith("[") and "]" in host:  # [v6]:port
            host = host[1 : host.index("]")]
        if host in LOCALHOST_NAMES or host == self.host.lower() or host in _own_names():
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    def check(self) -> None:
        if not self.loopback_only and not self.token:
            raise StatusConfigError(
                f"status page bound to {self.host!r} (not loopback) needs a token: set [status].token_file"
            )
        if self.token is not None and len(self.token) < 16:
            raise StatusConfigError("status token must be at least 16 characters")


def load_token(path: str | Path) -> str:
    """Read a token file (one line), which must be private to the daemon's user (keystore's checks)."""
    p = Path(path)
    try:
        token = read_private(p).decode("utf-8").strip()
    except KeyStoreError as err:
        raise StatusConfigError(str(err)) from None
    except OSError as err:
        raise StatusConfigError(f"cannot read status token file {p}: {err.strerror}") from err
    except UnicodeError:
        raise StatusConfigError(f"status token file {p} is not text") from None
    if not token:
        raise StatusConfigError(f"status token file {p} is empty")
    return token


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class _HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str = "") -> None:
        super().__init__(message or status.phrase)
        self.status = status
        self.message = message or status.phrase


class StatusServer:
    """Serves one LiveState. `start()` binds, `close()` stops (SSE streams included)."""

    def __init__(
        self,
        live: LiveState,
        config: StatusConfig | None = None,
        *,
        metrics: Callable[[], str] | None = None,
    ) -> None:
        self.live = live
        self.config = config or StatusConfig()
        self.config.check()
        self._metrics = metrics
        self._server: asyncio.Server | None = None
        self._sse_clients: set[asyncio.Task[Any]] = set()
        # Every open connection, oldest first, with its transport while it waits for its request
        # head (None once it is being answered: then it is never evicted).
        self._connections: dict[asyncio.Task[Any], asyncio.BaseTransport | None] = {}
        self._closing = asyncio.Event()
        self.requests = 0
        self.rejected_auth = 0
        self.rejected_host = 0
        self.evicted = 0  # connections closed before their request head was in, to make room
        self.refused = 0  # connections closed at once: every slot was busy answering

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("status server not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        # backlog: asyncio accepts up to this many sockets per wake-up before any is admitted, so it
        # also bounds the descriptors a flood holds beyond MAX_CONNECTIONS at any moment.
        self._server = await asyncio.start_server(
            self._on_client, self.config.host, self.config.port, limit=MAX_HEADER_BYTES, backlog=MAX_CONNECTIONS
        )
        log.info("status page listening", extra={"url": self.url, "token": bool(self.config.token)})

    async def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- connection handling --------------------------------------------------------------------

    def _admit(self, task: asyncio.Task[Any], transport: asyncio.BaseTransport) -> bool:
        """Make room for a new connection under MAX_CONNECTIONS; False if there is none."""
        if len(self._connections) >= MAX_CONNECTIONS:
            oldest = next(((t, tr) for t, tr in self._connections.items() if tr is not None), None)
            if oldest is None:
                self.refused += 1
                return False
            del self._connections[oldest[0]]
            oldest[1].abort()  # the socket goes now, not when the task next runs
            oldest[0].cancel()
            self.evicted += 1
        self._connections[task] = transport
        return True

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if not self._admit(task, writer.transport):
            writer.transport.abort()
            return
        try:
            try:
                request = await asyncio.wait_for(self._read_request(reader), REQUEST_TIMEOUT_S)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                return  # nothing sensible to answer
            if task in self._connections:
                self._connections[task] = None
            self.requests += 1
            try:
                await self._route(request, writer)
            except _HttpError as err:
                await self._send(writer, err.status, err.message.encode() + b"\n", "text/plain; charset=utf-8",
                                 head=request.method == "HEAD")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> _Request:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ValueError("bad request line")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError("bad header line")
            headers[name.strip().lower()] = value.strip()
        url = urlsplit(parts[1])
        # "+" is kept as itself (it is a space only in HTML forms, and there are none): a token may hold it.
        return _Request(parts[0], url.path, parse_qs(url.query.replace("+", "%2B")), headers)

    def _authorised(self, request: _Request) -> bool:
        token = self.config.token
        if token is None:
            return True
        given = ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        else:
            for item in request.headers.get("cookie", "").split(";"):
                name, _, value = item.strip().partition("=")
                if name == _COOKIE:
                    given = unquote(value)  # set percent-encoded: a token may hold + / =
        return hmac.compare_digest(given.encode(), token.encode())

    async def _route(self, request: _Request, writer: asyncio.StreamWriter) -> None:
        if request.method not in ("GET", "HEAD"):
            raise _HttpError(HTTPStatus.METHOD_NOT_ALLOWED)
        head = request.method == "HEAD"
        path = request.path
        if not path.isascii() or not path.isprintable() or " " in path:
            raise _HttpError(HTTPStatus.BAD_REQUEST, "bad characters in the path")
        if not self.config.host_allowed(request.headers.get("host", "")):
            self.rejected_host += 1
            raise _HttpError(HTTPStatus.MISDIRECTED_REQUEST, "unknown Host: use the address the page is bound to")
        if path == "/healthz":
            await self._send(writer, HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8", head=head)
            return
        if self.config.token is not None and path == "/" and "token" in request.query:
            given = request.query["token"][0]
            if hmac.compare_digest(given.encode(), self.config.token.encode()):
                cookie = f"{_COOKIE}={quote(given, safe='')}; HttpOnly; SameSite=Strict; Path=/"
                await self._send(writer, HTTPStatus.SEE_OTHER, b"", "text/plain",
                                 extra=(("Location", "/"), ("Set-Cookie", cookie)), head=head)
                return
        if not self._authorised(request):
            self.rejected_auth += 1
            raise _HttpError(HTTPStatus.UNAUTHORIZED, "token required")
        if path in ("/", "/index.html"):
            await self._static(writer, "index.html", head)
        elif path.startswith("/static/"):
            await self._static(writer, path[len("/static/"):], head)
        elif path == "/api/snapshot":
            await self._json(writer, self.live.snapshot(), head)
        elif path == "/api/trace":
            car = (request.query.get("car") or [""])[0]
            trip = (request.query.get("trip") or [""])[0]
            if not _TRIP_ID.fullmatch(trip):
                raise _HttpError(HTTPStatus.BAD_REQUEST, "trip must be the trip id (start time in ms)")
            # Filtering and decimating a trip takes tens of ms on a Pi: off the loop that reads boards.
            trace = await asyncio.to_thread(self.live.trip_trace, car, int(trip))
            if trace is None:
                raise _HttpError(HTTPStatus.NOT_FOUND, "no trace kept for this trip")
            body = await asyncio.to_thread(lambda: _dumps(trace.to_json()).encode())
            await self._send(writer, HTTPStatus.OK, body, "application/json", head=head)
        elif path == "/events":
            await self._sse(writer, head)
        elif path == "/metrics" and self._metrics is not None:
            await self._send(writer, HTTPStatus.OK, self._metrics().encode(),
                             "text/plain; version=0.0.4; charset=utf-8", head=head)
        else:
            raise _HttpError(HTTPStatus.NOT_FOUND)

    # -- responses ------------------------------------------------------------------------------

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        *,
        extra: tuple[tuple[str, str], ...] = (),
        head: bool = False,
        cache: str = "no-store",
    ) -> None:
        lines = [f"HTTP/1.1 {status.value} {status.phrase}", f"Content-Type: {content_type}",
                 f"Content-Length: {len(body)}", f"Cache-Control: {cache}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in _SECURITY_HEADERS + extra]
        if status == HTTPStatus.UNAUTHORIZED:
            lines.append('WWW-Authenticate: Bearer realm="liftwatch"')
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body))
        await writer.drain()

    async def _json(self, writer: asyncio.StreamWriter, obj: Any, head: bool) -> None:
        await self._send(writer, HTTPStatus.OK, _dumps(obj).encode(), "application/json", head=head)

    async def _static(self, writer: asyncio.StreamWriter, name: str, head: bool) -> None:
        if not _STATIC_NAME.fullmatch(name) or Path(name).suffix not in _STATIC_TYPES:
            raise _HttpError(HTTPStatus.NOT_FOUND)
        try:
            body = resources.files(__package__).joinpath("static", name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise _HttpError(HTTPStatus.NOT_FOUND) from None
        await self._send(writer, HTTPStatus.OK, body, _STATIC_TYPES[Path(name).suffix], head=head, cache="no-cache")

    async def _sse(self, writer: asyncio.StreamWriter, head: bool) -> None:
        if len(self._sse_clients) >= MAX_SSE_CLIENTS:
            raise _HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "too many live viewers")
        lines = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Cache-Control: no-store",
                 "X-Accel-Buffering: no"] + [f"{k}: {v}" for k, v in _SECURITY_HEADERS]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        if head:
            return
        task = asyncio.current_task()
        assert task is not None
        self._sse_clients.add(task)
        loop = asyncio.get_running_loop()
        try:
            writer.write(b"retry: 2000\n\n")
            seen = -1
            while not self._closing.is_set():
                version = await self.live.wait_changed(seen, SSE_KEEPALIVE_S)
                if version == seen:
                    writer.write(b": keep-alive\n\n")
                else:
                    seen = version
                    body = _dumps(self.live.snapshot())
                    writer.write(f"event: snapshot\nid: {version}\ndata: {body}\n\n".encode())
                await writer.drain()
                # Coalesce bursts; the snapshot taken next includes whatever happened meanwhile.
                until = loop.time() + self.config.sse_min_interval_s
                while (left := until - loop.time()) > 0 and not self._closing.is_set():
                    await asyncio.sleep(left)
        finally:
            self._sse_clients.discard(task)


@functools.cache
def _own_names() -> frozenset[str]:
    """This machine's names as an operator types them: full, first label, and its mDNS name."""
    full = socket.gethostname().lower()
    short = full.split(".")[0]
    return frozenset({full, short, f"{short}.local"})


def _dumps(obj: Any) -> str:
    """Strict JSON (browsers reject NaN); a non-finite figure is shown as unknown (null)."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_json_default)
    except ValueError:
        return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False, default=_json_default)


def _finite(obj: Any) -> Any:
    if type(obj).__module__ == "numpy" and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    """numpy scalars and enums sneak in through analytics outputs; make them plain JSON."""
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "value"):
        return obj.value
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
