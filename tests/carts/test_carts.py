"""Carts that follow the customer: lines per channel, events, bad input, merge on login, handoff, concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from omnijourney.carts.models import Cart, CartHandoff, CartLine
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.customers.models import Customer
from omnijourney.db import Database
from omnijourney.tracking.models import Event
from tests import factories_catalog as fc


@pytest.fixture
def shop(db: Database) -> Database:
    fc.shop(db)  # web + store-12 (EUR); TEE-S/TEE-M everywhere, HOOD-M web only, SOCK-1 store only
    fc.channel(db, "web-ch", "web", currency="CHF", market="CH")
    fc.product(db, "many", [f"M-{i}" for i in range(8)], channels=("web", "store-12"))
    return db


def customer(db: Database) -> str:
    with db.transaction() as session:
        now = utcnow()
        c = Customer(id=new_id(), traits={}, trait_meta={}, consent={}, merge_count=0, created_at=now, updated_at=now)
        session.add(c)
    return c.id


def events(db: Database) -> list[tuple[Any, ...]]:
    with db.transaction(write=False) as session:
        rows = session.execute(select(Event.event, Event.channel, Event.store_code, Event.customer_id,
                                      Event.anonymous_id, Event.properties).order_by(Event.id)).all()
    return [tuple(r) for r in rows]


def lines(db: Database, cart_id: str) -> dict[str, int]:
    with db.transaction(write=False) as session:
        return dict(session.execute(select(CartLine.sku, CartLine.quantity).where(CartLine.cart_id == cart_id)).all())


def open_cart(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post("/api/v1/carts", json={"channel": "web", **body}, headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


def add(client: TestClient, headers: dict[str, str], cart_id: str, sku: str, quantity: int = 1,
        channel: str = "web", **extra: Any) -> httpx.Response:
    return client.post(f"/api/v1/carts/{cart_id}/lines", json={"sku": sku, "quantity": quantity, "channel": channel,
                                                                **extra}, headers=headers)


def test_one_cart_in_every_channel(client: TestClient, shop: Database, admin_headers: dict[str, str]) -> None:
    cid = customer(shop)
    r = client.post("/api/v1/carts", json={"channel": "web", "customer_id": cid}, headers=admin_headers)
    assert r.status_code == 201
    cart = r.json()
    assert (cart["currency"], cart["version"], cart["lines"], cart["status"]) == ("EUR", 1, [], "active")
    again = client.post("/api/v1/carts", json={"channel": "store-12", "customer_id": cid}, headers=admin_headers)
    assert (again.status_code, again.json()["id"]) == (200, cart["id"])
    assert add(client, admin_headers, cart["id"], "TEE-M", 2).status_code == 200  # in the app... on the web
    r = add(client, admin_headers, cart["id"], "SOCK-1", 1, channel="store-12")  # ...then at the store counter
    body = r.json()
    assert [(ln["sku"], ln["quantity"], ln["channel"], ln["sellable"]) for ln in body["lines"]] == \
        [("TEE-M", 2, "web", True), ("SOCK-1", 1, "store-12", True)]
    assert (body["channel"], body["version"]) == ("store-12", 3)
    r = add(client, admin_headers, cart["id"], "TEE-M", 3)
    assert r.json()["lines"][0]["quantity"] == 5
    seen = client.get(f"/api/v1/carts/{cart['id']}", headers=admin_headers).json()
    assert seen["lines"] == r.json()["lines"]
    assert client.get(f"/api/v1/carts?customer_id={cid}", headers=admin_headers).json()["items"][0]["id"] == \
        cart["id"]
    tee = body["lines"][0]["product_id"]
    assert events(shop) == [
        ("Product Added", "web", None, cid, None, {"cart_id": cart["id"], "channel_code": "web", "product_id": tee,
                                                   "sku": "TEE-M", "name": "Basic Tee", "quantity": 2,
                                                   "currency": "EUR"}),
        ("Product Added", "store", "store-12", cid, None,
         {"cart_id": cart["id"], "channel_code": "store-12", "product_id": body["lines"][1]["product_id"],
          "sku": "SOCK-1", "name": "Store Socks", "quantity": 1, "currency": "EUR"}),
        ("Product Added", "web", None, cid, None, {"cart_id": cart["id"], "channel_code": "web", "product_id": tee,
                                                   "sku": "TEE-M", "name": "Basic Tee", "quantity": 3,
                                                   "currency": "EUR"}),
    ]


def test_change_remove_and_view_events(client: TestClient, shop: Database, admin_headers: dict[str, str]) -> None:
    cart = open_cart(client, admin_headers, anonymous_id="anon-1")
    add(client, admin_headers, cart["id"], "TEE-S", 4)
    r = client.patch(f"/api/v1/carts/{cart['id']}/lines/TEE-S", json={"quantity": 1, "channel": "store-12"},
                     headers=admin_headers)
    assert r.json()["lines"][0]["quantity"] == 1
    # staff (an API key) reading the cart is not the customer doing anything: no event on their timeline
    assert client.get(f"/api/v1/carts/{cart['id']}?channel=store-12", headers=admin_headers).status_code == 200
    r = client.delete(f"/api/v1/carts/{cart['id']}/lines/TEE-S?channel=web", headers=admin_headers)
    assert (r.json()["lines"], r.json()["version"]) == ([], 4)
    got = [(e[0], e[1], e[4], e[5].get("sku"), e[5].get("quantity")) for e in events(shop)]
    assert got == [("Product Added", "web", "anon-1", "TEE-S", 4), ("Product Removed", "store", "anon-1", "TEE-S", 3),
                   ("Product Removed", "web", "anon-1", "TEE-S", 1)]


def test_bad_input_leaves_the_cart_unchanged(client: TestClient, shop: Database,
                                             admin_headers: dict[str, str]) -> None:
    cart = open_cart(client, admin_headers, anonymous_id="anon-2")
    add(client, admin_headers, cart["id"], "TEE-S", 998)
    before = (lines(shop, cart["id"]), len(events(shop)))
    cases = [
        ({"sku": "NOPE"}, 404, "sku", "unknown_sku"),
        ({"sku": "SOCK-1"}, 422, "sku", "not_sold_in_channel"),  # a store-only product on the web
        ({"sku": "HOOD-M", "channel": "store-12"}, 422, "sku", "not_sold_in_channel"),
        ({"sku": "TEE-M", "quantity": 0}, 422, "quantity", "bad_quantity"),
        ({"sku": "TEE-M", "quantity": -3}, 422, "quantity", "bad_quantity"),
        ({"sku": "TEE-M", "quantity": 1000}, 422, "quantity", "bad_quantity"),
        ({"sku": "TEE-S", "quantity": 2}, 422, "quantity", "bad_quantity"),  # 998 + 2 > 999
        ({"sku": "TEE-M", "quantity": "many"}, 422, "quantity", "invalid"),
        ({"sku": "TEE-M", "currency": "USD"}, 422, "currency", "currency_mismatch"),
        ({"sku": "TEE-M", "channel": "web-ch"}, 422, "channel", "currency_mismatch"),  # a CHF channel, EUR cart
        ({"sku": "TEE-M", "channel": "mars"}, 404, "channel", "not_found"),
        ({"sku": "TEE-M", "expected_version": 1}, 409, "expected_version", "version_mismatch"),
    ]
    for body, status, field, code in cases:
        r = client.post(f"/api/v1/carts/{cart['id']}/lines", json={"quantity": 1, "channel": "web", **body},
                        headers=admin_headers)
        assert (r.status_code, r.json()["field"], r.json()["code"]) == (status, field, code), (body, r.text)
    r = client.patch(f"/api/v1/carts/{cart['id']}/lines/TEE-S", json={"quantity": 1000, "channel": "web"},
                     headers=admin_headers)
    assert (r.status_code, r.json()["code"]) == (422, "bad_quantity")
    r = client.patch(f"/api/v1/carts/{cart['id']}/lines/TEE-M", json={"quantity": 1, "channel": "web"},
                     headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (404, "sku")
    r = client.get("/api/v1/carts/nope", headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (404, "cart_id")
    assert (lines(shop, cart["id"]), len(events(shop))) == before
    assert client.get(f"/api/v1/carts/{cart['id']}", headers=admin_headers).json()["version"] == 2
    r = client.post("/api/v1/carts", json={"channel": "web"}, headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (422, "customer_id")
    r = client.post("/api/v1/carts", json={"channel": "web", "customer_id": "ghost"}, headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (404, "customer_id")


def test_merge_on_login(client: TestClient, shop: Database, admin_headers: dict[str, str]) -> None:
    cid = customer(shop)
    mine = open_cart(client, admin_headers, customer_id=cid)
    add(client, admin_headers, mine["id"], "TEE-S", 500)
    add(client, admin_headers, mine["id"], "TEE-M", 1)
    anon = open_cart(client, admin_headers, anonymous_id="anon-3", channel="store-12")
    add(client, admin_headers, anon["id"], "TEE-S", 600, channel="store-12")
    add(client, admin_headers, anon["id"], "SOCK-1", 2, channel="store-12")
    r = client.post(f"/api/v1/carts/{anon['id']}/assign", json={"customer_id": cid, "channel": "web"},
                    headers=admin_headers)
    assert r.status_code == 200, r.text
    merged = r.json()
    assert merged["id"] == mine["id"]
    assert [(ln["sku"], ln["quantity"], ln["channel"]) for ln in merged["lines"]] == \
        [("TEE-S", 999, "web"), ("TEE-M", 1, "web"), ("SOCK-1", 2, "store-12")]  # 500 + 600 capped at 999
    gone = client.get(f"/api/v1/carts/{anon['id']}", headers=admin_headers).json()
    assert (gone["status"], gone["merged_into"], gone["customer_id"]) == ("merged", mine["id"], cid)
    r = add(client, admin_headers, anon["id"], "TEE-M")
    assert (r.status_code, r.json()["code"]) == (409, "cart_not_active")
    last = events(shop)[-1]
    assert (last[0], last[3], last[5]["merged_cart_id"], last[5]["products"]) == \
        ("Cart Merged", cid, anon["id"], [{"sku": "TEE-S", "quantity": 600}, {"sku": "SOCK-1", "quantity": 2}])
    # a customer without a cart simply takes the anonymous one; someone else's cart cannot be taken
    other = customer(shop)
    anon2 = open_cart(client, admin_headers, anonymous_id="anon-4")
    r = client.post(f"/api/v1/carts/{anon2['id']}/assign", json={"customer_id": other, "channel": "web"},
                    headers=admin_headers)
    assert (r.json()["id"], r.json()["customer_id"], r.json()["status"]) == (anon2["id"], other, "active")
    r = client.post(f"/api/v1/carts/{anon2['id']}/assign", json={"customer_id": cid, "channel": "web"},
                    headers=admin_headers)
    assert (r.status_code, r.json()["code"]) == (409, "cart_owned")


def test_handoff_code_and_qr(client: TestClient, shop: Database, admin_headers: dict[str, str]) -> None:
    cart = open_cart(client, admin_headers, anonymous_id="anon-5")
    add(client, admin_headers, cart["id"], "TEE-M", 2)
    r = client.post(f"/api/v1/carts/{cart['id']}/handoff", json={"channel": "web"}, headers=admin_headers)
    assert r.status_code == 201, r.text
    h = r.json()
    code = h["code"]
    assert len(code) == 8 and set(code) <= set("23456789ABCDEFGHJKMNPQRSTUVWXYZ")
    assert h["link"] == code and h["png_data_uri"].startswith("data:image/png;base64,")
    svg = client.get(h["svg_url"], headers=admin_headers)
    assert (svg.status_code, svg.headers["content-type"]) == (200, "image/svg+xml")
    assert svg.content.startswith(b"<svg")
    png = client.get(h["png_url"], headers=admin_headers)
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    r = client.post(f"/api/v1/carts/handoff/{code[:4].lower()}-{code[4:].lower()}/claim",
                    json={"channel": "store-12"}, headers=admin_headers)  # typed at the counter
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["channel"], r.json()["lines"][0]["quantity"]) == (cart["id"], "store-12", 2)
    viewed = events(shop)[-1]
    assert (viewed[0], viewed[1], viewed[2], viewed[5]["handoff_code"], viewed[5]["handed_off_from"]) == \
        ("Cart Viewed", "store", "store-12", code, "web")
    r = client.post(f"/api/v1/carts/handoff/{code}/claim", json={"channel": "web"}, headers=admin_headers)
    assert (r.status_code, r.json()["code"]) == (409, "handoff_claimed")
    assert client.get(h["png_url"], headers=admin_headers).status_code == 409
    # expiry
    code2 = client.post(f"/api/v1/carts/{cart['id']}/handoff", json={"channel": "web", "ttl_seconds": 60},
                        headers=admin_headers).json()["code"]
    with shop.transaction() as session:
        session.execute(update(CartHandoff).where(CartHandoff.code == code2)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    n = len(events(shop))
    r = client.post(f"/api/v1/carts/handoff/{code2}/claim", json={"channel": "store-12"}, headers=admin_headers)
    assert (r.status_code, r.json()["code"]) == (410, "handoff_expired")
    r = client.post("/api/v1/carts/handoff/ZZZZZZZZ/claim", json={"channel": "web"}, headers=admin_headers)
    assert (r.status_code, r.json()["code"]) == (404, "handoff_not_found")
    r = client.post(f"/api/v1/carts/{cart['id']}/handoff", json={"channel": "web", "ttl_seconds": 5},
                    headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (422, "ttl_seconds")
    assert len(events(shop)) == n
    with shop.transaction(write=False) as session:
        assert session.get(Cart, cart["id"]).channel_code == "store-12"


# ---------------------------------------------------------------- concurrency over real HTTP


def _parallel(n: int, fn: Any) -> list[Any]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(fn, range(n)))


def test_concurrent_devices_lose_no_update(live_server: str, shop: Database, admin_headers: dict[str, str]) -> None:
    cid = customer(shop)
    with httpx.Client(base_url=live_server, headers=admin_headers, timeout=30) as c:
        # eight devices open "my cart" at once: one cart
        opened = _parallel(8, lambda i: c.post("/api/v1/carts", json={"channel": "web", "customer_id": cid}))
        ids = {r.json()["id"] for r in opened}
        assert len(ids) == 1 and sorted(r.status_code for r in opened) == [200] * 7 + [201]
        cart_id = ids.pop()
        # eight devices each add a different SKU
        added = _parallel(8, lambda i: c.post(f"/api/v1/carts/{cart_id}/lines",
                                              json={"sku": f"M-{i}", "quantity": i + 1, "channel": "web"}))
        assert [r.status_code for r in added] == [200] * 8
        # eight devices increment the same line five times each
        def bump(i: int) -> list[int]:
            return [c.post(f"/api/v1/carts/{cart_id}/lines", json={"sku": "TEE-M", "quantity": 1,
                                                                    "channel": "store-12" if i % 2 else "web"}
                           ).status_code for _ in range(5)]

        assert _parallel(8, bump) == [[200] * 5] * 8
    assert lines(shop, cart_id) == {**{f"M-{i}": i + 1 for i in range(8)}, "TEE-M": 40}
    with shop.transaction(write=False) as session:
        assert session.get(Cart, cart_id).version == 1 + 8 + 40
    assert sum(1 for e in events(shop) if e[0] == "Product Added") == 48


def test_a_handoff_code_is_claimed_once(live_server: str, shop: Database, admin_headers: dict[str, str]) -> None:
    with httpx.Client(base_url=live_server, headers=admin_headers, timeout=30) as c:
        cart = c.post("/api/v1/carts", json={"channel": "web", "anonymous_id": "anon-6"}).json()
        code = c.post(f"/api/v1/carts/{cart['id']}/handoff", json={"channel": "web"}).json()["code"]
        claims = _parallel(8, lambda i: c.post(f"/api/v1/carts/handoff/{code}/claim", json={"channel": "store-12"}))
    assert sorted(r.status_code for r in claims) == [200] + [409] * 7
    assert sum(1 for e in events(shop) if e[0] == "Cart Viewed") == 1


# ---------------------------------------------------------------- re-quoted on every read


@pytest.fixture
def pricing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure engine stands in for the pricing service: one price list, 10 % off tees, voucher SAVE5
    (5 EUR off the basket), an expired voucher OLD and a used-up single-use voucher USED."""
    from decimal import Decimal

    from omnijourney.carts import quote
    from omnijourney.pricing import engine
    from omnijourney.pricing.promotions import AmountOff, PercentOff, Promotion, PromotionIndex, Target, Voucher

    prices = {"TEE-S": Decimal("20.00"), "TEE-M": Decimal("20.00"), "SOCK-1": Decimal("5.00")}
    promos = PromotionIndex([
        Promotion(id="p1", name="Tees -10%", rule=PercentOff(Decimal(10)), target=Target(category_ids=frozenset({
            "tees"}))),
        Promotion(id="p2", name="5 off", rule=AmountOff(Decimal(5)), needs_voucher=True, currency="EUR"),
    ])
    known = {"SAVE5": Voucher("SAVE5", "p2"), "OLD": Voucher("OLD", "p2", valid_to=utcnow() - timedelta(days=1)),
             "USED": Voucher("USED", "p2", max_uses=1, used=1)}

    def fake(session: Any, *, currency: str, channel_code: str, customer_id: str | None, lines: Any,
             voucher_codes: Any, strict_vouchers: bool, fulfilment: str | None = None, **_: Any) -> engine.Quote:
        ctx = engine.Context(channel_code=channel_code, channel_type="web", currency=currency,
                             market=engine.Market("DE", tax_rates={"standard": Decimal("0.19")}), at=utcnow(),
                             fulfilment=fulfilment)
        return engine.price_basket(lines, ctx, price_lists=[engine.PriceList("base", "EUR", prices)],
                                   promotions=promos, vouchers=[known[c] for c in voucher_codes if c in known])

    monkeypatch.setattr(quote, "_pricing_quote", fake)


