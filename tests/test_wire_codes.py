"""Every wire code in protocol/lwproto.py equals SPEC.md's tables, read from SPEC.md itself.

A code changed, added or removed on either side fails here: the tables are parsed, not copied. The
codes are defined once (lwproto.py, for board and host); the host's enums, the trace format and the
firmware use them, which the last tests check.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from liftwatch.protocol import lwota
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol import messages as m
from liftwatch.protocol import trace
from liftwatch.upy import FIRMWARE_DIR, PROTOCOL_DIR, SIM_HARDWARE_DIR

SPEC = (PROTOCOL_DIR / "SPEC.md").read_text()


def _table_rows(heading_cells: tuple[str, ...]) -> list[list[str]]:
    """Rows (cells stripped) of the SPEC.md table whose header row starts with ``heading_cells``."""
    lines = SPEC.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if tuple(cells[: len(heading_cells)]) == heading_cells:
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"SPEC.md has no table headed {heading_cells}")


def _enumeration(name: str) -> str:
    rows = {r[0]: r[1] for r in _table_rows(("Name", "Values"))}
    return rows[name]


def _numbered(text: str) -> dict[str, int]:
    """``0 `rest`, 1 `accelerating`...`` -> {"REST": 0, "ACCELERATING": 1, ...}."""
    found = {name.upper(): int(v) for v, name in re.findall(r"(\d+) `(\w+)`", text)}
    assert found, text
    return found


def _codes(prefix: str) -> dict[str, int]:
    """lwproto's and lwota's (the firmware update's) codes named ``prefix`` + NAME, as {NAME: value}."""
    return {k[len(prefix):]: getattr(mod, k) for mod in (lw, lwota) for k in dir(mod) if k.startswith(prefix)}


def spec_codes() -> dict[str, dict[str, int]]:
    """Every code table of SPEC.md section 5, by the lwproto prefix that names it."""
    bits = re.findall(r"bit(\d) `(\w+)`", _enumeration("inputs bitmask"))
    inputs = {name.upper(): 1 << int(bit) for bit, name in bits}
    command = _enumeration("CONTROL command")
    stream_args = re.search(r"`stream_mode` \(arg ([^)]*)\)", command)
    assert stream_args, command
    args = re.findall(r"(\d+) ([a-zA-Z ]+)", stream_args[1])
    stream = {name.strip().upper().replace(" ", "_"): int(v) for v, name in args}
    ack = {name.upper(): int(v) for v, name in re.findall(r"(\d+) (\w+)", _enumeration("ACK status"))}
    event = next(r for r in _table_rows(("Type", "Name")) if r[1] == "EVENT")
    state = re.search(r"`state` int \(([^)]*)\)", event[3])
    assert state, event
    states = {name.upper(): int(v) for v, name in re.findall(r"(\d+) (\w+)", state[1])}
    types = {r[1]: int(r[0]) for r in _table_rows(("Type", "Name"))}
    return {
        "T_": types,
        "IN_": inputs,
        "MOTION_": _numbered(_enumeration("motion")),
        "KIND_": _numbered(_enumeration("EVENT kind")),
        "EVENT_": states,
        "CMD_": _numbered(command),
        "STREAM_": stream,
        "ACK_": ack,
        "OTA_": _numbered(_enumeration("OTA_STATUS state")),
        "J_": _numbered(_enumeration("JOURNAL kind")),
    }


def test_the_spec_tables_parse_to_what_the_spec_says():
    # The parser itself, against a few values read off SPEC.md by eye: a parser that found nothing
    # would make every other test here pass vacuously.
    spec = spec_codes()
    assert spec["IN_"]["ALARM_BUTTON"] == 0x20 and spec["IN_"]["MAINS"] == 0x40 and len(spec["IN_"]) == 7
    assert spec["MOTION_"]["UNCALIBRATED"] == 255 and len(spec["MOTION_"]) == 5
    assert spec["KIND_"]["RING_OVERRUN"] == 6 and len(spec["KIND_"]) == 6
    assert spec["CMD_"]["REQUEST_COUNTERS"] == 5 and spec["STREAM_"] == {"AUTO": 0, "ALWAYS_VIB": 1, "NO_VIB": 2}
    assert spec["ACK_"] == {"OK": 0, "REFUSED": 1, "UNKNOWN": 2, "BUSY": 3}
    assert spec["EVENT_"] == {"RAISED": 1, "CLEARED": 0}
    assert spec["T_"]["CONTROL"] == 11 and spec["T_"]["JOURNAL"] == 12 and spec["T_"]["OTA_STATUS"] == 14
    assert len(spec["T_"]) == 14
    assert spec["OTA_"]["ROLLING_BACK"] == 4 and len(spec["OTA_"]) == 5
    assert spec["J_"] == {"TRIP": 1, "DOOR_CYCLE": 2, "INSPECTION": 3}


@pytest.mark.parametrize("prefix", sorted(spec_codes()))
def test_each_lwproto_code_is_the_spec_s(prefix):
    spec = spec_codes()[prefix]
    ours = _codes(prefix)
    if prefix == "T_":
        ours.pop("MS_MODULO")  # the board clock's wrap, not a message type
        assert sorted(lw.KNOWN_TYPES) == sorted(spec.values())
    assert ours == spec


def test_the_host_enums_are_the_wire_codes():
    assert {e.name: int(e) for e in m.MessageType} == spec_codes()["T_"]
    assert {e.name: int(e) for e in m.Input} == spec_codes()["IN_"]
    assert {e.name: int(e) for e in m.BoardEventKind} == spec_codes()["KIND_"]
    assert {e.name: int(e) for e in m.Command} == spec_codes()["CMD_"]
    assert {e.name: int(e) for e in m.StreamMode} == spec_codes()["STREAM_"]
    assert {e.name: int(e) for e in m.AckStatus} == spec_codes()["ACK_"]
    assert {e.name: int(e) for e in m.Motion} == spec_codes()["MOTION_"]
    assert {e.name: int(e) for e in m.OtaState} == spec_codes()["OTA_"]


def test_the_trace_columns_are_the_input_bits_in_order():
    spec = spec_codes()["IN_"]
    assert [1 << i for i in range(len(trace.INPUT_NAMES))] == [spec[n.upper()] for n in trace.INPUT_NAMES]
    assert trace.INPUT_MASK == sum(spec.values())


def test_the_simulated_hal_reads_the_feed_record_of_protocol_trace():
    # hal_sim runs under MicroPython and cannot import the host's trace module: its copy of the record
    # size and the ctrl codes is checked against it here.
    src = (SIM_HARDWARE_DIR / "hal_sim.py").read_text()
    consts = {k: int(v) for k, v in re.findall(r"^(\w+) = const\((\d+)\)", src, re.M)}
    assert consts["_REC"] == trace.FEED_RECORD_SIZE == 12
    assert consts["CTRL_CRASH"] == trace.FEED_CTRL_CRASH
    assert consts["CTRL_POWER_CUT"] == trace.FEED_CTRL_POWER_CUT
    assert '"<IhhhBB"' in src and trace.FEED_RECORD.format == "<IhhhBB"


def _own_codes(source: str) -> list[str]:
    """``NAME = const(...)`` definitions in a board module whose name ends in a SPEC code's name."""
    # Message types by their full T_ name: link.py's P_VIB is a queue priority, not a type.
    names = {(prefix if prefix == "T_" else "") + name for prefix, table in spec_codes().items() for name in table}
    return [n for n in re.findall(r"^(\w+) = const\(", source, re.M) if any(n.endswith(c) for c in names)]


def test_no_board_module_defines_a_wire_code_of_its_own():
    # The codes live in lwproto.py only: a board module that writes one again (as inputs.py,
    # motion.py, events.py and agent_rx.py once did) would drift from the spec unseen.
    offenders = {p.name: _own_codes(p.read_text())
                 for p in sorted(FIRMWARE_DIR.glob("*.py")) + sorted(SIM_HARDWARE_DIR.glob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_finder_of_own_codes_finds_them():
    text = "from micropython import const\n_CONTROL_REBOOT = const(1)\nDOOR_CLOSED = const(0x01)\nC_RING = const(5)\n"
    text += "P_VIB = const(0)\n_T_VIB = const(3)\n"
    assert _own_codes(text) == ["_CONTROL_REBOOT", "DOOR_CLOSED", "_T_VIB"]


def test_the_esp32_hal_wires_one_pin_per_input_bit():
    # hal_esp32 imports `machine` and cannot be imported here: its pin tuple is read from the source.
    src = (FIRMWARE_DIR / "hal_esp32.py").read_text()
    pins = re.search(r"^INPUT_PINS = \(([^)]*)\)", src, re.M)
    assert pins, "INPUT_PINS not found"
    assert len(pins[1].split(",")) == len(spec_codes()["IN_"]) == len(trace.INPUT_NAMES)
