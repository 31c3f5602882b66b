"""The whole firmware on the simulated board, under micropython -X heapsize=96k (the .mpy deploy form).

Synthetic car traces with known answers (fwharness.FeedBuilder): trips, door cycles, zone and alarm
conditions, crash loops, host frames. What the board says is decoded by the host's FrameReader."""

from __future__ import annotations

import struct

from support import fwharness as h
import pytest
from support.fwharness import (
    ALARM,
    AT_FLOOR,
    DOOR_CLOSED,
    FEED_CTRL_CRASH,
    FEED_CTRL_POWER_CUT,
    LEVEL,
    PRESENCE,
    SOURCE_HEAP,
    T_ACK,
    T_CONFIG,
    T_CONTROL,
    T_COUNTERS,
    T_EVENT,
    T_HEARTBEAT,
    T_HELLO,
    T_STATE,
    T_STATS,
    T_TIME_SYNC,
    T_VIB,
    FeedBuilder,
    host_frame,
    host_frames_at,
    run_firmware,
)

from liftwatch.protocol import lwproto as lw
from liftwatch.upy import FIRMWARE_DIR, PROTOCOL_DIR, SIM_HARDWARE_DIR

pytestmark = pytest.mark.micropython


def motions(run):
    """Motion codes of the STATE frames sent for motion changes (changed == 0)."""
    return [f.payload[3] for f in run.of(T_STATE) if f.payload[2] == 0]


def events(run):
    return [(f.payload[0], f.payload[1], f.payload[2]) for f in run.of(T_EVENT)]


def day_feed(gravity=(0, 0, 1000)) -> FeedBuilder:
    fb = FeedBuilder(gravity)
    fb.rest(4).trip(up=True).rest(3).door_cycle().trip(up=False, a_mg=60).rest(3).door_cycle().door_cycle().rest(3)
    return fb


@pytest.mark.parametrize("gravity", [(0, 0, 1000), (0, 574, 819), (-1000, 0, 0)], ids=["flat", "tilted35", "sideways"])
def test_trips_doors_and_motion_have_known_answers(tmp_path, gravity):
    fb = day_feed(gravity)
    run = run_firmware(tmp_path, fb.bytes())
    assert run.returncode == 0, run.stdout + run.stderr
    s = run.summary
    assert s["counters"][1] == fb.trips == 2
    assert s["counters"][0] == fb.door_cycles == 3
    assert 16 <= s["counters"][2] <= 19  # run time: 2 trips of 9 s, detection trims the edges
    # calibrated at rest (gravity found on the mounting), then two full runs
    assert motions(run) == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    for got, mg in zip(s["gravity"], gravity):
        assert abs(got / 16 - mg) < 5
    assert events(run) == []
    hello = run.of(T_HELLO)[0].payload
    assert hello[2] == "lis3dh" and hello[6] == 400 and hello[7] == 16000 and hello[8] is False
    # VIB: contiguous sample indices within each stream, covering each run
    vib = run.of(T_VIB)
    streams = []
    for f in vib:
        rate, lsb, first, count, samples = f.payload
        assert len(samples) == count * 6 and rate == 400 and lsb == 16000
        if streams and streams[-1][1] == first:
            streams[-1][1] = (first + count) & 0xFFFF
        else:
            streams.append([first, (first + count) & 0xFFFF])
    assert len(streams) == 2
    for a, b in streams:
        assert ((b - a) & 0xFFFF) / 400 > 9 + 1.0  # the run plus margins
    # STATS at rest: gravity on the axes, LIS3DH noise about 3 mg
    stats = run.of(T_STATS)
    assert stats
    mean, rms = stats[-1].payload[2], stats[-1].payload[3]
    for m, g in zip(mean, gravity):
        assert abs(m - g) <= 3
    assert all(1 <= r <= 5 for r in rms)
    assert run.reader.drops == {}


