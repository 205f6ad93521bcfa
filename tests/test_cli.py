"""The ``omni`` command as an operator uses it."""

from __future__ import annotations

import shutil
import socket
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from omnijourney.auth.service import authenticate
from omnijourney.cli import app
from omnijourney.db import Database
from omnijourney.tracking.sources import source_by_write_key


@pytest.fixture
def database(cli_database: Database) -> Database:
    return cli_database


def test_sources_add_prints_the_write_key_last(database: Database) -> None:
    result = CliRunner().invoke(app, ["sources", "add", "Store 12 POS", "--channel", "store", "--store", "S12"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    with database.transaction(write=False) as s:
        src = source_by_write_key(s, key)
        assert (src.name, src.channel, src.store_code) == ("Store 12 POS", "store", "S12")


def test_sources_add_refuses_unknown_channel(database: Database) -> None:
    result = CliRunner().invoke(app, ["sources", "add", "Fax", "--channel", "fax"])
    assert result.exit_code == 2
    assert "unknown channel 'fax'" in result.output


def test_keys_create_prints_the_key_last(database: Database) -> None:
    result = CliRunner().invoke(app, ["keys", "create", "--name", "POS", "--scope", "orders:write",
                                      "--scope", "customers:read"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    with database.transaction(write=False) as s:
        principal = authenticate(s, key)
    assert principal.scopes == {"orders:write", "customers:read"}
    assert principal.allows("customers:read") and not principal.allows("customers:write")


# ---------------------------------------------------------------- which database, and errors in one line


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, no OMNI_DATABASE_URL: a newcomer's shell."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OMNI_DATABASE_URL", raising=False)
    return tmp_path


def test_after_the_demo_the_commands_use_its_database(here: Path, sqlite_template: Path) -> None:
    shutil.copy(sqlite_template, here / "omni-demo.db")  # what `omni demo` leaves (tests/demo builds a real one)
    result = CliRunner().invoke(app, ["sources", "add", "Web shop 2", "--channel", "web"])
    assert result.exit_code == 0, result.output
    assert f"database: sqlite:///{here / 'omni-demo.db'} (the demo's" in result.output
    with closing(sqlite3.connect(here / "omni-demo.db")) as con:
        assert con.execute("SELECT name FROM sources").fetchall() == [("Web shop 2",)]
    assert not (here / "omni.db").exists()
    result = CliRunner().invoke(app, ["check", "consistency"])
    assert "omni-demo.db" in result.output and "Traceback" not in result.output


def test_omni_db_wins_over_the_demo(here: Path, sqlite_template: Path) -> None:
    shutil.copy(sqlite_template, here / "omni-demo.db")
    shutil.copy(sqlite_template, here / "omni.db")
    result = CliRunner().invoke(app, ["sources", "list"])
    assert result.exit_code == 0, result.output
    assert "database: sqlite:///omni.db (the default)" in result.output


def test_no_database_is_one_line_that_says_what_to_do(here: Path) -> None:
    result = CliRunner().invoke(app, ["sources", "add", "Web", "--channel", "web"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == ["error: there is no database at omni.db: run `omni migrate` to create it, `omni demo` for "
                      "the demo retailer, or set OMNI_DATABASE_URL"]
    assert not (here / "omni.db").exists()  # nothing created by the failed command
    assert "Traceback" not in result.output
    assert CliRunner().invoke(app, ["sources", "add", "--help"]).exit_code == 0  # help opens no database


def test_a_database_error_is_one_line_and_debug_shows_the_traceback(here: Path, monkeypatch) -> None:
    (here / "omni.db").touch()  # exists, never migrated
    result = CliRunner().invoke(app, ["keys", "create", "--name", "x", "--scope", "admin"])
    assert result.exit_code == 1
    assert "error: the database sqlite:///omni.db has no schema yet (no such table: api_keys): run `omni migrate`" \
        in result.output
    assert len(result.output.strip().splitlines()) == 3  # which database, the error, where the traceback is
    assert "Traceback" not in result.output
    debug = CliRunner().invoke(app, ["--debug", "keys", "create", "--name", "x", "--scope", "admin"])
    assert isinstance(debug.exception, OperationalError)
    monkeypatch.setenv("OMNI_DEBUG", "1")
    assert isinstance(CliRunner().invoke(app, ["sources", "list"]).exception, OperationalError)


def test_a_busy_port_stops_the_demo_before_it_builds(here: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["demo", "--port", str(port)])
        assert result.exit_code == 1
        assert f"cannot serve on 127.0.0.1:{port}" in result.output and "pick another with --port " in result.output
        assert not any(here.iterdir())  # nothing built
        assert CliRunner().invoke(app, ["serve", "--port", str(port)]).exit_code == 1
