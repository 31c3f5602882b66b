"""The fleet store on SQLite and on PostgreSQL (same schema, same queries): each fact once by id, a
higher revision replaces, quarantine and unregistered cars kept, alarms queued once."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from support.fleet import T0, event, visit
from support.fullfs import fill, small_tmpfs

from liftwatch.fleet.store import Fact, Lift, Quarantined, StoreError, open_store


def lift(car: str, code: str, rescue: str) -> Lift:
    return Lift(car, code, rescue, "1 Wenhui Rd", "Block 3", "Xizi Maintenance", "PICC", 1800.0, 86400.0, 2400.0,
                "2019-06-01")


@pytest.fixture
def store(fleet_store_url):
    s = open_store(fleet_store_url)
    yield s
    s.close()


def test_each_fact_is_stored_once_and_a_higher_revision_replaces_it(store):
    raised = event("car-1", "door_open_too_long", "raised", T0)
    first = store.store_batch([Fact.of(raised)], registered_cars=frozenset({"car-1"}))
    assert (first.stored, first.duplicates) == (1, 0)
    again = store.store_batch([Fact.of(raised), Fact.of(raised)], registered_cars=frozenset({"car-1"}))
    assert (again.stored, again.replaced, again.duplicates) == (0, 0, 2)

    corrected = dict(raised, revision=2, detail={"floor": 3})
    older = dict(raised, revision=1, detail={"floor": 9})
    outcome = store.store_batch([Fact.of(corrected), Fact.of(older)], registered_cars=frozenset({"car-1"}))
    assert (outcome.replaced, outcome.duplicates) == (1, 1)
    [kept] = store.facts(["car-1"])
    assert kept["revision"] == 2 and kept["detail"] == {"floor": 3}
    assert store.counts()["event"] == 1


def test_a_fact_id_cannot_be_taken_over_by_another_car_or_claimed_by_another_site(store):
    """The attacks: a Pi re-uses a fact id of another car of its site with a higher revision, to
    overwrite that fact; a Pi of another site publishes the id first (ids are reproducible), to block
    the genuine fact or replace it."""
    genuine = event("car-1", "entrapment", "raised", T0, site="hz-gongshu-1")
    preclaim = dict(genuine, site="hz-xihu-9", car="car-66", revision=5, detail={"note": "nothing happened"})
    store.store_batch([Fact.of(preclaim)])
    outcome = store.store_batch([Fact.of(genuine)])
    assert (outcome.stored, outcome.quarantined) == (1, 0)  # not blocked: filed under its own site
    forged = [dict(genuine, car="car-2", revision=5), dict(genuine, kind="door_cycle", revision=5),
              dict(preclaim, revision=9)]  # the last only replaces the forger's own
    outcome = store.store_batch([Fact.of(m) for m in forged])
    assert (outcome.stored, outcome.replaced, outcome.quarantined) == (0, 1, 2)
    assert store.facts(["car-1"]) == [genuine]
    reasons = [reason for _, _, reason, _ in store.quarantine()]
    assert all(f"id {genuine['id']} belongs to a event fact of car 'car-1' of this site" in r for r in reasons)
    claimed = store.claim_alarms(T0 + 1e10, 30)  # each site's entrapment is pushed, as its own
    assert sorted(m["site"] for _, _, m in claimed) == ["hz-gongshu-1", "hz-xihu-9"]


def test_a_batch_with_the_same_id_twice_keeps_the_highest_revision(store):
    m = visit("car-1", T0, 45)
    outcome = store.store_batch([Fact.of(dict(m, revision=3)), Fact.of(dict(m, revision=1)), Fact.of(m)])
    assert (outcome.stored, outcome.duplicates) == (1, 2)
    assert store.facts()[0]["revision"] == 3


def test_quarantine_keeps_the_message_and_the_reason(store):
    store.store_batch([], [Quarantined("liftwatch/s/c/trip", "bad JSON: x", b"{nope")])
    [(received, topic, reason, payload)] = store.quarantine()
    assert (topic, reason, payload) == ("liftwatch/s/c/trip", "bad JSON: x", b"{nope")
    assert store.counts()["quarantined"] == 1


def test_an_unregistered_car_is_stored_flagged_and_unflagged_by_its_registration(store):
    outcome = store.store_batch([Fact.of(visit("car-9", T0, 50))], registered_cars=frozenset())
    assert (outcome.stored, outcome.unregistered) == (1, 1)
    assert store.unregistered_cars() == {"car-9": 1}
    store.replace_registry([lift("car-9", "31103301002019060001", "10001")])
    assert store.unregistered_cars() == {}
    assert store.registered_cars() == {"car-9"}
    assert [x.rescue_code for x in store.lifts()] == ["10001"]


def test_an_entrapment_is_queued_for_escalation_once(store):
    trapped = event("car-1", "entrapment", "raised", T0)
    cleared = event("car-1", "entrapment", "cleared", T0 + 900, raised_t=T0)
    door = event("car-1", "door_open_too_long", "raised", T0)
    alarm = event("car-2", "alarm_button", "raised", T0 + 5)
    first = store.store_batch([Fact.of(m) for m in (trapped, cleared, door, alarm)], now=T0 + 1)
    assert first.escalations == 2
    assert store.store_batch([Fact.of(trapped), Fact.of(dict(trapped, revision=1))]).escalations == 0
    assert store.alarm_states() == {trapped["id"]: "pending", alarm["id"]: "pending"}
    claimed = store.claim_alarms(T0 + 10, lease_s=30)
    assert {fid for fid, _, _ in claimed} == {trapped["id"], alarm["id"]}
    assert store.claim_alarms(T0 + 11, lease_s=30) == []  # leased: a second escalator gets none


def test_facts_are_selected_by_car_and_period(store):
    day = 86400.0
    messages = [visit("car-1", T0 + i * day, 45) for i in range(5)] + [visit("car-2", T0, 45)]
    store.store_batch([Fact.of(m) for m in messages])
    got = store.facts(["car-1"], T0 + day, T0 + 3 * day)
    assert [m["start_ts"] for m in got] == [messages[1]["start_ts"], messages[2]["start_ts"]]
    assert len(store.facts(None, kinds=["maintenance"])) == 6
    assert store.facts([]) == []
    assert store.cars() == ["car-1", "car-2"]


def test_registry_replacement_is_all_or_nothing(store):
    store.replace_registry([lift("car-1", "A1", "10001")])
    with pytest.raises(StoreError):
        store.replace_registry([lift("car-2", "A2", "10002"), lift("car-3", "A2", "10003")])  # UNIQUE code
    assert [x.car for x in store.lifts()] == ["car-1"]


def test_a_full_disk_commits_nothing_and_says_so(tmp_path):
    with small_tmpfs(tmp_path, 1) as fs:
        store = open_store(fs / "fleet.sqlite")
        store.store_batch([Fact.of(visit("car-1", T0, 45))])
        fill(fs / "ballast")
        big = [Fact.of(visit("car-1", T0 + i, 45 + i % 7)) for i in range(3000)]
        with pytest.raises(StoreError):
            store.store_batch(big)
        store.close()
        (fs / "ballast").unlink()
        db = sqlite3.connect(fs / "fleet.sqlite")
        assert db.execute("SELECT COUNT(*) FROM fact").fetchone()[0] == 1
        db.close()


def test_a_store_that_cannot_open_is_a_typed_error(tmp_path):
    with pytest.raises(StoreError, match="cannot open"):
        open_store(tmp_path / "missing-folder" / "fleet.sqlite")
    with pytest.raises(StoreError, match="cannot connect"):
        open_store("postgresql://nobody:secret@127.0.0.1:1/x")


def test_the_body_is_the_message(store):
    m = event("car-1", "overspeed", "raised", T0, detail={"v_mps": 1.9, "名": "超速"})
    store.store_batch([Fact.of(m)])
    assert store.facts(["car-1"]) == [json.loads(json.dumps(m))]


def test_a_dropped_postgresql_connection_fails_one_call_and_the_next_reconnects(postgres_cluster):
    import psycopg

    url = postgres_cluster.database()
    store = open_store(url)
    store.store_batch([Fact.of(visit("car-1", T0, 45))])
    with psycopg.connect(url, autocommit=True) as admin:  # the server restarts under the ingest, in effect
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                      " AND pid <> pg_backend_pid()")
    with pytest.raises(StoreError):
        store.store_batch([Fact.of(visit("car-1", T0 + 86400, 45))])
    outcome = store.store_batch([Fact.of(visit("car-1", T0 + 86400, 45))])
    assert outcome.stored == 1 and store.counts()["maintenance"] == 2


def test_ingest_processes_starting_together_on_a_new_database_all_open_it(fleet_store_url):
    errors: list[Exception] = []

    def open_and_close() -> None:
        try:
            open_store(fleet_store_url).close()
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=open_and_close) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_revised_maintenance_visit_replaces_its_first_issue_and_is_counted_once(store):
    """A visit the board's journal changed after it went out (issue 15) comes again under its id with
    a higher revision: neither a new visit nor a duplicate; the fleet reads the longer, revised one."""
    first = visit("car-1", T0, 30)
    revised = dict(first, revision=1, end_ts=visit("car-1", T0, 55)["end_ts"], duration_s=3300.0, too_short=False,
                   inspection_runs=3)
    outcome = store.store_batch([Fact.of(first)], registered_cars=frozenset({"car-1"}))
    assert (outcome.stored, outcome.replaced, outcome.duplicates) == (1, 0, 0)
    outcome = store.store_batch([Fact.of(revised), Fact.of(first)], registered_cars=frozenset({"car-1"}))
    assert (outcome.stored, outcome.replaced, outcome.duplicates) == (0, 1, 1)
    [kept] = store.facts(["car-1"])
    assert (kept["revision"], kept["duration_s"], kept["too_short"], kept["inspection_runs"]) == (1, 3300.0, False, 3)
    assert store.counts()["maintenance"] == 1
