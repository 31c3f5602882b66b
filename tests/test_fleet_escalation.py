"""Alarm escalation against a local HTTP receiver that fails, then recovers: the alarm arrives within
seconds of its publication, every attempt is logged, and nothing is pushed again once delivered."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.fleet import T0, Publisher, event, ingest_config, running, wait_until

from liftwatch.fleet.escalation import Escalator, WebhookConfig
from liftwatch.fleet.ingest import Ingest
from liftwatch.fleet.store import Fact, Lift, open_store


class Receiver:
    """The rescue centre's webhook: answers `failures` requests with 503, then 200; records them all."""

    def __init__(self, failures: int, port: int = 0) -> None:
        self.failures = failures
        self.requests: list[tuple[float, dict[str, str], dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.requests.append((time.time(), dict(self.headers), body))
                failing = len(receiver.requests) <= receiver.failures
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alarm"

    @contextmanager
    def serving(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


@contextmanager
def escalating(escalator: Escalator) -> Iterator[Escalator]:
    stop = threading.Event()
    thread = threading.Thread(target=escalator.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield escalator
    finally:
        stop.set()
        thread.join(10)


@pytest.mark.mosquitto
def test_an_entrapment_reaches_the_webhook_within_seconds_through_failures(mosquitto_broker, tmp_path):
    url = tmp_path / "fleet.sqlite"
    store = open_store(url)
    store.replace_registry([Lift("gs-0001", "31103301002019060001", "10001", "1 Wenhui Rd", "Block 3", "Xizi",
                                 "PICC", 1800.0, 86400.0, 2400.0, "2019-06-01")])
    webhook = Receiver(failures=2)
    cfg = WebhookConfig(webhook.url, token="s3cret", retry_min_s=0.2)
    now = time.time()
    trapped = event("gs-0001", "entrapment", "raised", now)
    other = event("gs-0001", "door_open_too_long", "raised", now)
    pi = Publisher(mosquitto_broker)
    with webhook.serving(), running(Ingest(ingest_config(mosquitto_broker), open_store(url))), \
            escalating(Escalator(cfg, open_store(url))):
        published = time.time()
        pi.send(other)
        pi.send(trapped)
        wait_until(lambda: store.alarm_states().get(trapped["id"]) == "delivered", 20)
    pi.close()
    first_push = webhook.requests[0][0]
    assert first_push - published < 3.0, "the first push left more than 3 s after the alarm was published"
    assert len(webhook.requests) == 3
    for _, headers, body in webhook.requests:
        assert headers["Idempotency-Key"] == f"hz-gongshu-1/{trapped['id']}" and headers["Authorization"] == "Bearer s3cret"
        assert body["alarm"] == "entrapment" and body["fact"]["id"] == trapped["id"]
        assert body["lift"]["rescue_code"] == "10001" and body["lift"]["address"] == "1 Wenhui Rd"
    log = store.deliveries(trapped["id"])
    assert [(attempt, outcome) for _, attempt, _, outcome, _ in log] == [(1, "failed"), (2, "failed"), (3, "delivered")]
    assert log[0][4].startswith("HTTP 503")
    assert store.alarm_states() == {trapped["id"]: "delivered"}


def test_a_receiver_that_is_down_gets_the_alarm_when_it_comes_back(fleet_store_url):
    store = open_store(fleet_store_url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    alarm = event("gs-0009", "alarm_button", "raised", time.time())
    store.store_batch([Fact.of(alarm)])
    escalator = Escalator(WebhookConfig(f"http://127.0.0.1:{port}/alarm", retry_min_s=0.05), store)
    assert escalator.push_due() == 0  # nobody listens
    time.sleep(0.06)
    assert escalator.push_due() == 0
    with Receiver(failures=0, port=port).serving() as webhook:
        wait_until(lambda: escalator.push_due() == 1 or store.alarm_states()[alarm["id"]] == "delivered")
        assert escalator.push_due() == 0  # delivered alarms are not pushed again
    [(_, _, body)] = webhook.requests
    assert body["registered"] is False and body["lift"] is None  # an unregistered car's alarm still goes out
    log = store.deliveries(alarm["id"])
    assert [o for _, _, _, o, _ in log][-1] == "delivered" and log[0][3] == "failed"
    assert "no answer" in log[0][4]


def test_an_alarm_first_seen_hours_late_is_logged_stale_not_pushed(tmp_path):
    store = open_store(tmp_path / "fleet.sqlite")
    old = event("gs-0001", "entrapment", "raised", T0)
    store.store_batch([Fact.of(old)])
    with Receiver(failures=0).serving() as webhook:
        assert Escalator(WebhookConfig(webhook.url), store).push_due() == 0
    assert webhook.requests == []
    [(_, _, _, outcome, detail)] = store.deliveries()
    assert outcome == "stale" and "not pushed" in detail
    assert store.alarm_states() == {old["id"]: "stale"}
