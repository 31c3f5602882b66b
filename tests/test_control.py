"""The daemon's control socket (edge_daemon/control.py): the job slot of a board task (the real
`BoardTask.start_job`/`end_job`), one job per car, a client that hangs up cancels its job, bad
requests get a reason and leave the socket serving, and the socket is the daemon user's alone."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from liftwatch.edge_daemon.control import ControlServer, DaemonLink, control_path
from liftwatch.edge_daemon.daemon import BoardTask
from liftwatch.edge_daemon.ota_jobs import HealthError, HealthJob, OtaError
from liftwatch.protocol import messages as m
from support.board import hello_payload


class Carrier:
    """A board task's job slot, the real methods, without a board behind it."""

    start_job = BoardTask.start_job
    end_job = BoardTask.end_job
    car = BoardTask.car

    def __init__(self, car: str = "c1") -> None:
        self.board = SimpleNamespace(car=car)
        self.job = None
        self._job_done = None


async def serving(state_dir: Path, carriers: dict[str, Carrier]) -> tuple[asyncio.Event, asyncio.Task]:
    stop = asyncio.Event()
    task = asyncio.create_task(ControlServer(control_path(state_dir), carriers).run(stop))
    for _ in range(100):
        if control_path(state_dir).is_socket():
            break
        await asyncio.sleep(0.01)
    return stop, task


HELLO = m.Hello.from_payload(hello_payload("b-1", 4, firmware="1.1.0") + ["fw_a - c 1.1.0 1.0.0"])


def test_a_watch_goes_through_the_daemon_and_comes_back_as_the_boards_hello(tmp_path: Path) -> None:
    carrier = Carrier()

    async def main() -> m.Hello:
        stop, task = await serving(tmp_path, {"c1": carrier})
        link = DaemonLink.find(tmp_path)
        assert link is not None
        watching = asyncio.create_task(link.watch("c1", "1.1.0", 5.0, timeout_s=10))
        while carrier.job is None:
            await asyncio.sleep(0.01)
        assert isinstance(carrier.job, HealthJob) and carrier.job.hold_s == 5.0
        carrier._job_done.set_result(HELLO)  # what BoardTask._run_job does once the health held
        hello = await watching
        assert carrier.job is None  # the slot is free again
        stop.set()
        await task
        return hello

    hello = asyncio.run(main())
    assert (hello.fw_version, hello.prev_fw_version, hello.update) == ("1.1.0", "1.0.0", "confirmed")


def test_one_job_per_car_and_a_job_error_reaches_the_client(tmp_path: Path) -> None:
    carrier = Carrier()

    async def main() -> None:
        stop, task = await serving(tmp_path, {"c1": carrier})
        link = DaemonLink.find(tmp_path)
        first = asyncio.create_task(link.watch("c1", "1.1.0", 5.0, timeout_s=10))
        while carrier.job is None:
            await asyncio.sleep(0.01)
        with pytest.raises(HealthError, match="busy with a firmware watch"):
            await link.watch("c1", "1.1.0", 5.0, timeout_s=10)
        carrier._job_done.set_exception(HealthError("went into safe mode"))
        with pytest.raises(HealthError, match="went into safe mode"):
            await first
        with pytest.raises(OtaError, match="no car 'c9'"):
            await link.watch("c9", None, timeout_s=10)
        stop.set()
        await task

    asyncio.run(main())


def test_a_client_that_hangs_up_cancels_its_job(tmp_path: Path) -> None:
    carrier = Carrier()

    async def main() -> None:
        stop, task = await serving(tmp_path, {"c1": carrier})
        watching = asyncio.create_task(DaemonLink(control_path(tmp_path)).watch("c1", "1.1.0", 600.0, timeout_s=900))
        while carrier.job is None:
            await asyncio.sleep(0.01)
        watching.cancel()  # the operator pressed Ctrl-C
        await asyncio.gather(watching, return_exceptions=True)
        for _ in range(200):
            if carrier.job is None:
                break
            await asyncio.sleep(0.01)
        assert carrier.job is None
        stop.set()
        await task

    asyncio.run(main())


def test_a_bad_request_gets_a_reason_and_the_socket_keeps_serving(tmp_path: Path) -> None:
    async def ask(line: bytes) -> dict:
        reader, writer = await asyncio.open_unix_connection(str(control_path(tmp_path)))
        writer.write(line)
        answer = json.loads(await reader.readline())
        writer.close()
        return answer

    async def main() -> list[dict]:
        stop, task = await serving(tmp_path, {"c1": Carrier()})
        reader, writer = await asyncio.open_unix_connection(str(control_path(tmp_path)))
        writer.write_eof()  # DaemonLink.find's probe: no request, so no answer
        assert await reader.read() == b""
        writer.close()
        answers = [await ask(b"not json\n"), await ask(b'{"op": "format", "car": "c1"}\n'),
                   await ask(b'{"op": "push", "car": "c1", "bundle": "%%%", "timeout_s": 1, "confirm": true}\n'),
                   await ask(b'{"op": "push", "car": "c1", "bundle": "AAAA", "timeout_s": 1, "confirm": true}\n')]
        stop.set()
        await task
        return answers

    answers = asyncio.run(main())
    assert [a["error"].split(":")[0] for a in answers[:3]] == ["not a control request"] * 3, answers
    assert "bundle" in answers[3]["error"] or "magic" in answers[3]["error"], answers  # ota.parse's refusal


def test_the_socket_is_the_daemon_users_and_a_stale_one_is_no_daemon(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # over AF_UNIX's 108 bytes
    deep.mkdir(parents=True)
    control_path(deep).write_bytes(b"")  # left behind by a daemon killed -9
    assert DaemonLink.find(deep) is None  # the CLI then opens the port itself

    async def main() -> None:
        stop, task = await serving(deep, {"c1": Carrier()})
        assert stat.S_IMODE(os.stat(control_path(deep)).st_mode) == 0o600
        assert DaemonLink.find(deep) is not None
        stop.set()
        await task

    asyncio.run(main())
    assert not control_path(deep).exists()  # a clean stop removes it
