"""The board's journal on the daemon side (analytics/journal_fill.py, through session and pipeline):
a fact seen live and the same fact from the journal are one; what the live stream missed is filled
from the journal at its true times; every stored record is ACKed, a re-sent one again; another
board's journal is refused."""

from __future__ import annotations

import json
from pathlib import Path

from liftwatch.edge_daemon.analytics.config import AnalyticsConfig
from liftwatch.edge_daemon.analytics.engine import CarAnalytics
from liftwatch.edge_daemon.pipeline import CarPipeline, SessionState, load_session_state
from liftwatch.edge_daemon.report.source import load_messages
from liftwatch.edge_daemon.session import BoardSession, LinkMode, SessionConfig, SessionDrop
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol import messages as m
from liftwatch.protocol.framing import FrameReader, encode_frame

EPOCH_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z: board t_ms 0 maps here (frames arrive at once)
BOARD = "car-7-board"
LEVEL_CLOSED = lw.IN_DOOR_CLOSED | lw.IN_ZONE_UP | lw.IN_ZONE_DN


class ListStore:
    def __init__(self) -> None:
        self.messages: list = []

    async def put_many(self, messages) -> None:
        self.messages += messages


class Car:
    """A board's frames into a live pipeline, and the host frames the pipeline sends back."""

    def __init__(self, config: AnalyticsConfig | None = None, state_file: Path | None = None) -> None:
        """With `state_file`, the car's state file as the daemon keeps it, and taken up from it if it
        exists (a daemon restarted)."""
        self.store = ListStore()
        saved = load_session_state(state_file) if state_file is not None else SessionState([])
        self.session = BoardSession(SessionConfig(), LinkMode.LIVE, expected_board_id=BOARD,
                                    stored_journal=saved.journal, boot_offsets=saved.boot_offsets)
        self.pipe = CarPipeline("s", "car-7", self.session, CarAnalytics("car-7", config), self.store, BOARD,
                                event_memory=state_file)
        self.pipe.restore(saved)
        self.reader = FrameReader()
        self.seq = 0
        self.sent: list = []

    async def frame(self, mtype: int, payload, t_ms: int) -> None:
        (f,) = self.reader.feed(encode_frame(mtype, payload, 7, self.seq, t_ms))
        self.seq += 1
        await self.pipe.frames([f], EPOCH_S + t_ms / 1000.0)
        self._take()

    async def tick(self, t_ms: int) -> None:
        await self.pipe.tick(EPOCH_S + t_ms / 1000.0)
        self._take()

    def _take(self) -> None:
        decoder = lw.FrameDecoder()
        for wire in self.session.take_outgoing():
            self.sent.append(decoder.decode(wire, len(wire) - 1))

    async def hello(self, t_ms: int) -> None:
        await self.frame(lw.T_HELLO, [BOARD, "1.0.0", "lis3dh", 0, "power_on", [], 400, 16384, True, False, 7,
                                      [0, 0, 16384]], t_ms)

    async def state(self, t_ms: int, inputs: int, changed: int, motion: int) -> None:
        await self.frame(lw.T_STATE, [t_ms, inputs, changed, motion], t_ms)

    async def live_trip(self, t0: int, t1: int) -> None:
        """A one-floor trip up as the STATE frames tell it (no VIB: its ride quality is unknown)."""
        await self.state(t0, LEVEL_CLOSED, 0, lw.MOTION_ACCELERATING)
        await self.state(t0 + 500, lw.IN_DOOR_CLOSED | lw.IN_ZONE_DN, lw.IN_ZONE_UP, lw.MOTION_ACCELERATING)
        await self.state(t0 + 700, lw.IN_DOOR_CLOSED, lw.IN_ZONE_DN, lw.MOTION_MOVING)
        await self.state(t1 - 700, lw.IN_DOOR_CLOSED | lw.IN_ZONE_UP, lw.IN_ZONE_UP, lw.MOTION_DECELERATING)
        await self.state(t1 - 400, LEVEL_CLOSED, lw.IN_ZONE_DN, lw.MOTION_DECELERATING)
        await self.state(t1, LEVEL_CLOSED, 0, lw.MOTION_REST)

    async def journal(self, seq: int, kind: int, t0: int, t1: int, at_ms: int, *, board: str = BOARD,
                      count: int = 1, direction: int = 1, in0: int = LEVEL_CLOSED, in1: int = LEVEL_CLOSED,
                      boot: int = 7) -> None:
        record = m.pack_journal_record(seq, kind, boot, t0, t1, direction, count, 1500, in0, in1)
        await self.frame(lw.T_JOURNAL, [board, record, 0], at_ms)

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.store.messages if m["kind"] == kind]

    def journal_acks(self) -> list[int]:
        return [p[1] for t, _f, _b, _s, _t, p in self.sent if t == lw.T_ACK and p[0] == lw.T_JOURNAL]


