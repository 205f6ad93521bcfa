"""Analytics fixtures: the same tests on each backend.

``adb`` is an application database with an analytics backend: ``duckdb`` (an SQLite application database whose
events reach an embedded DuckDB store through the sync, the default deployment) or ``postgresql`` (the same Ibis
expressions run directly on the PostgreSQL application database). ``tables(adb)`` syncs if needed and opens the
backend.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from omnijourney.analytics.settings import AnalyticsSettings
from omnijourney.analytics.store import close_store, open_store
from omnijourney.analytics.sync import sync
from omnijourney.analytics.tables import Tables, app_tables, open_tables
from omnijourney.db import Database
from omnijourney.models import metadata


@dataclass
class AnalyticsDB:
    """An application database and the analytics backend under test."""

    db: Database
    backend: str  # duckdb | postgresql
    settings: AnalyticsSettings

    def tables(self) -> AbstractContextManager[Tables]:
        if self.backend in ("duckdb", "spark"):
            store = open_store(self.settings.path or "")
            sync(self.db, store)
            if self.backend == "spark":
                from omnijourney.analytics import spark

                spark.session(spark.SMALL_DATA_CONF)  # one session for the whole test run, tuned for tiny tables
                return spark.spark_tables(store)
            return open_tables(self.db, self.settings)
        return app_tables(self.db)


# Spark (the optional extra omnijourney[spark]) only when asked for: `.ci/run` sets OMNI_TEST_SPARK=1
BACKENDS = ["duckdb", "postgresql", *(["spark"] if os.environ.get("OMNI_TEST_SPARK") else [])]


@pytest.fixture(params=BACKENDS)
def adb(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnalyticsDB]:
    """An empty application database; analytics on DuckDB (synced from SQLite), directly on PostgreSQL, or (with
    OMNI_TEST_SPARK=1) on Spark (the DuckDB store's tables loaded into a local Spark session)."""
    if request.param in ("duckdb", "spark"):
        path = tmp_path / "omni.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        database = Database(f"sqlite:///{path}")
        settings = AnalyticsSettings(path=str(tmp_path / "analytics.duckdb"))
    else:
        database = Database(request.getfixturevalue("pg_database"))
        with database.engine.begin() as conn:
            present = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
            tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables if t.name in present)
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        settings = AnalyticsSettings(backend="app")
    yield AnalyticsDB(database, request.param, settings)
    if settings.path:
        close_store(settings.path)
    database.dispose()


@pytest.fixture
def store_path(tmp_path: Path) -> Iterator[str]:
    """A DuckDB store file for this test, closed afterwards."""
    path = str(tmp_path / "analytics.duckdb")
    yield path
    close_store(path)


Query = Callable[..., object]
