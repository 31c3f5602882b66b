"""Type-check what goes to a real ESP32 against the ESP32 port's own API, before any board runs it.

The stubs are PyPI's `micropython-esp32-stubs` (generated from the port's firmware, pinned in the
dev extra with the checker, mypy). Checked:
1. every module `liftwatch flash` copies to an ESP32 (`firmware_sources(simulated=False)`, the one
   rule for what is simulation), as the board sees them: side by side, `sys.platform == "esp32"`.
   Firmware functions carry no annotations, so mypy runs with `check_untyped_defs`, and parameters
   that hold a port object get its type (PARAM_TYPES) in the staged copy, so a driver's
   `self.i2c.readfrom_mem_into(...)` is checked against `machine.I2C` and the agent's calls on its
   board against `hal_esp32.Esp32Board`;
2. the mock board's stand-ins for the port (STAND_INS): each member must exist in the stubs and the
   port's version must accept every call the stand-in accepts (the port's type assigned to the
   stand-in's), so a test on the mock cannot pass with a call the port refuses; constants must
   carry the port's values.
Errors that only say the firmware has no annotations (NOISE_CODES, attributes of the firmware's own
mixins) are dropped; where the stubs are wrong about the port, EXCEPTIONS says why, and an exception
that no longer matches anything is itself an error. Exit status 1 on any error, 2 on a setup problem.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STUB_DISTRIBUTIONS = ("micropython-esp32-stubs", "micropython-stdlib-stubs")
ROM = REPO / "hil_tests" / "mockboard" / "board_rom.py"
RADIO = ROM.with_name("board_ble.py")  # the ROM's `bluetooth` when the mock board has a radio

# Parameters that hold a port object, by the name the firmware always gives them (docs/firmware.md:
# everything takes its bus and board as arguments).
PARAM_TYPES = {"i2c": "machine.I2C", "board": "hal_esp32.Esp32Board"}

# What untyped firmware makes mypy say about itself, not about the port: types it cannot infer
# (attributes set to None first, mixins that share state, viper's pointer types, conditional
# definitions for CPython) and instance attributes that replace a method (hal_esp32 binds the link's).
NOISE_CODES = ("has-type", "var-annotated", "assignment", "union-attr", "method-assign", "misc", "no-redef",
               "valid-type", "index")


@dataclass(frozen=True)
class Exception_:
    module: str  # board module name
    code: str
    message: str  # regex on mypy's message
    why: str


# Where the stubs are wrong about the ESP32 port (MicroPython 1.29), each checked in the port's C code.
# One per paragraph: "module error-code message-regex", then why, indented. Module "*" is any board
# module; "stand-in" matches "Stand.member vs port.member: mypy's message" of the stand-in check.
_EXCEPTIONS_TABLE = r"""
hal_esp32 call-arg Too many arguments for "write" of "UART"
    streams take write(buf, off, n): py/stream.c mp_stream_write_obj takes 2 to 4 arguments
hal_esp32 arg-type Argument 3 to "Pin" has incompatible type "int \| None"
    pull=None means no pull resistor (ports/esp32/machine_pin.c, docs: pull None)
hal_esp32 call-overload "__setitem__" of "array" matches argument types "int", "_TicksMs"
    time.ticks_ms() returns a small int on the port; the stubs' _TicksMs is a typing device
ble_nus call-arg Unexpected keyword argument "adv_data" for "gap_advertise"
    gap_advertise parses adv_data as a keyword too (extmod/modbluetooth.c, mp_arg_parse_all)
ble_nus call-arg Too many arguments for "gatts_notify"
    gatts_notify(conn_handle, value_handle, data): the stubs drop conn_handle
    (extmod/modbluetooth.c: 3 to 4 arguments with self)
ble_nus arg-type Argument 2 to "gatts_notify" of "BLE" has incompatible type "memoryview
    the same missing conn_handle shifts the data argument onto value_handle
lwproto attr-defined Module "binascii" has no attribute "crc_hqx"
    CPython's C CRC, imported under try/except ImportError: the board takes the viper CRC
