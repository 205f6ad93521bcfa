"""Pooled connections: a connection the server closed while it sat idle is replaced, not handed to a request."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from omnijourney import db as db_module
from omnijourney.db import Database


def _backend(database: Database) -> int:
    with database.transaction(write=False) as s:
        return s.scalar(text("SELECT pg_backend_pid()"))


def test_a_connection_closed_by_the_server_while_idle_is_replaced(db: Database, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no server to close a connection")
    old = _backend(db)  # the pool's one connection, back in the pool
    other = Database(db.url)
    with other.transaction() as s:  # as a restart of the server or an idle timeout would
        assert s.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": old})
    other.dispose()
    monkeypatch.setattr(db_module, "IDLE_PING_S", 0.0)  # every pooled connection has now been idle long enough

    with db.transaction() as s:  # the request that gets the pool's connection next works
        assert s.scalar(text("SELECT 1")) == 1
    assert _backend(db) != old


def test_a_lone_read_runs_without_a_transaction_on_postgresql(db: Database) -> None:
    with db.lone_read() as conn:
        assert conn.execute(text("SELECT 2")).scalar() == 2
        if db.dialect == "postgresql":  # autocommit: nothing left open on the connection (no BEGIN was sent)
            assert conn.connection.dbapi_connection.info.transaction_status == 0
    with db.transaction() as s:  # the pool's connection is back to transactions
        assert s.scalar(text("SELECT 3")) == 3
