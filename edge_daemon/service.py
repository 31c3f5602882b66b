"""Running under systemd: sd_notify (READY, STATUS, WATCHDOG, STOPPING) and journald-friendly logs.

sd_notify is one datagram on the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an abstract
name written with a leading "@"); no libsystemd needed. Outside systemd the variable is unset and
every call is a no-op, so `liftwatch run` behaves the same from a shell.

The watchdog is only useful if it fails when the daemon is wedged, not merely when the process
is alive. So the ping is tied to pipeline progress: `ProgressWatchdog` checks each `Stage` and
pings only while every stage either moved since it last moved (frames read, messages delivered)
within its `stall_s`, or has nothing to do (no board connected, nothing pending, broker away --
a broker outage is the network's fault and a restart would not help). A stage that has work and
stops moving stops the pings; systemd then kills and restarts the service (`WatchdogSec`,
`Restart=on-failure`). A blocked event loop stops the pings too, since the check runs on it.

Logs go to stderr. Under systemd (`$JOURNAL_STREAM` matches stderr) each line starts with the
syslog priority `<N>` that journald turns into the entry's PRIORITY, and the time is left to
journald; elsewhere lines carry an ISO UTC timestamp and the level name. Either way the message
is followed by logfmt `key=value` pairs from `extra=`, which journalctl shows as they are and
log shippers (Vector, Promtail) parse without a schema.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

__all__ = [
    "JournalFormatter",
    "ProgressWatchdog",
    "Stage",
    "SystemdNotifier",
    "configure_logging",
    "raise_fd_limit",
    "watchdog_interval_s",
]

log = logging.getLogger("liftwatch.service")

# Descriptors the daemon wants: its boards, the outbox and its side files, MQTT, the status page's
# MAX_CONNECTIONS, and room to spare. deploy/liftwatch.service sets LimitNOFILE to this.
WANTED_FDS = 4096

# Ping at a third of WatchdogSec: two pings may be lost or late before systemd acts.
PING_FRACTION = 1 / 3


class SystemdNotifier:
    """Sends sd_notify messages; every method is a no-op when $NOTIFY_SOCKET is unset."""

    def __init__(self, socket_path: str | None = None) -> None:
        path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if path.startswith("@"):
            self._address = b"\0" + path[1:].encode()  # abstract namespace
        elif path.startswith("/"):
            self._address = path
        self._sock: socket.socket | None = None
        self.sent = 0
        self.errors = 0

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send `KEY=value` lines (e.g. READY=1, STATUS=...); False if not sent."""
        if self._address is None:
            return False
        body = "\n".join(f"{k}={_one_line(str(v))}" for k, v in fields.items()).encode()
        try:
            if self._sock is None:
                # Non-blocking: a busy systemd (full socket queue) must never stall the event loop;
                # a lost ping is covered by pinging at a third of WatchdogSec.
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
            self._sock.sendto(body, self._address)
        except OSError as err:
            # systemd gone (e.g. during shutdown) must never take the daemon down; count and go on.
            self.errors += 1
            log.debug("sd_notify failed", extra={"error": str(err)})
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        fields: dict[str, str | int] = {"READY": 1, "MAINPID": os.getpid()}
        if status:
            fields["STATUS"] = status
        return self.notify(**fields)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str = "") -> bool:
        return self.notify(STOPPING=1, **({"STATUS": status} if status else {}))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return text.replace("\n", " ")


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """WatchdogSec as seconds when systemd asked this process for pings, else None."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # meant for another process (e.g. we were forked)
    return int(usec) / 1e6


@dataclass(frozen=True, slots=True)
class Stage:
    """One part of the pipeline the watchdog judges.

    `progress` returns a number that grows whenever the stage does work (frames read, messages
    delivered); `has_work` says whether it should be moving now; `stall_s` is how long it may
    have work without moving before the daemon counts as wedged.
    """

    name: str
    progress: Callable[[], int]
    has_work: Callable[[], bool]
    stall_s: float


@dataclass(slots=True)
class _StageSeen:
    value: int
    moved_at: float


class ProgressWatchdog:
    """Pings the systemd watchdog while every stage is moving or idle (see the module docstring)."""

    def __init__(
        self,
        notifier: SystemdNotifier,
        stages: Sequence[Stage],
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        status: Callable[[], str] | None = None,
    ) -> None:
        self.notifier = notifier
        self.stages = tuple(stages)
        self.interval_s = interval_s
        self._clock = clock
        self._status = status
        self._seen: dict[str, _StageSeen] = {}
        self.pings = 0
        self.ping_failures = 0
        self.withheld = 0
        self.stalled: tuple[str, ...] = ()

    def check(self) -> tuple[str, ...]:
        """Names of the stages that have work and have not moved within their stall time."""
        now = self._clock()
        stalled = []
        for stage in self.stages:
            try:
                value, busy = int(stage.progress()), bool(stage.has_work())
            except Exception:  # noqa: BLE001 - a stage that cannot even report counts as stalled
                stalled.append(stage.name)
                continue
            seen = self._seen.get(stage.name)
            if seen is None or value != seen.value or not busy:
                # Moving, or idle: restart its stall clock (idle time is not stall time).
                self._seen[stage.name] = _StageSeen(value, now)
            elif now - seen.moved_at > stage.stall_s:
                stalled.append(stage.name)
        return tuple(stalled)

    def tick(self) -> bool:
        """One check; pings when healthy. True if a ping was sent."""
        stalled = self.check()
        if stalled != self.stalled:
            if stalled:
                log.error("pipeline stalled; withholding watchdog pings", extra={"stages": ",".join(stalled)})
            else:
                log.warning("pipeline moving again; watchdog pings resume")
        self.stalled = stalled
        if stalled:
            self.withheld += 1
            self.notifier.status(f"stalled: {', '.join(stalled)}")
            return False
        fields: dict[str, str | int] = {"WATCHDOG": 1}
        if self._status is not None:
            fields["STATUS"] = self._status()
        if not self.notifier.notify(**fields):
            self.ping_failures += 1  # systemd busy or gone; the next tick tries again
            return False
        self.pings += 1
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every interval until `stop` is set. Name the task: "service: watchdog"."""
        while not stop.is_set():
            self.tick()
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                pass


