"""Edge daemon throughput, latency, upstream volume and memory.

    python benchmarks/daemon.py [--trips 500] [--events 200] [--repeat 3] [--json]

Figures (issue 6):
- `frames_per_s`: wire bytes -> FrameReader -> BoardSession -> CarAnalytics -> SQLite outbox, on a
  VIB-heavy stream (back-to-back trips, 400 Hz, 64-sample blocks, STATE changes, heartbeats), per
  CPU second of the process (all threads). CPU time, not wall time: on a shared or loaded machine
  wall time measures the other processes (at load 10 on 2 cores the same run took 5x its CPU time);
  `frames_per_wall_s` is the wall-clock figure. Throughput figures are the best of `--repeat` runs.
- `bare_unpackb_frames_per_s`, `ratio`: msgpack.unpackb alone over the same payloads in the same run
  (CPU time, repeated to last at least 0.2 s, alternating with the pipeline runs so both see the
  same load); ratio = pipeline / bare.
- `stage_*_frames_per_s`: each stage alone on the same stream, CPU time (framing = FrameReader.feed on
  4 KiB reads; session = BoardSession.on_frames; analytics = CarAnalytics.feed of the session's
  observations), `stage_ride_quality_ms_per_trip` the part of analytics spent in analyse_trip;
  `stage_*_share` each stage's part of the CPU time of a pipeline run like the `frames_per_s` ones,
  timed inside that run, outermost call only (`on_frames` calls `on_frame`). `timing_overhead`: what
  the timing wrappers themselves cost, estimated from their count and a calibration, ~6 % of that
  run (two process_time() calls per session/analytics call); `outbox_glue`: the rest (outbox
  commits, CarPipeline, event loop); `dominant_stage` the largest stage. `frames_per_s` comes from
  separate runs without the wrappers.
- `boards_per_core`: simulated seconds of that stream per CPU second (process time, all threads):
  how many boards streaming VIB continuously one core keeps up with. Real boards stream VIB only
  around trips, so this is the worst case.
- `event_latency_p50_ms` / `_p99_ms`: a board EVENT frame written to the board's pty -> the resulting
  `event` message PUBACKed by a local Mosquitto, through the whole daemon (serial transport,
  session, analytics, outbox fsync, MQTT publisher).
- `upstream_bytes_per_car_day`: bytes the default configuration sends for the car's fact messages
  (trips, events, daily record, maintenance) on a simulated busy day (`--trips` trips with door
  cycles): each message encoded as the MQTT publisher does by default (`MqttConfig().encoding`,
  DEFLATE with the shared dictionary) inside its MQTT v5 PUBLISH packet (fixed header, topic, packet
  id, content-type property, payload; TCP/TLS framing and the broker's PUBACKs not counted).
  `upstream_payload_bytes_per_car_day`: the encoded payloads alone; `upstream_json_bytes_per_car_day`:
  the same messages as plain JSON lines (the journal, or `encoding = "json"`).
- `rss_mb`: peak resident memory (VmHWM) of `liftwatch run` in its own process, status page on, serving
  10 boards streaming VIB at 400 Hz in real time (`rss_sampled_mb`: the highest VmRSS sampled while
  they stream). `start_s`: from spawning `liftwatch run` to the first board frame it handled (an
  EVENT stored and ACKed; `start_all_boards_s`: the last of the 10 boards).

The synthetic car is tests/support/analytics_synth.py (the analytics tests' known-answer trips), turned into
the frames a board sends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from cobs import cobs

from liftwatch.broker import Mosquitto
from liftwatch.edge_daemon.analytics import engine as analytics_engine
from liftwatch.edge_daemon.analytics.config import AnalyticsConfig
from liftwatch.edge_daemon.analytics.engine import CarAnalytics
from liftwatch.edge_daemon.config import parse_config
from liftwatch.edge_daemon.daemon import Daemon
from liftwatch.edge_daemon.pipeline import CarPipeline, OutboxStore
from liftwatch.edge_daemon.replay import ReplayFeed
from liftwatch.edge_daemon.observations import InputsChanged, MotionChanged, VibBlock
from liftwatch.edge_daemon.outbox import Outbox
from liftwatch.edge_daemon.session import BoardSession, LinkMode, SessionConfig
from liftwatch.edge_daemon.upstream import MqttConfig
from liftwatch.edge_daemon.upstream_codec import encode_payload
from liftwatch.hil.mockboard.ptys import PtyPort
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import HEADER_LEN, FrameReader, encode_frame

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO / "tests"))  # the analytics tests' synthetic car
from support.analytics_synth import CarStream  # noqa: E402
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z (board time 0)
RATE_HZ = 400
LSB_PER_G = 16384
VIB_BLOCK = 64  # samples per VIB frame, as the firmware sends them
HEARTBEAT_S = 5.0
READ_CHUNK = 4096  # bytes per transport read, as from a USB serial adapter


# -- the synthetic board ------------------------------------------------------------------------


def car_stream(trips: int, idle_s: float, seed: int = 1) -> Any:
    """A car doing `trips` trips (1-8 floors, door cycle at each stop, `idle_s` mean rest between)."""
    rng = random.Random(seed)
    car = CarStream(AnalyticsConfig(floor_count=20), t0=T0 + 1.0)
    floor = 0
    for _ in range(trips):
        target = rng.randrange(0, 20)
        if target == floor:
            target = (floor + 1) % 20
        car.set(presence=True)
        car.trip(target - floor, v_max=1.0, ramp_s=2.0)
        floor = target
        car.wait(0.5).door_cycle(open_s=rng.uniform(3, 6)).set(presence=False)
        car.wait(rng.expovariate(1 / idle_s) if idle_s else 0.5)
    return car


def board_frames(car: Any, boot_id: int = 1) -> tuple[list[bytes], float]:
    """The frames a board sends for this car, in send order; returns (wires, duration_s)."""
    obs = car.obs
    end_s = car.t - T0 + 1.0
    gravity = next((o.gravity for o in obs if isinstance(o, VibBlock)), (0, 0, LSB_PER_G))
    timed: list[tuple[float, int, Any]] = [
        (0.0, lw.T_HELLO, ["bench-board", "1.0.0", "lis3dh", 0, "power_on", ["vib"], RATE_HZ, LSB_PER_G, True,
                           False, 1, [int(c) for c in gravity]]),
    ]
    inputs, motion = 0, 0
    for o in sorted((o for o in obs if not isinstance(o, VibBlock)), key=lambda o: o.ts):
        t = o.ts - T0
        if isinstance(o, InputsChanged):
            inputs = int(o.inputs)
            timed.append((t, lw.T_STATE, [int(t * 1000), inputs, int(o.changed), motion]))
        elif isinstance(o, MotionChanged):
            motion = int(o.motion)
            timed.append((t, lw.T_STATE, [int(t * 1000), inputs, 0, motion]))
    runs: list[tuple[int, list[np.ndarray]]] = []  # contiguous sample runs: (first index, blocks)
    for o in sorted((o for o in obs if isinstance(o, VibBlock)), key=lambda o: o.ts_first):
        first = round((o.ts_first - T0) * RATE_HZ)
        if runs and runs[-1][0] + sum(len(b) for b in runs[-1][1]) == first:
            runs[-1][1].append(o.samples)
        else:
            runs.append((first, [o.samples]))
    for first, blocks in runs:
        samples = np.ascontiguousarray(np.concatenate(blocks), dtype="<i2")
        for i in range(0, len(samples) - VIB_BLOCK + 1, VIB_BLOCK):
            t_last = (first + i + VIB_BLOCK - 1) / RATE_HZ
            timed.append((t_last, lw.T_VIB, [RATE_HZ, LSB_PER_G, (first + i) % 65536, VIB_BLOCK,
                                             samples[i : i + VIB_BLOCK].tobytes()]))
    t = HEARTBEAT_S
    while t < end_s:
        timed.append((t, lw.T_HEARTBEAT, [int(t), 60000, 0, 0, 1, True, False]))
        if int(t) % 3600 == 0:
            timed.append((t, lw.T_COUNTERS, [0, 0, 0, 1, 0, 0, 0, 0]))
        t += HEARTBEAT_S
    timed.sort(key=lambda x: x[0])
    wires = [encode_frame(mtype, payload, boot_id, seq, int(t * 1000)) for seq, (t, mtype, payload) in enumerate(timed)]
    return wires, end_s


def payloads_of(wires: list[bytes]) -> list[bytes]:
    return [cobs.decode(w[:-1])[HEADER_LEN:-2] for w in wires]


# -- measurements ---------------------------------------------------------------------------------


async def _pipeline_run(stream: bytes, workdir: Path, tag: str,
                        stages: bool = False) -> tuple[int, list[bytes], float, float, dict]:
    """Feed `stream` in serial-sized chunks through the replay-mode pipeline into a real outbox.
    Returns (frames, message payloads, wall s, cpu s, cpu s per stage inside this run); the stage
    times only with `stages`, whose wrappers cost CPU themselves (two process_time() calls, ~1 us
    each, per session and analytics call: ~7 % of the run), so throughput runs go without them."""
    outbox = Outbox(workdir / f"{tag}.sqlite", budget_bytes=1 << 30)
    session = BoardSession(SessionConfig(), LinkMode.REPLAY, replay_epoch_ms=T0 * 1000)
    analytics = CarAnalytics("car-1", AnalyticsConfig(floor_count=20))
    pipe = CarPipeline("bench", "car-1", session, analytics, OutboxStore(outbox))
    replay_feed = ReplayFeed(pipe)
    reader = FrameReader()
    spent = dict.fromkeys(("framing", "session", "analytics", "ride_quality", "calls"), 0.0)

    depth = dict.fromkeys(spent, 0)

    def timed(name: str, fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            if depth[name]:  # on_frames calls on_frame: time the outer call only, count it once
                return fn(*args, **kwargs)
            spent["calls"] += 1
            depth[name] += 1
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - t
                depth[name] -= 1
        return run

    # CPU time of each stage inside this very run (instance attributes shadow the methods), so the
    # shares add up against the same run's total whatever else the machine does meanwhile.
    analyse_trip = analytics_engine.analyse_trip
    feed = reader.feed
    if stages:
        for name in ("on_frames", "on_frame", "tick", "link_lost"):
            setattr(session, name, timed("session", getattr(session, name)))
        for name in ("feed", "tick", "flush"):
            setattr(analytics, name, timed("analytics", getattr(analytics, name)))
        analytics_engine.analyse_trip = timed("ride_quality", analyse_trip)
        feed = timed("framing", reader.feed)
    try:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for i in range(0, len(stream), READ_CHUNK):
            frames = feed(stream[i : i + READ_CHUNK])
            if frames:
                await replay_feed.frames(frames)
        await pipe.flush(session.last_heard_s or T0)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        analytics_engine.analyse_trip = analyse_trip
    payloads = [m.payload for m in outbox.pending(0, 1_000_000)]
    outbox.close()
    return reader.frames, payloads, wall, cpu, spent


def _wrapper_cost_s() -> float:
    """CPU seconds one stage-timing wrapper adds to a call (two process_time() calls and the rest)."""
    spent = [0.0]

    def run() -> None:
        t = time.process_time()
        try:
            pass
        finally:
            spent[0] += time.process_time() - t

    n = 20_000
    t0 = time.process_time()
    for _ in range(n):
        run()
    wrapped = time.process_time() - t0
    t0 = time.process_time()
    for _ in range(n):
        spent[0] += 0.0
    return max(0.0, (wrapped - (time.process_time() - t0)) / n)


def _bare_unpackb_cpu_s(payloads: list[bytes]) -> float:
    """CPU seconds msgpack.unpackb takes for `payloads` once (repeated to last >= 0.2 s)."""
    unpackb = msgpack.unpackb
    rounds, spent = 0, 0.0
    t0 = time.process_time()
    while spent < 0.2:
        for p in payloads:
            unpackb(p)
        rounds += 1
        spent = time.process_time() - t0
    return spent / rounds


def measure_throughput(workdir: Path, rush_trips: int, repeat: int) -> dict[str, Any]:
    """Best of `repeat` runs for each figure (the least disturbed by other processes)."""
    car = car_stream(rush_trips, idle_s=0.0, seed=7)
    wires, duration_s = board_frames(car)
    stream = b"".join(wires)
    payloads = payloads_of(wires)
    # Pipeline and bare unpackb alternate, so both see the same load on a shared box.
    runs, bare = [], []
    for i in range(repeat):
        runs.append(asyncio.run(_pipeline_run(stream, workdir, f"rush{i}")))
        bare.append(_bare_unpackb_cpu_s(payloads))
    frames, _, _, cpu, _ = min(runs, key=lambda r: r[3])
    wall = min(r[2] for r in runs)
    bare_s = min(bare)
    vib = sum(1 for w in wires if cobs.decode(w[:-1])[1] == lw.T_VIB)
    stages = _stage_rates(stream, repeat)
    # shares of an instrumented run's own CPU time; outbox_glue is the rest (outbox commits on
    # their worker thread, CarPipeline, the event loop, the timing wrappers themselves)
    staged = min((asyncio.run(_pipeline_run(stream, workdir, f"staged{i}", stages=True)) for i in range(repeat)),
                 key=lambda r: r[3])
    staged_cpu, spent = staged[3], staged[4]
    shares = {
        "framing": spent["framing"] / staged_cpu,
        "session": spent["session"] / staged_cpu,
        "ride_quality": spent["ride_quality"] / staged_cpu,
        "analytics_other": (spent["analytics"] - spent["ride_quality"]) / staged_cpu,
    }
    # what the wrappers themselves cost, from their count and a calibration on an empty call
    shares["timing_overhead"] = min(1.0 - sum(shares.values()), spent["calls"] * _wrapper_cost_s() / staged_cpu)
    shares["outbox_glue"] = max(0.0, 1.0 - sum(shares.values()))
    stages.update({f"stage_{k}_share": round(v, 3) for k, v in shares.items()})
    stages["dominant_stage"] = max((k for k in shares if k != "timing_overhead"), key=shares.__getitem__)
    return {
        **stages,
        "frames": frames,
        "vib_share": round(vib / len(wires), 3),
        "frames_per_s": round(frames / cpu, 1),
        "frames_per_wall_s": round(frames / wall, 1),
        "bare_unpackb_frames_per_s": round(len(payloads) / bare_s, 1),
        "ratio": round((frames / cpu) / (len(payloads) / bare_s), 4),
        "boards_per_core": round(duration_s / cpu, 1),
        "stream_s": round(duration_s, 1),
    }


def _stage_rates(stream: bytes, repeat: int) -> dict[str, Any]:
    """Frames per CPU second of each stage alone on the same stream; best of `repeat` runs."""
    n, framing_s, session_s, analytics_s, rq_s, rq_trips = _stage_times(stream)
    for _ in range(repeat - 1):
        again = _stage_times(stream)
        framing_s, session_s = min(framing_s, again[1]), min(session_s, again[2])
        if again[3] < analytics_s:
            analytics_s, rq_s, rq_trips = again[3:]
    return {
        "stage_framing_frames_per_s": round(n / framing_s),
        "stage_session_frames_per_s": round(n / session_s),
        "stage_analytics_frames_per_s": round(n / analytics_s),
        "stage_ride_quality_ms_per_trip": round(rq_s * 1000 / max(1, rq_trips), 2),
    }


def _stage_times(stream: bytes) -> tuple[int, float, float, float, float, int]:
    """CPU seconds of framing, session, analytics (and of analyse_trip inside it) alone."""
    reader = FrameReader()
    t0 = time.process_time()
    batches = [reader.feed(stream[i : i + READ_CHUNK]) for i in range(0, len(stream), READ_CHUNK)]
    framing_s = time.process_time() - t0
    n = sum(len(b) for b in batches)
    session = BoardSession(SessionConfig(), LinkMode.REPLAY, replay_epoch_ms=T0 * 1000)
    t0 = time.process_time()
    obs = []
    for b in batches:
        obs += session.on_frames(b, 0.0)
    session_s = time.process_time() - t0
    analytics = CarAnalytics("car-1", AnalyticsConfig(floor_count=20))
    rq_s, rq_trips = 0.0, 0
    analyse_trip = analytics_engine.analyse_trip

    def timed_analyse_trip(*args: Any, **kwargs: Any) -> Any:
        nonlocal rq_s, rq_trips
        t = time.process_time()
        try:
            return analyse_trip(*args, **kwargs)
        finally:
            rq_s += time.process_time() - t
            rq_trips += 1

    analytics_engine.analyse_trip = timed_analyse_trip
    try:
        t0 = time.process_time()
        for o in obs:
            analytics.feed(o)
        analytics_s = time.process_time() - t0
    finally:
        analytics_engine.analyse_trip = analyse_trip
    return n, framing_s, session_s, analytics_s, rq_s, rq_trips


def _mqtt_publish_bytes(topic: str, payload: bytes, content_type: str) -> int:
    """Size of the MQTT v5 PUBLISH packet (QoS 1) carrying `payload` with a content-type property."""
    props = 1 + 2 + len(content_type.encode())
    rest = 2 + len(topic.encode()) + 2 + _varint_len(props) + props + len(payload)
    return 1 + _varint_len(rest) + rest


def _varint_len(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4


def measure_day(workdir: Path, trips: int) -> dict[str, float]:
    idle = max(1.0, (86_400 - trips * 25.0) / trips)
    car = car_stream(trips, idle_s=idle, seed=3)
    wires, duration_s = board_frames(car)
    frames, payloads, wall, _, _ = asyncio.run(_pipeline_run(b"".join(wires), workdir, "day"))
    kinds: dict[str, int] = {}
    sent = encoded = 0
    encoding = MqttConfig(host="bench").encoding  # what `liftwatch run` publishes with by default
    for p in payloads:
        message = json.loads(p)
        kind = message["kind"]
        kinds[kind] = kinds.get(kind, 0) + 1
        body, content_type = encode_payload(p, encoding)
        encoded += len(body)
        sent += _mqtt_publish_bytes(f"liftwatch/{message['site']}/{message['car']}/{kind}", body, content_type)
    scale = 86_400 / duration_s
    return {
        "upstream_bytes_per_car_day": round(sent * scale),
        "upstream_encoding": str(encoding),
        "upstream_payload_bytes_per_car_day": round(encoded * scale),
        "upstream_json_bytes_per_car_day": round(sum(len(p) + 1 for p in payloads) * scale),
        "day_trips": trips,
        "bytes_per_trip_message": round(sum(len(p) + 1 for p in payloads if b'"kind":"trip"' in p)
                                        / max(1, kinds.get("trip", 0))),
        "day_messages": kinds,
        "day_trips_reported": kinds.get("trip", 0),
        "day_sim_s": round(duration_s),
        "day_wall_s": round(wall, 1),
    }


def _write(board: PtyPort, wire: bytes) -> None:
    """A frame on the board's UART; one the daemon has no room for is lost, as on a real UART."""
    try:
        board.write(wire)
    except BlockingIOError:
        pass


