"""Upstream: deliver the outbox to the maintenance company's broker, or to a local journal.

Two publishers behind one contract (`Publisher`), picked by `make_publisher()` from the config:

- `MqttPublisher` (a broker is configured): MQTT v5 via paho-mqtt, QoS 1, persistent session
  (clean_start False + session expiry), TLS with certificate verification on by default, username/
  password and/or client certificate, a retained `liftwatch/<site>/<pi>/status` topic with a last
  will (`offline`), messages on `liftwatch/<site>/<car>/<kind>`.
- `JournalPublisher` (no broker): appends each message as one JSON line to a journal file,
  fsync'd per batch, so a single Pi works with nothing else installed.

Both read the outbox in `seq` order (hence in order per car) and mark a message delivered only once
the destination holds it: PUBACK from the broker, or the journal's fsync. A crash between the two
re-sends the message on restart, so delivery is at-least-once on the wire and exactly-once per `id`
for a subscriber that ignores ids it has seen (docs/upstream.md).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import json
import logging
import os
import ssl
import sys
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from liftwatch import __version__

from .envelope import SCHEMA_VERSION, message_id, utc_iso
from .outbox import Outbox, OutboxMessage, OutboxWriteError
from .upstream_codec import CONTENT_TYPE_JSON, PayloadEncoding, encode_payload

_LOG = logging.getLogger(__name__)

DEFAULT_WINDOW = 32
"""Messages published but not yet PUBACKed. Bounds memory and the resend burst after a reconnect,
and is wide enough that one round trip per message does not limit throughput."""

SESSION_EXPIRY_S = 7 * 24 * 3600
"""The broker keeps our session (and its in-flight QoS 1 state) across outages up to a week."""

STATUS_INTERVAL_S = 300.0
"""Periodic status refresh; the retained status is also republished on every (re)connect."""

STOP_FLUSH_TIMEOUT_S = 2.0
"""On shutdown, wait this long for outstanding PUBACKs before disconnecting; the rest are resent next start."""

JOURNAL_BATCH = 512
"""Messages written per journal fsync."""

JOURNAL_MAX_BYTES = 64 * 1024 * 1024
JOURNAL_KEEP = 4
"""Rotation: past 64 MiB the journal becomes `<name>.1` (older ones shift to .2 .. .4, the oldest
goes), so a Pi left alone for years never fills its SD card with delivered facts."""

JOURNAL_RETRY_S = 1.0
"""Wait after a failed journal write (disk full) before trying again; the outbox keeps the messages."""

StatusProvider = Callable[[], Mapping[str, Any]]
"""Returns extra status fields from the daemon (boards, firmware, counters); called on the loop."""

DeliveredCallback = Callable[[Sequence[OutboxMessage]], None]
"""Called on the loop after messages were marked delivered in the outbox (metrics, benchmarks)."""


class PublisherState(Enum):
    CONNECTING = "connecting"
    READY = "ready"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS to the broker. Verification against `ca_file` (or the system CAs) cannot be switched off."""

    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.client_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str
    port: int = 8883
    tls: TlsConfig | None = field(default_factory=TlsConfig)  # None = plain TCP, only for a local broker
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in logs or reprs
    client_id: str | None = None  # default "liftwatch-<site>-<pi>"; must be stable for the session
    keepalive_s: int = 30
    session_expiry_s: int = SESSION_EXPIRY_S
    window: int = DEFAULT_WINDOW
    topic_prefix: str = "liftwatch"
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0  # cap, as aioesphomeapi's reconnect logic: a broker reboot takes ~a minute
    # Fact messages (not status) as DEFLATE with the shared dictionary: ~4x fewer bytes on a metered
    # link. Subscribers decode with upstream_codec.decode_payload (JSON passes through it too).
    encoding: PayloadEncoding = PayloadEncoding.DEFLATE


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """`mqtt` None selects the JSON Lines journal at `journal_path` ("-": standard output).

    `journal_status` False leaves status lines out of the journal, so `liftwatch replay` output
    depends only on its input.
    """

    site: str
    pi: str
    mqtt: MqttConfig | None = None
    journal_path: Path = Path("upstream.jsonl")
    journal_status: bool = True
    journal_max_bytes: int = JOURNAL_MAX_BYTES
    journal_keep: int = JOURNAL_KEEP
    status_interval_s: float = STATUS_INTERVAL_S


