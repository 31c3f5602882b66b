"""The soak's simulated board: a protocol-level board on a pty that speaks SPEC.md the way
firmware/link.py does (persistent boot id and event ids, EVENTs kept in "flash" and re-sent until
ACKed, HELLO at boot and on request, TIME_SYNC answers, heartbeats, STATE frames for trips and
maintenance visits, and, as firmware/journal.py, a JOURNAL record of every trip and inspection
period it finished, kept and re-sent until ACKed), and records each trip, visit and EVENT it makes
in the soak's ledger, with the faults that touched its frames and the journal seq it holds it under.
"""

from __future__ import annotations

import collections
import random
from pathlib import Path
from typing import Any, Protocol

from soak_reconcile import Item, Ledger

from liftwatch.hil.mockboard.ptys import PtyPort
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import FrameReader, encode_frame
from liftwatch.protocol.messages import pack_journal_record

HEARTBEAT_S = 5.0
EVENT_RESEND_S = 10.0  # board time between re-sends of an un-ACKed EVENT
DOOR_CLOSED, ZONE_UP, ZONE_DN, INSPECTION = lw.IN_DOOR_CLOSED, lw.IN_ZONE_UP, lw.IN_ZONE_DN, lw.IN_INSPECTION
LEVEL = ZONE_UP | ZONE_DN
# Motion codes of the trip script (set_inputs' third field).
REST, ACCEL, MOVING, DECEL = lw.MOTION_REST, lw.MOTION_ACCELERATING, lw.MOTION_MOVING, lw.MOTION_DECELERATING


class Harness(Protocol):
    """What a board asks of the soak: is the daemon up, where to capture frames, the ledger."""

    daemon_up: bool
    capture: dict[int, list] | None
    ledger: Ledger


