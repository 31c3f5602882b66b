"""TOML configuration: defaults, the example file, generated docs, and typed errors naming the key."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest

from liftwatch.edge_daemon.config import (
    SECTIONS,
    ConfigError,
    config_markdown,
    load_config,
    parse_config,
)
from liftwatch.edge_daemon.transport import LinkKind

DOCS = Path(__file__).resolve().parent.parent / "docs"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "liftwatch.toml"
    p.write_text(text)
    return p


MINIMAL = """
[daemon]
site = "site-a"
[[boards]]
car = "car-1"
port = "/dev/ttyUSB0"
"""


def test_minimal_config_gets_documented_defaults(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.site == "site-a" and cfg.pi  # pi defaults to the host name
    (b,) = cfg.boards
    assert (b.car, b.link, b.address, b.baudrate, b.key) == ("car-1", LinkKind.SERIAL, "/dev/ttyUSB0", 921_600, None)
    assert cfg.session.heartbeat_timeout_s == 15.0
    assert cfg.outbox_budget_bytes == 64 * 1024 * 1024
    assert cfg.upstream.mqtt is None  # no broker: journal
    assert cfg.upstream.journal_path == Path("/var/lib/liftwatch/upstream.jsonl")
    assert cfg.outbox_path == Path("/var/lib/liftwatch/outbox.sqlite")
    assert b.analytics.entrapment_outside_zone_s == 15.0


def test_example_file_is_valid_and_overrides_apply(tmp_path):
    doc = tomllib.loads((DOCS / "liftwatch.example.toml").read_text())
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    doc["upstream"]["mqtt"]["password_file"] = str(secret)
    key = tmp_path / "bldg3-lift2.key"
    key.write_text("00112233445566778899aabbccddeeff\n")
    key.chmod(0o600)
    doc["boards"][1]["key_file"] = str(key)
    cfg = parse_config(doc, "example", tmp_path)
    assert cfg.boards[1].require_tag and not cfg.boards[0].require_tag  # BLE: tags required by default
    assert [b.car for b in cfg.boards] == ["bldg3-lift1", "bldg3-lift2"]
    assert cfg.boards[1].link is LinkKind.BLE and cfg.boards[1].address == "3C:71:BF:00:A1:C4"
    assert cfg.boards[1].analytics.rated_speed_mps == 1.75
    assert cfg.boards[0].analytics.rated_speed_mps == 1.0 and cfg.boards[0].analytics.floor_count == 18
    assert cfg.boards[1].analytics.lowest_floor == -1  # [analytics] applies to every car
    mqtt = cfg.upstream.mqtt
    assert mqtt.host == "mqtt.example-maintenance.cn" and mqtt.password == "s3cret" and mqtt.tls.ca_file


def _secret(tmp_path: Path, name: str, mode: int, text: str = "s3cret-s3cret-s3cret\n") -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return name


@pytest.mark.parametrize("host", ["mqtt.example.com", "192.168.1.20", "broker", "localhost.example.com"])
def test_plain_mqtt_to_another_host_is_refused(tmp_path, host):
    """SECURITY.md, threat 2: without TLS the password and every fact cross the network in clear."""
    pw = _secret(tmp_path, "mqtt.pw", 0o600)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, f'[daemon]\nsite = "a"\n[upstream.mqtt]\nhost = "{host}"\ntls = false\n'
                                     f'username = "u"\npassword_file = "{pw}"\n'))
    assert err.value.key == "upstream.mqtt.tls" and "only for a broker on this host" in err.value.reason
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.53"])
def test_plain_mqtt_to_this_host_is_allowed(tmp_path, host):
    pw = _secret(tmp_path, "mqtt.pw", 0o600)
    cfg = load_config(write(tmp_path, f'[daemon]\nsite = "a"\n[upstream.mqtt]\nhost = "{host}"\ntls = false\n'
                                       f'username = "u"\npassword_file = "{pw}"\n'))
    assert cfg.upstream.mqtt.tls is None and cfg.upstream.mqtt.password == "s3cret-s3cret-s3cret"


@pytest.mark.parametrize(("section", "key"), [
    ("[upstream.mqtt]\nhost = \"b\"\npassword_file = \"{f}\"\n", "upstream.mqtt.password_file"),
    ("[upstream.mqtt]\nhost = \"b\"\nclient_cert = \"c.pem\"\nclient_key = \"{f}\"\n", "upstream.mqtt.client_key"),
    ("[status]\nhost = \"0.0.0.0\"\ntoken_file = \"{f}\"\n", "status.token_file"),
])
def test_secret_files_get_the_board_key_files_checks(tmp_path, section, key):
    """Group/other bits or a symlink are refused with the chmod that fixes it (keystore.read_private)."""
    for mode in (0o644, 0o640, 0o604):
        name = _secret(tmp_path, f"secret-{mode:o}", mode)
        with pytest.raises(ConfigError) as err:
            load_config(write(tmp_path, '[daemon]\nsite = "a"\n' + section.format(f=name)))
        assert err.value.key == key and f"chmod 600 {tmp_path / name}" in err.value.reason
        assert "s3cret" not in str(err.value)
    (tmp_path / "link").symlink_to(tmp_path / _secret(tmp_path, "private", 0o600))
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[daemon]\nsite = "a"\n' + section.format(f="link")))
    assert err.value.key == key and "symlink" in err.value.reason
    load_config(write(tmp_path, '[daemon]\nsite = "a"\n' + section.format(f="private")))


@pytest.mark.parametrize(("text", "key"), [
    ('pi = "pi/3"', "daemon.pi"), ('pi = "pi+"', "daemon.pi"), ('pi = "#"', "daemon.pi"),
    ('pi = "$SYS"', "daemon.pi"),
    ('[upstream.mqtt]\nhost = "b"\ntopic_prefix = "acme/liftwatch"', "upstream.mqtt.topic_prefix"),
    ('[upstream.mqtt]\nhost = "b"\ntopic_prefix = "+"', "upstream.mqtt.topic_prefix"),
    ('[upstream.mqtt]\nhost = "b"\ntopic_prefix = "lift#"', "upstream.mqtt.topic_prefix"),
    ('[upstream.mqtt]\nhost = "b"\ntopic_prefix = ""', "upstream.mqtt.topic_prefix"),
])
def test_topic_levels_refuse_wildcards_and_slashes(tmp_path, text, key):
    """pi and topic_prefix are one topic level each: `+`/`#` would publish to a filter, `/` shift the layout."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[daemon]\nsite = "a"\n' + text + "\n"))
    assert err.value.key == key and "no / or wildcards" in err.value.reason