async def test_a_link_cut_loses_no_trip_the_journal_fills_them_once_with_their_true_times() -> None:
    car = Car()
    await car.hello(1000)
    await car.live_trip(10_000, 19_000)
    await car.journal(0, lw.J_TRIP, 10_000, 19_000, 19_050)  # the same trip: one fact
    assert car.journal_acks() == []  # held until the live trip is decided (it waits for VIB)
    await car.tick(25_000)
    assert len(car.of("trip")) == 1 and car.journal_acks() == [0]
    # The cable is cut: two trips and a door cycle happen unseen. The link comes back, the board
    # re-sends its journal, oldest first.
    await car.journal(1, lw.J_TRIP, 600_000, 609_000, 3_600_000, count=2)
    await car.journal(2, lw.J_DOOR_CYCLE, 610_000, 616_000, 3_600_010, count=1, direction=0)
    await car.journal(3, lw.J_TRIP, 700_000, 708_000, 3_600_020, direction=-1, in1=lw.IN_DOOR_CLOSED | lw.IN_ZONE_UP)
    trips = car.of("trip")
    assert [t["source"] for t in trips] == ["live", "board_journal", "board_journal"]
    assert [t["start_ts"] for t in trips] == ["2026-01-01T00:00:10.000Z", "2026-01-01T00:10:00.000Z",
                                              "2026-01-01T00:11:40.000Z"]
    assert [t["end_ts"] for t in trips[1:]] == ["2026-01-01T00:10:09.000Z", "2026-01-01T00:11:48.000Z"]
    assert [t["ts"] for t in trips[1:]] == [t["end_ts"] for t in trips[1:]]  # the envelope's time is the fact's
    filled = trips[1:]
    assert all(t["ride_quality"] is None and t["from_floor"] is None for t in filled)
    assert [(t["direction"], t["floors"], t["peak_speed_mps"]) for t in filled] == [("up", 2, 1.5), ("down", 1, 1.5)]
    assert [t["leveling"]["status"] for t in filled] == ["level", "off_level"]
    assert len({t["id"] for t in trips}) == 3
    assert car.journal_acks() == [0, 1, 2, 3]
    assert car.pipe.analytics.journal.filled == 3 and car.pipe.analytics.journal.matched == 1
    # An ACK lost on the way: the board sends record 1 again; ACKed again, reported once.
    await car.journal(1, lw.J_TRIP, 600_000, 609_000, 3_600_100, count=2)
    assert len(car.of("trip")) == 3 and car.journal_acks() == [0, 1, 2, 3, 1]
    assert car.session.counters.journal_resent == 1


async def test_door_cycles_and_inspection_missed_live_are_filled() -> None:
    car = Car(AnalyticsConfig(emit_door_cycles=True))
    await car.hello(1000)
    await car.state(2000, LEVEL_CLOSED, 0, lw.MOTION_REST)
    await car.state(5000, LEVEL_CLOSED & ~lw.IN_DOOR_CLOSED, lw.IN_DOOR_CLOSED, lw.MOTION_REST)
    await car.state(9000, LEVEL_CLOSED, lw.IN_DOOR_CLOSED, lw.MOTION_REST)
    await car.tick(15_000)
    await car.journal(0, lw.J_DOOR_CYCLE, 5000, 9000, 15_100, count=0, direction=0)  # seen live
    await car.journal(1, lw.J_DOOR_CYCLE, 400_000, 409_000, 900_000, count=2, direction=0)
    await car.journal(2, lw.J_INSPECTION, 500_000, 2_900_000, 3_000_000, count=0, direction=0,
                      in0=LEVEL_CLOSED | lw.IN_INSPECTION)
    cycles = car.of("door_cycle")
    assert [(c["source"], c["reopenings"]) for c in cycles] == [("live", 0), ("board_journal", 2)]
    (visit,) = car.of("maintenance")
    assert visit["source"] == "board_journal" and visit["duration_s"] == 2400.0 and visit["too_short"] is False
    assert car.journal_acks() == [0, 1, 2]


