"""The two conversations of a firmware update with one board (issue 18), as jobs that any session can
carry: `PushJob` sends a bundle and waits for the new firmware, `HealthJob` watches a board's health
for a hold time.

A job does not own the link. It is shown each frame after a `BoardSession` has taken it
(`on_frame`), and asked what to send next (`poll`), which it queues on that session. So the same job
runs on two carriers:

- `run_alone` (`liftwatch ota push` with no daemon running, the benchmarks): its own transport and
  session, which acknowledges nothing, so the daemon still gets every EVENT and journal record later.
- the daemon's `BoardTask` (`edge_daemon/control.py` hands it the job): chunks interleave with the
  live frames on the daemon's own session, so trips, events and ride quality keep flowing through
  the update.

Every timeout runs on the event loop's clock (real seconds), never on a simulated daemon clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from liftwatch.edge_daemon.board_clock import t_ms_delta
from liftwatch.errors import LiftwatchError
from liftwatch.protocol import messages as m

# Bytes of firmware per OTA_CHUNK: the board takes host frames of at most 320 bytes (link.py _RX_BODY).
CHUNK = 256
# Chunks in flight: the board reads 64 bytes of its UART per loop pass, so a deeper window would only
# queue in its driver while live frames wait behind it.
WINDOW = 2
STATUS_TIMEOUT_S = 3.0  # no OTA_STATUS this long: ask the board where it is, resend from there
# The health watch's limits. A board sends STATS every second at rest (VIB while moving) and a
# HEARTBEAT every 10 s: three heartbeats without a frame is a board that is down or unlinked.
LINK_SILENCE_S = 30.0
TRIAL_S = 300.0  # firmware/ota.py _TRIAL_MS: a board not confirmed by then rolls back by itself
HELLO_RETRY_S = 5.0  # a board on trial is asked again until it confirms or rolls back
# The install reboots the board twice (the install boot, then the new firmware): a trip under way
# would be cut, with no trustworthy end. So the bundle is installed only once the car has stood
# still this long by the board's clock (car time), when a ride is least likely to begin.
INSTALL_IDLE_S = 30.0
_MOVING = (m.Motion.ACCELERATING, m.Motion.MOVING, m.Motion.DECELERATING)


class OtaError(LiftwatchError, RuntimeError):
    """A bundle could not be built, read or installed; the message says why (the board's reason when
    it refused)."""


class HealthError(OtaError):
    """A board's health did not hold (rolled back, safe mode, rebooted, silent, not sampling)."""


@dataclass(frozen=True, slots=True)
class PushResult:
    fw_version: str  # what the board runs after the update
    prev_fw_version: str
    seconds: float
    resent_bytes: int  # bytes sent again after a cut, a reboot or a lost frame
    resumed_from: tuple[int, ...] = ()  # after each reboot of the board mid-transfer: the bytes it still had


