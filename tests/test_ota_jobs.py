"""`ota_jobs.PushJob` on a recording session: the chunks go two at a time, each answered, and the
install (two reboots) is asked for only once the car has stood still long enough by the board's
clock; a reboot forgets the stillness; an uncalibrated board, which cannot tell, counts as still."""

from __future__ import annotations

from liftwatch.edge_daemon.ota_jobs import CHUNK, WINDOW, PushJob
from liftwatch.protocol import lwota
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol import messages as m
from liftwatch.protocol.framing import FrameReader, encode_frame

REST, MOVING, UNCAL = int(m.Motion.REST), int(m.Motion.MOVING), int(m.Motion.UNCALIBRATED)
RAW = bytes(3 * CHUNK)  # the job does not parse: any bytes stand for the bundle
BID = 77


class Session:
    """What a job asks of a BoardSession: its boot id, and queued requests and chunks (recorded)."""

    def __init__(self, boot_id: int = 4) -> None:
        self.boot_id = boot_id
        self.sent: list[tuple] = []

    def request(self, command: m.Command, arg: int = 0, host_now_s: float | None = None) -> int:
        self.sent.append(("control", m.Command(command)))
        return 0

    def send_ota_chunk(self, bundle_id: int, offset: int, total: int, chunk: bytes, host_now_s: float | None = None) -> int:
        self.sent.append(("chunk", offset))
        return 0

    def take_outgoing(self) -> list[bytes]:
        return []


def frame(mtype: int, payload: list, t_ms: int, boot: int = 4):  # noqa: ANN201
    return FrameReader().feed(encode_frame(mtype, payload, boot, 1, t_ms))[0]


def heartbeat(t_ms: int, motion: int, boot: int = 4):  # noqa: ANN201
    return frame(lw.T_HEARTBEAT, [9, 9000, 0, motion, 7, True, False], t_ms, boot)


def status(have: int, t_ms: int):  # noqa: ANN201
    return frame(lwota.T_OTA_STATUS, [BID, have, int(m.OtaState.RECEIVING), ""], t_ms)


def sent_whole_bundle(job: PushJob, s: Session, t_ms: int, now: float) -> float:
    """Step the job through the transfer: each OTA_STATUS answers the chunks before it."""
    job.poll(s, now)  # first contact: OTA_QUERY
    have = 0
    while have < len(RAW):
        job.on_frame(status(have, t_ms), s, now)
        job.poll(s, now)
        assert sum(k == "chunk" for k, _ in s.sent) - have // CHUNK <= WINDOW  # never more in flight
        have = min(len(RAW), have + WINDOW * CHUNK)
    job.on_frame(status(len(RAW), t_ms), s, now)
    return now


def installs(s: Session) -> int:
    return s.sent.count(("control", m.Command.OTA_INSTALL))


def test_the_install_waits_until_the_car_has_stood_still_long_enough() -> None:
    s, job = Session(), PushJob(RAW, BID, "1.1.0", install_idle_s=30)
    job.on_frame(heartbeat(1_000, MOVING), s, 0.0)
    sent_whole_bundle(job, s, 2_000, 0.1)
    job.poll(s, 0.2)
    assert installs(s) == 0 and job.status()["step"] == "waiting for the car to stand still"
    job.on_frame(heartbeat(10_000, REST), s, 0.3)  # at rest from here
    job.on_frame(heartbeat(39_000, REST), s, 0.4)  # 29 s still
    job.poll(s, 0.4)
    assert installs(s) == 0
    job.on_frame(heartbeat(45_000, MOVING), s, 0.5)  # a ride: the stillness starts over
    job.on_frame(heartbeat(50_000, REST), s, 0.6)
    job.on_frame(heartbeat(79_000, REST), s, 0.7)
    job.poll(s, 0.7)
    assert installs(s) == 0
    job.on_frame(heartbeat(80_000, REST), s, 0.8)  # 30 s still
    job.poll(s, 0.8)
    assert installs(s) == 1


def test_a_reboot_forgets_the_stillness_and_an_uncalibrated_board_counts_as_still() -> None:
    s, job = Session(), PushJob(RAW, BID, "1.1.0", install_idle_s=30)
    job.on_frame(heartbeat(1_000, REST), s, 0.0)
    job.on_frame(heartbeat(5_000, REST, boot=5), s, 0.0)  # another boot: its clock starts again
    job.on_frame(heartbeat(31_500, REST, boot=5), s, 0.0)
    assert not job.car_still()  # 26.5 s of boot 5, not 30.5 across two boots
    job.on_frame(heartbeat(35_000, REST, boot=5), s, 0.0)
    assert job.car_still()
    uncal = PushJob(RAW, BID, "1.1.0", install_idle_s=30)
    uncal.on_frame(heartbeat(1_000, UNCAL), s, 0.0)
    uncal.on_frame(heartbeat(31_000, UNCAL), s, 0.0)
    assert uncal.car_still()


def test_a_car_that_never_rests_fails_the_push_with_that_reason() -> None:
    s, job = Session(), PushJob(RAW, BID, "1.1.0", install_idle_s=30, timeout_s=5)
    job.on_frame(heartbeat(1_000, MOVING), s, 0.0)
    sent_whole_bundle(job, s, 2_000, 0.0)
    err = job.expired(10.0)
    assert err is not None and "never stood still for 30 s" in str(err) and "on the board" in str(err)


def test_a_push_that_times_out_says_where_it_stood() -> None:
    s, job = Session(), PushJob(RAW, BID, "1.1.0", timeout_s=5)
    job.poll(s, 0.0)
    job.on_frame(status(CHUNK, 1_000), s, 1.0)  # the board holds one chunk, then goes silent
    err = job.expired(7.0)
    assert err is not None and str(err) == ("update did not complete within 5 s (sending; the board had 256 of 768 "
                                            "bytes; last heard 6 s before)")