async def test_a_releveling_or_inspection_run_from_the_journal_is_not_a_trip() -> None:
    car = Car()
    await car.hello(1000)
    await car.journal(0, lw.J_TRIP, 5000, 5600, 10_000, count=0)  # shorter than trip_min_s
    await car.journal(1, lw.J_TRIP, 20_000, 23_000, 30_000, count=0)  # never left the door zone
    await car.journal(2, lw.J_TRIP, 40_000, 60_000, 70_000, in0=LEVEL_CLOSED | lw.IN_INSPECTION)
    assert car.of("trip") == [] and car.journal_acks() == [0, 1, 2]


async def test_a_journal_from_another_board_is_refused_and_never_acked() -> None:
    car = Car()
    await car.hello(1000)
    await car.journal(0, lw.J_TRIP, 600_000, 609_000, 700_000, board="swapped-board")
    assert car.of("trip") == [] and car.journal_acks() == []
    assert car.session.counters.drops[SessionDrop.JOURNAL_FOREIGN] == 1
    await car.journal(0, lw.J_TRIP, 600_000, 609_000, 700_100)  # this board's own record 0 still counts
    assert len(car.of("trip")) == 1 and car.journal_acks() == [0]


async def test_a_trip_seen_live_is_one_fact_when_the_clock_moved_before_its_record_came() -> None:
    """The 24 h soak's duplicate: the clock's estimate moved by 5.7 s (a TIME_SYNC at 200x) between
    the live STATE of a start and the journal record of it. The record takes the UTC the live stream
    gave that board time, so it still matches."""
    car = Car()
    await car.hello(1000)
    await car.live_trip(10_000, 19_000)
    await car.tick(25_000)
    record = m.pack_journal_record(0, lw.J_TRIP, 7, 10_000, 19_000, 1, 1, 1500, LEVEL_CLOSED, LEVEL_CLOSED)
    (f,) = car.reader.feed(encode_frame(lw.T_JOURNAL, [BOARD, record, 0], 7, car.seq, 26_000))
    await car.pipe.frames([f], EPOCH_S + 26.0 - 5.7)  # heard 5.7 s "early": the clock moves back
    car._take()
    (trip,) = car.of("trip")
    assert trip["source"] == "live" and trip["start_ts"] == "2026-01-01T00:00:10.000Z"
    assert car.journal_acks() == [0] and car.pipe.analytics.journal.matched == 1


async def test_a_record_of_an_earlier_boot_maps_with_that_boot_s_clock() -> None:
    car = Car()
    await car.hello(1000)
    await car.tick(2000)
    # The board reboots (boot 8): its clock starts over, 1 h of UTC later; boot 7's record comes late.
    car.reader = FrameReader()
    (f,) = car.reader.feed(encode_frame(lw.T_HEARTBEAT, [1, 50000, 0, 0, 7, True, False], 8, 0, 100))
    await car.pipe.frames([f], EPOCH_S + 3600.0)
    record = m.pack_journal_record(5, lw.J_TRIP, 7, 300_000, 309_000, 1, 1, 1500, 7, 7)
    (f,) = car.reader.feed(encode_frame(lw.T_JOURNAL, [BOARD, record, 0], 8, 1, 200))
    await car.pipe.frames([f], EPOCH_S + 3600.1)
    (trip,) = car.of("trip")
    assert trip["start_ts"] == "2026-01-01T00:05:00.000Z" and trip["source"] == "board_journal"


