"""Strict pricing input: a clear 4xx naming the field, never a 500 and never a guess. Whole numbers are whole
numbers (JSON ``true`` is not 1), channels are codes, a time without a zone is UTC, and a voucher whose amounts
are in another currency is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnijourney.catalog import service as catalog
from omnijourney.db import Database
from omnijourney.pricing import service
from tests import factories_catalog as fc

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def shop(db: Database) -> Database:
    fc.shop(db)
    with db.transaction() as s:
        service.create_price_list(s, code="base-eur", name="Base EUR", currency="EUR")
        service.set_prices(s, price_list="base-eur", prices={"TEE-S": D("20.00"), "TEE-M": D("20.00")})
        # a list with a validity window: comparing its bounds with a naive time was the 500
        service.create_price_list(s, code="spring", name="Spring", currency="EUR", kind="channel",
                                  channel_codes=["web"], valid_from=datetime(2026, 3, 1, tzinfo=UTC),
                                  valid_to=datetime(2026, 6, 1, tzinfo=UTC), priority=5)
        service.set_prices(s, price_list="spring", prices={"TEE-S": D("15.00")})
        service.create_promotion(s, code="usd-5", name="5 USD off", rule={"type": "amount_off", "amount": "5.00"},
                                 currency="USD", needs_voucher=True)
        service.create_voucher(s, code="USD5", promotion="usd-5")
    return db


def quote(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    body = {"channel": "web", "at": NOW.isoformat(), "lines": [{"sku": "TEE-S", "quantity": 1}], **body}
    return client.post("/api/v1/pricing/quote", json=body, headers=headers)


@pytest.mark.parametrize(("body", "field"), [
    ({"lines": [{"sku": "TEE-S", "quantity": True}]}, "lines.0.quantity"),
    ({"lines": [{"sku": "TEE-S", "quantity": "2"}]}, "lines.0.quantity"),
    ({"lines": [{"sku": "TEE-S", "quantity": 1.0}]}, "lines.0.quantity"),
    ({"fulfilment": "pickup"}, "fulfilment"),
    ({"at": "yesterday"}, "at"),
])
def test_bad_quote_bodies_are_422_naming_the_field(shop: Database, client: TestClient,
                                                   admin_headers: dict[str, str], body: dict[str, Any],
                                                   field: str) -> None:
    r = quote(client, admin_headers, **body)
    assert (r.status_code, r.json()["field"]) == (422, field), r.text


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/pricing/promotions", {"code": "p", "name": "P", "rule": {"type": "percent_off", "percent": "5"},
                                    "priority": True}, "priority"),
    ("/api/v1/pricing/promotions", {"code": "p", "name": "P", "rule": {"type": "buy_x_get_y", "buy": True,
                                                                       "get": 1}}, "rule.buy_x_get_y.buy"),
    ("/api/v1/pricing/vouchers", {"code": "V", "promotion": "usd-5", "max_uses": True}, "max_uses"),
    ("/api/v1/pricing/price-lists", {"code": "x", "name": "X", "currency": "EUR", "priority": "1"}, "priority"),
])
def test_management_numbers_are_strict(shop: Database, client: TestClient, admin_headers: dict[str, str],
                                       path: str, body: dict[str, Any], field: str) -> None:
    r = client.post(path, json=body, headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (422, field), r.text


def test_channels_are_codes(shop: Database, client: TestClient, admin_headers: dict[str, str]) -> None:
    for code in ("store", "fax", "WEB"):  # a type, an unknown code, the wrong case
        r = quote(client, admin_headers, channel=code)
        assert (r.status_code, r.json()["code"], r.json()["field"]) == (404, "not_found", "channel"), r.text
    with shop.transaction() as s:
        catalog.update_channel(s, code="store-12", changes={"active": False})
    r = quote(client, admin_headers, channel="store-12")
    assert (r.status_code, r.json()["field"]) == (422, "channel"), r.text


def test_a_time_without_a_zone_is_utc_never_a_500(shop: Database, client: TestClient,
                                                  admin_headers: dict[str, str]) -> None:
    r = client.get("/api/v1/pricing/consistency?at=2026-04-01T00:00:00", headers=admin_headers)
    assert r.status_code == 200, r.text
    assert r.json()["at"] == "2026-04-01T00:00:00Z"
    explained = {f["sku"]: f["status"] for f in r.json()["findings"]}
    assert explained == {"TEE-S": "explained"}  # the spring list applies on the web on 1 April (UTC)
    r = client.get("/api/v1/pricing/consistency?at=2026-07-01T00:00:00", headers=admin_headers)
    assert (r.status_code, r.json()["findings"]) == (200, [])
    r = client.get("/api/v1/pricing/consistency?at=soon", headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (422, "at")
    naive = quote(client, admin_headers, at="2026-03-01T12:00:00").json()
    assert naive == quote(client, admin_headers).json() and naive["lines"][0]["unit_price"] == "15.00"


def test_a_voucher_in_another_currency_is_refused(shop: Database, client: TestClient,
                                                  admin_headers: dict[str, str]) -> None:
    r = quote(client, admin_headers, vouchers=["usd5"])
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "voucher_currency", "vouchers[0]"), r.text
    # without strict vouchers (a cart's read), it is only explained
    r = quote(client, admin_headers, vouchers=["usd5"], strict_vouchers=False)
    assert r.status_code == 200, r.text
    assert [(v["status"], v["reason_code"], v["reason"]) for v in r.json()["vouchers"]] == \
        [("rejected", "voucher_currency", "voucher USD5 is for baskets in USD, not EUR")]
