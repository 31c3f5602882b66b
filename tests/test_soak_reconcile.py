"""The soak's reconciliation (benchmarks/soak_reconcile.py `Ledger.match_records`) pairs what the boards did with
what arrived upstream. A wrong pairing reads as a lost trip that was delivered, or hides one that was
lost; these cases pin the rules down without running a soak.
"""

from __future__ import annotations

from benchmarks.soak_reconcile import Item, Ledger


def harness(items, offset_history, clock_steps=(), speed=300.0) -> Ledger:
    """A ledger with only what reconciliation reads (no boards, no daemon)."""
    return Ledger(speed, items=list(items), offset_history=list(offset_history), clock_steps=list(clock_steps))


def trip(start, floors=2, board=2):
    return Item("trip", board, start, start + 9.0, floors=floors)


def records(*starts, floors=2, car="car-2"):
    return {(car, "trip"): [(t, f"r{i}", floors) for i, t in enumerate(starts)]}


# Offsets of the clock-jump soak that once "lost" car-2's trip at 14783.9: +2400 s around 5183 and
# +7800 s around 14783, and +17400 s hours later, which maps the second record 0.5 s from the first.
HISTORY = [(4844.4, 2400.0), (5855.9, 1800.0), (13745.4, 7800.0), (26274.8, 17400.0)]
STEPS = [at for at, _ in HISTORY]


def test_a_record_fits_only_under_offsets_the_daemon_had_during_the_trip() -> None:
    a, b = trip(5183.4), trip(14783.9)
    # b's record, 0.5 s from a's start under +17400, an offset of hours later: not a's.
    assert harness([a], HISTORY, STEPS).match_records(records(14783.9 + 7800)) == {}
    matched = harness([a, b], HISTORY, STEPS).match_records(records(5183.4 + 2400 + 0.6, 14783.9 + 7800))
    assert matched == {0: ["r0"], 1: ["r1"]}


def test_offsets_during_an_item_include_the_one_in_force_at_its_start_and_later_steps() -> None:
    s = harness([], HISTORY, STEPS)
    assert s.offsets_during(5183.4, 5192.4) == {2400.0}
    assert s.offsets_during(5700.0, 5709.0) == {2400.0, 1800.0}  # a step right after it (read lag)
    assert s.offsets_during(100.0, 109.0) == {0.0}
    assert s.offsets_during(30000.0, 30009.0) == {17400.0}


def test_no_item_takes_a_record_another_item_cannot_do_without() -> None:
    # The first trip's own record is 30 s early, the second trip's 29 s early and so 20 s after the
    # first trip: taking the closest for the first trip would leave the second without a record.
    first, second = trip(1000.0), trip(1049.0)
    s = harness([first, second], [])
    assert s.match_records(records(970.0, 1020.0)) == {0: ["r0"], 1: ["r1"]}


def test_a_second_record_beside_the_taken_one_is_a_duplicate_and_other_floors_never_match() -> None:
    s = harness([trip(1000.0, floors=3)], [])
    assert s.match_records(records(1000.2, 1001.5, floors=3)) == {0: ["r0", "r1"]}
    assert s.match_records(records(1000.2, floors=4)) == {}
    # Floors unknown (frames lost while it moved): the trip is there, its count honestly missing.
    assert s.match_records(records(1000.2, floors=None)) == {0: ["r0"]}
    assert s.match_records(records(1000.2, floors=3, car="car-1")) == {}


def test_a_restarted_daemon_starts_again_from_the_true_time() -> None:
    # A SIGKILLed daemon comes back with offset 0: a trip after the restart is matched under 0, not
    # under the offset the dead daemon had.
    s = harness([trip(5000.0)], [(1000.0, 3600.0), (4000.0, 0.0)], [1000.0])
    assert s.match_records(records(5000.0 + 3600.0)) == {}
    assert s.match_records(records(5000.3)) == {0: ["r0"]}


def test_a_journalled_item_is_never_excused_by_a_line_fault() -> None:
    """Against the boards' journals: a trip the board journalled must arrive (or still be in its
    journal, re-sent); a serial cut that lost its live frames excuses nothing."""
    kept, pending, gone, cut_live = trip(1000.0), trip(2000.0), trip(3000.0), trip(4000.0)
    for item, seq in ((kept, 0), (pending, 1), (gone, 2)):
        item.journal_seq = seq
    for item in (pending, gone, cut_live):
        item.risks.add("serial_cut")
    upstream = [{"id": "t0", "kind": "trip", "car": "car-2", "start_ts": "2026-01-01T00:16:40Z", "floors": 2}]
    verdict = harness([kept, pending, gone, cut_live], []).reconcile(upstream, journal_unacked={2: {1}})
    assert verdict["table"]["trip"] == {"made": 4, "journalled": 2, "once": 1, "pending_on_board": 1, "lost": 1,
                                        "dropped:serial_cut": 1, "upstream_unmatched": 0}
    assert (verdict["lost"], verdict["pending_on_board"], verdict["dropped_by_reason"]) == (1, 1, {"serial_cut": 1})


def test_a_journalled_trip_of_a_boot_no_daemon_mapped_is_mistimed_only_as_often_as_the_daemon_says() -> None:
    # The short soak's case: a board boot began and ended while the daemon was down (killed, then a
    # watchdog reset), so its journal record went upstream at its arrival time, not its own.
    items = [Item("trip", 2, 1000.0, 1009.0, floors=2, journal_seq=5), Item("trip", 2, 2000.0, 2009.0, floors=2,
                                                                            journal_seq=6)]
    counted = harness(items, []).reconcile([], {"journal_unmapped.car-2": 1})
    assert (counted["mistimed"], counted["lost"]) == (1, 1)  # one record timed by arrival; the other is lost
    assert counted["table"]["trip"]["mistimed:journal_timed_by_arrival"] == 1
    assert harness(items[:1], []).reconcile([], {})["lost"] == 1  # nothing counted: lost
    assert harness(items[:1], []).reconcile([], {"journal_unmapped.car-1": 1})["lost"] == 1  # another car's
