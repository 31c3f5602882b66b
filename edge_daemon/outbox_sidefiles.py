"""The outbox's small side files beside the database: shed counts (`<outbox>.shed`) and the
high-water mark (`<outbox>.hwm`).

Both are preallocated at open and rewritten in place, so updating them needs no free block on a disk
that is full (outbox.py says what each is for and when it is written).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Mapping

_LOG = logging.getLogger("liftwatch.edge_daemon.outbox")


def merge_drops(drops: dict[str, dict[str, int]], more: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    for reason, by_kind in more.items():
        into = drops.setdefault(reason, {})
        for kind, n in by_kind.items():
            into[kind] = into.get(kind, 0) + n
    return drops


def open_preallocated(path: Path, size: int) -> int | None:
    """A small side file (shed counts, high-water mark), preallocated so in-place updates need no
    free block; None if it cannot be made (the disk was full before the outbox first opened: shed()
    then refuses, and losses go unseen by the mark)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size < size:
            os.posix_fallocate(fd, 0, size)
            os.fsync(fd)
    except OSError:
        os.close(fd)
        return None
    return fd


def rewrite_in_place(fd: int, text: bytes, size: int, *, sync: bool = True) -> None:
    """Overwrite a preallocated side file with `text`, padded to its size, and fsync it if `sync`."""
    os.pwrite(fd, text.ljust(size - 1) + b"\n", 0)
    if sync:
        os.fsync(fd)


def read_hwm_file(path: Path) -> int | None:
    """The high-water mark; None if absent, new or unreadable (then it restarts from the database)."""
    try:
        text = path.read_bytes().rstrip(b"\x00 \n")
        return int(json.loads(text)["seq"]) if text else None
    except (OSError, ValueError, KeyError, TypeError) as err:
        if not isinstance(err, FileNotFoundError):
            _LOG.warning("outbox high-water mark %s unreadable: %s", path, err)
        return None


def read_shed_file(path: Path) -> dict[str, dict[str, int]]:
    """{reason: {kind: count}} from the shed file; empty if absent, new or damaged (a torn write
    of a 4 KiB block is not expected, but a damaged count must not stop the daemon)."""
    try:
        text = path.read_bytes().rstrip(b"\x00 \n")
        doc = json.loads(text) if text else {}
        return {str(r): {str(k): int(n) for k, n in kinds.items()} for r, kinds in doc.items()}
    except (OSError, ValueError, AttributeError, TypeError) as err:
        if not isinstance(err, FileNotFoundError):
            _LOG.warning("shed counts in %s unreadable: %s", path, err)
        return {}
