"""One root for the project's errors: every public exception class the host code defines derives from
LiftwatchError (so the CLI and callers can tell a refusal from a bug), and keeps its builtin base."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from liftwatch.errors import LiftwatchError

# lwproto.py also runs on the board, which has no liftwatch package (errors.py says why it is left out).
_BOARD_SHARED = {"liftwatch.protocol.lwproto.ProtocolError"}


def _error_classes() -> dict[str, type]:
    found = {}
    names = ["liftwatch"]
    for top in ("liftwatch", "liftwatch.protocol", "liftwatch.edge_daemon", "liftwatch.fleet", "liftwatch.hil"):
        package = importlib.import_module(top)  # each folder is mapped on its own (pyproject's package-dir)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, top + ".")]
    for module_name in sorted(set(names)):
        if ".firmware" in module_name or module_name.endswith((".board_rom", ".board_ble", "__main__")) or ".hil.test_" in module_name:
            continue  # board code, the mock's ROM and its bluetooth run under micropython; tests are not product
        for name, obj in vars(importlib.import_module(module_name)).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module_name
                    and not name.startswith("_")):
                found[f"{module_name}.{name}"] = obj
    return found


def test_every_public_error_derives_from_the_root():
    classes = _error_classes()
    assert len(classes) >= 25  # the walk found the packages (a broken walk must not pass empty)
    outside = {name for name, cls in classes.items() if not issubclass(cls, LiftwatchError)}
    assert outside == _BOARD_SHARED


def test_errors_keep_their_builtin_base():
    from liftwatch.edge_daemon.config import ConfigError
    from liftwatch.edge_daemon.transport.base import TransportError
    from liftwatch.output import OutputError

    assert issubclass(ConfigError, ValueError) and issubclass(OutputError, OSError)
    assert issubclass(TransportError, LiftwatchError)
