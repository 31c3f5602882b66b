"""The product never imports the test harness: edge_daemon/, fleet/, protocol/ and firmware/ stay free of
liftwatch.hil (STYLE.md), and firmware/sim/ holds all of the simulated hardware."""

from __future__ import annotations

import re

from liftwatch.edge_daemon.flash import firmware_sources
from liftwatch.upy import FIRMWARE_DIR, REPO_ROOT, SIM_HARDWARE_DIR

_HIL_IMPORT = re.compile(r"^\s*(?:from liftwatch\.hil\b|import liftwatch\.hil\b|from liftwatch import hil\b)", re.M)



def _hil_imports() -> set[tuple[str, str]]:
    found = set()
    for folder in ("edge_daemon", "fleet", "protocol", "firmware"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            text = path.read_text()
            for m in _HIL_IMPORT.finditer(text):
                found.add((str(path.relative_to(REPO_ROOT)), text[m.start():].splitlines()[0].strip()))
    return found


def test_the_product_does_not_import_the_test_harness():
    assert _hil_imports() == set()


def test_the_import_finder_sees_every_form():
    text = "import os\n    from liftwatch.hil.sim.feed import X\nimport liftwatch.hil\nfrom liftwatch import hil\n"
    assert len(_HIL_IMPORT.findall(text)) == 3


def test_the_simulated_hardware_lives_in_firmware_sim():
    # tests/test_flash.py checks the rule by which `liftwatch flash` keeps it off a real board.
    sim = {p.name for p in SIM_HARDWARE_DIR.glob("*.py")}
    assert {"hal_sim.py", "fakeaccel.py", "fake_adxl.py", "fake_lis2dw12.py", "fake_lis3dh.py"} <= sim
    assert not sim & {p.name for p in firmware_sources(simulated=False)}
    assert sim <= {p.name for p in firmware_sources(simulated=True)}
    assert not list(FIRMWARE_DIR.glob("fake*.py")) and not (FIRMWARE_DIR / "hal_sim.py").exists()
