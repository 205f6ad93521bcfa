"""``omni demo`` a second time: the existing demo is served again with keys that work; ``--fresh`` rebuilds."""

from __future__ import annotations

import sqlite3
import stat
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omnijourney.auth.service import authenticate
from omnijourney.cli import app
from omnijourney.core.errors import Unauthorized
from omnijourney.db import Database
from omnijourney.demo.local import keys_path, read_keys_file


def admin_key(output: str) -> str:
    return next(line.split(": ", 1)[1].strip() for line in output.splitlines() if line.startswith("admin API key:"))


def opens_the_api(path: Path, key: str) -> bool:
    db = Database(f"sqlite:///{path}")
    try:
        with db.transaction(write=False) as s:
            return authenticate(s, key).allows("admin")
    except Unauthorized:
        return False
    finally:
        db.dispose()


def sources(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as con:
        return {name for (name,) in con.execute("SELECT name FROM sources")}


def test_a_second_demo_serves_the_first_with_working_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OMNI_DATABASE_URL", raising=False)
    demo = ["demo", "--no-serve", "--people", "10"]
    path, keys = tmp_path / "omni-demo.db", tmp_path / "omni-demo.keys"

    first = CliRunner().invoke(app, demo)
    assert first.exit_code == 0, first.output
    key = admin_key(first.output)
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    saved = read_keys_file(path)
    assert saved is not None and (saved.admin_key, saved.seed, saved.people) == (key, 42, 10)
    assert "export WRITE_KEY=wk_" in keys.read_text()  # the web shop's, for the README's curl
    assert "other omni commands run in this directory use this database" in first.output
    assert not list(tmp_path.glob("*.building*"))
    # the test payment provider's book of the demo's card payments sits beside it, under its name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["omni-demo.db", "omni-demo.keys",
                                                          "omni-demo.test-provider.db"]
    with closing(sqlite3.connect(path)) as con:  # its history ends when it was built: nothing is overdue when served
        latest, overdue = con.execute(
            "SELECT MAX(placed_at), (SELECT COUNT(*) FROM jobs WHERE run_at < :cut) FROM orders",
            {"cut": (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")}).fetchone()
    assert latest is not None and latest >= (datetime.now(UTC) - timedelta(days=20)).strftime("%Y-%m-%d")
    assert overdue == 0
    with closing(sqlite3.connect(path)) as con, con:  # what a user did with the demo: kept on a restart
        con.execute("UPDATE sources SET name = 'Renamed shop' WHERE name = 'Web shop'")

    again = CliRunner().invoke(app, demo)
    assert again.exit_code == 0, again.output
    assert "serving the existing demo in omni-demo.db (seed 42, 10 customers)" in again.output
    assert admin_key(again.output) == key and opens_the_api(path, key)
    assert "Renamed shop" in sources(path)

    other = CliRunner().invoke(app, ["demo", "--no-serve", "--seed", "7"])
    assert other.exit_code == 1 and "add --fresh to rebuild it with seed 7" in other.output

    keys.unlink()  # the admin key is stored hashed: without the file, a new one is issued
    reissued = CliRunner().invoke(app, demo)
    assert reissued.exit_code == 0, reissued.output
    assert "new admin key" in reissued.output
    new_key = admin_key(reissued.output)
    assert new_key != key and opens_the_api(path, new_key)
    assert stat.S_IMODE(keys_path(path).stat().st_mode) == 0o600

    fresh = CliRunner().invoke(app, [*demo, "--fresh"])
    assert fresh.exit_code == 0, fresh.output
    assert "demo retailer ready" in fresh.output
    assert "Renamed shop" not in sources(path)
    assert not opens_the_api(path, new_key) and opens_the_api(path, admin_key(fresh.output))