def test_cart_is_requoted_through_the_engine(client: TestClient, shop: Database, admin_headers: dict[str, str],
                                             pricing: None) -> None:
    cart = open_cart(client, admin_headers, anonymous_id="anon-7")
    add(client, admin_headers, cart["id"], "TEE-M", 2)
    add(client, admin_headers, cart["id"], "M-1", 1)  # no price anywhere
    add(client, admin_headers, cart["id"], "HOOD-M", 1)  # sold on the web only
    got = client.get(f"/api/v1/carts/{cart['id']}?channel=store-12", headers=admin_headers).json()
    assert got["priced"] is True
    assert [(ln["sku"], ln["unit_price"], ln["discount"], ln["total"], ln["problem"]) for ln in got["lines"]] == [
        ("TEE-M", "20.00", "4.00", "36.00", None),
        ("M-1", None, None, None, "no price for SKU M-1 in channel store-12 (EUR)"),
        ("HOOD-M", None, None, None, "not sold in channel store-12"),
    ]
    assert (got["subtotal"], got["discount"], got["total"]) == ("40.00", "4.00", "36.00")
    assert got["promotions"][0]["status"] == "applied"
    added = [e for e in events(shop) if e[0] == "Product Added"]
    assert added[0][5]["price"] == "20.00"


