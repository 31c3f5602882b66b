"""Ingest: the broker's fact messages into the fleet store, each acknowledged only once committed.

MQTT v5, QoS 1, a persistent session (`clean_start=False`, a stable client id, session expiry of
days): a process that stops loses nothing, its unacknowledged messages stay in its session and are
sent again. With a `group`, a shared subscription (`$share/<group>/liftwatch/#`): the broker hands
each message to one of the group's ingest processes, so a district adds processes to add throughput.
No group by default: Mosquitto 2.0 does not restore shared subscriptions from its persistence after a
restart (measured: 7,358 of 20,000 messages published around a broker restart never reached the
group, while a plain subscription beside it got all), so a group needs a broker that keeps them
(EMQX), or accepts that loss at a broker restart (docs/fleet.md).

Acknowledgement after commit (paho-mqtt >= 2.0 `manual_ack=True`): paho's network thread only
queues each PUBLISH; the ingest thread takes a batch, decodes (either payload encoding), validates
(protocol/upstream's schemas), commits facts and quarantined messages in one transaction, and only
then sends the batch's PUBACKs, in the order the PUBLISHes came (MQTT v5 4.6). A crash, a SIGKILL or
a full disk before the commit leaves the messages unacknowledged; the broker re-sends them, and the
store's idempotent write (by id) turns the re-send into a counted duplicate. `ReceiveMaximum` asks
the broker to bound what it sends ahead of our PUBACKs (Mosquitto 2.0.11 with `max_inflight_messages 0`
sends more), so a stalled store stalls the broker rather than filling our memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from liftwatch.edge_daemon.upstream import TlsConfig
from liftwatch.edge_daemon.upstream_codec import UpstreamPayloadError, decode_payload
from liftwatch.errors import LiftwatchError

from .schemas import FactValidator, InvalidFactError
from .store import BatchOutcome, Fact, FleetStore, Quarantined, StoreError

__all__ = ["IngestConfig", "IngestCounters", "Ingest", "BrokerRefusedError"]

_LOG = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 86400  # an ingest host down for a week still finds its queued messages
STORE_RETRY_MAX_S = 30.0  # a full disk or a PostgreSQL failover: retry the same batch, capped backoff
REGISTRY_REFRESH_S = 10.0  # a registry import reaches running ingest processes within this
RETIRE_IDLE_S = 3.0  # a retiring process's backlog counts as drained after this long without a message


class BrokerRefusedError(LiftwatchError, RuntimeError):
    """The broker did not do what the ingest asked (here: unsubscribe a retiring session)."""


@dataclass(frozen=True, slots=True)
class IngestConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: TlsConfig | None = None  # plain TCP only to a broker on this host (as the daemon's rule)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = "liftwatch-fleet-1"  # stable: the broker keeps this session's unacked messages
    group: str | None = None  # shared subscription group; None: a plain subscription (see the module docstring)
    topic: str = "liftwatch/#"
    session_expiry_s: int = SESSION_EXPIRY_S
    receive_maximum: int = 2000  # unacknowledged messages the broker may send ahead
    batch_max: int = 1000  # messages per transaction
    batch_wait_s: float = 0.02  # a lone message waits at most this long for company
    keepalive_s: int = 30

    @property
    def subscription(self) -> str:
        return f"$share/{self.group}/{self.topic}" if self.group else self.topic


@dataclass(slots=True)
class IngestCounters:
    """This process's counts; `totals` sums what the committed batches did (store.BatchOutcome)."""

    received: int = 0
    acked: int = 0
    batches: int = 0
    store_failures: int = 0
    connects: int = 0
    totals: BatchOutcome = field(default_factory=BatchOutcome)

    def to_dict(self) -> dict[str, int]:
        counts = {name: getattr(self, name) for name in ("received", "acked", "batches", "store_failures", "connects")}
        return counts | asdict(self.totals)


@dataclass(frozen=True, slots=True)
class _Received:
    mid: int
    qos: int
    generation: int  # connection it came on: a PUBACK is only valid on that connection
    topic: str
    payload: bytes


def check_topic(topic: str, message: dict[str, Any]) -> str | None:
    """Why `message` does not belong on `topic` (liftwatch/<site>/<car or pi>/<kind>), or None.

    The broker's ACL binds a Pi's credentials to its site's topics; checking the message against its
    topic carries that binding into the store, so a Pi cannot file facts under another site.
    """
    levels = topic.split("/")
    if len(levels) != 4:
        return f"topic {topic!r} is not liftwatch/<site>/<car>/<kind>"
    _, site, who, kind = levels
    if message.get("site") != site or message.get("kind") != kind:
        return f"message site/kind {message.get('site')!r}/{message.get('kind')!r} do not match topic {topic!r}"
    car = message.get("car")
    if car is not None and car != who:
        return f"message car {car!r} does not match topic {topic!r}"
    return None