async def test_a_record_of_a_boot_no_daemon_mapped_says_its_times_are_the_arrival_s() -> None:
    """A boot that began and ended while no daemon listened has no clock to map its records with:
    they go upstream at their arrival time, and say so, never as if at their own."""
    car = Car()
    await car.hello(1000)
    await car.tick(2000)
    record = m.pack_journal_record(9, lw.J_TRIP, 3, 300_000, 309_000, 1, 1, 1500, LEVEL_CLOSED, LEVEL_CLOSED)
    await car.frame(lw.T_JOURNAL, [BOARD, record, 0], 5000)  # boot 3: never heard of
    record = m.pack_journal_record(10, lw.J_TRIP, 7, 3_000, 4_000 + 9_000, 1, 1, 1500, LEVEL_CLOSED, LEVEL_CLOSED)
    await car.frame(lw.T_JOURNAL, [BOARD, record, 0], 14_000)  # this boot: its own times
    unmapped, mapped = car.of("trip")
    assert unmapped["source"] == "board_journal_arrival" and unmapped["end_ts"] == "2026-01-01T00:00:05.000Z"
    assert mapped["source"] == "board_journal" and mapped["start_ts"] == "2026-01-01T00:00:03.000Z"
    assert car.session.counters.journal_unmapped == 1 and car.journal_acks() == [9, 10]


async def test_a_boot_mapped_before_the_daemon_was_killed_keeps_its_clock_after_the_board_rebooted(
        tmp_path: Path) -> None:
    """The daemon is killed -9 a minute after boot 7 began; the board reboots before a daemon is back.
    Boot 7's records still get their own times: its clock offset was saved as soon as it was known
    (the short soak lost the time of such a trip once)."""
    state = tmp_path / "events-car-7.json"
    car = Car(state_file=state)
    await car.hello(1000)
    await car.tick(2000)
    assert car.pipe.boot_offset_unsaved()  # the board task saves on its next tick
    assert await car.pipe.save_state()
    assert not car.pipe.boot_offset_unsaved()
    restarted = Car(state_file=state)  # killed -9 here: nothing else was written
    (f,) = restarted.reader.feed(encode_frame(lw.T_HEARTBEAT, [1, 50000, 0, 0, 7, True, False], 8, 0, 100))
    await restarted.pipe.frames([f], EPOCH_S + 3600.0)  # boot 8, an hour later
    record = m.pack_journal_record(5, lw.J_TRIP, 7, 60_000, 69_000, 1, 1, 1500, LEVEL_CLOSED, LEVEL_CLOSED)
    (f,) = restarted.reader.feed(encode_frame(lw.T_JOURNAL, [BOARD, record, 0], 8, 1, 200))
    await restarted.pipe.frames([f], EPOCH_S + 3600.1)
    (trip,) = restarted.of("trip")
    assert trip["start_ts"] == "2026-01-01T00:01:00.000Z" and trip["source"] == "board_journal"
    assert restarted.session.counters.journal_unmapped == 0


async def test_late_trips_of_a_past_day_reissue_its_daily_record_with_a_higher_revision() -> None:
    car = Car(AnalyticsConfig(day_utc_offset_h=0.0))
    await car.hello(1000)
    await car.live_trip(10_000, 19_000)
    await car.tick(30_000)
    # The next local day starts: day 1's record is issued, then the board's journal
    # brings two trips of day 1 the daemon missed (the Pi was down that afternoon).
    next_day_ms = 86_400_000 + 5_000
    await car.tick(next_day_ms)
    (first,) = car.of("daily")
    assert (first["day"], first["trips"], first["revision"]) == ("2026-01-01", 1, 0)
    await car.journal(1, lw.J_TRIP, 50_000_000, 50_009_000, next_day_ms + 100)
    await car.journal(2, lw.J_TRIP, 60_000_000, 60_008_000, next_day_ms + 200, direction=-1)
    assert len(car.of("daily")) == 1  # not while the late facts keep coming
    await car.tick(next_day_ms + 1000)  # they came since the last tick: wait one more
    await car.tick(next_day_ms + 2000)
    daily = car.of("daily")
    assert [(d["day"], d["trips"], d["trips_down"], d["revision"]) for d in daily] == [
        ("2026-01-01", 1, 0, 0), ("2026-01-01", 3, 1, 1)]
    assert daily[0]["id"] == daily[1]["id"]  # the same fact, re-issued
    late = [t for t in car.of("trip") if t["source"] == "board_journal"]
    assert [t["ts"][:10] for t in late] == ["2026-01-01", "2026-01-01"]  # upstream with their true times
    await car.tick(next_day_ms + 3000)
    assert len(car.of("daily")) == 2  # nothing new: no further revision


