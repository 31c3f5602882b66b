"""Read the upstream messages the daemon produced, for one car (or all) and one period.

Two places hold them on a Pi (docs/upstream.md):

- the JSON Lines journal (`<state_dir>/upstream.jsonl`, the embedded default upstream): one message
  per line, the full history;
- the SQLite outbox (`<state_dir>/outbox.sqlite`): only what is not yet delivered. Delivered rows
  keep their id but not their payload, so the outbox alone is a complete record only while the
  broker is unreachable. Reading both and de-duplicating by `id` is always safe.

The reader is tolerant the way a subscriber must be: unknown fields and kinds pass through
untouched, a line that is not a JSON object with an envelope is skipped and reported with its line
number, and nothing else is lost. A second copy of an id (QoS 1 re-delivery, the journal re-written
after a SIGKILL) is dropped.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from liftwatch.errors import LiftwatchError

__all__ = [
    "ReportSourceError",
    "SkippedRecord",
    "LoadedMessages",
    "parse_ts",
    "message_time",
    "load_messages",
]

_SQLITE_MAGIC = b"SQLite format 3\x00"

_TIME_FIELDS = ("start_ts", "event_ts", "open_ts")
"""Where a message's own time lives, by preference; `ts` (production time) is the fallback."""


class ReportSourceError(LiftwatchError):
    """A source cannot be read at all (missing, unreadable, not a journal or outbox)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """One record that was not a usable message; `where` is a line number or outbox seq."""

    path: Path
    where: int
    reason: str


@dataclass(frozen=True, slots=True)
class LoadedMessages:
    """Messages in source order (journal order, then outbox seq), one per id."""

    messages: tuple[dict[str, Any], ...]
    skipped: tuple[SkippedRecord, ...]
    duplicates: int
    sources: tuple[Path, ...]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("kind") == kind]

    @property
    def cars(self) -> list[str]:
        """Car ids seen, sorted (Pi-level messages such as `status` have no car)."""
        return sorted({m["car"] for m in self.messages if isinstance(m.get("car"), str)})


def parse_ts(value: Any) -> float | None:
    """ISO 8601 (the upstream `...Z` form, or with an offset) -> unix seconds; None if not a time."""
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None  # upstream times are always UTC with a zone; a naive one is malformed
    return dt.timestamp()


def message_time(message: Mapping[str, Any]) -> float | None:
    """When the fact happened: trip/visit start, event time, else the production time `ts`.

    A daily record's time is its local day; it is filtered by `day`, not by this.
    """
    for name in _TIME_FIELDS:
        t = parse_ts(message.get(name))
        if t is not None:
            return t
    return parse_ts(message.get("ts"))


def _check_envelope(obj: Any) -> str | None:
    """Why `obj` is not a usable message, or None. Only what the report relies on is checked."""
    if not isinstance(obj, dict):
        return f"not a JSON object ({type(obj).__name__})"
    for name in ("id", "kind"):
        if not isinstance(obj.get(name), str) or not obj[name]:
            return f"missing or invalid {name!r}"
    if "car" in obj and obj["car"] is not None and not isinstance(obj["car"], str):
        return "invalid 'car'"
    return None


def _read_journal(path: Path, needles: tuple[bytes, ...] = ()) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, object or None, error) per non-empty line.

    With `needles`, a line containing none of them is not parsed at all: a one-car report from a
    fleet journal then costs a substring search per other car's line instead of a JSON parse.
    Lines are parsed regardless of `needles` until one is a usable message: a file with text but
    not one message is not a journal (a wrong --source), which is an error, not "no messages".
    """
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise ReportSourceError(path, f"cannot open: {err.strerror or err}") from err
    first_problem: tuple[int, str] | None = None  # while no line was a message: the first bad one
    is_journal = False
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            raw = raw.strip()
            if not raw:
                continue
            if not is_journal:
                obj, error = _parse_line(raw)
                is_journal = error is None and _check_envelope(obj) is None
                if not is_journal and first_problem is None:
                    first_problem = (lineno, error or _check_envelope(obj) or "")
                yield lineno, obj, error
            elif not needles or any(n in raw for n in needles):
                yield lineno, *_parse_line(raw)
    if first_problem is not None and not is_journal:
        raise ReportSourceError(path, f"not an upstream journal: no line is a message (line {first_problem[0]}: "
                                      f"{first_problem[1]})")


