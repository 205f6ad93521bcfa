"""A revoked key stops working at once, in every server process (each keeps its own state)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from omnijourney.api.app import create_app
from omnijourney.config import Settings
from omnijourney.db import Database
from tests.conftest import make_key


def test_a_key_revoked_through_one_server_fails_at_once_on_another(db: Database, settings: Settings,
                                                                  admin_headers: dict[str, str]) -> None:
    # two apps over one database: what two uvicorn workers are
    with TestClient(create_app(db, settings)) as one, TestClient(create_app(db, settings)) as other:
        key = one.post("/api/v1/keys", json={"name": "till", "scopes": ["customers:read"]},
                       headers=admin_headers).json()
        till = {"Authorization": f"Bearer {key['key']}"}
        assert other.get("/api/v1/customers", headers=till).status_code == 200  # the other worker has seen it

        assert one.delete(f"/api/v1/keys/{key['id']}", headers=admin_headers).status_code == 204

        r = other.get("/api/v1/customers", headers=till)
        assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
        assert one.get("/api/v1/customers", headers=till).status_code == 401


def test_a_key_that_revokes_itself_stops_at_its_next_call(client: TestClient, db: Database) -> None:
    admin = {"Authorization": f"Bearer {make_key(db, 'admin')}"}
    [row] = client.get("/api/v1/keys", headers=admin).json()
    assert client.delete(f"/api/v1/keys/{row['id']}", headers=admin).status_code == 204
    assert client.get("/api/v1/keys", headers=admin).status_code == 401
