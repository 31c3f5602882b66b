"""systemd's side of sd_notify: a datagram socket that collects what the service tells it."""

from __future__ import annotations

import socket
from pathlib import Path


class NotifySocket:
    """Bound at ``path`` (give it to the service as NOTIFY_SOCKET); `messages()` reads what has
    arrived without waiting, and returns every message so far, as KEY=VALUE dicts."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.received: list[dict[str, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.setblocking(False)

    def messages(self) -> list[dict[str, str]]:
        try:
            while True:
                raw = self._sock.recv(4096).decode()
                self.received.append(dict(line.split("=", 1) for line in raw.split("\n")))
        except BlockingIOError:
            pass
        return self.received

    def close(self) -> None:
        self._sock.close()
