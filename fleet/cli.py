"""`liftwatch fleet ...`: the district's service beside the daemons (docs/fleet.md).

  ingest     subscribe (shared subscription) and store every Pi's facts; run several for load
  registry   import the lift registry (TOML or CSV); list it
  status     what the store holds: facts per kind, quarantined, unregistered cars
  escalate   push entrapment / alarm_button facts to the rescue centre's webhook
  report     the fleet-wide report (HTML/PDF) and the insurance pilot's figures for cars and a period
  serve      the dashboard (and, with --webhook, the escalator) over HTTP

The store is `--store` (a SQLite file, or postgresql://user@host/db), else $LIFTWATCH_FLEET_STORE.
Exit 0 on success, 1 with one line on stderr when the work is refused (bad registry, store
unreachable), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from liftwatch.edge_daemon.report_cli import _FORMAT_OF_SUFFIX, _date

__all__ = ["register"]

_STORE_ENV = "LIFTWATCH_FLEET_STORE"
_PASSWORD_ENV = "LIFTWATCH_FLEET_MQTT_PASSWORD"  # never on the command line, where `ps` shows it
_WEBHOOK_TOKEN_ENV = "LIFTWATCH_FLEET_WEBHOOK_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fleet", help="the fleet service: every Pi's facts gathered once (docs/fleet.md)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)

    ing = sub.add_parser("ingest", help="subscribe to the broker and store facts (blocks; SIGTERM stops)")
    _store_arg(ing)
    _broker_args(ing)
    ing.add_argument("--client-id", default="liftwatch-fleet-1",
                     help="stable MQTT client id; one per ingest process (its session keeps unacked messages)")
    ing.add_argument("--group", default="",
                     help="shared subscription group: processes of one group split the messages; only with a broker "
                          "that keeps shared subscriptions across its restarts, e.g. EMQX (default: none, a plain "
                          "subscription: Mosquitto 2.0 loses a group's messages around its restart, docs/fleet.md)")
    ing.add_argument("--retire", action="store_true",
                     help="drain this client id's session, then end it and exit: for a process leaving the group for "
                          "good (Mosquitto keeps routing the group's messages to an offline member's session)")
    ing.set_defaults(func=_cmd_ingest)

    reg = sub.add_parser("registry", help="the lift registry")
    reg_sub = reg.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    imp = reg_sub.add_parser("import", help="replace the registry with a TOML or CSV file (all or nothing)")
    imp.add_argument("file", type=Path, help="registry file (.toml with [[lift]] tables, else CSV with a header)")
    _store_arg(imp)
    imp.set_defaults(func=_cmd_registry_import)
    ls = reg_sub.add_parser("list", help="the registry as JSON lines")
    _store_arg(ls)
    ls.set_defaults(func=_cmd_registry_list)

    esc = sub.add_parser("escalate", help="push entrapment / alarm_button facts to a webhook (blocks; SIGTERM stops)")
    _store_arg(esc)
    _webhook_args(esc, required=True)
    esc.set_defaults(func=_cmd_escalate)

    rep = sub.add_parser("report", help="fleet-wide report (HTML/PDF) and district figures (JSON) for cars and a period")
    _store_arg(rep)
    for flag, dest in (("--from", "first"), ("--to", "last")):
        rep.add_argument(flag, dest=dest, type=_date, required=True, metavar="YYYY-MM-DD",
                         help=f"{dest} local day of the period (inclusive)")
    rep.add_argument("--car", action="append", default=None, help="a car to include (repeatable; default all)")
    rep.add_argument("--out", type=Path, default=None, help="report file, .html or .pdf")
    rep.add_argument("--json", action="store_true", help="print the district figures as JSON on stdout")
    rep.add_argument("--utc-offset-h", type=float, default=8.0, help="local time zone of the days (default 8, CST)")
    rep.set_defaults(func=_cmd_report)

    srv = sub.add_parser("serve", help="the dashboard over HTTP (blocks; SIGTERM stops); with --webhook, escalation too")
    _store_arg(srv)
    srv.add_argument("--host", default="127.0.0.1",
                     help="listen address; loopback only: publish it through a reverse proxy with authentication")
    srv.add_argument("--port", type=int, default=8090, help="listen port (default 8090)")
    _webhook_args(srv, required=False)
    srv.set_defaults(func=_cmd_serve)

    st = sub.add_parser("status", help="facts per kind, quarantined messages, unregistered cars (JSON)")
    _store_arg(st)
    st.set_defaults(func=_cmd_status)


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=os.environ.get(_STORE_ENV),
                   help=f"SQLite file or postgresql:// URL (default ${_STORE_ENV})")


def _broker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", default="localhost:1883", metavar="HOST:PORT", help="MQTT broker (default localhost:1883)")
    p.add_argument("--tls-ca", type=Path, default=None,
                   help="CA file: connect with TLS and verify the broker (required for a broker not on this host)")
    p.add_argument("--tls-cert", type=Path, default=None, help="client certificate (with --tls-key)")
    p.add_argument("--tls-key", type=Path, default=None, help="client key")
    p.add_argument("--username", default=None, help=f"MQTT user; the password comes from ${_PASSWORD_ENV}")


def _webhook_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--webhook", required=required, metavar="URL",
                   help=f"the rescue centre's alarm endpoint (https://...); bearer token from ${_WEBHOOK_TOKEN_ENV}")
    p.add_argument("--alarm-max-age-min", type=float, default=60.0,
                   help="an alarm first seen later than this after its raise is logged stale, not pushed (default 60)")


def _escalator(args: argparse.Namespace, store: Any) -> Any:
    from .escalation import Escalator, WebhookConfig

    if not args.webhook.startswith(("https://", "http://")):
        _usage(f"--webhook expects an http(s) URL, got {args.webhook!r}")
    return Escalator(WebhookConfig(args.webhook, token=os.environ.get(_WEBHOOK_TOKEN_ENV),
                                   max_age_s=60.0 * args.alarm_max_age_min), store)


def _open(args: argparse.Namespace) -> Any:
    from .store import open_store

    if not args.store:
        _usage(f"no store: give --store or set ${_STORE_ENV}")
    return open_store(args.store)


def _usage(message: str) -> None:
    print(f"liftwatch fleet: {message}", file=sys.stderr)
    raise SystemExit(2)


def _ingest_config(args: argparse.Namespace) -> Any:
    from liftwatch.edge_daemon.hosts import is_loopback_host
    from liftwatch.edge_daemon.upstream import TlsConfig

    from .ingest import IngestConfig

    host, _, port_text = args.broker.rpartition(":")
    if not host or not port_text.isdigit():
        _usage(f"--broker expects HOST:PORT, got {args.broker!r}")
    tls = None
    if args.tls_ca is not None or args.tls_cert is not None:
        tls = TlsConfig(ca_file=str(args.tls_ca) if args.tls_ca else None,
                        client_cert=str(args.tls_cert) if args.tls_cert else None,
                        client_key=str(args.tls_key) if args.tls_key else None)
    elif not is_loopback_host(host):
        _usage(f"plain TCP only to a broker on this host; give --tls-ca for {host}")
    return IngestConfig(host=host, port=int(port_text), tls=tls, username=args.username,
                        password=os.environ.get(_PASSWORD_ENV), client_id=args.client_id,
                        group=args.group or None)


def _stop_on_signals(stop: Any) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop())


def _cmd_ingest(args: argparse.Namespace) -> int:
    from .ingest import Ingest

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = _ingest_config(args)
    ingest = Ingest(config, _open(args))
    _stop_on_signals(ingest.stop)
    if args.retire:
        ingest.retire()
    else:
        ingest.run()
    print(json.dumps(ingest.counters.to_dict()), file=sys.stderr)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from liftwatch.edge_daemon.report.figures import Period
    from liftwatch.edge_daemon.report.writer import ReportError, write_fleet_figures

    from .answers import district_figures, render_district_sections

    fmt = None
    if args.out is not None:
        fmt = _FORMAT_OF_SUFFIX.get(args.out.suffix.lower())
        if fmt is None:
            _usage(f"--out must end in .html or .pdf, got {args.out.name!r}")
    elif not args.json:
        _usage("give --out FILE (.html/.pdf) and/or --json")
    try:
        period = Period(args.first, args.last, args.utc_offset_h)
    except ValueError as err:
        _usage(str(err))
    store = _open(args)
    district = district_figures(store, period, args.car)
    if not district.cars:
        asked = ", ".join(args.car) if args.car else "any car"
        raise ReportError(f"no facts of {asked} between {args.first} and {args.last} in {store.where}")
    if args.out is not None:
        note = f"数据来源 Source: fleet store {store.where}; {len(district.cars)} cars."
        write_fleet_figures(district.cars, args.out, fmt, note, render_district_sections(district))
    if args.json:
        print(json.dumps(district.to_json(), ensure_ascii=False, indent=1))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from liftwatch.edge_daemon.hosts import is_loopback_host

    from .dashboard import Dashboard

    if not is_loopback_host(args.host):
        _usage(f"--host {args.host}: the dashboard has no login of its own; serve it on loopback behind a proxy")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    dashboard = Dashboard(_open(args), args.host, args.port).start()
    print(f"fleet dashboard on {dashboard.url}", file=sys.stderr)
    stop = threading.Event()
    _stop_on_signals(stop.set)
    escalation = None
    if args.webhook:
        escalation = threading.Thread(target=_escalator(args, _open(args)).run, args=(stop,), name="fleet escalation")
        escalation.start()
    stop.wait()
    dashboard.close()
    if escalation is not None:
        escalation.join()
    return 0


def _cmd_escalate(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    _run_until_signal(_escalator(args, _open(args)))
    return 0


def _cmd_registry_import(args: argparse.Namespace) -> int:
    from .registry import load_registry

    if not args.file.is_file():
        _usage(f"{args.file}: no such registry file")
    lifts = load_registry(args.file)  # refused before the store is touched
    store = _open(args)
    store.replace_registry(lifts)
    unregistered = store.unregistered_cars()
    print(f"registry: {len(lifts)} lifts imported; {len(unregistered)} car(s) with facts but not registered"
          + (f": {', '.join(sorted(unregistered)[:10])}" if unregistered else ""))
    return 0


def _cmd_registry_list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    for lift in _open(args).lifts():
        print(json.dumps(asdict(lift), ensure_ascii=False))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    store = _open(args)
    print(json.dumps({"counts": store.counts(), "unregistered_cars": store.unregistered_cars()},
                     ensure_ascii=False, indent=1))
    return 0


def _run_until_signal(worker: Any) -> None:
    """Run `worker.run(stop_event)` until SIGTERM/SIGINT."""
    stop = threading.Event()
    _stop_on_signals(stop.set)
    worker.run(stop)
