"""The lift registry: TOML and CSV imports, and files refused with the line at fault."""

from __future__ import annotations

import subprocess
import sys

import pytest

from liftwatch.fleet.registry import RegistryError, load_registry, parse_registry
from liftwatch.fleet.store import open_store

HEADER = "car,registration_code,rescue_code,address,building,maintenance_company,insurer,response_min,repair_h,enrolled\n"
ROWS = [
    "gs-0001,31103301002019060001,10001,1 Wenhui Rd,Block 3,Xizi Maintenance,PICC,30,24,2019-06-01\n",
    "gs-0002,31103301002019060002,10002,1 Wenhui Rd,Block 4,Hangzhou Lift Service,PICC,15,12,2019-07-15\n",
]

TOML = """
[[lift]]
car = "gs-0001"
registration_code = "31103301002019060001"
rescue_code = "10001"
address = "1 Wenhui Rd"
building = "Block 3"
maintenance_company = "Xizi Maintenance"
insurer = "PICC"
enrolled = 2019-06-01

[[lift]]
car = "gs-0002"
registration_code = "31103301002019060001"
rescue_code = "10002"
address = "1 Wenhui Rd"
building = "Block 4"
maintenance_company = "Xizi Maintenance"
insurer = "PICC"
enrolled = 2019-06-01
visit_min_min = 45
"""


def test_a_csv_registry_reads_every_field_with_units():
    lifts = parse_registry(HEADER + "".join(ROWS))
    assert [x.car for x in lifts] == ["gs-0001", "gs-0002"]
    second = lifts[1]
    assert (second.response_s, second.repair_s, second.visit_min_s) == (900.0, 12 * 3600.0, 2400.0)
    assert (second.rescue_code, second.enrolled_on, second.maintenance_company) == ("10002", "2019-07-15",
                                                                                     "Hangzhou Lift Service")


@pytest.mark.parametrize(("text", "line", "reason"), [
    (HEADER + ROWS[0] + ROWS[0].replace("gs-0001", "gs-0003"), 3, "duplicate registration_code '31103301002019060001' (first on line 2)"),
    (HEADER + ROWS[0] + ROWS[1].replace("10002", "10001"), 3, "duplicate rescue_code '10001' (first on line 2)"),
    (HEADER + ROWS[0] + ROWS[0], 3, "duplicate car 'gs-0001' (first on line 2)"),
    (HEADER + ROWS[0].replace("2019-06-01", "June"), 2, "enrolled 'June' is not a date"),
    (HEADER + ROWS[0].replace(",30,", ",soon,"), 2, "response_min 'soon' is not a number"),
    (HEADER + ROWS[0].replace("10001", "96333-1"), 2, "rescue_code '96333-1' is not a 5-8 digit 96333 code"),
    (HEADER + ROWS[0].replace("gs-0001", "gs/0001"), 2, "is not an upstream car id"),
    (HEADER + ROWS[0].replace(",PICC,", ",,"), 2, "missing insurer"),
    (HEADER.replace("insurer", "insurance") + ROWS[0], 1, "unknown column(s) insurance"),
    (HEADER + ROWS[0].rstrip() + ",extra\n", 2, "11 cells, header has 10"),
])
def test_a_bad_csv_registry_is_refused_naming_the_line(text, line, reason):
    with pytest.raises(RegistryError) as err:
        parse_registry(text, "lifts.csv")
    assert err.value.line == line and reason in err.value.reason


def test_a_toml_duplicate_names_the_lift_table_line(tmp_path):
    path = tmp_path / "lifts.toml"
    path.write_text(TOML)
    with pytest.raises(RegistryError, match=r"lifts.toml:12: duplicate registration_code"):
        load_registry(path)
    path.write_text(TOML.replace('"31103301002019060001"\nrescue_code = "10002"', '"31103301002019060002"\nrescue_code = "10002"'))
    lifts = load_registry(path)
    assert lifts[1].visit_min_s == 45 * 60 and lifts[0].enrolled_on == "2019-06-01"


def test_the_cli_imports_and_refuses_in_one_line_keeping_the_old_registry(tmp_path):
    store = tmp_path / "fleet.sqlite"
    good, bad = tmp_path / "lifts.csv", tmp_path / "bad.csv"
    good.write_text(HEADER + "".join(ROWS))
    bad.write_text(HEADER + ROWS[0] + ROWS[0])

    def fleet(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "liftwatch", "fleet", *args, "--store", str(store)],
                              capture_output=True, text=True, timeout=60)

    ok = fleet("registry", "import", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "2 lifts imported" in ok.stdout
    refused = fleet("registry", "import", str(bad))
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [f"liftwatch fleet: {bad}:3: duplicate car 'gs-0001' (first on line 2)"]
    assert [x.car for x in open_store(store).lifts()] == ["gs-0001", "gs-0002"]
