"""Per-board frame-tag keys for the daemon, in a directory only its user can read.

Layout of the key store directory (mode 0700, owned by the daemon's user):

```
<board_id>.key        current key, hex + newline, mode 0600 (what `[[boards]] key_file` and
                      `liftwatch flash --key-file` read)
<board_id>.next.key   the rotated key while a rotation is pending (written before the board is
                      reflashed, so the daemon accepts the board whichever key it comes back with)
```

Why files and not a database: one small file per secret can be checked with `stat` by an operator,
backed up, and handed to `liftwatch flash` as is. Every write is atomic (temporary file created
0600 with O_EXCL, fsync, rename, fsync of the directory), so a power cut leaves the old key or the
new one, never half a key. Keys are never logged or put in error messages; `fingerprint()` names a
key (first 8 hex digits of its SHA-256) where one must be shown.

Rotation (`rotate` -> reflash -> `promote`): `rotate` writes `next`; `liftwatch flash --keystore`
puts `next` on the board; the daemon reads both into `FrameReader(key=current, next_key=next)`,
so frames with either key pass, and the first frame with the new key retires the old one in that
reader. `promote` then makes `next` the current key on disk, after which the old key is refused
for good, also after a daemon restart.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from liftwatch.errors import LiftwatchError
from liftwatch.protocol.framing import FrameReader, ReplayGuard, key_fingerprint

KEY_BYTES = 32  # SPEC.md allows 16 to 64; direction keys are derived from it with HMAC-SHA256
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64
_BOARD_ID = re.compile(r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,63}$")  # a file name, never '.' first
_GROUP_OTHER = stat.S_IRWXG | stat.S_IRWXO
_MAX_FILE_BYTES = 4096  # a key or replay window file is tiny: refuse to read anything bigger


class KeyStoreError(LiftwatchError):
    """The key store cannot be used as asked; the message says what to do about it."""


class KeyPermissionError(KeyStoreError):
    """A key or secret file, or the store directory, is open to group/other, or owned by another user."""

    def __init__(self, path: Path, mode: int, fix: str) -> None:
        super().__init__(f"{path}: mode {stat.S_IMODE(mode):04o} lets other users read the secret in it; "
                         f"refusing to use it. Fix: {fix}")
        self.path = path
        self.mode = stat.S_IMODE(mode)
        self.fix = fix


class KeyFormatError(KeyStoreError):
    """A key file that does not hold 16-64 bytes in hex (its content is never echoed)."""


class UnknownBoardError(KeyStoreError):
    """No key for this board id in the store."""


class KeyExistsError(KeyStoreError):
    """generate() would overwrite a board's key; use rotate() so the board is not locked out."""


