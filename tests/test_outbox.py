"""Outbox: durability across SIGKILL, ids, priorities and the budget, drop accounting."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from support.fullfs import fill, small_tmpfs
from hypothesis import strategies as st

from liftwatch.edge_daemon.envelope import InvalidMessageError, make_message, message_id, validate_envelope
from liftwatch.edge_daemon.outbox import (
    ROW_OVERHEAD_BYTES,
    DeliveryState,
    Outbox,
    OutboxError,
    OutboxInUseError,
    OutboxWriteError,
    PutOutcome,
    outbox_stats,
)

TS = "2026-11-25T10:00:00.000Z"


def acked_keys(stdout: Iterable[str]) -> list[int]:
    """Keys a killed child reported as acknowledged. Only whole lines count: SIGKILL can tear the last."""
    return [int(line.split()[1]) for line in stdout if line.startswith("ACK ") and line.endswith("\n")]


def msg(kind: str, key: str, car: str = "car1", pad: int = 0) -> dict:
    return make_message(kind, "site1", car, "board1", TS, key, {"pad": "x" * pad})


def test_put_then_pending_in_order_and_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    with Outbox(db) as outbox:
        sent = [msg("trip", f"t{i}", car=f"car{i % 2}") for i in range(10)]
        assert [outbox.put(m) for m in sent] == [PutOutcome.STORED] * 10
    with Outbox(db) as outbox:
        pending = outbox.pending(limit=100)
        assert [p.id for p in pending] == [m["id"] for m in sent]
        assert [p.car for p in pending] == [m["car"] for m in sent]
        assert outbox.pending(after_seq=pending[4].seq, limit=2) == pending[5:7]
        assert outbox.mark_delivered([p.seq for p in pending[:3]]) == 3
        assert outbox.mark_delivered([pending[0].seq]) == 0  # a duplicate PUBACK settles nothing twice
    with Outbox(db) as outbox:
        assert [p.id for p in outbox.pending()] == [m["id"] for m in sent[3:]]
        assert outbox.state_of(sent[0]["id"]) is DeliveryState.DELIVERED
        assert outbox.stats().pending == 7


def test_known_id_is_not_stored_twice_even_after_delivery(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        event = msg("event", "board1/boot3/event17")
        assert outbox.put(event) is PutOutcome.STORED
        assert outbox.put(dict(event)) is PutOutcome.KNOWN
        (pending,) = outbox.pending()
        outbox.mark_delivered([pending.seq])
        # The board re-sent the EVENT because our ACK was lost: same key, same id, nothing new to send.
        assert outbox.put(msg("event", "board1/boot3/event17")) is PutOutcome.KNOWN
        assert outbox.pending() == []


def test_a_reissue_with_a_higher_revision_is_stored_under_the_same_id(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        day = msg("daily", "car1:daily:2026-01-01")
        assert outbox.put(day) is PutOutcome.STORED
        (first,) = outbox.pending()
        outbox.mark_delivered([first.seq])
        # Late facts from the board's journal changed that day: the record again, revision 1.
        again = {**day, "revision": 1}
        assert outbox.put(again) is PutOutcome.STORED
        assert outbox.put(dict(again)) is PutOutcome.KNOWN  # a re-put of the same revision
        (second,) = outbox.pending()
        sent = json.loads(second.payload)
        assert (sent["id"], sent["revision"]) == (day["id"], 1)  # what subscribers see: one id, revised
        assert outbox.put({**day, "revision": 0}) is PutOutcome.KNOWN


def test_rejected_messages_step_aside_and_can_be_requeued(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.put_many([msg("trip", f"t{i}") for i in range(3)])
        first, second, third = outbox.pending()
        full = outbox.stats().pending_bytes
        assert outbox.mark_rejected([second.seq]) == 1  # e.g. the broker's ACL refused it
        assert outbox.pending() == [first, third]
        assert outbox.stats().rejected == 1 and outbox.stats().pending_bytes < full
        assert outbox.requeue_rejected() == 1  # after the ACL fix: sent again, original seq
        assert outbox.pending() == [first, second, third]
        assert outbox.stats().rejected == 0 and outbox.stats().pending_bytes == outbox._pending_bytes == full


def test_ids_are_stable_and_distinct() -> None:
    assert message_id("trip", "s", "c1", "k") == message_id("trip", "s", "c1", "k")
    ids = {message_id(kind, "s", car, key) for kind in ("trip", "event") for car in ("c1", "c2") for key in "ab"}
    assert len(ids) == 8


@pytest.mark.parametrize(
    ("field", "value"),
    [("ts", "2026-11-25 10:00:00"), ("ts", "2026-11-25T10:00:00+08:00"), ("site", "a/b"), ("car", "#"),
     ("kind", "Trip"), ("v", 0), ("v", True), ("id", ""), ("board", 3)],
)
def test_bad_envelope_is_refused_with_the_field_named(tmp_path: Path, field: str, value: object) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        good = msg("trip", "t1")
        bad = dict(msg("trip", "t2"), **{field: value})
        with pytest.raises(InvalidMessageError) as err:
            outbox.put_many([good, bad])
        assert err.value.field == field
        assert outbox.pending() == []  # all or none: the good one was not half-stored
        assert outbox.put(good) is PutOutcome.STORED


def test_missing_field_and_unserialisable_values_are_typed_errors(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        no_car = {k: v for k, v in msg("trip", "t").items() if k != "car"}
        with pytest.raises(InvalidMessageError, match="'car'"):
            outbox.put(no_car)
        with pytest.raises(InvalidMessageError, match="JSON"):
            outbox.put(dict(msg("trip", "t"), peak_speed_mps=float("nan")))
        with pytest.raises(InvalidMessageError, match="exceeds"):
            outbox.put(msg("trip", "huge", pad=300_000))
        assert outbox.stats().pending == 0


def test_budget_drops_lowest_priority_oldest_first_and_never_faults_or_maintenance(tmp_path: Path) -> None:
    budget = 20 * (1000 + ROW_OVERHEAD_BYTES)
    db = tmp_path / "o.db"
    with Outbox(db, budget_bytes=budget) as outbox:
        for i in range(5):
            outbox.put(msg("status", f"s{i}", pad=900))
        for i in range(5):
            outbox.put(msg("daily", f"d{i}", pad=900))
        for i in range(8):
            outbox.put(msg("trip", f"t{i}", pad=900))
        assert outbox.drop_counts() == {}
        # Faults and maintenance push everything droppable out: status first, then trips, then daily.
        for i in range(12):
            assert outbox.put(msg("event", f"e{i}", pad=900)) is PutOutcome.STORED
        kinds = [p.kind for p in outbox.pending(limit=1000)]
        assert kinds.count("status") == 0
        assert kinds.count("daily") == 5
        drops = outbox.drop_counts()["outbox_full"]
        assert drops["status"] == 5
        assert 0 < drops["trip"] < 8
        # Oldest trips went first.
        surviving_trips = [p.id for p in outbox.pending(limit=1000) if p.kind == "trip"]
        assert surviving_trips == [msg("trip", f"t{i}")["id"] for i in range(drops["trip"], 8)]
        # Beyond the budget, protected kinds are still stored; the rest of the droppable data goes.
        for i in range(30):
            assert outbox.put(msg("maintenance" if i % 2 else "event", f"x{i}", pad=900)) is PutOutcome.STORED
        kinds = [p.kind for p in outbox.pending(limit=1000)]
        assert set(kinds) == {"event", "maintenance"}
        assert kinds.count("event") == 12 + 15 and kinds.count("maintenance") == 15
        assert outbox.stats().pending_bytes > budget
        # A trip now has nothing below it to evict: refused, counted, and its id remembered.
        trip = msg("trip", "late", pad=900)
        assert outbox.put(trip) is PutOutcome.DROPPED
        assert outbox.put(trip) is PutOutcome.KNOWN
        drops = outbox.drop_counts()["outbox_full"]
        assert drops == {"status": 5, "trip": 9, "daily": 5}
        assert outbox.state_of(trip["id"]) is DeliveryState.DROPPED
        stats = outbox.stats()
    with Outbox(db, budget_bytes=budget) as reopened:
        assert reopened.drop_counts() == {"outbox_full": drops}
        assert reopened.stats().pending_bytes == stats.pending_bytes


def test_same_priority_keeps_the_newest(tmp_path: Path) -> None:
    one = len(msg("trip", "t00", pad=500)["pad"]) + 200 + ROW_OVERHEAD_BYTES
    with Outbox(tmp_path / "o.db", budget_bytes=5 * one) as outbox:
        for i in range(20):
            assert outbox.put(msg("trip", f"t{i:02d}", pad=500)) is PutOutcome.STORED
        ids = [p.id for p in outbox.pending()]
        assert ids == [msg("trip", f"t{i:02d}")["id"] for i in range(20 - len(ids), 20)]
        assert outbox.drop_counts()["outbox_full"]["trip"] == 20 - len(ids)
        assert outbox.stats().pending_bytes <= 5 * one


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["event", "maintenance", "trip", "daily", "status", "vib"]),
                          st.integers(0, 3000), st.booleans()), min_size=1, max_size=60))
def test_budget_invariants(ops: list[tuple[str, int, bool]]) -> None:
    """Whatever arrives: protected kinds are never dropped, every message is accounted for exactly
    once (pending, delivered or counted as dropped), and droppable data never holds the outbox
    over budget."""
    budget = 12_000
    with tempfile.TemporaryDirectory() as tmp, Outbox(Path(tmp) / "o.db", budget_bytes=budget) as outbox:
        stored: dict[str, str] = {}
        for i, (kind, pad, deliver_oldest) in enumerate(ops):
            m = msg(kind, f"k{i}", pad=pad)
            stored[m["id"]] = kind
            outbox.put(m)
            if deliver_oldest and (pending := outbox.pending(limit=1)):
                outbox.mark_delivered([pending[0].seq])
        states = {mid: outbox.state_of(mid) for mid in stored}
        dropped_by_kind: dict[str, int] = {}
        for mid, state in states.items():
            assert state is not None
            if state is DeliveryState.DROPPED:
                assert stored[mid] not in ("event", "maintenance")
                dropped_by_kind[stored[mid]] = dropped_by_kind.get(stored[mid], 0) + 1
        assert outbox.drop_counts().get("outbox_full", {}) == dropped_by_kind
        pending = outbox.pending(limit=10_000)
        droppable = [p for p in pending if p.kind not in ("event", "maintenance")]
        protected_bytes = sum(len(p.payload) + ROW_OVERHEAD_BYTES for p in pending if p not in droppable)
        total = sum(len(p.payload) + ROW_OVERHEAD_BYTES for p in pending)
        assert total == outbox.stats().pending_bytes == outbox._pending_bytes  # the running count is exact
        if droppable:
            assert total <= max(budget, protected_bytes)


async def test_aput_from_asyncio_notifies_listeners(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        woke = asyncio.Event()
        loop = asyncio.get_running_loop()
        outbox.add_listener(lambda: loop.call_soon_threadsafe(woke.set))
        outcomes = await asyncio.gather(*(outbox.aput(msg("event", f"e{i}")) for i in range(20)))
        assert outcomes == [PutOutcome.STORED] * 20
        await asyncio.wait_for(woke.wait(), 1)
        # FIFO on the outbox's worker: seq order is the order the coroutines were started in.
        assert [p.id for p in outbox.pending()] == [msg("event", f"e{i}")["id"] for i in range(20)]


def test_one_writer_per_outbox_and_a_read_only_view_for_status(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    with Outbox(db, budget_bytes=10_000) as outbox:
        outbox.put(msg("event", "e0"))
        with pytest.raises(OutboxInUseError):
            Outbox(db)
        live = outbox_stats(db, budget_bytes=10_000)  # what `liftwatch status` shows while the daemon runs
        assert live == outbox.stats() and live.pending == 1
        with pytest.raises(sqlite3.OperationalError):  # read-only really is read-only
            sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("DELETE FROM message")
    with Outbox(db) as reopened:  # closing released the lock
        assert reopened.stats().pending == 1


def test_a_file_that_is_not_an_outbox_is_a_typed_error(tmp_path: Path) -> None:
    bogus = tmp_path / "o.db"
    bogus.write_bytes(b"this is not a SQLite database" * 100)
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox(bogus)
    assert bogus.read_bytes().startswith(b"this is not")  # left alone for someone to look at


def test_write_failure_is_typed_and_stores_nothing(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    with Outbox(db) as outbox:
        outbox.put(msg("event", "e0"))
        # Another writer holds the database: the put cannot commit and must say so, not pretend.
        blocker = sqlite3.connect(db, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")
        outbox._db.execute("PRAGMA busy_timeout=50")
        with pytest.raises(OutboxWriteError):
            outbox.put(msg("event", "e1"))
        blocker.execute("ROLLBACK")
        blocker.close()
        assert [p.id for p in outbox.pending()] == [msg("event", "e0")["id"]]
        assert outbox.put(msg("event", "e1")) is PutOutcome.STORED


_CHILD = textwrap.dedent(
    """
    import sys
    from liftwatch.edge_daemon.envelope import make_message
    from liftwatch.edge_daemon.outbox import Outbox
    path, start = sys.argv[1], int(sys.argv[2])
    outbox = Outbox(path, budget_bytes=10**9)
    print("READY", flush=True)
    i = start
    while True:
        # Re-put the previous key first: a board re-sending an EVENT whose ACK was lost.
        if i > 0:
            outbox.put(make_message("event", "s", f"car{(i - 1) % 3}", "b", "2026-01-01T00:00:00Z",
                                    f"k{i - 1}", {"n": i - 1}))
        outbox.put(make_message("event", "s", f"car{i % 3}", "b", "2026-01-01T00:00:00Z", f"k{i}", {"n": i}))
        print("ACK", i, flush=True)  # the session would ACK the board here
        if i % 7 == 0:
            outbox.mark_delivered([m.seq for m in outbox.pending(limit=3)])
        i += 1
    """
)


def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    rng = random.Random(0x11F7)
    acked: list[int] = []
    next_key = 0
    for _ in range(8):
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(db), str(next_key)],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY"
        time.sleep(rng.uniform(0.01, 0.25))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        acked += acked_keys(child.stdout)
        child.stdout.close()
        # Resume after whatever the child had stored (acknowledged or not).
        with Outbox(db) as outbox:
            rows = outbox._db.execute("SELECT id FROM message").fetchall()
        next_key = max(next_key, len(rows))
    assert len(acked) > 50, "the child should have acknowledged a fair number of puts"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = conn.execute("SELECT id, state, payload FROM message ORDER BY seq").fetchall()
    conn.close()
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "an id was stored twice"
    expected = [message_id("event", "s", f"car{k % 3}", f"k{k}") for k in acked]
    position = {mid: i for i, mid in enumerate(ids)}
    missing = [k for k, mid in zip(acked, expected) if mid not in position]
    assert missing == [], f"acknowledged puts lost after SIGKILL: {missing[:10]}"
    # Stored in the order they were acknowledged, and every pending row still has its payload.
    assert [position[mid] for mid in expected] == sorted(position[mid] for mid in expected)
    for mid, state, payload in rows:
        assert state in (DeliveryState.PENDING, DeliveryState.DELIVERED)
        if state == DeliveryState.PENDING:
            validate_envelope(json.loads(payload))
    with Outbox(db) as outbox:  # a kill at any point is not a loss: the high-water mark never runs ahead
        assert "lost_on_disk" not in outbox.drop_counts()


# issue 14, item 6: attacks on the outbox file that SQLite cannot notice by itself.
LOST = 200


def _assert_loss_counted_once(db: Path, caplog: pytest.LogCaptureFixture, lost: int) -> None:
    with caplog.at_level("ERROR", logger="liftwatch.edge_daemon.outbox"):
        with Outbox(db) as outbox:
            assert outbox.stats().pending == 0
            assert outbox.drop_counts().get("lost_on_disk") == {"unknown": lost}  # nothing silent
            assert outbox.lost_on_open == lost
            assert outbox.stats().to_status()["drops"]["lost_on_disk"] == {"unknown": lost}  # the status message
            assert outbox.put(msg("trip", "after")) is PutOutcome.STORED
            assert outbox.pending()[0].seq > lost  # no sequence number issued twice
    assert any("lost_on_disk" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    with Outbox(db) as outbox:  # counted once, not at every start
        assert outbox.lost_on_open == 0 and outbox.drop_counts()["lost_on_disk"] == {"unknown": lost}
        assert [p.id for p in outbox.pending()] == [msg("trip", "after")["id"]]


def test_an_outbox_truncated_to_nothing_counts_its_loss(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "outbox.db"
    with Outbox(db) as outbox:
        outbox.put_many([msg("trip", f"t{i}") for i in range(LOST)])
        assert outbox.stats().pending == LOST
    os.truncate(db, 0)
    _assert_loss_counted_once(db, caplog, LOST)


_WAL_WRITER = textwrap.dedent(
    """
    import sys, time
    from liftwatch.edge_daemon.envelope import make_message
    from liftwatch.edge_daemon.outbox import Outbox
    outbox = Outbox(sys.argv[1])
    outbox._db.execute("PRAGMA wal_autocheckpoint=0")  # the 200 commits stay in the -wal, as between checkpoints
    for i in range(int(sys.argv[2])):
        outbox.put(make_message("trip", "site1", "car1", "b", "2026-01-01T00:00:00Z", f"t{i}", {}))
    print("PUT", flush=True)
    time.sleep(60)
    """
)


def test_a_wal_deleted_after_a_kill_counts_its_loss(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "outbox.db"
    Outbox(db).close()  # the database file exists, empty, as after a checkpoint
    child = subprocess.Popen([sys.executable, "-c", _WAL_WRITER, str(db), str(LOST)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "PUT\n"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    wal = db.with_name(db.name + "-wal")
    assert wal.stat().st_size > 0
    wal.unlink()
    _assert_loss_counted_once(db, caplog, LOST)


_DISK_FULL_CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    from liftwatch.edge_daemon.envelope import make_message
    from liftwatch.edge_daemon.outbox import Outbox, OutboxWriteError
    outbox = Outbox(sys.argv[1])
    # Every file this process writes is capped: SQLite meets a full disk (EFBIG instead of SIGXFSZ).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
    i = 0
    try:
        while True:
            outbox.put(make_message("event", "s", "car1", "b", "2026-01-01T00:00:00Z", f"k{i}", {"pad": "x" * 2000}))
            print("ACK", i, flush=True)
            i += 1
    except OutboxWriteError as err:
        print("FULL", err, flush=True)
    """
)