async def test_a_visit_the_daemon_first_saw_mid_way_takes_its_start_from_the_journal() -> None:
    car = Car()
    await car.hello(1000)
    # The daemon starts while a technician is at work: inspection is on at the first STATE.
    await car.state(1_200_000, LEVEL_CLOSED | lw.IN_INSPECTION, 0, lw.MOTION_REST)
    await car.state(2_900_000, LEVEL_CLOSED, lw.IN_INSPECTION, lw.MOTION_REST)
    await car.journal(0, lw.J_INSPECTION, 400_000, 2_900_000, 2_900_050, count=0, direction=0,
                      in0=LEVEL_CLOSED | lw.IN_INSPECTION)
    assert car.journal_acks() == [0] and car.of("maintenance") == []
    await car.tick(2_900_000 + 601_000)  # the join gap passed: the visit is over
    (visit,) = car.of("maintenance")
    assert visit["start_ts"] == "2026-01-01T00:06:40.000Z" and visit["source"] == "live"
    assert visit["too_short"] is False  # 2500 s, not the 1700 s the daemon saw


async def test_a_visit_restored_after_a_restart_and_its_journal_period_are_one_visit() -> None:
    car = Car()
    # The clock offset then and now differ by a second (a fast soak's TIME_SYNC): still the one visit.
    car.pipe.analytics.restore_open_visit({"start_ts": EPOCH_S + 399.0, "last_off_ts": None, "inspection_runs": 0})
    await car.hello(1000)
    await car.state(1_200_000, LEVEL_CLOSED | lw.IN_INSPECTION, 0, lw.MOTION_REST)
    await car.state(2_900_000, LEVEL_CLOSED, lw.IN_INSPECTION, lw.MOTION_REST)
    await car.journal(0, lw.J_INSPECTION, 400_000, 2_900_000, 2_900_050, count=0, direction=0,
                      in0=LEVEL_CLOSED | lw.IN_INSPECTION)
    await car.tick(2_900_000 + 601_000)
    (visit,) = car.of("maintenance")
    assert visit["start_ts"] == "2026-01-01T00:06:39.000Z" and car.journal_acks() == [0]


INSPECTING = LEVEL_CLOSED | lw.IN_INSPECTION


async def inspection_run(car: Car, seq: int, t0: int, at_ms: int) -> None:
    """The board's record of a movement under inspection control (30 s, one floor)."""
    await car.journal(seq, lw.J_TRIP, t0, t0 + 30_000, at_ms, in0=INSPECTING, in1=INSPECTING)