def _daemon_config(workdir: Path, boards: list[PtyPort], mqtt: tuple[str, int] | None) -> Any:
    doc: dict[str, Any] = {
        "daemon": {"site": "bench", "pi": "pi-bench", "state_dir": str(workdir / "state")},
        "boards": [{"car": f"car-{i}", "port": b.link_path} for i, b in enumerate(boards)],
        "analytics": {"floor_count": 20},
    }
    if mqtt:
        doc["upstream"] = {"mqtt": {"host": mqtt[0], "port": mqtt[1], "tls": False}}
    return parse_config(doc, "bench", workdir)


async def _event_latency(workdir: Path, events: int, host: str, port: int) -> list[float]:
    board = PtyPort(str(workdir / "tty-latency"))
    delivered: list[tuple[float, bytes]] = []

    def on_delivered(messages: Any) -> None:
        now = time.perf_counter()
        delivered.extend((now, m.payload) for m in messages if m.kind == "event")

    daemon = Daemon(_daemon_config(workdir, [board], (host, port)), on_delivered=on_delivered)
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    t0 = time.monotonic()
    seq = 0

    def send(mtype: int, payload: list) -> None:
        nonlocal seq
        _write(board, encode_frame(mtype, payload, 1, seq, int((time.monotonic() - t0) * 1000)))
        seq += 1

    latencies: list[float] = []
    try:
        while not (daemon.upstream and daemon.upstream.counters.connects):
            await asyncio.sleep(0.02)
        send(lw.T_HELLO, ["lat-board", "1.0.0", "lis3dh", 0, "power_on", [], RATE_HZ, LSB_PER_G, True, False, 1,
                          [0, 0, LSB_PER_G]])
        send(lw.T_STATE, [int((time.monotonic() - t0) * 1000), 0b111, 0b111, 0])
        await asyncio.sleep(0.3)
        for i in range(events):
            board.read()  # the host's frames (TIME_SYNC, ACKs): not answered, not left to fill the pty
            before = len(delivered)
            written = time.perf_counter()
            # alarm button held raised, then cleared: each is a fault event upstream
            send(lw.T_EVENT, [1000 + i, 3, 1 - i % 2, int((time.monotonic() - t0) * 1000), {}])
            deadline = time.monotonic() + 10
            while len(delivered) == before and time.monotonic() < deadline:
                await asyncio.sleep(0.0005)
            if len(delivered) > before:
                latencies.append((delivered[before][0] - written) * 1000)
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await run
        board.close()
    return latencies


