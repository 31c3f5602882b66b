"""The common envelope every upstream message carries, and the ids that make re-sends idempotent.

Every message leaving the Pi (MQTT or the JSON Lines journal) is one JSON object with
`v`, `id`, `kind`, `site`, `car`, `board`, `ts` plus kind-specific fields
(`protocol/upstream/envelope.schema.json`). The `id` is derived from what the message is *about*
(the analytics output's key), never from when it was produced, so the same trip or fault computed
twice -- after a daemon restart, or because the board re-sent an un-ACKed EVENT -- gets the same id.
The outbox ignores a second put of a known id, and subscribers drop a second delivery of one (MQTT
QoS 1 is at-least-once on the wire).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import uuid
from enum import IntEnum
from typing import Any, Mapping

from liftwatch.errors import LiftwatchError

SCHEMA_VERSION = 1
"""Envelope version `v`. Fields are only ever added; a reader ignores fields it does not know."""

# Fixed namespace for uuid5 ids. Never change it: ids of already-delivered messages depend on it.
_ID_NAMESPACE = uuid.UUID("5b6f3c1e-2d0a-5f3e-9a41-6c1f4a7e0b52")

ENVELOPE_FIELDS = ("v", "id", "kind", "site", "car", "board", "ts")

# Topic levels must not contain MQTT separators or wildcards; kinds are lowercase words.
_TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


class Priority(IntEnum):
    """Who goes first when the outbox budget is full: the highest value is dropped first.

    PROTECTED is never dropped (faults and maintenance visits decide who pays for a repair).
    Daily records rank above trips: one daily record summarises a day of trips (counts, run
    hours, ride-quality percentiles), so when space runs out the individual trips go first and
    the insurer still has the day's totals. Status and raw data are superseded by the next one.
    """

    PROTECTED = 0
    DAILY = 1
    TRIP = 2
    RAW = 3


DEFAULT_PRIORITIES: Mapping[str, Priority] = {
    "event": Priority.PROTECTED,
    "maintenance": Priority.PROTECTED,
    "daily": Priority.DAILY,
    "trip": Priority.TRIP,
    "status": Priority.RAW,
}
"""Kinds not listed here (e.g. raw vibration snapshots) get Priority.RAW."""


class InvalidMessageError(LiftwatchError, ValueError):
    """An upstream message is malformed; it was not stored. `field` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"upstream message field {field!r}: {reason}")
        self.field = field
        self.reason = reason


def utc_iso(unix_s: float) -> str:
    """ISO 8601 UTC with millisecond precision and a `Z`, the one timestamp format upstream."""
    t = _dt.datetime.fromtimestamp(unix_s, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def message_id(kind: str, site: str, car: str | None, key: str) -> str:
    """Stable id (UUID v5) of the message about `key` (e.g. a trip's start, an event's board id).

    The same (kind, site, car, key) always gives the same id, on any Pi and after any restart.
    """
    return str(uuid.uuid5(_ID_NAMESPACE, f"{kind}/{site}/{car or ''}/{key}"))


def make_message(
    kind: str,
    site: str,
    car: str | None,
    board: str | None,
    ts: str,
    key: str,
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """An envelope plus kind-specific `fields`, with the id derived from `key`; validated."""
    message: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "id": message_id(kind, site, car, key),
        "kind": kind,
        "site": site,
        "car": car,
        "board": board,
        "ts": ts,
    }
    for name, value in fields.items():
        if name in message:
            raise InvalidMessageError(name, "kind-specific field shadows an envelope field")
        message[name] = value
    validate_envelope(message)
    return message


def validate_envelope(message: Mapping[str, Any]) -> None:
    """Raise InvalidMessageError unless `message` has a well-formed envelope.

    Checked here, before anything is stored, because a malformed message would otherwise
    sit in the outbox and fail on every delivery attempt.
    """
    if not isinstance(message, Mapping):
        raise InvalidMessageError("*", f"expected a JSON object, got {type(message).__name__}")
    for name in ENVELOPE_FIELDS:
        if name not in message:
            raise InvalidMessageError(name, "missing")
    v = message["v"]
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise InvalidMessageError("v", f"expected a positive int, got {v!r}")
    mid = message["id"]
    if not isinstance(mid, str) or not 1 <= len(mid) <= 128:
        raise InvalidMessageError("id", f"expected a string of 1..128 characters, got {mid!r}")
    kind = message["kind"]
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise InvalidMessageError("kind", f"expected a lowercase word, got {kind!r}")
    site = message["site"]
    if not isinstance(site, str) or not _TOPIC_LEVEL.match(site):
        raise InvalidMessageError("site", f"expected a topic-safe name, got {site!r}")
    for name in ("car", "board"):
        value = message[name]
        if value is not None and (not isinstance(value, str) or not _TOPIC_LEVEL.match(value)):
            raise InvalidMessageError(name, f"expected a topic-safe name or null, got {value!r}")
    ts = message["ts"]
    if not isinstance(ts, str) or not _TS.match(ts):
        raise InvalidMessageError("ts", f"expected ISO 8601 UTC like 2026-01-02T03:04:05.678Z, got {ts!r}")


def encode_message(message: Mapping[str, Any]) -> bytes:
    """Validate and serialise once: these exact bytes are stored and published."""
    validate_envelope(message)
    try:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as err:
        raise InvalidMessageError("*", f"not JSON-serialisable: {err}") from err
