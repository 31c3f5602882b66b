"""Typed views of protocol messages (SPEC.md, "Message catalogue") for the host.

Payloads are msgpack arrays with positional fields. The compatibility rule lives here, once:
fields are only ever appended, so a reader fills missing trailing fields with their defaults and
ignores (and counts) trailing fields it does not know. Unknown message types never reach this module:
the FrameReader counts and skips them.
"""

from __future__ import annotations

import enum
import struct
from collections import Counter
from dataclasses import MISSING, dataclass, fields
from collections.abc import Callable
from typing import Any, ClassVar

from liftwatch.errors import LiftwatchError
from liftwatch.protocol import lwota as _ota
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
    JOURNAL = _lw.T_JOURNAL
    OTA_CHUNK = _ota.T_OTA_CHUNK
    OTA_STATUS = _ota.T_OTA_STATUS


class Input(enum.IntFlag):
    """Bits of the `inputs`/`changed` masks (STATE, HEARTBEAT, sim feed)."""

    DOOR_CLOSED = _lw.IN_DOOR_CLOSED
    ZONE_UP = _lw.IN_ZONE_UP
    ZONE_DN = _lw.IN_ZONE_DN
    PRESENCE = _lw.IN_PRESENCE
    INSPECTION = _lw.IN_INSPECTION
    ALARM_BUTTON = _lw.IN_ALARM_BUTTON
    MAINS = _lw.IN_MAINS


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


class JournalKind(_TolerantIntEnum):
    """What a JOURNAL record is about (JOURNAL `kind`)."""

    TRIP = _lw.J_TRIP
    DOOR_CYCLE = _lw.J_DOOR_CYCLE
    INSPECTION = _lw.J_INSPECTION


class Command(enum.IntEnum):
    """CONTROL `command`."""

    REBOOT = _lw.CMD_REBOOT
    CALIBRATE = _lw.CMD_CALIBRATE
    STREAM_MODE = _lw.CMD_STREAM_MODE
    REQUEST_HELLO = _lw.CMD_REQUEST_HELLO
    REQUEST_COUNTERS = _lw.CMD_REQUEST_COUNTERS
    OTA_QUERY = _ota.CMD_OTA_QUERY
    OTA_INSTALL = _ota.CMD_OTA_INSTALL
    OTA_ABORT = _ota.CMD_OTA_ABORT
    OTA_ROLLBACK = _ota.CMD_OTA_ROLLBACK


class OtaState(_TolerantIntEnum):
    """OTA_STATUS `state`."""

    IDLE = _ota.OTA_IDLE
    RECEIVING = _ota.OTA_RECEIVING
    INSTALLING = _ota.OTA_INSTALLING
    REFUSED = _ota.OTA_REFUSED
    ROLLING_BACK = _ota.OTA_ROLLING_BACK


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


class MessageError(LiftwatchError, ValueError):
    """A known message type whose payload does not fit its definition: not an array, a required
    field missing, a field of another type than SPEC.md section 5 gives it, or fields that
    contradict each other. The one error every view raises; `field` names the field at fault
    ("" for the payload as a whole)."""

    def __init__(self, mtype: MessageType, detail: str, field: str = "") -> None:
        super().__init__(f"{mtype.name}: {field + ': ' if field else ''}{detail}")
        self.mtype = mtype
        self.field = field


class _Misfit(Exception):
    """A value that does not fit its field's kind (raised again as MessageError with the field)."""


# Field kinds, keyed by the annotation that declares a field in the views below: the annotations
# are the schema. Each takes the msgpack value and returns the view's value, or raises _Misfit.
# msgpack yields exactly int, bool, str, bytes, list, dict and None, so exact type checks suffice
# (a bool is not an int here).


def _exactly(python_type: type, what: str) -> Callable[[Any], Any]:
    def kind(v: Any) -> Any:
        if type(v) is python_type:
            return v
        raise _Misfit(what)

    return kind


_int = _exactly(int, "an int")


def _bytes(v: Any) -> bytes:
    if type(v) is bytes:
        return v
    if type(v) is bytearray:
        return bytes(v)
    raise _Misfit("bin")


def _xyz(v: Any) -> tuple[int, int, int]:
    """[x, y, z]; a float is taken and truncated to int, as the host always did."""
    if type(v) in (list, tuple) and len(v) == 3 and all(type(c) in (int, float) for c in v):
        return (int(v[0]), int(v[1]), int(v[2]))
    raise _Misfit("[x, y, z] numbers")


