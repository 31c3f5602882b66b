"""Upstream checks shared by the tests: the message schemas, and the keys a SIGKILLed child acked."""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import jsonschema
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parents[2] / "protocol" / "upstream"


def _registry() -> Registry:
    """Every schema under its $id and its file name, so either kind of $ref resolves."""
    resources = []
    for path in SCHEMAS.glob("*.schema.json"):
        resource = Resource.from_contents(json.loads(path.read_text()))
        resources += [(resource.contents["$id"], resource), (path.name, resource)]
    return Registry().with_resources(resources)


REGISTRY = _registry()


@functools.cache
def schema_validator(kind: str) -> jsonschema.Draft202012Validator:
    """Validator for protocol/upstream/<kind>.schema.json (itself checked against the metaschema)."""
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=REGISTRY)


def acked_keys(stdout: Iterable[str]) -> list[int]:
    """Keys a killed child reported as acknowledged. Only whole lines count: SIGKILL can tear the last."""
    return [int(line.split()[1]) for line in stdout if line.startswith("ACK ") and line.endswith("\n")]


def sigkill_after_ready(cmd: list[str], rng: random.Random, low_s: float, high_s: float) -> list[int]:
    """Run ``cmd`` (a child that prints READY, then "ACK <key>" per acknowledged put), SIGKILL it a
    random while after READY, and return the keys it had acknowledged."""
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "READY"
    time.sleep(rng.uniform(low_s, high_s))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    acked = acked_keys(child.stdout)
    child.stdout.close()
    return acked
