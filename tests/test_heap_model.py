"""The 64-bit interpreter's heap allowance (liftwatch/upy.py, POINTER_WIDTH_HEAP_K) is measured: the
classifier on a hand-made heap, then the firmware's own heap after a run under the real interpreter."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from support.heapmodel import ESP32_BLOCK, UNIX_BLOCK, gc_table_bytes, measure_firmware, parse_dump

from liftwatch.upy import ESP32_HEAP_K, POINTER_WIDTH_HEAP_K

BASE = 0x5555_0000_0000


def _heap(layout: str, words: dict[int, list[int]]) -> tuple[str, bytes]:
    """A dump of one line of marks, and a pool whose blocks start with the given words."""
    pool = bytearray(len(layout) * UNIX_BLOCK)
    for block, ws in words.items():
        struct.pack_into(f"<{len(ws)}Q", pool, block * UNIX_BLOCK, *ws)
    return f"GC memory layout; from {BASE:x}:\n00000000: {layout}\n", bytes(pool)


def test_each_kind_of_allocation_gets_its_esp32_size() -> None:
    type_ptr = 0x7F00_0000_1000  # in the binary's mapping
    text, pool = _heap(
        "T==" "S" "h" "L" "h=" "h==" "h=" "..",
        {
            0: [type_ptr, 5, BASE, 0x7, 0x11],  # a tuple: words
            3: [type_ptr, 123, 40, BASE + 4 * UNIX_BLOCK],  # str {type, hash, len 40, data}
            5: [type_ptr, 4, 4, BASE + 6 * UNIX_BLOCK],  # list {type, alloc, len, items}
            6: [BASE, 0x13, BASE + 3 * UNIX_BLOCK],  # its items: pointers and a small int
            # 8: zeros (a preallocated buffer): data, whole size
            11: [0x6F6C6C6568, 0x2F2F3A7370747468, 0xDEADBEEFCAFEBABE],  # text and noise: data
        },
    )
    dump = parse_dump(text, pool, [(0x7F00_0000_0000, 0x7F00_0100_0000)])
    sizes = [(a.mark, a.blocks, a.unix_bytes(), a.esp32_bytes()) for a in dump.allocations]
    assert sizes == [
        ("T", 3, 96, 48),  # words: half
        ("S", 1, 32, 16),
        ("h", 1, 32, 48),  # the str's 41 bytes (data + NUL) round up to three 16-byte blocks
        ("L", 1, 32, 16),
        ("h", 2, 64, 32),  # the list's items are pointers
        ("h", 3, 96, 96),  # zero-filled: kept whole
        ("h", 2, 64, 64),  # data: kept whole
    ]
    assert dump.unix_bytes == 416 and dump.esp32_bytes == 320


def test_gc_tables_take_more_of_an_esp32_heap() -> None:
    # 2 + 1 bits a block, twice as many blocks: about 2.2 KiB of 96 KiB against 1.1 KiB here
    assert 2200 < gc_table_bytes(96 * 1024, ESP32_BLOCK) < 2300
    assert 1100 < gc_table_bytes(96 * 1024, UNIX_BLOCK) < 1150


@pytest.mark.micropython
def test_the_firmware_saves_at_least_the_allowance_on_an_esp32(tmp_path: Path) -> None:
    """The allowance may never be more than the firmware's measured saving (a lower bound): if the
    firmware's objects change so the saving shrinks, this fails before the mock board hides it."""
    fw = measure_firmware(tmp_path)
    assert fw.unix_bytes > 60 * 1024, fw  # the whole firmware is resident: agent, lwproto, buffers
    assert fw.by_category["T"][1] > 0 and fw.by_category["raw words"][1] > 0
    assert fw.allowance_bytes(ESP32_HEAP_K) >= POINTER_WIDTH_HEAP_K * 1024, (fw.saving, fw.by_category)
