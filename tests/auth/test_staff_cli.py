"""``omni staff``: accounts added with a one-time password shown once, listed, reset, disabled; mistakes are one
line and exit code 1."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from omnijourney.api.app import create_app
from omnijourney.auth.models import StaffMember
from omnijourney.cli import app
from omnijourney.config import JobSettings, Settings
from omnijourney.db import Database
from tests.factories_catalog import channel


def omni(*args: str):
    return CliRunner().invoke(app, list(args))


def _password(result) -> str:
    return result.stdout.strip().splitlines()[-1]


def _login(db: Database, email: str, password: str) -> int:
    settings = Settings(database_url=db.url, jobs=JobSettings(embedded=False))
    with TestClient(create_app(db, settings)) as client:
        return client.post("/api/v1/session", json={"email": email, "password": password}).status_code


def test_add_prints_a_one_time_password_that_logs_in_once_to_be_changed(cli_database: Database) -> None:
    channel(cli_database, "S01", "store")
    added = omni("staff", "add", "Ann@Shop.example", "--role", "store_associate", "--store", "S01",
                 "--name", "Ann Berg")
    assert added.exit_code == 0, added.output
    assert "ann@shop.example (store_associate in S01) added" in added.stdout
    password = _password(added)
    assert len(password) >= 20
    with cli_database.transaction(write=False) as s:
        row = s.scalar(select(StaffMember))
    assert (row.email, row.name, row.role, row.stores, row.must_change_password) == (
        "ann@shop.example", "Ann Berg", "store_associate", ["S01"], True)
    assert password not in row.password_hash
    assert _login(cli_database, "ann@shop.example", password) == 201
    second = omni("staff", "add", "bob@shop.example", "--role", "agent")
    assert _password(second) != password  # random every time: no default password


def test_mistakes_are_one_line_and_exit_1(cli_database: Database) -> None:
    channel(cli_database, "web", "web")
    channel(cli_database, "S01", "store")
    assert omni("staff", "add", "ann@shop.example", "--role", "agent").exit_code == 0
    for args, said in (
        (["ann@shop.example", "--role", "wizard"], "unknown role 'wizard': one of admin, marketer, analyst, agent"),
        (["cy@shop.example", "--role", "store_associate", "--store", "web"], "web is not a store channel"),
        (["cy@shop.example", "--role", "store_associate", "--store", "S99"], "S99 is not a store channel"),
        (["cy@shop.example", "--role", "store_associate"], "needs at least one store"),
        (["cy@shop.example", "--role", "agent", "--store", "S01"], "only a store associate"),
        (["ANN@shop.example", "--role", "admin"], "ann@shop.example has a staff account already"),
        (["not-an-email", "--role", "admin"], "'not-an-email' is not an email address"),
    ):
        result = omni("staff", "add", *args)
        assert result.exit_code == 1, (args, result.output)
        errors = [line for line in result.stderr.splitlines() if not line.startswith("database:")]
        assert len(errors) == 1 and errors[0].startswith("error: ") and said in errors[0], (args, result.stderr)
        assert "Traceback" not in result.output
    assert omni("staff", "reset", "nobody@shop.example").exit_code == 1
    assert omni("staff", "disable", "nobody@shop.example").exit_code == 1


def test_list_reset_disable_enable(cli_database: Database) -> None:
    first = _password(omni("staff", "add", "ann@shop.example", "--role", "marketer"))
    listed = omni("staff", "list")
    assert listed.exit_code == 0 and "ann@shop.example" in listed.stdout and "marketer" in listed.stdout
    assert first not in listed.output

    reset = omni("staff", "reset", "ann@shop.example")
    assert reset.exit_code == 0
    again = _password(reset)
    assert again != first
    assert _login(cli_database, "ann@shop.example", first) == 401
    assert _login(cli_database, "ann@shop.example", again) == 201

    assert omni("staff", "disable", "ann@shop.example").exit_code == 0
    assert "disabled" in omni("staff", "list").stdout
    assert _login(cli_database, "ann@shop.example", again) == 401
    assert omni("staff", "enable", "ann@shop.example").exit_code == 0
    assert _login(cli_database, "ann@shop.example", again) == 201
