"""The fleet service under a district's load: many Pis through Mosquitto into one ingest process.

    python benchmarks/fleet.py [--json] [--pis 50] [--cars-per-pi 10] [--msgs-per-car 40] [--no-postgres]

For each store (SQLite, then PostgreSQL on a throwaway cluster when Debian's postgresql is installed):

1. Rate: `--pis` simulated Pis (one MQTT v5 client each, QoS 1, DEFLATE payloads as the daemon sends
   them) publish `--msgs-per-car` facts for each of their cars, plus 5 % of them again (re-sends),
   into the persistent session of one `liftwatch fleet ingest` process that is not running; then the
   process starts and drains the backlog. `ingest_msgs_per_s` = messages received / drain time
   (process start to the last fact committed), one ingest process (one core).
2. Faults: the same again, published while the ingest runs, with faults injected: the ingest SIGKILLed
   and restarted, the broker restarted (SIGTERM, persistence on), and, for SQLite as root, the disk full
   (a small tmpfs filled with ballast for 2 s: commits fail, nothing is acknowledged, then it recovers).
   `lost` = published ids not in the store; `stored_duplicates` = rows beyond one per published id.
3. Reports: a year of facts for `--report-cars` cars (daily records, 20 trips a day, visits, faults)
   stored directly, then the district figures of all of them for the year: `report_s_per_car_year`.

The last line with --json is one object: per store under "sqlite" and "postgres", and SQLite's
figures (the default store) again at the top level.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from liftwatch.broker import Mosquitto, Subscriber
from liftwatch.edge_daemon.envelope import encode_message, message_id, utc_iso
from liftwatch.edge_daemon.report.figures import Period
from liftwatch.edge_daemon.upstream_codec import PayloadEncoding, encode_payload
from liftwatch.fleet.answers import district_figures
from liftwatch.fleet.store import Fact, open_store

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support.postgres import PostgresCluster, postgres_bindir  # noqa: E402 - the tests' throwaway cluster

TEMPLATES = {}
for _line in (ROOT / "protocol/upstream/deflate-dict-v1.jsonl").read_text().splitlines():
    _m = json.loads(_line)
    TEMPLATES[_m["kind"] + ("-" + _m["state"] if "state" in _m else "")] = _m
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def fact(template: str, site: str, car: str, t: float, key: str, **fields: Any) -> dict[str, Any]:
    """A schema-valid message of the dictionary's kind, moved to `car` and time `t`."""
    m = dict(TEMPLATES[template])
    m.update(id=message_id(m["kind"], site, car, key), site=site, car=car, board=f"b-{car}", ts=utc_iso(t))
    for name in ("start_ts", "event_ts"):
        if name in m:
            m[name] = utc_iso(t)
    if "end_ts" in m:
        m["end_ts"] = utc_iso(t + float(m.get("duration_s") or 60))
    if "raised_ts" in m:
        m["raised_ts"] = utc_iso(t - float(m["duration_s"]))
    m.update(fields)
    return m


