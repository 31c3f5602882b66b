"""Fuzzing the daemon's config parser: any text, and structured mutations of the documented example.

Property: `load_config` / `parse_config` return a valid `DaemonConfig` or raise `ConfigError`
naming a key; never another exception, and a config they accept has only finite, in-range numbers
(a NaN timeout would be a car silently never reported offline). Budget: tests/support/fuzzing.py.
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from support.fuzzing import fuzz

from liftwatch.edge_daemon.config import SECTIONS, ConfigError, DaemonConfig, load_config, parse_config
from liftwatch.edge_daemon.hosts import is_loopback_host

DOCS = Path(__file__).resolve().parent.parent / "docs"
EXAMPLE_TEXT = (DOCS / "liftwatch.example.toml").read_text(encoding="utf-8")
EXAMPLE = tomllib.loads(EXAMPLE_TEXT)
EXAMPLE["upstream"]["mqtt"]["password_file"] = "mqtt.password"  # relative: each test's own folder
EXAMPLE["boards"][1]["key_file"] = "bldg3-lift2.key"  # the BLE board's key, written beside it


def write_example_secrets(base: Path) -> None:
    (base / "mqtt.password").write_text("s3cret\n")
    (base / "mqtt.password").chmod(0o600)
    key = base / "bldg3-lift2.key"
    key.write_text("00112233445566778899aabbccddeeff\n")
    key.chmod(0o600)
KNOWN_KEYS = sorted({k.name for keys in SECTIONS.values() for k in keys})


def check_config(cfg: DaemonConfig) -> None:
    """What a config the parser accepted must satisfy."""
    for value in (cfg.status_interval_s, cfg.write_timeout_s, cfg.session.heartbeat_timeout_s,
                  cfg.session.time_sync_interval_s, cfg.session.config_retry_s, cfg.session.hello_retry_s,
                  cfg.upstream.status_interval_s):
        assert math.isfinite(value) and value > 0, value
    assert cfg.outbox_budget_bytes > 0
    if cfg.upstream.mqtt is not None:
        assert 1 <= cfg.upstream.mqtt.port <= 65535, cfg.upstream.mqtt.port
        assert cfg.upstream.mqtt.tls is not None or is_loopback_host(cfg.upstream.mqtt.host)  # plain only here
        for level in (cfg.upstream.mqtt.topic_prefix, cfg.pi, cfg.site):
            assert level and not set(level) & set("/+#$\0"), level
    assert len({b.car for b in cfg.boards}) == len(cfg.boards)
    for board in cfg.boards:
        assert board.address and (board.key is None or 16 <= len(board.key) <= 64)
        assert board.baudrate >= 1200


def parse_or_typed_error(text: str, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        cfg = load_config(path)
    except ConfigError as err:
        assert err.source == str(path) and str(err)
        return
    check_config(cfg)


# ---------------------------------------------------------------- text

_toml_tokens = st.sampled_from([
    "[daemon]\n", "[session]\n", "[outbox]\n", "[upstream]\n", "[upstream.mqtt]\n", "[[boards]]\n",
    "[boards.settings]\n", "[boards.analytics]\n", "[analytics]\n", 'site = "a"\n', 'car = "c"\n',
    'port = "/dev/x"\n', "= ", "\n", '"', "'", "[", "]", "{", "}", ",", "nan", "inf", "-inf", "1e999", "0x10",
    "true", "1979-05-27T07:32:00Z", '"\\u0000"', "\\", "#", "heartbeat_timeout_s = ", "budget_mb = ",
    'key_file = "', 'password_file = "', "require_tag = true\n", 'link = "ble"\n', 'address = ""\n',
])
_toml_ish = st.lists(st.one_of(_toml_tokens, st.text(max_size=8)), max_size=40).map("".join)


@fuzz(0.2)
@given(text=st.one_of(_toml_ish, st.text(max_size=300)))
def test_any_text_is_a_config_or_a_config_error(tmp_path_factory, text: str) -> None:
    parse_or_typed_error(text, tmp_path_factory.mktemp("cfg"))


def test_bytes_that_are_not_utf8_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[daemon]\nsite = "caf\xe9"\n')
    try:
        load_config(path)
    except ConfigError as err:
        assert "UTF-8" in str(err)
    else:
        raise AssertionError("a non-UTF-8 file was accepted")


# ---------------------------------------------------------------- structured mutations

_toml_value = st.recursive(
    st.one_of(st.text(max_size=12), st.integers(-(1 << 63), (1 << 63) - 1), st.floats(), st.booleans(),
              st.sampled_from(["/dev/ttyUSB0", "serial", "ble", "\x00", "../../etc/passwd", "a" * 300, ""])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


_EDGES = {
    float: [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e308, 5e-324],
    int: [0, -1, 65536, 99_999_999, (1 << 63) - 1, -(1 << 63)],
    str: ["", "\x00", "a\x00b", "../../../etc/shadow", "x" * 5000, "é字", " "],
    bool: [True, False],
}


@st.composite
def mutated_example(draw: st.DrawFn) -> dict:
    doc = copy.deepcopy(EXAMPLE)
    for _ in range(draw(st.integers(1, 5))):
        # Walk to a random table (boards are tables inside an array).
        table = doc
        path = []
        while True:
            keys = [k for k, v in table.items() if isinstance(v, (dict, list))]
            if not keys or draw(st.booleans()):
                break
            k = draw(st.sampled_from(keys))
            nxt = table[k]
            if isinstance(nxt, list):
                if not nxt:
                    break
                nxt = nxt[draw(st.integers(0, len(nxt) - 1))]
            if not isinstance(nxt, dict):
                break
            table, path = nxt, path + [k]
        op = draw(st.sampled_from(["delete", "retype", "add_known", "add_unknown", "duplicate_board", "no_boards",
                                   "edge_value", "edge_value", "edge_value"]))
        if op == "edge_value":  # a documented key of a random section gets a value at the edge of its type
            section = draw(st.sampled_from(sorted(SECTIONS)))
            key = draw(st.sampled_from(SECTIONS[section]))
            value = draw(st.sampled_from(_EDGES[key.kind]))
            if section == "boards":
                boards = doc.get("boards")
                if isinstance(boards, list) and boards and isinstance(boards[0], dict):
                    boards[0][key.name] = value
            else:
                target = doc
                for part in section.split("."):
                    target = target.setdefault(part, {}) if isinstance(target, dict) else {}
                if isinstance(target, dict):
                    target[key.name] = value
            continue
        if op == "delete" and table:
            del table[draw(st.sampled_from(sorted(table)))]
        elif op == "retype" and table:
            table[draw(st.sampled_from(sorted(table)))] = draw(_toml_value)
        elif op == "add_known":
            table[draw(st.sampled_from(KNOWN_KEYS))] = draw(_toml_value)
        elif op == "add_unknown":
            table[draw(st.text(min_size=1, max_size=10))] = draw(_toml_value)
        elif op == "duplicate_board" and doc.get("boards"):
            if isinstance(doc["boards"], list):
                doc["boards"].append(copy.deepcopy(doc["boards"][0]))
        elif op == "no_boards":
            doc["boards"] = draw(st.sampled_from([[], {}, "x", [1]]))
    return doc


@fuzz(0.3)
@given(doc=mutated_example())
def test_mutated_example_is_a_config_or_a_config_error(tmp_path_factory, doc: dict) -> None:
    base = tmp_path_factory.mktemp("cfg")
    (base / "key.hex").write_text("ab" * 32)
    write_example_secrets(base)
    try:
        cfg = parse_config(doc, "fuzz.toml", base)
    except ConfigError as err:
        assert err.source == "fuzz.toml" and str(err)
        return
    check_config(cfg)


def test_the_unmutated_example_is_valid(tmp_path: Path) -> None:
    write_example_secrets(tmp_path)
    check_config(parse_config(copy.deepcopy(EXAMPLE), "example", tmp_path))
