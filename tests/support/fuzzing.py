"""Budgets of the fuzz tests (tests/test_fuzz_*.py): one hypothesis profile, scaled by an env var.

The default run is CI-sized (the fuzz files together take well under a minute on 2 cores). Set
``LIFTWATCH_FUZZ_EXAMPLES`` to the number of examples the heaviest test should run (default 1000);
every other budget scales with it, e.g. ``LIFTWATCH_FUZZ_EXAMPLES=100000`` for a night run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

DEFAULT_EXAMPLES = 1000
EXAMPLES = int(os.environ.get("LIFTWATCH_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))

settings.register_profile(
    "liftwatch-fuzz",
    deadline=None,  # a 2-core CI box under load is slow now and then; hangs are caught by pytest-timeout
    print_blob=True,  # a failure prints the blob that reproduces it
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
_PROFILE = settings.get_profile("liftwatch-fuzz")


def budget(share: float) -> int:
    """Examples for a test that gets ``share`` of the heaviest test's budget (at least 10)."""
    return max(10, round(EXAMPLES * share))


def fuzz(share: float = 1.0) -> settings:
    """``@fuzz(0.5)``: the profile with ``budget(share)`` examples."""
    return settings(_PROFILE, max_examples=budget(share))