class PushJob:
    """Step 1 hear the board, step 2 send the chunks from where the board says it is (resuming after
    a cut or reboot), step 3 CONTROL ota_install, step 4 wait for the board to boot the new firmware
    (and, with ``confirm``, to confirm it). Chunks go WINDOW at a time, each answered: the line stays
    free for the board's live frames. ``step`` is told "installing" (the board holds the whole
    bundle and reboots to check and stage it) and "trial" (the new firmware's first HELLO);
    ``progress(have, total)`` the bytes the board holds. The install waits until the car has stood
    still ``install_idle_s`` (board seconds; an uncalibrated board, which cannot tell, counts as still)."""

    kind = "push"

    def __init__(self, raw: bytes, bundle_id: int, version: str, *, timeout_s: float = 600.0,
                 confirm: bool = True, progress: Callable[[int, int], None] | None = None,
                 step: Callable[[str], None] | None = None, own_session: bool = True,
                 install_idle_s: float = INSTALL_IDLE_S) -> None:
        self.raw, self.bid, self.version, self.total = raw, bundle_id, version, len(raw)
        self.install_idle_ms = int(install_idle_s * 1000)
        self.motion_boot: int | None = None
        self.board_ms = 0  # the board's time in its last frame
        self.rest_since_ms: int | None = None  # when the car came to rest (None: moving, or not heard yet)
        self.timeout_s, self.confirm, self.progress, self.step = timeout_s, confirm, progress, step
        self.own_session = own_session  # a session of its own may drop its stale queued chunks
        self.started: float | None = None
        self.have: int | None = None  # the board's bytes of this bundle, from its last OTA_STATUS
        self.nxt = 0  # next offset to send
        self.resent = 0
        self.booting = False  # the board said INSTALLING: wait for the new firmware's HELLO
        self.asked_at = 0.0
        self.heard_at: float | None = None  # the board's last frame, on the loop's clock
        self.boot_seen: int | None = None
        self.rebooted = False  # the board rebooted while chunks were on their way
        self.resumed: list[int] = []
        self.record_before: str | None = None  # the board's boot record (HELLO) before the install
        self.result: PushResult | None = None

    def on_frame(self, frame: Any, session: Any, now: float) -> None:
        """One frame the session has taken; may set `result` or raise OtaError."""
        self.heard_at = now
        if frame.boot_id != self.motion_boot:
            self.motion_boot, self.rest_since_ms = frame.boot_id, None
        self.board_ms = frame.t_ms
        if frame.type in (m.MessageType.STATE, m.MessageType.HEARTBEAT):
            if m.decode_message(frame).motion in _MOVING:
                self.rest_since_ms = None
            elif self.rest_since_ms is None:
                self.rest_since_ms = frame.t_ms
        if frame.type == m.MessageType.OTA_STATUS:
            self._on_status(m.decode_message(frame), now)
        elif frame.type == m.MessageType.HELLO:
            self._on_hello(m.decode_message(frame), session, now)

    def _on_status(self, st: Any, now: float) -> None:
        self.asked_at = now
        if st.state == m.OtaState.REFUSED and (self.booting or self.nxt > 0):
            raise OtaError(f"board refused the bundle: {st.reason}")
        if st.state == m.OtaState.REFUSED:  # an earlier push's: this one begins at 0
            self.have = self.nxt = 0
        elif st.state == m.OtaState.INSTALLING:
            if self.step is not None and not self.booting:
                self.step("installing")
            self.booting = True
        elif self.booting and st.state == m.OtaState.RECEIVING and st.bundle_id == self.bid:
            self.booting = False  # the install boot was cut (a power cut): the bundle is there, ask again
            self.have = st.have
            self.nxt = max(self.nxt, st.have)
        elif self.booting:  # IDLE on the way to the new firmware
            return
        else:
            h = st.have if st.bundle_id == self.bid else 0
            if self.rebooted and self.have is None:  # the first word of a board that rebooted mid-transfer
                self.resumed.append(h)
            self.rebooted = False
            if self.have is not None and h <= self.have and self.nxt > h:  # a chunk was lost: go back
                self.resent += self.nxt - h
                self.nxt = h
            self.have = h
            self.nxt = max(self.nxt, h)
            if self.progress is not None:
                self.progress(h, self.total)

    def _on_hello(self, hello: Any, session: Any, now: float) -> None:
        if not self.booting:
            self.record_before = hello.update_record
            return
        if self.step is not None and hello.update == "trial" and hello.fw_version == self.version:
            self.step("trial")  # each HELLO of the trial: the caller keeps the first
        # The install boot switched nothing (its record as before, or the first record otarx.py
        # wrote for a board never updated, which names no previous firmware): why?
        if hello.update_record == self.record_before or not hello.update:
            session.request(m.Command.OTA_QUERY, 0, time.time())
        elif hello.fw_version == self.version and (not self.confirm or hello.update == "confirmed"):
            self.result = PushResult(hello.fw_version, hello.prev_fw_version, now - (self.started or now),
                                     self.resent, tuple(self.resumed))
        elif hello.update == "rolled_back":
            raise OtaError(f"the board rolled back to {hello.fw_version}: {self.version} "
                           "did not confirm (crashed, safe mode or no link)")

    def expired(self, now: float) -> OtaError | None:
        """Why the job is over by the clock alone (the daemon asks this while the link is down too)."""
        if self.started is None:
            self.started = self.asked_at = now
        if now - self.started > self.timeout_s:
            if self.have is not None and self.have >= self.total and not self.booting:
                return OtaError(f"the car never stood still for {self.install_idle_ms / 1000:.0f} s within "
                                f"{self.timeout_s:.0f} s: the bundle is on the board, push again at a quieter hour")
            st = self.status()  # where it stood, so that a stuck update can be told from a slow one
            heard = "never heard" if self.heard_at is None else f"last heard {now - self.heard_at:.0f} s before"
            return OtaError(f"update did not complete within {self.timeout_s:.0f} s ({st['step']}; the board "
                            f"had {st['have']} of {st['total']} bytes; {heard})")
        return None

    def poll(self, session: Any, now: float) -> PushResult | None:
        """Queue what the board needs next on ``session``; the result once the update is done."""
        if self.result is not None:
            return self.result
        err = self.expired(now)
        if err is not None:
            raise err
        if session.boot_id is None:
            return None
        quiet = now - self.asked_at > STATUS_TIMEOUT_S
        if self.boot_seen != session.boot_id or quiet:  # first contact, a reboot or silence: ask again
            self.rebooted = self.rebooted or (self.boot_seen is not None and self.boot_seen != session.boot_id
                                              and self.nxt > 0)
            self.boot_seen = session.boot_id
            self.asked_at = now
            if self.own_session:
                session.take_outgoing()  # chunks queued for the board before: it will not take them now
            if self.booting or self.record_before is None:  # its boot record: to tell an install that switched
                session.request(m.Command.REQUEST_HELLO, 0, time.time())
            if not self.booting:
                session.request(m.Command.OTA_QUERY, 0, time.time())
            if self.have is not None and self.nxt > self.have:
                self.resent += self.nxt - self.have
            self.have, self.nxt = None, 0
        elif not self.booting and self.have is not None:
            if self.have >= self.total:
                if not self.car_still():
                    return None
                session.request(m.Command.OTA_INSTALL, 0, time.time())
                self.have = None  # the answer is INSTALLING (then a reboot) or REFUSED
            else:
                while self.nxt < self.total and self.nxt - self.have < WINDOW * CHUNK:
                    session.send_ota_chunk(self.bid, self.nxt, self.total,
                                           self.raw[self.nxt:self.nxt + CHUNK], time.time())
                    self.nxt = min(self.total, self.nxt + CHUNK)
        return None

    def car_still(self) -> bool:
        """The car has stood still long enough for the install's two reboots."""
        return self.rest_since_ms is not None and t_ms_delta(self.board_ms, self.rest_since_ms) >= self.install_idle_ms

    def status(self) -> dict[str, Any]:
        """For `liftwatch status`: how far the update is."""
        step = ("installing" if self.booting else "sending" if (self.have or 0) < self.total or self.car_still()
                else "waiting for the car to stand still")
        return {"kind": self.kind, "version": self.version, "have": self.have or 0, "total": self.total,
                "step": step}


