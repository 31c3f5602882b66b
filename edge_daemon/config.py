"""The daemon's TOML configuration: every key, its type, its default and why, in one table.

The key tables below are the single source: `load_config()` validates against them and
`config_markdown()` renders docs/config.md from them (a test keeps the file in sync), so a key
cannot exist without documentation. Errors are `ConfigError` with the file, the key path
(`boards[2].port`) and the reason, raised before anything starts: a typo must not silently fall
back to a default in a car that insurers rely on.

Per-car analytics thresholds are the analytics engineer's `AnalyticsConfig`; `[analytics]` sets
them for every car and `[boards.analytics]` overrides them for one car.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liftwatch.edge_daemon.analytics.config import AnalyticsConfig
from liftwatch.edge_daemon.analytics.config import AnalyticsConfigError
from liftwatch.edge_daemon.report.workhours import CalendarError, WorkCalendar
from liftwatch.edge_daemon.hosts import is_loopback_host
from liftwatch.edge_daemon.keystore import KeyStoreError, check_private, load_key_pair, read_private
from liftwatch.edge_daemon.session import SessionConfig
from liftwatch.edge_daemon.status.server import (
    StatusConfig,
    StatusConfigError,
    load_token,
)
from liftwatch.edge_daemon.transport import LinkKind
from liftwatch.edge_daemon.upstream import MqttConfig, TlsConfig, UpstreamConfig
from liftwatch.edge_daemon.upstream_codec import PayloadEncoding
from liftwatch.errors import LiftwatchError


class ConfigError(LiftwatchError, ValueError):
    """The configuration file is unusable; `key` is the dotted path of the offending key."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


@dataclass(frozen=True, slots=True)
class Key:
    """One documented key: TOML name, accepted type, default, documentation."""

    name: str
    kind: type
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None


_TOPIC_SAFE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