def test_disk_full_is_a_typed_error_and_keeps_what_was_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    Outbox(db).close()
    out = subprocess.run([sys.executable, "-c", _DISK_FULL_CHILD, str(db), "300000"],
                         capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines(keepends=True)
    assert lines and lines[-1].startswith("FULL"), out.stdout[-500:] + out.stderr[-2000:]
    acked = acked_keys(lines)
    assert len(acked) > 10
    # Space is back: everything acknowledged is there, intact, and the outbox takes new messages.
    with Outbox(db) as outbox:
        assert outbox._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert [p.id for p in outbox.pending(limit=10_000)] == [
            message_id("event", "s", "car1", f"k{i}") for i in acked
        ]
        assert outbox.put(msg("event", "after")) is PutOutcome.STORED


# -- a genuinely full filesystem: a small tmpfs (needs root; CI runs the suite as root) -----------------


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 4 MiB tmpfs."""
    with small_tmpfs(tmp_path, 4) as mount:
        yield mount


def test_full_disk_spends_the_reserve_on_facts_and_refuses_raw_by_name(small_fs: Path) -> None:
    db = small_fs / "o.db"
    with Outbox(db, reserve_bytes=512 * 1024) as outbox:
        assert outbox.reserve_path.stat().st_size == 512 * 1024
        outbox.put(msg("trip", "before"))
        fill(small_fs / "filler")
        # The commit meets SQLITE_FULL, the reserve goes, and the trip is stored after all.
        for i in range(20):
            assert outbox.put(msg("trip", f"t{i}", pad=2000)) is PutOutcome.STORED
        assert outbox.put(msg("maintenance", "m0")) is PutOutcome.STORED
        assert not outbox.reserve_path.exists() and outbox.stats().reserve_released
        assert outbox.put(msg("status", "s0")) is PutOutcome.DROPPED
        assert outbox.drop_counts() == {"disk_full": {"status": 1}}
        assert outbox.stats().to_status()["outbox"]["reserve_released"] is True
        # Settling delivered messages works on the full disk too (the upstream records its PUBACKs).
        assert outbox.mark_delivered([m.seq for m in outbox.pending(limit=5)]) == 5
        (small_fs / "filler").unlink()
        # Space is back: the next put re-creates the reserve first, and RAW is stored again.
        assert outbox.put(msg("status", "s1")) is PutOutcome.STORED
        assert outbox.reserve_path.stat().st_size == 512 * 1024 and not outbox.stats().reserve_released
        assert len(outbox.pending(limit=100)) == 1 + 20 + 1 + 1 - 5
    assert outbox_stats(db).drops == {"disk_full": {"status": 1}}


_FULL_DISK_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from liftwatch.edge_daemon.envelope import make_message
    from liftwatch.edge_daemon.outbox import Outbox, OutboxWriteError
    db = Path(sys.argv[1])
    outbox = Outbox(db, reserve_bytes=256 * 1024)
    with open(db.parent / "filler", "ab", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\\xff" * size)
            except OSError:
                pass
    i = 0
    while True:
        m = make_message("trip", "s", "car1", "b", "2026-01-01T00:00:00Z", f"k{i}", {"pad": "x" * 3000})
        print("TRY", i, flush=True)
        try:
            outbox.put(m)
            print("ACK", i, flush=True)
        except OutboxWriteError as err:
            assert err.disk_full, err
            outbox.shed([m])  # what the daemon does with a derived fact it cannot store
            print("SHED", i, flush=True)
        i += 1
    """
)


