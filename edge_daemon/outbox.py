"""The outbox: every upstream message is committed to SQLite before anything tries to send it.

`put()` returns only once the message is on disk (WAL, synchronous=FULL: the commit fsyncs the
write-ahead log), so the session may ACK a board EVENT right after it and a SIGKILL or power cut
at any later point loses nothing. The upstream publisher reads pending messages in insertion order
(`seq`, hence in order per car), and marks them delivered only once the broker has acknowledged
them (PUBACK) or the journal has been fsync'd.

Space is bounded by `budget_bytes` (payload bytes of pending messages plus a per-row overhead).
When a put would exceed it, pending messages are dropped lowest priority first, oldest first within
a priority (`envelope.Priority`); faults (`event`) and `maintenance` records are never dropped and
are stored even beyond the budget. Every drop is counted by reason and kind in the database itself,
so the counts survive restarts and go upstream in the status message.

Ids: the `id` column is UNIQUE. A second put of a known id (the board re-sent an EVENT whose ACK
was lost, or analytics recomputed a trip after a restart) changes nothing and returns KNOWN.
Delivered and dropped rows keep their id (payload cleared) for `keep_ids_s`, so such a re-put does
not resend a message the broker already has.
"""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum, IntEnum
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .envelope import DEFAULT_PRIORITIES, InvalidMessageError, Priority, encode_message

ROW_OVERHEAD_BYTES = 96
"""Approximate bytes a row costs beyond its payload (ids, index entries), charged to the budget."""

DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024
"""64 MiB: roughly 290 car-days at the 200 kB/car/day upstream target (docs/upstream.md); small on an SD card."""

MAX_MESSAGE_BYTES = 256 * 1024
"""A single message larger than this is a producer bug, refused with InvalidMessageError."""

KEEP_IDS_S = 7 * 24 * 3600
"""How long the id of a delivered/dropped message is remembered to absorb late re-puts."""