@dataclass(slots=True)
class PublisherCounters:
    delivered: int = 0
    rejected: int = 0
    published: int = 0  # publish calls, excluding paho's own resends after a reconnect
    connects: int = 0
    disconnects: int = 0

    def to_status(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "rejected": self.rejected,
            "published": self.published,
            "connects": self.connects,
            "disconnects": self.disconnects,
        }


class Publisher(abc.ABC):
    """Contract every upstream publisher follows.

    `run(outbox, stop)` delivers pending outbox messages in seq order until `stop` is set, and
    marks each one delivered in the outbox only after the destination durably holds it. It never
    drops a message and never raises for a destination outage (it waits and retries); it returns
    after `stop`, having published an `offline` status where it can.
    """

    def __init__(
        self, config: UpstreamConfig, status_provider: StatusProvider | None = None,
        on_delivered: DeliveredCallback | None = None,
    ) -> None:
        self.config = config
        self.state = PublisherState.DISCONNECTED
        self.counters = PublisherCounters()
        self._status_provider = status_provider
        self._on_delivered = on_delivered
        self._run_id = uuid.uuid4().hex  # distinguishes status ids across daemon restarts
        self._status_seq = 0
        self._started = time.monotonic()

    @abc.abstractmethod
    async def run(self, outbox: Outbox, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set (see the class docstring)."""

    def status_message(self, outbox_stats: Mapping[str, Any], state: str, reason: str) -> dict[str, Any]:
        """A `status` message (protocol/upstream/status.schema.json)."""
        cfg = self.config
        self._status_seq += 1
        message: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "id": message_id("status", cfg.site, cfg.pi, f"{self._run_id}/{self._status_seq}"),
            "kind": "status",
            "site": cfg.site,
            "car": None,
            "board": None,
            "ts": utc_iso(time.time()),
            "pi": cfg.pi,
            "state": state,
            "reason": reason,
            "software": __version__,
            "uptime_s": int(time.monotonic() - self._started),
            "upstream": self.counters.to_status(),
        }
        message.update(outbox_stats)
        if self._status_provider is not None and state == "online":
            try:
                extra = dict(self._status_provider())
                _encode(extra)  # NaN or a value JSON cannot hold fails here, not at publish time
            except Exception:  # noqa: BLE001 - a broken provider must not stop delivery
                _LOG.exception("upstream: status provider failed; status sent without its fields")
                extra = {}
            for name, value in extra.items():
                message.setdefault(name, value)
        return message

    async def _settle(self, outbox: Outbox, delivered: list[OutboxMessage]) -> None:
        await outbox.call(outbox.mark_delivered, [m.seq for m in delivered])
        self.counters.delivered += len(delivered)
        if self._on_delivered is not None:
            self._on_delivered(delivered)


_PROPERTIES: dict[str, Properties] = {}


def _publish_properties(content_type: str) -> Properties:
    """MQTT v5 PUBLISH properties naming the payload's content type (built once per type)."""
    props = _PROPERTIES.get(content_type)
    if props is None:
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = content_type
        _PROPERTIES[content_type] = props
    return props


def _encode(message: Mapping[str, Any]) -> bytes:
    """Status JSON; `default=str` so a Path or datetime from the daemon's provider still serialises."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str).encode()


async def _wait(events: Sequence[asyncio.Event], timeout_s: float) -> None:
    """Return when any event is set or after timeout_s."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class MqttPublisher(Publisher):
    """QoS 1 over a persistent MQTT v5 session; paho's network thread, our asyncio loop.

    paho runs its own thread (loop_start), reconnects with capped backoff and, after a reconnect,
    resends its in-flight QoS 1 messages with the DUP flag in their original order. Its callbacks
    only hand (mid, reason) to the asyncio loop with call_soon_threadsafe; the loop owns all state.
    """

    def __init__(
        self, config: UpstreamConfig, status_provider: StatusProvider | None = None,
        on_delivered: DeliveredCallback | None = None,
    ) -> None:
        super().__init__(config, status_provider, on_delivered)
        if config.mqtt is None:
            raise ValueError("MqttPublisher needs UpstreamConfig.mqtt")
        self.mqtt = config.mqtt
        self.last_error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._connected = False
        self._acks: list[tuple[int, int]] = []  # (mid, reason code value) from the paho thread
        self._status_mids: set[int] = set()
        self._need_status = False
        self._reconnected = False
        self._stopping = False

    def topic(self, message: OutboxMessage) -> str:
        return f"{self.mqtt.topic_prefix}/{message.site}/{message.car or self.config.pi}/{message.kind}"

    @property
    def status_topic(self) -> str:
        return f"{self.mqtt.topic_prefix}/{self.config.site}/{self.config.pi}/status"

    def _make_client(self, will: bytes) -> mqtt.Client:
        cfg = self.mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"liftwatch-{self.config.site}-{self.config.pi}",
            protocol=mqtt.MQTTv5,
        )
        if cfg.tls is not None:
            client.tls_set_context(cfg.tls.context())
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        client.will_set(self.status_topic, will, qos=1, retain=True)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        client.max_inflight_messages_set(cfg.window + 2)  # + status messages
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_connect_fail = self._on_connect_fail
        return client

    # paho thread ------------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._connected_changed, not reason_code.is_failure, str(reason_code))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._connected_changed, False, str(reason_code))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # TCP refused, DNS, or the TLS handshake failed (e.g. the broker's certificate is not trusted).
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._connected_changed, False, "TCP/TLS connection failed")

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._acked, mid, reason_code.value)

    # asyncio loop -----------------------------------------------------------------------------

    def _connected_changed(self, connected: bool, reason: str) -> None:
        if connected:
            self.counters.connects += 1
            self.state = PublisherState.READY
            self._need_status = True
            self._reconnected = True
            _LOG.info("upstream: connected to %s:%s", self.mqtt.host, self.mqtt.port)
        else:
            if self._connected:
                self.counters.disconnects += 1
            self.state = PublisherState.DISCONNECTED
            if self._stopping:
                _LOG.info("upstream: disconnected from %s:%s", self.mqtt.host, self.mqtt.port)
            else:
                self.last_error = reason
                _LOG.warning("upstream: not connected to %s:%s: %s", self.mqtt.host, self.mqtt.port, reason)
        self._connected = connected
        self._wake.set()

    def _acked(self, mid: int, reason: int) -> None:
        self._acks.append((mid, reason))
        self._wake.set()

    async def run(self, outbox: Outbox, stop: asyncio.Event) -> None:
        self._loop = loop = asyncio.get_running_loop()
        cfg = self.mqtt

        def wake() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        outbox.add_listener(wake)
        # Messages the broker refused under an earlier run get another chance (ACLs get fixed).
        await outbox.call(outbox.requeue_rejected)
        stats = (await outbox.call(outbox.stats)).to_status()
        will = _encode(self.status_message(stats, "offline", "connection_lost"))
        client = self._make_client(will)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = cfg.session_expiry_s
        self.state = PublisherState.CONNECTING
        client.connect_async(cfg.host, cfg.port, cfg.keepalive_s, clean_start=False, properties=props)
        client.loop_start()
        inflight: dict[int, OutboxMessage] = {}  # mid -> message, published and not yet PUBACKed
        cursor = 0  # highest seq handed to paho in this run; paho owns resends below it
        # After a reconnect paho resends the in-flight messages from its own thread; publishing a
        # newer message before those resends are acknowledged could overtake them on the wire and
        # break the per-car order. So new messages wait until the old in-flight set has drained.
        barrier: set[int] = set()
        next_status = time.monotonic() + self.config.status_interval_s
        try:
            while True:
                self._wake.clear()
                await self._settle_acks(outbox, inflight)
                if stop.is_set():
                    break
                if self._connected and (self._need_status or time.monotonic() >= next_status):
                    reason = "connected" if self._need_status else "periodic"
                    self._need_status = False
                    next_status = time.monotonic() + self.config.status_interval_s
                    await self._publish_status(client, outbox, "online", reason)
                if self._reconnected:
                    self._reconnected = False
                    barrier = set(inflight)
                barrier.intersection_update(inflight)
                if self._connected and not barrier and len(inflight) < cfg.window:
                    batch = await outbox.call(outbox.pending, cursor, cfg.window - len(inflight))
                    for message in batch:
                        payload, content_type = encode_payload(message.payload, cfg.encoding)
                        info = client.publish(self.topic(message), payload, qos=1,
                                              properties=_publish_properties(content_type))
                        inflight[info.mid] = message
                        cursor = message.seq
                        self.counters.published += 1
                await _wait((self._wake, stop), max(0.0, next_status - time.monotonic()))
        finally:
            outbox.remove_listener(wake)
            await self._shutdown(client, outbox, inflight)

    async def _settle_acks(self, outbox: Outbox, inflight: dict[int, OutboxMessage]) -> None:
        acks, self._acks = self._acks, []
        delivered: list[OutboxMessage] = []
        rejected: list[OutboxMessage] = []
        for mid, reason in acks:
            if mid in self._status_mids:
                self._status_mids.discard(mid)
                continue
            message = inflight.pop(mid, None)
            if message is None:
                continue
            # 0x10 "no matching subscribers" is a success; >= 0x80 is a refusal (e.g. ACL).
            (rejected if reason >= 0x80 else delivered).append(message)
        try:
            if delivered:
                await self._settle(outbox, delivered)
            if rejected:
                _LOG.error("upstream: broker refused %d messages (e.g. %s); set aside as rejected",
                           len(rejected), self.topic(rejected[0]))
                await outbox.call(outbox.mark_rejected, [m.seq for m in rejected])
                self.counters.rejected += len(rejected)
        except OutboxWriteError as err:
            # The broker has them but the outbox could not record it (disk full?). They stay
            # pending and are sent again after the next start; subscribers drop the repeat by id.
            _LOG.error("upstream: could not record %d PUBACKs: %s", len(delivered) + len(rejected), err)

    async def _publish_status(self, client: mqtt.Client, outbox: Outbox, state: str, reason: str) -> int:
        stats = (await outbox.call(outbox.stats)).to_status()
        info = client.publish(self.status_topic, _encode(self.status_message(stats, state, reason)), qos=1, retain=True,
                              properties=_publish_properties(CONTENT_TYPE_JSON))
        self._status_mids.add(info.mid)
        return info.mid

    async def _shutdown(self, client: mqtt.Client, outbox: Outbox, inflight: dict[int, OutboxMessage]) -> None:
        """Publish `offline`, give outstanding PUBACKs a moment, then disconnect cleanly (no will)."""
        try:
            if self._connected:
                mid = await self._publish_status(client, outbox, "offline", "shutdown")
                deadline = time.monotonic() + STOP_FLUSH_TIMEOUT_S
                while (inflight or mid in self._status_mids) and self._connected and time.monotonic() < deadline:
                    self._wake.clear()
                    await _wait((self._wake,), deadline - time.monotonic())
                    await self._settle_acks(outbox, inflight)
        finally:
            self._stopping = True
            client.disconnect()
            await asyncio.get_running_loop().run_in_executor(None, client.loop_stop)
            await self._settle_acks(outbox, inflight)
            self.state = PublisherState.STOPPED


