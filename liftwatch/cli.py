"""The `liftwatch` command. Each part of the system registers its own subcommands.

A part owns a ``register(subparsers)`` function in its own module; adding a subcommand never means
editing another part's code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from liftwatch import __version__

# module -> registers subcommands; imported lazily so `liftwatch --version` stays fast.
_PARTS = (
    "liftwatch.protocol.cli",
    "liftwatch.edge_daemon.flash",
    "liftwatch.hil.cli",
    "liftwatch.edge_daemon.cli",
    "liftwatch.edge_daemon.report_cli",
    "liftwatch.edge_daemon.keys_cli",
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
