"""`liftwatch flash`'s choice of files: real-board modules to an ESP32, the simulated hardware only to
the mock board, by one rule that holds whether the simulation sits in firmware/ or firmware/sim/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from liftwatch.cli import main
from liftwatch.edge_daemon.flash import (
    FlashError,
    _stale_on_board,
    board_name,
    firmware_sources,
    is_simulation_module,
    is_simulator_arch,
    read_passkey,
)
from liftwatch.upy import FIRMWARE_DIR

# What the mock board's hal.py imports off an ESP32 and what that imports: it cannot boot without them.
MOCK_NEEDS = {"hal_sim.mpy", "fakeaccel.mpy", "fake_adxl.mpy", "fake_lis2dw12.mpy", "fake_lis3dh.mpy"}
ESP32_NEEDS = {"main.py", "hal.mpy", "hal_esp32.mpy", "ble_nus.mpy", "agent.mpy", "lwproto.mpy", "lwtag.mpy"}


def _dry_run(capsys, *args: str) -> tuple[int, list[str], str]:
    rc = main(["flash", "--dry-run", *args])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err


def _sim_folder_layout(tmp_path: Path) -> Path:
    """A copy of firmware/ with its simulated hardware moved into sim/, plus a sim module whose name
    follows no pattern: the folder alone must keep it off a real board."""
    fw = tmp_path / "firmware"
    (fw / "sim").mkdir(parents=True)
    for src in [*FIRMWARE_DIR.glob("*.py"), *(FIRMWARE_DIR / "sim").glob("*.py")]:
        shutil.copyfile(src, fw / ("sim" if is_simulation_module(src) else ".") / src.name)
    (fw / "sim" / "car_noise.py").write_text("LEVEL = 1\n")
    return fw


def test_esp32_dry_run_lists_real_board_modules_only_and_touches_no_port(capsys) -> None:
    # The port does not exist: a dry run with --arch that tried to reach it would fail.
    rc, names, err = _dry_run(capsys, "--arch", "xtensawin", "/dev/liftwatch-no-such-port")
    assert (rc, err) == (0, "")
    assert ESP32_NEEDS <= set(names)
    assert not [n for n in names if is_simulation_module(Path(n).with_suffix(".py"))]
    real = {board_name(p) for p in FIRMWARE_DIR.glob("*.py") if p.name != "__init__.py"} - MOCK_NEEDS
    assert set(names) == real | {"lwproto.mpy", "lwtag.mpy", "ed25519.mpy", "lwota.mpy"}  # every real module goes, nothing else
    assert len(names) == len(set(names))


def test_mock_board_dry_run_keeps_its_simulated_hardware(capsys) -> None:
    rc, names, _ = _dry_run(capsys, "--arch", "x64")
    assert rc == 0
    assert MOCK_NEEDS | ESP32_NEEDS <= set(names)


def test_dry_run_lists_the_config_and_key_it_would_write(capsys, tmp_path: Path) -> None:
    rc, names, _ = _dry_run(
        capsys, "--arch", "xtensawin", "--config", str(tmp_path / "c.json"), "--key-file", str(tmp_path / "k")
    )
    assert rc == 0 and names[-2:] == ["config.json", "auth.key"]


def test_the_ble_passkey_goes_beside_the_key_as_six_digits_never_echoed(capsys, tmp_path: Path) -> None:
    rc, names, _ = _dry_run(capsys, "--arch", "xtensawin", "--key-file", str(tmp_path / "k"),
                            "--ble-passkey-file", str(tmp_path / "p"))
    assert rc == 0 and names[-2:] == ["auth.key", "ble_passkey.txt"]
    good = tmp_path / "good"
    good.write_text("004711\n")
    assert read_passkey(good) == "004711"
    for text in ("4711", "1234567", "12 345", "abcdef", ""):
        bad = tmp_path / "bad"
        bad.write_text(text)
        with pytest.raises(FlashError) as err:
            read_passkey(bad)
        assert str(err.value) == f"BLE passkey {bad}: expected 6 digits"  # names the file, not what it holds
    with pytest.raises(FlashError, match="No such file"):
        read_passkey(tmp_path / "missing")


def test_dry_run_without_a_board_to_describe_is_one_line(capsys) -> None:
    rc, names, err = _dry_run(capsys)
    assert (rc, names) == (1, [])
    assert err == "liftwatch flash: --dry-run needs a PORT to ask or an --arch\n"


def test_arch_without_dry_run_is_refused(capsys) -> None:
    assert main(["flash", "/dev/liftwatch-no-such-port", "--arch", "xtensawin"]) == 2
    assert "--arch only goes with --dry-run" in capsys.readouterr().err


def test_the_rule_holds_with_the_simulation_in_its_own_folder(tmp_path: Path) -> None:
    fw = _sim_folder_layout(tmp_path)
    names = {
        layout: {
            simulated: [board_name(p) for p in firmware_sources(layout, simulated=simulated)]
            for simulated in (False, True)
        }
        for layout in (FIRMWARE_DIR, fw)
    }
    assert names[fw][False] == names[FIRMWARE_DIR][False]  # car_noise stays off a real board too
    assert set(names[fw][True]) == set(names[FIRMWARE_DIR][True]) | {"car_noise.mpy"}
    assert MOCK_NEEDS <= set(names[fw][True])


def test_only_microcontroller_archs_are_real_boards() -> None:
    assert not any(map(is_simulator_arch, ("xtensawin", "xtensa", "rv32imc", "armv6m", "armv7emsp", None, "new")))
    assert all(map(is_simulator_arch, ("x64", "x86")))


def test_a_real_board_loses_the_simulation_an_older_flash_left() -> None:
    listing = "ls :\n        4096 main.py\n         900 hal_sim.mpy\n         300 fake_lis3dh.py\n        2000 agent.mpy\n"
    deployed = ["main.py", "agent.mpy"]
    assert _stale_on_board(listing, deployed, simulated=False) == ["fake_lis3dh.py", "hal_sim.mpy"]
    assert _stale_on_board(listing, deployed, simulated=True) == []
