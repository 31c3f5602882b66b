"""A real Mosquitto broker for tests and benchmarks: started on a free port in a temp dir.

Import what you need into a test module (`from mosquitto import mosquitto_broker, MosquittoBroker`);
pytest puts `tests/` on sys.path. Benchmarks load this file by path. The broker runs with
persistence on, so a `stop()`/`start()` keeps sessions and queued QoS 1 messages like a production
broker restart; `kill()` is a SIGKILL (only what was autosaved survives).

Needs the Debian package `mosquitto` (binary /usr/sbin/mosquitto, plus mosquitto_passwd) and
`openssl` for `make_test_pki`. The system service must not be running; we start our own.
"""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from liftwatch.edge_daemon.upstream_codec import decode_payload

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_TIMEOUT_S = 10.0  # the broker listens within ~50 ms; generous for a loaded CI box


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True, slots=True)
class TestPki:
    """A throwaway CA with a server certificate for localhost/127.0.0.1 and one client certificate."""

    __test__ = False  # not a test class, despite the name
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_test_pki(directory: Path, client_cn: str = "liftwatch-pi") -> TestPki:
    """Generate a CA, a server cert (SAN localhost, 127.0.0.1) and a client cert with openssl."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=liftwatch test CA", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn in (("server", "localhost"), ("client", client_cn)):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return TestPki(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")


class MosquittoBroker:
    """One mosquitto process; same port and persistence dir across stop()/start()."""

    def __init__(
        self,
        workdir: Path,
        *,
        pki: TestPki | None = None,
        require_client_cert: bool = False,
        passwords: dict[str, str] | None = None,
        acl: str | None = None,
        persistence: bool = True,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.pki = pki
        self.log_path = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"user {getpass.getuser()}",  # as root, mosquitto would otherwise switch to user mosquitto
            f"log_dest file {self.log_path}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            # Tests queue thousands of QoS 1 messages for an offline subscriber; the default is 1000.
            "max_queued_messages 0",
            "max_inflight_messages 0",
        ]
        if persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        if pki is not None:
            lines += [f"cafile {pki.ca_cert}", f"certfile {pki.server_cert}", f"keyfile {pki.server_key}",
                      f"require_certificate {'true' if require_client_cert else 'false'}"]
            if require_client_cert:
                lines.append("use_identity_as_username true")
        if passwords is not None:
            pw_file = self.workdir / "passwords"
            pw_file.write_text("".join(f"{u}:{p}\n" for u, p in passwords.items()))
            pw_file.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(pw_file)], check=True, capture_output=True)
            lines += [f"password_file {pw_file}", "allow_anonymous false"]
        elif not require_client_cert:
            lines.append("allow_anonymous true")
        if acl is not None:
            acl_file = self.workdir / "acl"
            acl_file.write_text(acl)
            acl_file.chmod(0o600)
            lines.append(f"acl_file {acl_file}")
        self.config_path = self.workdir / "mosquitto.conf"
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self._proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config_path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                if "Address already in use" in err and time.monotonic() + 0.5 < deadline:
                    # A restart on the same port can find the old listener's socket not yet released
                    # by the kernel: try again rather than fail the outage test on a busy machine.
                    time.sleep(0.25)
                    self._proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config_path)],
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    continue
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: {err}\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {START_TIMEOUT_S} s\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM: the broker saves its persistence db (sessions, queued messages) and exits."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: the broker still holds its sockets but reads, acknowledges and saves nothing."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

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

    def client_tls_context(self) -> ssl.SSLContext | None:
        if self.pki is None:
            return None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.client_cert), str(self.pki.client_key))
        return ctx


class Collector:
    """A subscriber with a persistent QoS 1 session that records every message it receives.

    `messages` keeps duplicates (QoS 1 may redeliver); `by_id()` is the idempotent view a real
    consumer would build.
    """

    def __init__(self, broker: MosquittoBroker, topic: str = "liftwatch/#", client_id: str = "collector",
                 username: str | None = None, password: str | None = None) -> None:
        self.broker = broker
        self.topic = topic
        self.messages: list[tuple[str, dict[str, Any], bool]] = []  # (topic, json, retain)
        self.wire: list[tuple[str, bytes, str | None, int]] = []  # (topic, first byte, content type, size)
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        ctx = broker.client_tls_context()
        if ctx is not None:
            self.client.tls_set_context(ctx)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, decode_payload(msg.payload), bool(msg.retain)))
            content_type = getattr(msg.properties, "ContentType", None) if msg.properties else None
            self.wire.append((msg.topic, msg.payload[:1], content_type, len(msg.payload)))

    def start(self) -> Collector:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=10, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):
            raise RuntimeError(f"collector did not subscribe\n{self.broker.log_tail()}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self) -> list[tuple[str, dict[str, Any], bool]]:
        with self._lock:
            return list(self.messages)

    def by_id(self, kind: str | None = None) -> dict[str, dict[str, Any]]:
        """First copy of each id (what an idempotent consumer keeps)."""
        seen: dict[str, dict[str, Any]] = {}
        for _, message, _ in self.snapshot():
            if kind is None or message.get("kind") == kind:
                seen.setdefault(message["id"], message)
        return seen

    def wait_for_ids(self, ids: set[str], timeout_s: float) -> set[str]:
        """Wait until all ids arrived; returns the missing ones (empty on success)."""
        deadline = time.monotonic() + timeout_s
        while True:
            missing = ids - self.by_id().keys()
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.02)


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A plain-TCP, anonymous broker with persistence; stopped after the test."""
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed (Debian package `mosquitto`)")
    broker = MosquittoBroker(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()
