"""The ingest's compiled validators (fastjsonschema) give the same verdict as `jsonschema`, the
reference the daemon's output is tested against, on valid facts and on every single-field mutation
of them; a new optional `revision` must be a non-negative integer."""

from __future__ import annotations

import copy
import json

import pytest
from support.upstream import SCHEMAS, schema_validator

from liftwatch.fleet.schemas import FactValidator, InvalidFactError

SAMPLES = [json.loads(line) for line in (SCHEMAS / "deflate-dict-v1.jsonl").read_text().splitlines() if line.strip()]
BAD_VALUES = (None, "x", -1, 1.5, True, [], {}, "2026-13-45T99:99:99Z")


def mutations(message: dict):
    for name in list(message):
        gone = dict(message)
        del gone[name]
        yield f"-{name}", gone
        for value in BAD_VALUES:
            yield f"{name}={value!r}", dict(message, **{name: value})
        if isinstance(message[name], dict):
            for sub in list(message[name]):
                for value in (None, "x", -1):
                    inner = copy.deepcopy(message)
                    inner[name][sub] = value
                    yield f"{name}.{sub}={value!r}", inner
    for value in (0, 7, -1, True, "2", 1.0):
        yield f"revision={value!r}", dict(message, revision=value)


def reference_valid(message: dict) -> bool:
    kind = message.get("kind")
    name = kind if isinstance(kind, str) and (SCHEMAS / f"{kind}.schema.json").exists() else "envelope"
    return schema_validator(name).is_valid(message)


@pytest.mark.parametrize("sample", SAMPLES, ids=[f"{m['kind']}-{i}" for i, m in enumerate(SAMPLES)])
def test_same_verdicts_as_jsonschema(sample):
    validator = FactValidator()
    checked = disagreements = 0
    for label, message in [("as is", sample), *mutations(sample)]:
        try:
            validator.validate(message)
            ours = True
        except InvalidFactError:
            ours = False
        if ours != reference_valid(message):
            disagreements += 1
            print("disagree:", label, ours)
        checked += 1
    assert disagreements == 0
    assert checked > 50


def test_revision_rules_and_unknown_kinds():
    validator = FactValidator()
    trip = next(m for m in SAMPLES if m["kind"] == "trip")
    validator.validate(dict(trip, revision=3))
    with pytest.raises(InvalidFactError, match="revision"):
        validator.validate(dict(trip, revision=-1))
    validator.validate(dict(trip, kind="vib_snapshot", anything=1))  # a newer Pi's kind: envelope only
    with pytest.raises(InvalidFactError, match="expected a JSON object"):
        validator.validate([trip])  # type: ignore[arg-type]
