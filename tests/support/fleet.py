"""Fleet test facts (valid upstream messages of any car, built through the daemon's own envelope), a
Pi's publishing side reduced to QoS 1 publishes, and an ingest run in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt

from liftwatch.edge_daemon.envelope import encode_message, make_message, utc_iso
from liftwatch.edge_daemon.upstream_codec import PayloadEncoding, encode_payload
from liftwatch.fleet.ingest import Ingest, IngestConfig

T0 = 1_764_000_000.0  # 2025-11-24 16:00 UTC


def event(car: str, ftype: str, state: str, t: float, site: str = "hz-gongshu-1", key: str | None = None,
          raised_t: float | None = None, **extra: Any) -> dict[str, Any]:
    """A fault `event` (raised, or cleared with its raise `raised_t`), schema-valid."""
    fields: dict[str, Any] = {"type": ftype, "state": state, "event_ts": utc_iso(t), "gbt24476_code": None,
                              "detail": {}}
    if state == "cleared":
        r = t - 600 if raised_t is None else raised_t
        fields.update(raised_ts=utc_iso(r), duration_s=t - r, response_s=None, repair_s=None)
    fields.update(extra)
    return make_message("event", site, car, f"b-{car}", utc_iso(t), key or f"{ftype}/{state}/{t}", fields)


def visit(car: str, start: float, minutes: float, site: str = "hz-gongshu-1") -> dict[str, Any]:
    """A `maintenance` visit of `minutes`."""
    fields = {"start_ts": utc_iso(start), "end_ts": utc_iso(start + 60 * minutes), "duration_s": 60.0 * minutes,
              "inspection_runs": 2, "too_short": minutes < 40, "faults_responded": []}
    return make_message("maintenance", site, car, f"b-{car}", utc_iso(start + 60 * minutes), f"visit/{start}", fields)


def topic_of(m: dict[str, Any]) -> str:
    return f"liftwatch/{m['site']}/{m['car']}/{m['kind']}"


class Publisher:
    """A Pi's side of the wire, reduced to QoS 1 publishes that wait for their PUBACK."""

    def __init__(self, broker: Any, client_id: str = "pi-test") -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, message: dict[str, Any], encoding: PayloadEncoding = PayloadEncoding.DEFLATE, topic: str | None = None) -> None:
        payload, _ = encode_payload(encode_message(message), encoding)
        self.raw(topic or topic_of(message), payload)

    def raw(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def running(ingest: Ingest) -> Iterator[Ingest]:
    """`ingest.run()` in a thread, subscribed when entered, stopped and joined when left."""
    thread = threading.Thread(target=ingest.run, name="fleet ingest", daemon=True)
    thread.start()
    assert ingest.subscribed.wait(10), "ingest did not subscribe"
    try:
        yield ingest
    finally:
        ingest.stop()
        thread.join(10)


def wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def ingest_config(broker: Any, client_id: str = "fleet-test-1", **kw: Any) -> IngestConfig:
    """The tests' ingest: a shared subscription (group `liftwatch-fleet`) unless `group` is given."""
    return IngestConfig(host=broker.host, port=broker.port, client_id=client_id, **{"group": "liftwatch-fleet", **kw})
