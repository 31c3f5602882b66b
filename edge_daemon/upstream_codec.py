"""Compact upstream payloads: raw DEFLATE with a preset dictionary shared by publisher and subscriber.

A trip message is ~580 bytes of JSON; most of it (field names, ISO timestamps' shape, the id's
layout) repeats in every message. DEFLATE primed with a dictionary of one message of each kind
(`protocol/upstream/deflate-dict-v1.jsonl`) sends only what differs: ~140 bytes per message, a 4x
saving on the metered 4G links elevator Pis usually sit behind (benchmarks/daemon.py measures it).

Payload format, self-describing so MQTT 3.1.1 bridges that drop v5 properties still work:
- a payload starting with `{` is plain UTF-8 JSON;
- a payload starting with byte 0x01 is `0x01 || raw DEFLATE(json, zdict = dictionary v1)`.
The dictionary file never changes once published; a new one gets a new leading byte.
"""

from __future__ import annotations

import json
import zlib
from enum import StrEnum
from importlib import resources
from typing import Any

from liftwatch.errors import LiftwatchError

_DICT_V1_BYTE = b"\x01"
CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_DEFLATE_V1 = "application/json; encoding=liftwatch-deflate-v1"
# Decompressed payloads above this are refused: a subscriber must not be made to inflate a bomb.
MAX_DECODED_BYTES = 1 << 20


class PayloadEncoding(StrEnum):
    JSON = "json"
    DEFLATE = "deflate"  # raw DEFLATE with dictionary v1


class UpstreamPayloadError(LiftwatchError, ValueError):
    """A payload that is neither JSON nor a known compact encoding, or does not inflate."""


def _load_dict() -> bytes:
    return resources.files("liftwatch.protocol").joinpath("upstream/deflate-dict-v1.jsonl").read_bytes()


DICTIONARY_V1 = _load_dict()


def encode_payload(json_bytes: bytes, encoding: PayloadEncoding) -> tuple[bytes, str]:
    """(payload, MQTT v5 content type) for the JSON bytes of one upstream message."""
    if encoding is PayloadEncoding.JSON:
        return json_bytes, CONTENT_TYPE_JSON
    comp = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=DICTIONARY_V1)
    return _DICT_V1_BYTE + comp.compress(json_bytes) + comp.flush(), CONTENT_TYPE_DEFLATE_V1


def decode_payload(payload: bytes) -> dict[str, Any]:
    """The message of an upstream payload in either encoding (for subscribers and tests)."""
    if payload[:1] == _DICT_V1_BYTE:
        inflater = zlib.decompressobj(-15, zdict=DICTIONARY_V1)
        try:
            raw = inflater.decompress(payload[1:], MAX_DECODED_BYTES)
        except zlib.error as exc:
            raise UpstreamPayloadError(f"bad deflate payload: {exc}") from None
        if inflater.unconsumed_tail:
            raise UpstreamPayloadError(f"payload inflates beyond {MAX_DECODED_BYTES} bytes")
        if not inflater.eof:
            raise UpstreamPayloadError("truncated deflate payload")
        payload = raw
    elif payload[:1] != b"{":
        raise UpstreamPayloadError("payload is neither JSON nor a known compact encoding")
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UpstreamPayloadError(f"bad JSON: {exc}") from None
    if not isinstance(message, dict):
        raise UpstreamPayloadError("message is not a JSON object")
    return message
