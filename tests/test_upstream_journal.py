"""The embedded default upstream: a JSON Lines journal, fsync'd per batch, when no broker is configured."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from liftwatch.edge_daemon import upstream as upstream_module
from liftwatch.edge_daemon.envelope import make_message, message_id, utc_iso
from liftwatch.edge_daemon.outbox import Outbox
from liftwatch.edge_daemon.upstream import JournalPublisher, Upstream, UpstreamConfig
from support.upstream import schema_validator, sigkill_after_ready


def fact(i: int) -> dict[str, Any]:
    return make_message(("event", "trip", "maintenance", "daily")[i % 4], "site1", f"car{i % 3}", "board1",
                        utc_iso(time.time()), f"k{i}", {"n": i})


def read_journal(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


async def drain(upstream: Upstream, outbox: Outbox, timeout_s: float = 10) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(upstream.run(outbox, stop), name="upstream")
    deadline = time.monotonic() + timeout_s
    while (outbox.stats().pending or upstream.counters.connects == 0) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_default_without_broker_is_a_journal_in_order_with_status(tmp_path: Path) -> None:
    journal = tmp_path / "up" / "upstream.jsonl"
    config = UpstreamConfig("site1", "pi1", journal_path=journal)
    upstream = Upstream(config)
    assert isinstance(upstream.publisher, JournalPublisher)
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put_many([fact(i) for i in range(50)])
    await drain(upstream, outbox)
    # A second run appends only what is new: delivered messages are not written again.
    outbox.put_many([fact(i) for i in range(50, 60)])
    await drain(Upstream(config), outbox)
    lines = read_journal(journal)
    facts = [m for m in lines if m["kind"] != "status"]
    assert [m["n"] for m in facts] == list(range(60))
    assert [m["id"] for m in facts] == [fact(i)["id"] for i in range(60)]
    statuses = [m for m in lines if m["kind"] == "status"]
    assert [(m["state"], m["reason"]) for m in statuses] == [("online", "started"), ("offline", "shutdown")] * 2
    envelope, status = schema_validator("envelope"), schema_validator("status")
    for m in facts:
        envelope.validate(m)
    for m in statuses:
        status.validate(m)
    assert statuses[-1]["outbox"]["pending"] == 0 and statuses[-1]["upstream"]["delivered"] == 10
    outbox.close()


async def test_fsync_per_batch_not_per_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal fsyncs
        fsyncs += 1
        real_fsync(fd)

    class JournalOs:  # the journal's own fsyncs only: the outbox fsyncs too (its reserve file)
        def __getattr__(self, name: str) -> Any:
            return counting_fsync if name == "fsync" else getattr(os, name)

    monkeypatch.setattr(upstream_module, "os", JournalOs())
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put_many([fact(i) for i in range(2000)])
    await drain(Upstream(UpstreamConfig("site1", "pi1", journal_path=tmp_path / "j.jsonl")), outbox)
    assert len([m for m in read_journal(tmp_path / "j.jsonl") if m["kind"] != "status"]) == 2000
    assert fsyncs <= 2000 // upstream_module.JOURNAL_BATCH + 1 + 2  # batches + the two status lines
    outbox.close()


async def test_torn_last_line_is_cut_and_rewritten(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put_many([fact(i) for i in range(5)])
    # A previous run died mid-write: a complete line, then half of one, never marked delivered.
    journal.write_bytes(json.dumps({"kind": "status", "state": "online"}).encode() + b"\n" + b'{"v":1,"id":"tor')
    await drain(Upstream(UpstreamConfig("site1", "pi1", journal_path=journal)), outbox)
    lines = read_journal(journal)  # raises if a torn line were left
    assert [m["n"] for m in lines if m["kind"] != "status"] == list(range(5))
    outbox.close()


_JOURNAL_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from liftwatch.edge_daemon.envelope import make_message, utc_iso
    from liftwatch.edge_daemon.outbox import Outbox
    from liftwatch.edge_daemon.upstream import Upstream, UpstreamConfig
    db, journal, start = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])

    async def main():
        outbox = Outbox(db)
        stop = asyncio.Event()
        task = asyncio.create_task(Upstream(UpstreamConfig("site1", "pi1", journal_path=journal)).run(outbox, stop))
        print("READY", flush=True)
        i = start
        while True:
            await outbox.aput(make_message(("event", "trip", "maintenance", "daily")[i % 4], "site1", f"car{i % 3}",
                                           "board1", utc_iso(time.time()), f"k{i}", {"n": i}))
            print("ACK", i, flush=True)
            i += 1

    asyncio.run(main())
    """
)


