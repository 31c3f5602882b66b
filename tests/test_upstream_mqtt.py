"""Upstream over MQTT against a real Mosquitto: delivery, outages, SIGKILL, budget, TLS, passwords, ACL.

QoS 1 is at-least-once on the wire: a message whose PUBACK was lost (broker restart, publisher
SIGKILL) is sent again. The assertions are therefore about the idempotent view a consumer builds
by `id` (`Collector.by_id()`): every acknowledged id arrives, and the first copies of each car's
messages arrive in the order they were put. Wire duplicates are counted, not forbidden.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from support.mosquitto import Collector, MosquittoBroker, make_test_pki
from support.upstream import acked_keys, schema_validator, sigkill_after_ready

from liftwatch.edge_daemon.envelope import encode_message, make_message, utc_iso
from liftwatch.edge_daemon.outbox import ROW_OVERHEAD_BYTES, DeliveryState, Outbox, PutOutcome
from liftwatch.edge_daemon.upstream import MqttConfig, PublisherState, TlsConfig, Upstream, UpstreamConfig

pytestmark = pytest.mark.mosquitto

KINDS = ("event", "trip", "maintenance", "daily")


def fact(i: int, cars: int = 3, kind: str | None = None) -> dict[str, Any]:
    """The i-th test message: kinds and cars interleaved, `n` records the put order."""
    return make_message(kind or KINDS[i % len(KINDS)], "site1", f"car{i % cars}", "board1",
                        utc_iso(time.time()), f"k{i}", {"n": i})


def mqtt_config(broker: MosquittoBroker, **kw: Any) -> MqttConfig:
    # Short backoff so an outage of a second or two ends within the test's time.
    kw.setdefault("tls", None)
    return MqttConfig(broker.host, broker.port, keepalive_s=5, reconnect_min_s=0.05, reconnect_max_s=0.5, **kw)


def assert_in_order_per_car(collector: Collector, expected_n: list[int]) -> None:
    """Every expected `n` arrived, and per car the first copies arrived in increasing `n`."""
    firsts = [m for m in collector.by_id().values() if m["kind"] != "status"]
    assert sorted(m["n"] for m in firsts) == sorted(expected_n)
    per_car: dict[str, list[int]] = {}
    for m in firsts:
        per_car.setdefault(m["car"], []).append(m["n"])
    for car, ns in per_car.items():
        assert ns == sorted(ns), f"{car}: out of order {ns[:20]}"


async def run_until(upstream: Upstream, outbox: Outbox, done: Any, timeout_s: float) -> None:
    """Run the publisher until done() is true (or the timeout), then stop it cleanly."""
    stop = asyncio.Event()
    task = asyncio.create_task(upstream.run(outbox, stop), name="upstream")
    deadline = time.monotonic() + timeout_s
    try:
        while not done() and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_delivery_topics_order_status_and_schemas(mosquitto_broker: MosquittoBroker, tmp_path: Path) -> None:
    collector = Collector(mosquitto_broker).start()
    outbox = Outbox(tmp_path / "outbox.db")
    upstream = Upstream(UpstreamConfig("site1", "pi1", mqtt_config(mosquitto_broker)),
                        status_provider=lambda: {"boards": [{"board": "board1", "car": "car0"}]})
    first = [fact(i) for i in range(100)]
    outbox.put_many(first)

    async def late_puts() -> None:  # arrive while the publisher runs: the put listener wakes it
        for i in range(100, 200):
            await outbox.aput(fact(i))

    producer = asyncio.create_task(late_puts())
    await run_until(upstream, outbox, lambda: producer.done() and outbox.stats().pending == 0, 15)
    assert upstream.state is PublisherState.STOPPED
    assert collector.wait_for_ids({fact(i)["id"] for i in range(200)}, 5) == set()
    assert_in_order_per_car(collector, list(range(200)))
    assert upstream.counters.delivered == 200 and upstream.counters.rejected == 0
    envelope = schema_validator("envelope")
    for topic, message, _ in collector.snapshot():
        envelope.validate(message)
        if message["kind"] != "status":
            assert topic == f"liftwatch/site1/{message['car']}/{message['kind']}"
    statuses = [(t, m, r) for t, m, r in collector.snapshot() if m["kind"] == "status"]
    status = schema_validator("status")
    for topic, message, _ in statuses:
        assert topic == "liftwatch/site1/pi1/status"
        status.validate(message)
    assert [m["state"] for _, m, _ in statuses] == ["online", "offline"]
    # Facts travel DEFLATE-compressed with the shared dictionary (and say so); status stays plain JSON.
    for topic, first_byte, content_type, _ in collector.wire:
        if topic.endswith("/status"):
            assert (first_byte, content_type) == (b"{", "application/json")
        else:
            assert (first_byte, content_type) == (b"\x01", "application/json; encoding=liftwatch-deflate-v1")
    assert statuses[0][1]["boards"] == [{"board": "board1", "car": "car0"}]
    assert statuses[-1][1]["reason"] == "shutdown"
    collector.stop()
    # The status is retained: a newcomer sees the Pi's last word immediately.
    late = Collector(mosquitto_broker, topic="liftwatch/site1/pi1/status", client_id="late").start()
    deadline = time.monotonic() + 5
    while not late.snapshot() and time.monotonic() < deadline:
        time.sleep(0.02)
    ((_, retained, was_retained),) = late.snapshot()
    assert was_retained and retained["state"] == "offline"
    late.stop()
    outbox.close()


async def test_periodic_status_carries_fresh_counters(mosquitto_broker: MosquittoBroker, tmp_path: Path) -> None:
    collector = Collector(mosquitto_broker, topic="liftwatch/+/+/status").start()
    outbox = Outbox(tmp_path / "outbox.db")
    upstream = Upstream(UpstreamConfig("site1", "pi1", mqtt_config(mosquitto_broker), status_interval_s=0.2))
    stop = asyncio.Event()
    task = asyncio.create_task(upstream.run(outbox, stop), name="upstream")
    for i in range(5):
        await outbox.aput(fact(i))
        await asyncio.sleep(0.15)
    stop.set()
    await task
    time.sleep(0.2)
    statuses = [m for _, m, _ in collector.snapshot()]
    reasons = [m["reason"] for m in statuses]
    assert reasons[0] == "connected" and reasons[-1] == "shutdown" and reasons.count("periodic") >= 2
    delivered = [m["upstream"]["delivered"] for m in statuses]
    assert delivered == sorted(delivered) and delivered[-1] == 5
    validator = schema_validator("status")
    for m in statuses:
        validator.validate(m)
    assert "s3cret" not in repr(mqtt_config(mosquitto_broker, username="pi1", password="s3cret"))
    collector.stop()
    outbox.close()


async def test_broker_outage_mid_stream_drains_in_order(mosquitto_broker: MosquittoBroker, tmp_path: Path) -> None:
    collector = Collector(mosquitto_broker).start()
    outbox = Outbox(tmp_path / "outbox.db")
    upstream = Upstream(UpstreamConfig("site1", "pi1", mqtt_config(mosquitto_broker)))
    stop = asyncio.Event()
    task = asyncio.create_task(upstream.run(outbox, stop), name="upstream")
    n = 0

    async def produce(duration_s: float) -> None:
        nonlocal n
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            assert await outbox.aput(fact(n)) is PutOutcome.STORED
            n += 1
            await asyncio.sleep(0.003)

    await produce(0.5)
    # Mid-stream: the broker hangs, so the publisher's window fills with unacknowledged messages,
    # then it goes down. After the restart paho resends that window while newer messages wait.
    mosquitto_broker.pause()
    deadline = time.monotonic() + 5
    while upstream.counters.published - upstream.counters.delivered < 32 and time.monotonic() < deadline:
        await produce(0.05)
    window = upstream.counters.published - upstream.counters.delivered
    await asyncio.to_thread(mosquitto_broker.stop)
    await produce(1.0)
    # Hours of an outage compressed: a backlog of 2000 more messages waits in SQLite, not in RAM.
    outbox.put_many([fact(i) for i in range(n, n + 2000)])
    n += 2000
    assert upstream.state is not PublisherState.READY
    assert outbox.stats().pending > 2000
    # Bounded: only the window is handed to paho while no PUBACKs come back.
    assert 0 <= upstream.counters.published - upstream.counters.delivered <= 32
    await asyncio.to_thread(mosquitto_broker.start)
    await produce(0.5)
    deadline = time.monotonic() + 15
    while outbox.stats().pending and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert outbox.stats().pending == 0
    assert collector.wait_for_ids({fact(i)["id"] for i in range(n)}, 10) == set()
    assert_in_order_per_car(collector, list(range(n)))
    assert upstream.counters.connects >= 2 and upstream.counters.disconnects >= 1
    assert window == 32, "the window should have been full when the broker went down"
    collector.stop()
    outbox.close()


_PUBLISHER_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from liftwatch.edge_daemon.envelope import encode_message, make_message, utc_iso
    from liftwatch.edge_daemon.outbox import Outbox
    from liftwatch.edge_daemon.upstream import MqttConfig, Upstream, UpstreamConfig
    path, port, start, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    KINDS = ("event", "trip", "maintenance", "daily")

    async def main():
        outbox = Outbox(path)
        stop = asyncio.Event()
        cfg = MqttConfig("127.0.0.1", port, tls=None, keepalive_s=5, reconnect_min_s=0.05, reconnect_max_s=0.5)
        upstream = Upstream(UpstreamConfig("site1", "pi1", cfg))
        task = asyncio.create_task(upstream.run(outbox, stop), name="upstream")
        print("READY", flush=True)
        if mode == "drain":
            while outbox.stats().pending or upstream.counters.connects == 0:
                await asyncio.sleep(0.02)
            stop.set()
            await task
            print("DRAINED", flush=True)
            return
        i = start
        while True:
            m = make_message(KINDS[i % 4], "site1", f"car{i % 3}", "board1", utc_iso(time.time()), f"k{i}", {"n": i})
            await outbox.aput(m)
            print("ACK", i, flush=True)
            i += 1
            await asyncio.sleep(0.002)

    asyncio.run(main())
    """
)