class JournalPublisher(Publisher):
    """Appends messages as JSON Lines; a batch is delivered once fsync'd.

    A SIGKILL can leave a torn last line; it is cut off on the next start (its messages were not
    marked delivered, so they are written again).
    """

    async def run(self, outbox: Outbox, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def on_put() -> None:
            loop.call_soon_threadsafe(wake.set)

        outbox.add_listener(on_put)
        journal = await outbox.call(_open_journal, self.config.journal_path)
        self.counters.connects += 1
        self.state = PublisherState.READY
        cursor = 0
        try:
            await self._write_status(journal, outbox, "online", "started")
            next_status = time.monotonic() + self.config.status_interval_s
            while not stop.is_set():
                wake.clear()
                batch = await outbox.call(outbox.pending, cursor, JOURNAL_BATCH)
                if batch:
                    try:
                        await outbox.call(_append, journal, [m.payload for m in batch])
                    except OSError as err:
                        # Disk full or I/O error: the torn batch was cut off again; retry later.
                        _LOG.error("upstream: journal %s not written, retrying: %s", self.config.journal_path, err)
                        await _wait((stop,), JOURNAL_RETRY_S)
                        continue
                    self.counters.published += len(batch)
                    cursor = batch[-1].seq
                    journal = await outbox.call(self._maybe_rotate, journal)
                    try:
                        await self._settle(outbox, batch)
                    except OutboxWriteError as err:  # written but not recorded: rewritten after a restart
                        _LOG.error("upstream: could not mark %d journal lines delivered: %s", len(batch), err)
                    continue
                if time.monotonic() >= next_status:
                    await self._write_status(journal, outbox, "online", "periodic")
                    next_status = time.monotonic() + self.config.status_interval_s
                await _wait((wake, stop), max(0.0, next_status - time.monotonic()))
            await self._write_status(journal, outbox, "offline", "shutdown")
        finally:
            outbox.remove_listener(on_put)
            if journal is not sys.stdout.buffer:
                await outbox.call(journal.close)
            self.state = PublisherState.STOPPED

    def _maybe_rotate(self, journal: Any) -> Any:
        """Between batches (never inside one), start a new file once this one is big enough."""
        cfg = self.config
        if journal is sys.stdout.buffer or journal.seek(0, os.SEEK_END) < cfg.journal_max_bytes:
            return journal
        journal.close()
        path = cfg.journal_path
        for n in range(cfg.journal_keep - 1, 0, -1):  # .3 -> .4 replaces (drops) the oldest, and so on
            older = path.with_name(f"{path.name}.{n}")
            if older.exists():
                older.replace(path.with_name(f"{path.name}.{n + 1}"))
        path.replace(path.with_name(f"{path.name}.1"))
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the renames are durable before lines go to the new file
        finally:
            os.close(directory)
        return _open_journal(path)

    async def _write_status(self, journal: Any, outbox: Outbox, state: str, reason: str) -> None:
        if not self.config.journal_status:
            return
        stats = (await outbox.call(outbox.stats)).to_status()
        try:
            await outbox.call(_append, journal, [_encode(self.status_message(stats, state, reason))])
        except OSError as err:  # a full disk: the facts matter, the next status line says the same
            _LOG.error("upstream: status line not written to %s: %s", self.config.journal_path, err)


def _open_journal(path: Path) -> Any:
    if str(path) == "-":
        return sys.stdout.buffer
    path.parent.mkdir(parents=True, exist_ok=True)
    journal = open(path, "a+b", buffering=0)
    size = journal.seek(0, os.SEEK_END)
    if size:
        # Cut a torn last line (SIGKILL mid-write); its messages are still pending in the outbox.
        tail_start = max(0, size - (1 << 20))
        journal.seek(tail_start)
        tail = journal.read()
        if not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            journal.truncate(tail_start + cut + 1 if cut >= 0 else tail_start)
            os.fsync(journal.fileno())
    return journal


def _append(journal: Any, lines: Sequence[bytes]) -> None:
    """Write and fsync whole lines; on failure cut the file back so no torn line stays behind."""
    if journal is sys.stdout.buffer:  # standard output (replay, demos): nothing to make durable
        journal.write(b"".join(line + b"\n" for line in lines))
        journal.flush()
        return
    start = journal.seek(0, os.SEEK_END)
    try:
        # Unbuffered: a failed write must not leave bytes in a buffer that a later flush would add.
        pending = memoryview(b"".join(line + b"\n" for line in lines))
        while pending:
            pending = pending[journal.write(pending):]
        os.fsync(journal.fileno())
    except OSError as err:
        # A journal path naming a pipe or terminal cannot be fsync'd; "delivered" then means "written".
        if err.errno in (errno.EINVAL, errno.ENOTSUP):
            return
        with contextlib.suppress(OSError):
            journal.truncate(start)
        raise


def make_publisher(
    config: UpstreamConfig, status_provider: StatusProvider | None = None,
    on_delivered: DeliveredCallback | None = None,
) -> Publisher:
    """The publisher for this config: MQTT when a broker is configured, else the JSON Lines journal."""
    if config.mqtt is not None:
        return MqttPublisher(config, status_provider, on_delivered)
    return JournalPublisher(config, status_provider, on_delivered)


class Upstream:
    """What the daemon wires: `await Upstream(config).run(outbox, stop_event)` as one named task."""

    def __init__(
        self, config: UpstreamConfig, status_provider: StatusProvider | None = None,
        on_delivered: DeliveredCallback | None = None,
    ) -> None:
        self.publisher = make_publisher(config, status_provider, on_delivered)

    @property
    def state(self) -> PublisherState:
        return self.publisher.state

    @property
    def counters(self) -> PublisherCounters:
        return self.publisher.counters

    async def run(self, outbox: Outbox, stop: asyncio.Event) -> None:
        await self.publisher.run(outbox, stop)
