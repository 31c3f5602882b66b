"""The daemon's replay window file, state_dir/replay-<car>.json (edge_daemon/replay_window.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from liftwatch.edge_daemon.keystore import KeyStoreError
from liftwatch.edge_daemon.replay_window import (
    ReplayWindowFile,
    load_replay_window,
    replay_window_path,
    save_replay_window,
)
from liftwatch.protocol.framing import ReplayGuard


def test_the_window_round_trips_private_and_a_damaged_file_is_refused(tmp_path: Path) -> None:
    path = replay_window_path(tmp_path, "car-1")
    assert path == tmp_path / "replay-car-1.json"
    assert load_replay_window(path).state() == (None, 0, 0)  # never saved: a fresh window
    guard = ReplayGuard()
    for seq in (0, 1, 2, 5):
        assert guard.check(41, seq)
    save_replay_window(path, guard)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    restored = load_replay_window(path)
    assert restored.state() == guard.state()
    assert not restored.check(41, 2) and restored.check(41, 3) and not restored.check(40, 9)
    for damaged in (b"{", b"[]", json.dumps({"boot_id": 70000, "top_seq": 0, "seen": 0}).encode(),
                    json.dumps({"boot_id": 1, "top_seq": "x", "seen": 0}).encode()):
        path.write_bytes(damaged)
        with pytest.raises(KeyStoreError, match="damaged replay state"):
            load_replay_window(path)


def test_a_window_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = replay_window_path(tmp_path, "car-1")
    save_replay_window(path, ReplayGuard(3, 4, 1))
    os.chmod(path, 0o644)
    with pytest.raises(KeyStoreError):
        load_replay_window(path)


def test_persist_saves_a_new_boot_at_once_and_the_rest_once_per_tick(tmp_path: Path, monkeypatch) -> None:
    import liftwatch.edge_daemon.replay_window as module

    saves: list[tuple[tuple, bool]] = []
    real_save = module.save_replay_window

    def save(path: Path, guard: ReplayGuard, *, durable: bool = True) -> None:
        saves.append((guard.state(), durable))
        real_save(path, guard, durable=durable)

    monkeypatch.setattr(module, "save_replay_window", save)
    window = ReplayWindowFile(replay_window_path(tmp_path, "car-1"))
    guard = window.load()
    guard.check(7, 0)
    window.persist(guard, on_tick=False)  # a new boot: durable, without waiting for the tick
    assert saves == [((7, 0, 1), True)]
    guard.check(7, 1)
    window.persist(guard, on_tick=False)  # the same boot between ticks: not yet
    window.persist(guard, on_tick=True)  # the tick: written, not fsync'd
    window.persist(guard, on_tick=True)  # nothing new: not written again
    assert saves[1:] == [((7, 1, 3), False)]
    assert load_replay_window(window.path).state() == guard.state()
    guard.check(8, 0)
    window.persist(guard, on_tick=False)  # the board rebooted: durable at once
    assert saves[2:] == [((8, 0, 1), True)]


def test_a_failed_write_is_retried_at_the_next_call(tmp_path: Path, monkeypatch) -> None:
    import errno

    import liftwatch.edge_daemon.replay_window as module

    real_write = module.atomic_write

    def full_disk(path: Path, content: bytes, *, durable: bool = True) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    window = ReplayWindowFile(replay_window_path(tmp_path, "car-1"))
    guard = window.load()
    guard.check(7, 0)
    monkeypatch.setattr(module, "atomic_write", full_disk)
    window.persist(guard, on_tick=True)  # logged; the window in memory still protects this run
    assert not window.path.exists()
    monkeypatch.setattr(module, "atomic_write", real_write)
    window.persist(guard, on_tick=True)
    assert load_replay_window(window.path).state() == (7, 0, 1)
