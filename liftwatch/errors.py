"""The root of every error liftwatch raises on purpose.

Each of the project's errors derives from `LiftwatchError`, so a caller can tell "liftwatch refused
this, with a reason" from a bug, and the CLI turns every one of them into one line on stderr. Errors
that always were a ValueError (bad input), RuntimeError (a step that failed) or an OSError keep that
base too, so code that catches the builtin base goes on working.

One exception: `lwproto.ProtocolError` stays a plain ValueError. lwproto.py is the one codec the board
runs too, where there is no `liftwatch` package, and the board's heap (96 KiB, fragmented after boot)
is no place for a failed import at every boot. The host raises it only for frames it builds itself.
"""

from __future__ import annotations

__all__ = ["LiftwatchError"]


class LiftwatchError(Exception):
    """Base of the project's own errors; subclasses carry the fields that say what was wrong."""