def _strs(v: Any) -> tuple[str, ...]:
    if type(v) in (list, tuple) and all(type(c) is str for c in v):
        return tuple(v)
    raise _Misfit("a list of str")


def _map(v: Any) -> dict:
    if type(v) is dict:
        return v
    raise _Misfit("a map")


def _or_nil(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def nil_or(v: Any) -> Any:
        return None if v is None else kind(v)

    return nil_or


def _any(v: Any) -> Any:
    return v


Xyz = tuple[int, int, int]

_KINDS: dict[str, Callable[[Any], Any]] = {
    "int": _int, "int | None": _or_nil(_int), "str": _exactly(str, "a str"), "bool": _exactly(bool, "a bool"),
    "bytes": _bytes,
    "Xyz": _xyz, "Xyz | None": _or_nil(_xyz), "tuple[str, ...]": _strs,
    "dict": _map, "dict | None": _or_nil(_map), "Any": _any,
}


class Message:
    """Base of the typed views: positional decoding with the append-only compatibility rule, and
    each field checked against its declared kind, so what consumes a view never checks a type.

    The views are slotted dataclasses, not frozen ones: one is built for nearly every frame, and a
    frozen dataclass's __init__ costs four times a plain one (0.93 against 0.23 us for VIB's five
    fields). Treat them as read-only all the same."""

    TYPE: ClassVar[MessageType]
    _NAMES: ClassVar[tuple[str, ...]]  # fields in wire order
    _KIND_OF: ClassVar[tuple[Callable[[Any], Any], ...]]  # and their kinds
    _REQUIRED: ClassVar[int]  # leading fields without a default
    _CROSS_CHECKED: ClassVar[bool]  # the view has rules across fields (`_inconsistency`)
    # All four set below the views, from their dataclass fields.

    @classmethod
    def from_payload(cls, payload: Any, unknown_fields: Counter | None = None) -> Message:
        """Decode positional fields; trailing fields this host does not know are counted per type
        in ``unknown_fields`` (the compatibility rule: count, never fail). MessageError if the
        payload does not fit the definition."""
        if cls.fits(payload):
            return cls(*payload)
        if type(payload) is not list:
            raise MessageError(cls.TYPE, "payload is not an array")
        kinds = cls._KIND_OF
        if len(payload) > len(kinds):
            if unknown_fields is not None:
                unknown_fields[cls.TYPE.name] += len(payload) - len(kinds)
        elif len(payload) < cls._REQUIRED:
            raise MessageError(cls.TYPE, "missing", cls._NAMES[len(payload)])
        try:
            values = [kind(value) for kind, value in zip(kinds, payload)]
        except _Misfit:
            raise cls._misfit(payload) from None
        view = cls(*values)
        if cls._CROSS_CHECKED:
            problem = view._inconsistency()
            if problem:
                raise MessageError(cls.TYPE, problem)
        return view

    @classmethod
    def _misfit(cls, payload: list) -> MessageError:
        """The error for the first field that does not fit (the slow path, after a misfit)."""
        for name, kind, value in zip(cls._NAMES, cls._KIND_OF, payload):
            try:
                kind(value)
            except _Misfit as err:
                return MessageError(cls.TYPE, f"expected {err}, got {type(value).__name__}", name)
        raise AssertionError("no field misfits")

    @staticmethod
    def fits(payload: Any) -> bool:
        """Whether `payload` is exactly the fields boards send today, of their kinds and consistent,
        so `from_payload` takes it as it is, with nothing to count or convert. The views of the
        frames that come by the hundred per second (VIB, STATE) answer it with a few exact type
        tests; the others say False and take the general path."""
        return False

    def _inconsistency(self) -> str:
        """What contradicts itself across fields, "" if nothing (a view with such rules overrides)."""
        return ""

    def to_payload(self) -> list:
        return [getattr(self, f.name) for f in fields(self)]  # type: ignore[arg-type]


@dataclass(slots=True)
class Hello(Message):
    TYPE: ClassVar[MessageType] = MessageType.HELLO
    board_id: str
    fw_version: str
    sensor_model: str
    config_hash: int
    reset_cause: str
    capabilities: tuple[str, ...] = ()
    rate_hz: int = 400
    lsb_per_g: int = 16384
    calibrated: bool = False
    safe_mode: bool = False
    boots: int = 0
    gravity: Xyz | None = None  # counts at rest from calibration; None until calibrated
    # The firmware update boot record as the board keeps it (firmware/otaboot.py): "cur prev trial
    # cur_version prev_version", "" before any update. Sent raw: every name the board adds costs its
    # boot heap; `prev_fw_version` and `update` read it here.
    update_record: str = ""

    @property
    def prev_fw_version(self) -> str:
        """The firmware a rollback returns to ("" before any update)."""
        fields = self.update_record.split()
        return fields[4] if len(fields) == 5 and fields[4] != "-" else ""

    @property
    def update(self) -> str:
        """"" (never updated), "trial" (a new firmware not yet confirmed), "confirmed", "rolled_back"."""
        fields = self.update_record.split()
        if len(fields) != 5 or fields[4] == "-":  # "-": an install asked for, nothing staged yet
            return ""
        return {"c": "confirmed", "r": "rolled_back"}.get(fields[2], "trial")


@dataclass(slots=True)
class State(Message):
    TYPE: ClassVar[MessageType] = MessageType.STATE
    event_t_ms: int
    inputs: int
    changed: int
    motion: int = Motion.UNCALIBRATED

    @staticmethod
    def fits(payload: Any) -> bool:
        """See Message.fits."""
        if type(payload) is not list or len(payload) != 4:
            return False
        t, inputs, changed, motion = payload
        return type(t) is int and type(inputs) is int and type(changed) is int and type(motion) is int


@dataclass(slots=True)
class Vib(Message):
    TYPE: ClassVar[MessageType] = MessageType.VIB
    rate_hz: int
    lsb_per_g: int
    first_index: int
    count: int
    samples: bytes

    @staticmethod
    def fits(payload: Any) -> bool:
        """See Message.fits. VIB is most of the traffic: the run merge (edge_daemon/vib_runs.py)
        takes the frames after a run's first with this test alone, without a view each."""
        if type(payload) is not list or len(payload) != 5:
            return False
        rate, lsb, first, count, samples = payload
        return (type(rate) is int and type(lsb) is int and type(first) is int and type(count) is int
                and type(samples) is bytes and rate > 0 and count > 0 and len(samples) == count * 6)

    def _inconsistency(self) -> str:
        if self.rate_hz <= 0 or self.count <= 0:
            return f"rate_hz {self.rate_hz} and count {self.count} must be positive"
        if len(self.samples) != self.count * 6:
            return f"{len(self.samples)} sample bytes for {self.count} samples (6 each)"
        return ""


@dataclass(slots=True)
class Stats(Message):
    TYPE: ClassVar[MessageType] = MessageType.STATS
    window_ms: int
    count: int
    mean_mg: Xyz
    rms_mg: Xyz
    peak_mg: int
    motion: int = Motion.UNCALIBRATED


@dataclass(slots=True)
class Event(Message):
    TYPE: ClassVar[MessageType] = MessageType.EVENT
    event_id: int
    kind: int
    state: int
    event_t_ms: int
    detail: dict | None = None


@dataclass(slots=True)
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


@dataclass(slots=True)
class Heartbeat(Message):
    TYPE: ClassVar[MessageType] = MessageType.HEARTBEAT
    uptime_s: int
    heap_free: int
    queue_depth: int
    motion: int = Motion.UNCALIBRATED
    inputs: int = 0
    calibrated: bool = False
    safe_mode: bool = False


@dataclass(slots=True)
class Ack(Message):
    TYPE: ClassVar[MessageType] = MessageType.ACK
    ack_type: int
    ack_id: int
    status: int = AckStatus.OK
    reason: str = ""
    extra: Any = None


@dataclass(slots=True)
class TimeSync(Message):
    TYPE: ClassVar[MessageType] = MessageType.TIME_SYNC
    host_unix_ms: int
    board_t_ms: int | None = None  # set in the board's reply


@dataclass(slots=True)
class Config(Message):
    TYPE: ClassVar[MessageType] = MessageType.CONFIG
    settings: dict


@dataclass(slots=True)
class Control(Message):
    TYPE: ClassVar[MessageType] = MessageType.CONTROL
    command: int
    arg: int = 0


@dataclass(slots=True)
class OtaChunk(Message):
    TYPE: ClassVar[MessageType] = MessageType.OTA_CHUNK
    bundle_id: int
    offset: int
    total: int
    chunk: bytes


@dataclass(slots=True)
class OtaStatus(Message):
    TYPE: ClassVar[MessageType] = MessageType.OTA_STATUS
    bundle_id: int
    have: int
    state: int
    reason: str = ""  # why it was refused (state REFUSED); the versions are in HELLO


JOURNAL_RECORD = struct.Struct("<BBHIIIHbBBB")  # SPEC.md section 5, "JOURNAL record" (crc u16 BE follows)
JOURNAL_RECORD_BYTES = JOURNAL_RECORD.size + 2
JOURNAL_MAGIC = 0x4A


def pack_journal_record(seq: int, kind: int, boot_id: int, start_t_ms: int, end_t_ms: int, direction: int = 0,
                        count: int = 0, peak_speed_mm_s: int = 0, inputs_start: int = 0, inputs_end: int = 0) -> bytes:
    """A JOURNAL record as the board writes it to flash and sends it (test vectors, tests)."""
    body = JOURNAL_RECORD.pack(JOURNAL_MAGIC, kind, boot_id, seq, start_t_ms, end_t_ms, peak_speed_mm_s, direction,
                               count, inputs_start, inputs_end)
    return body + _lw.crc16(body, 0, len(body)).to_bytes(2, "big")


@dataclass(slots=True)
class Journal(Message):
    """One record of the board's flash journal, sent as the board keeps it (CRC included, so a record
    damaged in flash or on the way is refused): a trip, door cycle or inspection period with the
    board time (of boot `boot_id`) it started and ended at. The host ACKs `seq` once it is stored."""

    TYPE: ClassVar[MessageType] = MessageType.JOURNAL
    board_id: str  # the board whose journal holds it (a swapped board's flash is refused by this)
    record: bytes
    skipped: int = 0  # records the board found torn or corrupt so far (never sent)

    def _inconsistency(self) -> str:
        r = self.record
        if len(r) != JOURNAL_RECORD_BYTES:
            return f"record of {len(r)} bytes, not {JOURNAL_RECORD_BYTES}"
        if r[0] != JOURNAL_MAGIC or _lw.crc16(r, 0, len(r)) != 0:
            return "record fails its magic byte or CRC"
        if not 0 <= self.seq < _lw.T_MS_MODULO or not -1 <= self.direction <= 1:
            return f"seq {self.seq} or direction {self.direction} out of range"
        return ""

    def _field(self, i: int) -> int:
        return JOURNAL_RECORD.unpack_from(self.record)[i]

    kind = property(lambda self: self._field(1), doc="JournalKind value")
    boot_id = property(lambda self: self._field(2), doc="the boot it happened in")
    seq = property(lambda self: self._field(3), doc="the record's number (ACK ack_id)")
    start_t_ms = property(lambda self: self._field(4))
    end_t_ms = property(lambda self: self._field(5))
    peak_speed_mm_s = property(lambda self: self._field(6), doc="trip: the board's integrated peak speed")
    direction = property(lambda self: self._field(7), doc="trip: +1 up, -1 down, 0 unknown")
    count = property(lambda self: self._field(8), doc="trip: door zones entered; door cycle: reopenings")
    inputs_start = property(lambda self: self._field(9), doc="input bits when it started")
    inputs_end = property(lambda self: self._field(10), doc="input bits when it ended")


MESSAGE_CLASSES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (Hello, State, Vib, Stats, Event, Counters, Heartbeat, Ack, TimeSync, Config, Control, Journal,
                OtaChunk, OtaStatus)
}

for _cls in MESSAGE_CLASSES.values():  # each field's kind from its annotation (KeyError: a kind _KINDS lacks)
    _cls._NAMES = tuple(f.name for f in fields(_cls))
    _cls._KIND_OF = tuple(_KINDS[f.type] for f in fields(_cls))
    _cls._REQUIRED = sum(1 for f in fields(_cls) if f.default is MISSING)
    _cls._CROSS_CHECKED = _cls._inconsistency is not Message._inconsistency


def decode_message(frame: Frame, unknown_fields: Counter | None = None) -> Message:
    """Typed view of a frame's payload; MessageError if it does not fit the definition."""
    return MESSAGE_CLASSES[frame.type].from_payload(frame.payload, unknown_fields)