def car_facts(site: str, car: str, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` facts of one car: mostly trips, some faults raised and cleared, a visit."""
    rng = random.Random(seed)
    out = []
    t = T0 + rng.uniform(0, 3600)
    for i in range(n):
        t += rng.uniform(30, 600)
        kind = "trip" if i % 10 else rng.choice(("event-raised", "event-cleared", "maintenance"))
        out.append(fact(kind, site, car, t, f"{kind}/{i}/{seed}"))
    return out


class Pi:
    """One simulated Pi: its own MQTT client, publishing its cars' facts with QoS 1."""

    def __init__(self, broker: Mosquitto, name: str) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(64)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 1.0)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, messages: list[dict[str, Any]]) -> None:
        """Publish all, waiting for every PUBACK (re-publishing what a broker restart cut off)."""
        pending = []
        for m in messages:
            payload, _ = encode_payload(encode_message(m), PayloadEncoding.DEFLATE)
            pending.append((f"liftwatch/{m['site']}/{m['car']}/{m['kind']}", payload))
        while pending:
            infos = [(p, self.client.publish(*p, qos=1)) for p in pending]
            pending = []
            deadline = time.monotonic() + 20.0  # for the whole round: a broker restart strands a few
            for p, info in infos:
                try:
                    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                    published = info.is_published()
                except (RuntimeError, ValueError):  # published while the broker was away
                    published = False
                if not published:
                    pending.append(p)  # published again: the store counts the copy as a duplicate
            if pending:
                time.sleep(0.5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class IngestProcess:
    """`liftwatch fleet ingest` as a district runs it; stderr drained in a thread."""

    def __init__(self, store_url: str, broker: Mosquitto, client_id: str, group: str) -> None:
        self.cmd = [sys.executable, "-m", "liftwatch", "fleet", "ingest", "--store", store_url, "--broker",
                    f"{broker.host}:{broker.port}", "--client-id", client_id, "--group", group]
        self.proc: subprocess.Popen[str] | None = None
        self.counters: dict[str, int] = {}  # summed over the runs that ended cleanly (a SIGKILL prints none)

    def start(self) -> float:
        """Start and return the time it subscribed (Python's start-up is not the ingest's rate)."""
        self.proc = subprocess.Popen(self.cmd, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "subscribed to" in line:
                break
        else:
            raise RuntimeError(f"ingest exited with {self.proc.wait()} before subscribing")
        subscribed = time.monotonic()
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        return subscribed

    def cpu_s(self) -> float:
        """CPU seconds the running ingest process has used (user + system): its rate per CPU-second
        does not depend on what else the machine runs, its wall-clock rate does."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("{"):
                for name, n in json.loads(line).items():
                    self.counters[name] = self.counters.get(name, 0) + n

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
            time.sleep(0.1)  # the drain thread reads the counters line
            self.proc = None


def wait_stored(store: Any, kinds: set[str], want: int, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        counts = store.counts()
        if sum(counts.get(k, 0) for k in kinds) >= want:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"stored {counts} of {want} within {timeout_s} s")
        time.sleep(0.05)


def publish_all(pis: list[Pi], batches: list[list[dict[str, Any]]]) -> None:
    threads = [threading.Thread(target=pi.publish, args=(b,)) for pi, b in zip(pis, batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def pi_batches(args: argparse.Namespace, seed: int, rng: random.Random) -> tuple[list[list[dict]], set[str], int]:
    """Per Pi: its cars' facts plus 5 % re-sent; the unique ids; the number of re-sends."""
    batches, ids, resent = [], set(), 0
    for p in range(args.pis):
        site = f"hz-gs-{p:03d}"
        mine = []
        for c in range(args.cars_per_pi):
            mine += car_facts(site, f"car-{p:03d}-{c:02d}", args.msgs_per_car, seed * 100_000 + p * 100 + c)
        ids |= {m["id"] for m in mine}
        again = rng.sample(mine, len(mine) // 20)
        resent += len(again)
        batches.append(mine + again)
    return batches, ids, resent


def run_store(args: argparse.Namespace, store_url: str, workdir: Path, tmpfs: Path | None) -> dict[str, Any]:
    rng = random.Random(args.seed)
    broker = Mosquitto(workdir / "broker")
    broker.start()
    store = open_store(store_url)
    kinds = {"trip", "event", "maintenance"}
    try:
        ingest = IngestProcess(store_url, broker, "bench-ingest", args.group)
        ingest.start()  # the session and its subscription exist from now on
        ingest.stop()
        pis = [Pi(broker, f"pi-{p:03d}") for p in range(args.pis)]

        # 1. rate: drain a backlog
        batches, ids_rate, resent_rate = pi_batches(args, 1, rng)
        publish_all(pis, batches)
        started = ingest.start()
        cpu_started = ingest.cpu_s()
        done = wait_stored(store, kinds, len(ids_rate), 300)
        cpu_used = ingest.cpu_s() - cpu_started
        received = len(ids_rate) + resent_rate
        rate = received / (done - started)
        ingest.stop()

        # 2. faults while publishing
        batches, ids_fault, resent_fault = pi_batches(args, 2, rng)
        faults: dict[str, int] = {}
        ingest.counters.clear()
        # An independent witness: a plain (not shared) persistent subscription of its own. A fact it
        # saw but the store lacks was lost by the fleet service; one it never saw, by the broker.
        witness = Subscriber(broker, client_id="bench-witness").start()
        ingest.start()
        publisher = threading.Thread(target=publish_all, args=(pis, batches))
        publisher.start()
        time.sleep(0.3)
        ingest.stop(signal.SIGKILL)
        faults["ingest_sigkill"] = 1
        time.sleep(0.3)
        ingest.start()
        if tmpfs is not None:
            ballast = tmpfs / "ballast"
            _fill(ballast)
            time.sleep(2.0)
            ballast.unlink()
            faults["disk_full"] = 1
        broker.stop()
        time.sleep(0.5)
        broker.start()
        faults["broker_restart"] = 1
        publisher.join()
        want = len(ids_rate) + len(ids_fault)
        try:
            wait_stored(store, kinds, want, 120)
        except RuntimeError as err:  # report the loss rather than end the run
            print(f"fleet benchmark: {err}", file=sys.stderr)
        time.sleep(1.0)  # anything still in flight lands (it would show as a duplicate row if it could)
        ingest.stop()
        witnessed = set(witness.by_id())
        witness.stop()
        stored_ids = {m["id"] for m in store.facts(kinds=kinds)}
        rows = sum(store.counts().get(k, 0) for k in kinds)
        published = ids_rate | ids_fault
        for pi in pis:
            pi.close()
        return {
            "ingest_msgs_per_s": round(rate),
            "ingest_msgs_per_cpu_s": round(received / cpu_used) if cpu_used else None,  # one core, unshared
            "rate_messages": received,
            "published_unique": len(published),
            "republished_duplicates": resent_rate + resent_fault,
            "faults_injected": sum(faults.values()),
            "faults": faults,
            "lost": len(published - stored_ids),
            "lost_seen_by_witness": len((published & witnessed) - stored_ids),  # the fleet service's losses
            "witness_missed": len(ids_fault - witnessed),  # the broker's (the witness joined for phase 2)
            "stored_duplicates": rows - len(stored_ids),
            "unexpected": len(stored_ids - published),
            "ingest_counters_fault_phase": ingest.counters,  # the SIGKILLed run's are not in it
        }
    finally:
        store.close()
        broker.kill()


def _fill(path: Path) -> None:
    with open(path, "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass


def report_seconds(store_url: str, n_cars: int) -> float:
    """District figures for a year of `n_cars` cars' facts (in a store of their own); seconds per car-year."""
    store = open_store(store_url)
    rng = random.Random(7)
    for c in range(n_cars):
        car, site = f"year-{c:03d}", "hz-year"
        facts = []
        for d in range(365):
            day_t = T0 + d * 86400
            day = date.fromtimestamp(day_t).isoformat()
            facts.append(fact("daily", site, car, day_t + 86000, f"daily/{d}", day=day, until_ts=utc_iso(day_t + 86399),
                              partial=False))
            facts += [fact("trip", site, car, day_t + 21600 + i * 2000 + rng.uniform(0, 900), f"trip/{d}/{i}")
                      for i in range(20)]
            if d % 14 == 0:
                facts.append(fact("maintenance", site, car, day_t + 36000, f"visit/{d}"))
            if d % 30 == 3:
                t = day_t + 50000
                facts.append(fact("event-raised", site, car, t, f"raised/{d}"))
                facts.append(fact("event-cleared", site, car, t + 7200, f"cleared/{d}",
                                  raised_ts=utc_iso(t), event_ts=utc_iso(t + 7200), duration_s=7200))
        for i in range(0, len(facts), 2000):
            store.store_batch([Fact.of(m) for m in facts[i:i + 2000]])
    period = Period(date(2026, 1, 1), date(2026, 12, 31))
    started = time.perf_counter()
    district = district_figures(store, period, [f"year-{c:03d}" for c in range(n_cars)])
    elapsed = time.perf_counter() - started
    store.close()
    assert len(district.cars) == n_cars
    return round(elapsed / n_cars, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--pis", type=int, default=50, help="simulated Pis (MQTT clients)")
    parser.add_argument("--cars-per-pi", type=int, default=10, help="cars behind each Pi")
    parser.add_argument("--msgs-per-car", type=int, default=40, help="facts per car in each phase")
    parser.add_argument("--report-cars", type=int, default=5, help="cars with a year of facts for the report timing")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--group", default="", help="ingest's shared subscription group (default none: docs/fleet.md)")
    args = parser.parse_args()
    results: dict[str, Any] = {"pis": args.pis, "cars": args.pis * args.cars_per_pi}
    with tempfile.TemporaryDirectory(prefix="liftwatch-fleet-bench-") as tmp:
        work = Path(tmp)
        tmpfs = _mount_tmpfs(work / "fs", 256) if os.geteuid() == 0 else None
        try:
            db = (tmpfs or work) / "fleet.sqlite"
            results["sqlite"] = run_store(args, str(db), work / "sqlite", tmpfs)
        finally:
            if tmpfs is not None:
                subprocess.run(["umount", "-l", str(tmpfs)], check=False)
        results["sqlite"]["report_s_per_car_year"] = report_seconds(str(work / "report.sqlite"), args.report_cars)
        bindir = postgres_bindir()
        if args.no_postgres or bindir is None:
            results["postgres"] = None if args.no_postgres else "skipped: no /usr/lib/postgresql/*/bin"
        else:
            cluster = PostgresCluster(bindir).start()
            try:
                results["postgres"] = run_store(args, cluster.database(), work / "postgres", None)
                results["postgres"]["report_s_per_car_year"] = report_seconds(cluster.database(), args.report_cars)
            finally:
                cluster.stop()
    # The keys at the top level are SQLite's (the default store); PostgreSQL's are under "postgres".
    for key in ("ingest_msgs_per_s", "ingest_msgs_per_cpu_s", "lost", "stored_duplicates", "faults_injected", "report_s_per_car_year"):
        results[key] = results["sqlite"][key]
    for name in ("sqlite", "postgres"):
        r = results.get(name)
        if isinstance(r, dict):
            print(f"{name:9} ingest {r['ingest_msgs_per_s']:>6} msg/s ({r['ingest_msgs_per_cpu_s']} per CPU-s)  lost {r['lost']}  stored duplicates "
                  f"{r['stored_duplicates']}  faults {r['faults']}  report {r['report_s_per_car_year']} s/car-year")
    if args.json:
        print(json.dumps(results))
    return 0


def _mount_tmpfs(mount: Path, size_mb: int) -> Path | None:
    mount.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)], capture_output=True)
    return mount if r.returncode == 0 else None


if __name__ == "__main__":
    sys.exit(main())
