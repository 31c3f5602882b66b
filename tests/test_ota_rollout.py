"""The rollout's order, cap and state file (edge_daemon/ota_rollout.py) against cars whose push and
health are stand-ins: what a Pi restart at each step resumes, and what a failure leaves untouched.
hil_tests/test_ota_rollout.py runs the same rollout on mock boards."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from liftwatch.edge_daemon import ota
from liftwatch.edge_daemon.ota_rollout import HELD_SAVE_S, RolloutStopped, rollout

SECRET = hashlib.sha256(b"rollout test key").digest()
RAW = ota.pack("1.1.0", 0, "x64", [("agent.mpy", b"new firmware")], SECRET)


@dataclass
class FakeHello:
    fw_version: str
    update: str = ""


class PiRestart(BaseException):
    """The process ends here (a Pi restart): nothing below runs, the state file is what is left."""


class Fleet:
    """Cars that run a version; push installs the bundle's (or fails as told); watch reports it."""

    def __init__(self, cars: list[str]) -> None:
        self.running = dict.fromkeys(cars, "1.0.0")
        self.pushed: list[str] = []  # pushes that ran to their end (installed or refused)
        self.fail: dict[str, str] = {}  # car -> the OtaError its push raises
        self.restart_at: str | None = None  # a push to this car ends the process
        self.restart_in_hold_after_s: float | None = None
        self.holds: list[float] = []
        self.in_flight = self.max_in_flight = 0
        self.links = {c: ota.CarLink(c, lambda: None) for c in cars}

    async def push(self, link: ota.CarLink, raw: bytes) -> ota.PushResult:
        if link.car == self.restart_at:
            raise PiRestart
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0.01)  # a push cut here (a restart) did not complete: it is not in `pushed`
        self.in_flight -= 1
        self.pushed.append(link.car)
        if link.car in self.fail:
            raise ota.OtaError(self.fail[link.car])
        prev, self.running[link.car] = self.running[link.car], "1.1.0"
        return ota.PushResult("1.1.0", prev, 0.01, 0)

    async def watch(self, link: ota.CarLink, version: str | None = None, hold_s: float = 0.0, **kw) -> FakeHello:  # noqa: ANN003
        if hold_s:
            self.holds.append(hold_s)
            if self.restart_in_hold_after_s is not None:
                kw["held"](self.restart_in_hold_after_s)
                raise PiRestart
        return FakeHello(self.running[link.car], "confirmed")

    def run(self, state: Path, canary: str = "c1", parallel: int = 2, hold_s: float = 60.0):  # noqa: ANN201
        return asyncio.run(rollout(RAW, self.links, canary, list(self.running), hold_s, state, parallel=parallel,
                                   state_dir=state.parent, say=lambda _: None, push=self.push, watch=self.watch))


def test_canary_first_then_the_rest_at_most_parallel_at_a_time(tmp_path: Path) -> None:
    fleet = Fleet([f"c{i}" for i in range(1, 8)])
    st = fleet.run(tmp_path / "r.json", canary="c3", parallel=2)
    assert fleet.pushed[0] == "c3" and sorted(fleet.pushed) == sorted(fleet.running)
    assert fleet.holds == [60.0] and fleet.max_in_flight == 2
    assert st.phase == "done" and set(st.cars.values()) == {"updated"}
    assert all(ota.read_outcome(tmp_path, c)["outcome"] == "updated" for c in fleet.running)


def test_a_failed_canary_stops_the_rollout_with_the_rest_untouched(tmp_path: Path) -> None:
    fleet = Fleet(["c1", "c2", "c3"])
    fleet.fail["c1"] = "the board rolled back to 1.0.0: 1.1.0 did not confirm"
    with pytest.raises(RolloutStopped, match="canary c1: the board rolled back"):
        fleet.run(tmp_path / "r.json")
    assert fleet.pushed == ["c1"] and fleet.holds == []
    state = json.loads((tmp_path / "r.json").read_text())
    assert state["phase"] == "stopped" and state["cars"]["c2"] == state["cars"]["c3"] == "pending"
    assert ota.read_outcome(tmp_path, "c1")["outcome"] == "rolled_back"
    with pytest.raises(RolloutStopped, match="stopped"):  # stays stopped: nothing pushed on a rerun
        fleet.run(tmp_path / "r.json")
    assert fleet.pushed == ["c1"]


def test_a_failing_car_after_the_canary_stops_further_pushes(tmp_path: Path) -> None:
    fleet = Fleet(["c1", "c2", "c3", "c4", "c5"])
    fleet.fail["c2"] = "board refused the bundle: flash full: 1000 bytes free, the update needs 9000"
    with pytest.raises(RolloutStopped, match="c2: board refused"):
        fleet.run(tmp_path / "r.json", parallel=1)
    assert fleet.pushed == ["c1", "c2"]
    assert ota.read_outcome(tmp_path, "c2") | {"ts": ""} == {
        "version": "1.1.0", "outcome": "refused", "ts": "",
        "reason": "board refused the bundle: flash full: 1000 bytes free, the update needs 9000"}


def test_a_restart_mid_rollout_resumes_without_pushing_a_car_twice(tmp_path: Path) -> None:
    fleet = Fleet(["c1", "c2", "c3", "c4"])
    fleet.restart_at = "c3"
    with pytest.raises(PiRestart):
        fleet.run(tmp_path / "r.json", parallel=1)
    assert "c3" not in fleet.pushed and fleet.pushed[:2] == ["c1", "c2"]
    fleet.restart_at = None
    st = fleet.run(tmp_path / "r.json", parallel=1)
    assert sorted(fleet.pushed) == ["c1", "c2", "c3", "c4"] and st.phase == "done"  # each once
    assert fleet.holds == [60.0]  # the hold was not watched again


def test_a_restart_during_the_hold_watches_only_the_rest_of_it(tmp_path: Path) -> None:
    fleet = Fleet(["c1", "c2"])
    fleet.restart_in_hold_after_s = 2 * HELD_SAVE_S + 1
    with pytest.raises(PiRestart):
        fleet.run(tmp_path / "r.json", hold_s=60.0)
    fleet.restart_in_hold_after_s = None
    fleet.run(tmp_path / "r.json", hold_s=60.0)
    assert fleet.pushed == ["c1", "c2"]  # the canary once
    assert fleet.holds[0] == 60.0 and 60.0 - 2 * HELD_SAVE_S - 1 <= fleet.holds[1] <= 60.0 - HELD_SAVE_S


def test_a_car_updated_before_a_restart_is_not_pushed_again(tmp_path: Path) -> None:
    fleet = Fleet(["c1", "c2"])
    fleet.running["c2"] = "1.1.0"  # its push completed, the state file was not written
    fleet.run(tmp_path / "r.json")
    assert fleet.pushed == ["c1"]


def test_another_bundle_while_one_is_unfinished_is_refused(tmp_path: Path) -> None:
    fleet = Fleet(["c1", "c2"])
    fleet.restart_at = "c2"
    with pytest.raises(PiRestart):
        fleet.run(tmp_path / "r.json")
    other = ota.pack("1.2.0", 0, "x64", [("agent.mpy", b"newer")], SECRET)
    with pytest.raises(ota.OtaError, match="rollout of 1.1.0 is unfinished"):
        asyncio.run(rollout(other, fleet.links, "c1", ["c2"], 1.0, tmp_path / "r.json", say=lambda _: None,
                            push=fleet.push, watch=fleet.watch))