def test_vouchers(client: TestClient, shop: Database, admin_headers: dict[str, str], pricing: None) -> None:
    cart = open_cart(client, admin_headers, anonymous_id="anon-8")
    add(client, admin_headers, cart["id"], "SOCK-1", 4, channel="store-12")
    before = (client.get(f"/api/v1/carts/{cart['id']}", headers=admin_headers).json(), len(events(shop)))
    for code, status, reason in [("OLD", 422, "voucher_expired"), ("USED", 409, "voucher_exhausted"),
                                 ("NOPE", 404, "unknown_voucher")]:
        r = client.post(f"/api/v1/carts/{cart['id']}/vouchers", json={"code": code, "channel": "store-12"},
                        headers=admin_headers)
        assert (r.status_code, r.json()["code"], r.json()["field"]) == (status, reason, "code"), r.text
    assert (client.get(f"/api/v1/carts/{cart['id']}", headers=admin_headers).json(), len(events(shop))) == before
    r = client.post(f"/api/v1/carts/{cart['id']}/vouchers", json={"code": "save5", "channel": "store-12"},
                    headers=admin_headers)
    assert r.status_code == 200, r.text
    assert (r.json()["voucher_codes"], r.json()["total"], r.json()["discount"]) == (["SAVE5"], "15.00", "5.00")
    assert events(shop)[-1][0] == "Coupon Applied" and events(shop)[-1][5]["coupon_id"] == "SAVE5"
    r = client.post(f"/api/v1/carts/{cart['id']}/vouchers", json={"code": "SAVE5", "channel": "store-12"},
                    headers=admin_headers)
    assert (r.status_code, r.json()["code"]) == (409, "voucher_duplicate")
    r = client.delete(f"/api/v1/carts/{cart['id']}/vouchers/SAVE5?channel=store-12", headers=admin_headers)
    assert (r.json()["voucher_codes"], r.json()["total"]) == ([], "20.00")


