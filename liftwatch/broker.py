"""A local Mosquitto and a subscriber that keeps what it hears: `liftwatch demo --mqtt`, the tests
and the benchmarks all start their broker through this one module.

`Mosquitto` runs one broker process on a localhost port with its config and log in its own folder.
The port is picked when the broker first starts, and picked again if another process took it in
the meantime ("Address already in use"): a port chosen early and bound later is a race on a busy
machine. After the first start the port stays, so `stop()`/`start()` is a broker restart that
clients reconnect to, with persistence (on by default) keeping sessions and queued QoS 1 messages.

`Subscriber` is a persistent QoS 1 session on ``liftwatch/#`` that records every message, decoded
as the upstream consumer reads it, and can append them to a JSON Lines archive (the insurer's
platform of the demo, which the report reads).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from liftwatch.errors import LiftwatchError

# Mosquitto listens within ~50 ms; generous for a loaded 2-core machine.
START_TIMEOUT_S = 10.0
# A restart on the same port can find the old listener's socket not yet released by the kernel.
RESTART_RETRY_S = 0.25

# What Mosquitto logs once its listeners are bound (log_type information).
_RUNNING = re.compile(r"mosquitto version \S+ running")

_LOG = logging.getLogger(__name__)


class BrokerError(LiftwatchError, RuntimeError):
    """Mosquitto is not installed, did not start, or a subscriber could not subscribe."""


def mosquitto_binary() -> str | None:
    """The mosquitto executable (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """One mosquitto process on 127.0.0.1; same port and persistence folder across stop()/start().

    ``extra_config`` lines are appended to the generated config (TLS, passwords, ACLs); without any,
    clients connect anonymously. ``port`` is known once ``start()`` returns."""

    def __init__(self, workdir: Path, *, persistence: bool = True, extra_config: list[str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = 0
        self.log_path = self.workdir / "mosquitto.log"
        self.config_path = self.workdir / "mosquitto.conf"
        self._persistence = persistence
        self._extra = list(extra_config or [])
        self._proc: subprocess.Popen[bytes] | None = None
        self._port_fixed = False  # set by the first successful start

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"user {getpass.getuser()}",  # as root, mosquitto would otherwise switch to user mosquitto
            f"log_dest file {self.log_path}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            # Tests and soaks queue thousands of QoS 1 messages for an offline subscriber (default 1000).
            "max_queued_messages 0",
            "max_inflight_messages 0",
        ]
        if self._persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        if not any(line.startswith(("password_file", "require_certificate true")) for line in self._extra):
            lines.append("allow_anonymous true")
        self.config_path.write_text("\n".join(lines + self._extra) + "\n")

    def start(self) -> None:
        if self.running:
            return
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("mosquitto is not installed (Debian package `mosquitto`)")
        if not self._port_fixed:
            self.port = _unused_port()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            self._write_config()
            runs_before = self._runs_logged()
            self._proc = subprocess.Popen([binary, "-c", str(self.config_path)], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self._wait_listening(deadline, runs_before):
                self._port_fixed = True
                return
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
            in_use = "Address already in use" in err + self.log_tail(3)  # stderr until the log is open
            self._end(signal.SIGKILL)
            if not in_use or time.monotonic() + RESTART_RETRY_S > deadline:
                raise BrokerError(f"mosquitto did not listen on {self.port} within {START_TIMEOUT_S} s: "
                                  f"{err.strip()}\n{self.log_tail()}")
            if self._port_fixed:
                time.sleep(RESTART_RETRY_S)  # our own port, still held by the kernel after a restart
            else:
                self.port = _unused_port()  # somebody else took it between our pick and the bind

    def _runs_logged(self) -> int:
        try:
            return len(_RUNNING.findall(self.log_path.read_text(errors="replace")))
        except OSError:
            return 0

    def _wait_listening(self, deadline: float, runs_before: int) -> bool:
        """True once this process says it runs (it has bound its listener) and accepts a connection.
        A connection alone proves nothing: whoever took the port first accepts it too."""
        assert self._proc is not None
        while time.monotonic() < deadline and self._proc.poll() is None:
            if self._runs_logged() > runs_before:
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.2):
                        return self._proc.poll() is None
                except OSError:
                    pass
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """SIGTERM: the broker saves its persistence db (sessions, queued messages) and exits."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: only what was autosaved survives."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _end(self, sig: int) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(sig)
            if sig != signal.SIGKILL:
                self._proc.send_signal(signal.SIGCONT)  # a paused broker handles SIGTERM only once resumed
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Subscriber:
    """A subscriber with a persistent QoS 1 session that records every message it receives.

    `messages` keeps duplicates (QoS 1 may redeliver); `by_id()` is the idempotent view a real
    consumer would build. With ``archive``, each message is also appended to that JSON Lines file.
    A payload that does not decode is logged and counted in `undecodable`, never recorded."""

    def __init__(self, broker: Mosquitto, topic: str = "liftwatch/#", client_id: str = "collector", *,
                 username: str | None = None, password: str | None = None, tls_context: Any = None,
                 archive: Path | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.broker = broker
        self.topic = topic
        self.messages: list[tuple[str, dict[str, Any], bool]] = []  # (topic, json, retain)
        self.wire: list[tuple[str, bytes, str | None, int]] = []  # (topic, first byte, content type, size)
        self.undecodable = 0
        self._archive_path = archive
        self._archive: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if tls_context is not None:
            self.client.tls_set_context(tls_context)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        """Fact messages arrive DEFLATE-compressed (docs/upstream.md); the archive is JSON Lines."""
        from liftwatch.edge_daemon.upstream_codec import UpstreamPayloadError, decode_payload

        try:
            message = decode_payload(msg.payload)
        except UpstreamPayloadError:
            _LOG.warning("subscriber: undecodable payload on %s", msg.topic)
            with self._lock:
                self.undecodable += 1
            return
        with self._lock:
            self.messages.append((msg.topic, message, bool(msg.retain)))
            content_type = getattr(msg.properties, "ContentType", None) if msg.properties else None
            self.wire.append((msg.topic, msg.payload[:1], content_type, len(msg.payload)))
            if self._archive is not None:
                self._archive.write(json.dumps(message, ensure_ascii=False).encode() + b"\n")
                self._archive.flush()

    def start(self) -> Subscriber:
        """Connect and return once subscribed, so nothing published after this is missed."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if self._archive_path is not None:
            self._archive = open(self._archive_path, "ab")  # noqa: SIM115 - open while subscribed; stop() closes it
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=10, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):
            self.stop()
            raise BrokerError(f"subscriber did not subscribe to {self.topic}\n{self.broker.log_tail()}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        with self._lock:
            if self._archive is not None:
                self._archive.close()
                self._archive = None

    def snapshot(self) -> list[tuple[str, dict[str, Any], bool]]:
        with self._lock:
            return list(self.messages)

    def by_id(self, kind: str | None = None) -> dict[str, dict[str, Any]]:
        """First copy of each id, or its highest `revision` (what an idempotent consumer keeps)."""
        seen: dict[str, dict[str, Any]] = {}
        for _, message, _ in self.snapshot():
            if kind is None or message.get("kind") == kind:
                prior = seen.setdefault(message["id"], message)
                if (message.get("revision") or 0) > (prior.get("revision") or 0):
                    seen[message["id"]] = message
        return seen

    def wait_for_ids(self, ids: set[str], timeout_s: float) -> set[str]:
        """Wait until all ids arrived; returns the missing ones (empty on success)."""
        deadline = time.monotonic() + timeout_s
        while True:
            missing = ids - self.by_id().keys()
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.02)


class LocalBroker:
    """`liftwatch demo --mqtt`: a Mosquitto in `directory` and an archive subscriber standing in
    for the insurer's platform (what the report reads)."""

    def __init__(self, directory: Path) -> None:
        self.broker = Mosquitto(directory, persistence=False)
        self.archive_path = directory / "broker-archive.jsonl"
        self._archive: Subscriber | None = None

    @property
    def port(self) -> int:
        return self.broker.port

    def start(self) -> None:
        self.broker.start()
        try:
            self._archive = Subscriber(self.broker, client_id="liftwatch-demo-archive",
                                       archive=self.archive_path).start()
        except BrokerError:
            self.broker.kill()
            raise

    def stop(self) -> None:
        if self._archive is not None:
            time.sleep(0.3)  # the last QoS 1 messages on their way to the archive
            self._archive.stop()
            self._archive = None
        self.broker.stop()
