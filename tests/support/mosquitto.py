"""The tests' Mosquitto: liftwatch.broker's process with a throwaway PKI, passwords and ACLs, and a
`mosquitto_broker` fixture (tests/conftest.py offers it to every test).

The broker runs with persistence on, so a `stop()`/`start()` keeps sessions and queued QoS 1
messages like a production broker restart; `kill()` is a SIGKILL (only what was autosaved survives).
Needs the Debian package `mosquitto` (plus mosquitto_passwd) and `openssl` for `make_test_pki`. The
system service must not be running; we start our own.
"""

from __future__ import annotations

import signal
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liftwatch.broker import Mosquitto, Subscriber


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


class MosquittoBroker(Mosquitto):
    """A test broker: optionally TLS (``pki``), client certificates, passwords and an ACL."""

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
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.pki = pki
        lines: list[str] = []
        if pki is not None:
            lines += [f"cafile {pki.ca_cert}", f"certfile {pki.server_cert}", f"keyfile {pki.server_key}",
                      f"require_certificate {'true' if require_client_cert else 'false'}"]
            if require_client_cert:
                lines.append("use_identity_as_username true")
        if passwords is not None:
            pw_file = workdir / "passwords"
            pw_file.write_text("".join(f"{u}:{p}\n" for u, p in passwords.items()))
            pw_file.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(pw_file)], check=True, capture_output=True)
            lines += [f"password_file {pw_file}", "allow_anonymous false"]
        if acl is not None:
            acl_file = workdir / "acl"
            acl_file.write_text(acl)
            acl_file.chmod(0o600)
            lines.append(f"acl_file {acl_file}")
        super().__init__(workdir, persistence=persistence, extra_config=lines)

    def pause(self) -> None:
        """SIGSTOP: the broker still holds its sockets but reads, acknowledges and saves nothing."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def client_tls_context(self) -> ssl.SSLContext | None:
        if self.pki is None:
            return None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.client_cert), str(self.pki.client_key))
        return ctx


class Collector(Subscriber):
    """liftwatch.broker's subscriber, with the test broker's client certificate when it has one."""

    def __init__(self, broker: MosquittoBroker, topic: str = "liftwatch/#", client_id: str = "collector",
                 username: str | None = None, password: str | None = None, **kw: Any) -> None:
        super().__init__(broker, topic, client_id, username=username, password=password,
                         tls_context=broker.client_tls_context(), **kw)
