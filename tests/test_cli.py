"""The ``omni`` command as an operator uses it."""

from __future__ import annotations

import pytest
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