class Ingest:
    """One ingest process's subscriber and writer. `run()` blocks until `stop()`."""

    def __init__(self, config: IngestConfig, store: FleetStore, validator: FactValidator | None = None) -> None:
        self.config = config
        self.store = store
        self.validator = validator or FactValidator()
        self.counters = IngestCounters()
        self._queue: deque[_Received] = deque()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._generation = 0
        self.subscribed = threading.Event()
        self._registered: frozenset[str] = frozenset()
        self._registered_at = float("-inf")
        self._client = self._make_client()

    # -- paho thread -----------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id, protocol=mqtt.MQTTv5,
                             manual_ack=True)
        if cfg.tls is not None:
            client.tls_set_context(cfg.tls.context())
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        client.reconnect_delay_set(0.5, 30.0)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            _LOG.warning("fleet ingest: broker refused the connection: %s", reason_code)
            return
        with self._wake:
            self._generation += 1
            self.counters.connects += 1
        # Subscribing again on a resumed session is harmless and covers a session the broker lost.
        client.subscribe(self.config.subscription, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        if any(rc.is_failure for rc in reason_codes):
            _LOG.error("fleet ingest: subscription to %s refused: %s", self.config.subscription, reason_codes)
            return
        if not self.subscribed.is_set():
            _LOG.info("fleet ingest: subscribed to %s as %s", self.config.subscription, self.config.client_id)
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._wake:
            # Before paho reconnects: from here no PUBACK of this connection's messages may be queued,
            # or it would go out on the next connection, where its packet id names another message.
            self._generation += 1
        self.subscribed.clear()
        if not self._stop.is_set():
            _LOG.warning("fleet ingest: disconnected (%s); reconnecting", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._wake:
            self._queue.append(_Received(msg.mid, msg.qos, self._generation, msg.topic, msg.payload))
            self.counters.received += 1
            if len(self._queue) >= self.config.batch_max:
                self._wake.notify()

    # -- ingest thread ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (asynchronously: paho retries until the broker is there)."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s,
                                   clean_start=False, properties=props)
        self._client.loop_start()

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify()

    def run(self) -> None:
        """Start, then write and acknowledge batches until stop(); the last batch is finished first."""
        self.start()
        try:
            while not self._stop.is_set():
                batch = self._next_batch()
                if batch:
                    self._settle(batch)
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    def retire(self, idle_s: float = RETIRE_IDLE_S) -> None:
        """Drain this client id's session and end it: for an ingest process leaving the group for good.

        Mosquitto (2.0) keeps routing a shared subscription's messages to a member whose session
        persists while it is offline; they wait there until that client id connects again. Retiring
        stores what waits, unsubscribes once nothing came for `idle_s` (nothing new is routed here
        after the UNSUBACK, and what was routed before it arrives before it), stores the rest, and
        disconnects with session expiry 0 so the broker forgets the session.
        """
        self.start()
        unsubscribed = threading.Event()
        self._client.on_unsubscribe = lambda *_: unsubscribed.set()
        try:
            for leaving in (False, True):
                quiet_since = time.monotonic()
                while not self._stop.is_set() and time.monotonic() - quiet_since < (0.5 if leaving else idle_s):
                    batch = self._next_batch()
                    if batch or not self.subscribed.is_set():
                        self._settle(batch)
                        quiet_since = time.monotonic()
                if not leaving:
                    self._client.unsubscribe(self.config.subscription)
                    if not unsubscribed.wait(10):
                        raise BrokerRefusedError(f"no UNSUBACK for {self.config.subscription} within 10 s")
        finally:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            self._client.disconnect(properties=props)
            self._client.loop_stop()

    def _next_batch(self) -> list[_Received]:
        cfg = self.config
        with self._wake:
            if not self._queue:
                self._wake.wait(timeout=0.5)
            if self._queue and len(self._queue) < cfg.batch_max and not self._stop.is_set():
                self._wake.wait(timeout=cfg.batch_wait_s)  # let a burst gather into one transaction
            n = min(len(self._queue), cfg.batch_max)
            return [self._queue.popleft() for _ in range(n)]

    def _registered_cars(self) -> frozenset[str]:
        now = time.monotonic()
        if now - self._registered_at > REGISTRY_REFRESH_S:
            self._registered = self.store.registered_cars()
            self._registered_at = now
        return self._registered

    def _settle(self, batch: list[_Received]) -> None:
        if not batch:
            return
        facts, quarantined = self.sort(batch)
        delay = 0.5
        while True:
            try:
                outcome = self.store.store_batch(facts, quarantined, self._registered_cars())
                break
            except StoreError as err:
                # Nothing committed, nothing acknowledged: keep the batch and try again. Stopping now
                # is safe too: the broker re-sends what we never acknowledged.
                self.counters.store_failures += 1
                _LOG.error("fleet ingest: store failed (%s); batch of %d kept unacknowledged, retry in %.1f s",
                           err, len(batch), delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, STORE_RETRY_MAX_S)
        self.counters.totals += outcome
        self.counters.batches += 1
        with self._wake:  # held while queueing: a disconnect cannot slip between the check and the PUBACK
            for r in batch:
                # A message from an earlier connection was (or will be) sent again with DUP on this one:
                # its old packet id may already name a different message, so only that copy is acked.
                if r.generation == self._generation and r.qos > 0:
                    self._client.ack(r.mid, r.qos)
                    self.counters.acked += 1

    def sort(self, batch: list[_Received]) -> tuple[list[Fact], list[Quarantined]]:
        """Decode and validate: valid facts, and the rest with the reason each was refused."""
        facts: list[Fact] = []
        quarantined: list[Quarantined] = []
        for r in batch:
            try:
                message = decode_payload(r.payload)
                self.validator.validate(message)
            except (UpstreamPayloadError, InvalidFactError) as err:
                quarantined.append(Quarantined(r.topic, str(err), r.payload))
                continue
            except Exception as err:  # noqa: BLE001 - one poison message must not stall every Pi's facts
                _LOG.exception("fleet ingest: message on %s broke the validator", r.topic)
                quarantined.append(Quarantined(r.topic, f"internal error: {type(err).__name__}: {err}", r.payload))
                continue
            wrong_topic = check_topic(r.topic, message)
            if wrong_topic is not None:
                quarantined.append(Quarantined(r.topic, wrong_topic, r.payload))
                continue
            facts.append(Fact.of(message))
        return facts, quarantined
