"""A tagged board's replay window on disk: state_dir/replay-<car>.json, one per configured car.

The `FrameReader`'s `ReplayGuard` refuses a frame of an older boot, or one whose seq it has seen
(SPEC.md section 4). Kept only in memory, the window would reopen at every daemon restart and let a
recorded frame through once more, so the daemon loads it when it builds the board's reader and saves
it while it serves (`ReplayWindowFile.persist`). Everything about that file lives here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from liftwatch.edge_daemon.keystore import KeyStoreError, atomic_write, read_private
from liftwatch.protocol.framing import ReplayGuard

_LOG = logging.getLogger(__name__)


def replay_window_path(state_dir: Path, car: str) -> Path:
    return state_dir / f"replay-{car}.json"


def load_replay_window(path: Path) -> ReplayGuard:
    """The persisted window, or a fresh guard if none was saved.

    A damaged file is an error, not a fresh guard: silently starting over would accept every
    recording of the current boot again.
    """
    try:
        raw = read_private(path)
    except FileNotFoundError:
        return ReplayGuard()
    try:
        doc = json.loads(raw)
        boot_id, top_seq, seen = doc["boot_id"], doc["top_seq"], doc["seen"]
        ok = (boot_id is None or (type(boot_id) is int and 0 <= boot_id <= 0xFFFF)) and type(top_seq) is int \
            and 0 <= top_seq <= 0xFFFF and type(seen) is int and 0 <= seen < 1 << 64
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise KeyStoreError(f"{path}: damaged replay state; remove it only if the board has rebooted "
                            "since (its boot id then moves past any recording)")
    return ReplayGuard(boot_id, top_seq, seen)


def save_replay_window(path: Path, guard: ReplayGuard, *, durable: bool = True) -> None:
    """Write the window atomically (mode 0600).

    ``durable=False`` suits the frequent saves (a SIGKILLed daemon still finds the last one; only a
    power cut of the Pi can roll the window back to the last durable save); save durably at least
    when the boot id changes, since rule 2 (older boot = replay) rests on it.
    """
    boot_id, top_seq, seen = guard.state()
    atomic_write(path, json.dumps({"boot_id": boot_id, "top_seq": top_seq, "seen": seen}).encode(),
                 durable=durable)


class ReplayWindowFile:
    """One board's window file and what was last written to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: tuple | None = None  # the guard's state() at the last save by this process

    def load(self) -> ReplayGuard:
        return load_replay_window(self.path)

    def persist(self, guard: ReplayGuard, on_tick: bool) -> None:
        """Save the window: at once and durably when the boot id changed, else once per tick.

        A daemon killed between ticks may accept, once, a replay of the last second of the current
        boot; frames of earlier boots stay refused (SECURITY.md). A failed write (disk full) is
        logged and retried at the next call: the window in memory still protects this run."""
        state = guard.state()
        if state == self._saved:
            return
        new_boot = self._saved is None or state[0] != self._saved[0]
        if not (on_tick or new_boot):
            return
        try:
            save_replay_window(self.path, guard, durable=new_boot)
        except OSError as err:
            _LOG.warning("replay window not saved to %s: %s", self.path, err)
            return
        self._saved = state
