"""Output files of the `liftwatch` commands: written beside the target, renamed over it at the end.

A command that fails half-way (bad input found late, a board that stops answering, Ctrl-C) must never
leave an existing good file emptied or truncated: every command that writes a named output goes
through `atomic_path` or `atomic_output`, so the target changes only by one `os.replace` after the
command succeeded.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from liftwatch.errors import LiftwatchError

__all__ = ["OutputError", "atomic_output", "atomic_path"]


class OutputError(LiftwatchError, OSError):
    """The output cannot be created where asked (no such folder, not a folder, no permission).
    An OSError: `liftwatch` reports it in one line, exit 1, like any refused write."""


def _new_file_mode(target: Path) -> int:
    """The mode the target would get from a plain open(): its own if it exists, else 0666 - umask
    (mkstemp makes 0600 files, which would silently hide a report from the group)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path in the target's folder; renamed over `target` when the block exits normally,
    removed when it raises. Raises `OutputError` at once if the folder cannot take a new file."""
    target = Path(target)
    if target.is_dir():
        raise OutputError(f"{target}: is a directory; name the output file")
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as err:
        raise OutputError(f"{target}: cannot write there ({err.strerror or err})") from err
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _new_file_mode(target))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_output(target: str | os.PathLike[str], mode: str = "w", **open_kw: Any) -> Iterator[IO[Any]]:
    """`open(target, mode, **open_kw)` that replaces `target` only when the block succeeds."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_output writes a new file; mode {mode!r} is not a write mode")
    with atomic_path(target) as tmp, open(tmp, mode, **open_kw) as stream:
        yield stream