async def test_a_visit_of_a_past_day_that_late_periods_change_is_reissued_and_so_is_its_day(tmp_path) -> None:
    """The Pi was down while the technician came: runs, a first period, a run, a second period less
    than the join gap later come back from the journal the next day, oldest first (a run's record
    comes before its period's: the board writes a period when the switch goes off)."""
    car = Car(AnalyticsConfig(day_utc_offset_h=0.0))
    await car.hello(1000)
    next_day_ms = 86_400_000 + 5_000
    await car.tick(next_day_ms)
    at = next_day_ms + 100
    await inspection_run(car, 0, 400_000, at)
    await inspection_run(car, 1, 500_000, at + 10)
    assert car.of("maintenance") == []  # runs wait for their period
    await car.journal(2, lw.J_INSPECTION, 350_000, 1_200_000, at + 20, count=0, direction=0, in0=INSPECTING)
    await inspection_run(car, 3, 1_500_000, at + 30)
    await car.journal(4, lw.J_INSPECTION, 1_400_000, 2_900_000, at + 40, count=0, direction=0, in0=INSPECTING)
    visits = car.of("maintenance")
    assert [(v["revision"], v["inspection_runs"], v["duration_s"], v["too_short"]) for v in visits] == [
        (0, 2, 850.0, True), (1, 3, 2550.0, False)]
    assert visits[0]["id"] == visits[1]["id"] and {v["source"] for v in visits} == {"board_journal"}
    assert [v["ts"] for v in visits] == ["2026-01-01T00:20:00.000Z", "2026-01-01T00:48:20.000Z"]  # true times
    assert car.journal_acks() == [0, 1, 2, 3, 4] and car.pipe.analytics.journal.revised == 1
    await car.tick(at + 1000)
    await car.tick(at + 2000)
    day1 = [d for d in car.of("daily") if d["day"] == "2026-01-01"]
    assert [(d["revision"], d["maintenance_visits"], d["maintenance_minutes"]) for d in day1] == [
        (0, 0, 0.0), (1, 1, 42.5)]  # the visit once, at its revised length
    # The report reads the latest revision of each id.
    path = tmp_path / "upstream.jsonl"
    path.write_text("".join(json.dumps(msg) + "\n" for msg in car.store.messages))
    loaded = load_messages([path])
    (visit,) = loaded.of_kind("maintenance")
    assert (visit["revision"], visit["duration_s"]) == (1, 2550.0) and loaded.duplicates == 0  # a revision is none
    assert [d["maintenance_visits"] for d in loaded.of_kind("daily") if d["day"] == "2026-01-01"] == [1]


async def test_a_live_visit_is_reissued_with_a_run_and_an_earlier_period_it_missed() -> None:
    car = Car()
    await car.hello(1000)
    await car.state(2000, LEVEL_CLOSED, 0, lw.MOTION_REST)
    await car.state(1_000_000, INSPECTING, lw.IN_INSPECTION, lw.MOTION_REST)
    await car.state(2_900_000, LEVEL_CLOSED, lw.IN_INSPECTION, lw.MOTION_REST)
    await car.tick(3_501_000)
    (first,) = car.of("maintenance")
    assert (first["source"], first["inspection_runs"], first["revision"]) == ("live", 0, 0)
    # Its period's own record matches the live start: nothing new.
    await car.journal(0, lw.J_INSPECTION, 1_000_000, 2_900_000, 3_550_000, count=0, direction=0, in0=INSPECTING)
    assert len(car.of("maintenance")) == 1
    # A run whose frames were lost live, and the technician's first period, while the Pi was rebooting.
    await inspection_run(car, 1, 1_500_000, 3_600_000)
    await car.journal(2, lw.J_INSPECTION, 400_000, 900_000, 3_600_100, count=0, direction=0, in0=INSPECTING)
    visits = car.of("maintenance")
    assert [(v["revision"], v["inspection_runs"], v["start_ts"], v["too_short"]) for v in visits] == [
        (0, 0, "2026-01-01T00:16:40.000Z", True), (1, 1, "2026-01-01T00:16:40.000Z", True),
        (2, 1, "2026-01-01T00:06:40.000Z", False)]
    assert len({v["id"] for v in visits}) == 1  # the id it first went out with, though its start moved
    assert car.journal_acks() == [0, 1, 2]


