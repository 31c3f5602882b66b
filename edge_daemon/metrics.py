"""Prometheus metrics of the daemon, in the text exposition format (version 0.0.4), written by hand.

Why by hand: the format is a page of rules and the daemon's figures already live in its parts
(session counters, framing drops, outbox stats, publisher state); a client library would add a
second registry to keep in step with them. Instead `DaemonMetrics` holds the few values that
exist nowhere else (a latency histogram) and, at scrape time, asks the daemon's collectors for
the rest, so a scrape always shows the figures of that moment. The status server serves it at
/metrics, behind the same localhost binding and token as the page.

Exposed (labels in braces):
    liftwatch_board_frames_total{car}               frames accepted by the session
    liftwatch_board_frames_lost_total{car}          frames missing from the sequence (seq gaps)
    liftwatch_drops_total{car,stage,reason}         frames or messages dropped, stage = framing | session
    liftwatch_board_online{car}                     1 while the board is heard
    liftwatch_board_reboots_total{car}              board reboots seen
    liftwatch_board_heap_free_bytes{car}            from the last HEARTBEAT
    liftwatch_board_queue_depth{car}                frames waiting on the board (HEARTBEAT)
    liftwatch_outbox_pending_messages / _pending_bytes / _budget_bytes
    liftwatch_outbox_oldest_pending_age_seconds     0 when nothing is pending
    liftwatch_outbox_dropped_total{kind,reason}     messages dropped for the budget (counted, reported upstream)
    liftwatch_broker_state{state}                   1 for the publisher's current state, 0 for the others
    liftwatch_upstream_delivered_total / _rejected_total / _connects_total / _disconnects_total
    liftwatch_latency_seconds{path}                 histogram; path names what is timed, e.g.
                                                    "event_to_puback" (board EVENT frame in -> PUBACK)
    liftwatch_process_resident_memory_bytes, liftwatch_process_start_time_seconds
"""

from __future__ import annotations

import bisect
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LATENCY_BUCKETS_S",
    "DaemonMetrics",
    "MetricFamily",
    "Sample",
    "board_families",
    "outbox_families",
    "publisher_families",
    "render",
]

# Event latency is judged against a 500 ms p99 target (benchmarks/daemon.py): resolve well below
# and above it; an outage of hours lands in +Inf, which is what it is.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)
PUBLISHER_STATES = ("connecting", "ready", "disconnected", "stopped")


@dataclass(frozen=True, slots=True)
class Sample:
    """One line: `name{labels} value`; `suffix` is appended to the family name (_bucket, _sum)."""

    labels: tuple[tuple[str, str], ...]
    value: float
    suffix: str = ""


@dataclass(frozen=True, slots=True)
class MetricFamily:
    name: str
    type: str  # counter | gauge | histogram
    help: str
    samples: tuple[Sample, ...] = ()


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


def render(families: Iterable[MetricFamily]) -> str:
    """Text exposition of the families; one HELP and TYPE per name, as the format requires."""
    out: list[str] = []
    seen: set[str] = set()
    for fam in families:
        if fam.name in seen:
            raise ValueError(f"metric family {fam.name} rendered twice")
        seen.add(fam.name)
        out.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
        out.append(f"# TYPE {fam.name} {fam.type}")
        for s in fam.samples:
            name = fam.name + s.suffix
            if s.labels:
                body = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in s.labels)
                out.append(f"{name}{{{body}}} {_value(s.value)}")
            else:
                out.append(f"{name} {_value(s.value)}")
    return "\n".join(out) + "\n"


@dataclass(slots=True)
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_S))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(LATENCY_BUCKETS_S, seconds)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += seconds
        self.n += 1


# -- adapters from the daemon's own status shapes ----------------------------------------------


