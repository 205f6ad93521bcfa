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


def test_a_lone_row_runs_without_a_transaction(db: Database) -> None:
    assert db.lone_row("SELECT %s + 1", (1,)) == (2,)
    assert db.lone_row("SELECT 1 WHERE 1 = %s", (0,)) is None
    fairy = db.engine.raw_connection()  # the pool's connection, as the next request gets it
    try:
        if db.dialect == "postgresql":  # back from autocommit, and nothing was left open on it (no BEGIN sent)
            assert not fairy.driver_connection.autocommit
            assert fairy.driver_connection.info.transaction_status == 0
    finally:
        fairy.close()
    with db.transaction() as s:  # transactions work as before on it
        assert s.scalar(text("SELECT 3")) == 3


def test_a_lone_row_on_a_connection_the_server_closed_fails_once_and_is_not_pooled(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no server to close a connection")
    old = _backend(db)
    other = Database(db.url)
    with other.transaction() as s:
        assert s.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": old})
    other.dispose()
    with pytest.raises(db.engine.dialect.loaded_dbapi.OperationalError):
        db.lone_row("SELECT 1", ())
    assert db.lone_row("SELECT 1", ()) == (1,)  # a new connection


def test_reading_sends_no_begin_on_postgresql_and_holds_a_snapshot_on_sqlite(db: Database) -> None:
    with db.reading() as s:
        assert s.scalar(text("SELECT 4")) == 4
        raw = s.connection().connection.driver_connection
        if db.dialect == "postgresql":  # each statement committed by itself: no transaction open on the server
            assert raw.info.transaction_status == 0
        else:
            assert raw.in_transaction  # SQLite: one read transaction (one snapshot of the WAL)
    with db.transaction() as s:  # the pool's connection is back to transactions
        s.execute(text("SELECT 5"))
        if db.dialect == "postgresql":
            assert s.connection().connection.driver_connection.info.transaction_status == 2
