"""The board's flash journal (firmware/journal.py) under the real MicroPython: records with known
answers, re-sent until ACKed, a power cut at every byte of a write, corrupt records skipped and
counted, another board's journal set aside, the ring bounded."""

from __future__ import annotations

import pytest
from support.fwharness import (
    AT_FLOOR,
    INSPECTION,
    T_ACK,
    UART_DOUBLE,
    FeedBuilder,
    host_frame,
    host_frames_at,
    run_firmware,
    run_script,
)

from liftwatch.protocol import lwproto as lw
from liftwatch.protocol import messages as m
from liftwatch.protocol.framing import FrameReader

pytestmark = pytest.mark.micropython

T_JOURNAL = lw.T_JOURNAL


def journal_records(run) -> dict[int, list]:
    """seq -> [board_id, seq, kind, boot, start, end, direction, count, speed, inputs_start, inputs_end,
    skipped] of every JOURNAL frame (re-sends carry the same seq and the same record)."""
    out: dict[int, list] = {}
    for f in run.of(T_JOURNAL):
        j = m.Journal.from_payload(f.payload)  # the host's view checks the record's own CRC
        fields = [j.board_id, j.seq, j.kind, j.boot_id, j.start_t_ms, j.end_t_ms, j.direction, j.count,
                  j.peak_speed_mm_s, j.inputs_start, j.inputs_end, j.skipped]
        assert out.setdefault(j.seq, fields) == fields
    return out


def _acks(seqs) -> bytes:
    return b"".join(host_frame(T_ACK, [T_JOURNAL, s, 0, "", None], seq=i) for i, s in enumerate(seqs))


def test_trips_door_cycles_and_inspection_are_journalled_and_resent_until_acked(tmp_path):
    fb = FeedBuilder().rest(4).trip(up=True).rest(3).door_cycle().trip(up=False, a_mg=60).rest(3)
    fb.door_cycle().door_cycle().rest(6)  # two openings 0.5 s apart: one cycle, one reopening
    fb.set(AT_FLOOR | INSPECTION).rest(5).set(AT_FLOOR).rest(20)
    run = run_firmware(tmp_path, fb.bytes(), extra='put("journal", [a.journal.head, a.journal.tail])')
    assert run.returncode == 0, run.stdout + run.stderr
    recs = journal_records(run)
    assert sorted(recs) == [0, 1, 2, 3, 4]
    uid = run.of(lw.T_HELLO)[0].payload[0]
    assert all(r[0] == uid and r[3] == 1 and r[11] == 0 for r in recs.values())  # this board, boot 1, none skipped
    kinds = [recs[s][2] for s in range(5)]
    assert kinds == [lw.J_TRIP, lw.J_DOOR_CYCLE, lw.J_TRIP, lw.J_DOOR_CYCLE, lw.J_INSPECTION]
    up, down = recs[0], recs[2]
    assert (up[6], up[7], down[6], down[7]) == (1, 1, -1, 1)  # direction, door zones entered
    assert 1400 <= up[8] <= 1700 and 1000 <= down[8] <= 1300  # peak speed mm/s: 80 / 60 mg for 2 s
    assert 8000 <= up[5] - up[4] <= 10000 and up[9] & 0x07 == up[10] & 0x07 == AT_FLOOR
    # the trips' board times are the STATE frames' motion starts and stops: one fact, one time
    motion_t = [f.payload[0] for f in run.of(lw.T_STATE) if f.payload[2] == 0]
    assert up[4] in motion_t and up[5] in motion_t and down[4] in motion_t and down[5] in motion_t
    assert recs[3][7] == 1 and recs[1][7] == 0  # reopenings
    assert 4900 <= recs[4][5] - recs[4][4] <= 5100 and recs[4][9] & INSPECTION
    assert sum(1 for f in run.of(T_JOURNAL) if m.Journal.from_payload(f.payload).seq == 0) >= 3  # nobody ACKed: re-sent
    assert run.summary["journal"] == [5, 0]
    # Reboot on the same flash; the host ACKs all five at once: none is sent again, now or later.
    second = run_firmware(tmp_path, FeedBuilder().rest(20).bytes(), rx=_acks(range(5)),
                          extra='put("journal", [a.journal.head, a.journal.tail])')
    assert journal_records(second) == {}
    assert second.summary["journal"] == [6, 5]  # and the cursor record written at the clean stop
    third = run_firmware(tmp_path, FeedBuilder().rest(20).bytes())
    assert journal_records(third) == {}