def board_families(boards: Mapping[str, Mapping[str, Any]], framing_drops: Mapping[str, Mapping[Any, int]]) -> list[MetricFamily]:
    """From `{car: session.status()}` and `{car: frame_reader.drops}` (Counter keyed by DropReason)."""
    frames, lost, online, reboots, heap, queue, drops = [], [], [], [], [], [], []
    for car, st in sorted(boards.items()):
        lab = (("car", car),)
        counters = st.get("counters") or {}
        frames.append(Sample(lab, counters.get("frames", 0)))
        lost.append(Sample(lab, counters.get("lost_frames", 0)))
        reboots.append(Sample(lab, counters.get("reboots", 0)))
        online.append(Sample(lab, 1 if st.get("online") else 0))
        hb = st.get("heartbeat") or {}
        if hb.get("heap_free") is not None:
            heap.append(Sample(lab, hb["heap_free"]))
        if hb.get("queue_depth") is not None:
            queue.append(Sample(lab, hb["queue_depth"]))
        for reason, n in sorted((counters.get("drops") or {}).items()):
            drops.append(Sample((("car", car), ("stage", "session"), ("reason", _reason(reason))), n))
    for car, counter in sorted(framing_drops.items()):
        for reason, n in sorted(counter.items(), key=lambda kv: _reason(kv[0])):
            drops.append(Sample((("car", car), ("stage", "framing"), ("reason", _reason(reason))), n))
    return [
        MetricFamily("liftwatch_board_frames_total", "counter", "Frames accepted by the board's session.", tuple(frames)),
        MetricFamily("liftwatch_board_frames_lost_total", "counter", "Frames missing from the board's sequence numbers.", tuple(lost)),
        MetricFamily("liftwatch_drops_total", "counter", "Frames dropped, by pipeline stage and reason.", tuple(drops)),
        MetricFamily("liftwatch_board_online", "gauge", "1 while the board is heard within the heartbeat timeout.", tuple(online)),
        MetricFamily("liftwatch_board_reboots_total", "counter", "Board reboots seen by the session.", tuple(reboots)),
        MetricFamily("liftwatch_board_heap_free_bytes", "gauge", "Free MicroPython heap in the last HEARTBEAT.", tuple(heap)),
        MetricFamily("liftwatch_board_queue_depth", "gauge", "Frames queued on the board in the last HEARTBEAT.", tuple(queue)),
    ]


def outbox_families(stats: Any, now_unix_ms: float | None = None) -> list[MetricFamily]:
    """From `Outbox.stats()` (an OutboxStats, or its `to_status()` dict)."""
    st = stats.to_status() if hasattr(stats, "to_status") else stats
    box, drops = st["outbox"], st.get("drops") or {}
    now_ms = time.time() * 1000 if now_unix_ms is None else now_unix_ms
    oldest = box.get("oldest_pending_unix_ms")
    age = max(0.0, (now_ms - oldest) / 1000) if oldest is not None else 0.0
    dropped = [
        Sample((("kind", kind), ("reason", reason)), n)
        for reason, by_kind in sorted(drops.items())
        for kind, n in sorted(by_kind.items())
    ]
    return [
        MetricFamily("liftwatch_outbox_pending_messages", "gauge", "Messages stored, not yet delivered upstream.",
                     (Sample((), box["pending"]),)),
        MetricFamily("liftwatch_outbox_pending_bytes", "gauge", "Bytes of pending messages.", (Sample((), box["pending_bytes"]),)),
        MetricFamily("liftwatch_outbox_budget_bytes", "gauge", "Outbox size budget.", (Sample((), box["budget_bytes"]),)),
        MetricFamily("liftwatch_outbox_rejected_messages", "gauge", "Messages the broker refused, kept for an operator.",
                     (Sample((), box.get("rejected", 0)),)),
        MetricFamily("liftwatch_outbox_oldest_pending_age_seconds", "gauge", "Age of the oldest pending message (0 if none).",
                     (Sample((), round(age, 3)),)),
        MetricFamily("liftwatch_outbox_dropped_total", "counter", "Messages dropped to keep within the budget.", tuple(dropped)),
    ]


