"""`liftwatch keys ...`: the daemon's per-board frame-tag keys (generate, rotate, promote, list, remove).

Also the hook `liftwatch flash --keystore DIR --board-id ID` uses: `key_file_for_flash` makes the
board's first key or its next key in the store and returns the file to write to the board, so the
board and the daemon never disagree about which keys exist.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from liftwatch.edge_daemon.keystore import (
    KEY_BYTES,
    KeyStore,
    KeyStoreError,
    UnknownBoardError,
    fingerprint,
)

DEFAULT_KEYSTORE = "/var/lib/liftwatch/keys"
_ENV = "LIFTWATCH_KEYSTORE"


def default_keystore() -> Path:
    return Path(os.environ.get(_ENV) or DEFAULT_KEYSTORE)


def key_file_for_flash(directory: str | os.PathLike, board_id: str) -> tuple[Path, str]:
    """(hex key file to flash, what happened) for a board: its first key, or a rotation to a next key.

    A board with a key gets a *next* key, never a replacement: until the flash is confirmed, the
    daemon must accept the board with either (the copy to the board may have failed half-way).
    """
    store = KeyStore(directory, create=True)
    try:
        keys = store.load(board_id)
    except UnknownBoardError:
        key = store.generate(board_id)
        return store.key_path(board_id), f"new key {fingerprint(key)} for {board_id}"
    if keys.next is not None:
        return store.next_path(board_id), f"pending next key {fingerprint(keys.next)} for {board_id} (reused)"
    key = store.rotate(board_id)
    return store.next_path(board_id), (f"next key {fingerprint(key)} for {board_id}; the daemon accepts both until "
                                       f"`liftwatch keys promote {board_id}`")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "keys",
        help="per-board frame-tag keys of the daemon (generate, rotate, promote, list, remove)",
        description="Manage the daemon's per-board frame-tag keys. The store is a directory only the daemon's "
        f"user may read (mode 0700, files 0600). Default: ${_ENV} or {DEFAULT_KEYSTORE}.",
    )
    p.add_argument("--dir", type=Path, default=None, help=f"key store directory (default ${_ENV} or {DEFAULT_KEYSTORE})")
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = sub.add_parser("generate", help="a first key for a board (refuses to overwrite)")
    g.add_argument("board_id", help="the board's id, as in its HELLO and the config's board_id")
    g.add_argument("--bytes", type=int, default=KEY_BYTES, help=f"key length, 16-64 (default {KEY_BYTES})")
    g.set_defaults(func=_cmd_generate)
    for action, func, help_ in (
        ("rotate", _cmd_rotate, "make the board's next key (kept beside the current one until promoted)"),
        ("promote", _cmd_promote, "the board now runs its next key: make it current, retire the old one"),
        ("remove", _cmd_remove, "forget a decommissioned board's keys"),
        ("path", _cmd_path, "print the key file to use as `key_file` in the daemon config"),
    ):
        one = sub.add_parser(action, help=help_)
        one.add_argument("board_id", help="the board's id, as in its HELLO and the config's board_id")
        one.set_defaults(func=func)
    ls = sub.add_parser("list", help="boards and key fingerprints (never the keys)")
    ls.set_defaults(func=_cmd_list)


def _store(args: argparse.Namespace, create: bool = False) -> KeyStore:
    return KeyStore(args.dir or default_keystore(), create=create)


def _keystore_action(action: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A `keys` action whose KeyStoreError becomes one line on stderr and exit status 1."""

    @functools.wraps(action)
    def run(args: argparse.Namespace) -> int:
        try:
            return action(args)
        except KeyStoreError as err:
            print(f"liftwatch keys: {err}", file=sys.stderr)
            return 1

    return run


@_keystore_action
def _cmd_generate(args: argparse.Namespace) -> int:
    store = _store(args, create=True)
    key = store.generate(args.board_id, n_bytes=args.bytes)
    print(f"{args.board_id}: key {fingerprint(key)} written to {store.key_path(args.board_id)}")
    return 0


@_keystore_action
def _cmd_rotate(args: argparse.Namespace) -> int:
    store = _store(args)
    key = store.rotate(args.board_id)
    print(f"{args.board_id}: next key {fingerprint(key)} in {store.next_path(args.board_id)}; flash it, "
          f"then `liftwatch keys promote {args.board_id}`")
    return 0


@_keystore_action
def _cmd_promote(args: argparse.Namespace) -> int:
    key = _store(args).promote(args.board_id)
    print(f"{args.board_id}: key {fingerprint(key)} is current; the old key is refused from now on "
          "(restart the daemon to apply)")
    return 0


@_keystore_action
def _cmd_list(args: argparse.Namespace) -> int:
    infos = _store(args).list()
    print(f"{'board':<24} {'current':<9} {'next':<9} since")
    for info in infos:
        since = dt.datetime.fromtimestamp(info.current_mtime_s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
        print(f"{info.board_id:<24} {info.current_fingerprint:<9} {info.next_fingerprint or '-':<9} {since}")
    return 0


@_keystore_action
def _cmd_remove(args: argparse.Namespace) -> int:
    _store(args).remove(args.board_id)
    print(f"{args.board_id}: removed")
    return 0


@_keystore_action
def _cmd_path(args: argparse.Namespace) -> int:
    store = _store(args)
    store.load(args.board_id)
    print(store.key_path(args.board_id))
    return 0
