"""The `liftwatch` command. Each part of the system registers its own subcommands.

A part owns a ``register(subparsers)`` function in its own module; adding a subcommand never means
editing another part's code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from liftwatch import __version__
from liftwatch.errors import LiftwatchError

# module -> registers subcommands; imported lazily so `liftwatch --version` stays fast.
_PARTS = (
    "liftwatch.protocol.cli",
    "liftwatch.edge_daemon.flash",
    "liftwatch.hil.cli",
    "liftwatch.edge_daemon.cli",
    "liftwatch.edge_daemon.report_cli",
    "liftwatch.edge_daemon.keys_cli",
    "liftwatch.edge_daemon.ota",
    "liftwatch.fleet.cli",
    "liftwatch.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liftwatch", description="Elevator edge agent")
    parser.add_argument("--version", action="version", version=f"liftwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _PARTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the part exists but is broken: say so loudly
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand. Whatever it does not report itself ends as one line on stderr, never a
    traceback: exit 1 for a runtime failure (an output the system refuses, an I/O error, a reader that
    closed our stdout, any `LiftwatchError`), 130 for Ctrl-C. Usage errors (exit 2) are the subcommands' own to report."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    where = f"liftwatch {args.command}"
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        _drop_stdout()
        print(f"{where}: output closed by the reader (broken pipe)", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"{where}: {_describe_os_error(err)}", file=sys.stderr)
        return 1
    except LiftwatchError as err:  # refused with a reason the subcommand did not report itself
        print(f"{where}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130


def _describe_os_error(err: OSError) -> str:
    """`path: reason` of an OSError, without Python's `[Errno 2]` prefix."""
    if err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return err.strerror or str(err) or type(err).__name__


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
