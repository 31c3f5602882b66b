"""The frame-level fake board: what firmware/link.py does on its UART, in a few lines, on a pty.

It sends HELLO, heartbeats and EVENTs (re-sending an EVENT until it is ACKed), answers TIME_SYNC and
a CONTROL request for HELLO, and keeps the host's frames. The daemon opens the slave side of its pty
through its serial transport, as it opens /dev/serial/by-id/... on a Pi. The real firmware on the
mock board is in hil_tests/; this one is for tests of the daemon that need many boards, or a board
that misbehaves on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from liftwatch.edge_daemon.observations import BoardEventKind
from liftwatch.hil.mockboard.ptys import PtyPort
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol import messages as m
from liftwatch.protocol.framing import Frame, FrameReader, encode_frame

# Input bits of a car at rest at a floor: door closed, both zone sensors covered.
DOOR_CLOSED_IN_ZONE = lw.IN_DOOR_CLOSED | lw.IN_ZONE_UP | lw.IN_ZONE_DN
GRAVITY = [0, 0, 16384]  # 1 g on z at 16384 counts per g


def hello_payload(board_id: str, boot_id: int, *, firmware: str = "1.0.0", config_hash: int = 5,
                  gravity: list[int] | None = GRAVITY) -> list:
    """A HELLO as a lis3dh board at 400 Hz sends it after a power-on."""
    return [board_id, firmware, "lis3dh", config_hash, "power_on", [], 400, 16384, gravity is not None, False,
            boot_id, gravity]


def frames(*spec: tuple[int, list], boot_id: int = 3, t0_ms: int = 1000) -> list[Frame]:
    """Decoded frames (type, payload) of one boot with seq 0, 1, ... and board times 10 ms apart."""
    reader = FrameReader()
    out: list[Frame] = []
    for seq, (mtype, payload) in enumerate(spec):
        out += reader.feed(encode_frame(mtype, payload, boot_id, seq, t0_ms + 10 * seq))
    return out


# One boot's first frames, for frames(): HELLO, the car at rest at a floor, alarm button EVENT 77.
HELLO = (lw.T_HELLO, hello_payload("b-1", 3, firmware="1.0", config_hash=0))
STATE = (lw.T_STATE, [1005, DOOR_CLOSED_IN_ZONE, DOOR_CLOSED_IN_ZONE, 0])
ALARM = (lw.T_EVENT, [77, int(BoardEventKind.ALARM_BUTTON_HELD), 1, 1015, {}])


class PtyBoard(PtyPort):
    """Board side of one pty. With ``key`` it tags its frames and requires the host's to be tagged."""

    def __init__(self, link_path: str, board_id: str = "board-0", boot_id: int = 1, *,
                 key: bytes | None = None) -> None:
        self.board_id, self.boot_id, self.key = board_id, boot_id, key
        self.seq = 0
        self.t0 = time.monotonic()
        self.unacked: dict[int, list] = {}  # event_id -> payload
        self.acked: list[int] = []
        self.host_frames: list[Frame] = []
        self.sent = bytearray()  # every frame as it went on the wire (or was lost, unplugged)
        self.deaf_to_acks = False  # the board misses our ACKs (line noise on its RX)
        self.talking = True  # heartbeats from live(); False: a hung board that keeps its port open
        self.reader = FrameReader(key=key, require_tag=key is not None)
        super().__init__(link_path)

    def t_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000) % lw.T_MS_MODULO

    def send(self, mtype: int, payload: list) -> None:
        wire = encode_frame(mtype, payload, self.boot_id, self.seq, self.t_ms(), key=self.key)
        self.seq = (self.seq + 1) % 0x10000
        self.sent += wire
        try:
            self.write(wire)
        except OSError:
            pass  # unplugged or the host not reading: the frame is lost on the wire, as on a real UART

    def hello(self) -> None:
        self.send(lw.T_HELLO, hello_payload(self.board_id, self.boot_id))

    def raise_event(self, event_id: int, kind: int = BoardEventKind.ALARM_BUTTON_HELD) -> None:
        self.unacked[event_id] = [event_id, int(kind), 1, self.t_ms(), {}]
        self.send(lw.T_EVENT, self.unacked[event_id])

    def poll(self) -> None:
        """Read host frames: ACKs settle events, TIME_SYNC is answered, HELLO re-sent on request."""
        for f in self.reader.feed(self.read()):
            self.host_frames.append(f)
            if f.type == lw.T_ACK and f.payload[0] == lw.T_EVENT and not self.deaf_to_acks:
                if self.unacked.pop(f.payload[1], None) is not None:
                    self.acked.append(f.payload[1])
            elif f.type == lw.T_TIME_SYNC:
                self.send(lw.T_TIME_SYNC, [f.payload[0], self.t_ms()])
            elif f.type == lw.T_CONTROL and f.payload[0] == m.Command.REQUEST_HELLO:
                self.hello()

    async def live(self, stop: asyncio.Event, period_s: float = 0.05, beat_s: float = 0.5) -> None:
        """Heartbeat (while `talking`) and re-send un-ACKed events, as the firmware's link loop does."""
        last_beat = last_resend = 0.0
        while not stop.is_set():
            self.poll()
            now = time.monotonic()
            if self.talking and now - last_beat > beat_s:
                last_beat = now
                self.send(lw.T_HEARTBEAT, [int(now - self.t0), 50000, len(self.unacked), 0,
                                           DOOR_CLOSED_IN_ZONE, True, False])
            if now - last_resend > 0.3:
                last_resend = now
                for payload in list(self.unacked.values()):
                    self.send(lw.T_EVENT, payload)
            await asyncio.sleep(period_s)

    @contextlib.asynccontextmanager
    async def living(self, period_s: float = 0.05, beat_s: float = 0.5, *, close: bool = True) -> AsyncIterator[None]:
        """The board's live loop for the body of an ``async with``; then the board is closed, unless
        ``close=False`` keeps its port for a later run."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.live(stop, period_s, beat_s))
        try:
            yield
        finally:
            stop.set()
            await task
            if close:
                self.close()
