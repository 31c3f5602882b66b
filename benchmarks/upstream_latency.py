"""Upstream latency and throughput: outbox.put() -> PUBACK from a local Mosquitto.

Latency is measured per event at a paced rate (events are sparse in a lift: this is the delay a
fault sees, not a queueing figure), from the start of `Outbox.aput()` (including its fsync) to the
moment the publisher has recorded the PUBACK in the outbox. Throughput is a burst drained as fast
as the window allows.

    python benchmarks/upstream_latency.py [--events 500] [--rate-hz 50] [--burst 5000] [--json]

`measure_event_latency()` is importable (the daemon benchmark calls it). Without `host`/`port` it
starts a throwaway broker with tests/mosquitto.py (Debian package `mosquitto` needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from liftwatch.broker import Mosquitto
from liftwatch.edge_daemon.envelope import make_message, utc_iso
from liftwatch.edge_daemon.outbox import Outbox, OutboxMessage
from liftwatch.edge_daemon.upstream import MqttConfig, Upstream, UpstreamConfig


@dataclass(frozen=True, slots=True)
class UpstreamLatency:
    events: int
    event_latency_p50_ms: float
    event_latency_p99_ms: float
    event_latency_max_ms: float
    put_p50_ms: float  # the durable put alone (SQLite WAL commit with fsync)
    put_p99_ms: float
    burst_messages: int
    burst_msgs_per_s: float


def _event(i: int) -> dict[str, Any]:
    return make_message("event", "bench", f"car{i % 4}", "board1", utc_iso(time.time()), f"e{i}",
                        {"type": "alarm_button", "state": "raised", "event_ts": utc_iso(time.time()),
                         "gbt24476_code": None, "detail": {"i": i}})


async def _measure(outbox: Outbox, host: str, port: int, events: int, rate_hz: float, burst: int) -> UpstreamLatency:
    delivered_at: dict[str, float] = {}
    done = asyncio.Event()
    expected = events

    def on_delivered(messages: Sequence[OutboxMessage]) -> None:
        now = time.perf_counter()
        for m in messages:
            delivered_at[m.id] = now
        if len(delivered_at) >= expected:
            done.set()

    cfg = MqttConfig(host, port, tls=None, reconnect_min_s=0.05, reconnect_max_s=0.5)
    upstream = Upstream(UpstreamConfig("bench", "pi1", cfg), on_delivered=on_delivered)
    stop = asyncio.Event()
    task = asyncio.create_task(upstream.run(outbox, stop), name="upstream")
    while upstream.counters.connects == 0:
        await asyncio.sleep(0.01)
    started: dict[str, float] = {}
    put_ms: list[float] = []
    for i in range(events):
        message = _event(i)
        t0 = time.perf_counter()
        started[message["id"]] = t0
        await outbox.aput(message)
        put_ms.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(1 / rate_hz)
    await asyncio.wait_for(done.wait(), 30)
    latency_ms = np.array([(delivered_at[mid] - t0) * 1000 for mid, t0 in started.items()])

    expected = events + burst
    done.clear()
    t0 = time.perf_counter()
    for start in range(0, burst, 100):
        outbox.put_many([_event(events + i) for i in range(start, min(start + 100, burst))])
    await asyncio.wait_for(done.wait(), 120)
    burst_s = time.perf_counter() - t0
    stop.set()
    await task
    return UpstreamLatency(
        events=events,
        event_latency_p50_ms=round(float(np.percentile(latency_ms, 50)), 2),
        event_latency_p99_ms=round(float(np.percentile(latency_ms, 99)), 2),
        event_latency_max_ms=round(float(latency_ms.max()), 2),
        put_p50_ms=round(float(np.percentile(put_ms, 50)), 3),
        put_p99_ms=round(float(np.percentile(put_ms, 99)), 3),
        burst_messages=burst,
        burst_msgs_per_s=round(burst / burst_s, 1),
    )


def measure_event_latency(
    events: int = 500, rate_hz: float = 50.0, burst: int = 5000,
    host: str | None = None, port: int | None = None, workdir: Path | None = None,
) -> UpstreamLatency:
    """put -> PUBACK latency percentiles and burst throughput against a local Mosquitto.

    Blocking (runs its own event loop). Starts a throwaway broker unless host and port are given.
    """
    with tempfile.TemporaryDirectory(prefix="lw-upstream-bench-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        broker = None
        if host is None or port is None:
            broker = Mosquitto(root / "broker", persistence=False)
            broker.start()
            host, port = broker.host, broker.port
        outbox = Outbox(root / "outbox.db")
        try:
            return asyncio.run(_measure(outbox, host, port, events, rate_hz, burst))
        finally:
            outbox.close()
            if broker is not None:
                broker.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rate-hz", type=float, default=50.0)
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    result = measure_event_latency(args.events, args.rate_hz, args.burst)
    print(f"{'metric':<24} {'value':>12}")
    for name, value in asdict(result).items():
        print(f"{name:<24} {value:>12}")
    if args.json:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    sys.exit(main())