DAEMON_KEYS = (
    Key("site", str, REQUIRED, "Site (building or estate) name: the second MQTT topic level. Letters, digits, `_.:-`."),
    Key("pi", str, "", "This Pi's name in status messages and its status topic level (letters, digits, "
        "`_.:-`); empty = the host name."),
    Key("state_dir", str, "/var/lib/liftwatch", "Directory for the outbox, the journal and the status file."),
    Key("status_interval_s", float, 5.0, "How often the status file read by `liftwatch status` is rewritten.",
        minimum=0.5),
    Key("log_level", str, "info", "Log level on stderr (journald).", choices=("debug", "info", "warning", "error")),
)
_SESSION = SessionConfig()
SESSION_KEYS = (
    Key("heartbeat_timeout_s", float, _SESSION.heartbeat_timeout_s,
        "No frame for this long = `board_offline` (a board sends STATS every second when no VIB flows and a "
        "HEARTBEAT every 10 s, firmware defaults `stats_ms`, `heartbeat_ms`).", minimum=1.0),
    Key("time_sync_interval_s", float, _SESSION.time_sync_interval_s,
        "TIME_SYNC period; the ESP32 crystal drifts about 24 ms per 10 minutes.", minimum=1.0),
    Key("config_retry_s", float, _SESSION.config_retry_s, "Re-send an unanswered CONFIG after this long.",
        minimum=0.5),
    Key("hello_retry_s", float, _SESSION.hello_retry_s,
        "Re-request a HELLO after this long when frames come from a boot we have no HELLO for.", minimum=0.5),
    Key("write_timeout_s", float, 2.0,
        "A board that stops reading for this long gets its host->board frame dropped (counted), so it "
        "cannot stall its own reading.", minimum=0.1),
)
OUTBOX_KEYS = (
    Key("path", str, "", "SQLite outbox file; empty = `<state_dir>/outbox.sqlite`."),
    Key("budget_mb", float, 64.0, "Space for pending messages; when full, raw data goes first, faults and "
        "maintenance records never.", minimum=1.0),
)
UPSTREAM_KEYS = (
    Key("journal", str, "", "JSON Lines journal used when no `[upstream.mqtt]` is configured; "
        "empty = `<state_dir>/upstream.jsonl`."),
    Key("status_interval_s", float, 300.0, "Period of the upstream `status` message.", minimum=5.0),
)
MQTT_KEYS = (
    Key("host", str, REQUIRED, "Broker host name. Its presence selects MQTT instead of the journal."),
    Key("port", int, 8883, "Broker port (8883 = MQTT over TLS)."),
    Key("tls", bool, True, "TLS with certificate verification; false only for a broker on this host "
        "(`localhost` or a loopback address), else refused."),
    Key("ca_file", str, "", "CA bundle for the broker's certificate; empty = the system CAs."),
    Key("client_cert", str, "", "Client certificate (PEM) for certificate authentication."),
    Key("client_key", str, "", "Key of the client certificate (PEM); mode 0600, owned by the daemon's user, "
        "else refused."),
    Key("username", str, "", "User name for password authentication."),
    Key("password_file", str, "", "File holding the password (kept out of this file so it can be shared); "
        "mode 0600, owned by the daemon's user, else refused."),
    Key("client_id", str, "", "MQTT client id; empty = `liftwatch-<site>-<pi>`. Must stay stable: the "
        "persistent session is tied to it."),
    Key("keepalive_s", int, 30, "MQTT keep-alive.", minimum=5),
    Key("topic_prefix", str, "liftwatch", "First topic level: letters, digits, `_.:-` (no `/`, and no "
        "`+`/`#`, which are wildcards)."),
    Key("encoding", str, PayloadEncoding.DEFLATE.value, "Fact message payloads: `deflate` (raw DEFLATE with the "
        "shared dictionary, ~4x fewer bytes on a metered link; subscribers decode with "
        "`upstream_codec.decode_payload`) or plain `json`. Status messages are always JSON.",
        choices=(PayloadEncoding.DEFLATE.value, PayloadEncoding.JSON.value)),
)
_STATUS = StatusConfig()
STATUS_KEYS = (
    Key("enabled", bool, True, "Serve the status page and Prometheus `/metrics` (docs/operations.md)."),
    Key("host", str, _STATUS.host, "Address to listen on. Anything but loopback needs `token_file`; reach "
        "the default with `ssh -L 8080:localhost:8080 pi`."),
    Key("port", int, _STATUS.port, "TCP port; 0 = any free port.", minimum=0),
    Key("token_file", str, "", "File holding the bearer token (16+ characters, e.g. `openssl rand -hex 24`) that "
        "every route but `/healthz` then wants; required when `host` is not loopback. Mode 0600, owned by "
        "the daemon's user, else refused."),
)
BOARD_KEYS = (
    Key("car", str, REQUIRED, "Car name (third MQTT topic level), e.g. `bldg3-lift2`."),
    Key("link", str, "serial", "How the board is reached.", choices=("serial", "ble")),
    Key("port", str, "", "Serial device; use `/dev/serial/by-id/...`, which survives re-plugging. "
        "Required for `link = \"serial\"`."),
    Key("baudrate", int, 921_600, "UART speed of the board's link.", minimum=1200),
    Key("address", str, "", "BLE address of the board. Required for `link = \"ble\"`."),
    Key("board_id", str, "", "Expected HELLO board id; a different board on this port is reported."),
    Key("key_file", str, "", "File with the board's key in hex (16-64 bytes), readable by the daemon's user "
        "only (mode 0600, else refused); empty = no tags. A pending `<name>.next.key` beside a `<name>.key` "
        "(`liftwatch keys rotate`, `liftwatch flash --keystore`) is accepted too until promoted."),
    Key("require_tag", bool, False, "Drop untagged frames from this board. Always true when `key_file` is set "
        "(`require_tag = false` beside a key is refused: a key that lets untagged frames in protects nothing). "
        "Without `key_file`: a BLE board is refused unless `require_tag = false` says so (anyone in radio range "
        "could inject frames); a serial board takes untagged frames."),
)
SECTIONS = {
    "daemon": DAEMON_KEYS,
    "session": SESSION_KEYS,
    "outbox": OUTBOX_KEYS,
    "upstream": UPSTREAM_KEYS,
    "upstream.mqtt": MQTT_KEYS,
    "status": STATUS_KEYS,
    "boards": BOARD_KEYS,
}
# Tables that hold free-form or foreign keys rather than keys of ours.
_BOARD_TABLES = ("settings", "analytics", "calendar")


