"""The OpenAPI document behind ``/docs``: Swagger UI's "Authorize" works, and every route lists its error answers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnijourney.api.app import create_app
from omnijourney.config import Settings
from omnijourney.db import Database

ERROR = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def client(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    # the document does not depend on the dialect: one SQLite copy is enough
    path = tmp_path_factory.mktemp("openapi") / "omni.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    db = Database(url)
    with TestClient(create_app(db, Settings(database_url=url))) as client:
        yield client
    db.dispose()


@pytest.fixture(scope="module")
def doc(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def op(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return doc["paths"][path][method]


def test_swagger_ui_can_authorize_with_an_api_key_and_a_write_key(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "http", "scheme": "bearer", "description": schemes["ApiKey"]["description"]}
    assert (schemes["WriteKey"]["type"], schemes["WriteKey"]["scheme"]) == ("http", "basic")
    assert op(doc, "get", "/api/v1/customers/{customer_id}")["security"] == [{"ApiKey": []}]
    assert op(doc, "post", "/api/v1/pricing/quote")["security"] == [{"ApiKey": []}]
    # the tracking routes take the write key (or writeKey in the body: hence the empty alternative)
    assert op(doc, "post", "/v1/batch")["security"] == [{"WriteKey": []}, {}]
    assert "security" not in op(doc, "get", "/v1/projects/{write_key}/settings")


def test_every_route_with_a_key_lists_401_and_403_in_the_error_format(doc: dict[str, Any]) -> None:
    secured = [(path, method, o) for path, ops in doc["paths"].items() for method, o in ops.items()
               if o.get("security") == [{"ApiKey": []}]]
    assert len(secured) > 40
    for path, method, o in secured:
        for status in ("401", "403"):
            assert o["responses"][status]["content"]["application/json"]["schema"] == ERROR, (method, path, status)


def test_error_answers_follow_the_route(doc: dict[str, Any]) -> None:
    profile = op(doc, "get", "/api/v1/customers/{customer_id}")["responses"]
    assert {"401", "403", "404"} <= profile.keys() and "409" not in profile
    assert "422" not in profile  # a text path parameter always validates
    assert {"404", "409", "422"} <= op(doc, "post", "/api/v1/carts/{cart_id}/lines")["responses"].keys()
    assert "410" in op(doc, "post", "/api/v1/carts/handoff/{code}/claim")["responses"]  # expired handoff codes
    assert "429" in op(doc, "post", "/v1/batch")["responses"]
    listing = op(doc, "get", "/api/v1/customers")["responses"]
    assert listing["422"]["content"]["application/json"]["schema"] == ERROR  # ours, not FastAPI's
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    error = doc["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "message"}
    assert {"code", "message", "field", "details"} <= error["properties"].keys()


def test_the_documented_error_body_is_what_the_api_answers(client: TestClient, doc: dict[str, Any]) -> None:
    documented = set(doc["components"]["schemas"]["Error"]["properties"])
    for response, status in ((client.get("/api/v1/customers/nobody"), 401),
                             (client.get("/api/v1/customers/nobody", headers={"Authorization": "Bearer nope"}), 401)):
        assert response.status_code == status
        body = response.json()
        assert {"code", "message"} <= body.keys() <= documented
