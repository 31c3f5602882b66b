# Board-detected conditions (EVENT frames): a bounded, persistent queue, re-sent until ACKed.
#
# Each raise or clear is one event with a persistent id. The queue is written to flash (two-slot
# store) when it changes, so unacknowledged events survive a reboot or a power cut. When it is full,
# the oldest "cleared" notice goes first, then the oldest event; every drop is counted.
import array

from micropython import const

from fwutil import tdiff
from store import Store

_CAPACITY = const(8)
_W = const(5)  # words per event: id, kind | state << 8, t_ms, value, boot_id
_HDR = const(2)  # words: next_id, count
_MAX_RETRY_MS = const(60000)
# EVENT `detail` key of each kind's value (index = lwproto's KIND_* code)
VALUE_KEYS = (b"", b"motion", b"inputs", b"held_ms", b"code", b"crashes", b"lost")


class EventQueue:
    def __init__(self, path, retry_ms):
        self.store = Store(path, 0x45, _HDR + _CAPACITY * _W)
        self.retry_ms = retry_ms
        self.next_id = 1
        self.n = 0
        self.dropped = 0
        self.raised = 0
        self.v = self.store.values
        self._due = array.array("i", [0] * _CAPACITY)  # board ms of the next send
        # current back-off; events loaded from flash start from the base one (at 0 they went every pass)
        self._wait = array.array("i", [retry_ms] * _CAPACITY)
        if self.store.load():
            self.next_id = self.v[0] or 1
            self.n = min(self.v[1], _CAPACITY)

    def _base(self, i):
        return _HDR + i * _W

    def id(self, i):
        return self.v[self._base(i)]

    def fields(self, i):
        """(event_id, kind, state, t_ms, value, boot_id) of queue entry i."""
        b = self._base(i)
        v = self.v
        return v[b], v[b + 1] & 0xFF, v[b + 1] >> 8, v[b + 2], v[b + 3], v[b + 4]

    def _remove(self, i):
        v = self.v
        for j in range(i, self.n - 1):
            a = self._base(j)
            for k in range(_W):
                v[a + k] = v[a + _W + k]
            self._due[j] = self._due[j + 1]
            self._wait[j] = self._wait[j + 1]
        self.n -= 1

    def add(self, kind, state, t_ms, value, boot_id, now):
        """Queue and persist a new event; returns its id."""
        if self.n >= _CAPACITY:
            victim = 0
            for i in range(self.n):
                if (self.v[self._base(i) + 1] >> 8) == 0:
                    victim = i
                    break
            self._remove(victim)
            self.dropped += 1
        eid = self.next_id
        self.next_id = eid + 1 if eid < 0x3FFFFFFF else 1
        b = self._base(self.n)
        v = self.v
        v[b] = eid
        v[b + 1] = kind | (state << 8)
        v[b + 2] = t_ms
        v[b + 3] = value
        v[b + 4] = boot_id
        self._due[self.n] = now
        self._wait[self.n] = self.retry_ms
        self.n += 1
        self.raised += 1
        self.persist()
        return eid

    def persist(self):
        self.v[0] = self.next_id
        self.v[1] = self.n
        self.store.save()

    def due(self, now):
        """Index of an event whose (re-)send is due, or -1."""
        for i in range(self.n):
            if tdiff(now, self._due[i]) >= 0:
                return i
        return -1

    def sent(self, i, now):
        w = self._wait[i]
        self._due[i] = (now + w) & 0x3FFFFFFF
        self._wait[i] = w * 2 if w < _MAX_RETRY_MS // 2 else _MAX_RETRY_MS

    def restart(self, now):
        """The host is heard again after a silence: every event whose next send is more than a base
        retry away (a back-off grown while nobody listened) goes now, one per loop pass as new ones
        do, and backs off from the start. One sent a moment ago is not sent twice."""
        r = self.retry_ms
        for i in range(self.n):
            if tdiff(self._due[i], now) > r:
                self._wait[i] = r
                self._due[i] = now

    def ack(self, event_id):
        for i in range(self.n):
            if self.id(i) == event_id:
                self._remove(i)
                self.persist()
                return True
        return False