async def test_sigkill_mid_journal_loses_nothing(tmp_path: Path) -> None:
    db, journal = tmp_path / "outbox.db", tmp_path / "j.jsonl"
    rng = random.Random(7)
    acked: list[int] = []
    for _ in range(6):
        with Outbox(db) as outbox:
            start = outbox._db.execute("SELECT COUNT(*) FROM message").fetchone()[0]
        acked += sigkill_after_ready([sys.executable, "-c", _JOURNAL_CHILD, str(db), str(journal), str(start)],
                                     rng, 0.05, 0.4)
    outbox = Outbox(db)
    await drain(Upstream(UpstreamConfig("site1", "pi1", journal_path=journal)), outbox)
    lines = read_journal(journal)  # every line parses: torn tails were cut on restart
    facts = [m for m in lines if m["kind"] != "status"]
    first: dict[str, dict[str, Any]] = {}
    for m in facts:
        first.setdefault(m["id"], m)
    assert len(acked) > 100
    missing = [i for i in acked if message_id(fact(i)["kind"], "site1", f"car{i % 3}", f"k{i}") not in first]
    assert missing == []
    ns = [m["n"] for m in first.values()]
    assert ns == sorted(ns)  # one writer, seq order: in order overall, so per car too
    print(f"\n{len(acked)} acked, {len(first)} distinct in journal, {len(facts) - len(first)} duplicate lines")
    outbox.close()


