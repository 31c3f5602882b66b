"""What the demo shows a person while it runs: what went upstream per car (`FleetTally`) and the
live table drawn from it and the sessions' status."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from liftwatch.demo_fleet import DemoFleet
from liftwatch.protocol import lwproto as lw

__all__ = ["CarTally", "FleetTally", "car_state", "local_time", "minutes", "render_table"]

# Input bits and motion codes of the HEARTBEAT (protocol/SPEC.md section 5).
_DOOR_CLOSED, _INSPECTION, _ALARM = lw.IN_DOOR_CLOSED, lw.IN_INSPECTION, lw.IN_ALARM_BUTTON
_MOTION_WORDS = {lw.MOTION_REST: "at rest", lw.MOTION_ACCELERATING: "starting", lw.MOTION_MOVING: "moving",
                 lw.MOTION_DECELERATING: "stopping", lw.MOTION_UNCALIBRATED: "uncalibrated"}
_TRAVELLING = (lw.MOTION_ACCELERATING, lw.MOTION_MOVING, lw.MOTION_DECELERATING)


@dataclass(slots=True)
class CarTally:
    """One car's upstream messages, counted as they are delivered."""

    trips: int = 0
    floor: int | None = None
    raised: Counter = field(default_factory=Counter)  # fault type -> times raised
    open_faults: dict[str, float] = field(default_factory=dict)  # type -> raised ts
    cleared: list[dict[str, Any]] = field(default_factory=list)  # cleared event messages
    visits: list[dict[str, Any]] = field(default_factory=list)  # maintenance messages
    rq_worst_z_a95_mg: float | None = None
    messages: Counter = field(default_factory=Counter)  # kind -> count


class FleetTally:
    """Counts what the upstream delivered (journal or broker), per car: the demo shows what an
    insurer's platform would receive, not the daemon's internals."""

    def __init__(self, cars: Sequence[str]) -> None:
        self.cars = {c: CarTally() for c in cars}
        self.delivered = 0
        self.lock = threading.Lock()  # MQTT delivery callbacks may come from paho's thread

    def on_delivered(self, batch: Sequence[Any]) -> None:
        with self.lock:
            for m in batch:
                self.delivered += 1
                try:
                    self.add(json.loads(m.payload))
                except (ValueError, AttributeError, TypeError):
                    continue

    def add(self, msg: dict[str, Any]) -> None:
        tally = self.cars.get(msg.get("car") or "")
        if tally is None:
            return
        kind = msg.get("kind")
        tally.messages[kind] += 1
        if kind == "trip":
            tally.trips += 1
            tally.floor = msg.get("to_floor", tally.floor)
            z = (msg.get("ride_quality") or {}).get("z_a95_pp_mg")
            if isinstance(z, (int, float)):
                tally.rq_worst_z_a95_mg = max(z, tally.rq_worst_z_a95_mg or 0.0)
        elif kind == "event":
            ftype = str(msg.get("type"))
            if msg.get("state") == "raised":
                tally.raised[ftype] += 1
                tally.open_faults[ftype] = _ts(msg.get("event_ts"))
            elif msg.get("state") == "cleared":
                tally.open_faults.pop(ftype, None)
                tally.cleared.append(msg)
        elif kind == "maintenance":
            tally.visits.append(msg)


def _ts(text: Any) -> float:
    try:
        return dt.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return 0.0


def minutes(seconds: Any) -> str:
    return "-" if not isinstance(seconds, (int, float)) else f"{seconds / 60:.0f} min"


def local_time(ts: float, offset_h: float) -> dt.datetime:
    """The site's time (the fleet's zone), which every time a person reads in the demo is in."""
    return dt.datetime.fromtimestamp(ts, dt.timezone(dt.timedelta(hours=offset_h)))


def car_state(status: dict[str, Any] | None, tally: CarTally) -> tuple[str, str]:
    """(words, rich style) for the car's live state, from its session status and open faults."""
    if status is None or not status.get("online"):
        return "board offline", "bold red"
    hb = status.get("heartbeat") or {}
    inputs, motion = int(hb.get("inputs", 0) or 0), int(hb.get("motion", 0) or 0)
    words = [_MOTION_WORDS.get(motion, "?")]
    if motion == 0 and tally.floor is not None:
        words[0] = f"at floor {tally.floor}"
    words.append("door closed" if inputs & _DOOR_CLOSED else "door open")
    if inputs & _INSPECTION:
        words.append("INSPECTION")
    if inputs & _ALARM:
        words.append("ALARM")
    style = "yellow" if inputs & _INSPECTION else ("green" if motion in _TRAVELLING else "")
    if tally.open_faults:
        style = "bold red"
    return ", ".join(words), style


def render_table(fleet: DemoFleet, tally: FleetTally, statuses: dict[str, dict[str, Any]], now_ts: float,
                 outbox: dict[str, Any], rate: float, sink: str, width: int = 132) -> Any:
    """The live table; below 100 columns the link column is left out so the rest stays readable."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"liftwatch demo - {fleet.site} - {local_time(now_ts, fleet.utc_offset_h):%Y-%m-%d %H:%M %Z} "
                        f"site time (x{rate:.0f})",
                  caption=f"outbox: {outbox.get('pending', 0)} pending, {tally.delivered} delivered -> {sink}",
                  title_justify="left", caption_justify="left", expand=False)
    table.add_column("car", style="bold", overflow="fold", min_width=10)
    table.add_column("state", overflow="fold", min_width=12)
    table.add_column("trips", justify="right", min_width=5)
    table.add_column("faults open", overflow="fold", min_width=11)
    table.add_column("raised / cleared", justify="right", min_width=8)
    table.add_column("maintenance", overflow="fold", min_width=11)
    wide = width >= 100
    if wide:
        table.add_column("frames / lost", justify="right", min_width=7)
    with tally.lock:
        for c in fleet.cars:
            t = tally.cars[c.car]
            st = statuses.get(c.car)
            words, style = car_state(st, t)
            open_faults = Text(", ".join(sorted(t.open_faults)) or "-", style="bold red" if t.open_faults else "dim")
            visits = ", ".join(f"{v.get('duration_s', 0) / 60:.0f} min"
                               + (" SHORT" if v.get("too_short") else " on site" if v.get("in_progress") else "")
                               for v in t.visits) or "-"
            counters = (st or {}).get("counters", {})
            link = f"{counters.get('frames', 0)} / {counters.get('lost_frames', 0)}" if st else "-"
            row = [c.car, Text(words, style=style), str(t.trips), open_faults,
                   f"{sum(t.raised.values())} / {len(t.cleared)}", visits]
            table.add_row(*row, *([link] if wide else []))
    return table

