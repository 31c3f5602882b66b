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

Disk full (the filesystem, not the budget): a reserve file (`<outbox>.reserve`, `reserve_bytes`,
fallocate'd) sits beside the database. SQLite cannot make room by itself: a commit that meets
SQLITE_FULL fails as a whole. So the first such failure deletes the reserve and retries: the
freed space takes the facts (events, maintenance, trips, daily records), while RAW kinds (status,
raw vibration) are refused on arrival and counted as `disk_full` for as long as the reserve is
out. Every later put first checks free space and re-creates the reserve once there is room for it
twice over. Facts that reached the reserve are ordinary committed rows, so a SIGKILL right after
loses nothing. We chose the reserve over stop-reading back-pressure because a board that is not
read loses its ring buffer, which the daemon cannot count per trip, and over keeping facts in
memory because a SIGKILL (or the watchdog) would take them silently.

Only when the reserve is used up too (a disk full for days) do facts get shed, and still never
silently: `shed()` adds them to a counter file (`<outbox>.shed`, 4 KiB preallocated at open, so
updating it in place needs no new block) that `drop_counts()` and the status message report as
`disk_full`. Board EVENTs are never shed: the caller keeps them un-ACKed and the board re-sends
them from its flash (daemon.py).

A database behind what it issued (a file truncated or replaced, a `-wal` deleted after a kill:
SQLite then opens what is left without a word) is caught by a high-water mark kept outside it:
`<outbox>.hwm`, preallocated like the shed file and rewritten in place after every commit that
issued a sequence number: written at once (a killed process leaves it in the page cache), fsync'd
at most every HWM_SYNC_S and at close (an fsync per put would double the put's cost: 5.6 -> 11 ms
measured on ext4). It is written only after the commit, so it never runs ahead of the database and
a kill or power cut at any point invents no loss; a power cut can leave it up to HWM_SYNC_S
behind, so a loss within that last second would go uncounted. At open, sequence numbers the mark
covers and the database does not are counted durably as `lost_on_disk` (kind `unknown`: which
kinds they were went with them; an upper bound, as some may have been delivered already), logged
as an error, and reported in the status message and `/metrics` like every drop; numbering then
continues above the mark, so the loss is counted once and no number is issued twice. We count
rather than refuse to start: the rows are gone either way, and a daemon that does not start stops
reading every board, which loses more (SECURITY.md, threat 3). Whoever discards an outbox on
purpose deletes its `.hwm` with it.

Ids: the `id` column is UNIQUE. A second put of a known id (the board re-sent an EVENT whose ACK
was lost, or analytics recomputed a trip after a restart) changes nothing and returns KNOWN. A
message re-issued with a higher `revision` (late facts from the board's journal changed a past day)
is keyed by id and revision (`row_id`), so it is stored and sent under the same message id.
Delivered and dropped rows keep their id (payload cleared) for `keep_ids_s`, so such a re-put does
not resend a message the broker already has.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import logging
import os
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
from .outbox_sidefiles import merge_drops, open_preallocated, read_hwm_file, read_shed_file, rewrite_in_place

from liftwatch.errors import LiftwatchError

_LOG = logging.getLogger(__name__)

ROW_OVERHEAD_BYTES = 96
"""Approximate bytes a row costs beyond its payload (ids, index entries), charged to the budget."""

DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024
"""64 MiB: roughly 290 car-days at the 200 kB/car/day upstream target (docs/upstream.md); small on an SD card."""

MAX_MESSAGE_BYTES = 256 * 1024
"""A single message larger than this is a producer bug, refused with InvalidMessageError."""

KEEP_IDS_S = 7 * 24 * 3600
"""How long the id of a delivered/dropped message is remembered to absorb late re-puts."""

DEFAULT_RESERVE_BYTES = 8 * 1024 * 1024
"""8 MiB set aside for a full disk. Measured on a full tmpfs: 12,600 trips of 450 bytes, 5,800 of
1.1 kB (with ride quality): three to six days of a ten-car site at 200 trips per car and day."""

SHED_FILE_BYTES = 4096
"""Size of the preallocated shed counter file: a few dozen (reason, kind) counts as JSON."""

HWM_FILE_BYTES = 64
"""Size of the preallocated high-water mark file: one sequence number as JSON."""

HWM_SYNC_S = 1.0
"""Longest time the high-water mark goes without an fsync while puts commit (as the replay state)."""

_SQLITE_FULL = 13  # sqlite3 primary result codes (the low byte of an extended code)
_SQLITE_IOERR = 10  # a WAL write that meets ENOSPC can surface as an I/O error

_WAL_PAGES = 1000  # SQLite's default autocheckpoint
_RESERVE_WAL_PAGES = 8  # while the reserve is out: a WAL of a few pages, restarted after each checkpoint

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


def row_id(message: Mapping[str, Any]) -> str:
    """The outbox's unique key of a message: its id, and its revision when re-issued (a daily record
    or visit that late facts changed), so a re-issue is stored and sent while a re-put is KNOWN."""
    revision = message.get("revision") or 0
    return message["id"] if not revision else f"{message['id']}#r{revision}"


class DeliveryState(IntEnum):
    """Stored in the `state` column; values are on disk, never renumber."""

    PENDING = 0
    DELIVERED = 1
    DROPPED = 2
    REJECTED = 3  # the broker refused it (PUBACK reason >= 0x80, e.g. ACL); kept for an operator


class OutboxDropReason(str, Enum):
    """Why a message was dropped; the string is what the status message reports."""

    OUTBOX_FULL = "outbox_full"  # evicted, or refused on arrival, to keep within budget_bytes
    DISK_FULL = "disk_full"  # the filesystem is full: RAW refused while the reserve is out, facts shed()
    LOST_ON_DISK = "lost_on_disk"  # issued (the high-water mark says so) but gone from the database at open


class PutOutcome(Enum):
    """What put() did. All three mean "durably settled": the caller may ACK its source."""

    STORED = "stored"
    KNOWN = "known"  # the id was already in the outbox (pending, delivered or dropped)
    DROPPED = "dropped"  # budget full and nothing of lower priority to evict; counted


class OutboxError(LiftwatchError):
    """Base of outbox errors."""


class OutboxWriteError(OutboxError):
    """SQLite could not commit (disk full, I/O error). Nothing was stored: do not ACK the source.

    `disk_full` is set when the filesystem has no room even after the reserve was released: the
    caller should `shed()` what it can re-derive from nothing else and keep only what the board
    re-sends."""

    def __init__(self, message: str, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


class OutboxInUseError(OutboxError):
    """Another process has this outbox open. Two writers would each keep their own byte count and
    publish the same messages; `outbox_stats(path)` reads a live outbox without opening it."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A pending message as the publisher sees it: `payload` is the exact JSON to send."""

    seq: int
    id: str  # the outbox's key (`row_id`): the message id, with its revision when re-issued
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
    reserve_released: bool = False  # the disk filled up and the reserve is in use; see module docstring

    def to_status(self) -> dict[str, Any]:
        """The `outbox` and `drops` fields of the status message."""
        return {
            "outbox": {
                "pending": self.pending,
                "pending_bytes": self.pending_bytes,
                "budget_bytes": self.budget_bytes,
                "rejected": self.rejected,
                "oldest_pending_unix_ms": self.oldest_pending_unix_ms,
                "reserve_released": self.reserve_released,
            },
            "drops": self.drops,
        }


class Outbox:
    """SQLite-backed, budgeted, priority-aware message store shared by analytics and upstream.

    Thread-safe: one connection behind a lock. Blocking calls take milliseconds (one fsync per
    put); asyncio code uses `call()` (or `aput()`), which runs them in FIFO order on one worker thread.
    """

    def __init__(
        self,
        path: str | Path,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        priorities: Mapping[str, Priority] = DEFAULT_PRIORITIES,
        keep_ids_s: float = KEEP_IDS_S,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    ) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be positive, got {budget_bytes}")
        if reserve_bytes < 0:
            raise ValueError(f"reserve_bytes must be >= 0, got {reserve_bytes}")
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
        self.reserve_bytes = reserve_bytes
        self.reserve_path = self.path.with_name(self.path.name + ".reserve")
        self.shed_path = self.path.with_name(self.path.name + ".shed")
        self._shed_fd = open_preallocated(self.shed_path, SHED_FILE_BYTES)
        self._shed = read_shed_file(self.shed_path)
        self.hwm_path = self.path.with_name(self.path.name + ".hwm")
        self._hwm_fd = open_preallocated(self.hwm_path, HWM_FILE_BYTES)
        self._hwm = 0
        self._hwm_synced_at = 0.0  # monotonic time of its last fsync
        self._hwm_dirty = False
        self.lost_on_open = self._check_high_water_mark()
        self.reserve_held = self._make_reserve()

    def _issued_seq(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'message'").fetchone()
        return int(row[0]) if row else 0

    def _check_high_water_mark(self) -> int:
        """Compare the database with the mark at open; count and log what it lost. Returns how many."""
        issued = self._issued_seq()
        mark = read_hwm_file(self.hwm_path)
        if mark is None or mark <= issued:  # first open (or an outbox from before the mark): start it here
            self._hwm = mark or 0
            self._raise_high_water_mark(issued)
            return 0
        lost = mark - issued
        with self._transaction():
            self._count_drops(OutboxDropReason.LOST_ON_DISK, {"unknown": lost})
            # Number on from the mark: the loss is counted once, and no seq is issued twice.
            if self._db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'message'", (mark,)).rowcount == 0:
                self._db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('message', ?)", (mark,))
        self._hwm = mark
        _LOG.error("outbox %s: %d messages issued up to seq %d are not in the database (truncated, replaced, "
                   "or its -wal deleted); counted as lost_on_disk", self.path, lost, mark)
        return lost

    def _raise_high_water_mark(self, issued: int) -> None:
        """Record durably that sequence numbers up to `issued` were committed. A failure leaves the
        mark behind (a later loss is undercounted, never invented) and is logged, not raised: the
        messages themselves are committed."""
        if issued <= self._hwm or self._hwm_fd is None:
            return
        now = time.monotonic()
        sync = now - self._hwm_synced_at >= HWM_SYNC_S
        try:
            rewrite_in_place(self._hwm_fd, json.dumps({"seq": issued}).encode(), HWM_FILE_BYTES, sync=sync)
        except OSError as err:
            _LOG.warning("outbox %s: high-water mark not written: %s", self.hwm_path, err)
            return
        self._hwm = issued
        self._hwm_dirty = not sync
        if sync:
            self._hwm_synced_at = now

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
        outcomes = self._with_reserve(lambda: self._put_encoded(encoded))
        if PutOutcome.STORED in outcomes:
            for listener in list(self._listeners):
                listener()
        return outcomes

    def _with_reserve(self, write: Callable[[], Any]) -> Any:
        """Run one write transaction; if it meets a full disk, release the reserve and run it again."""
        with self._lock:
            if not self.reserve_held:
                self.reserve_held = self._make_reserve()
            try:
                return write()
            except OutboxWriteError as err:
                if not err.disk_full or not self.reserve_held:
                    raise
                _LOG.error("outbox %s: disk full, reserve of %d bytes released; RAW messages refused until "
                           "there is room again", self.path, self.reserve_bytes)
                self._release_reserve()
                return write()

    def _put_encoded(self, encoded: Sequence[tuple[Mapping[str, Any], bytes]]) -> list[PutOutcome]:
        outcomes: list[PutOutcome] = []
        pending_bytes = self._pending_bytes
        with self._transaction():
            for message, payload in encoded:
                outcome, pending_bytes = self._insert(message, payload, pending_bytes)
                outcomes.append(outcome)
        self._pending_bytes = pending_bytes
        if any(outcome is not PutOutcome.KNOWN for outcome in outcomes):  # new rows took sequence numbers
            self._raise_high_water_mark(self._issued_seq())
        return outcomes

    def _make_reserve(self) -> bool:
        """Ensure the reserve file exists at full size; False if the disk has no room for it twice.

        Twice: a reserve re-created into the last free bytes would be released again by the very
        next put, and each release is a spell in which RAW messages are refused."""
        if self.reserve_bytes == 0:
            return True
        try:
            if self.reserve_path.stat().st_size >= self.reserve_bytes:
                return True
        except FileNotFoundError:
            pass
        try:
            st = os.statvfs(self.reserve_path.parent)
            if st.f_bavail * st.f_frsize < 2 * self.reserve_bytes:
                return False
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            self.reserve_path.unlink(missing_ok=True)
            return False
        self._db.execute(f"PRAGMA wal_autocheckpoint={_WAL_PAGES}")
        return True

    def _release_reserve(self) -> None:
        """Free the reserve, and make the WAL stop growing into it: every commit appends each page
        it touched (30 kB for a 2 kB trip with its index pages), and the WAL only restarts from its
        beginning after a checkpoint. So the WAL is folded into the database now and after every
        few pages, and the reserve pays for new rows, not for copies of old pages."""
        self.reserve_path.unlink(missing_ok=True)
        self.reserve_held = False
        try:
            self._db.execute(f"PRAGMA wal_autocheckpoint={_RESERVE_WAL_PAGES}")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as err:  # a reader holds the WAL: the autocheckpoint catches up later
            _LOG.warning("outbox %s: checkpoint on a full disk: %s", self.path, err)

    def shed(self, messages: Sequence[Mapping[str, Any]], reason: OutboxDropReason = OutboxDropReason.DISK_FULL) -> None:
        """Count messages that cannot be stored at all (disk full beyond the reserve) and forget them.

        The count goes to the preallocated shed file, rewritten in place and fsync'd, so it needs no
        free block and survives a SIGKILL. Raises OutboxWriteError if even that fails: then the
        caller must keep the messages (they are neither stored nor counted)."""
        with self._lock:
            counts = {r: dict(k) for r, k in self._shed.items()}
            by_kind = counts.setdefault(reason.value, {})
            for message in messages:
                by_kind[message["kind"]] = by_kind.get(message["kind"], 0) + 1
            text = json.dumps(counts, sort_keys=True).encode()
            if self._shed_fd is None or len(text) >= SHED_FILE_BYTES:
                raise OutboxWriteError(f"outbox {self.path}: cannot count shed messages in {self.shed_path}")
            try:
                rewrite_in_place(self._shed_fd, text, SHED_FILE_BYTES)
            except OSError as err:
                raise OutboxWriteError(f"outbox {self.shed_path}: {err}") from err
            self._shed = counts

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
                code = getattr(err, "sqlite_errorcode", 0) & 0xFF
                raise OutboxWriteError(f"outbox {self.path}: {err}",
                                       disk_full=code in (_SQLITE_FULL, _SQLITE_IOERR)) from err

    def _refuse(self, message: Mapping[str, Any], priority: int, now_ms: int, reason: OutboxDropReason) -> None:
        """Record a newcomer that is not kept: its id (so a re-put is KNOWN) and a drop count."""
        self._db.execute(
            "INSERT INTO message (id, kind, site, car, priority, state, size, stored_unix_ms, payload)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (row_id(message), message["kind"], message["site"], message["car"], int(priority),
             DeliveryState.DROPPED, 0, now_ms),
        )
        self._count_drops(reason, {message["kind"]: 1})

    def _insert(self, message: Mapping[str, Any], payload: bytes, pending_bytes: int) -> tuple[PutOutcome, int]:
        """One put inside the open transaction; returns the outcome and the new pending byte count."""
        db = self._db
        mid = row_id(message)
        if db.execute("SELECT 1 FROM message WHERE id = ?", (mid,)).fetchone():
            return PutOutcome.KNOWN, pending_bytes
        kind = message["kind"]
        priority = self.priority_of(kind)
        cost = len(payload) + ROW_OVERHEAD_BYTES
        now_ms = int(time.time() * 1000)
        if not self.reserve_held and priority >= Priority.RAW:
            # The disk is full and the reserve is for facts: status and raw data are superseded by
            # the next ones anyway.
            self._refuse(message, priority, now_ms, OutboxDropReason.DISK_FULL)
            return PutOutcome.DROPPED, pending_bytes
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
                self._refuse(message, priority, now_ms, OutboxDropReason.OUTBOX_FULL)
                return PutOutcome.DROPPED, pending_bytes
            dropped: dict[str, int] = {}
            for seq, size, vkind in victims:
                db.execute(
                    "UPDATE message SET state = ?, payload = NULL WHERE seq = ?", (DeliveryState.DROPPED, seq)
                )
                pending_bytes -= size + ROW_OVERHEAD_BYTES
                dropped[vkind] = dropped.get(vkind, 0) + 1
            self._count_drops(OutboxDropReason.OUTBOX_FULL, dropped)
        db.execute(
            "INSERT INTO message (id, kind, site, car, priority, state, size, stored_unix_ms, payload)"
            " VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
            (mid, kind, message["site"], message["car"], int(priority), len(payload), now_ms, payload),
        )
        return PutOutcome.STORED, pending_bytes + cost

    def _count_drops(self, reason: OutboxDropReason, by_kind: Mapping[str, int]) -> None:
        for kind, n in by_kind.items():
            self._db.execute(
                "INSERT INTO drop_count (reason, kind, count) VALUES (?, ?, ?)"
                " ON CONFLICT (reason, kind) DO UPDATE SET count = count + excluded.count",
                (reason.value, kind, n),
            )

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` for asyncio code on the outbox's one worker thread, FIFO across callers.

        Every async user of the outbox (the pipelines' puts, the publisher's reads and settles)
        goes through here, so the event loop never waits for an fsync and one thread holds the
        SQLite connection in order."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def aput(self, message: Mapping[str, Any]) -> PutOutcome:
        """put() for asyncio code (see `call`)."""
        return await self.call(self.put, message)

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

        def settle() -> int:
            freed = 0
            changed = 0
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

        # Settling frees pages for new facts, so it may use the reserve too.
        return self._with_reserve(settle)

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
        """{reason: {kind: count}} since the outbox was created, shed messages included."""
        with self._lock:
            return merge_drops(_read_drops(self._db), self._shed)

    def stats(self) -> OutboxStats:
        with self._lock:
            stats = _read_stats(self._db, self.budget_bytes, self._shed)
        return dataclasses.replace(stats, reserve_released=not self.reserve_held)

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
            if self._hwm_fd is not None and self._hwm_dirty:
                try:
                    os.fsync(self._hwm_fd)
                except OSError as err:
                    _LOG.warning("outbox %s: high-water mark not synced: %s", self.hwm_path, err)
            for fd in (self._shed_fd, self._hwm_fd):
                if fd is not None:
                    os.close(fd)
            self._shed_fd = self._hwm_fd = None
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


def _read_stats(db: sqlite3.Connection, budget_bytes: int,
                shed: Mapping[str, Mapping[str, int]] | None = None) -> OutboxStats:
    pending, pending_bytes, oldest = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) + COUNT(*) * ?, MIN(stored_unix_ms) FROM message WHERE state = 0",
        (ROW_OVERHEAD_BYTES,),
    ).fetchone()
    (rejected,) = db.execute("SELECT COUNT(*) FROM message WHERE state = ?", (DeliveryState.REJECTED,)).fetchone()
    return OutboxStats(pending, pending_bytes, budget_bytes, rejected, oldest,
                       merge_drops(_read_drops(db), shed or {}))


def outbox_stats(path: str | Path, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> OutboxStats:
    """Depth and drops of an outbox another process (the running daemon) has open; read-only.

    For `liftwatch status`. WAL readers do not block the writer, and this takes no outbox lock.
    """
    path = Path(path)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        return _read_stats(db, budget_bytes, read_shed_file(path.with_name(path.name + ".shed")))
    finally:
        db.close()