# -- logging -------------------------------------------------------------------------------------

_SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n\t'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class JournalFormatter(logging.Formatter):
    """`<prio>logger: message key=value ...` for journald, or with an ISO UTC time for a terminal."""

    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        pairs = [
            f"{k}={_logfmt_value(v)}"
            for k, v in record.__dict__.items()
            if k not in _RECORD_FIELDS and not k.startswith("_")
        ]
        if record.exc_info:
            pairs.append(f"exc={_logfmt_value(self.formatException(record.exc_info))}")
        line = f"{record.name}: {_one_line(message)}"
        if pairs:
            line += " " + " ".join(pairs)
        if self.journald:
            level = max((lv for lv in _SYSLOG_PRIORITY if lv <= record.levelno), default=logging.DEBUG)
            return f"<{_SYSLOG_PRIORITY[level]}>{line}"
        ts = datetime.fromtimestamp(record.created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return f"{ts} {record.levelname:<7} {line}"


def _stderr_is_journal(stream: IO[str], environ: Mapping[str, str]) -> bool:
    """systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it connected to the journal."""
    value = environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def raise_fd_limit(wanted: int = WANTED_FDS) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (never above the hard limit); returns the soft
    limit in force. A shell's default soft limit is often 1024 while the hard limit allows more.
    Under the unit the limit is already set (LimitNOFILE) and setrlimit is filtered, so nothing is
    called when there is nothing to raise."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as err:
            log.warning("could not raise the open-file limit", extra={"soft": soft, "wanted": target, "error": str(err)})
    return soft


def configure_logging(level: str = "info", stream: IO[str] | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Route the `liftwatch` loggers to stderr in the right format; True when writing to journald."""
    out = sys.stderr if stream is None else stream
    journald = _stderr_is_journal(out, os.environ if environ is None else environ)
    handler = logging.StreamHandler(out)
    handler.setFormatter(JournalFormatter(journald))
    root = logging.getLogger("liftwatch")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    return journald
