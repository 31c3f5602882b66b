"""Every threshold the per-car analytics uses, with the reason for its default beside it."""

from __future__ import annotations

from dataclasses import dataclass

from liftwatch.errors import LiftwatchError

__all__ = ["AnalyticsConfig", "AnalyticsConfigError"]


class AnalyticsConfigError(LiftwatchError, ValueError):
    """An analytics setting is out of range; `field` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"analytics config: {field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    """Per-car settings. Defaults suit a 1 m/s passenger lift in a Chinese residential block."""

    # --- building and car -------------------------------------------------------------------
    # None only from `liftwatch replay` of a trace whose car is unknown: overspeed is then not judged
    rated_speed_mps: float | None = 1.0  # nameplate speed; overspeed is judged against it
    floor_count: int | None = None  # landings served; None = floor numbers are never anchored
    lowest_floor: int = 1  # number of the bottom landing (e.g. -2 with two basements)
    # Skipped numbers (4, 13, 14) simply do not appear among the labels. Either list sets
    # floor_count when it is not given. With the levels, a trip whose zone pulses were lost finds
    # its landing from the integrated travel.
    floor_labels: tuple[str, ...] | None = None  # landing names bottom to top, as the buttons show them (B2, B1, G, M, 3, 5)
    floor_levels_m: tuple[float, ...] | None = None  # landing heights above the bottom one (m), bottom to top
    day_utc_offset_h: float = 8.0  # daily records follow the local day (China Standard Time)

    # --- door-zone vane geometry (installation sheet of the kit) ----------------------------
    vane_length_mm: float = 200.0  # door-zone vane at each landing
    zone_sensor_spacing_mm: float = 170.0  # between the zone_up and zone_dn sensors on the car
    # both sensors covered <=> car within +-(vane - spacing)/2 = +-15 mm of the landing

    # --- trips ----------------------------------------------------------------------------
    trip_min_s: float = 1.0  # shorter movements are re-levelling, not trips
    vib_wait_s: float = 5.0  # how long a finished trip waits for its lagging VIB blocks
    vib_post_s: float = 0.5  # VIB wanted after the stop (the car settles on its ropes)
    vib_buffer_s: float = 300.0  # VIB older than this is dropped even during a (stuck) trip

    # --- ride quality (ISO 18738-1 method, GB/T 10058-2009 3.3.5 limits) --------------------
    accel_lowpass_hz: float = 10.0  # ISO 18738-1: acceleration and jerk from a 10 Hz low-pass
    jerk_window_s: float = 0.5  # ISO 18738-1: jerk is the slope of a 0.5 s least-squares line
    constant_speed_fraction: float = 0.95  # constant-speed region: |v| >= 95 % of the trip peak
    constant_speed_accel_fraction: float = 0.05  # and there the 1 Hz acceleration <= 5 % of its peak
    rq_settle_s: float = 1.0  # skipped at the plateau start: the weighting's high-pass still rings
    rq_min_region_s: float = 1.0  # shorter plateaus give no vibration figures (no 1-floor trips)
    vib_z_max_pp_limit_mg: float = 30.6  # 0.30 m/s^2 vertical max peak-to-peak
    vib_z_a95_pp_limit_mg: float = 20.4  # 0.20 m/s^2 vertical A95 peak-to-peak
    vib_xy_max_pp_limit_mg: float = 20.4  # 0.20 m/s^2 horizontal max peak-to-peak
    vib_xy_a95_pp_limit_mg: float = 15.3  # 0.15 m/s^2 horizontal A95 peak-to-peak
    abnormal_vibration_trips: int = 2  # consecutive trips over a limit before the fault is raised
    abnormal_vibration_clear_trips: int = 3  # consecutive trips within limits to clear it

    # --- overspeed ------------------------------------------------------------------------
    overspeed_ratio: float = 1.15  # GB 7588: the governor must trip at >= 115 % of rated speed

    # --- leveling -------------------------------------------------------------------------
    level_tolerance_mm: float = 20.0  # GB 7588 re-levelling accuracy +-20 mm
    leveling_fault_stops: int = 3  # off-level stops among the last `leveling_window_stops`
    leveling_window_stops: int = 5
    leveling_clear_stops: int = 5  # consecutive level stops to clear the fault

    # --- doors ----------------------------------------------------------------------------
    door_reopen_window_s: float = 4.0  # door opening again sooner than this after closing = reopen
    door_open_too_long_s: float = 120.0  # held open longer than this in normal service
    door_reopen_loop_count: int = 5  # reopenings in one door cycle = a door that cannot close
    moving_door_open_s: float = 0.5  # debounce: the board's motion state lags the door switch
    emit_door_cycles: bool = False  # door cycles go upstream one by one only when asked (bytes/day)

    # --- entrapment and stops -------------------------------------------------------------
    entrapment_outside_zone_s: float = 15.0  # stopped, door closed, someone inside, between floors
    entrapment_at_floor_s: float = 90.0  # same, at a floor (door not opening)
    require_presence: bool = True  # False when no presence sensor is fitted: assume occupied
    stopped_outside_zone_s: float = 5.0  # a car in service never rests between floors this long
    alarm_button_hold_s: float = 2.0  # shorter presses are knocks and children
    door_open_fail_s: float = 15.0  # stopped level after a run, someone inside, door still shut this long
    overtravel_mm: float = 150.0  # stopped this far past the terminal landing's level = 冲顶/蹲底
    power_loss_s: float = 1.0  # mains rail off this long (the board already debounced the input)

    # --- response and release ---------------------------------------------------------------
    rescue_speed_max_mps: float = 0.63  # GB 7588-2003 14.2.1.4: emergency electrical operation <= 0.63 m/s
    release_empty_s: float = 60.0  # after a trapped car's door opens, how long to wait for it to empty

    # --- position and sensors -------------------------------------------------------------
    uncalibrated_grace_s: float = 60.0  # a new board calibrates itself within seconds of rest; longer = fault
    zone_stuck_trips: int = 3  # consecutive trips >= zone_stuck_min_s with no door-zone pulse
    zone_stuck_min_s: float = 6.0  # long enough to pass at least one landing at any speed

    # --- maintenance ----------------------------------------------------------------------
    maintenance_join_gap_s: float = 600.0  # inspection off for less than this = same visit
    maintenance_min_s: float = 2400.0  # contract minimum visit: 40 minutes
    response_lookback_s: float = 86400.0  # a visit answers faults raised up to a day before it

    def __post_init__(self) -> None:
        self._check_landings()
        if self.rated_speed_mps is not None and not self.rated_speed_mps > 0:
            raise AnalyticsConfigError("rated_speed_mps", "must be > 0")
        for name in (
            "vane_length_mm",
            "accel_lowpass_hz",
            "jerk_window_s",
            "overspeed_ratio",
            "level_tolerance_mm",
            "rescue_speed_max_mps",
            "door_open_fail_s",
            "overtravel_mm",
            "power_loss_s",
        ):
            if not getattr(self, name) > 0:
                raise AnalyticsConfigError(name, "must be > 0")
        if self.release_empty_s < 0:
            raise AnalyticsConfigError("release_empty_s", "must be >= 0")
        if self.zone_sensor_spacing_mm < 0 or self.zone_sensor_spacing_mm >= self.vane_length_mm:
            raise AnalyticsConfigError("zone_sensor_spacing_mm", "must be >= 0 and below vane_length_mm")
        if self.floor_count is not None and self.floor_count < 2:
            raise AnalyticsConfigError("floor_count", "a lift serves at least 2 floors")
        if not 0 < self.constant_speed_fraction < 1:
            raise AnalyticsConfigError("constant_speed_fraction", "must be between 0 and 1")
        if self.leveling_fault_stops > self.leveling_window_stops:
            raise AnalyticsConfigError("leveling_fault_stops", "cannot exceed leveling_window_stops")
        for name in (
            "abnormal_vibration_trips",
            "abnormal_vibration_clear_trips",
            "leveling_fault_stops",
            "leveling_clear_stops",
            "door_reopen_loop_count",
            "zone_stuck_trips",
        ):
            if getattr(self, name) < 1:
                raise AnalyticsConfigError(name, "must be >= 1")

    def _check_landings(self) -> None:
        """Labels and levels: one per landing, labels unique, levels rising; they set floor_count."""
        labels, levels = self.floor_labels, self.floor_levels_m
        if labels is not None:
            if not all(isinstance(x, str) and 0 < len(x) <= 8 and x.strip() == x for x in labels):
                raise AnalyticsConfigError("floor_labels", "each label a non-empty string of at most 8 characters")
            if len(set(labels)) != len(labels):
                raise AnalyticsConfigError("floor_labels", "labels must be unique")
            object.__setattr__(self, "floor_labels", tuple(labels))
        if levels is not None:
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in levels):
                raise AnalyticsConfigError("floor_levels_m", "numbers, in metres")
            if any(b - a < 1.0 for a, b in zip(levels, levels[1:])):
                raise AnalyticsConfigError("floor_levels_m", "must rise by at least 1 m from landing to landing")
            object.__setattr__(self, "floor_levels_m", tuple(float(x) for x in levels))
        for name, seq in (("floor_labels", labels), ("floor_levels_m", levels)):
            if seq is None:
                continue
            if self.floor_count is None:
                object.__setattr__(self, "floor_count", len(seq))
            elif len(seq) != self.floor_count:
                raise AnalyticsConfigError(name, f"{len(seq)} landings, but floor_count is {self.floor_count}")

    def floor_label(self, floor: int | None) -> str | None:
        """The landing's name for a floor number (`lowest_floor` + index), or the number itself."""
        if floor is None:
            return None
        if self.floor_labels is None:
            return str(floor)
        i = floor - self.lowest_floor
        return self.floor_labels[i] if 0 <= i < len(self.floor_labels) else None

    @property
    def level_band_mm(self) -> float:
        """Half-width of the band in which both zone sensors are covered."""
        return (self.vane_length_mm - self.zone_sensor_spacing_mm) / 2
