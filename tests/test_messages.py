"""The typed message views (protocol/messages.py): every field checked against SPEC.md section 5."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liftwatch.protocol import messages as m

# One payload per message as a board (or the host) sends it, every field present.
VALID = {
    m.Hello: ["b-1", "1.2.0", "lis3dh", 123, "power_on", ["vib", "stats"], 400, 16384, True, False, 3, [0, 5, 16380],
              "fw_a - c 1.1.0 1.0.0"],
    m.State: [1005, 0b101, 0b001, 0],
    m.Vib: [400, 16384, 2624, 2, bytes(12)],
    m.Stats: [1000, 400, [1, 2, 1000], [3, 4, 5], 12, 0],
    m.Event: [77, 3, 1, 1015, {"held_ms": 3000}],
    m.Counters: [10, 20, 30, 4, 0, 0, 1, 0],
    m.Heartbeat: [3600, 41000, 0, 0, 1, True, False],
    m.Ack: [5, 77, 0, "", None],
    m.TimeSync: [1767225600000, 1234],
    m.Config: [{"rate_hz": 400}],
    m.Control: [4, 0],
    m.Journal: ["0badc0ffee00", m.pack_journal_record(41, 1, 3, 4320, 13240, 1, 1, 1554, 7, 7), 0],
    m.OtaChunk: [12345, 256, 62131, bytes(256)],
    m.OtaStatus: [12345, 512, 1, ""],
}
# A value of another kind than each field declares (what a broken or hostile board might send).
WRONG = {"int": "7", "int | None": 1.5, "str": 7, "bool": 1, "bytes": "ab", "Xyz": [1, 2], "Xyz | None": [1, "2", 3],
         "tuple[str, ...]": ["vib", 3], "dict": [1], "dict | None": "x"}


def test_every_message_type_has_a_known_answer_here() -> None:
    assert set(VALID) == set(m.MESSAGE_CLASSES.values())


@pytest.mark.parametrize("cls", list(VALID), ids=lambda c: c.__name__)
def test_a_valid_payload_decodes_and_round_trips(cls: type[m.Message]) -> None:
    view = cls.from_payload(list(VALID[cls]))
    assert len(view.to_payload()) == len(VALID[cls])
    again = cls.from_payload(view.to_payload())
    assert again == view


@pytest.mark.parametrize(("cls", "name", "kind"), [
    (cls, f.name, f.type) for cls in VALID for f in dataclasses.fields(cls) if f.type in WRONG
], ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_a_field_of_another_kind_is_one_typed_error_naming_the_field(cls: type[m.Message], name: str, kind: str) -> None:
    payload = list(VALID[cls])
    index = [f.name for f in dataclasses.fields(cls)].index(name)
    payload[index] = WRONG[kind]
    with pytest.raises(m.MessageError) as err:
        cls.from_payload(payload)
    assert err.value.field == name and err.value.mtype == cls.TYPE and name in str(err.value)


def test_a_bool_is_not_an_int_and_an_int_is_not_a_bool() -> None:
    with pytest.raises(m.MessageError, match="event_t_ms"):
        m.State.from_payload([True, 1, 1, 0])
    with pytest.raises(m.MessageError, match="calibrated"):
        m.Heartbeat.from_payload([1, 2, 3, 0, 0, 1, False])


def test_trailing_fields_are_counted_missing_ones_defaulted_required_ones_refused() -> None:
    unknown: Counter = Counter()
    c = m.Counters.from_payload([1, 2, 3, 4, 5, 6, 7, 8, 99, "newer"], unknown)
    assert unknown == {"COUNTERS": 2} and c.events_dropped == 8
    c = m.Counters.from_payload([1, 2, 3, 4], unknown)
    assert (c.fifo_overruns, c.events_dropped) == (0, 0) and unknown == {"COUNTERS": 2}
    with pytest.raises(m.MessageError) as err:
        m.Counters.from_payload([1, 2])
    assert err.value.field == "run_time_s" and "missing" in str(err.value)
    h = m.Hello.from_payload(["b-1", "1.0", "none", 0, "wdt"])
    assert (h.capabilities, h.rate_hz, h.calibrated, h.gravity) == ((), 400, False, None)
    for not_an_array in ({"inputs": 1}, 7, None, b"\x01"):
        with pytest.raises(m.MessageError, match="not an array"):
            m.State.from_payload(not_an_array)


def test_views_hold_the_declared_python_types() -> None:
    h = m.Hello.from_payload(VALID[m.Hello])
    assert h.capabilities == ("vib", "stats") and h.gravity == (0, 5, 16380)
    st_ = m.Stats.from_payload([1000, 400, [1.9, 2, -1000.5], [3, 4, 5], 12])
    assert st_.mean_mg == (1, 2, -1000) and st_.motion == m.Motion.UNCALIBRATED  # floats truncated, as always
    assert m.Vib.from_payload([400, 16384, 0, 1, bytearray(6)]).samples == bytes(6)
    assert m.TimeSync.from_payload([5]).board_t_ms is None  # the host's request carries no board time
    assert m.Event.from_payload([1, 2, 1, 3]).detail is None


@pytest.mark.parametrize(("payload", "why"), [
    ([400, 16384, 0, 2, bytes(6)], "6 sample bytes for 2 samples"),
    ([400, 16384, 0, 0, b""], "must be positive"),
    ([0, 16384, 0, 1, bytes(6)], "must be positive"),
    ([-400, 16384, 0, 1, bytes(6)], "must be positive"),
])
def test_a_vib_block_whose_fields_contradict_each_other_is_refused(payload: list, why: str) -> None:
    with pytest.raises(m.MessageError, match=why):
        m.Vib.from_payload(payload)


_msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.binary(max_size=24),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)
_PYTHON_TYPE = {"int": int, "str": str, "bool": bool, "bytes": bytes, "Xyz": tuple, "tuple[str, ...]": tuple,
                "dict": dict, "Any": object}


@given(cls=st.sampled_from(list(VALID)), payload=st.lists(_msgpack_values, max_size=14) | _msgpack_values)
def test_any_payload_gives_a_view_of_the_declared_types_or_a_message_error(cls: type[m.Message], payload) -> None:
    try:
        view = cls.from_payload(payload, Counter())
    except m.MessageError as err:
        assert err.mtype == cls.TYPE
        return
    for f in dataclasses.fields(cls):
        value = getattr(view, f.name)
        nullable = f.type.endswith(" | None")
        if value is None and nullable:
            continue
        kind = f.type.removesuffix(" | None")
        assert isinstance(value, _PYTHON_TYPE[kind]), (f.name, value)
        if kind == "int":
            assert type(value) is int, (f.name, value)
        elif kind == "Xyz":
            assert len(value) == 3 and all(type(c) is int for c in value), (f.name, value)
        elif kind == "tuple[str, ...]":
            assert all(type(c) is str for c in value), (f.name, value)


_short_lists = st.lists(st.integers(-2, 2**16) | st.booleans() | st.binary(max_size=18) | st.none(), min_size=3,
                        max_size=6)
_vib_like = st.builds(lambda n, extra: [400, 16384, 7, n, bytes(max(0, 6 * n + extra))], st.integers(-1, 3),
                      st.sampled_from([0, 0, 1, -1]))


@given(cls=st.sampled_from(list(VALID)), payload=_short_lists | _vib_like | _msgpack_values)
def test_fits_exactly_when_the_view_takes_the_payload_as_it_is(cls: type[m.Message], payload) -> None:
    """`fits` is the fast path of `from_payload` (and the VIB run merge's only check): it may say
    False for a payload the view takes (the general path then decides), never True for one it refuses."""
    unknown: Counter = Counter()
    try:
        view = cls.from_payload(payload, unknown)
        as_it_is = not unknown and view.to_payload() == payload and type(payload) is list
    except m.MessageError:
        as_it_is = False
    assert not cls.fits(payload) or as_it_is
    if cls in (m.Vib, m.State):  # the frames that come by the hundred: no fitting payload goes the slow way
        assert cls.fits(payload) == as_it_is


def test_a_journal_record_damaged_or_out_of_range_is_refused() -> None:
    board, record, skipped = VALID[m.Journal]
    view = m.Journal.from_payload([board, record, skipped])
    assert (view.seq, view.kind, view.boot_id, view.start_t_ms, view.end_t_ms, view.direction, view.count,
            view.peak_speed_mm_s, view.inputs_start, view.inputs_end) == (41, 1, 3, 4320, 13240, 1, 1, 1554, 7, 7)
    flipped = bytearray(record)
    flipped[9] ^= 0x10  # one bit of start_t_ms: the record's own CRC fails
    for bad in (bytes(flipped), record[:23], record + b"\x00", m.pack_journal_record(1, 1, 3, 0, 0, direction=2),
                m.pack_journal_record(1 << 30, 1, 3, 0, 0)):
        with pytest.raises(m.MessageError):
            m.Journal.from_payload([board, bad, skipped])