def publisher_families(state: Any, counters: Mapping[str, int]) -> list[MetricFamily]:
    """From `publisher.state` (PublisherState or its value) and `publisher.counters.to_status()`."""
    current = getattr(state, "value", state)
    states = PUBLISHER_STATES if current in PUBLISHER_STATES else PUBLISHER_STATES + (str(current),)
    return [
        MetricFamily("liftwatch_broker_state", "gauge", "1 for the upstream publisher's current state.",
                     tuple(Sample((("state", s),), 1 if s == current else 0) for s in states)),
        MetricFamily("liftwatch_upstream_delivered_total", "counter", "Messages delivered (PUBACK or journal write).",
                     (Sample((), counters.get("delivered", 0)),)),
        MetricFamily("liftwatch_upstream_rejected_total", "counter", "Messages the broker refused.",
                     (Sample((), counters.get("rejected", 0)),)),
        MetricFamily("liftwatch_upstream_connects_total", "counter", "Broker connections made.",
                     (Sample((), counters.get("connects", 0)),)),
        MetricFamily("liftwatch_upstream_disconnects_total", "counter", "Broker connections lost.",
                     (Sample((), counters.get("disconnects", 0)),)),
    ]


def _reason(reason: Any) -> str:
    value = getattr(reason, "value", None)
    if isinstance(value, str):
        return value
    name = getattr(reason, "name", None)
    return (name or str(reason)).lower()


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


Collector = Callable[[], Iterable[MetricFamily]]


class DaemonMetrics:
    """The daemon's /metrics: latency histograms kept here, everything else collected at scrape.

    Wiring (daemon.py):
        metrics = DaemonMetrics()
        metrics.add_collector(lambda: board_families({b.car: s.status() for ...}, {b.car: reader.drops ...}))
        metrics.add_collector(lambda: outbox_families(outbox.stats()))
        metrics.add_collector(lambda: publisher_families(publisher.state, publisher.counters.to_status()))
        metrics.observe_latency("event_to_puback", seconds)   # from the publisher's on_delivered
        StatusServer(live, cfg, metrics=metrics.render)
    A collector that raises is skipped for that scrape and counted in
    `liftwatch_metrics_collector_errors_total`, so one broken part does not blank the page.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._collectors: list[Collector] = []
        self._latency: dict[str, _Histogram] = {}
        self._collector_errors = 0
        self._clock = clock
        self._start = clock()

    def add_collector(self, collector: Collector) -> None:
        self._collectors.append(collector)

    def observe_latency(self, path: str, seconds: float) -> None:
        if math.isfinite(seconds) and seconds >= 0:
            self._latency.setdefault(path, _Histogram()).observe(seconds)

    def families(self) -> list[MetricFamily]:
        out: list[MetricFamily] = []
        for collector in self._collectors:
            try:
                out.extend(collector())
            except Exception:  # noqa: BLE001 - one part's failure must not blank the scrape
                self._collector_errors += 1
        out.append(self._latency_family())
        out.append(MetricFamily("liftwatch_metrics_collector_errors_total", "counter",
                                "Scrapes where a collector raised and was skipped.",
                                (Sample((), self._collector_errors),)))
        rss = _rss_bytes()
        if rss is not None:
            out.append(MetricFamily("liftwatch_process_resident_memory_bytes", "gauge",
                                    "Resident memory of the daemon.", (Sample((), rss),)))
        out.append(MetricFamily("liftwatch_process_start_time_seconds", "gauge",
                                "Start of the daemon, Unix time.", (Sample((), round(self._start, 3)),)))
        return out

    def render(self) -> str:
        return render(self.families())

    def _latency_family(self) -> MetricFamily:
        samples: list[Sample] = []
        for path, hist in sorted(self._latency.items()):
            cumulative = 0
            for bound, n in zip(LATENCY_BUCKETS_S, hist.counts):
                cumulative += n
                samples.append(Sample((("path", path), ("le", _value(bound))), cumulative, "_bucket"))
            samples.append(Sample((("path", path), ("le", "+Inf")), hist.n, "_bucket"))
            samples.append(Sample((("path", path),), round(hist.total, 6), "_sum"))
            samples.append(Sample((("path", path),), hist.n, "_count"))
        return MetricFamily("liftwatch_latency_seconds", "histogram",
                            "Latency through the pipeline, by timed path.", tuple(samples))