def test_journal_to_stdout_without_status_for_replay(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    with Outbox(db) as outbox:
        outbox.put_many([fact(i) for i in range(10)])
    child = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        from liftwatch.edge_daemon.outbox import Outbox
        from liftwatch.edge_daemon.upstream import Upstream, UpstreamConfig

        async def main():
            outbox = Outbox(sys.argv[1])
            up = Upstream(UpstreamConfig("site1", "pi1", journal_path=Path("-"), journal_status=False))
            stop = asyncio.Event()
            task = asyncio.create_task(up.run(outbox, stop))
            while outbox.stats().pending:
                await asyncio.sleep(0.01)
            stop.set()
            await task
            outbox.close()

        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", child, str(db)], capture_output=True, timeout=30, check=True)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [m["id"] for m in lines] == [fact(i)["id"] for i in range(10)]  # facts only, no status lines


_FULL_JOURNAL_CHILD = textwrap.dedent(
    """
    import asyncio, resource, signal, sys
    from pathlib import Path
    from liftwatch.edge_daemon.outbox import Outbox
    from liftwatch.edge_daemon.upstream import Upstream, UpstreamConfig

    async def main():
        outbox = Outbox(sys.argv[1])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG, like ENOSPC on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
        stop = asyncio.Event()
        await Upstream(UpstreamConfig("site1", "pi1", journal_path=Path(sys.argv[2]))).run(outbox, stop)

    asyncio.run(main())
    """
)


def test_full_disk_leaves_whole_lines_and_resumes(tmp_path: Path) -> None:
    db, journal = tmp_path / "outbox.db", tmp_path / "j.jsonl"
    messages = [dict(fact(i), pad="x" * 1000) for i in range(300)]
    with Outbox(db) as outbox:
        outbox.put_many(messages)
    limit = 100_000  # the journal needs ~330 kB
    child = subprocess.Popen([sys.executable, "-c", _FULL_JOURNAL_CHILD, str(db), str(journal), str(limit)],
                             stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)  # writes, hits the limit, cuts the torn batch, retries once a second
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.stderr is not None
    assert "not written, retrying" in child.stderr.read()
    child.stderr.close()
    assert journal.stat().st_size <= limit
    partial = read_journal(journal)  # whole lines only
    assert [m["id"] for m in partial if m["kind"] != "status"] == [m["id"] for m in messages[: len(partial) - 1]]
    with Outbox(db) as outbox:
        asyncio.run(drain(Upstream(UpstreamConfig("site1", "pi1", journal_path=journal)), outbox))
    first: dict[str, Any] = {}
    for m in read_journal(journal):
        first.setdefault(m["id"], m)
    assert {m["id"] for m in messages} <= first.keys()


async def test_a_status_line_the_full_disk_refuses_does_not_stop_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_append = upstream_module._append

    def append(journal: Any, lines: list[bytes]) -> None:
        if any(b'"status"' in line for line in lines):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_append(journal, lines)

    monkeypatch.setattr(upstream_module, "_append", append)
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put_many([fact(i) for i in range(3)])
    await drain(Upstream(UpstreamConfig("site1", "pi1", journal_path=tmp_path / "j.jsonl")), outbox)
    assert [m["n"] for m in read_journal(tmp_path / "j.jsonl")] == [0, 1, 2]  # facts, no status lines
    assert outbox.stats().pending == 0
    outbox.close()


@pytest.mark.parametrize("provided", [KeyError("board7"), {"boards": [{"rms_mg": float("nan")}]}])
async def test_a_failing_status_provider_does_not_stop_delivery(tmp_path: Path, provided: object) -> None:
    def provider() -> Any:
        if isinstance(provided, Exception):
            raise provided
        return provided

    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put_many([fact(i) for i in range(3)])
    await drain(Upstream(UpstreamConfig("site1", "pi1", journal_path=tmp_path / "j.jsonl"), status_provider=provider),
                outbox)
    lines = read_journal(tmp_path / "j.jsonl")  # strict JSON: no NaN got through
    assert [m["n"] for m in lines if m["kind"] != "status"] == [0, 1, 2]
    statuses = [m for m in lines if m["kind"] == "status"]
    assert [m["state"] for m in statuses] == ["online", "offline"] and "boards" not in statuses[0]
    outbox.close()


async def test_status_provider_fields_reach_the_status(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    provider = lambda: {"boards": [{"board": "b1", "firmware_path": tmp_path}]}  # noqa: E731 - a Path, as str
    await drain(Upstream(UpstreamConfig("site1", "pi1", journal_path=tmp_path / "j.jsonl"), status_provider=provider),
                outbox)
    (online,) = [m for m in read_journal(tmp_path / "j.jsonl") if m.get("state") == "online"]
    assert online["boards"] == [{"board": "b1", "firmware_path": str(tmp_path)}]
    schema_validator("status").validate(online)
    outbox.close()


async def test_journal_rotates_between_batches_and_keeps_the_newest_files(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    config = UpstreamConfig("site1", "pi1", journal_path=journal, journal_status=False,
                            journal_max_bytes=4000, journal_keep=3)
    outbox = Outbox(tmp_path / "outbox.db")
    sent = []
    for round_ in range(12):  # one batch per round: rotation only ever happens between batches
        batch = [fact(round_ * 30 + i) for i in range(30)]
        outbox.put_many(batch)
        sent += batch
        await drain(Upstream(config), outbox)
    files = [journal.with_name(f"j.jsonl.{n}") for n in (3, 2, 1)] + [journal]
    assert sorted(tmp_path.glob("j.jsonl*")) == sorted(files)  # .4 and older were dropped
    kept = [m for f in files for m in read_journal(f)]  # every file holds whole batches
    assert [m["id"] for m in kept] == [m["id"] for m in sent[-len(kept):]]
    assert len(kept) % 30 == 0 and len(kept) < len(sent)
    outbox.close()