def test_reprs_carry_no_secret(tmp_path):
    pw = _secret(tmp_path, "mqtt.pw", 0o600, "mqtt-password-xyz\n")
    tok = _secret(tmp_path, "status.token", 0o600, "status-token-0123456789abcdef\n")
    cfg = load_config(write(tmp_path, f'[daemon]\nsite = "a"\n[upstream.mqtt]\nhost = "b"\npassword_file = "{pw}"\n'
                                       f'[status]\nhost = "0.0.0.0"\ntoken_file = "{tok}"\n'))
    assert cfg.status.token == "status-token-0123456789abcdef" and cfg.upstream.mqtt.password == "mqtt-password-xyz"
    assert "status-token" not in repr(cfg) and "mqtt-password" not in repr(cfg)


def test_docs_are_generated_from_the_key_tables():
    assert (DOCS / "config.md").read_text() == config_markdown(), "run: python -m liftwatch.edge_daemon.config > docs/config.md"
    text = config_markdown()
    for keys in SECTIONS.values():
        for key in keys:
            assert f"| `{key.name}` |" in text


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[daemon]\n", "daemon.site", "required key missing"),
        ('[daemon]\nsite = "a/b"\n', "daemon.site", "MQTT topic level"),
        ('[daemon]\nsite = "a"\n[session]\nhearbeat_timeout_s = 3\n', "session.hearbeat_timeout_s",
         "did you mean 'heartbeat_timeout_s'"),
        ('[daemon]\nsite = "a"\n[session]\nheartbeat_timeout_s = "15"\n', "session.heartbeat_timeout_s",
         "expected float, got str"),
        ('[daemon]\nsite = "a"\n[session]\nheartbeat_timeout_s = 0.1\n', "session.heartbeat_timeout_s", ">= 1.0"),
        ('[daemon]\nsite = "a"\nlog_level = "loud"\n', "daemon.log_level", "one of debug"),
        ('[daemon]\nsite = "a"\n[[boards]]\ncar = "c"\n', "boards[0].port", "required for link = 'serial'"),
        ('[daemon]\nsite = "a"\n[[boards]]\ncar = "c"\nlink = "ble"\n', "boards[0].address", "required"),
        ('[daemon]\nsite = "a"\n[[boards]]\ncar = "c"\nlink = "ble"\naddress = "AA:BB:CC:DD:EE:FF"\n',
         "boards[0].key_file", "authenticated by default"),
        ('[daemon]\nsite = "a"\n[[boards]]\ncar = "c"\nlink = "zigbee"\nport = "x"\n', "boards[0].link", "one of serial, ble"),
        ('[daemon]\nsite = "a"\n[[boards]]\ncar = "c"\nport = "/dev/a"\n[[boards]]\ncar = "c"\nport = "/dev/b"\n',
         "boards[1].car", "already served"),
        ('[daemon]\nsite = "a"\n[[boards]]\ncar = "c"\nport = "/dev/a"\n[[boards]]\ncar = "d"\nport = "/dev/a"\n',
         "boards[1]", "already used"),
        ('[daemon]\nsite = "a"\n[[boards]]\ncar = "c"\nport = "/dev/a"\nbaudrate = true\n', "boards[0].baudrate",
         "expected int, got bool"),
        ('[daemon]\nsite = "a"\n[[boards]]\ncar = "c"\nport = "/dev/a"\nrequire_tag = true\n',
         "boards[0].require_tag", "needs key_file"),
        ('[daemon]\nsite = "a"\n[analytics]\nentrapment_s = 5\n', "analytics.entrapment_s", "did you mean"),
        ('[daemon]\nsite = "a"\n[analytics]\nrated_speed_mps = "fast"\n', "analytics.rated_speed_mps", "expected float"),
        ('[daemon]\nsite = "a"\n[analytics]\nrated_speed_mps = -1\n', "analytics.rated_speed_mps", "must be > 0"),
        ('[daemon]\nsite = "a"\n[[boards]]\ncar = "c"\nport = "/dev/a"\n[boards.analytics]\nfloor_count = 1\n',
         "boards[0].analytics.floor_count", "at least 2"),
        ('[daemon]\nsite = "a"\n[upstream.mqtt]\nport = 1883\n', "upstream.mqtt.host", "required"),
        ('[daemon]\nsite = "a"\n[upstream.mqtt]\nhost = "b"\nclient_cert = "c.pem"\n', "upstream.mqtt.client_key",
         "go together"),
        ('[daemon]\nsite = "a"\n[upstream.mqtt]\nhost = "b"\npassword_file = "nope.txt"\n',
         "upstream.mqtt.password_file", "cannot read"),
        ('boards = 3\n[daemon]\nsite = "a"\n', "boards", "[[boards]]"),
        ('[daemon]\nsite = "a"\n[sesion]\n', "sesion", "did you mean 'session'"),
        ('[daemon]\nsite = "a"\n[analytics]\nfloor_labels = "G"\n', "analytics.floor_labels", "expected an array"),
        ('[daemon]\nsite = "a"\n[analytics]\nfloor_labels = ["G", "G"]\n', "analytics.floor_labels", "unique"),
        ('[daemon]\nsite = "a"\n[analytics]\nfloor_levels_m = [0, 4.2, 4.5]\n', "analytics.floor_levels_m",
         "rise by at least 1 m"),
        ('[daemon]\nsite = "a"\n[calendar]\nmon = ["9-17"]\n', "calendar.mon", "is not \"HH:MM-HH:MM\""),
        ('[daemon]\nsite = "a"\n[calendar]\nmon = ["17:00-09:00"]\n', "calendar.mon", "ends before it starts"),
        ('[daemon]\nsite = "a"\n[calendar]\ntue = ["08:00-12:00", "11:00-13:00"]\n', "calendar.tue", "overlap"),
        ('[daemon]\nsite = "a"\n[calendar]\nwed = "08:00-12:00"\n', "calendar.wed", "expected a list"),
        ('[daemon]\nsite = "a"\n[calendar]\nholidays = ["2026-13-01"]\n', "calendar.holidays", "not a YYYY-MM-DD"),
        ('[daemon]\nsite = "a"\n[calendar]\nholidays = [2026-10-01]\nworkdays = [2026-10-01]\n',
         "calendar.workdays", "also a holiday"),
        ('[daemon]\nsite = "a"\n[calendar]\nrepair_max_days = "weeks"\n', "calendar.repair_max_days", "one of"),
        ('[daemon]\nsite = "a"\n[calendar]\nfri_pm = []\n', "calendar.fri_pm", "unknown calendar key"),
        ('[daemon]\nsite = "a"\n[calendar]\nmon = []\ntue = []\nwed = []\nthu = []\nfri = []\n', "calendar.week",
         "no working hours"),
        ('[daemon]\nsite = "a"\n[[boards]]\ncar = "c"\nport = "/dev/a"\n[boards.calendar]\nsun = ["25:00-26:00"]\n',
         "boards[0].calendar.sun", "HH:MM-HH:MM"),
    ],
)
def test_errors_name_the_key_and_the_reason(tmp_path, text, key, reason):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.key == key
    assert reason in err.value.reason
    assert str(err.value).startswith(str(tmp_path / "liftwatch.toml"))


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[daemon\nsite = 1"))


def test_key_file_is_read_as_hex_and_never_echoed(tmp_path):
    (tmp_path / "good.hex").write_text("00112233445566778899aabbccddeeff\n")
    (tmp_path / "bad.hex").write_text("correct horse battery staple")
    for name in ("good.hex", "bad.hex"):
        (tmp_path / name).chmod(0o600)  # key files must be private (edge_daemon/keystore.py)
    base = '[daemon]\nsite = "a"\n[[boards]]\ncar = "c"\nport = "/dev/a"\nrequire_tag = true\nkey_file = "{}"\n'
    cfg = load_config(write(tmp_path, base.format("good.hex")))  # relative to the config file
    assert cfg.boards[0].key == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert cfg.session_for(cfg.boards[0]).key == cfg.boards[0].key
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, base.format("bad.hex")))
    assert "horse" not in str(err.value) and err.value.key == "boards[0].key_file"