def measure_event_latency(workdir: Path, events: int) -> dict[str, float]:
    broker = Mosquitto(workdir / "broker", persistence=False)
    broker.start()
    try:
        lat = asyncio.run(_event_latency(workdir, events, broker.host, broker.port))
    finally:
        broker.stop()
    arr = np.array(lat)
    return {
        "event_latency_p50_ms": round(float(np.percentile(arr, 50)), 2),
        "event_latency_p99_ms": round(float(np.percentile(arr, 99)), 2),
        "events_measured": len(lat),
    }


def _proc_status_mb(pid: int, field: str) -> float:
    """A memory figure (VmRSS, VmHWM) of process `pid`, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _ten_board_config(workdir: Path, boards: list[PtyPort]) -> Path:
    """What an installation runs: `liftwatch run` with its status page and /metrics on, no broker
    (the outbox keeps the messages, as during an uplink outage)."""
    path = workdir / "ten-boards.toml"
    lines = ["[daemon]", 'site = "bench"', 'pi = "pi-bench"', f'state_dir = "{workdir / "state-rss"}"',
             "status_interval_s = 0.5", "",
             "[analytics]", "floor_count = 20", "", "[status]", "port = 0", ""]
    for i, b in enumerate(boards):
        lines += ["[[boards]]", f'car = "car-{i}"', f'port = "{b.link_path}"', ""]
    path.write_text("\n".join(lines))
    return path


def measure_ten_boards(workdir: Path, seconds: float) -> dict[str, float]:
    """`liftwatch run` in its own process, as on a Pi, serving 10 boards: `start_s` from spawning
    it to the first board frame it handled (an EVENT it stored and ACKed; each board sends HELLO and
    EVENT every 20 ms until answered), then `rss_mb`, its peak resident memory (VmHWM) while the
    boards stream VIB at 400 Hz in real time for `seconds`."""
    car = car_stream(40, idle_s=0.0, seed=11)
    wires, duration = board_frames(car, boot_id=2)  # boot 1 was the start-up probe's
    sent_at = np.linspace(0, duration, len(wires))
    boards = [PtyPort(str(workdir / f"tty-rss{i}")) for i in range(10)]
    readers = [FrameReader() for _ in boards]  # the host's frames to each board
    hello = ["bench-board", "1.0.0", "lis3dh", 0, "power_on", ["vib"], RATE_HZ, LSB_PER_G, True, False, 1,
             [0, 0, LSB_PER_G]]
    probe = encode_frame(lw.T_HELLO, hello, 1, 0, 0) + encode_frame(lw.T_EVENT, [1, 3, 1, 0, {}], 1, 1, 0)
    config = _ten_board_config(workdir, boards)
    spawned = time.perf_counter()
    daemon = subprocess.Popen([sys.executable, "-m", "liftwatch", "run", "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=open(workdir / "ten-boards.log", "wb"))
    answered: dict[int, float] = {}
    try:
        while len(answered) < len(boards):
            if daemon.poll() is not None or time.perf_counter() - spawned > 60:
                raise RuntimeError(f"liftwatch run exited or never answered: {(workdir / 'ten-boards.log').read_text()}")
            for k, b in enumerate(boards):
                if k in answered:
                    continue
                if any(f.type == lw.T_ACK and f.payload[:2] == [lw.T_EVENT, 1] for f in readers[k].feed(b.read())):
                    answered[k] = time.perf_counter() - spawned
                else:
                    _write(b, probe)
            time.sleep(0.02)
        start = time.monotonic()
        idx = [0] * len(boards)
        rss = 0.0
        while (now := time.monotonic() - start) < seconds:
            for k, b in enumerate(boards):
                while idx[k] < len(wires) and sent_at[idx[k]] <= now:
                    _write(b, wires[idx[k]])
                    idx[k] += 1
                b.read()
            rss = max(rss, _proc_status_mb(daemon.pid, "VmRSS"))
            time.sleep(0.01)
        time.sleep(1.0)  # the last frames read, and a status file written after them
        peak = _proc_status_mb(daemon.pid, "VmHWM")
        status = json.loads((workdir / "state-rss" / "status.json").read_text())
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        for b in boards:
            b.close()
    return {
        "start_s": round(min(answered.values()), 2),
        "start_all_boards_s": round(max(answered.values()), 2),
        "rss_mb": round(peak, 1),
        "rss_sampled_mb": round(rss, 1),
        "rss_boards": len(boards),
        "rss_frames_sent": sum(idx),
        "rss_frames_handled": sum(b["frames_ok"] for b in status["boards"]),  # probes included
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # A busy car: the HIL office day (hil_tests/scenarios/normal_day.toml) makes ~300 rides; a busy
    # residential block in China 400-600 trips.
    parser.add_argument("--trips", type=int, default=500, help="trips in the simulated busy day")
    parser.add_argument("--rush-trips", type=int, default=60, help="back-to-back trips for throughput")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs; the best of them counts")
    parser.add_argument("--events", type=int, default=200, help="EVENT frames for the latency figure")
    parser.add_argument("--rss-seconds", type=float, default=8.0)
    parser.add_argument("--skip-mqtt", action="store_true", help="no Mosquitto: skip the latency figure")
    parser.add_argument("--json", action="store_true", help="end with one JSON object line")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lw-daemon-bench-") as tmp:
        work = Path(tmp)
        result.update(measure_throughput(work, args.rush_trips, args.repeat))
        result.update(measure_day(work, args.trips))
        if not args.skip_mqtt:
            result.update(measure_event_latency(work, args.events))
        result.update(measure_ten_boards(work, args.rss_seconds))
    targets = {
        "ratio": (">=", 0.10),
        "boards_per_core": (">=", 100),
        "event_latency_p99_ms": ("<", 500),
        "upstream_bytes_per_car_day": ("<=", 200_000),
        "rss_mb": ("<=", 60),  # a Pi Zero 2 W has 512 MB for everything (issue 17)
        "start_s": ("<=", 2.0),
    }
    print(f"{'figure':<30} {'value':>14}  target")
    for key, value in result.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
            print(f"{key:<30} {value}")
            continue
        op, target = targets.get(key, ("", None))
        ok = ""
        if target is not None:
            good = value >= target if op == ">=" else value < target if op == "<" else value <= target
            ok = f"{op} {target}  {'ok' if good else 'MISSED'}"
        print(f"{key:<30} {value:>14}  {ok}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
