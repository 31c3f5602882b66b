"""A throwaway PostgreSQL cluster for the fleet store's tests and benchmark: initdb and pg_ctl from
Debian's `postgresql` package (/usr/lib/postgresql/<v>/bin), on its own port and data folder, never
the system service. PostgreSQL refuses to run as root: as root, the cluster runs as user `postgres`."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 30.0


def postgres_bindir() -> Path | None:
    """The newest installed server's bin folder, or None without Debian's postgresql package."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """initdb + pg_ctl start on 127.0.0.1:<port> with trust auth; `database()` makes a fresh database."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = _unused_port()
        self.root = Path(tempfile.mkdtemp(prefix="liftwatch-pg-"))
        self.datadir = self.root / "data"
        self._user: str | None = None
        self._made = 0
        if os.geteuid() == 0:
            self._user = "postgres"
            uid, gid = pwd.getpwnam("postgres")[2:4]
            os.chown(self.root, uid, gid)
        self.root.chmod(0o755)

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=START_TIMEOUT_S)

    def start(self) -> PostgresCluster:
        self._run("initdb", "-D", str(self.datadir), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=on -c max_connections=50"
        self._run("pg_ctl", "-D", str(self.datadir), "-o", opts, "-l", str(self.root / "log"), "-w",
                  "-t", str(int(START_TIMEOUT_S)), "start")
        return self

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        self._made += 1
        name = f"fleet_{os.getpid()}_{self._made}_{int(time.monotonic() * 1000) % 100000}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
