"""/metrics: the hand-written exposition must parse with Prometheus' own parser, and the adapters
must read the real status shapes of the session, the framing reader, the outbox and the publisher."""

from __future__ import annotations

from collections import Counter

import pytest
from liftwatch.edge_daemon.metrics import (
    LATENCY_BUCKETS_S,
    DaemonMetrics,
    MetricFamily,
    Sample,
    board_families,
    outbox_families,
    publisher_families,
    render,
)
from liftwatch.edge_daemon.outbox import Outbox
from liftwatch.edge_daemon.session import BoardSession
from liftwatch.edge_daemon.upstream import PublisherCounters, PublisherState
from liftwatch.protocol import messages as m
from liftwatch.protocol.framing import DropReason, FrameReader, encode_frame
from prometheus_client.parser import text_string_to_metric_families


def _parsed(text: str) -> dict[str, list]:
    return {fam.name: fam.samples for fam in text_string_to_metric_families(text)}


def _value(samples, name, **labels) -> float:
    hits = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, (name, labels, samples)
    return hits[0]


def test_escaping_and_special_values_parse():
    text = render([
        MetricFamily("lw_test", "gauge", 'help with \\ and\nnewline', (
            Sample((("car", 'a"b\\c\nd'),), 1.5),
            Sample((("car", "inf"),), float("inf")),
            Sample((("car", "big"),), 12345678901),
        )),
    ])
    samples = _parsed(text)["lw_test"]
    assert _value(samples, "lw_test", car='a"b\\c\nd') == 1.5
    assert _value(samples, "lw_test", car="inf") == float("inf")
    assert "lw_test{car=\"big\"} 12345678901" in text


def test_a_family_rendered_twice_is_refused():
    with pytest.raises(ValueError):
        render([MetricFamily("lw_x", "gauge", "x"), MetricFamily("lw_x", "gauge", "x")])


def _session_with_traffic() -> BoardSession:
    """A real session fed real frames: HELLO, a heartbeat, then a seq gap of 3 frames."""
    s = BoardSession(label="c1")
    reader = FrameReader()
    hello = ["lw-0001", "1.0.0", "lis3dh", 7, "power_on", [], 400, 4096, True, False, 9, [0, 0, 4096]]
    heartbeat = [3600, 51_200, 2, 0, 1, True, False]
    wire = encode_frame(m.MessageType.HELLO, hello, boot_id=9, seq=0, t_ms=1000)
    wire += encode_frame(m.MessageType.HEARTBEAT, heartbeat, boot_id=9, seq=1, t_ms=2000)
    wire += encode_frame(m.MessageType.HEARTBEAT, heartbeat, boot_id=9, seq=5, t_ms=7000)
    for i, frame in enumerate(reader.feed(wire)):
        s.on_frame(frame, 1_795_600_000.0 + i)
    return s


def test_board_families_read_a_real_session_and_frame_reader():
    session = _session_with_traffic()
    reader = FrameReader()
    good = encode_frame(m.MessageType.HEARTBEAT, [1, 2, 3, 0, 0, True, False], boot_id=1, seq=0, t_ms=0)
    bad = bytearray(good)
    bad[3] ^= 0x55  # corrupt a byte: the CRC no longer matches
    reader.feed(bytes(bad) + good)
    assert sum(reader.drops.values()) >= 1
    parsed = _parsed(render(board_families({"c1": session.status()}, {"c1": reader.drops})))
    frames = _value(parsed["liftwatch_board_frames"], "liftwatch_board_frames_total", car="c1")
    assert frames == session.counters.frames == 3
    assert _value(parsed["liftwatch_board_frames_lost"], "liftwatch_board_frames_lost_total", car="c1") == 3
    assert _value(parsed["liftwatch_board_online"], "liftwatch_board_online", car="c1") == 1
    assert _value(parsed["liftwatch_board_heap_free_bytes"], "liftwatch_board_heap_free_bytes", car="c1") == 51_200
    framing = [s for s in parsed["liftwatch_drops"] if s.labels["stage"] == "framing"]
    assert framing and sum(s.value for s in framing) == sum(reader.drops.values())
    assert {s.labels["reason"] for s in framing} <= {r.value if isinstance(r.value, str) else r.name.lower() for r in DropReason}


