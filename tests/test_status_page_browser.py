"""The status page in a real headless Chromium, driven over the DevTools protocol.

The scenario of liftwatch.edge_daemon.status.preview is fed step by step into the LiveState the
server reads, as the daemon would feed it; after each step the page must show that version
(pushed over SSE, no reload). At the entrapment the trapped car must lead the fleet view with
its fault shown; the car page must list the fault and draw the vibration trace. Screenshots go
to artifacts/ (gitignored) for a person to look at. No console errors or CSP violations allowed.

Needs Debian's `chromium` (apt-get install -y chromium); skipped, saying so, when it is missing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile

import pytest
from liftwatch.edge_daemon.analytics.leveling import LevelingResult, LevelingStatus
from liftwatch.edge_daemon.analytics.ride_quality import RideQuality
from liftwatch.edge_daemon.analytics.trips import Trip
from liftwatch.edge_daemon.status.preview import FleetScenario, play
from liftwatch.edge_daemon.status.server import StatusConfig, StatusServer
from liftwatch.edge_daemon.status.state import LiveState
from support.chromium import ARTIFACTS, CHROMIUM, Cdp, launch, problems

websockets = pytest.importorskip("websockets", reason="the `websockets` package drives Chromium (dev extra)")

# The operator's browser is in another zone than the site (UTC+8): the page must still show site time.
BROWSER_TZ = "America/New_York"

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian package `chromium` not installed (apt-get install -y chromium)"),
    pytest.mark.timeout(90),
]


async def test_page_follows_a_scenario_live_and_shows_the_raised_fault():
    ARTIFACTS.mkdir(exist_ok=True)
    scenario = FleetScenario()
    steps = list(scenario.steps())
    live = LiveState(site="sh-pudong-garden-3")
    scenario.setup(live)
    play(live, steps[0])
    live.daemon_status({"broker": "ready", "outbox": {"pending": 0}})
    server = StatusServer(live, StatusConfig(port=0, sse_min_interval_s=0.05))
    await server.start()
    with tempfile.TemporaryDirectory(prefix="liftwatch-chromium-") as user_dir:
        proc, ws_url = await launch(user_dir, BROWSER_TZ)
        try:
            async with websockets.connect(ws_url, max_size=64 * 1024 * 1024) as ws:
                cdp = Cdp(ws)
                try:
                    await _drive(cdp, live, steps, server)
                finally:
                    cdp.reader.cancel()
                    await asyncio.gather(cdp.reader, return_exceptions=True)
        finally:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            await server.close()
    assert (ARTIFACTS / "status_page_fleet.png").stat().st_size > 10_000


async def _drive(cdp: Cdp, live: LiveState, steps: list, server: StatusServer) -> None:
    """Load the page, feed the scenario, check what it shows; screenshots into artifacts/."""
    target = await cdp.call("Target.createTarget", {"url": "about:blank"})
    s = (await cdp.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}))["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        await cdp.call(f"{domain}.enable", {}, s)
    await cdp.call("Emulation.setDeviceMetricsOverride",
                   {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, s)
    await cdp.call("Page.navigate", {"url": server.url}, s)
    await cdp.wait_for(s, "document.querySelectorAll('.card[data-car]').length === 3")
    await cdp.wait_for(s, "document.getElementById('conn').textContent === 'live'")

    # Feed the afternoon; every step must reach the page over SSE.
    for step in steps[1:]:
        play(live, step)
        await cdp.wait_for(s, f"Number(document.body.dataset.version) >= {live.version}")
        if step.caption == "tower-a-lift1: passenger trapped":
            break
    first = await cdp.eval(s, "document.querySelector('.card[data-car]').dataset.car")
    assert first == "tower-a-lift1"
    faults = await cdp.eval(s, "[...document.querySelectorAll('.card[data-car=\"tower-a-lift1\"] [data-fault]')]"
                               ".map(e => e.dataset.fault)")
    assert faults == ["entrapment", "stopped_outside_door_zone"]
    level = await cdp.eval(s, "document.querySelector('.card[data-car=\"tower-a-lift1\"] .badge').dataset.level")
    assert level == "critical"
    text = await cdp.eval(s, "document.querySelector('.card[data-car=\"tower-a-lift1\"]').innerText")
    assert "Entrapment" in text and "between floors" in text
    await cdp.screenshot(s, ARTIFACTS / "status_page_fleet.png")
    # One zone, labelled: the site's (the cars' day_utc_offset_h), not the browser's.
    snap = live.snapshot()
    site_time = dt.datetime.fromtimestamp(snap["data_ts"], dt.timezone(dt.timedelta(hours=snap["utc_offset_h"])))
    footer = await cdp.eval(s, "document.getElementById('data-time').textContent")
    assert f"data up to {site_time:%Y-%m-%d %H:%M:%S}" in footer and "site time (UTC+8)" in footer, footer

    # The car page: the fault in the table, the latest trip's trace drawn on the canvas.
    await cdp.eval(s, "location.hash = 'car=tower-a-lift1'")
    await cdp.wait_for(s, "!document.getElementById('car').hidden")
    await cdp.wait_for(s, "document.getElementById('trace-canvas').dataset.drawn === 'trace'")
    rows = await cdp.eval(s, "[...document.querySelectorAll('#p-faults tr[data-fault]')].map(e => e.dataset.fault)")
    assert rows == ["entrapment", "stopped_outside_door_zone"]
    painted = await cdp.eval(s, """(() => { const c = document.getElementById('trace-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let blue = 0; for (let i = 0; i < d.length; i += 4) if (d[i+2] > 150 && d[i] < 80) blue++;
        return blue; })()""")
    assert painted > 500  # the weighted-z line is really there
    daily = await cdp.eval(s, "document.getElementById('p-daily').innerText")
    assert "2026-11-24" in daily and "806" in daily  # yesterday's trips of tower-a-lift1
    await cdp.screenshot(s, ARTIFACTS / "status_page_car.png")

    # Rescue: the fault leaves the open list without a reload.
    for step in steps[steps.index(next(x for x in steps if x.caption == "tower-a-lift1: passenger trapped")) + 1:]:
        play(live, step)
    await cdp.wait_for(s, f"Number(document.body.dataset.version) >= {live.version}")
    assert await cdp.eval(s, "document.querySelectorAll('#p-faults tr[data-fault]').length") == 0
    cleared = await cdp.eval(s, "document.getElementById('p-history').innerText")
    assert "Entrapment" in cleared

    # Trips without vibration figures say why, not "— — — —".
    last = live.snapshot()["data_ts"]
    for i, (rq, floors) in enumerate(((None, 3), (RideQuality(None, None, None, None, None, None, 0.5, 0.8), 1))):
        start = last + 60 * (i + 1)
        live.apply("tower-a-lift1", Trip("tower-a-lift1", start, start + 8, "up", floors, None, None, 1.0, 3.0, rq,
                                         LevelingResult(start + 8, LevelingStatus.LEVEL, 1.0)))
    await cdp.wait_for(s, f"Number(document.body.dataset.version) >= {live.version}")
    trips = await cdp.eval(s, "document.getElementById('p-trips').innerText")
    assert "no vibration data (lost on the link)" in trips and "one-floor trip" in trips, trips
    assert problems(cdp.events) == []
