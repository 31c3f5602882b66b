"""The daemon's operator side in one object: status page, /metrics, sd_notify and the watchdog.

The daemon creates one `OperatorPlane`, hands it every observation and analytics output
(`observe`), the upstream's delivered batches (`on_delivered`), and runs `run(daemon, stop)` as one
more named task. The plane reads the daemon's parts only through what they already expose
(`BoardTask.status()`, `.reader`, `.phase`, `.counters`; `Outbox.stats()`; `Upstream.state`,
`.counters`), so nothing in the pipeline waits on a browser, a scrape or systemd.

Wiring (edge_daemon/daemon.py, `liftwatch run`):
    plane = OperatorPlane(cfg.site, cfg.boards, StatusConfig(host, port, token))     # Daemon.__init__
    CarPipeline(..., observer=plane.observe)   # _apply: observer(car, obs) for each observation,
                                               # _outputs: observer(car, out) for each output
    Upstream(cfg.upstream, status_provider=..., on_delivered=plane.on_delivered)
    tasks.append(asyncio.create_task(plane.run(self, stop), name="operator plane"))  # after boards, upstream
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from liftwatch.edge_daemon.metrics import (
    DaemonMetrics,
    board_families,
    outbox_families,
    publisher_families,
)
from liftwatch.edge_daemon.service import (
    ProgressWatchdog,
    Stage,
    SystemdNotifier,
    watchdog_interval_s,
)

from .server import StatusConfig, StatusServer
from .state import LiveState

__all__ = ["OperatorPlane"]

log = logging.getLogger("liftwatch.status")

# Board health and the header figures on the page are refreshed this often (cheap: dict copies).
REFRESH_S = 1.0
# A board that is connected and online sends a frame at least every second (STATS when no VIB flows;
# HEARTBEAT every 10 s); reading nothing for this long
# while the session still thinks it online means our read loop, not the board, is stuck. Must
# exceed the session's heartbeat timeout (15 s default) plus a tick: a board that just fell
# silent is "online" until the timeout, and that is the board's silence, not ours.
FRAMES_STALL_S = 45.0
# The broker is connected and messages are pending, yet none was acknowledged for this long:
# the publisher is wedged (a healthy one drains thousands per second).
DELIVERY_STALL_S = 120.0


_DEFAULT_STATUS = StatusConfig()


class OperatorPlane:
    """Status page + metrics + systemd for one daemon (see the module docstring for wiring)."""

    def __init__(
        self,
        site: str,
        boards: Sequence[Any] = (),
        status: StatusConfig | None = _DEFAULT_STATUS,
        *,
        notifier: SystemdNotifier | None = None,
        watchdog_s: float | None = None,
        frames_stall_s: float = FRAMES_STALL_S,
        delivery_stall_s: float = DELIVERY_STALL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.live = LiveState(site=site, clock=clock)
        for board in boards:
            self.live.add_car(board.car, board_id=getattr(board, "board_id", ""),
                              analytics=getattr(board, "analytics", None))
        self.metrics = DaemonMetrics(clock=clock)
        self.server = StatusServer(self.live, status, metrics=self.metrics.render) if status is not None else None
        self.notifier = notifier or SystemdNotifier()
        self.watchdog_s = watchdog_s if watchdog_s is not None else watchdog_interval_s()
        self.watchdog: ProgressWatchdog | None = None
        self.frames_stall_s = frames_stall_s
        self.delivery_stall_s = delivery_stall_s
        self._clock = clock
        self._daemon: Any = None
        self.observe_errors = 0

    def observe(self, car: str, item: object) -> None:
        """Every observation and analytics output of a car; never raises into the pipeline."""
        try:
            self.live.apply(car, item)
        except Exception:
            self.observe_errors += 1
            if self.observe_errors in (1, 10, 100, 1000):
                log.exception("status page could not take an item", extra={"car": car, "errors": self.observe_errors})

    def on_delivered(self, messages: Sequence[Any]) -> None:
        """Upstream's delivered batch: board event time -> delivery, per kind."""
        now = self._clock()
        for msg in messages:
            try:
                body = json.loads(msg.payload)
                ts = _unix(body.get("event_ts") or body.get("ts"))
            except (ValueError, TypeError, AttributeError):
                continue
            if ts is not None:
                self.metrics.observe_latency(f"{msg.kind}_to_delivery", now - ts)

    async def run(self, daemon: Any, stop: asyncio.Event) -> None:
        """Serve the page, refresh it, tell systemd we are ready, ping the watchdog; until `stop`."""
        self._daemon = daemon
        self.metrics.add_collector(self._board_metrics)
        self.metrics.add_collector(self._outbox_metrics)
        self.metrics.add_collector(self._publisher_metrics)
        if self.server is not None:
            await self.server.start()
        watchdog_task = None
        try:
            self._refresh()
            self.notifier.ready(self.status_line())
            log.info("ready", extra={"boards": len(daemon.boards), "watchdog_s": self.watchdog_s})
            if self.watchdog_s:
                self.watchdog = ProgressWatchdog(
                    self.notifier, self._stages(), self.watchdog_s / 3, clock=time.monotonic,
                    status=self.status_line,
                )
                watchdog_task = asyncio.create_task(self.watchdog.run(stop), name="service: watchdog")
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), REFRESH_S)
                except TimeoutError:
                    pass
                self._refresh()
        finally:
            self.notifier.stopping("stopping: committing and closing")
            if watchdog_task is not None:
                await asyncio.gather(watchdog_task, return_exceptions=True)
            if self.server is not None:
                await self.server.close()

    def status_line(self) -> str:
        """The one line `systemctl status liftwatch` shows."""
        d = self._daemon
        boards = list(getattr(d, "boards", ()))
        online = sum(1 for b in boards if b.pipeline.session.online)
        pending = self._pending()
        upstream = getattr(d, "upstream", None)
        broker = upstream.state.value if upstream is not None else "-"
        return f"{online}/{len(boards)} boards online, outbox {pending if pending is not None else '?'} pending, upstream {broker}"

    # -- internals ------------------------------------------------------------------------------

    def _refresh(self) -> None:
        d = self._daemon
        for task in getattr(d, "boards", ()):
            try:
                self.live.board_status(task.board.car, task.status())
            except Exception:
                log.exception("board status failed", extra={"car": task.board.car})
        upstream = getattr(d, "upstream", None)
        fields: dict[str, Any] = {"broker": upstream.state.value if upstream is not None else None}
        pending = self._pending()
        if pending is not None:
            fields["outbox"] = {"pending": pending}
        self.live.daemon_status(fields)

    def _pending(self) -> int | None:
        outbox = getattr(self._daemon, "outbox", None)
        if outbox is None:
            return None
        try:
            return int(outbox.stats().pending)
        except Exception:  # noqa: BLE001 - a closed or failing outbox shows as unknown
            return None

    def _stages(self) -> list[Stage]:
        d = self._daemon

        def bytes_read() -> int:
            return sum(b.counters.bytes_in for b in d.boards)

        def boards_talking() -> bool:
            return any(getattr(b.phase, "value", b.phase) == "ready" and b.pipeline.session.online for b in d.boards)

        def delivered() -> int:
            return d.upstream.counters.delivered if d.upstream is not None else 0

        def delivery_due() -> bool:
            if d.upstream is None or d.upstream.state.value != "ready":
                return False  # broker away: the network's problem, a restart would not help
            return (self._pending() or 0) > 0

        return [
            Stage("frames", bytes_read, boards_talking, self.frames_stall_s),
            Stage("upstream", delivered, delivery_due, self.delivery_stall_s),
        ]

    def _board_metrics(self):
        boards = self._daemon.boards
        return board_families({b.board.car: b.status() for b in boards}, {b.board.car: b.reader.drops for b in boards})

    def _outbox_metrics(self):
        outbox = self._daemon.outbox
        return outbox_families(outbox.stats()) if outbox is not None else []

    def _publisher_metrics(self):
        upstream = self._daemon.upstream
        return publisher_families(upstream.state, upstream.counters.to_status()) if upstream is not None else []


def _unix(iso: Any) -> float | None:
    """ISO 8601 UTC (`...Z`) -> Unix seconds."""
    if not isinstance(iso, str):
        return None
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()  # Python 3.11 reads the trailing Z