def test_sigkill_on_a_disk_full_beyond_the_reserve_loses_nothing_uncounted(small_fs: Path) -> None:
    db = small_fs / "o.db"
    child = subprocess.Popen([sys.executable, "-c", _FULL_DISK_CHILD, str(db)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while sum(line.startswith("SHED ") for line in lines) < 5 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        lines.append(line)
    os.kill(child.pid, signal.SIGKILL)  # right in the middle of putting and shedding
    child.wait()
    lines += child.stdout.readlines()
    stderr = child.stderr.read() if child.stderr else ""
    child.stdout.close()
    child.stderr.close()
    tried = [int(line.split()[1]) for line in lines if line.startswith("TRY ") and line.endswith("\n")]
    acked = acked_keys(lines)
    shed_lines = sum(1 for line in lines if line.startswith("SHED ") and line.endswith("\n"))
    assert shed_lines >= 5, "".join(lines[-5:]) + stderr[-2000:]
    assert len(acked) > 50, "the reserve (256 KiB) should have taken many 3 kB trips"
    (small_fs / "filler").unlink()
    with Outbox(db, reserve_bytes=256 * 1024) as outbox:
        stored = {p.id for p in outbox.pending(limit=10_000)}
        shed = outbox.drop_counts().get("disk_full", {}).get("trip", 0)
    assert {message_id("trip", "s", "car1", f"k{i}") for i in acked} <= stored
    # Every trip tried is stored or counted as disk_full; only the one in flight may be neither.
    assert shed >= shed_lines
    assert len(tried) - 1 <= len(stored) + shed <= len(tried)
