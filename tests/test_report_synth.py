"""The synthetic report messages (tests/support/report_synth.py) are valid upstream messages."""

from __future__ import annotations

import pytest
from support.report_synth import known_week, local_ts
from support.upstream import schema_validator

from liftwatch.edge_daemon.envelope import utc_iso, validate_envelope


def test_known_week_messages_have_valid_unique_envelopes() -> None:
    msgs = known_week().messages
    for m in msgs:
        validate_envelope(m)
    assert len({m["id"] for m in msgs}) == len(msgs)
    kinds = {m["kind"] for m in msgs}
    assert kinds == {"trip", "daily", "event", "maintenance"}


def test_local_ts_is_china_standard_time() -> None:
    assert utc_iso(local_ts("2026-11-02", "08:00")) == "2026-11-02T00:00:00.000Z"


@pytest.mark.parametrize("kind", ["trip", "event", "maintenance", "daily"])
def test_messages_match_upstream_schema(kind: str) -> None:
    validator = schema_validator(kind)
    for m in (m for m in known_week().messages if m["kind"] == kind):
        validator.validate(m)
