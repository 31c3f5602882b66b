"""Alarm escalation: an entrapment or alarm-button fact pushed to the rescue centre within seconds.

Ingest queues each new `entrapment` / `alarm_button` raise in the same transaction that stores it
(store.ESCALATED_TYPES), so every acknowledged alarm is in the queue. The escalator polls the queue
(POLL_S), leases what is due (two escalators never push one alarm at once; a crashed one's lease
runs out), POSTs one JSON document per alarm to the configured webhook (the 96333 centre or a city
platform) and logs every attempt in the `delivery` table. A failed push is retried with a capped
backoff, indefinitely: a trapped passenger's alarm is never given up on. `Idempotency-Key` (the fact's
site/id) lets the receiver ignore a push it already has (a retry after a lost HTTP response).

An alarm first seen long after it was raised (a Pi's backlog after days offline) is logged `stale`
and not pushed: the rescue centre must not send a crew to an entrapment that ended last week.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from .store import FleetStore, Lift

__all__ = ["WebhookConfig", "Escalator", "alarm_document"]

_LOG = logging.getLogger(__name__)

POLL_S = 0.5  # queue poll period: the push leaves within this of the commit


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    token: str | None = field(default=None, repr=False)  # sent as `Authorization: Bearer`; never logged
    timeout_s: float = 5.0
    retry_min_s: float = 1.0
    retry_max_s: float = 60.0
    max_age_s: float = 3600.0  # older alarms are logged stale, not pushed
    lease_s: float = 30.0  # > timeout_s: a push in progress is never taken over


def alarm_document(message: dict[str, Any], lift: Lift | None) -> dict[str, Any]:
    """What the rescue centre receives: the alarm, where the car is, who to call, and the fact itself."""
    return {
        "alarm": message.get("type"),
        "fact_id": message["id"],
        "site": message.get("site"),
        "car": message.get("car"),
        "event_ts": message.get("event_ts"),
        "registered": lift is not None,
        "lift": asdict(lift) if lift is not None else None,
        "fact": message,
    }


class Escalator:
    """Pushes due alarms; `run(stop)` loops until `stop` is set, `push_due()` does one round."""

    def __init__(self, config: WebhookConfig, store: FleetStore) -> None:
        self.config = config
        self.store = store
        self.delivered = 0
        self.failed_attempts = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.push_due()
            except Exception as err:  # noqa: BLE001 - a store hiccup must not end escalation
                _LOG.error("fleet escalation: %s", err)
            stop.wait(POLL_S)

    def push_due(self, now: float | None = None) -> int:
        """Claim and push every due alarm once; returns how many were delivered."""
        now = time.time() if now is None else now
        claimed = self.store.claim_alarms(now, self.config.lease_s)
        if not claimed:
            return 0
        lifts = {lift.car: lift for lift in self.store.lifts()}
        delivered = 0
        for fact_id, attempts, message in claimed:
            delivered += self._push(fact_id, attempts + 1, message, lifts.get(message.get("car")))
        return delivered

    def _push(self, fact_id: str, attempt: int, message: dict[str, Any], lift: Lift | None) -> bool:
        cfg = self.config
        from liftwatch.edge_daemon.report.source import parse_ts

        raised = parse_ts(message.get("event_ts"))
        started = time.time()
        if attempt == 1 and raised is not None and started - raised > cfg.max_age_s:
            self.store.record_delivery(message["site"], fact_id, attempt, started, "stale",
                                       f"raised {started - raised:.0f} s ago (> {cfg.max_age_s:.0f} s): not pushed", None)
            return False
        body = json.dumps(alarm_document(message, lift), ensure_ascii=False).encode()
        # Keyed like the store (site and id): another site's message under this id must not look like a repeat.
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": f"{message['site']}/{fact_id}"}
        if cfg.token:
            headers["Authorization"] = f"Bearer {cfg.token}"
        request = urllib.request.Request(cfg.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=cfg.timeout_s) as response:
                status = response.status
            detail = f"HTTP {status}"
            ok = 200 <= status < 300
        except urllib.error.HTTPError as err:
            detail, ok = f"HTTP {err.code} {err.reason}", False
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            detail, ok = f"no answer: {reason}", False
        done = time.time()
        detail += f" in {1000 * (done - started):.0f} ms"
        if ok:
            self.delivered += 1
            self.store.record_delivery(message["site"], fact_id, attempt, done, "delivered", detail, None)
            return True
        self.failed_attempts += 1
        retry_s = min(cfg.retry_min_s * 2 ** (attempt - 1), cfg.retry_max_s)
        _LOG.warning("fleet escalation: %s of car %s, attempt %d: %s; retry in %.1f s",
                     message.get("type"), message.get("car"), attempt, detail, retry_s)
        self.store.record_delivery(message["site"], fact_id, attempt, done, "failed", detail, done + retry_s)
        return False