@dataclass(frozen=True, slots=True)
class BoardConfig:
    """One board (one car) the daemon serves."""

    car: str
    link: LinkKind
    address: str  # serial port or BLE address
    baudrate: int = 921_600
    board_id: str = ""
    key: bytes | None = None
    next_key: bytes | None = None  # a rotated key the reflashed board may already use (keystore.py)
    require_tag: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)  # CONFIG pushed to the board
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    calendar: WorkCalendar = WorkCalendar()  # the car's working calendar (reports), else the site's


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    site: str
    pi: str
    state_dir: Path
    status_interval_s: float
    log_level: str
    session: SessionConfig
    write_timeout_s: float
    outbox_path: Path
    outbox_budget_bytes: int
    upstream: UpstreamConfig
    analytics: AnalyticsConfig
    boards: tuple[BoardConfig, ...]
    source: str = "<config>"
    status: StatusConfig | None = _STATUS  # the status page and /metrics; None = not served
    calendar: WorkCalendar = WorkCalendar()  # the site's working calendar, which reports measure repairs in

    @property
    def status_path(self) -> Path:
        return self.state_dir / "status.json"

    def session_for(self, board: BoardConfig) -> SessionConfig:
        """The session settings of one board: the shared timing plus its CONFIG and key."""
        return dataclasses.replace(self.session, settings=dict(board.settings), key=board.key)


