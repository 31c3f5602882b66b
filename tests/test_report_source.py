"""Reading upstream messages for a report from the JSON Lines journal and the real SQLite outbox."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from liftwatch.edge_daemon.outbox import Outbox
from liftwatch.edge_daemon.report.source import ReportSourceError, load_messages, message_time, parse_ts
from support.report_synth import CarLog, clean_week, known_week, local_ts


def test_parse_ts() -> None:
    assert parse_ts("2026-11-02T00:00:00.000Z") == local_ts("2026-11-02", "08:00")
    assert parse_ts("2026-11-02T08:00:00+08:00") == local_ts("2026-11-02", "08:00")
    assert parse_ts("2026-11-02T00:00:00") is None  # naive: malformed upstream
    assert parse_ts("yesterday") is None and parse_ts(12) is None


def test_message_time_prefers_the_fact_time() -> None:
    m = CarLog().trip(local_ts("2026-11-03", "10:00"))
    assert message_time(m) == local_ts("2026-11-03", "10:00")  # start_ts, not the later ts
    assert message_time({"ts": "2026-11-02T00:00:00Z"}) == local_ts("2026-11-02", "08:00")


def test_journal_bad_lines_are_skipped_with_line_numbers(tmp_path: Path) -> None:
    log = CarLog()
    log.trip(local_ts("2026-11-03", "10:00"))
    log.trip(local_ts("2026-11-03", "11:00"))
    good = [json.dumps(m) for m in log.messages]
    good[1] = json.dumps({**log.messages[1], "from_the_future": [1, 2]})
    path = tmp_path / "upstream.jsonl"
    path.write_text("\n".join([good[0], "{not json", "[1, 2]", '{"kind": "trip"}', "", good[1], good[0][:40]]) + "\n")
    loaded = load_messages([path])
    assert [m["id"] for m in loaded.messages] == [log.messages[0]["id"], log.messages[1]["id"]]
    assert loaded.messages[1]["from_the_future"] == [1, 2]
    assert [(s.where, s.reason.split(" ")[0]) for s in loaded.skipped] == [
        (2, "not"),
        (3, "not"),
        (4, "missing"),
        (7, "not"),
    ]
    assert all(s.path == path for s in loaded.skipped)


def test_the_highest_revision_of_an_id_is_the_one_kept(tmp_path: Path) -> None:
    log = known_week("car-1")
    daily = [m for m in log.messages if m["kind"] == "daily"]
    first = daily[0]
    revised = {**first, "revision": 2, "trips": first["trips"] + 5}
    stale = {**first, "revision": 1, "trips": first["trips"] + 3}
    path = tmp_path / "upstream.jsonl"
    path.write_text("\n".join(json.dumps(m) for m in [*log.messages, revised, stale, first]) + "\n")
    loaded = load_messages([path])
    kept = [m for m in loaded.messages if m["id"] == first["id"]]
    assert kept == [revised] and loaded.duplicates == 2
    assert loaded.messages.index(revised) == log.messages.index(first)  # where the first copy stood


def test_filters_car_time_with_margin_and_daily_days(tmp_path: Path) -> None:
    log = known_week("car-1")
    other = clean_week("car-2")
    log.messages += other.messages
    path = log.write_jsonl(tmp_path / "upstream.jsonl")
    lo, hi = local_ts("2026-11-04"), local_ts("2026-11-05")
    loaded = load_messages(
        [path], car="car-1", start_ts=lo, end_ts=hi, margin_s=3600, days=("2026-11-04", "2026-11-04")
    )
    assert {m["car"] for m in loaded.messages} == {"car-1"}
    assert {m["day"] for m in loaded.of_kind("daily")} == {"2026-11-04"}
    trips = loaded.of_kind("trip")
    assert len(trips) == 40  # 07:00..16:45 on 11-04 only: the margin hour reaches no other trip
    assert all(lo - 3600 <= message_time(m) < hi + 3600 for m in loaded.messages if m["kind"] != "daily")
    assert load_messages([path]).cars == ["car-1", "car-2"]


def test_outbox_pending_rows_and_journal_together(tmp_path: Path) -> None:
    """The real outbox: delivered rows lose their payload, so journal + outbox is the full record."""
    log = known_week()
    msgs = log.messages
    db = tmp_path / "outbox.sqlite"
    with Outbox(db) as outbox:
        outbox.put_many(msgs)
        delivered = outbox.pending(limit=100)
        outbox.mark_delivered([m.seq for m in delivered])
    only_outbox = load_messages([db])
    assert len(only_outbox.messages) == len(msgs) - 100
    assert [m["id"] for m in only_outbox.messages] == [m["id"] for m in msgs[100:]]
    journal = tmp_path / "upstream.jsonl"
    journal.write_text("".join(json.dumps(m) + "\n" for m in msgs[:150]))  # 50 overlap the outbox
    both = load_messages([journal, db])
    assert len(both.messages) == len(msgs) and both.duplicates == 50
    assert both.sources == (journal, db)


def test_outbox_is_opened_read_only(tmp_path: Path) -> None:
    db = tmp_path / "outbox.sqlite"
    with Outbox(db) as outbox:
        outbox.put_many(known_week().messages[:5])
    before = db.read_bytes()
    load_messages([db])
    assert db.read_bytes() == before


@pytest.mark.parametrize("case", ["missing", "directory", "foreign_db", "unreadable_payload"])
def test_typed_errors(tmp_path: Path, case: str) -> None:
    path = tmp_path / "src"
    if case == "directory":
        path.mkdir()
    elif case == "foreign_db":
        sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.commit()
    elif case == "unreadable_payload":
        with Outbox(path) as outbox:
            outbox.put(known_week().messages[0])
        con = sqlite3.connect(path)
        con.execute(
            "INSERT INTO message (id, kind, site, car, priority, size, stored_unix_ms, payload)"
            " VALUES ('bad', 'trip', 's', 'c', 2, 3, 0, x'ff00ff')"
        )
        con.commit()
        con.close()
        loaded = load_messages([path])
        assert len(loaded.messages) == 1 and loaded.skipped[0].where == 2
        return
    with pytest.raises(ReportSourceError) as err:
        load_messages([path])
    assert err.value.path == path
    assert {"missing": "no such file", "directory": "is a directory", "foreign_db": "not a liftwatch outbox"}[
        case
    ] in err.value.reason