def _stored_count(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM message").fetchone()[0]
    finally:
        conn.close()


def test_publisher_sigkill_at_random_points_then_restart(mosquitto_broker: MosquittoBroker, tmp_path: Path) -> None:
    collector = Collector(mosquitto_broker).start()
    db = tmp_path / "outbox.db"
    rng = random.Random(0x5EED)
    acked: list[int] = []
    for _ in range(6):
        acked += sigkill_after_ready([sys.executable, "-c", _PUBLISHER_CHILD, str(db), str(mosquitto_broker.port),
                                      str(_stored_count(db)), "produce"], rng, 0.1, 0.6)
    drain = subprocess.run([sys.executable, "-c", _PUBLISHER_CHILD, str(db), str(mosquitto_broker.port), "0", "drain"],
                           capture_output=True, text=True, timeout=30)
    assert "DRAINED" in drain.stdout, drain.stderr
    assert len(acked) > 100
    # Everything acknowledged arrives; unacknowledged puts that made it to disk may arrive too.
    assert collector.wait_for_ids({fact(i)["id"] for i in acked}, 10) == set()
    stored = _stored_count(db)
    assert_in_order_per_car(collector, list(range(stored)))
    # Each SIGKILL left the broker to publish the last will.
    wills = [m for _, m, _ in collector.snapshot() if m["kind"] == "status" and m["reason"] == "connection_lost"]
    assert len(wills) == 6, [(m["id"][:8], m["ts"]) for m in wills]
    wire = [m["id"] for _, m, _ in collector.snapshot() if m["kind"] != "status"]
    print(f"\n{len(acked)} acked, {stored} stored, {len(wire)} on the wire, {len(wire) - len(set(wire))} duplicates")
    collector.stop()


def test_unacknowledged_window_survives_publisher_and_broker_death(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    """The broker hangs, so the publisher's window fills with messages that were sent but never
    acknowledged; then both die. Only the outbox still has those messages: they must go out after
    the restart. (A publisher that marked messages delivered on send would lose them here.)"""
    collector = Collector(mosquitto_broker).start()
    time.sleep(1.2)  # let the broker autosave the collector's session (autosave_interval 1 s)
    db = tmp_path / "outbox.db"
    child = subprocess.Popen([sys.executable, "-c", _PUBLISHER_CHILD, str(db), str(mosquitto_broker.port), "0",
                              "produce"], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "READY"
    time.sleep(0.4)
    mosquitto_broker.pause()
    time.sleep(0.4)  # the child keeps putting; its publisher fills the window and waits for PUBACKs
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    acked = acked_keys(child.stdout)
    child.stdout.close()
    mosquitto_broker.kill()
    with Outbox(db) as outbox:
        unacked_window = outbox.stats().pending
    assert unacked_window >= 10, "the window should have held unacknowledged messages"
    mosquitto_broker.start()
    drain = subprocess.run([sys.executable, "-c", _PUBLISHER_CHILD, str(db), str(mosquitto_broker.port), "0", "drain"],
                           capture_output=True, text=True, timeout=30)
    assert "DRAINED" in drain.stdout, drain.stderr
    assert collector.wait_for_ids({fact(i)["id"] for i in acked}, 10) == set()
    assert_in_order_per_car(collector, list(range(_stored_count(db))))
    collector.stop()


async def test_budget_full_drops_low_priority_counted_and_reported(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "broker")
    broker.start()
    collector = Collector(broker, client_id="c2").start()
    broker.stop()  # a long outage begins; the collector's session (and subscription) is saved
    # Room for the 300 protected messages, 150 daily records and 75 more: of the 300 status and
    # trip messages, 225 have to go, the status ones first, then the oldest trips.
    puts = [make_message(kind, "site1", "car1", "board1", utc_iso(time.time()), f"{kind}{i}",
                         {"n": 100 + i, "pad": "x" * (411 - len(kind))})  # all the same size
            for i in range(150) for kind in ("status", "trip", "daily", "event", "maintenance")]
    (one,) = {len(encode_message(m)) + ROW_OVERHEAD_BYTES for m in puts}
    outbox = Outbox(tmp_path / "outbox.db", budget_bytes=(300 + 150 + 75) * one)
    upstream = Upstream(UpstreamConfig("site1", "pi1", mqtt_config(broker)))
    stop = asyncio.Event()
    task = asyncio.create_task(upstream.run(outbox, stop), name="upstream")
    outcomes = [await outbox.aput(m) for m in puts]
    drops = outbox.drop_counts()["outbox_full"]
    assert drops["status"] > 100 and drops["trip"] >= 75 and "daily" not in drops
    assert drops["status"] + drops["trip"] == 225
    assert outcomes.count(PutOutcome.DROPPED) == outbox._db.execute(
        "SELECT COUNT(*) FROM message WHERE state = 2 AND size = 0").fetchone()[0]
    broker.start()
    try:
        deadline = time.monotonic() + 15
        while outbox.stats().pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await task
        kept = {m["id"] for m in puts if outbox.state_of(m["id"]) is DeliveryState.DELIVERED}
        assert {m["id"] for m in puts if m["kind"] in ("event", "maintenance", "daily")} <= kept
        assert collector.wait_for_ids(kept, 10) == set()
        got = collector.by_id()
        for kind in ("status", "trip", "daily"):  # every message is delivered or counted, never both
            delivered = [m["n"] - 100 for m in puts if m["kind"] == kind and m["id"] in got]
            assert len(delivered) + drops.get(kind, 0) == 150, kind
        trips = [m["n"] - 100 for m in puts if m["kind"] == "trip" and m["id"] in got]
        assert trips == list(range(drops["trip"], 150))  # the oldest trips were the ones dropped
        statuses = [m for m in got.values() if m["kind"] == "status" and "pi" in m]
        schema_validator("status").validate(statuses[0])
        assert statuses[0]["drops"] == {"outbox_full": drops}
        collector.stop()
    finally:
        broker.kill()
        outbox.close()


async def test_tls_with_verification_and_password_auth(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki")
    other = make_test_pki(tmp_path / "other")
    broker = MosquittoBroker(tmp_path / "broker", pki=pki, passwords={"pi1": "s3cret", "reader": "r"},
                             acl="user pi1\ntopic write liftwatch/site1/#\nuser reader\ntopic read liftwatch/#\n")
    broker.start()
    try:
        collector = Collector(broker, username="reader", password="r").start()
        outbox = Outbox(tmp_path / "outbox.db")
        outbox.put_many([fact(i) for i in range(20)])
        tls = TlsConfig(ca_file=str(pki.ca_cert))

        # Wrong password and an untrusted server certificate: nothing is delivered, nothing lost.
        for name, cfg in (("bad password", mqtt_config(broker, tls=tls, username="pi1", password="wrong")),
                          ("untrusted CA", mqtt_config(broker, tls=TlsConfig(ca_file=str(other.ca_cert)),
                                                       username="pi1", password="s3cret"))):
            refused = Upstream(UpstreamConfig("site1", "pi1", cfg))
            await run_until(refused, outbox, lambda: False, 0.8)
            assert refused.counters.connects == 0, name
            assert refused.publisher.last_error, name  # type: ignore[attr-defined]
            assert outbox.stats().pending == 20, name

        # An ACL keeps a Pi to its own site: a message for another site is refused, set aside, counted.
        outbox.put(make_message("trip", "site2", "car9", "board1", utc_iso(time.time()), "foreign", {"n": -1}))
        good = Upstream(UpstreamConfig("site1", "pi1", mqtt_config(broker, tls=tls, username="pi1", password="s3cret")))
        await run_until(good, outbox, lambda: outbox.stats().pending == 0, 10)
        assert collector.wait_for_ids({fact(i)["id"] for i in range(20)}, 5) == set()
        assert_in_order_per_car(collector, list(range(20)))
        assert good.counters.rejected == 1 and outbox.stats().rejected == 1
        collector.stop()
        outbox.close()
    finally:
        broker.kill()


async def test_client_certificate_auth(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki", client_cn="pi1")
    broker = MosquittoBroker(tmp_path / "broker", pki=pki, require_client_cert=True)
    broker.start()
    try:
        collector = Collector(broker).start()  # uses the same client certificate
        outbox = Outbox(tmp_path / "outbox.db")
        outbox.put_many([fact(i) for i in range(10)])
        without = Upstream(UpstreamConfig("site1", "pi1", mqtt_config(broker, tls=TlsConfig(ca_file=str(pki.ca_cert)))))
        await run_until(without, outbox, lambda: False, 0.6)
        assert without.counters.connects == 0 and outbox.stats().pending == 10
        tls = TlsConfig(ca_file=str(pki.ca_cert), client_cert=str(pki.client_cert), client_key=str(pki.client_key))
        upstream = Upstream(UpstreamConfig("site1", "pi1", mqtt_config(broker, tls=tls)))
        await run_until(upstream, outbox, lambda: outbox.stats().pending == 0, 10)
        assert collector.wait_for_ids({fact(i)["id"] for i in range(10)}, 5) == set()
        collector.stop()
        outbox.close()
    finally:
        broker.kill()