def test_outbox_families_read_a_real_outbox(tmp_path):
    with Outbox(tmp_path / "outbox.sqlite", budget_bytes=1_000_000) as box:
        for i in range(3):
            box.put({"v": 1, "id": f"m{i}", "kind": "trip", "site": "s", "car": "c1", "board": "b",
                     "ts": "2026-11-25T08:00:00.000Z"})
        stats = box.stats()
        oldest = stats.oldest_pending_unix_ms
        parsed = _parsed(render(outbox_families(stats, now_unix_ms=oldest + 2500)))
    assert _value(parsed["liftwatch_outbox_pending_messages"], "liftwatch_outbox_pending_messages") == 3
    assert _value(parsed["liftwatch_outbox_pending_bytes"], "liftwatch_outbox_pending_bytes") == stats.pending_bytes > 0
    assert _value(parsed["liftwatch_outbox_budget_bytes"], "liftwatch_outbox_budget_bytes") == 1_000_000
    assert _value(parsed["liftwatch_outbox_oldest_pending_age_seconds"],
                  "liftwatch_outbox_oldest_pending_age_seconds") == pytest.approx(2.5)


def test_outbox_drops_by_kind_and_reason():
    stats = {"outbox": {"pending": 0, "pending_bytes": 0, "budget_bytes": 10, "rejected": 0,
                        "oldest_pending_unix_ms": None},
             "drops": {"outbox_full": {"vib": 7, "trip": 2}}}
    parsed = _parsed(render(outbox_families(stats)))
    dropped = parsed["liftwatch_outbox_dropped"]
    assert _value(dropped, "liftwatch_outbox_dropped_total", kind="vib", reason="outbox_full") == 7
    assert _value(dropped, "liftwatch_outbox_dropped_total", kind="trip", reason="outbox_full") == 2
    assert _value(parsed["liftwatch_outbox_oldest_pending_age_seconds"],
                  "liftwatch_outbox_oldest_pending_age_seconds") == 0


def test_broker_state_is_one_hot():
    counters = PublisherCounters(delivered=10, connects=2, disconnects=1)
    parsed = _parsed(render(publisher_families(PublisherState.READY, counters.to_status())))
    states = {s.labels["state"]: s.value for s in parsed["liftwatch_broker_state"]}
    assert states == {"connecting": 0, "ready": 1, "disconnected": 0, "stopped": 0}
    assert _value(parsed["liftwatch_upstream_delivered"], "liftwatch_upstream_delivered_total") == 10


def test_latency_histogram_is_cumulative_and_consistent():
    metrics = DaemonMetrics(clock=lambda: 1_795_600_000.0)
    for seconds in (0.003, 0.04, 0.04, 0.3, 0.7, 120.0):
        metrics.observe_latency("event_to_puback", seconds)
    metrics.observe_latency("event_to_puback", float("nan"))  # ignored, never poisons the sum
    parsed = _parsed(metrics.render())
    samples = parsed["liftwatch_latency_seconds"]
    buckets = {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")}
    assert buckets["0.005"] == 1
    assert buckets["0.05"] == 3
    assert buckets["0.5"] == 4
    assert buckets["1"] == 5
    assert buckets["60"] == 5 and buckets["+Inf"] == 6
    assert list(buckets.values()) == sorted(buckets.values())
    assert len(buckets) == len(LATENCY_BUCKETS_S) + 1
    assert _value(samples, "liftwatch_latency_seconds_count", path="event_to_puback") == 6
    assert _value(samples, "liftwatch_latency_seconds_sum", path="event_to_puback") == pytest.approx(121.083)


def test_a_failing_collector_is_skipped_and_counted():
    metrics = DaemonMetrics()

    def broken():
        raise OSError("disk I/O error")

    metrics.add_collector(broken)
    metrics.add_collector(lambda: publisher_families("connecting", {}))
    parsed = _parsed(metrics.render())
    assert _value(parsed["liftwatch_metrics_collector_errors"], "liftwatch_metrics_collector_errors_total") == 1
    assert {s.labels["state"]: s.value for s in parsed["liftwatch_broker_state"]}["connecting"] == 1
    assert _value(parsed["liftwatch_process_resident_memory_bytes"], "liftwatch_process_resident_memory_bytes") > 1e6


def test_framing_drop_counter_keys_may_be_plain_strings():
    parsed = _parsed(render(board_families({}, {"c2": Counter({"crc": 4})})))
    assert _value(parsed["liftwatch_drops"], "liftwatch_drops_total", car="c2", stage="framing", reason="crc") == 4