async def test_a_door_held_open_while_nobody_listened_raises_door_open_too_long_at_its_true_times() -> None:
    car = Car(AnalyticsConfig(emit_door_cycles=True))
    await car.hello(1000)
    opened = LEVEL_CLOSED & ~lw.IN_DOOR_CLOSED
    await car.journal(0, lw.J_DOOR_CYCLE, 100_000, 400_000, 3_000_000, count=0, direction=0, in0=opened)
    # Not provable from a record: reopenings (no single stretch known), inspection (not judged), short.
    await car.journal(1, lw.J_DOOR_CYCLE, 500_000, 800_000, 3_000_010, count=2, direction=0, in0=opened)
    await car.journal(2, lw.J_DOOR_CYCLE, 900_000, 1_200_000, 3_000_020, count=0, direction=0,
                      in0=opened | lw.IN_INSPECTION)
    await car.journal(3, lw.J_DOOR_CYCLE, 1_300_000, 1_410_000, 3_000_030, count=0, direction=0, in0=opened)
    events = car.of("event")
    assert [(e["type"], e["state"], e["event_ts"]) for e in events] == [
        ("door_open_too_long", "raised", "2026-01-01T00:03:40.000Z"),
        ("door_open_too_long", "cleared", "2026-01-01T00:06:40.000Z")]
    assert [e["detail"]["source"] for e in events] == ["board_journal", "board_journal"]
    assert events[0]["detail"]["since_ts"] == "2026-01-01T00:01:40.000Z" and events[1]["duration_s"] == 180.0
    assert len(car.of("door_cycle")) == 4 and car.journal_acks() == [0, 1, 2, 3]
    await car.tick(3_100_000)
    (partial,) = car.pipe.analytics.flush(EPOCH_S + 3_200.0)[-1:]
    assert partial.faults_by_type["door_open_too_long"] == 1


async def test_a_door_open_when_the_daemon_came_back_is_raised_once() -> None:
    """The daemon starts while the door is open: the live rule raises from the first STATE; the
    journal's record of the cycle, which no live opening matches, does not raise it again."""
    car = Car()
    opened = LEVEL_CLOSED & ~lw.IN_DOOR_CLOSED
    await car.hello(2_000_000)
    await car.state(2_000_000, opened, 0, lw.MOTION_REST)
    for t_ms in range(2_010_000, 2_200_000, 10_000):  # heartbeats: the link stays up
        await car.frame(lw.T_HEARTBEAT, [t_ms // 1000, 50000, 0, 0, opened, True, False], t_ms)
        await car.tick(t_ms)
    await car.state(2_200_000, LEVEL_CLOSED, lw.IN_DOOR_CLOSED, lw.MOTION_REST)
    await car.journal(0, lw.J_DOOR_CYCLE, 1_950_000, 2_200_000, 2_210_000, count=0, direction=0, in0=opened)
    events = [e for e in car.of("event") if e["type"] == "door_open_too_long"]
    assert [(e["state"], e["event_ts"], e["detail"].get("source")) for e in events] == [
        ("raised", "2026-01-01T00:35:20.000Z", "host"), ("cleared", "2026-01-01T00:36:40.000Z", None)]
    assert car.journal_acks() == [0] and len(car.of("door_cycle")) == 0  # door cycles upstream only on request


async def test_a_daemon_restarted_mid_backlog_keeps_the_waiting_runs_and_the_visits_it_issued(tmp_path) -> None:
    """Runs ACKed while they wait for their period, and a visit already issued, are in the state file
    before those ACKs go out: a daemon killed there and started again counts the runs and revises
    the visit under its id, instead of losing a run the board no longer re-sends."""
    state = tmp_path / "events-car-7.json"
    car = Car(state_file=state)
    await car.hello(1000)
    at = 3_600_000
    await car.journal(0, lw.J_INSPECTION, 100_000, 300_000, at, count=0, direction=0, in0=INSPECTING)
    await inspection_run(car, 1, 800_000, at + 10)
    await inspection_run(car, 2, 900_000, at + 20)
    (first,) = car.of("maintenance")
    assert car.journal_acks() == [0, 1, 2] and first["inspection_runs"] == 0
    again = Car(state_file=state)  # SIGKILL, then started again: the board re-sends from record 3 on
    await again.hello(at + 100)
    await again.journal(3, lw.J_INSPECTION, 700_000, 2_700_000, at + 200, count=0, direction=0, in0=INSPECTING)
    (revised,) = again.of("maintenance")
    assert (revised["id"], revised["revision"], revised["inspection_runs"], revised["duration_s"]) == (
        first["id"], 1, 2, 2600.0)
    assert again.journal_acks() == [3]


def test_a_state_file_with_broken_visit_memory_is_set_aside(tmp_path) -> None:
    state = tmp_path / "events-car-7.json"
    state.write_text(json.dumps({"events": [], "journal_visits": {"visits": [{"start_ts": "soon"}], "runs": []}}))
    assert load_session_state(state) == SessionState([])
