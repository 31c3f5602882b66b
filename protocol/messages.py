"""Typed views of protocol messages (SPEC.md, "Message catalogue") for the host.

Payloads are msgpack arrays with positional fields. The compatibility rule lives here, once:
fields are only ever appended, so a reader fills missing trailing fields with their defaults and
ignores (and counts) trailing fields it does not know. Unknown message types never reach this module:
the FrameReader counts and skips them.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from liftwatch.protocol import lwproto as _lw
from liftwatch.protocol.framing import Frame


class MessageType(enum.IntEnum):
    HELLO = _lw.T_HELLO
    STATE = _lw.T_STATE
    VIB = _lw.T_VIB
    STATS = _lw.T_STATS
    EVENT = _lw.T_EVENT
    COUNTERS = _lw.T_COUNTERS
    HEARTBEAT = _lw.T_HEARTBEAT
    ACK = _lw.T_ACK
    TIME_SYNC = _lw.T_TIME_SYNC
    CONFIG = _lw.T_CONFIG
    CONTROL = _lw.T_CONTROL


class Input(enum.IntFlag):
    """Bits of the `inputs`/`changed` masks (STATE, HEARTBEAT, sim feed)."""

    DOOR_CLOSED = 0x01
    ZONE_UP = 0x02  # upper door-zone sensor (vane/magnet) covered
    ZONE_DN = 0x04  # lower door-zone sensor covered; both covered = level at a floor
    PRESENCE = 0x08  # someone in the car (PIR / mmWave)
    INSPECTION = 0x10  # inspection (maintenance) switch on the car top
    ALARM_BUTTON = 0x20


class _TolerantIntEnum(enum.IntEnum):
    @classmethod
    def convert(cls, value: int):  # noqa: ANN206 - returns cls | None
        """None for a value this host does not know (a newer board), instead of raising."""
        try:
            return cls(value)
        except ValueError:
            return None


class Motion(_TolerantIntEnum):
    REST = 0
    ACCELERATING = 1
    MOVING = 2
    DECELERATING = 3
    UNCALIBRATED = 255


class BoardEventKind(_TolerantIntEnum):
    """Conditions the board detects itself (EVENT `kind`)."""

    DOOR_OPEN_WHILE_MOVING = 1
    STOPPED_OUTSIDE_DOOR_ZONE = 2
    ALARM_BUTTON_HELD = 3
    SENSOR_FAULT = 4
    SAFE_MODE = 5
    RING_OVERRUN = 6


class Command(enum.IntEnum):
    """CONTROL `command`."""

    REBOOT = 1
    CALIBRATE = 2
    STREAM_MODE = 3
    REQUEST_HELLO = 4
    REQUEST_COUNTERS = 5


class StreamMode(enum.IntEnum):
    """CONTROL STREAM_MODE `arg`."""

    AUTO = 0  # VIB around trips, STATS at rest (default)
    ALWAYS_VIB = 1  # raw blocks all the time (commissioning, recording a trace)
    NO_VIB = 2  # STATS only (a starved link)


class AckStatus(enum.IntEnum):
    OK = 0
    REFUSED = 1  # e.g. a CONFIG value out of range; `reason` says which
    UNKNOWN = 2  # the board does not know what is acknowledged / commanded
    BUSY = 3


class Message:
    """Base of the typed views: positional decoding with the append-only compatibility rule."""

    TYPE: ClassVar[MessageType]

    @classmethod
    def from_payload(cls, payload: Any, unknown_fields: Counter | None = None) -> Message:
        """Decode positional fields; trailing fields this host does not know are counted per type
        in ``unknown_fields`` (the compatibility rule: count, never fail)."""
        if not isinstance(payload, list):
            raise MessageError(cls.TYPE, "payload is not an array")
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        if len(payload) > len(names):
            if unknown_fields is not None:
                unknown_fields[cls.TYPE.name] += len(payload) - len(names)
            payload = payload[: len(names)]
        try:
            return cls(*payload)
        except TypeError as exc:  # a required (non-defaulted) field is missing
            raise MessageError(cls.TYPE, str(exc)) from None

    def to_payload(self) -> list:
        return [getattr(self, f.name) for f in fields(self)]  # type: ignore[arg-type]


class MessageError(ValueError):
    """A known message type whose payload does not fit its definition."""

    def __init__(self, mtype: MessageType, detail: str) -> None:
        super().__init__(f"{mtype.name}: {detail}")
        self.mtype = mtype


@dataclass(frozen=True, slots=True)
class Hello(Message):
    TYPE: ClassVar[MessageType] = MessageType.HELLO
    board_id: str
    fw_version: str
    sensor_model: str
    config_hash: int
    reset_cause: str
    capabilities: list = ()  # type: ignore[assignment]
    rate_hz: int = 400
    lsb_per_g: int = 16384
    calibrated: bool = False
    safe_mode: bool = False
    boots: int = 0
    gravity: list | None = None


@dataclass(frozen=True, slots=True)
class State(Message):
    TYPE: ClassVar[MessageType] = MessageType.STATE
    event_t_ms: int
    inputs: int
    changed: int
    motion: int = Motion.UNCALIBRATED


@dataclass(frozen=True, slots=True)
class Vib(Message):
    TYPE: ClassVar[MessageType] = MessageType.VIB
    rate_hz: int
    lsb_per_g: int
    first_index: int
    count: int
    samples: bytes


@dataclass(frozen=True, slots=True)
class Stats(Message):
    TYPE: ClassVar[MessageType] = MessageType.STATS
    window_ms: int
    count: int
    mean_mg: list
    rms_mg: list
    peak_mg: int
    motion: int = Motion.UNCALIBRATED


@dataclass(frozen=True, slots=True)
class Event(Message):
    TYPE: ClassVar[MessageType] = MessageType.EVENT
    event_id: int
    kind: int
    state: int
    event_t_ms: int
    detail: dict | None = None


@dataclass(frozen=True, slots=True)
class Counters(Message):
    TYPE: ClassVar[MessageType] = MessageType.COUNTERS
    door_cycles: int
    trips: int
    run_time_s: int
    boots: int
    fifo_overruns: int = 0
    ring_overruns: int = 0
    link_drops: int = 0
    events_dropped: int = 0


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    TYPE: ClassVar[MessageType] = MessageType.HEARTBEAT
    uptime_s: int
    heap_free: int
    queue_depth: int
    motion: int = Motion.UNCALIBRATED
    inputs: int = 0
    calibrated: bool = False
    safe_mode: bool = False


@dataclass(frozen=True, slots=True)
class Ack(Message):
    TYPE: ClassVar[MessageType] = MessageType.ACK
    ack_type: int
    ack_id: int
    status: int = AckStatus.OK
    reason: str = ""
    extra: Any = None


@dataclass(frozen=True, slots=True)
class TimeSync(Message):
    TYPE: ClassVar[MessageType] = MessageType.TIME_SYNC
    host_unix_ms: int
    board_t_ms: int | None = None  # set in the board's reply


@dataclass(frozen=True, slots=True)
class Config(Message):
    TYPE: ClassVar[MessageType] = MessageType.CONFIG
    settings: dict


@dataclass(frozen=True, slots=True)
class Control(Message):
    TYPE: ClassVar[MessageType] = MessageType.CONTROL
    command: int
    arg: int = 0


MESSAGE_CLASSES: dict[int, type[Message]] = {
    cls.TYPE: cls for cls in (Hello, State, Vib, Stats, Event, Counters, Heartbeat, Ack, TimeSync, Config, Control)
}


def decode_message(frame: Frame, unknown_fields: Counter | None = None) -> Message:
    """Typed view of a frame's payload; MessageError if it does not fit the definition."""
    return MESSAGE_CLASSES[frame.type].from_payload(frame.payload, unknown_fields)
