"""Per-board session: boots, sequence numbers, board time, EVENT durability, TIME_SYNC, CONFIG, link state.

Frames are real wire frames (encode_frame) read back through the real FrameReader, so the session
sees exactly what it sees in operation.
"""

from __future__ import annotations

import numpy as np
import pytest

from liftwatch.edge_daemon.observations import (
    BoardBooted,
    BoardEvent,
    CountersSnapshot,
    FramesLost,
    InputsChanged,
    LinkState,
    MotionChanged,
    RestStats,
    VibBlock,
)
from liftwatch.edge_daemon.board_clock import T_MS_MODULO
from liftwatch.edge_daemon.session import (
    MAX_CONFIG_TRIES,
    BoardSession,
    LinkMode,
    SessionConfig,
    SessionDrop,
)
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol import messages as m
from liftwatch.protocol.framing import Frame, FrameReader, encode_frame

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
GRAVITY = [0, 0, 16384]


class Board:
    """Writes frames the way a board does: its boot id, its own seq counter, its clock."""

    def __init__(self, boot_id: int = 7, seq: int = 0, t_ms: int = 1000) -> None:
        self.boot_id, self.seq, self.t_ms = boot_id, seq, t_ms
        self.reader = FrameReader()

    def frame(self, mtype: int, payload, *, seq: int | None = None, advance_ms: int = 10):
        self.t_ms = (self.t_ms + advance_ms) % T_MS_MODULO
        if seq is None:
            seq, self.seq = self.seq, (self.seq + 1) % 0x10000
        (f,) = self.reader.feed(encode_frame(mtype, payload, self.boot_id, seq, self.t_ms))
        return f

    def hello(self, *, config_hash: int = 0, gravity=GRAVITY, cause: str = "power_on", **kw):
        return self.frame(lw.T_HELLO, ["car-7-board", "1.0.0", "lis3dh", config_hash, cause, ["vib"], 400,
                                       16384, gravity is not None, False, self.boot_id, gravity], **kw)

    def heartbeat(self, **kw):
        return self.frame(lw.T_HEARTBEAT, [100, 50000, 0, 0, 1, True, False], **kw)

    def event(self, event_id: int, kind: int = 2, state: int = 1, event_t_ms: int | None = None, **kw):
        t = self.t_ms if event_t_ms is None else event_t_ms
        return self.frame(lw.T_EVENT, [event_id, kind, state, t, {"floor": 3}], **kw)


def decode_all(frames: list[bytes]):
    """What the session sent, read as the board reads it (host frames only: lwproto's decoder)."""
    decoder = lw.FrameDecoder()
    out = []
    for wire in frames:
        mtype, flags, boot_id, seq, t_ms, payload = decoder.decode(wire, len(wire) - 1)
        out.append(Frame(mtype, flags, boot_id, seq, t_ms, payload, False, len(wire)))
    return out


def replay_session(**cfg) -> BoardSession:
    return BoardSession(SessionConfig(**cfg), LinkMode.REPLAY, replay_epoch_ms=EPOCH_MS)


# -- boots and sequence numbers ------------------------------------------------------------------


def test_hello_emits_online_then_booted_once_per_boot():
    s, b = replay_session(), Board()
    obs = s.on_frame(b.hello(), 0)
    assert [type(o) for o in obs] == [LinkState, BoardBooted]
    assert obs[0].online and obs[1].boot_id == 7 and obs[1].gravity == (0, 0, 16384)
    assert obs[1].rate_hz == 400 and obs[1].lsb_per_g == 16384 and obs[1].calibrated
    assert s.on_frame(b.hello(), 0) == []  # a requested re-HELLO of the same boot is no reboot
    assert s.counters.reboots == 0 and s.board_id == "car-7-board"


def test_gaps_duplicates_and_late_frames_are_each_counted_once():
    s, b = replay_session(), Board()
    s.on_frame(b.hello(), 0)  # seq 0
    assert not [o for o in s.on_frame(b.heartbeat(), 0) if isinstance(o, FramesLost)]  # seq 1: no gap
    b.seq = 5  # frames 2, 3, 4 lost on the wire
    obs = s.on_frame(b.heartbeat(), 0)
    assert s.counters.lost_frames == 3
    # Analytics hears of the gap first, at the time of the frame after it: a trip under way when it
    # arrives lost what the missing frames said.
    assert isinstance(obs[0], FramesLost) and obs[0].count == 3
    assert s.on_frame(b.heartbeat(seq=5), 0) == []  # the same frame again
    assert s.on_frame(b.heartbeat(seq=3), 0) == []  # a lost one arriving late
    assert s.counters.drops[SessionDrop.DUPLICATE] == 1
    assert s.counters.drops[SessionDrop.LATE] == 1
    assert s.counters.lost_frames == 3  # the late frame is not counted again
    assert s.counters.frames == 3


