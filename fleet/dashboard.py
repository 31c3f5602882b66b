"""The fleet dashboard: cars by risk, open faults and entrapments live, contractors, report links.

A small threaded HTTP server over the fleet store (stdlib only; a district puts it behind its own
reverse proxy with authentication, it binds to loopback by default):

  /                the page (static/dashboard.html + .js + .css; the script renders the JSON below)
  /api/open        faults still open, entrapments first (the page polls it every OPEN_POLL_S)
  /api/overview    cars ranked by the report's risk score and the contractor ranking over the last
                   RISK_WINDOW_DAYS, cached for OVERVIEW_CACHE_S (it computes every car's figures)
  /report?from=YYYY-MM-DD&to=YYYY-MM-DD[&car=..]   the fleet report with the district figures (HTML)

One lock serialises store access (one connection, several request threads); the figures are computed
outside it, so a slow overview never holds up the open-faults poll.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from liftwatch.edge_daemon.report.figures import Period
from liftwatch.edge_daemon.report.fleet import rank_fleet
from liftwatch.edge_daemon.report.records import fault_cases
from liftwatch.edge_daemon.status.server import _SECURITY_HEADERS

from .answers import figures_of, period_messages, render_district_sections
from .store import FleetStore

__all__ = ["Dashboard"]

RISK_WINDOW_DAYS = 30
OVERVIEW_CACHE_S = 60.0  # every car's figures: recomputed at most once a minute
OPEN_LOOKBACK_S = 14 * 86400.0  # a fault raised earlier and never cleared is the car report's business
_STATIC = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8",
           "dashboard.html": "text/html; charset=utf-8"}
# The report is one self-contained page: inline styles and SVG plots, nothing fetched.
_REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


class Dashboard:
    """`start()` serves on host:port in a thread (port 0: any free port, see `url`); `close()` stops."""

    def __init__(self, store: FleetStore, host: str = "127.0.0.1", port: int = 8090, utc_offset_h: float = 8.0) -> None:
        self.store = store
        self.utc_offset_h = utc_offset_h
        self._lock = threading.Lock()
        self._overview: tuple[float, dict[str, Any]] | None = None
        dashboard = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                dashboard._route(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> Dashboard:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fleet dashboard", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- answers ---------------------------------------------------------------------------------

    def open_faults(self, now: float | None = None) -> list[dict[str, Any]]:
        """Faults raised in the last OPEN_LOOKBACK_S and not cleared, entrapments first, then oldest."""
        now = time.time() if now is None else now
        with self._lock:
            events = self.store.facts(None, now - OPEN_LOOKBACK_S, None, kinds=["event"])
            lifts = {lift.car: lift for lift in self.store.lifts()}
        by_car: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for m in events:
            by_car[m["car"]].append(m)
        rows = []
        for car, messages in by_car.items():
            lift = lifts.get(car)
            for case in fault_cases(messages, now):
                if case.open and not case.kit:
                    rows.append({"car": car, "site": messages[0].get("site"), "type": case.type,
                                 "raised_ts": case.raised_ts, "open_s": round(now - case.raised_ts),
                                 "building": lift.building if lift else None,
                                 "rescue_code": lift.rescue_code if lift else None,
                                 "contractor": lift.maintenance_company if lift else None,
                                 "registered": lift is not None})
        rows.sort(key=lambda r: (r["type"] != "entrapment", r["raised_ts"]))
        return rows

    def overview(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        cached = self._overview
        if cached is not None and now - cached[0] < OVERVIEW_CACHE_S:
            return cached[1]
        today = datetime.fromtimestamp(now, timezone(timedelta(hours=self.utc_offset_h))).date()
        period = Period(today - timedelta(days=RISK_WINDOW_DAYS - 1), today, self.utc_offset_h)
        with self._lock:
            messages, lifts = period_messages(self.store, period, None), self.store.lifts()
        district = figures_of(messages, lifts, period)
        cars = [{"car": r.figures.car, "site": r.figures.site, "score": r.score, "band": r.band[0],
                 "band_zh": r.band[1], "entrapments": r.figures.entrapments,
                 "late_responses": r.figures.late_responses, "short_visits": r.figures.short_visits,
                 "registered": r.figures.car not in district.unregistered}
                for r in rank_fleet(district.cars)]
        result = {"period": [period.first.isoformat(), period.last.isoformat()], "cars": cars,
                  "contractors": district.to_json()["contractors"], "unregistered": list(district.unregistered),
                  "generated_ts": now}
        self._overview = (now, result)
        return result

    def report_html(self, first: date, last: date, cars: list[str] | None) -> str | None:
        from liftwatch.edge_daemon.report.html import render_fleet_html

        period = Period(first, last, self.utc_offset_h)
        with self._lock:
            messages, lifts = period_messages(self.store, period, cars), self.store.lifts()
        district = figures_of(messages, lifts, period, cars)
        if not district.cars:
            return None
        return render_fleet_html(district.cars, source_note="数据来源 Source: fleet store.",
                                 extra_sections=render_district_sections(district))

    # -- HTTP ------------------------------------------------------------------------------------

    def _route(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        path = parts.path
        try:
            if path in ("/", "/index.html"):
                self._static(request, "dashboard.html")
            elif path.lstrip("/") in _STATIC:
                self._static(request, path.lstrip("/"))
            elif path == "/api/open":
                self._json(request, {"open": self.open_faults(), "now_ts": time.time()})
            elif path == "/api/overview":
                self._json(request, self.overview())
            elif path == "/report":
                self._report(request, parse_qs(parts.query))
            else:
                self._send(request, HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _report(self, request: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        try:
            first = date.fromisoformat(query["from"][0])
            last = date.fromisoformat(query["to"][0])
            if last < first or (last - first).days > 400:
                raise ValueError
        except (KeyError, ValueError):
            self._send(request, HTTPStatus.BAD_REQUEST, b"from and to: YYYY-MM-DD, at most 400 days apart\n",
                       "text/plain; charset=utf-8")
            return
        page = self.report_html(first, last, query.get("car"))
        if page is None:
            self._send(request, HTTPStatus.NOT_FOUND, b"no facts of these cars in this period\n",
                       "text/plain; charset=utf-8")
            return
        self._send(request, HTTPStatus.OK, page.encode(), "text/html; charset=utf-8", csp=_REPORT_CSP)

    def _static(self, request: BaseHTTPRequestHandler, name: str) -> None:
        body = resources.files("liftwatch.fleet").joinpath("static", name).read_bytes()
        self._send(request, HTTPStatus.OK, body, _STATIC[name])

    def _json(self, request: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode()
        self._send(request, HTTPStatus.OK, body, "application/json; charset=utf-8")

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: HTTPStatus, body: bytes, content_type: str,
              csp: str | None = None) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.send_header("Cache-Control", "no-store")
        for name, value in _SECURITY_HEADERS:
            request.send_header(name, csp if csp is not None and name == "Content-Security-Policy" else value)
        request.end_headers()
        request.wfile.write(body)
