# Debounced car inputs, time-stamped in board time.
#
# The HAL keeps an edge log (tick and level of every pin change, written by the pin IRQs on the ESP32
# or by the feed in the simulator). A new level is accepted once it has held for debounce_ms; its
# time stamp is the first edge of that level, not the loop pass that noticed it.
import lwproto
from fwutil import tdiff
from hal import EDGE_LOG


class Inputs:
    def __init__(self, board, debounce_ms):
        self.board = board
        self.debounce_ms = debounce_ms
        self.stable = board.inputs
        self.changed = 0  # bits changed by the last accepted change
        self.t_ms = board.ticks_ms()  # board time of the last accepted change
        self.door_cycles = 0
        self.edge_overflows = 0
        self._cand = self.stable
        self._cand_t = self.t_ms
        self._seen = board.edge_count

    def poll(self, now):
        """True when a debounced change was accepted on this pass (see stable, changed, t_ms)."""
        b = self.board
        ec = b.edge_count
        if ec != self._seen:
            if ec - self._seen > EDGE_LOG:
                self.edge_overflows += 1
                self._seen = ec - EDGE_LOG
            while self._seen != ec:
                i = self._seen & (EDGE_LOG - 1)
                v = b.edge_v[i]
                if v != self._cand:
                    self._cand = v
                    self._cand_t = b.edge_t[i]
                self._seen += 1
        raw = b.inputs
        if raw != self._cand:  # a change the log missed (log overflow or a polled board)
            self._cand = raw
            self._cand_t = now
        if self._cand == self.stable or tdiff(now, self._cand_t) < self.debounce_ms:
            return False
        self.changed = self.stable ^ self._cand
        if self.changed & lwproto.IN_DOOR_CLOSED and self._cand & lwproto.IN_DOOR_CLOSED:
            self.door_cycles += 1  # a cycle ends when the door has closed again
        self.stable = self._cand
        self.t_ms = self._cand_t
        return True
