"""Strict cart input: a clear 4xx naming the field, and nothing changed. Whole numbers are whole numbers (JSON
``true`` is not 1), channels are codes, and a voucher in another currency than the cart's is refused."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omnijourney.db import Database
from omnijourney.pricing import service as pricing
from omnijourney.tracking.models import Event
from tests import factories_catalog as fc


@pytest.fixture
def shop(db: Database) -> Database:
    fc.shop(db)
    with db.transaction() as s:
        pricing.create_price_list(s, code="base-eur", name="Base EUR", currency="EUR")
        pricing.set_prices(s, price_list="base-eur", prices={"TEE-S": D("20.00"), "TEE-M": D("20.00")})
        pricing.create_promotion(s, code="usd-5", name="5 USD off", rule={"type": "amount_off", "amount": "5.00"},
                                 currency="USD", needs_voucher=True)
        pricing.create_voucher(s, code="USD5", promotion="usd-5")
        pricing.create_promotion(s, code="eur-5", name="5 EUR off", rule={"type": "amount_off", "amount": "5.00"},
                                 currency="EUR", needs_voucher=True)
        pricing.create_voucher(s, code="EUR5", promotion="eur-5")
    return db


def cart(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    r = client.post("/api/v1/carts", json={"channel": "web", "anonymous_id": "anon-strict"}, headers=headers)
    assert r.status_code == 201, r.text
    r = client.post(f"/api/v1/carts/{r.json()['id']}/lines", json={"sku": "TEE-M", "quantity": 2, "channel": "web"},
                    headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def state(client: TestClient, headers: dict[str, str], db: Database, cart_id: str) -> tuple[Any, ...]:
    got = client.get(f"/api/v1/carts/{cart_id}", headers=headers).json()
    with db.transaction(write=False) as s:
        events = s.scalar(select(func.count()).select_from(Event))
    return got["version"], [(ln["sku"], ln["quantity"]) for ln in got["lines"]], got["voucher_codes"], events


@pytest.mark.parametrize("quantity", [True, False, "2", 2.0, 1.5])
def test_a_quantity_must_be_a_whole_number(client: TestClient, shop: Database, admin_headers: dict[str, str],
                                           quantity: Any) -> None:
    c = cart(client, admin_headers)
    before = state(client, admin_headers, shop, c["id"])
    r = client.post(f"/api/v1/carts/{c['id']}/lines", json={"sku": "TEE-S", "quantity": quantity, "channel": "web"},
                    headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (422, "quantity"), r.text
    r = client.patch(f"/api/v1/carts/{c['id']}/lines/TEE-M", json={"quantity": quantity, "channel": "web"},
                     headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (422, "quantity"), r.text
    r = client.post(f"/api/v1/carts/{c['id']}/lines", json={"sku": "TEE-S", "channel": "web",
                                                            "expected_version": True}, headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (422, "expected_version"), r.text
    assert state(client, admin_headers, shop, c["id"]) == before


def test_a_voucher_in_another_currency_is_refused(client: TestClient, shop: Database,
                                                  admin_headers: dict[str, str]) -> None:
    c = cart(client, admin_headers)
    before = state(client, admin_headers, shop, c["id"])
    r = client.post(f"/api/v1/carts/{c['id']}/vouchers", json={"code": "usd5", "channel": "web"},
                    headers=admin_headers)
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "voucher_currency", "code"), r.text
    assert "USD" in r.json()["message"] and "EUR" in r.json()["message"]
    assert state(client, admin_headers, shop, c["id"]) == before
    r = client.post(f"/api/v1/carts/{c['id']}/vouchers", json={"code": "eur5", "channel": "web"},
                    headers=admin_headers)
    assert (r.status_code, r.json()["voucher_codes"], r.json()["total"]) == (200, ["EUR5"], "35.00"), r.text


def test_channels_are_codes_and_an_unknown_one_is_named(client: TestClient, shop: Database,
                                                        admin_headers: dict[str, str]) -> None:
    c = cart(client, admin_headers)
    before = state(client, admin_headers, shop, c["id"])
    cid = c["id"]
    calls = [
        ("post", "/api/v1/carts", {"channel": "store", "anonymous_id": "anon-x"}),  # a type, not a code
        ("post", f"/api/v1/carts/{cid}/lines", {"sku": "TEE-S", "quantity": 1, "channel": "nope"}),
        ("patch", f"/api/v1/carts/{cid}/lines/TEE-M", {"quantity": 3, "channel": "nope"}),
        ("delete", f"/api/v1/carts/{cid}/lines/TEE-M?channel=nope", None),
        ("post", f"/api/v1/carts/{cid}/vouchers", {"code": "EUR5", "channel": "nope"}),
        ("get", f"/api/v1/carts/{cid}?channel=nope", None),
        ("post", f"/api/v1/carts/{cid}/handoff", {"channel": "nope"}),
        ("post", f"/api/v1/carts/{cid}/assign", {"customer_id": "c-1", "channel": "nope"}),
    ]
    for method, url, body in calls:
        r = client.request(method, url, json=body, headers=admin_headers)
        assert 400 <= r.status_code < 500 and r.json()["field"] == "channel", (method, url, r.status_code, r.text)
    assert state(client, admin_headers, shop, c["id"]) == before
