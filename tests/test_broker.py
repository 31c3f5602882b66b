"""liftwatch/broker.py against a real Mosquitto: the port race, restarts on the same port, and the
demo's archive subscriber."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

import liftwatch.broker as broker_module
from liftwatch.broker import LocalBroker, Mosquitto, Subscriber
from liftwatch.edge_daemon.upstream_codec import PayloadEncoding, encode_payload

pytestmark = pytest.mark.mosquitto


def publish(port: int, *payloads: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for p in payloads:
        client.publish("liftwatch/s1/car-1/event", p, qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_a_port_taken_between_the_pick_and_the_bind_is_picked_again(tmp_path: Path, monkeypatch) -> None:
    with socket.socket() as squatter:  # another process got the port first
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        real_pick = broker_module._unused_port
        monkeypatch.setattr(broker_module, "_unused_port", lambda: next(picks, None) or real_pick())
        b = Mosquitto(tmp_path / "b")
        b.start()
        try:
            assert b.running and b.port != taken
            with socket.create_connection(("127.0.0.1", b.port), timeout=2):
                pass
        finally:
            b.kill()


def test_a_restart_keeps_the_port_and_queued_messages(tmp_path: Path) -> None:
    b = Mosquitto(tmp_path / "b")
    b.start()
    try:
        port = b.port
        sub = Subscriber(b, client_id="keeper").start()
        sub.stop()  # offline, with a persistent session
        b.restart()
        assert b.port == port
        # the broken one first: queued QoS 1 messages arrive in order, so it is handled once e1 is here
        publish(port, b"\xffnot a payload", json.dumps({"kind": "event", "id": "e1"}).encode())
        sub = Subscriber(b, client_id="keeper").start()
        try:
            assert sub.wait_for_ids({"e1"}, 5) == set()
            assert sub.undecodable == 1 and len(sub.messages) == 1  # counted, never recorded
        finally:
            sub.stop()
    finally:
        b.kill()


def test_local_broker_archives_what_decodes(tmp_path: Path) -> None:
    local = LocalBroker(tmp_path)
    local.start()
    try:
        deflated, _ = encode_payload(json.dumps({"kind": "trip", "id": "t1"}).encode(), PayloadEncoding.DEFLATE)
        publish(local.port, deflated, b"\xffnot a payload")
    finally:
        local.stop()
    lines = local.archive_path.read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"kind": "trip", "id": "t1"}]
    assert not local.broker.running


def test_missing_mosquitto_is_a_typed_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(broker_module, "mosquitto_binary", lambda: None)
    with pytest.raises(broker_module.BrokerError, match="not installed"):
        Mosquitto(tmp_path / "b").start()