def test_seq_wrap_is_not_a_gap():
    s, b = replay_session(), Board(seq=65534)
    for _ in range(4):  # 65534, 65535, 0, 1
        s.on_frame(b.heartbeat(), 0)
    assert s.counters.lost_frames == 0 and s.counters.frames == 4


def test_reboot_counted_once_and_stale_frames_of_old_boot_dropped():
    s, old = replay_session(), Board(boot_id=65535, seq=100)
    s.on_frame(old.hello(), 0)
    s.on_frame(old.heartbeat(), 0)
    new = Board(boot_id=0, seq=0, t_ms=50)  # boot counter wraps 65535 -> 0: still a newer boot
    obs = s.on_frame(new.hello(cause="wdt"), 0)
    assert [type(o) for o in obs] == [BoardBooted] and obs[0].reset_cause == "wdt"
    assert s.counters.reboots == 1
    assert s.on_frame(old.heartbeat(), 0) == []  # a straggler from before the reboot
    assert s.counters.drops[SessionDrop.STALE_BOOT] == 1
    s.on_frame(new.heartbeat(), 0)
    s.on_frame(new.hello(), 0)
    assert s.counters.reboots == 1  # never double counted
    assert s.counters.lost_frames == 0  # seq restarts with the boot: no bogus gap


def test_boots_missed_while_away_are_counted():
    s = replay_session()
    s.on_frame(Board(boot_id=10).hello(), 0)
    s.on_frame(Board(boot_id=13).hello(), 0)  # boots 11 and 12 happened while we were not listening
    assert s.counters.reboots == 3


def test_frames_before_hello_request_hello_in_live_mode_with_retry():
    s, b = BoardSession(SessionConfig(hello_retry_s=5.0)), Board()
    s.on_frame(b.heartbeat(), 100.0)
    controls = [f for f in decode_all(s.take_outgoing()) if f.type == lw.T_CONTROL]
    assert [f.payload[0] for f in controls] == [m.Command.REQUEST_HELLO]
    assert controls[0].boot_id == 7  # host frames echo the board's boot id
    s.on_frame(b.heartbeat(), 101.0)
    assert not [f for f in decode_all(s.take_outgoing()) if f.type == lw.T_CONTROL]
    s.tick(106.0)
    assert [f.type for f in decode_all(s.take_outgoing())].count(lw.T_CONTROL) == 1
    s.on_frame(b.hello(), 107.0)
    s.tick(120.0)
    assert lw.T_CONTROL not in [f.type for f in decode_all(s.take_outgoing())]


# -- board time ----------------------------------------------------------------------------------