def test_ble_board_may_opt_out_of_tags_explicitly(tmp_path):
    doc = {"daemon": {"site": "a"},
           "boards": [{"car": "c", "link": "ble", "address": "AA:BB:CC:DD:EE:FF", "require_tag": False}]}
    (b,) = parse_config(doc, "test", tmp_path).boards
    assert b.link is LinkKind.BLE and b.require_tag is False and b.key is None


def test_a_key_file_requires_tags(tmp_path):
    """Issue 14 item 2: a serial board with a key took untagged frames (require_tag defaulted to false)."""
    (tmp_path / "board.key").write_text("00112233445566778899aabbccddeeff\n")
    (tmp_path / "board.key").chmod(0o600)
    base = '[daemon]\nsite = "a"\n[[boards]]\ncar = "c"\nport = "/dev/a"\nkey_file = "board.key"\n'
    (board,) = load_config(write(tmp_path, base)).boards
    assert board.require_tag is True
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, base + "require_tag = false\n"))
    assert err.value.key == "boards[0].require_tag" and "key_file" in str(err.value)


def test_site_and_car_calendars(tmp_path):
    text = MINIMAL + """
[boards.calendar]
sat = ["09:00-12:00"]
repair_max_days = "working"
[calendar]
mon = ["08:30-12:00", "13:30-17:30"]
holidays = [2026-10-01, "2026-10-02"]
workdays = [2026-09-27]
"""
    cfg = load_config(write(tmp_path, text))
    assert cfg.calendar.week[0] == ((510, 720), (810, 1050))
    assert cfg.calendar.holidays == {date(2026, 10, 1), date(2026, 10, 2)} and cfg.calendar.workdays == {date(2026, 9, 27)}
    (b,) = cfg.boards
    # the car's table replaces the site's whole: its Monday is the default one again
    assert b.calendar.week[5] == ((540, 720),) and b.calendar.week[0] == ((540, 720), (780, 1080))
    assert b.calendar.repair_max_days == "working" and not b.calendar.holidays
    assert load_config(write(tmp_path, MINIMAL)).boards[0].calendar == cfg.boards[0].calendar.__class__()


def test_landing_names_and_levels_per_car(tmp_path):
    text = MINIMAL + """
[boards.analytics]
floor_labels = ["B2", "B1", "G", "M", "3", "5", "15"]
floor_levels_m = [0, 3.2, 6.4, 11.0, 14.2, 17.4, 20.6]
lowest_floor = -2
"""
    (b,) = load_config(write(tmp_path, text)).boards
    a = b.analytics
    assert a.floor_count == 7 and a.floor_labels[3] == "M" and a.floor_levels_m[3] == 11.0
    assert a.floor_label(-2) == "B2" and a.floor_label(4) == "15" and a.floor_label(5) is None
