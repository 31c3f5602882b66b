"""The fleet dashboard: its JSON and report routes, and the page in a real headless Chromium (as the
status page is tested): cars by risk, open entrapments first, a new entrapment shown without a
reload, contractor rows, the report link; no console errors under its Content-Security-Policy."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from support.chromium import ARTIFACTS, CHROMIUM, Cdp, launch, problems
from support.fleet import event, visit

from liftwatch.fleet.dashboard import Dashboard
from liftwatch.fleet.store import Fact, Lift, open_store

NOW = time.time()


def lift(car: str, company: str, rescue: str) -> Lift:
    return Lift(car, f"REG-{car}", rescue, "1 Wenhui Rd", f"Block {car[-1]}", company, "PICC", 1800.0, 259200.0,
                2400.0, "2019-06-01")


@pytest.fixture
def dashboard(tmp_path):
    store = open_store(tmp_path / "fleet.sqlite")
    store.replace_registry([lift("gs-a", "Xizi Maintenance", "10001"), lift("gs-b", "Hangzhou Lift Service", "10002")])
    facts = [visit("gs-a", NOW - 5 * 86400, 50), visit("gs-b", NOW - 4 * 86400, 12), visit("gs-c", NOW - 3 * 86400, 45),
             event("gs-a", "entrapment", "raised", NOW - 600),
             event("gs-b", "door_reopen_loop", "raised", NOW - 7200),
             event("gs-b", "door_reopen_loop", "cleared", NOW - 3600, raised_t=NOW - 7200),
             event("gs-c", "stopped_outside_door_zone", "raised", NOW - 1800)]
    store.store_batch([Fact.of(m) for m in facts])
    board = Dashboard(store, port=0).start()
    yield board
    board.close()


def get(url: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def test_the_json_and_report_routes(dashboard):
    status, body, headers = get(dashboard.url + "api/open")
    assert status == 200 and "default-src 'self'" in headers["Content-Security-Policy"]
    open_faults = json.loads(body)["open"]
    assert [(f["car"], f["type"]) for f in open_faults] == [("gs-a", "entrapment"), ("gs-c", "stopped_outside_door_zone")]
    assert open_faults[0]["rescue_code"] == "10001" and open_faults[1]["registered"] is False

    overview = json.loads(get(dashboard.url + "api/overview")[1])
    assert overview["cars"][0]["car"] == "gs-a" and overview["cars"][0]["entrapments"] == 1
    assert {c["company"] for c in overview["contractors"]} >= {"Xizi Maintenance", "Hangzhou Lift Service"}
    assert overview["unregistered"] == ["gs-c"]

    first, last = overview["period"]
    status, page, headers = get(f"{dashboard.url}report?from={first}&to={last}&car=gs-b")
    assert status == 200 and "id='pilot'" in page and "<b>gs-b</b>" in page and "<b>gs-a</b>" not in page
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert get(f"{dashboard.url}report?from={last}&to={first}")[0] == 400
    assert get(f"{dashboard.url}report?from=2001-01-01&to=2001-01-02")[0] == 404
    assert get(dashboard.url + "../etc/passwd")[0] == 404


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package `chromium` not installed (apt-get install -y chromium)")
@pytest.mark.timeout(90)
async def test_the_page_in_chromium(dashboard):
    websockets = pytest.importorskip("websockets", reason="the `websockets` package drives Chromium (dev extra)")
    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="liftwatch-chromium-") as user_dir:
        proc, ws_url = await launch(user_dir)
        try:
            async with websockets.connect(ws_url, max_size=64 * 1024 * 1024) as ws:
                cdp = Cdp(ws)
                try:
                    await _drive(cdp, dashboard)
                finally:
                    cdp.reader.cancel()
                    await asyncio.gather(cdp.reader, return_exceptions=True)
        finally:
            proc.terminate()
            await proc.wait()


async def _drive(cdp: Cdp, dashboard: Dashboard) -> None:
    target = await cdp.call("Target.createTarget", {"url": "about:blank"})
    s = (await cdp.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}))["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        await cdp.call(f"{domain}.enable", {}, s)
    await cdp.call("Emulation.setDeviceMetricsOverride", {"width": 1300, "height": 900, "deviceScaleFactor": 1,
                                                          "mobile": False}, s)
    await cdp.call("Page.navigate", {"url": dashboard.url}, s)
    await cdp.wait_for(s, "document.querySelectorAll('#risk-rows tr').length === 3")
    await cdp.wait_for(s, "document.querySelectorAll('#open-rows tr').length === 2")
    assert await cdp.eval(s, "document.getElementById('conn').textContent") == "live"
    first_open = await cdp.eval(s, "[document.querySelector('#open-rows tr').dataset.car,"
                                   " document.querySelector('#open-rows tr').dataset.fault]")
    assert first_open == ["gs-a", "entrapment"]
    assert await cdp.eval(s, "document.querySelector('#risk-rows tr').dataset.car") == "gs-a"
    unregistered = await cdp.eval(s, "[...document.querySelectorAll('#risk-rows tr.unregistered')].map(r => r.dataset.car)")
    assert unregistered == ["gs-c"]
    companies = await cdp.eval(s, "[...document.querySelectorAll('#contractor-rows tr')].map(r => r.dataset.company)")
    assert set(companies) == {"Xizi Maintenance", "Hangzhou Lift Service", "未登记 unregistered"}

    # A new entrapment reaches the page without a reload, ahead of the older faults' rows.
    version = int(await cdp.eval(s, "document.body.dataset.openVersion"))
    dashboard.store.store_batch([Fact.of(event("gs-b", "entrapment", "raised", time.time()))])
    await cdp.wait_for(s, "document.querySelector('#open-rows tr[data-car=\"gs-b\"][data-fault=\"entrapment\"]') !== null",
                       timeout_s=10)
    assert int(await cdp.eval(s, "document.body.dataset.openVersion")) > version
    rows = await cdp.eval(s, "[...document.querySelectorAll('#open-rows tr')].map(r => r.dataset.fault)")
    assert rows == ["entrapment", "entrapment", "stopped_outside_door_zone"]
    await cdp.screenshot(s, ARTIFACTS / "fleet_dashboard.png")

    href = await cdp.eval(s, "document.getElementById('fleet-report').href")
    assert "/report?from=" in href
    await cdp.call("Page.navigate", {"url": href}, s)
    await cdp.wait_for(s, "document.getElementById('pilot') !== null", timeout_s=30)
    assert problems(cdp.events) == []
