"""Which host names and addresses stay on this machine: a plain-text broker and an unauthenticated
status page are allowed only there (SECURITY.md, threat 2)."""

from __future__ import annotations

import ipaddress

LOCALHOST_NAMES = frozenset({"localhost", "localhost.", "localhost.localdomain"})


def is_loopback_host(host: str) -> bool:
    """True for a localhost name or a loopback IP literal. Any other name could resolve anywhere."""
    if host.lower() in LOCALHOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