class HealthJob:
    """The board's HELLO once its health has held for ``hold_s``: step 1 ask for HELLO (again every
    HELLO_RETRY_S while the firmware is on trial), step 2 watch its frames. With ``version``, the
    board must run it off trial (confirmed, or what a rollback returned to); any of these raises
    HealthError: another firmware (a rollback), safe mode, a reboot (a crash), LINK_SILENCE_S
    without a frame or without a sample. Without ``version``: the first HELLO. ``held(s)`` is told
    the healthy seconds so far (a rollout saves them)."""

    kind = "watch"

    def __init__(self, version: str | None = None, hold_s: float = 0.0, *, timeout_s: float = 120.0,
                 held: Callable[[float], None] | None = None) -> None:
        self.version, self.hold_s, self.timeout_s, self.held = version, hold_s, timeout_s, held
        self.start: float | None = None
        self.hello: Any = None
        self.boot: int | None = None  # the boot the first HELLO came from
        self.healthy_from: float | None = None  # confirmed on `version`: the hold counts from here
        self.heard = self.sampled = self.asked = 0.0
        self.asked_boot: int | None = None
        self.held_s = 0.0
        self.result: Any = None

    def on_frame(self, frame: Any, session: Any, now: float) -> None:
        self.heard = now
        if self.hello is not None and frame.boot_id != self.boot:
            raise HealthError("rebooted during the hold (a crash or a power cut)")
        if frame.type == m.MessageType.HELLO:
            self._on_hello(m.decode_message(frame), frame.boot_id, now)
        elif frame.type in (m.MessageType.STATS, m.MessageType.VIB):
            if m.decode_message(frame).count > 0:
                self.sampled = now
        elif frame.type == m.MessageType.HEARTBEAT and self.hello is not None and m.decode_message(frame).safe_mode:
            raise HealthError("went into safe mode")

    def _on_hello(self, hello: Any, boot: int, now: float) -> None:
        self.hello, self.boot = hello, boot
        if self.version is None:
            self.result = hello
            return
        if hello.fw_version != self.version:
            raise HealthError(f"runs {hello.fw_version} ({hello.update or 'never updated'}), not {self.version}")
        if hello.safe_mode:
            raise HealthError(f"in safe mode on {self.version}")
        if hello.update != "trial" and self.healthy_from is None:  # confirmed, or the one rolled back to
            self.healthy_from = now

    def expired(self, now: float) -> OtaError | None:
        """Why the watch is over by the clock alone (the daemon asks this while the link is down too)."""
        if self.start is None:
            self.start = self.heard = self.sampled = self.asked = now
        if now - self.heard > LINK_SILENCE_S:
            return HealthError(f"no frame for {LINK_SILENCE_S:.0f} s")
        if self.healthy_from is not None and now - self.sampled > LINK_SILENCE_S:
            return HealthError(f"linked but not sampling for {LINK_SILENCE_S:.0f} s")
        if self.healthy_from is None and now - self.start > self.timeout_s:
            h = self.hello
            state = f"runs {h.fw_version} ({h.update or 'never updated'})" if h else "no HELLO"
            return HealthError(f"{state} after {self.timeout_s:.0f} s")
        return None

    def poll(self, session: Any, now: float) -> Any:
        if self.result is not None:
            return self.result
        err = self.expired(now)
        if err is not None:
            raise err
        if self.healthy_from is not None:
            self.held_s = now - self.healthy_from
            if self.held is not None:
                self.held(self.held_s)
            if self.held_s >= self.hold_s:
                self.result = self.hello
                return self.result
        elif session.boot_id is not None and (self.asked_boot != session.boot_id
                                              or (self.hello is not None and now - self.asked > HELLO_RETRY_S)):
            # a fresh HELLO at the start (a daemon's session may hold one from long ago), then again
            # while on trial: has it confirmed yet?
            self.asked, self.asked_boot = now, session.boot_id
            session.request(m.Command.REQUEST_HELLO, 0, time.time())
        return None

    def status(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self.version, "hold_s": self.hold_s, "held_s": round(self.held_s, 1)}


