"""Text no database can store: a NUL character anywhere in an API request answers 422 naming the field, on both
engines (PostgreSQL refuses it in text and jsonb: a 500 before), for every route of the API."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from omnijourney.core.text import nul_path
from omnijourney.db import Database
from tests.conftest import make_key


@pytest.mark.parametrize(("method", "path", "kwargs", "field"), [
    ("POST", "/api/v1/keys", {"json": {"name": "pos\u0000", "scopes": ["carts:read"]}}, "name"),
    ("POST", "/api/v1/keys", {"json": {"name": "pos", "scopes": ["carts:read", "\u0000"]}}, "scopes.1"),
    ("POST", "/api/v1/catalog/products", {"json": {"handle": "tee", "title": "Tee",
                                                   "attributes": {"care": {"wash": ["30\u0000C"]}}}},
     "attributes.care.wash.0"),
    ("POST", "/api/v1/catalog/products", {"json": {"handle": "tee", "title": "Tee", "attributes": {"a\u0000": 1}}},
     "attributes.a\\u0000"),
    ("POST", "/api/v1/pricing/quote", {"json": {"channel": "web", "lines": [{"sku": "TEE\u0000", "quantity": 1}]}},
     "lines.0.sku"),
    ("GET", "/api/v1/customers", {"params": {"email": "ann\u0000@shop.io"}}, "email"),
    ("GET", "/api/v1/customers", {"params": {"name": "ann\u0000"}}, "name"),
    ("GET", "/api/v1/customers/c%00", {}, "customer_id"),
    ("GET", "/api/v1/catalog/variants/TEE%00M", {}, "sku"),
])
def test_a_nul_character_answers_422_naming_the_field(client: TestClient, admin_headers: dict[str, str],
                                                      method: str, path: str, kwargs: dict, field: str) -> None:
    r = client.request(method, path, headers=admin_headers, **kwargs)
    assert (r.status_code, r.json()["field"]) == (422, field), r.text
    assert "NUL" in r.json()["message"]


def test_text_that_only_looks_like_an_escape_is_kept(client: TestClient, admin_headers: dict[str, str]) -> None:
    r = client.post("/api/v1/keys", json={"name": "pos \\u0000", "scopes": ["carts:read"]}, headers=admin_headers)
    assert (r.status_code, r.json()["name"]) == (201, "pos \\u0000")


def test_callers_without_the_right_key_learn_nothing_of_their_input(client: TestClient, db: Database) -> None:
    assert client.get("/api/v1/customers", params={"email": "\u0000"}).status_code == 401
    other = {"Authorization": f"Bearer {make_key(db, 'carts:read')}"}
    assert client.get("/api/v1/customers", params={"email": "\u0000"}, headers=other).status_code == 403


def _api_operations(app: FastAPI) -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, item in app.openapi()["paths"].items() if path.startswith("/api/")
            for method in item]


def test_every_api_route_refuses_a_nul_character(app: FastAPI, client: TestClient,
                                                 admin_headers: dict[str, str]) -> None:
    # a query parameter no route knows: whatever a route takes, the check comes first (a new route included)
    operations = _api_operations(app)
    assert len(operations) > 40
    for method, path in operations:
        url = re.sub(r"\{[^}]+\}", "x", path)
        r = client.request(method, url, params={"probe": "\u0000"}, headers=admin_headers)
        assert (r.status_code, r.json().get("field")) == (422, "probe"), (method, path, r.text)


def test_nul_path() -> None:
    assert nul_path({"a": [1, "x", {"b": "y\u0000"}]}) == ("a", 2, "b")
    assert nul_path({"a": ["x"], "b": None, "c": 1.5}) is None
    assert nul_path("\u0000") == ()
