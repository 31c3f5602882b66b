"""Validate upstream facts against protocol/upstream's JSON schemas, fast enough for a district.

The schemas are the contract (tests/test_upstream_schemas.py checks the daemon's output against them
with `jsonschema`). Ingest checks thousands of messages a second, where `jsonschema` takes 0.4-1.7 ms
per message; `fastjsonschema` compiles each schema into Python code once (8-20 us per trip or event).
tests/test_fleet_schemas.py holds the two validators to the same verdicts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import fastjsonschema

from liftwatch.errors import LiftwatchError

__all__ = ["InvalidFactError", "FactValidator", "schema_documents"]


class InvalidFactError(LiftwatchError, ValueError):
    """A message that is not a valid upstream fact; `reason` says which rule it broke."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def schema_documents() -> dict[str, dict[str, Any]]:
    """Every upstream schema by file name (`trip.schema.json`), from the installed package."""
    folder = resources.files("liftwatch.protocol").joinpath("upstream")
    return {p.name: json.loads(p.read_text()) for p in folder.iterdir() if p.name.endswith(".schema.json")}


class FactValidator:
    """One compiled validator per kind; a kind without a schema is held to the envelope only.

    Readers ignore kinds they do not know (docs/upstream.md: fields and kinds are only ever added),
    so a newer Pi's new kind is stored, not refused; its envelope must still be sound.
    """

    def __init__(self) -> None:
        docs = schema_documents()
        by_ref = {**docs, **{d["$id"]: d for d in docs.values()}}

        def resolve(uri: str) -> dict[str, Any]:
            try:
                return by_ref[uri]
            except KeyError:
                raise InvalidFactError(f"schema reference {uri!r} is not a liftwatch schema") from None

        handlers = {"https": resolve, "http": resolve, "": resolve}
        self._by_kind: dict[str, Callable[[Any], Any]] = {}
        for name, doc in docs.items():
            kind = name.removesuffix(".schema.json")
            self._by_kind[kind] = fastjsonschema.compile(doc, handlers=handlers)
        self._envelope = self._by_kind.pop("envelope")

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._by_kind)

    def validate(self, message: Mapping[str, Any]) -> None:
        """Raise InvalidFactError unless `message` fits its kind's schema (or the envelope's)."""
        if not isinstance(message, dict):
            raise InvalidFactError(f"expected a JSON object, got {type(message).__name__}")
        kind = message.get("kind")
        validate = self._by_kind.get(kind, self._envelope) if isinstance(kind, str) else self._envelope
        try:
            validate(message)
        except fastjsonschema.JsonSchemaException as err:
            raise InvalidFactError(f"schema: {err.message}") from None
