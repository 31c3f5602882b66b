"""`liftwatch run` with its operator plane: the real console script, a board on a real pty, the
status page and /metrics over HTTP; `[status]` and `[upstream.mqtt] encoding` in the config."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.board import ALARM, HELLO, STATE, PtyBoard, frames
from support.daemon import LIFTWATCH, LiftwatchRun, http_get, liftwatch_run, wait_until

from liftwatch.edge_daemon.analytics.engine import CarAnalytics
from liftwatch.edge_daemon.config import ConfigError, load_config
from liftwatch.edge_daemon.pipeline import CarPipeline
from liftwatch.edge_daemon.observations import Observation
from liftwatch.edge_daemon.session import BoardSession, LinkMode, SessionConfig
from liftwatch.edge_daemon.upstream_codec import PayloadEncoding


def write_config(tmp_path: Path, port: str, status: str) -> Path:
    cfg = tmp_path / "site.toml"
    cfg.write_text(f"""
[daemon]
site = "wired-site"
pi = "pi-wired"
state_dir = "state"
[session]
heartbeat_timeout_s = 3.0
{status}
[[boards]]
car = "lift-a"
port = "{port}"
""")
    return cfg


async def run_daemon(tmp_path: Path, status: str, check) -> None:
    """`liftwatch run` against a PtyBoard until it ACKs an alarm event, then `check(run)`, then SIGTERM."""
    board = PtyBoard(str(tmp_path / "ttyA"), "board-a")
    async with liftwatch_run(write_config(tmp_path, board.link_path, status), board) as run:
        await check(run)
        assert await run.terminate() == 0


@pytest.mark.timeout(120)
async def test_run_serves_status_page_and_metrics(tmp_path):
    port = 0

    async def check(run: LiftwatchRun) -> None:
        nonlocal port
        assert await wait_until(lambda: run.status_port() is not None, 10.0), "".join(run.stderr)
        port = run.status_port()
        deadline = time.monotonic() + 10
        car: dict = {}
        while time.monotonic() < deadline:  # the page refreshes board health once a second
            status, body = await http_get(port, "/api/snapshot")
            assert status == 200
            snap = json.loads(body)
            car = next(c for c in snap["cars"] if c["car"] == "lift-a")
            # The journal publisher reports "ready" on its first pass, which may come after the board.
            if car["board"].get("online") and car["board_events"] and snap["daemon"]["broker"] == "ready":
                break
            await asyncio.sleep(0.2)
        assert snap["site"] == "wired-site" and snap["daemon"]["broker"] == "ready"
        assert car["board"]["online"] is True
        # The alarm EVENT reached the page through the pipeline's observer, not the status refresh.
        assert [e["event_id"] for e in car["board_events"]] == [3]
        status, body = await http_get(port, "/metrics")
        assert status == 200
        fams = {f.name: f.samples for f in text_string_to_metric_families(body.decode())}
        frames = [s.value for s in fams["liftwatch_board_frames"] if s.labels.get("car") == "lift-a"]
        assert frames and frames[0] >= 2
        status, body = await http_get(port, "/healthz")
        assert status == 200

    # port 0: the daemon binds any free port and logs it (a port picked here first could be taken
    # by another process before the daemon binds it)
    await run_daemon(tmp_path, '[status]\nhost = "127.0.0.1"\nport = 0\n', check)
    with pytest.raises(OSError):  # closed with the daemon
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


@pytest.mark.timeout(120)
async def test_status_disabled_serves_nothing(tmp_path):
    # The port is held (bound, not listening) for the whole test: nobody else can serve on it, and a
    # daemon that wrongly started its page would fail to bind it.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]

        async def check(run: LiftwatchRun) -> None:
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            assert run.status_port() is None

        await run_daemon(tmp_path, f"[status]\nenabled = false\nport = {port}\n", check)
    assert json.loads((tmp_path / "state" / "status.json").read_text())["boards"][0]["board"] == "board-a"


def test_port_in_use_stops_the_start_with_the_reason(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = write_config(tmp_path, str(tmp_path / "ttyNone"), f"[status]\nport = {port}\n")
        r = subprocess.run(LIFTWATCH + ["run", "--config", str(cfg)], check=False, capture_output=True, text=True,
                           timeout=30)
    assert r.returncode == 1
    assert "status page failed" in r.stderr and "set [status] port" in r.stderr and "Traceback" not in r.stderr


def test_exposed_page_needs_a_token_file(tmp_path):
    cfg = write_config(tmp_path, "/dev/ttyUSB7", '[status]\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert err.value.key == "status.token_file" and "needs a token" in err.value.reason

    token = tmp_path / "status.token"
    token.write_text("short\n")
    token.chmod(0o600)
    cfg.write_text(cfg.read_text().replace('"0.0.0.0"', '"0.0.0.0"\ntoken_file = "status.token"'))
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert err.value.key == "status.token_file" and "16 characters" in err.value.reason
    token.write_text("0123456789abcdef0123\n")
    status = load_config(cfg).status
    assert status is not None and status.host == "0.0.0.0" and status.token == "0123456789abcdef0123"
    token.unlink()
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert err.value.key == "status.token_file" and "cannot read" in err.value.reason


def test_status_defaults_and_errors(tmp_path):
    status = load_config(write_config(tmp_path, "/dev/ttyUSB7", "")).status
    assert status is not None and (status.host, status.port, status.token) == ("127.0.0.1", 8080, None)
    assert load_config(write_config(tmp_path, "/dev/ttyUSB7", "[status]\nenabled = false\n")).status is None
    for body, key in (("port = 70000", "status.port"), ("port = -1", "status.port"),
                      ('enabled = "yes"', "status.enabled"), ("hots = \"::1\"", "status.hots")):
        with pytest.raises(ConfigError) as err:
            load_config(write_config(tmp_path, "/dev/ttyUSB7", f"[status]\n{body}\n"))
        assert err.value.key == key


def test_mqtt_encoding_key(tmp_path):
    mqtt = '[upstream.mqtt]\nhost = "127.0.0.1"\ntls = false\n'
    cfg = load_config(write_config(tmp_path, "/dev/ttyUSB7", mqtt))
    assert cfg.upstream.mqtt.encoding is PayloadEncoding.DEFLATE
    cfg = load_config(write_config(tmp_path, "/dev/ttyUSB7", mqtt + 'encoding = "json"\n'))
    assert cfg.upstream.mqtt.encoding is PayloadEncoding.JSON
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, "/dev/ttyUSB7", mqtt + 'encoding = "gzip"\n'))
    assert err.value.key == "upstream.mqtt.encoding" and "deflate, json" in err.value.reason


class ListStore:
    """A `MessageStore` that keeps what it was given."""

    def __init__(self) -> None:
        self.messages: list = []

    async def put_many(self, messages) -> None:
        self.messages += messages


async def test_pipeline_observer_sees_observations_before_analytics_and_every_output():
    seen: list[tuple[str, object]] = []
    store = ListStore()
    analytics = CarAnalytics("car-1")
    feed = analytics.feed

    def spy(obs: Observation):
        seen.append(("analytics", obs))
        return feed(obs)

    analytics.feed = spy
    pipe = CarPipeline("s", "car-1", BoardSession(SessionConfig(), LinkMode.LIVE), analytics, store,
                       observer=lambda car, item: seen.append((car, item)))
    await pipe.frames(frames(HELLO, STATE, ALARM), 1000.0)
    fed = [item for who, item in seen if who == "analytics"]
    observed = [item for who, item in seen if who == "car-1"]
    assert fed and all(seen[seen.index(("analytics", obs)) - 1] == ("car-1", obs) for obs in fed)
    outputs = [item for item in observed if not isinstance(item, Observation)]
    assert [o.kind for o in outputs] == [m["kind"] for m in store.messages]
    assert "event" in [o.kind for o in outputs]
