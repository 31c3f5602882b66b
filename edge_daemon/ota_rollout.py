"""`liftwatch ota rollout`: a bundle to a fleet of cars, a canary first (issue 18).

Step 1 push to the canary and wait for it to confirm; step 2 watch its health (`ota.watch`: on the
new firmware, confirmed, linked, sampling, no safe mode, no reboot) for the hold time; step 3 push
to the other cars, at most ``parallel`` at a time so the Pi's CPU and each board's link keep serving
the cars not being updated. The canary's failure (a refusal, a rollback, health that did not hold)
stops the rollout before any other car is touched; a failing car in step 3 stops further pushes.

Every step is saved in a state file (``<state_dir>/ota-rollout.json``) before the next begins, so a
Pi that restarts resumes: cars already updated are not pushed again, a car cut mid-transfer resumes
from its flash (`ota.push`), and the hold goes on from the healthy seconds already watched.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from liftwatch.edge_daemon import ota
from liftwatch.edge_daemon.ota_jobs import LINK_SILENCE_S, TRIAL_S
from liftwatch.output import atomic_output

STATE_FILE = "ota-rollout.json"
HELD_SAVE_S = 5.0  # how often the hold's progress is saved: a restart re-watches at most this much
PARALLEL = 2  # pushes at once after the canary (each takes its board's link for the transfer)


class RolloutStopped(ota.OtaError):
    """The rollout stopped (the canary failed, or a car did): the state file says where it stands."""


@dataclass(slots=True)
class RolloutState:
    """What the state file holds. ``phase``: canary, hold, rest, done or stopped; ``cars`` maps
    every car (the canary too) to pending, updated or ``failed: <reason>``."""

    bundle_sha256: str
    version: str
    canary: str
    hold_s: float
    cars: dict[str, str]
    phase: str = "canary"
    held_s: float = 0.0
    reason: str = ""
    order: list[str] = field(default_factory=list)  # the cars after the canary, in push order

    @classmethod
    def load(cls, path: Path) -> RolloutState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise ota.OtaError(f"{path}: not a rollout state file ({exc})") from None

    def save(self, path: Path) -> None:
        with atomic_output(path, "w") as f:
            json.dump(asdict(self), f, indent=1)


Pusher = Callable[[ota.CarLink, bytes], Awaitable[ota.PushResult]]
Watcher = Callable[..., Awaitable[Any]]


async def rollout(raw: bytes, links: Mapping[str, ota.CarLink], canary: str, cars: Sequence[str], hold_s: float,
                  state_path: Path, *, parallel: int = PARALLEL, state_dir: Path | None = None,
                  say: Callable[[str], None] = print, push: Pusher | None = None,
                  watch: Watcher = ota.watch) -> RolloutState:
    """Run (or resume) the rollout of bundle ``raw``; returns the final state, or raises
    RolloutStopped. ``state_dir``: where each car's outcome is kept for `liftwatch status`."""
    bundle = ota.parse(raw)
    digest = hashlib.sha256(raw).hexdigest()
    push = push or (lambda link, b: ota.push_car(link, b))
    st = RolloutState.load(state_path)
    if st is not None and st.bundle_sha256 != digest and st.phase not in ("done", "stopped"):
        raise ota.OtaError(f"a rollout of {st.version} is unfinished ({state_path}): run it to its end, "
                           "or remove the file to abandon it")
    if st is None or st.bundle_sha256 != digest:
        order = [c for c in cars if c != canary]
        st = RolloutState(digest, bundle.version, canary, hold_s, dict.fromkeys([canary, *order], "pending"),
                          order=order)
        st.save(state_path)
    elif st.phase == "stopped":
        raise RolloutStopped(f"the rollout of {st.version} stopped: {st.reason} (remove {state_path} to try again)")
    else:
        say(f"resuming the rollout of {st.version}: {st.phase}, "
            f"{sum(v == 'updated' for v in st.cars.values())} of {len(st.cars)} cars updated")
    missing = [c for c in st.cars if c not in links]
    if missing:
        raise ota.OtaError(f"no car {', '.join(missing)} in the config")

    def stop(reason: str) -> RolloutStopped:
        st.phase, st.reason = "stopped", reason
        st.save(state_path)
        return RolloutStopped(f"rollout stopped: {reason}")

    async def update(car: str) -> str:
        """Push to one car unless it already runs the bundle; "" or why it failed."""
        link = links[car]
        try:
            hello = await watch(link, None)
            if hello.fw_version == st.version:  # updated before a restart: wait for it to confirm
                await watch(link, st.version, 0.0, timeout_s=TRIAL_S + LINK_SILENCE_S)
            else:
                say(f"{car}: pushing {st.version} (running {hello.fw_version})")
                result = await push(link, raw)
                say(f"{car}: runs {result.fw_version}, confirmed (previous {result.prev_fw_version})")
        except ota.OtaError as err:
            if state_dir is not None:
                ota.record_outcome(state_dir, car, st.version, ota.outcome_of(err), str(err))
            return str(err)
        if state_dir is not None:
            ota.record_outcome(state_dir, car, st.version, "updated")
        return ""

    if st.phase == "canary":
        why = await update(canary)
        st.cars[canary] = f"failed: {why}" if why else "updated"
        if why:
            raise stop(f"canary {canary}: {why}")
        st.phase = "hold"
        st.save(state_path)
    if st.phase == "hold":
        say(f"{canary}: watching its health for {st.hold_s - st.held_s:.0f} s")
        saved_at = [st.held_s]
        base = st.held_s

        def held(s: float) -> None:
            st.held_s = base + s
            if st.held_s - saved_at[0] >= HELD_SAVE_S:
                saved_at[0] = st.held_s
                st.save(state_path)

        try:
            await watch(links[canary], st.version, max(0.0, st.hold_s - base), held=held)
        except ota.OtaError as err:
            st.cars[canary] = f"failed: {err}"
            if state_dir is not None:
                ota.record_outcome(state_dir, canary, st.version, ota.outcome_of(err), str(err))
            raise stop(f"canary {canary}: {err}") from None
        st.phase = "rest"
        st.held_s = st.hold_s
        st.save(state_path)
    if st.phase == "rest":
        gate = asyncio.Semaphore(max(1, parallel))
        failed: list[str] = []

        async def one(car: str) -> None:
            async with gate:
                if failed:  # a car failed: push no more
                    return
                why = await update(car)
                st.cars[car] = f"failed: {why}" if why else "updated"
                st.save(state_path)
                if why:
                    failed.append(f"{car}: {why}")

        await asyncio.gather(*(one(c) for c in st.order if st.cars[c] != "updated"))
        if failed:
            raise stop("; ".join(failed))
        st.phase = "done"
        st.save(state_path)
    return st
