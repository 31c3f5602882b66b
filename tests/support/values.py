"""Values as msgpack gives them back: tuples become lists, at any depth."""

from __future__ import annotations

from typing import Any


def as_lists(obj: Any) -> Any:
    """``obj`` with every tuple turned into a list, for comparing with what a decoder returns."""
    if isinstance(obj, (list, tuple)):
        return [as_lists(v) for v in obj]
    if isinstance(obj, dict):
        return {k: as_lists(v) for k, v in obj.items()}
    return obj
