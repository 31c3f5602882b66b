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

    DOOR_CLOSED = _lw.IN_DOOR_CLOSED
    ZONE_UP = _lw.IN_ZONE_UP
    ZONE_DN = _lw.IN_ZONE_DN
    PRESENCE = _lw.IN_PRESENCE
    INSPECTION = _lw.IN_INSPECTION
    ALARM_BUTTON = _lw.IN_ALARM_BUTTON


class _TolerantIntEnum(enum.IntEnum):
    @classmethod
    def convert(cls, value: int):  # noqa: ANN206 - returns cls | None
        """None for a value this host does not know (a newer board), instead of raising."""
        try:
            return cls(value)
        except ValueError:
            return None


class Motion(_TolerantIntEnum):
    REST = _lw.MOTION_REST
    ACCELERATING = _lw.MOTION_ACCELERATING
    MOVING = _lw.MOTION_MOVING
    DECELERATING = _lw.MOTION_DECELERATING
    UNCALIBRATED = _lw.MOTION_UNCALIBRATED


class BoardEventKind(_TolerantIntEnum):
    """Conditions the board detects itself (EVENT `kind`)."""

    DOOR_OPEN_WHILE_MOVING = _lw.KIND_DOOR_OPEN_WHILE_MOVING
    STOPPED_OUTSIDE_DOOR_ZONE = _lw.KIND_STOPPED_OUTSIDE_DOOR_ZONE
    ALARM_BUTTON_HELD = _lw.KIND_ALARM_BUTTON_HELD
    SENSOR_FAULT = _lw.KIND_SENSOR_FAULT
    SAFE_MODE = _lw.KIND_SAFE_MODE
    RING_OVERRUN = _lw.KIND_RING_OVERRUN


class Command(enum.IntEnum):
    """CONTROL `command`."""

    REBOOT = _lw.CMD_REBOOT
    CALIBRATE = _lw.CMD_CALIBRATE
    STREAM_MODE = _lw.CMD_STREAM_MODE
    REQUEST_HELLO = _lw.CMD_REQUEST_HELLO
    REQUEST_COUNTERS = _lw.CMD_REQUEST_COUNTERS


class StreamMode(enum.IntEnum):
    """CONTROL STREAM_MODE `arg`."""

    AUTO = _lw.STREAM_AUTO
    ALWAYS_VIB = _lw.STREAM_ALWAYS_VIB
    NO_VIB = _lw.STREAM_NO_VIB


class AckStatus(enum.IntEnum):
    OK = _lw.ACK_OK
    REFUSED = _lw.ACK_REFUSED
    UNKNOWN = _lw.ACK_UNKNOWN
    BUSY = _lw.ACK_BUSY


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