def test_cart_priced_by_the_pricing_service(client: TestClient, shop: Database, admin_headers: dict[str, str]) -> None:
    """No stand-in: price lists, a promotion and vouchers from the pricing tables."""
    from decimal import Decimal

    from omnijourney.pricing import offers
    from omnijourney.pricing import service as pricing

    with shop.transaction() as session:
        pricing.create_price_list(session, code="base-eur", name="Base EUR", currency="EUR")
        pricing.set_prices(session, price_list="base-eur", prices={"TEE-S": "20.00", "TEE-M": "20.00"})
        offers.create_promotion(session, code="tees10", name="Tees -10%", rule={"type": "percent_off", "percent": 10},
                                target={"category_ids": ["tees"]})
        offers.create_promotion(session, code="five", name="5 off", rule={"type": "amount_off", "amount": 5},
                                currency="EUR", needs_voucher=True)
        offers.create_voucher(session, code="FIVE", promotion="five")
        offers.create_voucher(session, code="GONE", promotion="five", valid_to=utcnow() - timedelta(days=1))
    cart = open_cart(client, admin_headers, anonymous_id="anon-9")
    add(client, admin_headers, cart["id"], "TEE-M", 2)
    add(client, admin_headers, cart["id"], "M-1", 1)  # no price in any list
    got = client.get(f"/api/v1/carts/{cart['id']}", headers=admin_headers).json()
    assert [(ln["sku"], ln["unit_price"], ln["discount"], ln["total"]) for ln in got["lines"]] == \
        [("TEE-M", "20.00", "4.00", "36.00"), ("M-1", None, None, None)]
    assert got["lines"][1]["problem"].startswith("no price for SKU M-1")
    assert (got["priced"], got["total"]) == (True, "36.00")
    r = client.post(f"/api/v1/carts/{cart['id']}/vouchers", json={"code": "gone", "channel": "web"},
                    headers=admin_headers)
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "voucher_expired", "code")
    r = client.post(f"/api/v1/carts/{cart['id']}/vouchers", json={"code": "NOPE", "channel": "web"},
                    headers=admin_headers)
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (404, "unknown_voucher", "code")
    r = client.post(f"/api/v1/carts/{cart['id']}/vouchers", json={"code": "five", "channel": "web"},
                    headers=admin_headers)
    # same priority: promotions apply in code order, 5 off 40.00 first, then 10 % off the tees' 35.00
    assert (r.status_code, r.json()["total"], r.json()["voucher_codes"]) == (200, "31.50", ["FIVE"])
    assert Decimal(r.json()["discount"]) == Decimal("8.50")


def test_carts_are_listed_a_page_at_a_time(client: TestClient, shop: Database, admin_headers: dict[str, str]) -> None:
    made = [open_cart(client, admin_headers, anonymous_id=f"anon-{i}")["id"] for i in range(5)]
    store = open_cart(client, admin_headers, anonymous_id="till-1", channel="store-12")["id"]
    seen, cursor = [], None
    while True:
        page = client.get("/api/v1/carts", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=admin_headers).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [store, *reversed(made)]  # most recently changed first, each once
    only = client.get("/api/v1/carts", params={"channel": "store-12"}, headers=admin_headers).json()["items"]
    assert [c["id"] for c in only] == [store]
    for params, field in (({"channel": "fax"}, "channel"), ({"status": "lost"}, "status"),
                          ({"cursor": "nope"}, "cursor"), ({"limit": 0}, "limit"), ({"customer_id": "null"},
                                                                                     "customer_id")):
        r = client.get("/api/v1/carts", params=params, headers=admin_headers)
        assert 400 <= r.status_code < 500 and r.json()["field"] == field, (params, r.text)