def test_time_maps_across_the_2_pow_30_wrap_in_replay():
    s = replay_session()
    b = Board(t_ms=T_MS_MODULO - 1500)
    obs = s.on_frame(b.hello(advance_ms=0), 0)
    t0 = obs[0].ts
    assert t0 == pytest.approx((EPOCH_MS + T_MS_MODULO - 1500) / 1000)
    s.on_frame(b.heartbeat(advance_ms=1000), 0)  # 500 ms before the wrap
    obs = s.on_frame(b.event(1, advance_ms=1000), 0)  # 500 ms after it: raw t_ms is 500
    assert b.t_ms == 500
    assert obs[0].ts == pytest.approx(t0 + 2.0)
    # An event stamped just before the wrap, reported just after it, lands before it.
    obs = s.on_frame(b.event(2, event_t_ms=T_MS_MODULO - 100, advance_ms=10), 0)
    assert obs[0].ts == pytest.approx(t0 + 1.4)
    # Two more wraps in steady 1-hour steps: still monotonic and exact.
    ts = []
    for _ in range(2 * T_MS_MODULO // 3_600_000 + 2):
        obs = s.on_frame(b.event(1000 + len(ts), advance_ms=3_600_000), 0)
        ts += [o.ts for o in obs if isinstance(o, BoardEvent)]
    assert np.allclose(np.diff(ts), 3600.0)


def test_long_silence_uses_host_clock_to_count_wraps():
    s, b = BoardSession(), Board(t_ms=5_000)
    host = 1_000_000.0
    s.on_frame(b.hello(advance_ms=0), host)
    first = s.last_heard_s
    # 13 days of silence (more than one 12.4-day wrap), e.g. the link was cut that long.
    gap_ms = 13 * 86_400_000
    s.on_frame(b.heartbeat(advance_ms=gap_ms), host + gap_ms / 1000)
    assert s.last_heard_s - first == pytest.approx(gap_ms / 1000, abs=1.0)


def test_time_sync_round_trip_sets_offset():
    s, b = BoardSession(), Board(t_ms=10_000)
    host = 1_800_000_000.0
    s.on_frame(b.hello(advance_ms=0), host + 0.8)  # arrives 800 ms late: a poor first estimate
    syncs = [f for f in decode_all(s.take_outgoing()) if f.type == lw.T_TIME_SYNC]
    assert len(syncs) == 1
    sent_ms = syncs[0].payload[0]
    assert sent_ms == int((host + 0.8) * 1000)
    # The board read its clock 20 ms after the request left; the reply is back 40 ms after sending.
    board_t = b.t_ms + 820
    reply = b.frame(lw.T_TIME_SYNC, [sent_ms, board_t], advance_ms=840)
    s.on_frame(reply, host + 0.84)
    assert s.counters.time_syncs == 1 and s.status()["time_synced"]
    # Board clock 10_000 ms <=> host 1_800_000_000.0 s exactly (sent + rtt/2 = host + 0.82 <=> 10_820).
    obs = s.on_frame(b.event(9, event_t_ms=10_000, advance_ms=100), host + 2.0)
    assert obs[0].ts == pytest.approx(host, abs=0.001)
    # A reply to a request we never sent is ignored.
    s.on_frame(b.frame(lw.T_TIME_SYNC, [123, 5]), host + 3)
    assert s.counters.time_syncs == 1


def test_arrival_estimate_keeps_the_least_delayed_frame():
    s, b = BoardSession(), Board(t_ms=0)
    s.on_frame(b.hello(advance_ms=0), 100.5)  # 500 ms latency
    s.on_frame(b.heartbeat(advance_ms=1000), 101.05)  # 50 ms latency
    s.on_frame(b.heartbeat(advance_ms=1000), 102.3)  # 300 ms latency
    obs = s.on_frame(b.event(1, event_t_ms=0, advance_ms=10), 102.5)
    assert obs[0].ts == pytest.approx(100.05)


# -- link state -----------------------------------------------------------------------------------


def test_heartbeat_timeout_goes_offline_at_last_heard_and_back_online():
    s, b = BoardSession(SessionConfig(heartbeat_timeout_s=15.0)), Board(t_ms=0)
    s.on_frame(b.hello(advance_ms=0), 1000.0)
    last = s.last_heard_s
    assert s.tick(1014.0) == []
    obs = s.tick(1016.0)
    assert obs == [LinkState(ts=last, online=False)]
    assert s.tick(1030.0) == []  # reported once
    obs = s.on_frame(b.heartbeat(advance_ms=40_000), 1040.0)
    assert obs[0].online and obs[0].ts > last
    # and the heartbeat says what the inputs and motion are now (test_after_a_gap_...)
    assert obs[1:] == [InputsChanged(obs[0].ts, 1, 0), MotionChanged(obs[0].ts, 0)]
    assert s.counters.offline_periods == 1


def test_link_lost_goes_offline_immediately_and_forgets_queued_frames():
    s, b = BoardSession(), Board()
    s.on_frame(b.hello(), 50.0)
    assert s.link_lost() == [LinkState(ts=s.last_heard_s, online=False)]
    assert s.take_outgoing() == []


def test_a_board_heard_again_after_a_heartbeat_timeout_gets_a_time_sync_at_once():
    """The board re-sends what waits for an ACK as soon as it hears its host after a silence
    (docs/firmware.md): back from a heartbeat timeout with the transport still open (a UART cut
    behind its adapter), the daemon speaks at once, not at its next TIME_SYNC 10 minutes on."""
    s, b = BoardSession(SessionConfig(heartbeat_timeout_s=15.0)), Board(t_ms=0)
    s.on_frame(b.hello(advance_ms=0), 1000.0)
    (sync,) = [f for f in decode_all(s.take_outgoing()) if f.type == lw.T_TIME_SYNC]
    s.on_frame(b.frame(lw.T_TIME_SYNC, [sync.payload[0], b.t_ms + 10], advance_ms=20), 1000.02)
    assert s.status()["time_synced"]
    s.on_frame(b.heartbeat(advance_ms=5000), 1005.0)  # the quick retry set before the reply goes
    s.take_outgoing()
    s.on_frame(b.heartbeat(advance_ms=1000), 1006.0)
    assert s.take_outgoing() == []  # synced: the next TIME_SYNC is 10 minutes away
    assert [o.online for o in s.tick(1022.0)] == [False]
    s.on_frame(b.heartbeat(advance_ms=40_000), 1045.0)
    assert [f.type for f in decode_all(s.take_outgoing())] == [lw.T_TIME_SYNC]


def test_replay_detects_silence_in_board_time():
    s, b = replay_session(heartbeat_timeout_s=15.0), Board(t_ms=0)
    s.on_frame(b.hello(advance_ms=0), 0)
    s.on_frame(b.heartbeat(advance_ms=5000), 0)
    obs = s.on_frame(b.heartbeat(advance_ms=3_600_000), 0)  # link cut for an hour
    links = [o for o in obs if isinstance(o, LinkState)]
    assert [(o.online, o.ts) for o in links] == [(False, (EPOCH_MS + 5000) / 1000), (True, (EPOCH_MS + 3_605_000) / 1000)]


def test_after_a_gap_the_next_state_or_heartbeat_says_what_the_inputs_are_even_if_unchanged():
    """STATE frames of a gap can be lost (the board's queue drops them): analytics judges nothing after
    a gap until an InputsChanged says what the inputs are now (test_analytics_faults:
    test_a_link_gap_inside_a_door_open_move_is_one_fault_not_two). A HEARTBEAT gives one once."""
    s, b = BoardSession(), Board()
    s.on_frame(b.hello(), 10.0)
    s.on_frame(b.frame(lw.T_STATE, [b.t_ms, 1, 1, 0]), 10.1)
    assert s.on_frame(b.heartbeat(), 10.2) == []  # no gap: a heartbeat repeats what STATE said
    s.link_lost()
    obs = s.on_frame(b.heartbeat(advance_ms=5000), 20.0)  # nothing changed meanwhile
    assert [type(o) for o in obs] == [LinkState, InputsChanged]
    assert (obs[1].inputs, obs[1].changed) == (1, 0)
    assert s.on_frame(b.heartbeat(), 20.1) == []  # once
    s.link_lost()
    obs = s.on_frame(b.frame(lw.T_STATE, [b.t_ms, 1, 0, 2]), 30.0)  # a STATE of the motion only
    assert [type(o) for o in obs] == [LinkState, InputsChanged, MotionChanged]
    assert s.on_frame(b.heartbeat(), 30.1) == []


# -- EVENT durability ----------------------------------------------------------------------------


def acks(s: BoardSession) -> list[tuple[int, int]]:
    return [(f.payload[0], f.payload[1]) for f in decode_all(s.take_outgoing()) if f.type == lw.T_ACK]


def test_event_acked_only_after_stored_and_resends_not_double_counted():
    s, b = BoardSession(), Board()
    s.on_frame(b.hello(), 10.0)
    s.take_outgoing()
    obs = s.on_frame(b.event(42, kind=2, state=1), 10.1)
    assert [type(o) for o in obs] == [BoardEvent]
    ev = obs[0]
    assert (ev.event_id, ev.kind, ev.state, ev.detail) == (42, 2, 1, {"floor": 3})
    assert acks(s) == []  # not stored yet: no ACK
    assert s.on_frame(b.event(42), 10.2) == []  # board re-sent while we store it: nothing new
    assert acks(s) == []
    s.event_stored(ev)
    assert acks(s) == [(lw.T_EVENT, 42)]
    # Our ACK was lost, the board re-sends: ACK again, no second observation.
    assert s.on_frame(b.event(42), 10.3) == []
    assert acks(s) == [(lw.T_EVENT, 42)]
    # The clear of the same event is a new fact.
    obs = s.on_frame(b.event(42, state=0), 10.4)
    assert [(o.event_id, o.state) for o in obs] == [(42, 0)]
    assert s.counters.events == 2 and s.counters.events_resent == 2 and s.counters.acks_sent == 2


def test_replay_mode_never_queues_frames_and_handles_events_without_ack():
    s, b = replay_session(settings={"door_open_limit_s": 60}), Board()
    s.on_frame(b.heartbeat(), 0)  # no HELLO yet: a live session would ask for one
    s.on_frame(b.hello(config_hash=1), 0)
    (ev,) = s.on_frame(b.event(5), 0)
    s.event_stored(ev)
    assert s.on_frame(b.event(5), 0) == []  # still de-duplicated
    s.tick(1e9)
    assert s.take_outgoing() == [] and s.counters.acks_sent == 0 and s.counters.config_pushes == 0


def test_link_lost_forgets_pending_events_so_resend_after_reconnect_is_emitted():
    s, b = BoardSession(), Board()
    s.on_frame(b.hello(), 1.0)
    s.on_frame(b.event(8), 1.1)  # daemon could not store it before the link died
    s.link_lost()
    obs = s.on_frame(b.event(8), 5.0)
    assert [o.event_id for o in obs if isinstance(o, BoardEvent)] == [8]


# -- CONFIG push --------------------------------------------------------------------------------


def configs(s: BoardSession):
    return [f for f in decode_all(s.take_outgoing()) if f.type == lw.T_CONFIG]


def test_config_pushed_when_hash_differs_and_not_again_once_accepted():
    settings = {"door_open_limit_s": 60, "vib_stream": True}
    s, b = BoardSession(SessionConfig(settings=settings)), Board()
    s.on_frame(b.hello(config_hash=111), 1.0)
    (cfg,) = configs(s)
    assert cfg.payload == [settings]
    s.on_frame(b.frame(lw.T_ACK, [lw.T_CONFIG, cfg.seq, 0, "", 222]), 1.1)
    assert s.counters.config_accepted == 1 and s.status()["config_hash"] == 222
    nb = Board(boot_id=8)
    s.on_frame(nb.hello(config_hash=222), 2.0)
    assert configs(s) == []  # the board kept the config over its reboot
    s.on_frame(Board(boot_id=9).hello(config_hash=111), 3.0)  # storage wiped: push again
    assert len(configs(s)) == 1


def test_config_rejection_is_reported_and_not_retried():
    s, b = BoardSession(SessionConfig(settings={"rate_hz": 5})), Board()
    s.on_frame(b.hello(), 1.0)
    (cfg,) = configs(s)
    s.on_frame(b.frame(lw.T_ACK, [lw.T_CONFIG, cfg.seq, 3, "rate_hz out of range", None]), 1.1)
    assert s.counters.config_rejected == 1
    assert s.status()["config_error"] == "3: rate_hz out of range"
    s.tick(100.0)
    assert configs(s) == []


def test_config_without_answer_is_retried_a_bounded_number_of_times():
    s, b = BoardSession(SessionConfig(settings={"x": 1}, config_retry_s=10.0)), Board()
    s.on_frame(b.hello(), 0.0)
    pushes = len(configs(s))
    for t in range(1, 100):
        s.on_frame(b.heartbeat(), float(t))
        pushes += len(configs(s))
    assert pushes == MAX_CONFIG_TRIES == s.counters.config_pushes


# -- payload decoding ------------------------------------------------------------------------------


def test_state_stats_counters_map_to_observations():
    s, b = replay_session(), Board(t_ms=0)
    s.on_frame(b.hello(advance_ms=0), 0)
    obs = s.on_frame(b.frame(lw.T_STATE, [5, 0b111, 0b001, 1], advance_ms=20), 0)
    assert obs == [InputsChanged(ts=(EPOCH_MS + 5) / 1000, inputs=7, changed=1),
                   MotionChanged(ts=(EPOCH_MS + 5) / 1000, motion=1)]
    obs = s.on_frame(b.frame(lw.T_STATE, [30, 0b111, 0, 1]), 0)
    assert obs == []  # nothing changed
    (st,) = s.on_frame(b.frame(lw.T_STATS, [1000, 400, [1, 2, 1000], [3, 4, 5], 12, 0]), 0)
    assert isinstance(st, RestStats) and st.mean_mg == (1, 2, 1000) and st.peak_mg == 12 and st.count == 400
    (c,) = s.on_frame(b.frame(lw.T_COUNTERS, [10, 20, 30, 4, 0, 0, 1, 0]), 0)
    assert isinstance(c, CountersSnapshot) and (c.door_cycles, c.trips, c.boots, c.link_drops) == (10, 20, 4, 1)


def test_unknown_trailing_fields_counted_missing_ones_defaulted_bad_types_dropped():
    s, b = replay_session(), Board()
    s.on_frame(b.hello(), 0)
    (c,) = s.on_frame(b.frame(lw.T_COUNTERS, [1, 2, 3, 4, 5, 6, 7, 8, 99, 100]), 0)  # newer board
    assert s.counters.unknown_fields == {"COUNTERS": 2} and c.events_dropped == 8
    (c,) = s.on_frame(b.frame(lw.T_COUNTERS, [1, 2, 3, 4]), 0)  # older board: trailing fields default
    assert (c.door_cycles, c.boots, c.link_drops, c.events_dropped) == (1, 4, 0, 0)
    assert s.on_frame(b.frame(lw.T_COUNTERS, [1, 2]), 0) == []  # required fields missing
    assert s.on_frame(b.frame(lw.T_EVENT, ["x", 1, 1, 0, {}]), 0) == []
    assert s.on_frame(b.frame(lw.T_STATE, {"inputs": 1}), 0) == []
    assert s.on_frame(b.frame(lw.T_VIB, [400, 16384, 0, 2, b"\x00" * 5]), 0) == []  # short samples
    assert s.counters.drops[SessionDrop.BAD_PAYLOAD] == 4


def test_a_host_type_moves_neither_the_seq_nor_the_clock():
    """Issue 14: a host frame that reaches the session (the reader refuses them; this is the second
    line) is dropped before any state moves: no lost frames, no later frames taken as late."""
    s, b = replay_session(), Board()
    s.on_frame(b.hello(), 0)
    s.on_frame(b.heartbeat(), 0)
    seq, clock_ms = s.last_seq, s._clock.last_unwrapped
    reflected = Frame(lw.T_CONFIG, lw.FLAG_FROM_HOST, b.boot_id, (seq + 30000) % 0x10000, 900_000_000, [{}], False, 20)
    assert s.on_frame(reflected, 0) == []
    assert s.counters.drops[SessionDrop.UNEXPECTED] == 1
    assert (s.last_seq, s._clock.last_unwrapped) == (seq, clock_ms)
    s.on_frame(b.heartbeat(), 0)
    assert s.last_seq == (seq + 1) % 0x10000 and s.counters.lost_frames == 0 and not s.counters.drops[SessionDrop.LATE]


def test_a_payload_its_view_refuses_changes_nothing_and_is_counted_once():
    s, b = replay_session(), Board()
    s.on_frame(b.hello(), 0)
    hello, gravity = s.hello, s.gravity
    bad_hello = ["other-board", "2.0.0", "lis3dh", "not-a-hash", "power_on", ["vib"], 400, 16384, True, False, 8, None]
    assert s.on_frame(b.frame(lw.T_HELLO, bad_hello), 0) == []
    assert s.hello is hello and s.board_id == "car-7-board" and s.gravity == gravity == tuple(GRAVITY)
    assert s.on_frame(b.frame(lw.T_TIME_SYNC, [123]), 0) == []  # a board's reply without its time
    assert s.on_frame(b.frame(lw.T_HEARTBEAT, [100, 50000, 0, 0, 1, 1, False]), 0) == []  # 1 is not a bool
    assert s.counters.drops == {SessionDrop.BAD_PAYLOAD: 3} and s.counters.frames == 4


def vib(b: Board, first_index: int, count: int = 40, rate: int = 400, value: int = 0, advance_ms: int = 100):
    samples = np.full((count, 3), value, dtype="<i2").tobytes()
    return b.frame(lw.T_VIB, [rate, 16384, first_index, count, samples], advance_ms=advance_ms)


def test_vib_blocks_contiguous_in_time_with_gaps_and_resends_accounted():
    s, b = replay_session(), Board(t_ms=0)
    s.on_frame(b.hello(advance_ms=0), 0)
    blocks = []
    for i in range(5):  # 40 samples per 100 ms at 400 Hz, with 3 ms of send jitter
        (blk,) = s.on_frame(vib(b, (65500 + 40 * i) % 65536, value=i, advance_ms=100 + (3 if i % 2 else -3)), 0)
        blocks.append(blk)
    assert all(isinstance(x, VibBlock) and x.samples.shape == (40, 3) for x in blocks)
    assert blocks[2].samples[0, 0] == 2 and blocks[0].gravity == (0, 0, 16384)
    starts = np.array([x.ts_first for x in blocks])
    assert np.allclose(np.diff(starts), 0.1)  # exact spacing from sample indices, no jitter
    assert blocks[1].ts_first == pytest.approx(blocks[0].ts_end)
    assert s.on_frame(vib(b, (65500 + 40 * 4) % 65536), 0) == []  # the same block again
    (late,) = s.on_frame(vib(b, (65500 + 40 * 7) % 65536, advance_ms=300), 0)
    assert late.gap_before == 80 and s.counters.vib_discontinuities == 1


@pytest.mark.parametrize("idle_s", [30.0, 100.0, 150.0, 200.0, 400.0])
def test_vib_sample_index_counting_on_through_a_rest_is_unwrapped_with_board_time(idle_s):
    """The u16 sample index wraps every 164 s at 400 Hz while the car rests and VIB stops: the
    next trip's first block may look 'behind' by index alone; the board time says it is new."""
    s, b = replay_session(), Board(t_ms=0)
    s.on_frame(b.hello(advance_ms=0), 0)
    s.on_frame(vib(b, 0), 0)  # samples 0..39, last one at t = 100 ms
    (again,) = [o for o in s.on_frame(vib(b, 40), 0) if isinstance(o, VibBlock)]
    idle = round(idle_s * 400)  # samples the board counted without streaming
    first = 80 + idle
    got = [o for o in s.on_frame(vib(b, first % 65536, advance_ms=round(idle_s * 1000) + 100), 0)
           if isinstance(o, VibBlock)]
    assert len(got) == 1 and got[0].gap_before == idle
    assert got[0].ts_first == pytest.approx(again.ts_end + idle_s, abs=0.003)
    assert s.on_frame(vib(b, first % 65536, advance_ms=0), 0) == []  # re-sent after a link hiccup
    (nxt,) = s.on_frame(vib(b, (first + 40) % 65536), 0)
    assert nxt.gap_before == 0


def test_on_frames_merges_a_run_of_vib_frames_and_splits_at_gaps_and_other_frames():
    s, b = replay_session(), Board(t_ms=0)
    frames = [b.hello(advance_ms=0)]
    rng = np.random.default_rng(1)
    raw = rng.integers(-2000, 2000, size=(40 * 6, 3)).astype("<i2")
    for i in range(3):  # blocks 0-2 contiguous
        frames.append(b.frame(lw.T_VIB, [400, 16384, 40 * i, 40, raw[40 * i : 40 * (i + 1)].tobytes()], advance_ms=100))
    frames.append(b.frame(lw.T_STATE, [b.t_ms, 1, 1, 2]))  # a STATE between: order kept
    for i in (3, 4):
        frames.append(b.frame(lw.T_VIB, [400, 16384, 40 * i, 40, raw[40 * i : 40 * (i + 1)].tobytes()], advance_ms=100))
    b.seq += 1  # one frame lost on the wire: block 5 missing, block 6 starts a new run
    frames.append(b.frame(lw.T_VIB, [400, 16384, 240, 40, raw[200:240].tobytes()], advance_ms=200))
    obs = s.on_frames(frames, 0.0)
    kinds = [type(o).__name__ for o in obs]
    assert kinds == ["LinkState", "BoardBooted", "VibBlock", "InputsChanged", "MotionChanged", "VibBlock", "FramesLost",
                     "VibBlock"]
    v1, v2, v3 = [o for o in obs if isinstance(o, VibBlock)]
    assert np.array_equal(v1.samples, raw[:120]) and np.array_equal(v2.samples, raw[120:200])
    assert v2.ts_first == pytest.approx(v1.ts_first + 0.3) and v2.gap_before == 0
    assert v3.gap_before == 40 and np.array_equal(v3.samples, raw[200:240])
    assert s.counters.frames == len(frames) and s.counters.lost_frames == 1
    # The same frames one by one give the same samples and times, only in more blocks.
    s2 = replay_session()
    one = [o for f in frames for o in s2.on_frame(f, 0.0) if isinstance(o, VibBlock)]
    assert np.array_equal(np.concatenate([o.samples for o in one[:3]]), v1.samples)
    assert one[0].ts_first == v1.ts_first and one[3].ts_first == v2.ts_first
    assert s2.counters.to_status() == s.counters.to_status()


def test_wall_clock_step_neither_fakes_an_outage_nor_keeps_a_stale_offset():
    """A Pi without RTC: NTP steps the wall clock an hour forward while a board is talking."""
    s, b = BoardSession(SessionConfig(heartbeat_timeout_s=15.0)), Board(t_ms=0)
    wall0 = 1_800_000_000.0
    s.on_frame(b.hello(advance_ms=0), wall0, 0.0)
    (sync,) = [f for f in decode_all(s.take_outgoing()) if f.type == lw.T_TIME_SYNC]
    s.on_frame(b.frame(lw.T_TIME_SYNC, [sync.payload[0], b.t_ms + 10], advance_ms=20), wall0 + 0.02, 0.02)
    assert s.status()["time_synced"]
    s.on_frame(b.heartbeat(advance_ms=5000), wall0 + 5.0, 5.0)
    s.take_outgoing()
    step = 3600.0
    assert s.tick(wall0 + step + 10.0, 10.0) == []  # 5 s of silence on the monotonic clock: online
    assert s.online and s.counters.clock_steps == 1
    # Time is measured again: a TIME_SYNC goes out now, and the next frame's arrival re-anchors.
    assert [f.type for f in decode_all(s.take_outgoing())].count(lw.T_TIME_SYNC) == 1
    (ev,) = s.on_frame(b.event(1, advance_ms=6000), wall0 + step + 11.0, 11.0)  # stamped 6 s before sending
    assert ev.ts == pytest.approx(wall0 + step + 5.0, abs=0.05)
    # The heartbeat timeout still runs: 16 s after the last frame on the monotonic clock.
    assert s.tick(wall0 + step + 27.0, 27.0) == [LinkState(ts=s.last_heard_s, online=False)]


def test_wall_clock_step_mid_trip_waits_for_the_trip_to_end():
    """NTP steps the Pi's clock back 50 s while the car moves: the trip keeps one time base (its
    duration is the board's, not -35 s), and the next trip is placed with the new offset."""
    s, b = BoardSession(SessionConfig(heartbeat_timeout_s=15.0)), Board(t_ms=0)
    wall0 = 1_800_000_000.0

    def state(motion: int, mono_s: float, advance_ms: int, step_s: float = 0.0) -> MotionChanged:
        f = b.frame(lw.T_STATE, [b.t_ms + advance_ms, 0b111, 0, motion], advance_ms=advance_ms)
        (obs,) = [o for o in s.on_frame(f, wall0 + step_s + mono_s, mono_s) if isinstance(o, MotionChanged)]
        return obs

    s.on_frame(b.hello(advance_ms=0), wall0, 0.0)
    s.on_frame(b.heartbeat(advance_ms=1000), wall0 + 1.0, 1.0)
    start = state(int(m.Motion.ACCELERATING), 2.0, 1000)
    s.on_frame(b.heartbeat(advance_ms=5000), wall0 - 50.0 + 7.0, 7.0)  # the wall clock stepped back 50 s
    end = state(int(m.Motion.REST), 17.0, 10_000, step_s=-50.0)
    assert s.counters.clock_steps == 1
    assert end.ts - start.ts == pytest.approx(15.0, abs=0.01)
    nxt = state(int(m.Motion.ACCELERATING), 27.0, 10_000, step_s=-50.0)
    assert nxt.ts == pytest.approx(wall0 - 50.0 + 27.0, abs=0.05)  # measured again after the trip


def test_host_seq_resumes_after_a_restart_only_within_the_same_board_boot():
    b = Board(boot_id=12)
    s = BoardSession(resume_host_seq=(12, 5000))
    s.on_frame(b.hello(), 1.0)
    seqs = [f.seq for f in decode_all(s.take_outgoing())]
    assert seqs and min(seqs) >= 5000  # above the board's window of this boot
    assert s.host_seq_state == (12, max(seqs) + 1)
    other = BoardSession(resume_host_seq=(11, 5000))  # the board rebooted meanwhile
    other.on_frame(Board(boot_id=12).hello(), 1.0)
    assert min(f.seq for f in decode_all(other.take_outgoing())) == 0


def _vib_samples_and_times(obs) -> tuple[np.ndarray, np.ndarray]:
    """All VIB samples of `obs` in order, with each sample's UTC time."""
    blocks = [o for o in obs if isinstance(o, VibBlock)]
    if not blocks:
        return np.empty((0, 3)), np.empty(0)
    samples = np.concatenate([o.samples for o in blocks])
    times = np.concatenate([o.ts_first + np.arange(len(o.samples)) / o.rate_hz for o in blocks])
    return samples, times


@pytest.mark.parametrize("seed", range(6))
def test_on_frames_accounts_for_damage_inside_vib_runs_exactly_as_frame_by_frame(seed):
    """Merged VIB runs must not hide what the per-frame path counts: lost frames (seq jumps),
    repeats, late frames, sample-index gaps, reboots and stale boots inside a run, in any chunking."""
    rng = np.random.default_rng(seed)
    boards = {7: Board(boot_id=7, t_ms=0)}
    frames = [boards[7].hello(advance_ms=0)]
    boot, index, sent = 7, 0, []
    for _ in range(400):
        b = boards[boot]
        if rng.random() < 0.04 and sent:  # a frame sent again (link hiccup), or an old one arriving late
            frames.append(sent[-1] if rng.random() < 0.5 else sent[max(0, len(sent) - 5)])
            continue
        if rng.random() < 0.03:
            b.seq += int(rng.integers(1, 4))  # frames lost on the wire
        if rng.random() < 0.03:
            index += int(rng.integers(1, 200))  # samples the board dropped (ring overrun)
        if rng.random() < 0.05:
            frames.append(b.frame(lw.T_STATE, [b.t_ms, int(rng.integers(0, 8)), 1, int(rng.integers(0, 4))]))
        if rng.random() < 0.01:  # the board reboots; a frame of the old boot straggles in after
            stale = b
            boot += 1
            boards[boot] = Board(boot_id=boot, t_ms=int(rng.integers(0, 1000)))
            b = boards[boot]
            frames.append(b.hello(advance_ms=0))
            frames.append(stale.frame(lw.T_HEARTBEAT, [1, 1, 0, 0, 1, True, False]))
            index = 0
        count = int(rng.choice([16, 64]))
        raw = rng.integers(-3000, 3000, size=(count, 3)).astype("<i2")
        jitter = int(rng.integers(-3, 4))
        f = b.frame(lw.T_VIB, [400, 16384, index % 65536, count, raw.tobytes()], advance_ms=count * 10 // 4 + jitter)
        frames.append(f)
        sent.append(f)
        index += count
    one = replay_session()
    per_frame = [o for f in frames for o in one.on_frame(f, 0.0)]
    merged = replay_session()
    batched, i = [], 0
    while i < len(frames):  # reads of random length, as a serial port delivers them
        n = int(rng.integers(1, 40))
        batched += merged.on_frames(frames[i : i + n], 0.0)
        i += n
    assert merged.counters.to_status() == one.counters.to_status()
    assert one.counters.lost_frames > 0 and one.counters.vib_discontinuities > 0
    assert one.counters.drops  # duplicates, late or stale frames were refused
    samples, times = _vib_samples_and_times(batched)
    want_samples, want_times = _vib_samples_and_times(per_frame)
    np.testing.assert_array_equal(samples, want_samples)
    np.testing.assert_allclose(times, want_times, rtol=0, atol=1e-6)
    assert len([o for o in batched if isinstance(o, VibBlock)]) < len([o for o in per_frame if isinstance(o, VibBlock)])
    others = [o for o in batched if not isinstance(o, VibBlock)]
    assert others == [o for o in per_frame if not isinstance(o, VibBlock)]
    gaps = [o.gap_before for o in batched if isinstance(o, VibBlock) and o.gap_before]
    assert sum(gaps) == sum(o.gap_before for o in per_frame if isinstance(o, VibBlock))
