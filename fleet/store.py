"""The fleet store: every fact once by id, the quarantine, the lift registry and the alarm queue.

One schema and one set of queries on two engines: SQLite (the default: one file, nothing to install)
and PostgreSQL (a district: several ingest processes and the dashboard on one database). The SQL is
written once with `?` placeholders; only the spelling of three column types and the placeholder
differ (`_DIALECTS`). Both support `INSERT ... ON CONFLICT (site, id) DO UPDATE ... WHERE`, which makes a
write idempotent: a re-delivered fact (MQTT QoS 1 is at least once) changes nothing, a fact issued
again with a higher `revision` replaces the older one, in one statement, whoever writes concurrently;
never with a fact of another kind or car under the same id (forged: quarantined). Facts are keyed by
site and id: ids are reproducible (UUID v5 of kind/site/car/key), so a Pi of one site that publishes
another site's future id first only files a fact under its own site, and cannot block the genuine one.

Writes are batched: `store_batch` commits a whole batch of facts and quarantined messages in one
transaction, and ingest acknowledges the batch to the broker only after that commit returned.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

from liftwatch.errors import LiftwatchError

__all__ = [
    "StoreError",
    "Fact",
    "Quarantined",
    "Lift",
    "BatchOutcome",
    "FleetStore",
    "open_store",
    "ESCALATED_TYPES",
]

ESCALATED_TYPES = frozenset({"entrapment", "alarm_button"})
"""Fault types a person may be waiting on: pushed to the rescue centre's webhook as they arrive."""

_SQLITE_BUSY_MS = 30_000  # several ingest processes share one SQLite file: wait for the writer's lock


class StoreError(LiftwatchError, RuntimeError):
    """The store cannot be opened or a write did not commit (disk full, database gone): nothing of
    the batch is stored, and nothing of it may be acknowledged."""


@dataclass(frozen=True, slots=True)
class Fact:
    """One validated upstream message, with the columns the queries select on."""

    id: str
    kind: str
    site: str
    car: str | None
    board: str | None
    fact_unix_s: float | None  # when it happened (trip start, event time), else its production time
    revision: int
    body: str  # the message as JSON text, exactly as decoded

    @classmethod
    def of(cls, message: dict[str, Any]) -> Fact:
        from liftwatch.edge_daemon.report.source import message_time

        return cls(
            id=message["id"],
            kind=message["kind"],
            site=message["site"],
            car=message["car"],
            board=message["board"],
            fact_unix_s=message_time(message),
            revision=int(message.get("revision", 0)),
            body=json.dumps(message, separators=(",", ":"), ensure_ascii=False),
        )


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A message that is not a valid fact, kept with the reason, never dropped silently."""

    topic: str
    reason: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Lift:
    """One registered car: who it is, who answers for it, and what its contract promises."""

    car: str
    registration_code: str  # 使用登记证编号, the market regulator's id of the lift
    rescue_code: str  # 96333 emergency rescue identification code on the car's plate
    address: str
    building: str
    maintenance_company: str
    insurer: str
    response_s: float  # technician on site after a fault call
    repair_s: float  # repair of a fault
    visit_min_s: float  # shortest acceptable maintenance visit
    enrolled_on: str  # ISO date the car joined the insurance pilot


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one committed batch did: new facts, replacements, duplicates, quarantined, unregistered."""

    stored: int = 0
    replaced: int = 0
    duplicates: int = 0
    quarantined: int = 0
    unregistered: int = 0
    escalations: int = 0

    def __add__(self, other: BatchOutcome) -> BatchOutcome:
        return BatchOutcome(*(a + b for a, b in zip(astuple(self), astuple(other))))