def test_unacked_records_survive_a_reboot_and_go_oldest_first(tmp_path):
    fb = FeedBuilder().rest(4)
    for _ in range(3):
        fb.trip(up=True).rest(2).door_cycle().rest(5)
    first = run_firmware(tmp_path, fb.bytes())
    assert sorted(journal_records(first)) == list(range(6))
    # The host ACKs 0-2 and 4 (out of order) after the reboot; the rest comes again, oldest first.
    second = run_firmware(tmp_path, FeedBuilder().rest(15).bytes(), rx=_acks([0, 1, 2, 4]))
    sent = [m.Journal.from_payload(f.payload).seq for f in second.of(T_JOURNAL)]
    assert sent[0] == 3 and set(sent) <= {3, 4, 5} and 5 in sent
    assert sent.count(4) <= 1 and sent.count(3) >= 2  # 4 stops once its ACK is in; 3 is re-sent


def test_the_oldest_record_goes_again_at_once_when_the_host_is_heard_after_a_silence(tmp_path):
    # One trip, never ACKed: its record is re-sent with a back-off grown to 60 s while the host is
    # away; the host is heard again at 80 s (its next re-send was due near 137 s), and once more 2 s
    # later, a moment before the record's next re-send is due: that one keeps its time.
    fb = FeedBuilder().rest(4).trip().rest(76)
    talk = [(80, host_frame(lw.T_TIME_SYNC, [80000], seq=1)), (82, host_frame(lw.T_TIME_SYNC, [82000], seq=2))]
    run = run_firmware(tmp_path, fb.bytes(), setup=host_frames_at(talk))
    assert run.returncode == 0, run.stdout + run.stderr
    t = [f.t_ms for f in run.of(T_JOURNAL) if m.Journal.from_payload(f.payload).seq == 0]
    before = [x for x in t if x < 80000]
    # each go-back to the oldest record takes one loop pass (40 ms) on top of the back-off
    assert [b - a for a, b in zip(before, before[1:])] == [2040, 4040, 8040, 16040, 32040]
    after = [x - 80000 for x in t if x >= 80000]
    assert after and after[0] <= 1000, t  # re-sent within a second of the host's return
    assert [b - a for a, b in zip(after, after[1:])] == [2040, 4040]  # backing off from the start again


SCRIPT = r"""
import journal, journal_file, os
P = "lw_journal.bin"
C = "lw_jcursor.bin"

class Board:
    def __init__(self, uid):
        self.uid = uid
    def uid_hex(self):
        return self.uid
    def path(self, name):
        return name

class Agent:  # what Journal reads of the agent at boot
    def __init__(self, uid):
        self.board = Board(uid)
        self.cfg = {"event_retry_ms": 2000}

def open_journal(uid="board-a"):
    agent = Agent(uid)
    return journal.Journal(agent, journal_file.load(agent.board))

def clean():
    for p in (P, C, P + ".foreign"):
        try:
            os.remove(p)
        except OSError:
            pass

def copy(a, b):
    with open(a, "rb") as f:
        d = f.read()
    with open(b, "wb") as f:
        f.write(d)

def rec(j, i):
    j.append(1, 7, 1000 * i, 1000 * i + 900, 1500, 1, 1, 7, 7)

def written(n, uid="board-a"):
    # A fresh journal of `n` records, closed.
    clean()
    j = open_journal(uid)
    for i in range(n):
        rec(j, i)
    j.f.close()

def readable(j, seq):
    # Record `seq` is in its slot, whole.
    j.f.seek(journal_file.HDR_BYTES + (seq %% journal_file.SLOTS) * journal_file.REC_BYTES)
    r = bytearray(journal_file.REC_BYTES)
    return j.f.readinto(r) == journal_file.REC_BYTES and journal_file.valid(r) and journal._u32(r, 4) == seq

class Cut(Exception):
    pass

def torn(limit, fill):
    # The flash write stops after `limit` bytes; the rest keeps its old bytes or reads as `fill`.
    def write_at(f, off, b):
        f.seek(off)
        f.write(bytes(b[:limit]))
        if fill is not None:
            f.write(bytes([fill]) * (len(b) - limit))
        f.flush()
        raise Cut()
    return write_at

# 1. A power cut at every byte of a record write loses that record at most.
write_ok = journal.write_at
written(5)
copy(P, "good.bin")
for fill in (None, 0xFF, 0x00):
    for limit in range(journal_file.REC_BYTES + 1):
        copy("good.bin", P)
        j = open_journal()
        journal.write_at = torn(limit, fill)
        try:
            rec(j, 5)
        except Cut:
            pass
        journal.write_at = write_ok
        j.f.close()
        r = open_journal()
        old = all(readable(r, s) for s in range(5))
        print("CUT", -1 if fill is None else fill, limit, r.head, 1 if old else 0, 1 if readable(r, 5) else 0)
        r.f.close()

# 2. A flipped bit and a torn record are skipped and counted; the rest goes out and is ACKed.
written(10)
with open(P, "r+b") as f:
    f.seek(journal_file.HDR_BYTES + 3 * journal_file.REC_BYTES + 9)
    b = f.read(1)
    f.seek(journal_file.HDR_BYTES + 3 * journal_file.REC_BYTES + 9)
    f.write(bytes([b[0] ^ 0x10]))
    f.seek(journal_file.HDR_BYTES + 7 * journal_file.REC_BYTES + 12)
    f.write(bytes(12))
%(uart)s
import link
u = Uart()
lk = link.Link(u, 1)
j = open_journal()
for _ in range(40):
    now = u.ticks_ms()
    j.send(lk, now, 1)
    lk.pump(now, True)
print("SKIPPED", j.skipped, j.head, j.tail)
with open("out.bin", "wb") as f:
    f.write(u.out)
for s in range(10):
    j.ack(s)
print("ACKED", j.tail, j.head)
j.f.close()

# 3. A journal file of another board is set aside, never sent as this board's.
written(3)
j = open_journal("board-b")
print("FOREIGN", j.foreign, j.head, 1 if readable(j, 0) else 0, os.stat(P + ".foreign")[6])
j.f.close()

# 4. The ring is bounded: a host away longer than the ring loses the oldest records, counted.
clean()
j = open_journal()
for i in range(journal_file.SLOTS + 50):
    rec(j, i)
print("RING", os.stat(P)[6], j.head, j.tail, j.overwritten)
j.f.close()
j = open_journal()
print("RING2", j.head, j.tail)
"""


