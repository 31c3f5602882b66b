"""The daemon's key store: private files only, atomic writes, rotation the FrameReader follows, the CLI."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from liftwatch.cli import main as liftwatch_main
from liftwatch.edge_daemon import keystore as ks
from liftwatch.edge_daemon.keys_cli import key_file_for_flash
from liftwatch.edge_daemon.keystore import (
    KeyExistsError,
    KeyFormatError,
    KeyPermissionError,
    KeyStore,
    KeyStoreError,
    UnknownBoardError,
    fingerprint,
    load_key_file,
)
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import DropReason, encode_frame

BOARD = "lw-a4cf12e0b001"
HB = [3600, 61234, 0, 0, 25, True, False]


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys", create=True)


def board_frame(key: bytes, boot_id: int = 7, seq: int = 0) -> bytes:
    return encode_frame(lw.T_HEARTBEAT, HB, boot_id, seq, 1000 + seq, key=key)


def test_generate_writes_a_private_hex_file_in_a_private_directory(store: KeyStore) -> None:
    key = store.generate(BOARD)
    path = store.key_path(BOARD)
    assert len(key) == ks.KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert path.read_text() == key.hex() + "\n"  # the format `key_file` and `liftwatch flash --key-file` read
    assert load_key_file(path) == key
    assert store.load(BOARD).current == key and store.load(BOARD).next is None
    assert [p.name for p in store.directory.iterdir()] == [path.name]  # no temporary file left behind


def test_generate_never_overwrites_and_keys_differ(store: KeyStore) -> None:
    first = store.generate(BOARD)
    with pytest.raises(KeyExistsError, match="rotate"):
        store.generate(BOARD)
    assert store.load(BOARD).current == first
    assert store.generate("other-board") != first


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o610, 0o644])
def test_a_key_file_open_to_group_or_other_is_refused_with_the_fix(store: KeyStore, mode: int) -> None:
    key = store.generate(BOARD)
    path = store.key_path(BOARD)
    os.chmod(path, mode)
    with pytest.raises(KeyPermissionError) as err:
        store.load(BOARD)
    assert err.value.path == path and err.value.mode == mode
    assert f"chmod 600 {path}" in str(err.value)
    assert key.hex() not in str(err.value)
    with pytest.raises(KeyPermissionError):
        load_key_file(path)
    os.chmod(path, 0o600)
    assert store.load(BOARD).current == key


def test_an_open_store_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    KeyStore(directory, create=True).generate(BOARD)
    os.chmod(directory, 0o750)
    with pytest.raises(KeyPermissionError, match=f"chmod 700 {directory}"):
        KeyStore(directory)


def test_a_symlinked_key_file_is_refused(store: KeyStore, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.key"
    elsewhere.write_text("00" * 32)
    os.chmod(elsewhere, 0o600)
    os.symlink(elsewhere, store.key_path(BOARD))
    with pytest.raises(KeyStoreError, match="symlink"):
        store.load(BOARD)


@pytest.mark.parametrize("content", ["not hex at all", "abc", "00" * 15, "00" * 65, "", "zz" * 16, "\xff" * 40])
def test_a_malformed_key_file_is_a_typed_error_that_never_echoes_it(store: KeyStore, content: str) -> None:
    path = store.key_path(BOARD)
    path.write_bytes(content.encode("latin-1"))
    os.chmod(path, 0o600)
    with pytest.raises(KeyFormatError) as err:
        store.load(BOARD)
    assert str(path) in str(err.value)
    if len(content) > 4:
        assert content not in str(err.value)


def test_unknown_board_and_bad_board_ids(store: KeyStore) -> None:
    with pytest.raises(UnknownBoardError):
        store.load(BOARD)
    for bad in ("../etc/passwd", ".hidden", "a/b", "", "x" * 65, "sp ace"):
        with pytest.raises(KeyStoreError, match="board id"):
            store.generate(bad)


def test_missing_store_is_an_error_not_created_silently(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="no key store"):
        KeyStore(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


def test_rotation_reader_accepts_the_reflashed_board_then_promote_retires_the_old_key(store: KeyStore) -> None:
    old = store.generate(BOARD)
    new = store.rotate(BOARD)
    assert store.rotate(BOARD) == new  # a retried flash gets the same pending key
    keys = store.load(BOARD)
    assert (keys.current, keys.next) == (old, new)
    assert stat.S_IMODE(store.next_path(BOARD).stat().st_mode) == 0o600

    # Until the board is reflashed it still tags with the old key; afterwards with the new one.
    reader = keys.reader(require_tag=True)
    assert len(reader.feed(board_frame(old, boot_id=7, seq=0))) == 1
    assert len(reader.feed(board_frame(new, boot_id=8, seq=0))) == 1  # the board after `liftwatch flash`
    assert reader.key_rotations == 1
    assert reader.feed(board_frame(old, boot_id=9, seq=0)) == []  # once seen, the new key retires the old
    assert reader.drops[DropReason.AUTH] == 1

    assert store.promote(BOARD) == new
    keys = store.load(BOARD)
    assert (keys.current, keys.next) == (new, None)
    restarted = keys.reader(require_tag=True)
    assert restarted.feed(board_frame(old, boot_id=10)) == []
    assert restarted.drops[DropReason.AUTH] == 1
    assert len(restarted.feed(board_frame(new, boot_id=10, seq=1))) == 1
    with pytest.raises(KeyStoreError, match="no pending key"):
        store.promote(BOARD)


def test_a_failed_write_leaves_the_old_key_intact(store: KeyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    old = store.generate(BOARD)
    store.rotate(BOARD)

    def power_cut(src, dst):  # the rename never happens
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(ks.os, "replace", power_cut)
    with pytest.raises(OSError):
        store.promote(BOARD)
    monkeypatch.undo()
    assert store.load(BOARD).current == old
    assert sorted(p.name for p in store.directory.iterdir()) == [f"{BOARD}.key", f"{BOARD}.next.key"]


def test_list_shows_fingerprints_never_keys(store: KeyStore) -> None:
    a = store.generate("car-a")
    b = store.generate("car-b")
    nb = store.rotate("car-b")
    infos = {i.board_id: i for i in store.list()}
    assert infos["car-a"].current_fingerprint == fingerprint(a) and infos["car-a"].next_fingerprint is None
    assert (infos["car-b"].current_fingerprint, infos["car-b"].next_fingerprint) == (fingerprint(b), fingerprint(nb))
    assert len(fingerprint(a)) == 8 and fingerprint(a) not in a.hex()


def test_remove_forgets_the_keys(store: KeyStore) -> None:
    store.generate(BOARD)
    store.rotate(BOARD)
    store.remove(BOARD)
    assert list(store.directory.iterdir()) == []
    with pytest.raises(UnknownBoardError):
        store.remove(BOARD)


def test_flash_hook_makes_a_first_key_then_a_next_key(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    first, note = key_file_for_flash(directory, BOARD)
    assert first.name == f"{BOARD}.key" and "new key" in note
    again, note = key_file_for_flash(directory, BOARD)
    assert again.name == f"{BOARD}.next.key" and "promote" in note
    retried, note = key_file_for_flash(directory, BOARD)
    assert retried == again and "reused" in note
    keys = KeyStore(directory).load(BOARD)
    assert load_key_file(first) == keys.current and load_key_file(again) == keys.next


def test_flash_cli_refuses_keystore_without_board_id(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert liftwatch_main(["flash", "/dev/null", "--keystore", str(tmp_path / "k")]) == 2
    assert "--board-id" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()


def test_keys_cli(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    d = str(tmp_path / "keys")
    assert liftwatch_main(["keys", "--dir", d, "generate", BOARD]) == 0
    key = KeyStore(d).load(BOARD).current
    out = capsys.readouterr().out
    assert fingerprint(key) in out and key.hex() not in out
    assert liftwatch_main(["keys", "--dir", d, "generate", BOARD]) == 1
    assert "rotate" in capsys.readouterr().err
    assert liftwatch_main(["keys", "--dir", d, "rotate", BOARD]) == 0
    nxt = KeyStore(d).load(BOARD).next
    capsys.readouterr()
    assert liftwatch_main(["keys", "--dir", d, "list"]) == 0
    listing = capsys.readouterr().out
    assert BOARD in listing and fingerprint(key) in listing and fingerprint(nxt) in listing
    assert key.hex() not in listing and nxt.hex() not in listing
    assert liftwatch_main(["keys", "--dir", d, "promote", BOARD]) == 0
    assert KeyStore(d).load(BOARD).current == nxt
    capsys.readouterr()
    assert liftwatch_main(["keys", "--dir", d, "path", BOARD]) == 0
    assert capsys.readouterr().out.strip() == str(Path(d) / f"{BOARD}.key")
    os.chmod(Path(d) / f"{BOARD}.key", 0o644)
    assert liftwatch_main(["keys", "--dir", d, "list"]) == 1
    assert "chmod 600" in capsys.readouterr().err
    assert liftwatch_main(["keys", "--dir", str(tmp_path / "none"), "list"]) == 1


def test_load_key_pair_for_a_daemon_key_file(store: KeyStore, tmp_path: Path) -> None:
    old = store.generate(BOARD)
    assert ks.load_key_pair(store.key_path(BOARD)) == (old, None)
    new = store.rotate(BOARD)
    assert ks.load_key_pair(store.key_path(BOARD)) == (old, new)
    os.chmod(store.next_path(BOARD), 0o644)
    with pytest.raises(KeyPermissionError):
        ks.load_key_pair(store.key_path(BOARD))
    loose = tmp_path / "board.hex"  # a key file outside a store: no next key, same permission rule
    loose.write_text(old.hex())
    os.chmod(loose, 0o600)
    assert ks.load_key_pair(loose) == (old, None)