_DIALECTS = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL", "blob": "BLOB"},
    "postgres": {"serial": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION", "blob": "BYTEA"},
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fact (
    site TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    car TEXT,
    board TEXT,
    fact_unix_s {real},
    revision BIGINT NOT NULL,
    registered SMALLINT NOT NULL,
    received_unix_s {real} NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (site, id)
);
CREATE INDEX IF NOT EXISTS fact_car_time ON fact (car, fact_unix_s);
CREATE INDEX IF NOT EXISTS fact_kind_time ON fact (kind, fact_unix_s);
CREATE TABLE IF NOT EXISTS quarantine (
    seq {serial},
    received_unix_s {real} NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload {blob} NOT NULL
);
CREATE TABLE IF NOT EXISTS lift (
    car TEXT PRIMARY KEY,
    registration_code TEXT NOT NULL UNIQUE,
    rescue_code TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL,
    building TEXT NOT NULL,
    maintenance_company TEXT NOT NULL,
    insurer TEXT NOT NULL,
    response_s {real} NOT NULL,
    repair_s {real} NOT NULL,
    visit_min_s {real} NOT NULL,
    enrolled_on TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS escalation (
    site TEXT NOT NULL,
    fact_id TEXT NOT NULL,
    car TEXT,
    type TEXT NOT NULL,
    event_unix_s {real},
    enqueued_unix_s {real} NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_unix_s {real} NOT NULL,
    lease_until_unix_s {real} NOT NULL,
    delivered_unix_s {real},
    PRIMARY KEY (site, fact_id)
);
CREATE INDEX IF NOT EXISTS escalation_due ON escalation (state, next_unix_s);
CREATE TABLE IF NOT EXISTS delivery (
    seq {serial},
    site TEXT NOT NULL,
    fact_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    unix_s {real} NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
)
"""

_UPSERT = """
INSERT INTO fact (id, kind, site, car, board, fact_unix_s, revision, registered, received_unix_s, body)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (site, id) DO UPDATE SET kind = excluded.kind, car = excluded.car,
    board = excluded.board, fact_unix_s = excluded.fact_unix_s, revision = excluded.revision,
    registered = excluded.registered, received_unix_s = excluded.received_unix_s, body = excluded.body
WHERE excluded.revision > fact.revision AND excluded.kind = fact.kind
    AND (excluded.car = fact.car OR (excluded.car IS NULL AND fact.car IS NULL))
"""

_LIFT_COLUMNS = ("car", "registration_code", "rescue_code", "address", "building", "maintenance_company",
                 "insurer", "response_s", "repair_s", "visit_min_s", "enrolled_on")

_SCHEMA_LOCK_KEY = 0x6C69667477617463  # "liftwatc": PostgreSQL advisory lock around CREATE TABLE IF NOT EXISTS

# A batch's id lookup goes in chunks: SQLite allows 32766 host parameters per statement.
_LOOKUP_CHUNK = 500


class FleetStore:
    """A connection to the fleet database (one per thread or process), created on first open."""

    def __init__(self, connect: Callable[[], Any], dialect: str, where: str) -> None:
        self._connect = connect
        self._db = connect()
        self.dialect = dialect
        self.where = where
        self._ph = "%s" if dialect == "postgres" else "?"
        with self._transaction() as cur:
            if dialect == "postgres":  # processes starting together on a new database: one creates, others wait
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            for statement in _SCHEMA.format(**_DIALECTS[dialect]).split(";"):
                if statement.strip():
                    cur.execute(statement)

    # -- plumbing --------------------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return text if self._ph == "?" else text.replace("?", self._ph)

    def _connection(self) -> Any:
        """The connection, made again if the server dropped it (a PostgreSQL restart or failover):
        the failed call raised StoreError, the next one reconnects."""
        if getattr(self._db, "closed", False) or getattr(self._db, "broken", False):
            self._db = self._connect()
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """One transaction; a failure rolls it back and surfaces as StoreError (nothing committed)."""
        try:
            cur = self._connection().cursor()
            if self.dialect == "sqlite":
                cur.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
            yield cur
            self._db.commit()
        except StoreError:
            self._rollback()
            raise
        except Exception as err:
            self._rollback()
            if _is_db_error(err):
                raise StoreError(f"{self.where}: {err}".strip()) from err
            raise

    def _rollback(self) -> None:
        try:
            self._db.rollback()
        except Exception:  # noqa: BLE001 - the connection may be gone; the original error is the news
            pass

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = self._connection().cursor()
            cur.execute(self._sql(sql), tuple(params))
            rows = cur.fetchall()
            if self.dialect == "postgres":
                self._db.commit()  # end the read transaction: the next read sees new commits
            return rows
        except Exception as err:
            if _is_db_error(err):
                self._rollback()
                raise StoreError(f"{self.where}: {err}") from err
            raise

    def close(self) -> None:
        self._db.close()

    # -- ingest ----------------------------------------------------------------------------------

    def store_batch(
        self,
        facts: Sequence[Fact],
        quarantined: Sequence[Quarantined] = (),
        registered_cars: frozenset[str] | None = None,
        now: float | None = None,
    ) -> BatchOutcome:
        """Commit `facts` (each once by id, higher revision wins) and `quarantined` in one transaction.

        Returns only after the commit: the caller may then acknowledge every message of the batch.
        An alarm fact (ESCALATED_TYPES raised) stored for the first time is queued for the webhook
        in the same transaction, so an acknowledged alarm is never one the escalator can miss.
        """
        now = time.time() if now is None else now
        registered = self.registered_cars() if registered_cars is None else registered_cars
        quarantined = list(quarantined)
        with self._transaction() as cur:
            known = self._owners(cur, {f.id for f in facts})
            new = replaced = duplicates = unregistered = 0
            rows = []
            alarms = []
            for f in facts:
                owner = known.get((f.site, f.id))
                if owner is not None and owner[1:] != (f.kind, f.car):
                    # An id is a hash of kind/site/car/key: the same id about another car of the site is
                    # forged or broken, and must not replace that car's fact, whatever its revision.
                    quarantined.append(Quarantined(
                        f"liftwatch/{f.site}/{f.car or '-'}/{f.kind}",
                        f"id {f.id} belongs to a {owner[1]} fact of car {owner[2]!r} of this site",
                        f.body.encode()))
                    continue
                old = None if owner is None else owner[0]
                if old is not None and f.revision <= old:
                    duplicates += 1
                    continue
                known[(f.site, f.id)] = (f.revision, f.kind, f.car)
                is_registered = f.car is None or f.car in registered
                unregistered += not is_registered
                if old is None:
                    new += 1
                    if f.kind == "event":
                        alarms.append(f)
                else:
                    replaced += 1
                rows.append((f.id, f.kind, f.site, f.car, f.board, f.fact_unix_s, f.revision,
                             int(is_registered), now, f.body))
            if rows:
                cur.executemany(self._sql(_UPSERT), rows)
            queued = self._queue_alarms(cur, alarms, now)
            if quarantined:
                cur.executemany(
                    self._sql("INSERT INTO quarantine (received_unix_s, topic, reason, payload) VALUES (?, ?, ?, ?)"),
                    [(now, q.topic, q.reason, q.payload) for q in quarantined],
                )
        return BatchOutcome(new, replaced, duplicates, len(quarantined), unregistered, queued)

    def _owners(self, cur: Any, ids: set[str]) -> dict[tuple[str, str], tuple[int, str, str | None]]:
        """Stored facts with one of `ids`: (site, id) -> (revision, kind, car)."""
        found: dict[tuple[str, str], tuple[int, str, str | None]] = {}
        id_list = sorted(ids)
        for i in range(0, len(id_list), _LOOKUP_CHUNK):
            chunk = id_list[i:i + _LOOKUP_CHUNK]
            marks = ", ".join([self._ph] * len(chunk))
            cur.execute(f"SELECT site, id, revision, kind, car FROM fact WHERE id IN ({marks})", chunk)
            found.update(((site, fid), (int(rev), kind, car)) for site, fid, rev, kind, car in cur.fetchall())
        return found

    def _queue_alarms(self, cur: Any, events: Sequence[Fact], now: float) -> int:
        rows = []
        for f in events:
            message = json.loads(f.body)
            if message.get("type") in ESCALATED_TYPES and message.get("state") == "raised":
                rows.append((f.site, f.id, f.car, message["type"], f.fact_unix_s, now, now))
        if rows:
            cur.executemany(
                self._sql(
                    "INSERT INTO escalation (site, fact_id, car, type, event_unix_s, enqueued_unix_s, state, attempts,"
                    " next_unix_s, lease_until_unix_s) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, 0)"
                    " ON CONFLICT (site, fact_id) DO NOTHING"
                ),
                rows,
            )
        return len(rows)

    # -- registry --------------------------------------------------------------------------------

    def replace_registry(self, lifts: Sequence[Lift]) -> None:
        """The registry becomes exactly `lifts` (one transaction); facts' registered flags follow."""
        with self._transaction() as cur:
            cur.execute("DELETE FROM lift")
            marks = ", ".join("?" * len(_LIFT_COLUMNS))
            cur.executemany(
                self._sql(f"INSERT INTO lift ({', '.join(_LIFT_COLUMNS)}) VALUES ({marks})"),
                [tuple(getattr(lift, c) for c in _LIFT_COLUMNS) for lift in lifts],
            )
            cur.execute("UPDATE fact SET registered = CASE WHEN car IS NULL OR car IN (SELECT car FROM lift)"
                        " THEN 1 ELSE 0 END")

    def lifts(self) -> list[Lift]:
        rows = self._query(f"SELECT {', '.join(_LIFT_COLUMNS)} FROM lift ORDER BY car")
        return [Lift(*row) for row in rows]

    def registered_cars(self) -> frozenset[str]:
        return frozenset(r[0] for r in self._query("SELECT car FROM lift"))

    # -- answers ---------------------------------------------------------------------------------

    def facts(
        self,
        cars: Iterable[str] | None = None,
        start_unix_s: float | None = None,
        end_unix_s: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Messages of `cars` (all if None) whose time lies in [start, end), by time; a fact
        without a time of its own is always included. Status messages of the cars' sites come
        with them (their drop counts say whether the facts are complete)."""
        where, params = ["1 = 1"], []
        car_list = None if cars is None else sorted(set(cars))
        if car_list is not None:
            if not car_list:
                return []
            where.append(f"(car IN ({', '.join('?' * len(car_list))}) OR (car IS NULL AND site IN "
                         f"(SELECT DISTINCT site FROM fact WHERE car IN ({', '.join('?' * len(car_list))}))))")
            params += car_list + car_list
        if start_unix_s is not None:
            where.append("(fact_unix_s IS NULL OR fact_unix_s >= ?)")
            params.append(start_unix_s)
        if end_unix_s is not None:
            where.append("(fact_unix_s IS NULL OR fact_unix_s < ?)")
            params.append(end_unix_s)
        if kinds is not None:
            kind_list = sorted(set(kinds))
            where.append(f"kind IN ({', '.join('?' * len(kind_list))})")
            params += kind_list
        rows = self._query(f"SELECT body FROM fact WHERE {' AND '.join(where)} ORDER BY fact_unix_s, id", params)
        return [json.loads(body) for (body,) in rows]

    def cars(self) -> list[str]:
        """Every car with a fact in the store, sorted."""
        return [r[0] for r in self._query("SELECT DISTINCT car FROM fact WHERE car IS NOT NULL ORDER BY car")]

    def unregistered_cars(self) -> dict[str, int]:
        """Cars that sent facts but are not in the registry, with their fact counts."""
        rows = self._query("SELECT car, COUNT(*) FROM fact WHERE registered = 0 GROUP BY car ORDER BY car")
        return {car: int(n) for car, n in rows}

    def counts(self) -> dict[str, int]:
        """Facts per kind, plus `quarantined` and `unregistered` totals."""
        out = {kind: int(n) for kind, n in self._query("SELECT kind, COUNT(*) FROM fact GROUP BY kind")}
        out["quarantined"] = int(self._query("SELECT COUNT(*) FROM quarantine")[0][0])
        out["unregistered"] = int(self._query("SELECT COUNT(*) FROM fact WHERE registered = 0")[0][0])
        return out

    def quarantine(self, limit: int = 100) -> list[tuple[float, str, str, bytes]]:
        """The newest quarantined messages: (received, topic, reason, payload)."""
        rows = self._query("SELECT received_unix_s, topic, reason, payload FROM quarantine ORDER BY seq DESC"
                           " LIMIT ?", (limit,))
        return [(float(t), topic, reason, bytes(payload)) for t, topic, reason, payload in rows]

    # -- escalation queue (fleet/escalation.py) --------------------------------------------------

    def claim_alarms(self, now: float, lease_s: float, limit: int = 20) -> list[tuple[str, int, dict[str, Any]]]:
        """Due alarms not leased by another escalator: (fact id, attempts so far, message), now leased.

        The lease keeps two escalators (two fleet processes) from pushing one alarm at once; a
        crashed escalator's lease runs out and another takes the alarm over.
        """
        with self._transaction() as cur:
            cur.execute(
                self._sql("SELECT e.site, e.fact_id, e.attempts, f.body FROM escalation e"
                          " JOIN fact f ON f.site = e.site AND f.id = e.fact_id"
                          " WHERE e.state = 'pending' AND e.next_unix_s <= ? AND e.lease_until_unix_s <= ?"
                          " ORDER BY e.next_unix_s LIMIT ?"),
                (now, now, limit),
            )
            rows = cur.fetchall()
            if rows:
                cur.executemany(self._sql("UPDATE escalation SET lease_until_unix_s = ? WHERE site = ? AND fact_id = ?"),
                                [(now + lease_s, site, fid) for site, fid, _, _ in rows])
        return [(fid, int(attempts), json.loads(body)) for _, fid, attempts, body in rows]

    def record_delivery(self, site: str, fact_id: str, attempt: int, now: float, outcome: str, detail: str,
                        next_unix_s: float | None) -> None:
        """Log one push attempt; `next_unix_s` None settles the alarm (`outcome` is its final state)."""
        with self._transaction() as cur:
            cur.execute(
                self._sql("INSERT INTO delivery (site, fact_id, attempt, unix_s, outcome, detail)"
                          " VALUES (?, ?, ?, ?, ?, ?)"),
                (site, fact_id, attempt, now, outcome, detail),
            )
            if next_unix_s is None:
                cur.execute(
                    self._sql("UPDATE escalation SET state = ?, attempts = ?, delivered_unix_s = ?,"
                              " lease_until_unix_s = 0 WHERE site = ? AND fact_id = ?"),
                    (outcome, attempt, now if outcome == "delivered" else None, site, fact_id),
                )
            else:
                cur.execute(
                    self._sql("UPDATE escalation SET attempts = ?, next_unix_s = ?, lease_until_unix_s = 0"
                              " WHERE site = ? AND fact_id = ?"),
                    (attempt, next_unix_s, site, fact_id),
                )

    def deliveries(self, fact_id: str | None = None) -> list[tuple[str, int, float, str, str]]:
        """The delivery log: (fact id, attempt, time, outcome, detail), oldest first."""
        sql = "SELECT fact_id, attempt, unix_s, outcome, detail FROM delivery"
        rows = self._query(sql + " WHERE fact_id = ? ORDER BY seq" if fact_id else sql + " ORDER BY seq",
                           (fact_id,) if fact_id else ())
        return [(f, int(a), float(t), o, d) for f, a, t, o, d in rows]

    def alarm_states(self) -> dict[str, str]:
        """Fact id -> escalation state (`pending`, `delivered`, `stale`), for status and tests (the same
        id under two sites shows once)."""
        return {fid: state for fid, state in self._query("SELECT fact_id, state FROM escalation")}


def _is_db_error(err: BaseException) -> bool:
    if isinstance(err, sqlite3.Error):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(err, psycopg.Error)


def open_store(url: str | Path) -> FleetStore:
    """`postgresql://...` (or `postgres://`) opens PostgreSQL; anything else is a SQLite file path."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg
        except ImportError:
            raise StoreError("PostgreSQL store needs psycopg: pip install 'liftwatch[postgres]'") from None
        def connect() -> Any:
            try:
                return psycopg.connect(text, connect_timeout=10)
            except psycopg.Error as err:
                raise StoreError(f"cannot connect to {_redacted(text)}: {str(err).strip()}") from err

        return FleetStore(connect, "postgres", _redacted(text))
    path = Path(text)

    def connect() -> _SqliteTx:
        try:
            conn = sqlite3.connect(path, timeout=_SQLITE_BUSY_MS / 1000, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a commit is acknowledged to the broker: it must survive a power cut
            conn.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
        except sqlite3.Error as err:
            raise StoreError(f"{path}: cannot open the fleet database: {err}") from err
        return _SqliteTx(conn)

    return FleetStore(connect, "sqlite", str(path))


def _redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
    return url


class _SqliteTx:
    """sqlite3 in autocommit mode with explicit BEGIN/COMMIT, shaped like a DB-API connection, so
    `BEGIN IMMEDIATE` takes the write lock up front instead of Python's implicit deferred BEGIN."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def cursor(self) -> sqlite3.Cursor:
        return self._conn.cursor()

    def commit(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()
