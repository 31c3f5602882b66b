"""Fixtures every test module may use; the code behind them is in tests/support/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.mosquitto import MosquittoBroker

from liftwatch.broker import mosquitto_binary


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A plain-TCP, anonymous broker with persistence; killed after the test."""
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed (Debian package `mosquitto`)")
    broker = MosquittoBroker(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()
