"""Compact upstream payloads: both encodings decode to the same message; bad payloads are typed errors."""

import json
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liftwatch.edge_daemon.upstream_codec import (
    DICTIONARY_V1,
    MAX_DECODED_BYTES,
    PayloadEncoding,
    UpstreamPayloadError,
    decode_payload,
    encode_payload,
)

TRIP = {
    "v": 1, "id": "3cdd2a9f-2410-5386-8f72-b99497f1d20c", "kind": "trip", "site": "office-park",
    "car": "office6-a", "board": "0badc0ffee00", "ts": "2026-11-02T00:30:51.482Z",
    "start_ts": "2026-11-02T00:30:39.960Z", "end_ts": "2026-11-02T00:30:51.560Z", "duration_s": 11.6,
    "direction": "up", "floors": 4, "from_floor": None, "to_floor": None, "peak_speed_mps": 1.606,
    "ride_quality": {"z_max_pp_mg": 13.27, "z_a95_pp_mg": 9.93, "x_max_pp_mg": 5.79, "x_a95_pp_mg": 3.39,
                     "y_max_pp_mg": 3.94, "y_a95_pp_mg": 2.81, "accel_max_mps2": 0.84, "jerk_max_mps3": 1.04},
    "leveling": {"status": "level", "offset_mm": 3.0},
}


def _json(message):
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def test_dictionary_is_one_message_per_kind():
    kinds = [json.loads(line)["kind"] for line in DICTIONARY_V1.decode().splitlines()]
    assert sorted(kinds) == ["daily", "event", "event", "maintenance", "trip"]


def test_trip_compresses_at_least_three_times_and_round_trips():
    raw = _json(TRIP)
    payload, content_type = encode_payload(raw, PayloadEncoding.DEFLATE)
    assert content_type.endswith("liftwatch-deflate-v1")
    assert len(payload) * 3 < len(raw)
    assert decode_payload(payload) == TRIP


def test_json_encoding_passes_through():
    raw = _json(TRIP)
    assert encode_payload(raw, PayloadEncoding.JSON) == (raw, "application/json")
    assert decode_payload(raw) == TRIP


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40)),
                       max_size=12))
def test_any_message_round_trips(message):
    payload, _ = encode_payload(_json(message), PayloadEncoding.DEFLATE)
    assert decode_payload(payload) == message


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"", "neither JSON"),
        (b"\x02abc", "neither JSON"),
        (b"\x01\xff\xff\xff", "bad deflate"),
        (b"{not json", "bad JSON"),
        (b"\x01" + zlib.compressobj(9, zlib.DEFLATED, -15, zdict=DICTIONARY_V1).compress(b"[1,2]")
         + zlib.compressobj(9, zlib.DEFLATED, -15, zdict=DICTIONARY_V1).flush(), None),
    ],
)
def test_bad_payloads_are_typed_errors(payload, match):
    with pytest.raises(UpstreamPayloadError, match=match):
        decode_payload(payload)


def test_truncated_and_oversized_payloads_are_refused():
    payload, _ = encode_payload(_json(TRIP), PayloadEncoding.DEFLATE)
    with pytest.raises(UpstreamPayloadError, match="truncated"):
        decode_payload(payload[:-5])
    comp = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=DICTIONARY_V1)
    bomb = b"\x01" + comp.compress(b'{"a":"' + b"x" * (MAX_DECODED_BYTES + 10) + b'"}') + comp.flush()
    with pytest.raises(UpstreamPayloadError, match="beyond"):
        decode_payload(bomb)