def _parse_line(raw: bytes) -> tuple[Any, str | None]:
    try:
        return json.loads(raw), None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"not JSON: {err}"


def _read_outbox(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(seq, object or None, error) per row that still has its payload, read-only."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as err:
        raise ReportSourceError(path, f"cannot open outbox: {err}") from err
    try:
        try:
            rows = db.execute("SELECT seq, payload FROM message WHERE payload IS NOT NULL ORDER BY seq").fetchall()
        except sqlite3.Error as err:
            raise ReportSourceError(path, f"not a liftwatch outbox: {err}") from err
    finally:
        db.close()
    for seq, payload in rows:
        try:
            yield seq, json.loads(payload), None
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as err:
            yield seq, None, f"payload not JSON: {err}"


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError as err:
        raise ReportSourceError(path, f"cannot open: {err.strerror or err}") from err


def load_messages(
    paths: Iterable[str | Path],
    car: str | None = None,
    start_ts: float | None = None,
    end_ts: float | None = None,
    margin_s: float = 86400.0,
    days: tuple[str, str] | None = None,
) -> LoadedMessages:
    """Messages of `car` (all cars if None) from journals and/or outboxes, format detected per file.

    Pi-level `status` messages (car null) are kept with any car: their drop counts tell whether the
    car's facts are complete. With a car, journal lines that do not mention it are not parsed, so a
    malformed line of another car goes unreported (it cannot affect this car's report).

    Time filter: a message is kept when its own time (`message_time`) lies within
    [start_ts - margin_s, end_ts + margin_s). The margin keeps what the period's figures need from
    just outside it: the visit that answered a fault raised at 23:50, the raise of a fault cleared
    after midnight. `daily` records are kept when their `day` lies within `days` (inclusive
    YYYY-MM-DD strings) if given. Messages without a usable time are kept (the caller decides).

    One message per id: a second copy is a duplicate (counted), but a copy with a higher `revision`
    (a daily record or maintenance visit re-issued because late facts from the board's journal
    changed it) replaces the one kept, wherever it stood.
    """
    lo = None if start_ts is None else start_ts - margin_s
    hi = None if end_ts is None else end_ts + margin_s
    # Car ids are topic-safe ([A-Za-z0-9_.:-]), so the quoted id appears verbatim in any line about
    # the car, however the JSON is spaced; "status" keeps the Pi-level status lines.
    needles = (json.dumps(car).encode(), b'"status"') if car is not None else ()
    seen: dict[str, tuple[int, int | None]] = {}  # id -> (highest revision, its index in kept)
    kept: list[dict[str, Any]] = []
    skipped: list[SkippedRecord] = []
    duplicates = 0
    sources: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise ReportSourceError(path, "no such file")
        if path.is_dir():
            raise ReportSourceError(path, "is a directory; give the journal (.jsonl) or outbox (.sqlite) file")
        reader = _read_outbox(path) if _is_sqlite(path) else _read_journal(path, needles)
        sources.append(path)
        for where, obj, error in reader:
            if error is None:
                error = _check_envelope(obj)
            if error is not None:
                skipped.append(SkippedRecord(path, where, error))
                continue
            revision = obj.get("revision") if type(obj.get("revision")) is int else 0
            prior = seen.get(obj["id"])
            if prior is not None:
                if revision <= prior[0]:
                    duplicates += 1
                    continue
                if prior[1] is not None:  # a re-issue (late facts changed a past day): the latest counts
                    kept[prior[1]] = obj
                    seen[obj["id"]] = (revision, prior[1])
                    continue
            seen[obj["id"]] = (revision, None)
            if car is not None and obj.get("car") != car and not (obj["kind"] == "status" and obj.get("car") is None):
                continue
            if obj["kind"] == "daily" and days is not None:
                day = obj.get("day")
                if isinstance(day, str) and not days[0] <= day <= days[1]:
                    continue
            else:
                t = message_time(obj)
                if t is not None and ((lo is not None and t < lo) or (hi is not None and t >= hi)):
                    continue
            seen[obj["id"]] = (revision, len(kept))
            kept.append(obj)
    return LoadedMessages(tuple(kept), tuple(skipped), duplicates, tuple(sources))