lwproto import-not-found module named "liftwatch.protocol.lwtag"
    CPython's package path, under try/except ImportError: the board imports lwtag, flashed beside it
ed25519 attr-defined Module "hashlib" has no attribute "sha512"
    imported under try/except ImportError: the port's hashlib has sha256 and sha1 (extmod/modhashlib.c),
    so the board takes the plain-Python SHA-512 beside it
lwtag import-not-found module named "liftwatch.protocol.chaskey"
    the host's plain-Python Chaskey, imported only off MicroPython: the board runs the viper one
* arg-type expected "ptr(8|16|32)"
    viper's pointer casts take any buffer; the stubs have no viper types
hal import-not-found module named "hal_sim"
    imported only where sys.platform is not esp32 (the mock board); an ESP32 has no hal_sim
stand-in assignment ^_BLE\.gatts_notify vs bluetooth\.BLE\.gatts_notify: 
    the stubs drop conn_handle (see ble_nus above): the port takes (conn_handle, value_handle, data=None)
stand-in assignment ^_Machine\.freq vs machine\.freq: .*overloaded function
    the port's freq() and freq(hz) overloads together take what freq(hz=None) takes; mypy does not
    join overloads (machine_freq_obj: 0 to 1 arguments)
"""


def _exceptions(table: str) -> tuple[Exception_, ...]:
    rows: list[list[str]] = []
    for line in table.strip("\n").splitlines():
        if line.startswith(" "):
            rows[-1].append(line.strip())
        else:
            rows.append([line])
    return tuple(Exception_(*head.split(" ", 2), " ".join(why)) for head, *why in rows)


EXCEPTIONS = _exceptions(_EXCEPTIONS_TABLE)


@dataclass(frozen=True)
class StandIn:
    path: Path  # file defining the stand-in
    name: str  # class in it
    port: str  # what it stands for: a stub module ("machine") or class ("machine.I2C")


def _sim_hal() -> Path:
    from liftwatch.upy import FIRMWARE_DIR

    return next(FIRMWARE_DIR.rglob("hal_sim.py"))


def stand_ins(rom: Path) -> list[StandIn]:
    """The mock board's stand-ins for the port: its ROM's `machine` and `micropython` modules, its
    `bluetooth` module on the virtual radio (board_ble.py beside the ROM: the module's constants and
    `BLE`), and the simulated HAL's I2C bus that the drivers talk to on the mock (the mock has no
    `esp32` stand-in: hal_sim uses no esp32 call)."""
    return [StandIn(rom, "_Machine", "machine"), StandIn(rom, "_MicroPython", "micropython"),
            StandIn(RADIO, "_Bluetooth", "bluetooth"), StandIn(RADIO, "_BLE", "bluetooth.BLE"),
            StandIn(_sim_hal(), "SimI2C", "machine.I2C")]


def _cache_dir() -> Path:
    """The stubs staged once per stubs and mypy version, as the typeshed and search path mypy wants.
    (mypy's own cache is not shared between runs: a module found fresh there is not re-reported.)"""
    try:
        versions = "-".join(importlib.metadata.version(n) for n in (*STUB_DISTRIBUTIONS, "mypy"))
    except importlib.metadata.PackageNotFoundError as err:
        raise SystemExit(f"check-esp32-api: {err.name} is not installed (pip install -e '.[dev]')") from None
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "liftwatch" / f"esp32-api-{versions}"
    typings = root / "typings"
    if not typings.is_dir():
        staging = Path(tempfile.mkdtemp(prefix="typings-", dir=root.parent if root.parent.is_dir() else None))
        for name in STUB_DISTRIBUTIONS:
            dist = importlib.metadata.distribution(name)
            for f in dist.files or ():
                if f.suffix == ".pyi" or f.name == "VERSIONS":
                    out = staging / f
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(dist.locate_file(f), out)
        root.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(typings)  # whole or not at all: a concurrent run may have won
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return root


def _typed_copy(src: Path, dst: Path) -> None:
    """The module with PARAM_TYPES written onto its parameters, line numbers unchanged (annotations
    inserted in place, the imports they need appended)."""
    text = src.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            args = node.args
            defaults = dict(zip([a.arg for a in args.args][::-1], args.defaults[::-1]))
            for a in args.posonlyargs + args.args + args.kwonlyargs:
                typ = PARAM_TYPES.get(a.arg)
                if typ and a.annotation is None and not isinstance(node, ast.Lambda):
                    none_default = isinstance(defaults.get(a.arg), ast.Constant) and defaults[a.arg].value is None
                    edits.append((a.lineno, a.end_col_offset, f": {typ}{' | None' if none_default else ''}"))
    for lineno, col, text_in in sorted(edits, reverse=True):
        line = lines[lineno - 1]
        lines[lineno - 1] = line[:col] + text_in + line[col:]
    modules = sorted({t.split(".")[0] for t in PARAM_TYPES.values()})
    lines.append(f"\nimport {', '.join(modules)}  # check-esp32-api: parameter types\n")
    dst.write_text("".join(lines), encoding="utf-8")


def _stub_constants(stub: Path, names: list[str]) -> dict[str, object]:
    """`NAME: Final[int] = value` of a stub module."""
    values = {}
    for node in ast.parse(stub.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            if node.target.id in names and isinstance(node.value, ast.Constant):
                values[node.target.id] = node.value.value
    return values


def _conformance(items: list[StandIn], stage: Path, typings: Path) -> tuple[str, list[str]]:
    """A module that assigns each port member's type to the stand-in's (mypy reports the ones that
    accept calls the port refuses), and the constants whose values differ from the port's."""
    body = ["# generated by check-esp32-api: the port's members must fit where the stand-ins' are used",
            "import machine, micropython, bluetooth, esp32"]
    problems = []
    copied: dict[Path, str] = {}
    for n, s in enumerate(items):
        if s.path not in copied:
            copied[s.path] = f"standin_{len(copied)}"
            shutil.copyfile(s.path, stage / f"{copied[s.path]}.py")
            body.insert(2, f"import {copied[s.path]}")
        cls = next(c for c in ast.parse(s.path.read_text(encoding="utf-8")).body
                   if isinstance(c, ast.ClassDef) and c.name == s.name)
        members = [b.name for b in cls.body if isinstance(b, ast.FunctionDef) and not b.name.startswith("_")]
        constants = {t.id: b.value.value for b in cls.body if isinstance(b, ast.Assign)
                     for t in b.targets if isinstance(t, ast.Name) and not t.id.startswith("_")
                     and isinstance(b.value, ast.Constant)}
        if "." not in s.port:
            want = _stub_constants(typings / f"{s.port}.pyi", list(constants))
            problems += [f"{s.path.name}: {s.name}.{k} = {v!r}, the port's {s.port}.{k} is {want.get(k)!r}"
                         for k, v in constants.items() if want.get(k) != v]
        port = s.port if "." not in s.port else "port"
        body.append(f"def check_{n}(mock: {copied[s.path]}.{s.name}"
                    + (f", port: {s.port}" if "." in s.port else "") + ") -> None:")
        body += [f"    {s.name}_{m} = mock.{m}\n    {s.name}_{m} = {port}.{m}  # {s.name}.{m} vs {s.port}.{m}"
                 for m in members]
        body += [f"    {s.name}_{k} = {port}.{k}  # {s.name}.{k} vs {s.port}.{k}" for k in constants]
        body.append("    pass")
    return "\n".join(body) + "\n", problems


_LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<msg>.*?)(?:  \[(?P<code>[a-z-]+)\])?$")


def check(firmware_dir: Path, rom: Path) -> list[str]:
    """Every API error as one line: `file:line: message [code]`."""
    from mypy import api

    from liftwatch.edge_daemon.flash import firmware_sources

    with tempfile.TemporaryDirectory(prefix="check-esp32-api-") as tmp:
        root = Path(tmp)
        cache = _cache_dir()
        typings, stage = cache / "typings", root / "board"
        stage.mkdir()
        origin = {}
        for src in firmware_sources(firmware_dir, simulated=False):
            _typed_copy(src, stage / src.name)
            origin[src.stem] = src
        own_classes = {c.name for src in origin.values() for c in ast.walk(ast.parse(src.read_text(encoding="utf-8")))
                       if isinstance(c, ast.ClassDef)}
        conformance, problems = _conformance(stand_ins(rom), stage, typings)
        (stage / "_standins_check.py").write_text(conformance, encoding="utf-8")
        standin_modules = ", ".join(sorted(p.stem for p in stage.glob("standin_*.py")))
        (root / "mypy.ini").write_text(
            "[mypy]\n"
            f"custom_typeshed_dir = {typings}\n"
            f"mypy_path = {typings}\n"
            "platform = esp32\n"
            "check_untyped_defs = True\n"
            "no_site_packages = True\n"
            f"disable_error_code = {', '.join(NOISE_CODES)}\n"
            # the stand-ins' files run on the unix port or the host: only their members' types count
            f"[mypy-{standin_modules.replace(', ', ',')}]\nignore_errors = True\n"
            # the stand-in check is made of assignments: there they are the point, not noise
            "[mypy-_standins_check]\nenable_error_code = assignment\n",
            encoding="utf-8",
        )
        out, err, _ = api.run(["--config-file", str(root / "mypy.ini"), "--cache-dir", str(root / "mypy-cache"),
                               "--no-error-summary", "--show-error-codes", *sorted(map(str, stage.glob("*.py")))])
        if err.strip():
            raise SystemExit(f"check-esp32-api: mypy failed: {err.strip()}")
        errors = []
        used = set()
        for raw in out.splitlines():
            m = _LINE.match(raw)
            if not m or m["kind"] != "error":
                continue
            path = Path(m["path"])
            if path.parent.name != "board" or path.parent.parent != root:
                continue  # the stubs' own complaints about themselves
            module, msg, code = path.stem, m["msg"], m["code"] or ""
            attr = re.match(r'"(\w+)" has no attribute', msg)
            if code == "attr-defined" and attr and (attr[1] in own_classes or attr[1] == "None"):
                continue  # a firmware mixin's attribute, or one set to None first and to its object later
            hit = next((e for e in EXCEPTIONS if e.module in (module, "*") and e.code == code
                        and re.search(e.message, msg)), None)
            if hit is not None:
                used.add(hit)
                continue
            if module == "_standins_check":
                line = conformance.splitlines()[int(m["line"]) - 1]
                where = line.split("# ")[-1] if "# " in line else line.strip()
                hit = next((e for e in EXCEPTIONS if e.module == "stand-in" and e.code == code
                            and re.search(e.message, f"{where}: {msg}")), None)
                if hit is not None:
                    used.add(hit)
                else:
                    errors.append(f"mock stand-in {where}: {msg} [{code}]")
            else:
                src = origin.get(module, path)
                shown = src.relative_to(REPO) if src.is_relative_to(REPO) else src
                errors.append(f"{shown}:{m['line']}: {msg} [{code}]")
        errors += [f"mock stand-in {p}" for p in problems]
        errors += [f"check-esp32-api: exception no longer needed ({e.module}, {e.code}, {e.message!r}): {e.why}"
                   for e in EXCEPTIONS if e not in used and e.module in (*origin, "*", "stand-in")]
        return errors


def main(argv: list[str] | None = None) -> int:
    from liftwatch.upy import FIRMWARE_DIR

    p = argparse.ArgumentParser(prog="check-esp32-api", description=__doc__.splitlines()[0])
    p.add_argument("--firmware-dir", type=Path, default=FIRMWARE_DIR, help="board modules (default: firmware/)")
    p.add_argument("--rom", type=Path, default=ROM, help="the mock board's ROM (default: hil_tests/mockboard/board_rom.py)")
    args = p.parse_args(argv)
    errors = check(args.firmware_dir.resolve(), args.rom.resolve())
    for line in errors:
        print(line)
    print(f"check-esp32-api: {len(errors)} error(s); stubs micropython-esp32-stubs "
          f"{importlib.metadata.version('micropython-esp32-stubs')}, mypy {importlib.metadata.version('mypy')}",
          file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