Job = PushJob | HealthJob


async def run_alone(job: Job, transport: Any, session_config: Any = None, reader: Any = None,
                    label: str = "") -> Any:
    """Carry ``job`` on a transport and session of its own until it has a result (or raises)."""
    from liftwatch.edge_daemon.session import BoardSession, LinkMode, SessionConfig
    from liftwatch.edge_daemon.transport import TransportError
    from liftwatch.protocol.framing import FrameReader

    session = BoardSession(session_config or SessionConfig(), LinkMode.LIVE, label=label)
    reader = reader or FrameReader()
    loop = asyncio.get_running_loop()
    error = HealthError if isinstance(job, HealthJob) else OtaError
    try:
        await transport.open()
    except TransportError as err:
        raise error(str(err)) from err
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(transport.read(), 0.2)
            except asyncio.TimeoutError:
                chunk = b""
            now = loop.time()
            for frame in reader.feed(chunk):
                if reader.key != session.config.key:  # the board runs its rotated key: answer with it
                    session.config = replace(session.config, key=reader.key)
                session.on_frame(frame, time.time(), now)
                job.on_frame(frame, session, now)
            result = job.poll(session, now)
            if result is not None:
                return result
            session.tick(time.time(), now)  # TIME_SYNC: the board hears its host
            await send_queued(session, transport)
    except TransportError as err:
        raise error(str(err)) from err
    finally:
        await transport.close()


async def send_queued(session: Any, transport: Any) -> None:
    """The session's host->board frames, out; a write stuck 2 s is a link gone (TransportError)."""
    from liftwatch.edge_daemon.transport import TransportError

    for wire in session.take_outgoing():
        try:
            await asyncio.wait_for(transport.write(wire), 2.0)
        except asyncio.TimeoutError:
            raise TransportError(transport.link, "the board takes no more frames (write stuck 2 s)") from None