@dataclass(frozen=True, slots=True)
class BoardKeys:
    """A board's keys as the daemon uses them: current, and the next one while a rotation is pending."""

    board_id: str
    current: bytes
    next: bytes | None = None

    def reader(self, *, require_tag: bool = False, replay: ReplayGuard | None = None) -> FrameReader:
        """A FrameReader that accepts frames tagged with either key (SPEC.md section 4)."""
        reader = FrameReader(key=self.current, next_key=self.next, require_tag=require_tag)
        if replay is not None:
            reader.restore_replay(replay)
        return reader


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What `liftwatch keys list` shows: fingerprints only, never key bytes."""

    board_id: str
    current_fingerprint: str
    next_fingerprint: str | None
    current_mtime_s: float


fingerprint = key_fingerprint  # names a key without revealing it (first 8 hex digits of its SHA-256)


def check_board_id(board_id: str) -> str:
    if not isinstance(board_id, str) or not _BOARD_ID.match(board_id):
        raise KeyStoreError(f"board id {board_id!r}: use 1-64 letters, digits or _.:- (not starting with '.')")
    return board_id


def _check_private(path: Path, st: os.stat_result, fix: str) -> None:
    if st.st_mode & _GROUP_OTHER:
        raise KeyPermissionError(path, st.st_mode, fix)
    euid = os.geteuid()
    if euid != 0 and st.st_uid != euid:
        raise KeyStoreError(f"{path}: owned by uid {st.st_uid}, not by this user (uid {euid}); refusing to use it. "
                            f"Fix: chown {euid} {path}")


def _open_private(path: Path) -> int:
    """A descriptor of a file that must be private: no symlink, a regular file, mode without
    group/other bits, ours. The checks are made on the opened descriptor, so the file cannot be
    swapped between check and use. FileNotFoundError passes through; the rest is KeyStoreError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise KeyStoreError(f"{path}: cannot open ({err.strerror}); a secret file must be a regular file, "
                            "not a symlink") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyStoreError(f"{path}: not a regular file")
        _check_private(path, st, f"chmod 600 {path}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private(path: Path) -> bytes:
    """The content of a small private file (a board key, the MQTT password, the status token)."""
    fd = _open_private(path)
    try:
        size = os.fstat(fd).st_size
        if size > _MAX_FILE_BYTES:
            raise KeyFormatError(f"{path}: {size} bytes is not a key or secret file")
        return os.read(fd, _MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)


def check_private(path: Path) -> None:
    """Refuse a secret another program reads (the TLS client key) unless it is a private file."""
    os.close(_open_private(path))


def parse_key_hex(text: bytes | str, where: str) -> bytes:
    """Key bytes from hex text (whitespace around it allowed); the text is never put in the error."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise KeyFormatError(f"{where}: not hex text") from None
    text = text.strip()
    if not re.fullmatch(r"[0-9a-fA-F]*", text) or len(text) % 2:
        raise KeyFormatError(f"{where}: must hold the key as hex digits only")
    key = bytes.fromhex(text)
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise KeyFormatError(f"{where}: key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, got {len(key)}")
    return key


def load_key_file(path: str | os.PathLike) -> bytes:
    """One private hex key file (also usable for a `key_file` outside a store)."""
    p = Path(path)
    try:
        raw = read_private(p)
    except FileNotFoundError:
        raise KeyStoreError(f"{p}: no such key file") from None
    return parse_key_hex(raw, str(p))


def next_key_path(key_file: str | os.PathLike) -> Path | None:
    """Where a rotation keeps the next key of ``<dir>/<board>.key``: ``<dir>/<board>.next.key``."""
    p = Path(key_file)
    if not p.name.endswith(".key") or p.name.endswith(".next.key"):
        return None
    return p.with_name(p.name[: -len(".key")] + ".next.key")


def load_key_pair(key_file: str | os.PathLike) -> tuple[bytes, bytes | None]:
    """(current, pending next) for a daemon `key_file`; both must be private files (KeyStoreError)."""
    current = load_key_file(key_file)
    nxt_path = next_key_path(key_file)
    if nxt_path is None or not os.path.lexists(nxt_path):
        return current, None
    return current, load_key_file(nxt_path)


def atomic_write(path: Path, content: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``content``: created 0600, fsync'd, renamed, directory fsync'd.

    ``durable=False`` skips both fsyncs: the rename is still atomic and survives a killed process,
    only a power cut may bring back the previous content."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask may have removed bits, never added: make it exact
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KeyStore:
    """The daemon's board keys in one private directory (see the module docstring for the layout)."""

    def __init__(self, directory: str | os.PathLike, *, create: bool = False) -> None:
        self.directory = Path(directory)
        if create and not self.directory.exists():
            self.directory.mkdir(mode=0o700, parents=True)
            os.chmod(self.directory, 0o700)  # mkdir's mode is filtered by the umask
        try:
            st = os.stat(self.directory)
        except FileNotFoundError:
            raise KeyStoreError(f"{self.directory}: no key store here (create it with `liftwatch keys generate`)") from None
        if not stat.S_ISDIR(st.st_mode):
            raise KeyStoreError(f"{self.directory}: not a directory")
        _check_private(self.directory, st, f"chmod 700 {self.directory}")

    # ---- paths ---------------------------------------------------------------------------------
    def key_path(self, board_id: str) -> Path:
        return self.directory / f"{check_board_id(board_id)}.key"

    def next_path(self, board_id: str) -> Path:
        return self.directory / f"{check_board_id(board_id)}.next.key"

    # ---- keys ----------------------------------------------------------------------------------
    def _read_optional(self, path: Path) -> bytes | None:
        try:
            raw = read_private(path)
        except FileNotFoundError:
            return None
        return parse_key_hex(raw, str(path))

    def load(self, board_id: str) -> BoardKeys:
        """The board's current key and pending next key; typed errors for a missing, open or bad file."""
        current = self._read_optional(self.key_path(board_id))
        nxt = self._read_optional(self.next_path(board_id))
        if current is None:
            if nxt is None:
                raise UnknownBoardError(f"no key for board {board_id!r} in {self.directory}")
            # The board was first flashed through a rotation that never got promoted: the next key
            # is the only one the board can have.
            current, nxt = nxt, None
        return BoardKeys(board_id, current, nxt)

    def generate(self, board_id: str, *, n_bytes: int = KEY_BYTES) -> bytes:
        """A new random key for a board that has none (first provisioning)."""
        if not MIN_KEY_BYTES <= n_bytes <= MAX_KEY_BYTES:
            raise KeyStoreError(f"key length must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, got {n_bytes}")
        path = self.key_path(board_id)
        if path.exists() or self.next_path(board_id).exists():
            raise KeyExistsError(f"board {board_id!r} already has a key in {self.directory}; "
                                 "use `liftwatch keys rotate` so the board is not locked out")
        key = secrets.token_bytes(n_bytes)
        atomic_write(path, key.hex().encode() + b"\n")
        return key

    def rotate(self, board_id: str, *, n_bytes: int = KEY_BYTES) -> bytes:
        """The next key of a board, made now if none is pending (a retried flash reuses the same one)."""
        self.load(board_id)  # the board must exist and its files must be sound
        pending = self._read_optional(self.next_path(board_id))
        if pending is not None:
            return pending
        if not MIN_KEY_BYTES <= n_bytes <= MAX_KEY_BYTES:
            raise KeyStoreError(f"key length must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, got {n_bytes}")
        key = secrets.token_bytes(n_bytes)
        atomic_write(self.next_path(board_id), key.hex().encode() + b"\n")
        return key

    def promote(self, board_id: str) -> bytes:
        """Make the pending next key current (the board runs it now); the old key is gone for good."""
        keys = self.load(board_id)
        nxt_path = self.next_path(board_id)
        if keys.next is None:
            if nxt_path.exists():  # load() made a lone next key current: store it as such
                atomic_write(self.key_path(board_id), keys.current.hex().encode() + b"\n")
                nxt_path.unlink()
                _fsync_dir(self.directory)
                return keys.current
            raise KeyStoreError(f"board {board_id!r} has no pending key to promote (run `liftwatch keys rotate`)")
        atomic_write(self.key_path(board_id), keys.next.hex().encode() + b"\n")
        nxt_path.unlink()
        _fsync_dir(self.directory)
        return keys.next

    def import_key(self, board_id: str, key: bytes, *, as_next: bool = False) -> None:
        """Store a key made elsewhere (e.g. a board provisioned before the store existed)."""
        parse_key_hex(key.hex(), "key")  # length check
        path = self.next_path(board_id) if as_next else self.key_path(board_id)
        atomic_write(path, key.hex().encode() + b"\n")

    def remove(self, board_id: str) -> None:
        """Forget a board (decommissioned): its keys."""
        found = False
        for path in (self.key_path(board_id), self.next_path(board_id)):
            try:
                path.unlink()
                found = True
            except FileNotFoundError:
                pass
        if not found:
            raise UnknownBoardError(f"no key for board {board_id!r} in {self.directory}")
        _fsync_dir(self.directory)

    def board_ids(self) -> list[str]:
        ids = set()
        for path in self.directory.iterdir():
            name = path.name
            if name.startswith(".") or not name.endswith(".key"):
                continue
            ids.add(name[: -len(".next.key")] if name.endswith(".next.key") else name[: -len(".key")])
        return sorted(i for i in ids if _BOARD_ID.match(i))

    def list(self) -> list[KeyInfo]:
        """Every board with its key fingerprints; raises like load() on a bad file."""
        out = []
        for board_id in self.board_ids():
            keys = self.load(board_id)
            path = self.key_path(board_id) if self.key_path(board_id).exists() else self.next_path(board_id)
            out.append(KeyInfo(board_id, fingerprint(keys.current),
                               fingerprint(keys.next) if keys.next else None, path.stat().st_mtime))
        return out
