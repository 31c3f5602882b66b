"""Per-car analytics: observations in, trips, ride quality, doors, leveling, faults, visits, daily records out.

The car's pipeline (edge_daemon/pipeline.py) feeds `CarAnalytics(car_id, AnalyticsConfig(...))`
with `feed(obs)`, `tick(ts)` and `flush(ts)`; every output has `kind`, `key` and `to_message()` (see docs/analytics.md).
"""

from .config import AnalyticsConfig, AnalyticsConfigError
from .daily import DailyRecord
from .doors import DoorCycle
from .engine import CarAnalytics, Output
from .faults import GBT24476_CODES, FaultEvent, FaultType
from .leveling import LevelingResult, LevelingStatus
from .maintenance import MaintenanceVisit
from .ride_quality import RideQuality
from .trips import Trip

__all__ = [
    "GBT24476_CODES",
    "AnalyticsConfig",
    "CarAnalytics",
    "AnalyticsConfigError",
    "DailyRecord",
    "DoorCycle",
    "FaultEvent",
    "FaultType",
    "LevelingResult",
    "LevelingStatus",
    "MaintenanceVisit",
    "Output",
    "RideQuality",
    "Trip",
]
