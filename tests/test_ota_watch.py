"""`ota.watch`, the health check of a canary's hold (edge_daemon/ota.py), against a scripted board:
each rule that must stop a rollout (another firmware, safe mode, a reboot, silence, no samples)
raises, and a board that keeps its health passes only once the hold is over."""

from __future__ import annotations

import asyncio
import time

import pytest

from liftwatch.edge_daemon import ota, ota_jobs
from liftwatch.protocol import lwproto as lw
from liftwatch.protocol.framing import encode_frame
from support.board import hello_payload

NEW_CONFIRMED = "fw_a - c 1.1.0 1.0.0"
STATS = [1000, 400, [0, 0, 1000], [1, 1, 1], 2, 0]  # a second at rest, 400 samples


class ScriptedBoard:
    """A transport whose board sends ``script`` (boot_id, type, payload), one frame per read, then
    ``then`` (the same frame again and again, or nothing: silence)."""

    def __init__(self, script: list[tuple[int, int, list]], then: tuple[int, int, list] | None) -> None:
        self.script, self.then, self.seq, self.written = list(script), then, 0, 0

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, wire: bytes) -> None:
        self.written += 1

    async def read(self) -> bytes:
        await asyncio.sleep(0.02)
        item = self.script.pop(0) if self.script else self.then
        if item is None:
            await asyncio.sleep(1)
            return b""
        boot, mtype, payload = item
        self.seq += 1
        return encode_frame(mtype, payload, boot, self.seq, int(time.monotonic() * 1000) % 2**30)


def hello(boot: int, version: str = "1.1.0", record: str = NEW_CONFIRMED, safe_mode: bool = False) -> tuple:
    p = hello_payload("b-1", boot, firmware=version) + [record]
    p[9] = safe_mode
    return (boot, lw.T_HELLO, p)


def run(board: ScriptedBoard, hold_s: float, timeout_s: float = 5.0):  # noqa: ANN201
    return asyncio.run(asyncio.wait_for(ota.watch(ota.CarLink("c1", lambda: board), "1.1.0", hold_s),
                                        timeout_s))


@pytest.fixture(autouse=True)
def short_silence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ota_jobs, "LINK_SILENCE_S", 0.5)


def test_a_healthy_board_passes_once_the_hold_is_over() -> None:
    t = time.monotonic()
    h = run(ScriptedBoard([hello(4)], (4, lw.T_STATS, STATS)), hold_s=0.6)
    assert h.fw_version == "1.1.0" and h.update == "confirmed" and time.monotonic() - t >= 0.6


@pytest.mark.parametrize("script, then, why", [
    ([hello(4, "1.0.0", "fw_a fw_b r 1.0.0 1.1.0")], (4, lw.T_STATS, STATS), "runs 1.0.0 \\(rolled_back\\)"),
    ([hello(4, safe_mode=True)], (4, lw.T_STATS, STATS), "safe mode"),
    ([hello(4), (4, lw.T_STATS, STATS), (4, lw.T_HEARTBEAT, [9, 9000, 0, 0, 7, True, True])],
     (4, lw.T_STATS, STATS), "went into safe mode"),
    ([hello(4), (4, lw.T_STATS, STATS), (5, lw.T_STATS, STATS)], (5, lw.T_STATS, STATS), "rebooted during the hold"),
    ([hello(4), (4, lw.T_STATS, STATS)], None, "no frame for"),
    ([hello(4)], (4, lw.T_HEARTBEAT, [9, 9000, 0, 0, 7, True, False]), "not sampling"),
])
def test_health_that_does_not_hold_stops_the_watch(script, then, why) -> None:  # noqa: ANN001
    with pytest.raises(ota_jobs.HealthError, match=why):
        run(ScriptedBoard(script, then), hold_s=3.0)


def test_a_board_on_trial_is_asked_again_until_it_confirms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ota_jobs, "HELLO_RETRY_S", 0.1)
    board = ScriptedBoard([hello(4, record="fw_a - 1 1.1.0 1.0.0")] + [(4, lw.T_STATS, STATS)] * 10 + [hello(4)],
                          (4, lw.T_STATS, STATS))
    h = run(board, hold_s=0.1)
    assert h.update == "confirmed" and board.written >= 3  # HELLO requests (and a TIME_SYNC) went out