def test_conditions_raise_and_clear_events(tmp_path):
    fb = FeedBuilder()
    fb.rest(4)
    fb.trip(door_open_at=2.0).set(AT_FLOOR).rest(2)  # door opens mid-run: kind 1
    fb.trip(door_open_at=8.7).set(AT_FLOOR).rest(2)  # pre-opening while levelling in the zone: fine
    fb.trip(stop_in_zone=False).rest(8).set(AT_FLOOR).rest(2)  # stopped between floors: kind 2
    fb.set(AT_FLOOR | ALARM).rest(4, 250).set(AT_FLOOR).rest(2)  # alarm held 4 s: kind 3
    fb.set(AT_FLOOR | ALARM).rest(1, 250).set(AT_FLOOR).rest(3)  # 1 s press: nothing
    run = run_firmware(tmp_path, fb.bytes())
    assert run.returncode == 0, run.stdout + run.stderr
    seen = []
    for eid, kind, state in events(run):  # re-sends repeat ids: keep the first of each
        if (eid, kind, state) not in seen:
            seen.append((eid, kind, state))
    assert [(k, st) for _, k, st in seen] == [(1, 1), (1, 0), (2, 1), (2, 0), (3, 1), (3, 0)]
    assert [e for e, _, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert run.summary["counters"][1] == 3
    detail = run.of(T_EVENT)[0].payload[4]
    assert detail["boot"] == 1 and "motion" in detail


def test_events_are_resent_until_acked_and_survive_reboot(tmp_path):
    fb = FeedBuilder().rest(4).trip(door_open_at=2.0).set(AT_FLOOR).rest(20)
    first = run_firmware(tmp_path, fb.bytes())
    ids = [e for e, _, _ in events(first)]
    assert set(ids) == {1, 2}
    assert ids.count(1) >= 3  # nobody ACKed: re-sent with back-off
    assert first.summary["evq"] == 2
    # Reboot on the same flash; the host ACKs event 1 at once: only event 2 is sent again.
    second = run_firmware(tmp_path, FeedBuilder().rest(20).bytes(), rx=host_frame(T_ACK, [T_EVENT, 1, 0, "", None]))
    ids2 = [e for e, _, _ in events(second)]
    assert 1 not in ids2 and ids2.count(2) >= 2
    assert ids2.count(2) <= 4  # 0, 2, 6, 14 s: backing off after a reboot too, not once a loop pass
    assert second.summary["evq"] == 1
    third = run_firmware(tmp_path, FeedBuilder().rest(5).bytes(), rx=host_frame(T_ACK, [T_EVENT, 2, 0, "", None]))
    assert third.summary["evq"] == 0
    assert third.summary["counters"][3] == 3  # boots


def sends_ms(run, event_id):
    """Board times of every send of one event."""
    return [f.t_ms for f in run.of(T_EVENT) if f.payload[0] == event_id]


def test_events_go_again_at_once_when_the_host_is_heard_after_a_silence(tmp_path):
    # An alarm held 4 s: raised (event 1) and cleared (event 2), never ACKed. For a minute the host
    # talks every second (it is there: the back-off grows as usual), then the link drops and the host
    # is heard again at 75 s, while both events wait out a 60 s back-off (next sends due near 129 s).
    # A second alarm is raised at 74.5 s (event 3), just before the host's return.
    fb = FeedBuilder().rest(4).set(AT_FLOOR | ALARM).rest(4, 250).set(AT_FLOOR).rest(63.5)
    fb.set(AT_FLOOR | ALARM).rest(4, 250).set(AT_FLOOR).rest(14.5)
    talk = [(t, host_frame(T_TIME_SYNC, [t * 1000], seq=t)) for t in (*range(1, 61), 75)]
    run = run_firmware(tmp_path, fb.bytes(), setup=host_frames_at(talk))
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(set(events(run))) == [(1, lw.KIND_ALARM_BUTTON_HELD, 1), (2, lw.KIND_ALARM_BUTTON_HELD, 0),
                                        (3, lw.KIND_ALARM_BUTTON_HELD, 1), (4, lw.KIND_ALARM_BUTTON_HELD, 0)]
    for event_id in (1, 2):
        t = sends_ms(run, event_id)
        before = [x for x in t if x < 75000]
        assert [b - a for a, b in zip(before, before[1:])] == [2000, 4000, 8000, 16000, 32000]
        after = [x - 75000 for x in t if x >= 75000]
        assert after and after[0] <= 1000, t  # re-sent within a second of the host's return
        assert [b - a for a, b in zip(after, after[1:])] == [2000, 4000, 8000]  # backing off from the start
    t = sends_ms(run, 3)  # sent at its base back-off a moment before: not sent twice
    assert t[0] < 75000 and [b - a for a, b in zip(t, t[1:])] == [2000, 4000, 8000], t


def _reboots(ctrl: int, times: int, then_s: float) -> bytes:
    """A feed that reboots the board `times` times through `ctrl`, a second apart, then runs on then_s."""
    fb = FeedBuilder()
    for _ in range(times):
        fb.rest(1).ctrl(ctrl)
    return fb.rest(then_s).bytes()


def test_crash_loop_ends_in_safe_mode_and_a_clean_stop_leaves_it(tmp_path):
    run = run_firmware(tmp_path, _reboots(FEED_CTRL_CRASH, 3, then_s=10))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.boots == ["hard", "hard", "hard"]
    hellos = run.of(T_HELLO)
    assert [h.payload[9] for h in hellos] == [False, False, False, True]
    assert hellos[-1].payload[4] == "hard"
    assert (5, 1) in [(k, st) for _, k, st in events(run)]
    safe_t = hellos[-1].t_ms
    assert not [f for f in run.frames if f.type in (T_VIB, T_STATS) and f.t_ms > safe_t]  # no sampling
    assert run.summary["safe_mode"] is True
    again = run_firmware(tmp_path, FeedBuilder().rest(3).bytes())
    assert again.summary["safe_mode"] is False


def test_power_cuts_are_not_crashes(tmp_path):
    run = run_firmware(tmp_path, _reboots(FEED_CTRL_POWER_CUT, 4, then_s=3))
    assert run.boots == ["power_on"] * 4
    assert run.summary["safe_mode"] is False
    assert run.summary["counters"][3] == 5


def test_hours_of_board_time_counters_right_heap_flat(tmp_path):
    fb = FeedBuilder()
    for _ in range(12):  # two hours: a run and a door cycle every 10 minutes
        fb.rest(60, 1000).trip(up=True).door_cycle().rest(526, 1000)
    run = run_firmware(tmp_path, fb.bytes(), extra='put("store_writes", a.cnt.writes)')
    assert run.returncode == 0, run.stdout + run.stderr
    s = run.summary
    assert s["t_ms"] > 2 * 3600 * 1000 - 60000
    assert s["counters"][1] == 12 and s["counters"][0] == 12
    assert 100 <= s["counters"][2] <= 112
    assert s["counters"][4:8] == [0, 0, 0, 0]  # no overrun, no drop
    heap = [f.payload[1] for f in run.of(T_HEARTBEAT)]
    warm = heap[30:]  # after the first trip, calibration and the first persist
    assert max(warm) - min(warm) == 0, (min(warm), max(warm))  # flat: nothing leaks
    assert min(heap) > 8000
    # wear: counters written at most every persist_s (300 s) plus boot and shutdown
    assert s["store_writes"] <= 2 * 3600 // 300 + 3
    assert len(run.of(T_COUNTERS)) >= 110


HEAP_LOCK = """
import micropython, agent
_step = agent.Agent.step
b.locked = 0
b.states = bytearray(256)
def _locked(self):
    if 3000 < self.board.ticks_ms() < 55000:
        micropython.heap_lock()
        try:
            _step(self)
        finally:
            micropython.heap_unlock()
        b.locked += 1
        b.states[self.motion.state] = 1
    else:
        _step(self)
agent.Agent.step = _locked
"""


def test_a_loop_pass_allocates_nothing(tmp_path):
    fb = FeedBuilder().rest(4).trip().rest(3).door_cycle().trip(up=False).rest(50)
    run = run_firmware(tmp_path, fb.bytes(), setup=HEAP_LOCK,
                       extra='put("locked", b.locked)\nput("states", [i for i in range(4) if b.states[i]])')
    assert run.returncode == 0, run.stdout + run.stderr  # a MemoryError under heap_lock would end the run
    s = run.summary
    assert s["locked"] > 1200  # every pass of 52 s at 40 ms ran with the heap locked
    assert s["states"] == [0, 1, 2, 3]  # at rest and every motion state, streaming VIB and STATS
    assert s["counters"][1] == 2 and s["boots"] == []
    assert len(run.of(T_VIB)) > 40 and len(run.of(T_STATS)) > 30


BOARD_KEY = bytes(range(0x40, 0x60))


def test_config_is_validated_refused_with_reason_and_persisted(tmp_path):
    # A keyed board (its first boot is boot 1): only a keyed link may change what is in its flash.
    (tmp_path / "fs").mkdir()
    (tmp_path / "fs" / "auth.key").write_bytes(BOARD_KEY)
    rx = b"".join(host_frame(mtype, payload, 1, seq, BOARD_KEY) for mtype, payload, seq in [
        (T_CONFIG, [{"rate_hz": 5000}], 1),
        (T_CONFIG, [{"stats_ms": "fast"}], 2),
        (T_CONFIG, [{"accel_off_mg": 40}], 3),
        (T_CONFIG, [{"stats_ms": 2000}], 4),
        (T_CONTROL, [99, 0], 5),
        (T_CONFIG, [{"stats_ms": 3000, "stat_ms": 1}], 7),  # a typo: refused whole (SPEC)
        (11, [4, 0], 6),  # request_hello
    ])
    run = run_firmware(tmp_path, FeedBuilder().rest(10).bytes(), rx=rx)
    acks = {f.payload[1]: f.payload for f in run.of(T_ACK)}
    assert acks[1][2] == 1 and acks[1][3].startswith("rate_hz")
    assert acks[2][2] == 1 and acks[2][3] == "stats_ms: must be an integer"
    assert acks[3][2] == 1 and "accel_off_mg" in acks[3][3]
    assert acks[4][2] == 0 and acks[4][4] == run.summary["cfg_hash"]
    assert acks[5][2] == 2 and acks[5][3] == "unknown command"
    assert acks[7][2] == 1 and acks[7][3] == "stat_ms: unknown setting" and acks[7][4] == acks[4][4]
    hellos = run.of(T_HELLO)
    assert len(hellos) == 2 and hellos[1].payload[3] == acks[4][4]
    assert [f.payload[0] for f in run.of(T_STATS)][-1] == 2000
    # survives a reboot
    again = run_firmware(tmp_path, FeedBuilder().rest(5).bytes())
    assert again.returncode == 0, again.stdout
    assert again.of(T_HELLO)[0].payload[3] == acks[4][4]
    # a bad config file never bricks the board: defaults, and the reason is kept
    (tmp_path / "fs" / "config.json").write_text('{"rate_hz": 99999}')
    bad = run_firmware(tmp_path, FeedBuilder().rest(3).bytes())
    assert bad.summary["config_error"].startswith("config file: rate_hz")
    assert bad.of(T_HELLO)[0].payload[6] == 400
    (tmp_path / "fs" / "config.json").write_text("{not json")
    assert run_firmware(tmp_path, FeedBuilder().rest(3).bytes()).summary["config_error"] == "config file: not valid JSON"


def test_an_unkeyed_board_applies_config_until_reboot_and_refuses_link_settings(tmp_path):
    """Issue 14 item 8 (SECURITY.md, "An unkeyed board"): without a key anyone on the wires can send
    a CONFIG. It still applies (the daemon's [boards.settings] reach the board) but never reaches the
    flash, so a power cycle undoes it, and the settings that decide how the board reaches its host
    (a switch to BLE, another baud rate) are refused."""
    rx = b"".join([
        host_frame(T_CONFIG, [{"transport": 1}], seq=1),
        host_frame(T_CONFIG, [{"baud": 115200, "stats_ms": 3000}], seq=2),
        host_frame(T_CONFIG, [{"stats_ms": 2000}], seq=3),
    ])
    run = run_firmware(tmp_path, FeedBuilder().rest(10).bytes(), rx=rx)
    acks = {f.payload[1]: f.payload for f in run.of(T_ACK)}
    assert acks[1][2] == 1 and acks[1][3] == "transport: only over a keyed link or with liftwatch flash --config"
    assert acks[2][2] == 1 and acks[2][3].startswith("baud: only over a keyed link")
    assert acks[3][2] == 0 and [f.payload[0] for f in run.of(T_STATS)][-1] == 2000  # applied
    assert not (tmp_path / "fs" / "config.json").exists()  # never saved
    again = run_firmware(tmp_path, FeedBuilder().rest(5).bytes())
    assert again.returncode == 0, again.stdout
    assert again.of(T_HELLO)[0].payload[3] != acks[3][4]  # after a reboot: the flashed settings again
    assert [f.payload[0] for f in again.of(T_STATS)][-1] == 1000


def test_time_sync_counters_and_stream_mode(tmp_path):
    rx = b"".join([
        host_frame(T_TIME_SYNC, [1700000000123], seq=1),
        host_frame(T_CONTROL, [5, 0], seq=2),  # request_counters
        host_frame(T_CONTROL, [3, 2], seq=3),  # stream mode 2: no VIB even while moving
    ])
    reboot = host_frames_at([(17, host_frame(T_CONTROL, [1, 0], seq=4))])
    run = run_firmware(tmp_path, FeedBuilder().rest(4).trip().rest(8).bytes(), rx=rx, setup=reboot)
    ts = run.of(T_TIME_SYNC)
    assert ts and ts[0].payload[0] == 1700000000123
    assert run.of(T_COUNTERS)
    assert run.of(T_VIB) == []
    # CONTROL reboot: ACKed, a clean stop (counters saved), a soft reset that is not a crash
    assert any(f.type == T_ACK and f.payload[:3] == [T_CONTROL, 4, 0] for f in run.frames)
    assert run.boots == ["soft"]
    assert [f.payload[4] for f in run.of(T_HELLO)] == ["power_on", "soft"]
    assert run.summary["counters"][1] == 1 and run.summary["counters"][3] == 2
    assert run.summary["counters"][8] == 0  # crash streak


def test_ctrl_c_shuts_down_cleanly_and_propagates(tmp_path):
    setup = (
        "_w = b.wait_ms\n"
        "def _wait(ms):\n"
        "    if b.t_us > 5000000:\n"
        "        raise KeyboardInterrupt\n"
        "    return _w(ms)\n"
        "b.wait_ms = _wait\n"
    )
    run = run_firmware(tmp_path, FeedBuilder().rest(10).bytes(), setup=setup)
    assert run.returncode != 0 and "KeyboardInterrupt" in run.stdout + run.stderr
    raw = (tmp_path / "fs" / "lw_counters.bin").read_bytes()
    slot = 8 + 4 * 10 + 2
    newest = max((raw[i * slot: (i + 1) * slot] for i in (0, 1)), key=lambda b: struct.unpack_from("<I", b, 4)[0])
    values = struct.unpack_from("<10i", newest, 8)
    assert values[3] == 1 and values[9] == 0  # one boot, shut down cleanly (not dirty)


def test_source_form_gives_the_same_frames_as_the_mpy_form(tmp_path):
    fb = FeedBuilder().rest(4).trip().rest(3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    mpy = run_firmware(tmp_path / "a", fb.bytes())
    # Compiling the source on the board needs its parse trees in RAM: the .py form gets 48 KiB more
    # (docs/firmware.md: deploy the .mpy form, as `liftwatch flash` does).
    src = run_firmware(tmp_path / "b", fb.bytes(), paths=(FIRMWARE_DIR, SIM_HARDWARE_DIR, PROTOCOL_DIR),
                       heapsize=SOURCE_HEAP)
    assert src.returncode == 0, src.stdout + src.stderr
    assert [(f.type, f.seq, f.t_ms, f.payload) for f in src.frames if f.type != T_HEARTBEAT] == \
        [(f.type, f.seq, f.t_ms, f.payload) for f in mpy.frames if f.type != T_HEARTBEAT]
    assert len(mpy.of(T_VIB)) > 20


def test_watchdog_resets_a_board_whose_sampling_stalls(tmp_path):
    # A firmware bug that stops sampling (the loop still runs): no progress, no watchdog feed.
    setup = "import agent\nagent.Agent._sample = lambda self, now: False\n"
    run = run_firmware(tmp_path, FeedBuilder().rest(40).bytes(), setup=setup)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.boots == ["wdt", "wdt", "wdt"]  # 8 s watchdog, three times: then safe mode
    hellos = run.of(T_HELLO)
    assert [h.payload[4] for h in hellos] == ["power_on", "wdt", "wdt", "wdt"]
    assert [round(h.t_ms / 1000) for h in hellos[1:]] == [8, 16, 24]
    assert hellos[-1].payload[9] is True and run.summary["safe_mode"] is True


def test_calibrate_command_is_answered_when_the_next_window_closes(tmp_path):
    fb = FeedBuilder((0, 342, 940)).rest(6).trip().rest(4)
    # Two calibrate requests: at boot (car at rest: ACK ok with the gravity found) and one the
    # host sends during the run (injected at 6.5 s: answered "car not at rest").
    setup = host_frames_at([(6.5, host_frame(T_CONTROL, [2, 0], seq=2))])
    run = run_firmware(tmp_path, fb.bytes(), rx=host_frame(T_CONTROL, [2, 0], seq=1), setup=setup)
    acks = {f.payload[1]: f.payload for f in run.of(T_ACK)}
    assert acks[1][2] == 0
    gx, gy, gz = acks[1][4]
    assert abs(gx / 16) < 5 and abs(gy / 16 - 342) < 5 and abs(gz / 16 - 940) < 5
    assert acks[2][2] == 1 and acks[2][3] == "car not at rest"
    assert run.summary["calibrated"] is True and run.summary["counters"][1] == 1


def test_missing_sensor_is_an_event_and_the_board_stays_up(tmp_path):
    run = run_firmware(tmp_path, FeedBuilder().rest(20).bytes(), sensor="none")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.boots == []  # retries the sensor every second, feeding the watchdog: no reset loop
    assert [(k, st) for _, k, st in events(run)][:1] == [(4, 1)]
    assert run.of(T_HELLO)[0].payload[2] == "none"
    assert run.of(T_HEARTBEAT)[0].payload[3] == 255  # uncalibrated: no motion without a sensor


def test_input_bounces_shorter_than_debounce_are_ignored(tmp_path):
    fb = FeedBuilder().rest(3)
    for _ in range(5):  # contact bounce: 10 ms open, 10 ms closed
        fb.set(AT_FLOOR & ~DOOR_CLOSED)
        fb._rec(10000)
        fb.set(AT_FLOOR)
        fb._rec(10000)
    fb.rest(2)
    fb.set(AT_FLOOR & ~DOOR_CLOSED).rest(0.5, 100).set(AT_FLOOR).rest(2)  # one real door cycle
    run = run_firmware(tmp_path, fb.bytes())
    changes = [(f.payload[1], f.payload[2]) for f in run.of(T_STATE) if f.payload[2]]
    assert changes == [(LEVEL, DOOR_CLOSED), (AT_FLOOR, DOOR_CLOSED)]
    assert run.summary["counters"][0] == 1
    opened = next(f.payload[0] for f in run.of(T_STATE) if f.payload[2])
    assert opened == 3000 + 100 + 2000  # stamped at the edge, not at the loop pass that saw it


def test_board_modules_compile_for_the_esp32(tmp_path):
    # viper code must use only small-int constants and <= 4 arguments on the ESP32 (xtensawin)
    out = h.build_mpy(tmp_path / "esp32", march="xtensawin")
    names = {p.stem for p in out.glob("*.mpy")}
    assert {"agent", "hal_esp32", "ble_nus", "motion", "lwproto", "main"} <= names


def test_losses_are_counted_never_silent(tmp_path):
    # A pass that comes 300 ms late (the FIFO holds 80 ms at 400 Hz), then a host that stops reading
    # (the TX side takes 3 KB and then refuses): FIFO overrun and link drops land in the counters.
    setup = (
        "_w = b.wait_ms\n"
        "def _wait(ms):\n"
        "    if 5000000 <= b.t_us < 5040000:\n"
        "        ms += 300\n"
        "    return _w(ms)\n"
        "b.wait_ms = _wait\n"
        "b._uart_file = None\n"
        "b._uart_buf = bytearray(3000)\n"
    )
    run = run_firmware(tmp_path, FeedBuilder().rest(8).trip().rest(3).bytes(), setup=setup)
    assert run.returncode == 0, run.stdout + run.stderr
    c = run.summary["counters"]
    assert c[4] == 1  # one FIFO overrun episode
    assert c[6] > 20  # link drops: the VIB of the trip had nowhere to go
    assert c[1] == 1  # and the trip was still seen


# ---- issue 16: real sensors (noise, offset drift) and passengers jumping ------------------------


@pytest.mark.parametrize("sensor", ["lis3dh", "lis2dw12", "adxl355"])
def test_calibrates_on_every_part_at_20_mg_noise_by_averaging_longer(tmp_path, sensor):
    """20 mg rms on every axis, over 3x the worst datasheet noise of the parts we drive (and the
    issue's 8 mg part with room to spare): the board never finds a window quiet by the old 8 mg rule,
    so it averages more windows instead; gravity within 1 mg, and the trip after it is seen."""
    fb = FeedBuilder((0, 342, 940)).rest(18).trip().rest(4)
    run = run_firmware(tmp_path, fb.bytes(), sensor=sensor, noise_mg=20)
    assert run.returncode == 0, run.stdout + run.stderr
    lsb = run.of(T_HELLO)[0].payload[7]
    assert run.summary["calibrated"] is True
    for got, mg in zip(run.summary["gravity"], (0, 342, 940)):
        assert abs(got * 1000 / lsb - mg) < 1.0
    assert motions(run) == [0, 1, 2, 3, 0]
    assert run.summary["counters"][1] == 1 and events(run) == []
    # what the daemon scales its rest thresholds with: STATS at rest carry the noise
    assert all(15 <= r <= 25 for r in run.of(T_STATS)[-1].payload[3])


def test_rest_offset_is_tracked_so_a_drifting_sensor_keeps_its_trips(tmp_path):
    """The zero-g offset ramps by 29 mg along gravity within a minute at the landing (a hot roof,
    compressed): re-zeroed at every confirmed rest, the board keeps both trips, raises nothing, and
    its gravity follows the offset. Untracked, the offset alone would exceed accel_on_mg (25)."""
    fb = FeedBuilder((0, 342, 940)).rest(4)
    fb.drift(60, (0.0, 10.0, 27.0))
    fb.trip().rest(4).door_cycle().trip(up=False).rest(4)
    run = run_firmware(tmp_path, fb.bytes())
    assert run.returncode == 0, run.stdout + run.stderr
    assert motions(run) == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert run.summary["counters"][1] == 2 and events(run) == []
    for got, mg in zip(run.summary["gravity"], (0, 352, 967)):
        assert abs(got / 16 - mg) < 3


def test_a_passenger_jumping_with_the_door_open_is_not_a_run(tmp_path):
    """150-300 mg bursts at the landing, door open: the board may see acceleration, but it does not
    integrate to a displacement: no door_open_while_moving, no trip counted. The run after is."""
    fb = FeedBuilder().rest(4).set(AT_FLOOR & ~DOOR_CLOSED | PRESENCE).rest(1, 250)
    for peak in (150, 220, 300, 260, 180, 300):
        fb.jump(peak).rest(1.2, 100)
    for _ in range(30):  # every 2.55 s: the rest is re-zeroed between them, its windows close at every phase
        fb.jump(300).rest(2.25, 250)
    fb.set(AT_FLOOR | PRESENCE).rest(1).trip().rest(3)
    run = run_firmware(tmp_path, fb.bytes())
    assert run.returncode == 0, run.stdout + run.stderr
    assert events(run) == []
    assert run.summary["counters"][1] == 1
    assert 1 in motions(run)[:-4]  # the jumps did cross the acceleration threshold


def test_leaving_the_landing_with_the_door_open_is_raised_while_still_in_the_zone(tmp_path):
    """Unintended movement: the car leaves with its door open; the zone sensors stay on for 2 s of
    the run, but 20 mm of integrated travel proves it moved: the EVENT comes within the first second."""
    fb = FeedBuilder().rest(4).set(AT_FLOOR & ~DOOR_CLOSED).rest(1)
    start_ms = fb.t_us // 1000
    fb.trip(door_open_at=0.0, leave_zone_s=2.0).rest(3)
    run = run_firmware(tmp_path, fb.bytes())
    assert run.returncode == 0, run.stdout + run.stderr
    raised = [f.payload for f in run.of(T_EVENT) if f.payload[1] == 1 and f.payload[2] == 1]
    assert raised and start_ms < raised[0][3] < start_ms + 1000


def test_rest_offset_is_only_re_zeroed_where_the_zone_sensors_vouch_for_rest(tmp_path):
    """Between floors (no zone sensor on) nothing says the car is still, so an offset that appears
    there is not taken for zero; back at a landing, it is. Jumps at the landing do not move it."""
    fb = FeedBuilder().rest(4)
    fb.set(DOOR_CLOSED).drift(20, (0.0, 0.0, 15.0))  # stopped between floors (a rescue), offset +15 mg
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    between = run_firmware(tmp_path / "a", fb.bytes(), extra='put("g_between", list(a.motion.gravity))')
    assert abs(between.summary["g_between"][2] / 16 - 1000) < 1.5  # still the calibration
    fb.set(AT_FLOOR | PRESENCE).rest(20)
    for _ in range(20):  # a child jumping every 1.05 s: the STATS windows cut the jumps at every phase
        fb.jump(300).rest(0.75, 250)
    run = run_firmware(tmp_path / "b", fb.bytes())
    assert abs(run.summary["gravity"][2] / 16 - 1015) < 1.5  # tracked at the landing, jumps ignored
