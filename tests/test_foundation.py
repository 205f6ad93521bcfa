"""Keys, scopes, sources and the migrations."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient

from omnijourney.db import Database
from omnijourney.models import metadata
from tests.conftest import make_key


# SQLite cannot reflect expression indexes (lower(traits ->> 'name')): both libraries say so and skip them
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_migrations_match_models(db: Database) -> None:
    def for_this_engine(obj, _name, _type, _reflected, _compare_to) -> bool:  # Index(...).ddl_if(dialect=...)
        only = getattr(obj, "_ddl_if", None)
        return only is None or only.dialect in (None, db.dialect)

    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False, "include_object": for_this_engine})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_api_needs_a_key_with_the_right_scope(client: TestClient, db: Database) -> None:
    assert client.get("/api/v1/sources").status_code == 401
    assert client.get("/api/v1/sources", headers={"Authorization": "Bearer nope"}).status_code == 401
    wrong = make_key(db, "customers:read")
    r = client.get("/api/v1/sources", headers={"Authorization": f"Bearer {wrong}"})
    assert r.status_code == 403
    assert r.json()["code"] == "missing_scope"
    reader = make_key(db, "sources:read")
    assert client.get("/api/v1/sources", headers={"Authorization": f"Bearer {reader}"}).json() == []
    # write implies read; admin grants everything
    writer = make_key(db, "sources:write")
    assert client.get("/api/v1/sources", headers={"Authorization": f"Bearer {writer}"}).status_code == 200


def test_create_source_and_bad_channel(client: TestClient, admin_headers: dict[str, str]) -> None:
    r = client.post("/api/v1/sources", json={"name": "Store 12 POS", "channel": "store", "store": "S12"},
                    headers=admin_headers)
    assert r.status_code == 201, r.text
    assert r.json()["write_key"].startswith("wk_")
    r = client.post("/api/v1/sources", json={"name": "x", "channel": "fax"}, headers=admin_headers)
    assert r.status_code == 422
    assert r.json()["field"] == "channel"
    r = client.post("/api/v1/sources", json={"name": "Store 12 POS", "channel": "store"}, headers=admin_headers)
    assert r.status_code == 409
    assert len(client.get("/api/v1/sources", headers=admin_headers).json()) == 1


def test_key_with_unknown_scope_is_refused(client: TestClient, admin_headers: dict[str, str]) -> None:
    r = client.post("/api/v1/keys", json={"name": "pos", "scopes": ["orders:write", "fly:read"]},
                    headers=admin_headers)
    assert r.status_code == 422
    assert "fly:read" in r.json()["message"]
    r = client.post("/api/v1/keys", json={"name": "pos", "scopes": ["orders:write"]}, headers=admin_headers)
    assert r.status_code == 201
    key = r.json()["key"]
    assert client.get("/api/v1/keys", headers={"Authorization": f"Bearer {key}"}).status_code == 403


def test_framework_errors_answer_in_the_error_format(client: TestClient, admin_headers: dict[str, str]) -> None:
    r = client.post("/api/v1/sources", content=b"\x19Ytce|\x0e\xff\xfe",
                    headers={**admin_headers, "Content-Type": "application/json"})
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "invalid", "body")
    r = client.get("/api/v1/no-such-thing", headers=admin_headers)
    assert (r.status_code, r.json()["code"]) == (404, "not_found")


def test_a_transaction_the_database_broke_off_for_a_concurrent_one_answers_503_try_again(
        client: TestClient, admin_headers: dict[str, str]) -> None:
    """PostgreSQL refusing one of two transactions that wait on each other (or a serialisation failure) is not a
    server error: nothing was written, and the client sends the same request again after Retry-After."""
    import psycopg
    from sqlalchemy.exc import OperationalError

    def broken_off() -> None:
        raise OperationalError("UPDATE stock_levels ...", {}, psycopg.errors.DeadlockDetected("deadlock detected"))

    def failing() -> None:
        raise OperationalError("SELECT 1", {}, psycopg.errors.UndefinedTable("no such table"))

    client.app.add_api_route("/api/v1/test-deadlock", broken_off)
    client.app.add_api_route("/api/v1/test-broken", failing)
    r = client.get("/api/v1/test-deadlock", headers=admin_headers)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["code"] == "try_again" and "nothing was changed" in r.json()["message"]
    with pytest.raises(OperationalError):  # any other database failure stays a server error
        client.get("/api/v1/test-broken", headers=admin_headers)
