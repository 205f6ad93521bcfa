"""A cart's money reconciles: it shows every term of its quote, waived shipping as a shipping discount, and a
cart at a store's counter carries no shipping. Priced by the real pricing tables (SQLite and PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnijourney.db import Database
from omnijourney.pricing import service as pricing
from tests import factories_catalog as fc

TERMS = ("subtotal", "discount", "items_total", "shipping_fee", "shipping_discount", "shipping", "added_tax",
         "included_tax", "tax", "total")


@pytest.fixture
def shop(db: Database) -> Database:
    """web and store-12 in DE: prices with 19 % VAT, 4.90 shipping; 10 % off tees, free shipping from 50 EUR."""
    fc.shop(db)  # TEE-S/TEE-M everywhere, HOOD-M web only, SOCK-1 store only
    with db.transaction() as s:
        pricing.create_price_list(s, code="base-eur", name="Base EUR", currency="EUR")
        pricing.set_prices(s, price_list="base-eur", prices={"TEE-S": D("20.00"), "TEE-M": D("20.00"),
                                                             "HOOD-M": D("49.00"), "SOCK-1": D("5.00")})
        pricing.set_market(s, market="DE", taxes_included=True, tax_rates={"standard": D("0.19"), "reduced": "0.07"},
                           shipping_fees={"EUR": "4.90"})
        pricing.create_promotion(s, code="tees-10", name="Tees -10%", rule={"type": "percent_off", "percent": "10"},
                                 target={"category_ids": ["tees"]})
        pricing.create_promotion(s, code="ship-50", name="Free shipping from 50", rule={"type": "free_shipping"},
                                 currency="EUR", min_basket=D(50))
    return db


def cart_with(client: TestClient, headers: dict[str, str], channel: str, *lines: tuple[str, int]) -> dict[str, Any]:
    r = client.post("/api/v1/carts", json={"channel": channel, "anonymous_id": f"anon-{channel}"}, headers=headers)
    assert r.status_code == 201, r.text
    cart = r.json()
    for sku, qty in lines:
        r = client.post(f"/api/v1/carts/{cart['id']}/lines", json={"sku": sku, "quantity": qty, "channel": channel},
                        headers=headers)
        assert r.status_code == 200, r.text
        cart = r.json()
    return cart


def money(cart: dict[str, Any]) -> dict[str, D]:
    return {term: D(cart[term]) for term in TERMS}


def reconciles(cart: dict[str, Any]) -> bool:
    m = money(cart)
    lines_ok = all(D(ln["total"]) == D(ln["subtotal"]) - D(ln["discount"]) + D(ln["added_tax"])
                   for ln in cart["lines"] if ln["total"] is not None)
    return lines_ok and m["total"] == m["subtotal"] - m["discount"] + m["shipping_fee"] - m["shipping_discount"] \
        + m["added_tax"]


def test_waived_shipping_is_a_shipping_discount_not_a_goods_discount(client: TestClient, shop: Database,
                                                                     admin_headers: dict[str, str]) -> None:
    cart = cart_with(client, admin_headers, "web", ("TEE-M", 3))  # 60.00 - 10 % = 54.00: free shipping
    assert money(cart) == {"subtotal": D("60.00"), "discount": D("6.00"), "items_total": D("54.00"),
                           "shipping_fee": D("4.90"), "shipping_discount": D("4.90"), "shipping": D("0.00"),
                           "added_tax": D("0.00"), "included_tax": D("8.62"), "tax": D("8.62"), "total": D("54.00")}
    assert (cart["fulfilment"], cart["taxes_included"]) == ("delivery", True)
    assert reconciles(cart)
    line = cart["lines"][0]
    assert (line["subtotal"], line["discount"], line["total"], line["added_tax"], line["included_tax"]) == \
        ("60.00", "6.00", "54.00", "0.00", "8.62")
    # below the threshold the fee is charged, and the cart still adds up
    r = client.patch(f"/api/v1/carts/{cart['id']}/lines/TEE-M", json={"quantity": 1, "channel": "web"},
                     headers=admin_headers)
    assert (r.json()["shipping_fee"], r.json()["shipping_discount"], r.json()["total"]) == ("4.90", "0.00", "22.90")
    assert reconciles(r.json())


def test_a_cart_at_the_store_counter_has_no_shipping_and_adds_up(client: TestClient, shop: Database,
                                                                 admin_headers: dict[str, str]) -> None:
    cart = cart_with(client, admin_headers, "store-12", ("TEE-M", 1), ("SOCK-1", 2))
    assert (cart["fulfilment"], cart["shipping_fee"], cart["shipping"]) == ("in_store", "0.00", "0.00")
    assert cart["shipping_reason"] == "in_store: store channel, sold at the counter, no shipping"
    assert (cart["subtotal"], cart["discount"], cart["total"]) == ("30.00", "2.00", "28.00")
    assert D(cart["total"]) == D(cart["subtotal"]) - D(cart["discount"]) and reconciles(cart)
    # the same cart read on the web is to be delivered: the fee appears as its own term (SOCK-1 is store only)
    web = client.get(f"/api/v1/carts/{cart['id']}?channel=web", headers=admin_headers).json()
    assert (web["fulfilment"], web["shipping_fee"], web["total"]) == ("delivery", "4.90", "22.90")
    assert reconciles(web)
