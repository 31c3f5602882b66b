"""Every `liftwatch` subcommand, run as a user runs it, with a missing input, an output it cannot
write and a stdout the reader has closed (`liftwatch ... | head`): one line on stderr, a non-zero
exit (2 for what the command line must change, 1 for a runtime failure), never a traceback, and a
failed command leaves an existing output file as it was.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from liftwatch.cli import build_parser
from liftwatch.edge_daemon import ota
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import encode_frame
from support.report_synth import clean_week

LIFTWATCH = [sys.executable, "-m", "liftwatch"]
PERIOD = ["--from", "2026-11-02", "--to", "2026-11-08"]
TINY_SCENARIO = """
[scenario]
name = "tiny"
description = "one trip between two rests"
car = "office6"
seed = 1

[[step]]
do = "wait"
s = 3

[[step]]
do = "trip"
to = 2

[[step]]
do = "wait"
s = 3
"""
UNWRITABLE = "/proc/liftwatch-test/out"  # /proc takes no new files, whoever runs the test
UNDER_A_FILE = "/etc/hostname/out"  # a path through a regular file

# subcommand -> (argv, expected exit, stdout closed?) cases. {x} are filled from the `inputs` fixture.
CASES: dict[str, list[tuple[list[str], int, bool]]] = {
    "decode": [
        (["decode", "{tmp}/missing.bin"], 2, False),
        (["decode", "/dev/ttyUSB9"], 2, False),
        (["decode", "{capture}"], 1, True),
    ],
    "flash": [
        (["flash", "/dev/ttyUSB9"], 2, False),
        (["flash", "/dev/null", "--config", "{tmp}/missing.json"], 2, False),
        (["flash", "/dev/ttyUSB9"], 2, True),
    ],
    "mock-board": [
        (["mock-board", "--trace", "{tmp}/missing.csv", "--fs", "{tmp}/fs"], 2, False),
        (["mock-board", "--fs", UNWRITABLE + "/flash.img"], 1, False),
        (["mock-board", "--fs", "{tmp}/fs", "--trace", "{trace}", "--speed", "0"], 1, True),
    ],
    "simulate": [
        (["simulate", "{tmp}/missing.toml", "--out", "{tmp}/x.csv"], 2, False),
        (["simulate", "{scenario}", "--out", UNWRITABLE + ".csv"], 1, False),
        (["simulate", "{scenario}", "--out", UNDER_A_FILE + ".csv"], 1, False),
        (["simulate", "{scenario}", "--out", "{tmp}/x.csv"], 1, True),
    ],
    "record": [
        (["record", "/dev/ttyUSB9", "--out", "{tmp}/r.csv"], 2, False),
        (["record", "{pty}", "--out", "{tmp}/r.csv", "--key-file", "{tmp}/missing.key"], 2, False),
        (["record", "{pty}", "--out", UNWRITABLE + ".csv", "--duration-s", "1"], 1, False),
        (["record", "/dev/ttyUSB9", "--out", "{tmp}/r.csv"], 2, True),
    ],
    "run": [
        (["run", "--config", "{tmp}/missing.toml"], 2, False),
        (["run", "--config", "{proc_config}"], 1, False),
        (["run", "--config", "{config}", "--check"], 1, True),
    ],
    "replay": [
        (["replay", "{tmp}/missing.csv"], 2, False),
        (["replay", "{trace}", "--out", UNWRITABLE + ".jsonl"], 1, False),
        (["replay", "{trace}", "--out", UNDER_A_FILE + ".jsonl"], 1, False),
        (["replay", "{trace}"], 1, True),
    ],
    "status": [
        (["status", "--config", "{tmp}/missing.toml"], 2, False),
        (["status", "--state-dir", "{tmp}/never-ran"], 1, False),
        (["status", "--json", "--state-dir", "{state}"], 1, True),
    ],
    "calibrate": [
        (["calibrate", "--config", "{tmp}/missing.toml"], 2, False),
        (["calibrate", "--port", "/dev/null", "--key-file", "{tmp}/missing.key"], 2, False),
        (["calibrate", "--port", "/dev/ttyUSB9", "--timeout", "1"], 1, True),
    ],
    "report": [
        (["report", "--car", "car-ok", *PERIOD, "--source", "{tmp}/missing.jsonl"], 2, False),
        (["report", "--car", "car-ok", *PERIOD, "--source", "{journal}", "--out", UNWRITABLE + ".html"], 1, False),
        (["report", "--car", "car-ok", *PERIOD, "--source", "{journal}", "--out", UNDER_A_FILE + ".html"], 1, False),
        (["report", "--car", "car-ok", *PERIOD, "--source", "{journal}", "--out", "{tmp}/r.html"], 1, True),
    ],
    "fleet-report": [
        (["fleet-report", *PERIOD, "--source", "{tmp}/missing.jsonl"], 2, False),
        (["fleet-report", *PERIOD, "--source", "{journal}", "--out", UNWRITABLE + ".html"], 1, False),
        (["fleet-report", *PERIOD, "--source", "{journal}", "--out", "{tmp}/f.html"], 1, True),
    ],
    "keys": [
        (["keys", "--dir", "{tmp}/no-store", "path", "b-1"], 1, False),
        (["keys", "--dir", UNWRITABLE, "generate", "b-1"], 1, False),
        (["keys", "--dir", "{store}", "list"], 1, True),
    ],
    "fleet": [
        (["fleet", "registry", "import", "{tmp}/missing.csv", "--store", "{tmp}/fleet.sqlite"], 2, False),
        (["fleet", "status", "--store", UNWRITABLE + ".sqlite"], 1, False),
        (["fleet", "ingest", "--store", "{tmp}/fleet.sqlite", "--broker", "broker.example.cn:8883"], 2, False),
        (["fleet", "report", "--store", "{tmp}/fleet.sqlite", *PERIOD, "--out", "{tmp}/f.docx"], 2, False),
        (["fleet", "report", "--store", "{tmp}/fleet.sqlite", *PERIOD, "--json"], 1, False),
        (["fleet", "status", "--store", "{tmp}/fleet.sqlite"], 1, True),
    ],
    "ota": [
        (["ota", "build", "--key", "{tmp}/missing.key", "-o", "{tmp}/fw.lwota"], 1, False),
        (["ota", "keygen", UNWRITABLE + "/release.key"], 1, False),
        (["ota", "push", "{bundle}", "--config", "{config}", "--car", "c"], 1, False),  # no such port
        (["ota", "push", "{bundle}", "--config", "{config}", "--car", "c", "--install-idle-s", "-5"], 2, False),
        (["ota", "rollout", "{tmp}/missing.lwota", "--config", "{config}", "--canary", "c"], 2, False),
        (["ota", "rollout", "{bundle}", "--config", "{config}", "--canary", "no-such-car"], 2, False),
        (["ota", "rollout", "{bundle}", "--config", "{config}", "--canary", "c", "--hold-s", "-1"], 2, False),
        (["ota", "rollout", "{bundle}", "--config", "{config}", "--canary", "c", "--install-idle-s", "-1"], 2, False),
        (["ota", "rollout", "{bundle}", "--config", "{proc_config}", "--canary", "c"], 1, False),  # no state file
        (["ota", "rollout", "{bundle}", "--config", "{config}", "--canary", "c"], 1, True),  # the canary: no port
    ],
    "demo": [
        (["demo", "--fleet", "{tmp}/missing.toml"], 1, False),  # DemoError: exit 1 (demo.py is not ours to change)
        (["demo", "--state-dir", "/proc/liftwatch-test", "--status-port", "-1"], 1, False),
        (["demo", "--state-dir", "/proc/liftwatch-test", "--status-port", "-1"], 1, True),
    ],
}


def _subcommands() -> set[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return set(sub.choices)


def test_every_subcommand_has_error_cases() -> None:
    """A new subcommand must bring its cases here."""
    assert _subcommands() == set(CASES)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("cli")
    capture = tmp / "capture.bin"
    capture.write_bytes(b"".join(encode_frame(lw.T_HEARTBEAT, [i, 50000, 0, 0, 1, True, False], 1, i, i * 1000)
                                 for i in range(200)))
    scenario = tmp / "tiny.toml"
    scenario.write_text(TINY_SCENARIO)
    trace = tmp / "tiny.csv"
    made = subprocess.run(LIFTWATCH + ["simulate", str(scenario), "--out", str(trace)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    config = tmp / "site.toml"
    config.write_text('[daemon]\nsite = "s"\nstate_dir = "state"\n[[boards]]\ncar = "c"\nport = "/dev/ttyUSB9"\n')
    proc_config = tmp / "proc.toml"
    proc_config.write_text(config.read_text().replace('"state"', '"/proc/liftwatch-test"'))
    state = tmp / "state"
    state.mkdir()
    (state / "status.json").write_text('{"site": "s", "boards": [' + ",".join(['{"car": "c"}'] * 2000) + "]}")
    store = tmp / "keys"
    made = subprocess.run(LIFTWATCH + ["keys", "--dir", str(store), "generate", "b-1"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    journal = clean_week("car-ok").write_jsonl(tmp / "upstream.jsonl")
    bundle = tmp / "fw.lwota"  # well formed, unsigned: enough for the Pi's checks before a board answers
    bundle.write_bytes(ota.pack("1.1.0", 0, "x64", [("agent.mpy", b"firmware")], None))
    return {"tmp": str(tmp), "capture": str(capture), "scenario": str(scenario), "trace": str(trace),
            "config": str(config), "proc_config": str(proc_config), "state": str(state), "store": str(store),
            "journal": str(journal), "bundle": str(bundle)}


def _run(argv: list[str], closed_stdout: bool, cwd: str) -> subprocess.CompletedProcess[str]:
    """Run liftwatch; with `closed_stdout`, stdout is a pipe whose reader has gone (`| head` done)."""
    if not closed_stdout:
        return subprocess.run(LIFTWATCH + argv, capture_output=True, text=True, timeout=120, cwd=cwd)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(LIFTWATCH + argv, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
                              cwd=cwd)
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    ("argv", "code", "closed"),
    [pytest.param(*case, id=f"{name}-{i}{'-closed-stdout' if case[2] else ''}")
     for name, cases in CASES.items() for i, case in enumerate(cases)],
)
def test_one_line_and_an_exit_code_never_a_traceback(
    argv: list[str], code: int, closed: bool, inputs: dict[str, str]
) -> None:
    master, slave = os.openpty()  # a port that exists but where no board talks
    try:
        filled = [a.format(pty=os.ttyname(slave), **inputs) for a in argv]
        r = _run(filled, closed, inputs["tmp"])
    finally:
        os.close(master)
        os.close(slave)
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1, r.stderr
    assert r.returncode == code, r.stderr
    assert lines[0].startswith("liftwatch"), lines[0]


def test_a_replay_of_a_bad_trace_keeps_the_existing_output(inputs: dict[str, str], tmp_path: Path) -> None:
    """`replay garbage.csv --out keep.jsonl` emptied keep.jsonl before it noticed the bad input."""
    garbage = tmp_path / "garbage.csv"
    garbage.write_text(Path(inputs["trace"]).read_text().replace("\n0,", "\nzero,", 1) + "not,a,trace\n")
    keep = tmp_path / "keep.jsonl"
    keep.write_text('{"good": "yesterday"}\n')
    r = _run(["replay", str(garbage), "--out", str(keep)], False, str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert keep.read_text() == '{"good": "yesterday"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.csv", "keep.jsonl"]  # no temporary left


def test_a_failed_command_keeps_the_existing_output_and_a_good_one_replaces_it(
    inputs: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "trace.csv"
    out.write_text("precious\n")
    r = _run(["simulate", str(tmp_path / "missing.toml"), "--out", str(out)], False, str(tmp_path))
    assert r.returncode == 2 and out.read_text() == "precious\n"
    out.chmod(0o640)
    r = _run(["simulate", inputs["scenario"], "--out", str(out)], False, str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert out.read_text().startswith("t_us,") and out.stat().st_mode & 0o777 == 0o640  # its mode is kept
    assert [p.name for p in tmp_path.iterdir()] == ["trace.csv"]


def test_every_option_and_argument_says_what_it_is_for() -> None:
    """`liftwatch X --help` listed --baud, --require-tag, --baudrate and --sensor with no text."""

    def undocumented(parser: argparse.ArgumentParser, name: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    missing += undocumented(sub, f"{name} {sub_name}")
            elif not action.help and not isinstance(action, argparse._HelpAction):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
        return missing

    assert undocumented(build_parser(), "liftwatch") == []


def test_flash_and_decode_say_what_is_wrong_in_the_users_terms(tmp_path: Path) -> None:
    """`flash /dev/ttyUSB9` printed the internal mpremote command line; decode gave tracebacks."""
    r = _run(["flash", "/dev/ttyUSB9"], False, str(tmp_path))
    assert r.stderr.strip() == ("liftwatch flash: /dev/ttyUSB9: no such port (is the board plugged in? "
                                "see `ls /dev/tty*`)")
    r = _run(["flash", "/dev/null"], False, str(tmp_path))  # exists, but no board answers there
    assert r.returncode == 1 and r.stderr.startswith(
        "liftwatch flash: asking the board its MicroPython version on /dev/null failed:"), r.stderr
    assert "exec" not in r.stderr and "sys.implementation" not in r.stderr
    r = _run(["decode", "/dev/ttyUSB9"], False, str(tmp_path))
    assert "/dev/ttyUSB9: no such serial port" in r.stderr
    r = _run(["decode", "missing.bin"], False, str(tmp_path))
    assert r.stderr.strip() == "liftwatch decode: missing.bin: No such file or directory"
