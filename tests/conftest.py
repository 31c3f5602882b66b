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


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[object]:
    """One throwaway PostgreSQL cluster for the session (tests/support/postgres.py); skipped, with
    the reason, only where Debian's postgresql binaries are absent."""
    from support.postgres import PostgresCluster, postgres_bindir

    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries absent (/usr/lib/postgresql/*/bin; Debian package `postgresql`)")
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'liftwatch[postgres]')")
    cluster = PostgresCluster(bindir).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def fleet_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fleet store lives: a SQLite file, or a fresh database on the test PostgreSQL cluster."""
    if request.param == "sqlite":
        return str(tmp_path / "fleet.sqlite")
    return request.getfixturevalue("postgres_cluster").database()