def _take(table: Any, keys: tuple[Key, ...], where: str, source: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Validate one TOML table against its keys; returns every key with its default filled in."""
    if not isinstance(table, Mapping):
        raise ConfigError(source, where, f"expected a table, got {type(table).__name__}")
    known = {k.name: k for k in keys}
    for name in table:
        if name not in known and name not in extra:
            hint = difflib.get_close_matches(name, list(known) + list(extra), n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(source, f"{where}.{name}" if where else name, f"unknown key{suggestion}")
    out: dict[str, Any] = {}
    for key in keys:
        path = f"{where}.{key.name}" if where else key.name
        if key.name not in table:
            if key.default is REQUIRED:
                raise ConfigError(source, path, "required key missing")
            out[key.name] = key.default
            continue
        value = table[key.name]
        if key.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, key.kind) or (key.kind is not bool and isinstance(value, bool)):
            raise ConfigError(source, path, f"expected {key.kind.__name__}, got {type(value).__name__} {value!r}")
        if key.kind is float and not math.isfinite(value):  # NaN passes every `<` check below
            raise ConfigError(source, path, f"must be a finite number, got {value}")
        if key.choices and value not in key.choices:
            raise ConfigError(source, path, f"expected one of {', '.join(key.choices)}; got {value!r}")
        if key.minimum is not None and value < key.minimum:
            raise ConfigError(source, path, f"must be >= {key.minimum}, got {value}")
        out[key.name] = value
    return out


_ANALYTICS_LISTS = ("floor_labels", "floor_levels_m")


def _analytics(table: Mapping[str, Any], base: AnalyticsConfig, where: str, source: str) -> AnalyticsConfig:
    names = {f.name: f for f in dataclasses.fields(AnalyticsConfig)}
    for name, value in table.items():
        if name not in names:
            hint = difflib.get_close_matches(name, list(names), n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(source, f"{where}.{name}", f"unknown analytics key{suggestion}")
        default = getattr(AnalyticsConfig(), name)
        if name in _ANALYTICS_LISTS:  # landing labels and levels: TOML arrays
            if not isinstance(value, list):
                raise ConfigError(source, f"{where}.{name}", f"expected an array, got {value!r}")
            continue
        ok_types: tuple[type, ...] = (type(default),) if default is not None else (int,)
        if isinstance(default, float):
            ok_types = (float, int)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, ok_types):
            raise ConfigError(source, f"{where}.{name}", f"expected {ok_types[0].__name__}, got {value!r}")
    try:
        return dataclasses.replace(base, **{k: (float(v) if isinstance(getattr(base, k), float) else
                                               tuple(v) if k in _ANALYTICS_LISTS else v)
                                           for k, v in table.items()})
    except AnalyticsConfigError as err:
        raise ConfigError(source, f"{where}.{err.field}", err.reason) from err


def _read_secret(path: str, where: str, source: str, base_dir: Path) -> str:
    """A private one-line secret file (keystore.read_private's checks); its content is never echoed."""
    p = (base_dir / path).expanduser()
    try:
        return read_private(p).decode("utf-8").strip()
    except FileNotFoundError as err:
        raise ConfigError(source, where, f"cannot read {p}: {err.strerror}") from None
    except KeyStoreError as err:
        raise ConfigError(source, where, str(err)) from None
    except (OSError, ValueError, UnicodeError) as err:  # a NUL in the path, a file that is not text
        raise ConfigError(source, where, f"cannot read {path!r}: {type(err).__name__}") from None


def _private_path(path: str, where: str, source: str, base_dir: Path) -> str:
    """The path of a secret another library reads (the TLS client key), once checked private."""
    p = (base_dir / path).expanduser()
    try:
        check_private(p)
    except FileNotFoundError as err:
        raise ConfigError(source, where, f"cannot read {p}: {err.strerror}") from None
    except KeyStoreError as err:
        raise ConfigError(source, where, str(err)) from None
    except (OSError, ValueError) as err:
        raise ConfigError(source, where, f"cannot read {path!r}: {type(err).__name__}") from None
    return str(p)


def _topic_level(value: str, where: str, source: str, what: str) -> str:
    if not _TOPIC_SAFE.match(value):
        raise ConfigError(source, where, f"{what} must be 1-64 of letters, digits, _.:- (one MQTT topic level, "
                          f"no / or wildcards + #); got {value!r}")
    return value


def _key_bytes(path: str, where: str, source: str, base_dir: Path) -> tuple[bytes, bytes | None]:
    """(current, pending next) key; private files only, contents never echoed (edge_daemon/keystore.py)."""
    try:
        return load_key_pair((base_dir / path).expanduser())
    except KeyStoreError as err:
        raise ConfigError(source, where, str(err)) from None
    except (OSError, ValueError) as err:  # a NUL in the path, a directory
        raise ConfigError(source, where, f"cannot read {path!r}: {err}") from None


def parse_config(doc: Mapping[str, Any], source: str = "<config>", base_dir: Path = Path(".")) -> DaemonConfig:
    """Validate a parsed TOML document; relative paths are taken from `base_dir` (the file's folder)."""
    _take(doc, (), "", source,
          extra=("daemon", "session", "outbox", "upstream", "status", "analytics", "calendar", "boards"))
    d = _take(doc.get("daemon", {}), DAEMON_KEYS, "daemon", source)
    _topic_level(d["site"], "daemon.site", source, "site")
    pi = _topic_level(d["pi"] or socket.gethostname().split(".")[0], "daemon.pi", source,
                      "pi" if d["pi"] else "pi (the host name, as pi is not set)")
    state_dir = (base_dir / d["state_dir"]).expanduser()
    s = _take(doc.get("session", {}), SESSION_KEYS, "session", source)
    session = SessionConfig(
        heartbeat_timeout_s=s["heartbeat_timeout_s"], time_sync_interval_s=s["time_sync_interval_s"],
        config_retry_s=s["config_retry_s"], hello_retry_s=s["hello_retry_s"],
    )
    o = _take(doc.get("outbox", {}), OUTBOX_KEYS, "outbox", source)
    if o["budget_mb"] > 1 << 30:  # a petabyte: a typo, and beyond it bytes overflow to infinity
        raise ConfigError(source, "outbox.budget_mb", f"must be at most {1 << 30}, got {o['budget_mb']}")
    up_table = doc.get("upstream", {})
    u = _take(up_table, UPSTREAM_KEYS, "upstream", source, extra=("mqtt",))
    mqtt = None
    if "mqtt" in up_table:
        q = _take(up_table["mqtt"], MQTT_KEYS, "upstream.mqtt", source)
        if not 1 <= q["port"] <= 65535:
            raise ConfigError(source, "upstream.mqtt.port", f"must be a TCP port 1-65535, got {q['port']}")
        if not q["tls"] and not is_loopback_host(q["host"]):
            raise ConfigError(source, "upstream.mqtt.tls", f"tls = false only for a broker on this host (localhost, "
                              f"127.0.0.1, ::1); to {q['host']!r} the password and every fact could be read and "
                              "altered on the way")
        _topic_level(q["topic_prefix"], "upstream.mqtt.topic_prefix", source, "topic_prefix")
        password = _read_secret(q["password_file"], "upstream.mqtt.password_file", source, base_dir) if q["password_file"] else None
        if bool(q["client_cert"]) != bool(q["client_key"]):
            raise ConfigError(source, "upstream.mqtt.client_key", "client_cert and client_key go together")
        if not q["tls"] and (q["client_cert"] or q["ca_file"]):
            raise ConfigError(source, "upstream.mqtt.tls", "certificates are set but tls = false")
        client_key = _private_path(q["client_key"], "upstream.mqtt.client_key", source, base_dir) if q["client_key"] else None
        tls = TlsConfig(ca_file=str(base_dir / q["ca_file"]) if q["ca_file"] else None,
                        client_cert=str(base_dir / q["client_cert"]) if q["client_cert"] else None,
                        client_key=client_key) if q["tls"] else None
        mqtt = MqttConfig(host=q["host"], port=q["port"], tls=tls, username=q["username"] or None,
                          password=password, client_id=q["client_id"] or None, keepalive_s=q["keepalive_s"],
                          topic_prefix=q["topic_prefix"], encoding=PayloadEncoding(q["encoding"]))
    upstream = UpstreamConfig(
        site=d["site"], pi=pi, mqtt=mqtt,
        journal_path=(base_dir / u["journal"]) if u["journal"] else state_dir / "upstream.jsonl",
        status_interval_s=u["status_interval_s"],
    )
    status = _status(doc.get("status", {}), source, base_dir)
    analytics = _analytics(_as_table(doc.get("analytics", {}), "analytics", source), AnalyticsConfig(),
                           "analytics", source)
    calendar = _calendar(doc.get("calendar"), "calendar", source)
    boards_doc = doc.get("boards", [])
    if not isinstance(boards_doc, list):
        raise ConfigError(source, "boards", "expected an array of tables: write [[boards]]")
    boards: list[BoardConfig] = []
    seen_cars: set[str] = set()
    seen_links: set[str] = set()
    for i, table in enumerate(boards_doc):
        where = f"boards[{i}]"
        b = _take(table, BOARD_KEYS, where, source, extra=_BOARD_TABLES)
        _topic_level(b["car"], f"{where}.car", source, "car")
        if b["car"] in seen_cars:
            raise ConfigError(source, f"{where}.car", f"car {b['car']!r} is already served by another board")
        seen_cars.add(b["car"])
        link = LinkKind(b["link"])
        address = b["port"] if link is LinkKind.SERIAL else b["address"]
        if not address:
            need = "port" if link is LinkKind.SERIAL else "address"
            raise ConfigError(source, f"{where}.{need}", f"required for link = {link.value!r}")
        if address in seen_links:
            raise ConfigError(source, where, f"{address} is already used by another board")
        seen_links.add(address)
        key, next_key = _key_bytes(b["key_file"], f"{where}.key_file", source, base_dir) if b["key_file"] else (None, None)
        require_tag = b["require_tag"] if "require_tag" in table else (link is LinkKind.BLE or key is not None)
        if key is not None and not require_tag:  # issue 14: untagged frames would bypass the key entirely
            raise ConfigError(source, f"{where}.require_tag", "must not be false when key_file is set: a keyed "
                              "board's untagged frames are forgeries (remove require_tag)")
        if require_tag and key is None:
            if "require_tag" in table:
                raise ConfigError(source, f"{where}.require_tag", "needs key_file")
            raise ConfigError(source, f"{where}.key_file", "a BLE link is authenticated by default: set key_file "
                              "(liftwatch keys generate), or require_tag = false to accept untagged frames")
        settings = _as_table(table.get("settings", {}), f"{where}.settings", source)
        boards.append(BoardConfig(
            car=b["car"], link=link, address=address, baudrate=b["baudrate"], board_id=b["board_id"],
            key=key, next_key=next_key, require_tag=require_tag, settings=dict(settings),
            analytics=_analytics(_as_table(table.get("analytics", {}), f"{where}.analytics", source),
                                 analytics, f"{where}.analytics", source),
            calendar=_calendar(table.get("calendar"), f"{where}.calendar", source) if "calendar" in table else calendar,
        ))
    return DaemonConfig(
        site=d["site"], pi=pi, state_dir=state_dir, status_interval_s=d["status_interval_s"],
        log_level=d["log_level"], session=session, write_timeout_s=s["write_timeout_s"],
        outbox_path=(base_dir / o["path"]) if o["path"] else state_dir / "outbox.sqlite",
        outbox_budget_bytes=int(o["budget_mb"] * 1024 * 1024), upstream=upstream, analytics=analytics,
        boards=tuple(boards), source=source, status=status, calendar=calendar,
    )


def _calendar(table: Any, where: str, source: str) -> WorkCalendar:
    """A `[calendar]` table (edge_daemon/report/workhours.py); absent = the default week."""
    if table is None:
        return WorkCalendar()
    try:
        return WorkCalendar.from_mapping(_as_table(table, where, source))
    except CalendarError as err:
        raise ConfigError(source, f"{where}.{err.field}", err.reason) from err


def _status(table: Any, source: str, base_dir: Path) -> StatusConfig | None:
    """`[status]` -> StatusConfig, checked now: an exposed page without a token must stop the start,
    not surface later as a log line while the daemon runs without it."""
    t = _take(table, STATUS_KEYS, "status", source)
    if not t["enabled"]:
        return None
    if t["port"] > 65535:
        raise ConfigError(source, "status.port", f"must be a TCP port 0-65535, got {t['port']}")
    if not t["host"]:
        raise ConfigError(source, "status.host", "must not be empty (127.0.0.1 keeps the page on this Pi)")
    try:
        token = load_token((base_dir / t["token_file"]).expanduser()) if t["token_file"] else None
        config = StatusConfig(host=t["host"], port=t["port"], token=token)
        config.check()
    except StatusConfigError as err:
        raise ConfigError(source, "status.token_file", str(err)) from None
    except ValueError as err:  # a NUL in the path
        raise ConfigError(source, "status.token_file", f"cannot read {t['token_file']!r}: {err}") from None
    return config


def _as_table(value: Any, where: str, source: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(source, where, f"expected a table, got {type(value).__name__}")
    return value


def load_config(path: str | Path) -> DaemonConfig:
    """Read and validate a TOML file; `ConfigError` says which key is wrong and why."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(str(p), "", f"cannot read: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(str(p), "", f"not UTF-8: {err}") from err
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(p), "", f"not valid TOML: {err}") from err
    return parse_config(doc, str(p), p.resolve().parent)


# -- documentation -------------------------------------------------------------------------------


def _fmt_default(key: Key) -> str:
    if key.default is REQUIRED:
        return "*required*"
    if isinstance(key.default, bool):
        return f"`{str(key.default).lower()}`"
    if isinstance(key.default, str):
        return f'`"{key.default}"`'
    return f"`{key.default}`"


def _analytics_docs() -> list[tuple[str, Any, str]]:
    """(key, default, comment) of every AnalyticsConfig field, comments read from its source."""
    comments: dict[str, str] = {}
    try:
        for line in inspect.getsource(AnalyticsConfig).splitlines():
            match = re.match(r"\s+(\w+): [^=]+=[^#]*#\s*(.*)$", line)
            if match:
                comments[match.group(1)] = match.group(2).strip()
    except (OSError, TypeError):
        pass
    defaults = AnalyticsConfig()
    return [(f.name, getattr(defaults, f.name), comments.get(f.name, "")) for f in dataclasses.fields(AnalyticsConfig)]


def config_markdown() -> str:
    """docs/config.md, generated from the key tables (tests/test_config.py keeps the file current)."""
    lines = [
        "# Daemon configuration (`liftwatch run --config FILE.toml`)",
        "",
        "<!-- Generated from edge_daemon/config.py by `python -m liftwatch.edge_daemon.config`; do not edit. -->",
        "",
        "TOML. Every key is optional unless marked *required*; unknown keys are errors (a typo must not",
        "silently fall back to a default). Relative paths are taken from the config file's folder.",
        "`liftwatch run` validates the whole file before it opens any port and names the key at fault,",
        "e.g. `site.toml: boards[1].port: required for link = 'serial'`. A complete example:",
        "`docs/liftwatch.example.toml`.",
        "",
    ]
    titles = {
        "daemon": "`[daemon]`",
        "session": "`[session]`: board sessions (all boards)",
        "outbox": "`[outbox]`",
        "upstream": "`[upstream]`",
        "upstream.mqtt": "`[upstream.mqtt]`: a broker (absent = local JSON Lines journal)",
        "status": "`[status]`: the status page and Prometheus `/metrics`",
        "boards": "`[[boards]]`: one table per board (one car each)",
    }
    for section, keys in SECTIONS.items():
        lines += [f"## {titles[section]}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for key in keys:
            doc = key.doc + (f" One of: {', '.join(f'`{c}`' for c in key.choices)}." if key.choices else "")
            if key.minimum is not None:
                doc += f" Minimum {key.minimum:g}."
            lines.append(f"| `{key.name}` | {key.kind.__name__} | {_fmt_default(key)} | {doc} |")
        lines.append("")
        if section == "boards":
            lines += [
                "`[boards.settings]`: settings pushed to the board with CONFIG when its HELLO `config_hash`",
                "differs from the last one it accepted (validated by the board; a refusal shows in",
                "`liftwatch status`). Keys are the firmware's (docs/firmware.md).",
                "",
                "`[boards.analytics]`: per-car overrides of any `[analytics]` key below.",
                "",
                "`[boards.calendar]`: the car's own working calendar, replacing `[calendar]` whole.",
                "",
            ]
    lines += [
        "## `[analytics]`: thresholds for every car (override per car in `[boards.analytics]`)",
        "",
        "| key | default | meaning |",
        "|---|---|---|",
    ]
    for name, default, comment in _analytics_docs():
        shown = "`none`" if default is None else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        lines.append(f"| `{name}` | {shown} | {comment.replace('|', chr(92) + '|')} |")
    lines += [
        "",
        "## `[calendar]`: the site's working hours (reports; override per car in `[boards.calendar]`)",
        "",
        "What `liftwatch report` counts \"half a working day\" and \"3 days\" in (docs/report.md).",
        "",
        "| key | default | meaning |",
        "|---|---|---|",
        "| `mon` ... `sun` | `[\"09:00-12:00\", \"13:00-18:00\"]` Monday to Friday, `[]` Saturday and Sunday "
        "| working periods of the weekday, `HH:MM-HH:MM`, not overlapping; `[]` = a day off |",
        "| `holidays` | `[]` | dates (TOML dates or `YYYY-MM-DD`) with no working hours |",
        "| `workdays` | `[]` | make-up working days (调休), worked with Monday's hours |",
        "| `repair_max_days` | `\"calendar\"` | what \"no repair beyond 3 days\" counts: `calendar` "
        "(3 x 24 h) or `working` (to the same time 3 working days later) |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(config_markdown(), end="")