_PRUNE_EVERY_S = 600.0  # pruning old ids is housekeeping: no need to run it on every ack

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    site TEXT NOT NULL,
    car TEXT,
    priority INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL,
    stored_unix_ms INTEGER NOT NULL,
    payload BLOB
);
CREATE INDEX IF NOT EXISTS message_pending ON message (seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS message_evictable ON message (priority DESC, seq)
    WHERE state = 0 AND priority > 0;
CREATE INDEX IF NOT EXISTS message_settled ON message (stored_unix_ms) WHERE state IN (1, 2);
CREATE TABLE IF NOT EXISTS drop_count (
    reason TEXT NOT NULL,
    kind TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (reason, kind)
);
"""


class DeliveryState(IntEnum):
    """Stored in the `state` column; values are on disk, never renumber."""

    PENDING = 0
    DELIVERED = 1
    DROPPED = 2
    REJECTED = 3  # the broker refused it (PUBACK reason >= 0x80, e.g. ACL); kept for an operator


class DropReason(str, Enum):
    """Why a message was dropped; the string is what the status message reports."""

    OUTBOX_FULL = "outbox_full"  # evicted, or refused on arrival, to keep within budget_bytes


class PutOutcome(Enum):
    """What put() did. All three mean "durably settled": the caller may ACK its source."""

    STORED = "stored"
    KNOWN = "known"  # the id was already in the outbox (pending, delivered or dropped)
    DROPPED = "dropped"  # budget full and nothing of lower priority to evict; counted


class OutboxError(Exception):
    """Base of outbox errors."""


class OutboxWriteError(OutboxError):
    """SQLite could not commit (disk full, I/O error). Nothing was stored: do not ACK the source."""


class OutboxInUseError(OutboxError):
    """Another process has this outbox open. Two writers would each keep their own byte count and
    publish the same messages; `outbox_stats(path)` reads a live outbox without opening it."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A pending message as the publisher sees it: `payload` is the exact JSON to send."""

    seq: int
    id: str
    kind: str
    site: str
    car: str | None
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Depth and drops, for the status message and `liftwatch status`."""

    pending: int
    pending_bytes: int
    budget_bytes: int
    rejected: int
    oldest_pending_unix_ms: int | None
    drops: dict[str, dict[str, int]]

    def to_status(self) -> dict[str, Any]:
        """The `outbox` and `drops` fields of the status message."""
        return {
            "outbox": {
                "pending": self.pending,
                "pending_bytes": self.pending_bytes,
                "budget_bytes": self.budget_bytes,
                "rejected": self.rejected,
                "oldest_pending_unix_ms": self.oldest_pending_unix_ms,
            },
            "drops": self.drops,
        }


class Outbox:
    """SQLite-backed, budgeted, priority-aware message store shared by analytics and upstream.

    Thread-safe: one connection behind a lock. Blocking calls take milliseconds (one fsync per
    put); asyncio code uses `aput()`, which runs puts in FIFO order on one worker thread.
    """

    def __init__(
        self,
        path: str | Path,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        priorities: Mapping[str, Priority] = DEFAULT_PRIORITIES,
        keep_ids_s: float = KEEP_IDS_S,
    ) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be positive, got {budget_bytes}")
        self.path = Path(path)
        self.budget_bytes = budget_bytes
        self._priorities = dict(priorities)
        self._keep_ids_ms = int(keep_ids_s * 1000)
        self._lock = threading.RLock()
        self._listeners: list[Callable[[], None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._last_prune = 0.0
        # Released by the kernel when the process dies, so a SIGKILLed daemon never locks us out.
        self._lock_file = open(self.path.with_name(self.path.name + ".lock"), "a")
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise OutboxInUseError(f"outbox {self.path} is open in another process") from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            (self._pending_bytes,) = self._db.execute(
                "SELECT COALESCE(SUM(size), 0) + COUNT(*) * ? FROM message WHERE state = 0", (ROW_OVERHEAD_BYTES,)
            ).fetchone()
        except sqlite3.Error as err:
            self._lock_file.close()
            raise OutboxError(f"cannot open outbox {self.path}: {err}") from err

    # -- producer side -------------------------------------------------------------------------

    def priority_of(self, kind: str) -> Priority:
        return self._priorities.get(kind, Priority.RAW)

    def put(self, message: Mapping[str, Any]) -> PutOutcome:
        """Store one message durably; returns after the fsync. Raises InvalidMessageError/OutboxWriteError."""
        return self.put_many([message])[0]

    def put_many(self, messages: Sequence[Mapping[str, Any]]) -> list[PutOutcome]:
        """Store several messages in one transaction (one fsync): all or none."""
        encoded = [(m, encode_message(m)) for m in messages]
        for _, payload in encoded:
            if len(payload) > MAX_MESSAGE_BYTES:
                raise InvalidMessageError("*", f"message of {len(payload)} bytes exceeds {MAX_MESSAGE_BYTES}")
        outcomes: list[PutOutcome] = []
        with self._lock:
            pending_bytes = self._pending_bytes
            with self._transaction():
                for message, payload in encoded:
                    outcome, pending_bytes = self._insert(message, payload, pending_bytes)
                    outcomes.append(outcome)
            self._pending_bytes = pending_bytes
        if PutOutcome.STORED in outcomes:
            for listener in list(self._listeners):
                listener()
        return outcomes

    @contextmanager
    def _transaction(self, synchronous: str = "FULL") -> Iterator[None]:
        """One write transaction under the lock; any SQLite failure rolls back and raises OutboxWriteError."""
        db = self._db
        with self._lock:
            try:
                if synchronous != "FULL":
                    db.execute(f"PRAGMA synchronous={synchronous}")
                try:
                    db.execute("BEGIN IMMEDIATE")
                    yield
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                finally:
                    if synchronous != "FULL":
                        db.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as err:
                raise OutboxWriteError(f"outbox {self.path}: {err}") from err

    def _insert(self, message: Mapping[str, Any], payload: bytes, pending_bytes: int) -> tuple[PutOutcome, int]:
        """One put inside the open transaction; returns the outcome and the new pending byte count."""
        db = self._db
        mid = message["id"]
        if db.execute("SELECT 1 FROM message WHERE id = ?", (mid,)).fetchone():
            return PutOutcome.KNOWN, pending_bytes
        kind = message["kind"]
        priority = self.priority_of(kind)
        cost = len(payload) + ROW_OVERHEAD_BYTES
        now_ms = int(time.time() * 1000)
        excess = pending_bytes + cost - self.budget_bytes
        if excess > 0:
            # Candidates: droppable rows ranked at or below the newcomer, lowest rank, oldest first.
            floor = max(int(priority), 1)
            victims: list[tuple[int, int, str]] = []
            freed = 0
            for seq, size, vkind in db.execute(
                "SELECT seq, size, kind FROM message WHERE state = 0 AND priority > 0 AND priority >= ?"
                " ORDER BY priority DESC, seq",
                (floor,),
            ):
                victims.append((seq, size, vkind))
                freed += size + ROW_OVERHEAD_BYTES
                if freed >= excess:
                    break
            if freed < excess and priority != Priority.PROTECTED:
                # Evicting would not make room: keep what is there, refuse the newcomer.
                db.execute(
                    "INSERT INTO message (id, kind, site, car, priority, state, size, stored_unix_ms, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    (mid, kind, message["site"], message["car"], int(priority), DeliveryState.DROPPED, 0, now_ms),
                )
                self._count_drops(DropReason.OUTBOX_FULL, {kind: 1})
                return PutOutcome.DROPPED, pending_bytes
            dropped: dict[str, int] = {}
            for seq, size, vkind in victims:
                db.execute(
                    "UPDATE message SET state = ?, payload = NULL WHERE seq = ?", (DeliveryState.DROPPED, seq)
                )
                pending_bytes -= size + ROW_OVERHEAD_BYTES
                dropped[vkind] = dropped.get(vkind, 0) + 1
            self._count_drops(DropReason.OUTBOX_FULL, dropped)
        db.execute(
            "INSERT INTO message (id, kind, site, car, priority, state, size, stored_unix_ms, payload)"
            " VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
            (mid, kind, message["site"], message["car"], int(priority), len(payload), now_ms, payload),
        )
        return PutOutcome.STORED, pending_bytes + cost

    def _count_drops(self, reason: DropReason, by_kind: Mapping[str, int]) -> None:
        for kind, n in by_kind.items():
            self._db.execute(
                "INSERT INTO drop_count (reason, kind, count) VALUES (?, ?, ?)"
                " ON CONFLICT (reason, kind) DO UPDATE SET count = count + excluded.count",
                (reason.value, kind, n),
            )

    async def aput(self, message: Mapping[str, Any]) -> PutOutcome:
        """put() for asyncio code: runs on the outbox's own worker thread, FIFO across callers."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.put, message)

    def add_listener(self, callback: Callable[[], None]) -> None:
        """`callback()` runs on the putting thread after each commit that stored a new message."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.remove(callback)

    # -- publisher side ------------------------------------------------------------------------

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Pending messages with seq > after_seq, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, kind, site, car, payload FROM message WHERE state = 0 AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxMessage(*row) for row in rows]

    def mark_delivered(self, seqs: Iterable[int]) -> int:
        """Settle messages the broker acknowledged (or the journal fsync'd); returns how many.

        Committed with synchronous=NORMAL: losing this commit in a power cut only means the
        messages are sent again, which subscribers absorb by id; the next put's FULL commit
        syncs it anyway.
        """
        return self._settle(seqs, DeliveryState.DELIVERED)

    def mark_rejected(self, seqs: Iterable[int]) -> int:
        """Set aside messages the broker refused, so they do not block the rest; see requeue_rejected()."""
        return self._settle(seqs, DeliveryState.REJECTED)

    def _settle(self, seqs: Iterable[int], state: DeliveryState) -> int:
        batch = list(seqs)
        if not batch:
            return 0
        payload_sql = "payload = NULL, " if state == DeliveryState.DELIVERED else ""
        freed = 0
        changed = 0
        with self._lock:
            with self._transaction(synchronous="NORMAL"):
                for seq in batch:
                    row = self._db.execute("SELECT size FROM message WHERE seq = ? AND state = 0", (seq,)).fetchone()
                    if row is None:
                        continue  # already settled (e.g. a duplicate PUBACK after a resend)
                    self._db.execute(f"UPDATE message SET {payload_sql}state = ? WHERE seq = ?", (int(state), seq))
                    freed += row[0] + ROW_OVERHEAD_BYTES
                    changed += 1
                self._prune_ids()
            self._pending_bytes -= freed
        return changed

    def _prune_ids(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < _PRUNE_EVERY_S:
            return
        self._last_prune = now
        horizon_ms = int(time.time() * 1000) - self._keep_ids_ms
        self._db.execute("DELETE FROM message WHERE state IN (1, 2) AND stored_unix_ms < ?", (horizon_ms,))

    def requeue_rejected(self) -> int:
        """Make rejected messages pending again (e.g. after an ACL fix); returns how many.

        They keep their original seq, so the publisher sends them on its next pass from seq 0,
        i.e. after newer messages of the same car that were accepted meanwhile.
        """
        with self._lock:
            with self._transaction():
                (size,) = self._db.execute(
                    "SELECT COALESCE(SUM(size), 0) + COUNT(*) * ? FROM message WHERE state = ?",
                    (ROW_OVERHEAD_BYTES, DeliveryState.REJECTED),
                ).fetchone()
                n = self._db.execute("UPDATE message SET state = 0 WHERE state = ?", (DeliveryState.REJECTED,)).rowcount
            self._pending_bytes += size
        return n

    # -- reporting -----------------------------------------------------------------------------

    def drop_counts(self) -> dict[str, dict[str, int]]:
        """{reason: {kind: count}} since the outbox was created."""
        with self._lock:
            return _read_drops(self._db)

    def stats(self) -> OutboxStats:
        with self._lock:
            return _read_stats(self._db, self.budget_bytes)

    def state_of(self, message_id: str) -> DeliveryState | None:
        """Delivery state of one id, or None if unknown (never stored, or pruned)."""
        with self._lock:
            row = self._db.execute("SELECT state FROM message WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else DeliveryState(row[0])

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._lock:
            self._db.close()
            self._lock_file.close()  # releases the flock

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_drops(db: sqlite3.Connection) -> dict[str, dict[str, int]]:
    drops: dict[str, dict[str, int]] = {}
    for reason, kind, count in db.execute("SELECT reason, kind, count FROM drop_count ORDER BY reason, kind"):
        drops.setdefault(reason, {})[kind] = count
    return drops


def _read_stats(db: sqlite3.Connection, budget_bytes: int) -> OutboxStats:
    pending, pending_bytes, oldest = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) + COUNT(*) * ?, MIN(stored_unix_ms) FROM message WHERE state = 0",
        (ROW_OVERHEAD_BYTES,),
    ).fetchone()
    (rejected,) = db.execute("SELECT COUNT(*) FROM message WHERE state = ?", (DeliveryState.REJECTED,)).fetchone()
    return OutboxStats(pending, pending_bytes, budget_bytes, rejected, oldest, _read_drops(db))


def outbox_stats(path: str | Path, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> OutboxStats:
    """Depth and drops of an outbox another process (the running daemon) has open; read-only.

    For `liftwatch status`. WAL readers do not block the writer, and this takes no outbox lock.
    """
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=5.0)
    try:
        return _read_stats(db, budget_bytes)
    finally:
        db.close()