@pytest.fixture(scope="module")
def journal_script(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("journal")
    proc = run_script(tmp, SCRIPT % {"uart": UART_DOUBLE}, timeout=300)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    lines = [ln.split() for ln in proc.stdout.decode().splitlines()]
    return tmp, {ln[0]: ln[1:] for ln in lines if ln and ln[0] != "CUT"}, [ln[1:] for ln in lines if ln and ln[0] == "CUT"]


def test_a_power_cut_at_any_byte_loses_at_most_the_record_being_written(journal_script):
    _tmp, _res, cuts = journal_script
    assert len(cuts) == 3 * 25
    for fill, limit, head, old_ok, new_ok in ((int(v) for v in c) for c in cuts):
        assert old_ok == 1, (fill, limit)  # every record written before is intact
        # the cut record is either whole (every byte landed) or skipped, never a wrong one
        assert (head, new_ok) == ((6, 1) if limit == 24 else (5, 0)), (fill, limit, head, new_ok)


def test_corrupt_records_are_skipped_counted_and_never_block_the_rest(journal_script):
    tmp, res, _cuts = journal_script
    skipped, head, tail = (int(v) for v in res["SKIPPED"])
    assert (skipped, head) == (2, 10)
    frames = FrameReader().feed((tmp / "out.bin").read_bytes())
    views = [m.Journal.from_payload(f.payload) for f in frames if f.type == T_JOURNAL]
    assert sorted({j.seq for j in views}) == [0, 1, 2, 4, 5, 6, 8, 9]
    assert max(j.skipped for j in views) == 2  # the host learns the count
    assert res["ACKED"] == ["10", "10"]


def test_a_journal_of_another_board_is_set_aside(journal_script):
    _tmp, res, _cuts = journal_script
    foreign, head, readable, size = (int(v) for v in res["FOREIGN"])
    assert (foreign, readable) == (1, 0) and size == 32 + 3 * 24  # kept whole beside, not taken
    assert head == 0


def test_journal_and_journal_file_agree_on_the_file_layout():
    """journal.py keeps underscored copies (no heap) of journal_file.py's layout constants."""
    import re

    from liftwatch.upy import FIRMWARE_DIR

    def consts(name: str) -> dict[str, int]:
        text = (FIRMWARE_DIR / name).read_text()
        return {k.lstrip("_"): int(v, 0) for k, v in re.findall(r"^(_?[A-Z_]+) = const\((\w+)\)", text, re.M)}

    ours, file_side = consts("journal.py"), consts("journal_file.py")
    shared = ("SLOTS", "REC_BYTES", "HDR_BYTES", "MAGIC", "CURSOR")
    assert {k: ours[k] for k in shared} == {k: file_side[k] for k in shared}


def test_the_ring_is_bounded_and_overwriting_is_counted(journal_script):
    _tmp, res, _cuts = journal_script
    size, head, tail, overwritten = (int(v) for v in res["RING"])
    assert size == 32 + 10800 * 24  # 7 days at 600 trips, 600 door cycles and 288 cursor records a day
    assert (head, tail, overwritten) == (10850, 50, 50)
    assert res["RING2"] == ["10850", "50"]  # found again after a reboot