class SimBoard(PtyPort):
    """One board on a pty (the daemon opens the slave through a symlink, as /dev/serial/by-id)."""

    def __init__(self, index: int, workdir: Path, rng: random.Random, soak: Harness) -> None:
        self.index, self.rng, self.soak = index, rng, soak
        self.board_id = f"lw-soak{index:04d}"
        self.boot_id = rng.randrange(1, 60000)  # persistent in "flash"
        self.next_event_id = 1
        self.unacked: dict[int, list] = {}  # event_id -> EVENT payload ("flash")
        self.next_journal_seq = 0
        self.journal_unacked: dict[int, list] = {}  # seq -> JOURNAL payload ("flash", as firmware/journal.py)
        self.alarm_clear_sent = True  # one alarm at a time: a raise while one is active is merged upstream
        self.seq = 0
        self.boot_sim = 0.0
        self.powered = False
        self.reader = FrameReader(sender=lw.FROM_HOST)  # it reads what the daemon sends
        self.inputs = DOOR_CLOSED | LEVEL
        self.motion = REST
        self.script: collections.deque[tuple[float, Any]] = collections.deque()
        self.open_items: list[Item] = []  # items whose frames are being sent now
        self.cut_until = 0.0
        self.garbage_until = 0.0
        self.listening = False  # the daemon has this port open (from its status file)
        self.connects_seen = 0
        self.last_beat = -1e9
        self.last_resend = -1e9
        self.frames_sent = self.frames_lost = 0
        super().__init__(str(workdir / f"tty{index}"))

    # -- link
    def t_ms(self, now: float) -> int:
        return int((now - self.boot_sim) * 1000) % lw.T_MS_MODULO

    def transmit(self, wire: bytes, now: float, risk_items: list[Item]) -> None:
        """A frame on the UART, unless a fault loses it; the items it belongs to learn which."""
        lost_reason = None
        if not self.powered:
            return
        if now < self.cut_until or not self.plugged:
            lost_reason = "serial_cut"
        elif not self.soak.daemon_up:
            lost_reason = "daemon_sigkill"
        elif not self.listening:
            # Written before the daemon (re)opened the port: a serial open flushes the input, as a
            # UART adapter drops what came before the port was opened.
            lost_reason = "port_not_open"
        if lost_reason is None and now < self.garbage_until and self.rng.random() < 0.3:
            # line noise: a byte of the frame flipped, or garbage glued in front of it
            w = bytearray(wire)
            if self.rng.random() < 0.5:
                i = self.rng.randrange(len(w) - 1)
                w[i] = (w[i] ^ (1 << self.rng.randrange(8))) or 0x55
            else:
                w[:0] = self.rng.randbytes(self.rng.randrange(1, 200))
            wire = bytes(w)
            lost_reason = "serial_garbage"
        if lost_reason in (None, "serial_garbage", "port_not_open"):
            if self.soak.capture is not None:
                self.soak.capture[self.index].append((now, wire))
            try:
                if self.write(wire) < len(wire):
                    lost_reason = "board_link_full"  # the frame's tail did not fit: torn on the line
            except BlockingIOError:
                lost_reason = "board_link_full"  # the daemon is not reading: the UART queue overflows
            except OSError:
                lost_reason = "daemon_sigkill" if not self.soak.daemon_up else "serial_cut"
        self.frames_sent += 1
        if lost_reason is not None:
            self.frames_lost += lost_reason not in ("serial_garbage", "port_not_open")
            for item in risk_items:
                item.risks.add(lost_reason)

    def send(self, mtype: int, payload: list, now: float, items: list[Item] | None = None) -> None:
        wire = encode_frame(mtype, payload, self.boot_id, self.seq, self.t_ms(now))
        self.seq = (self.seq + 1) & 0xFFFF
        self.transmit(wire, now, self.open_items if items is None else items)

    # -- board behaviour
    def boot(self, now: float, cause: str) -> None:
        self.powered = True
        self.boot_id = (self.boot_id + 1) & 0xFFFF
        self.seq, self.boot_sim = 0, now
        self.transmit(b"\x00", now, [])  # closes whatever partial frame the reader held
        self.hello(now, cause)
        self.send(lw.T_STATE, [self.t_ms(now), self.inputs, 0, self.motion], now)
        self.last_resend = -1e9

    def hello(self, now: float, cause: str = "power_on") -> None:
        self.send(lw.T_HELLO, [self.board_id, "soak-1.0", "lis3dh", 7, cause, [], 400, 16384, True, False,
                               self.boot_id, [0, 0, 16384]], now, [])

    def power_off(self, now: float, reason: str) -> None:
        self.powered = False
        for item in self.open_items:  # a trip or visit cut by the power cut cannot be whole upstream
            item.risks.add(reason)
            if item.kind == "trip":
                item.end_sim = now
                self.soak.ledger.items.append(item)
        self.script.clear()  # the car's activity while the board is off is unseen: not ground truth
        self.open_items = [i for i in self.open_items if i.kind == "maintenance"]
        self.motion = REST

    def set_inputs(self, now: float, inputs: int, motion: int | None = None, at: float | None = None) -> None:
        """STATE for a change that happened at ``at`` (the board stamps the change, not the send:
        a harness that falls behind at 600x sends late, but the car's timing stays right)."""
        changed = inputs ^ self.inputs
        self.inputs = inputs
        if motion is not None:
            self.motion = motion
        self.send(lw.T_STATE, [self.t_ms(now if at is None else at), inputs, changed, self.motion], now)

    def plan_trip(self, start: float) -> None:
        floors = self.rng.randint(1, 5)
        trip = Item("trip", self.index, start, floors=floors)
        t = start
        s = self.script
        level = LEVEL
        s.append((t - 3.0, ("inputs", level, REST)))  # door open at the floor
        s.append((t - 1.0, ("inputs", level | DOOR_CLOSED, REST)))
        s.append((t, ("start", trip)))
        s.append((t, ("inputs", level | DOOR_CLOSED, ACCEL)))
        t += 1.0
        s.append((t, ("inputs", DOOR_CLOSED | ZONE_DN, MOVING)))  # upper sensor leaves the vane first
        s.append((t + 0.3, ("inputs", DOOR_CLOSED, MOVING)))
        for f in range(floors):
            t += 3.0
            s.append((t, ("inputs", DOOR_CLOSED | ZONE_UP, MOVING)))
            s.append((t + 0.3, ("inputs", DOOR_CLOSED | LEVEL, MOVING if f < floors - 1 else DECEL)))
            if f < floors - 1:
                s.append((t + 0.6, ("inputs", DOOR_CLOSED | ZONE_DN, MOVING)))
                s.append((t + 0.9, ("inputs", DOOR_CLOSED, MOVING)))
        t += 1.5
        s.append((t, ("inputs", DOOR_CLOSED | LEVEL, REST)))
        s.append((t, ("end", trip)))
        s.append((t + 1.0, ("inputs", LEVEL, REST)))  # door opens
        s.append((t + 6.0, ("inputs", LEVEL | DOOR_CLOSED, REST)))

    def step(self, now: float) -> None:
        """Do what the board does up to simulated time ``now``."""
        self.poll(now)
        if not self.powered:
            return
        while self.script and self.script[0][0] <= now:
            at, action = self.script.popleft()
            at = max(at, self.boot_sim)
            if action[0] == "inputs":
                self.set_inputs(now, action[1] | (self.inputs & INSPECTION), action[2], at)
            elif action[0] == "start":
                self.open_items.append(action[1])
            elif action[0] == "end":
                item = action[1]
                item.end_sim = at
                self.open_items.remove(item)
                self.soak.ledger.items.append(item)
                self.journal(item, lw.J_TRIP, now, DOOR_CLOSED | LEVEL, DOOR_CLOSED | LEVEL)
        if now - self.last_beat >= HEARTBEAT_S:
            self.last_beat = now
            self.send(lw.T_HEARTBEAT, [int(now - self.boot_sim), 50000, len(self.unacked), self.motion,
                                       self.inputs, True, False], now, [])
        if (self.unacked or self.journal_unacked) and now - self.last_resend >= EVENT_RESEND_S:
            self.last_resend = now
            for payload in list(self.unacked.values()):
                self.send(lw.T_EVENT, payload, now, [])
            for payload in list(self.journal_unacked.values())[:16]:  # oldest first, 16 in flight
                self.send(lw.T_JOURNAL, payload, now, [])

    def journal(self, item: Item, kind: int, now: float, inputs_start: int, inputs_end: int) -> None:
        """The board's journal record of a finished trip or inspection period (this boot's times):
        kept until the daemon ACKs it, so no outage of the link or the daemon loses the item."""
        seq = self.next_journal_seq
        self.next_journal_seq += 1
        assert item.end_sim is not None
        record = pack_journal_record(seq, kind, self.boot_id, self.t_ms(item.start_sim), self.t_ms(item.end_sim),
                                     1 if kind == lw.J_TRIP else 0, item.floors or 0, 1000, inputs_start, inputs_end)
        self.journal_unacked[seq] = payload = [self.board_id, record, 0]
        item.journal_seq = seq
        self.send(lw.T_JOURNAL, payload, now, [])

    def raise_alarm(self, now: float) -> None:
        eid = self.next_event_id
        self.next_event_id += 1
        payload = [eid, lw.KIND_ALARM_BUTTON_HELD, lw.EVENT_RAISED, self.t_ms(now), {}]
        self.unacked[eid] = payload
        self.alarm_clear_sent = False
        self.soak.ledger.items.append(Item("event", self.index, now, event_id=eid))
        self.send(lw.T_EVENT, payload, now, [])

    def clear_alarm(self, now: float, eid: int) -> None:
        if eid in self.unacked:  # clear only once the raise is settled (ACKs name the id, not the state)
            return
        payload = [eid, lw.KIND_ALARM_BUTTON_HELD, lw.EVENT_CLEARED, self.t_ms(now), {}]
        self.unacked[eid] = payload
        self.alarm_clear_sent = True
        self.send(lw.T_EVENT, payload, now, [])

    def poll(self, now: float) -> None:
        while data := self.read():
            if not self.powered:
                continue  # a board without power hears nothing
            for f in self.reader.feed(data):
                if f.type == lw.T_ACK and f.payload and f.payload[0] == lw.T_EVENT:
                    self.unacked.pop(f.payload[1], None)
                elif f.type == lw.T_ACK and len(f.payload) > 1 and f.payload[0] == lw.T_JOURNAL:
                    self.journal_unacked.pop(f.payload[1], None)
                elif f.type == lw.T_TIME_SYNC and f.payload:
                    self.send(lw.T_TIME_SYNC, [f.payload[0], self.t_ms(now)], now, [])
                elif f.type == lw.T_CONTROL and f.payload and f.payload[0] == lw.CMD_REQUEST_HELLO:
                    self.hello(now)
