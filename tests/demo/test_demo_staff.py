"""``omni demo`` makes one staff account per role and prints their logins beside the keys; they log in as they
are (no forced change: see demo/staff.py), and serving the demo again keeps them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from omnijourney.api.app import create_app
from omnijourney.cli import app
from omnijourney.config import JobSettings, Settings
from omnijourney.db import Database
from omnijourney.demo.local import read_keys_file

LOGIN = re.compile(r"^\s+login (\S+)\s+(\S+@\S+)\s+(.+)$")
ROLES = ["admin", "marketer", "analyst", "agent", "store_associate"]


def printed_logins(output: str) -> dict[str, tuple[str, str]]:
    return {m[1]: (m[2], m[3].strip()) for m in map(LOGIN.match, output.splitlines()) if m}


def test_the_demo_prints_a_login_per_role_that_works_and_keeps_them(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OMNI_DATABASE_URL", raising=False)
    demo = ["demo", "--no-serve", "--people", "10"]
    first = CliRunner().invoke(app, demo)
    assert first.exit_code == 0, first.output
    logins = printed_logins(first.output)
    assert sorted(logins) == sorted(ROLES)
    assert len({password for _, password in logins.values()}) == 5  # random, one each
    saved = read_keys_file(tmp_path / "omni-demo.db")
    assert saved is not None and saved.logins == logins
    assert "export STAFF_ADMIN_EMAIL=admin@demo.example" in (tmp_path / "omni-demo.keys").read_text()

    url = f"sqlite:///{tmp_path / 'omni-demo.db'}"
    db = Database(url)
    try:
        with TestClient(create_app(db, Settings(database_url=url, jobs=JobSettings(embedded=False)))) as client:
            for role, (email, password) in logins.items():
                r = client.post("/api/v1/session", json={"email": email, "password": password})
                assert r.status_code == 201, (role, r.text)
                me = r.json()
                assert (me["role"], me["must_change_password"]) == (role, False)
                assert me["stores"] == (["S01"] if role == "store_associate" else None)
                headers = {"X-CSRF-Token": me["csrf_token"]}
                assert client.get("/api/v1/customers?limit=1").status_code == 200  # everyone looks customers up
                if role == "marketer":  # the marketer chooses a password of her own
                    changed = client.post("/api/v1/session/password", headers=headers,
                                          json={"current_password": password, "new_password": "marketing rules!"})
                    assert changed.status_code == 200, changed.text
                client.cookies.clear()
    finally:
        db.dispose()

    again = CliRunner().invoke(app, demo)
    assert again.exit_code == 0, again.output
    kept = printed_logins(again.output)
    assert kept["admin"] == logins["admin"] and kept["store_associate"] == logins["store_associate"]
    assert kept["marketer"] == ("marketer@demo.example", "(changed: omni staff reset marketer@demo.example)")
    assert read_keys_file(tmp_path / "omni-demo.db").logins["marketer"] == ("marketer@demo.example", "")

    (tmp_path / "omni-demo.keys").unlink()  # passwords are stored hashed: without the file, new ones are issued
    lost = printed_logins(CliRunner().invoke(app, demo).output)
    assert sorted(lost) == sorted(ROLES) and lost["admin"][1] != logins["admin"][1]
