"""Fixtures: a migrated database per test on SQLite and on PostgreSQL, an API client, a live server.

Every test that asks for ``db`` runs twice, once per engine. The PostgreSQL run uses a database of
its own, created at the start of the session and dropped at the end; without a reachable server
those tests are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from omnijourney.api.app import create_app
from omnijourney.auth.service import create_key
from omnijourney.config import JobSettings, Settings
from omnijourney.db import Database
from omnijourney.migrate import upgrade
from omnijourney.models import metadata

PG_URL = os.environ.get("OMNI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tmpl") / "template.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    base = make_url(PG_URL)
    try:
        admin = create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        if os.environ.get("OMNI_TEST_REQUIRE_PG"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {base.render_as_string(hide_password=True)}: {exc}")
    name = f"omni_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    upgrade(db.engine)
    db.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A freshly migrated, empty database."""
    if request.param == "sqlite":
        path = tmp_path / "omni.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        database = Database(f"sqlite:///{path}")
    else:
        database = Database(request.getfixturevalue("pg_database"))
        tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        with database.engine.begin() as conn:
            # a transaction an earlier test left open when it failed (it held a row lock for an interleaving) would
            # make this TRUNCATE, and the rest of the run, wait for ever: it is ended here, and named by its failure
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                              "current_database() AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"))
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield database
    database.dispose()


@pytest.fixture
def settings() -> Settings:
    # no embedded worker: tests run background jobs when they choose (tests.factories.run_jobs)
    return Settings(database_url="sqlite://", jobs=JobSettings(embedded=False))


@pytest.fixture
def app(db: Database, settings: Settings):
    return create_app(db, settings)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def make_key(db: Database, *scopes: str, name: str = "test") -> str:
    """A server key with ``scopes``; returns the plaintext for ``Authorization: Bearer``."""
    with db.transaction() as session:
        _, plain = create_key(session, name=name, scopes=list(scopes))
    return plain


@pytest.fixture
def admin_headers(db: Database) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(db, 'admin')}"}


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The app served by a real uvicorn on a free local port; yields its base URL."""
    from tests.support.browser import served

    with served(app) as url:
        yield url


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    """A migrated SQLite file that the ``omni`` command uses (``OMNI_DATABASE_URL``), as an operator's would be."""
    from typer.testing import CliRunner

    from omnijourney.cli import app as cli

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("OMNI_DATABASE_URL", url)
    assert CliRunner().invoke(cli, ["migrate"]).exit_code == 0
    return Database(url)
