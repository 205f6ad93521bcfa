"""Checkout from any channel: one path, idempotent, the quote honoured, stock held, money authorised once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text

from omnijourney.inventory import stock
from omnijourney.orders.models import Order
from omnijourney.payments.models import Payment
from tests.factories import run_jobs
from tests.factories_inventory import network, priced, stock_up

CARD = {"method": "card", "provider": "test", "payment_method": "pm_card_visa"}


def shop(db, **levels: int) -> None:
    network(db)
    priced(db)
    stock_up(db, {("TEE-M", "WH"): 10, ("TEE-S", "WH"): 10, ("JEANS-32", "WH"): 5, ("TEE-M", "S01"): 3,
                  ("JEANS-32", "S01"): 2, ("TEE-M", "S02"): 4})


def cart(client, headers, channel: str = "web", *lines: tuple[str, int], anonymous_id: str = "anon-1",
         customer_id: str | None = None) -> dict[str, Any]:
    owner = {"customer_id": customer_id} if customer_id else {"anonymous_id": anonymous_id}
    got = client.post("/api/v1/carts", json={"channel": channel, **owner}, headers=headers)
    assert got.status_code in (200, 201), got.text
    cid = got.json()["id"]
    for sku, q in lines or (("TEE-M", 2),):
        added = client.post(f"/api/v1/carts/{cid}/lines", json={"sku": sku, "quantity": q, "channel": channel},
                            headers=headers)
        assert added.status_code in (200, 201), added.text
    return client.get(f"/api/v1/carts/{cid}", headers=headers).json()


def checkout(client, headers, cart_id: str, key: str = "key-1", **body: Any):
    body.setdefault("channel", "web")
    body.setdefault("payments", [CARD])
    return client.post(f"/api/v1/carts/{cart_id}/checkout", json=body,
                       headers={**headers, "Idempotency-Key": key})


def events(db, name: str | None = None) -> list[str]:
    with db.transaction() as s:
        q = "SELECT event FROM events ORDER BY id" if name is None else \
            f"SELECT event FROM events WHERE event = '{name}' ORDER BY id"
        return [r[0] for r in s.execute(text(q))]


def level(db, sku: str, location: str) -> tuple[int, int]:
    with db.transaction() as s:
        lv = stock.level(s, sku, location)
        return lv.on_hand, lv.reserved


def test_a_web_checkout_makes_one_allocated_order_and_converts_the_cart(db, client, admin_headers):
    shop(db)
    c = cart(client, admin_headers, "web", ("TEE-M", 2))
    got = checkout(client, admin_headers, c["id"], expected_total=c["total"],
                   fulfilment={"mode": "ship", "ship_to": {"city": "Berlin", "latitude": 52.5, "longitude": 13.4}})
    assert got.status_code == 201, got.text
    order = got.json()
    assert order["status"] == "allocated" and order["payment_status"] == "authorised"
    assert order["total"] == c["total"] and order["fulfilment"] == "ship"
    assert [(ln["sku"], ln["quantity"]) for ln in order["lines"]] == [("TEE-M", 2)]
    assert order["sourcing"]["rule"] == "one_location" and "warehouse" in order["sourcing"]["explanation"][0]
    assert [s["location"] for s in order["shipments"]] == ["WH"]
    assert [h["to_status"] for h in order["history"]] == ["placed", "paid", "allocated"]
    assert order["allowed"] == ["picked", "cancelled"]
    assert level(db, "TEE-M", "WH") == (10, 2)  # held for the order until it ships
    assert client.get(f"/api/v1/carts/{c['id']}", headers=admin_headers).json()["status"] == "converted"
    names = events(db)
    for name in ("Checkout Started", "Order Placed", "Order Paid", "Order Completed", "Order Allocated"):
        assert name in names
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Payment)) == 1
    # what the checkout scheduled in case it never finished (its recovery, the reservation's expiry, the payment's
    # reconcile) went with its answer: only the capture is left to do
    assert pending_jobs(db) == ["payments.capture"]


def pending_jobs(db) -> list[str]:
    """The kinds of work the checkout left for later (the cart's own jobs aside)."""
    with db.transaction() as s:
        return sorted(r[0] for r in s.execute(text("SELECT kind FROM jobs WHERE status = 'pending' AND kind NOT LIKE "
                                                   "'carts.%'")))


def test_a_retry_with_the_same_key_returns_the_same_order_and_never_charges_twice(db, client, admin_headers):
    shop(db)
    c = cart(client, admin_headers)
    first = checkout(client, admin_headers, c["id"], key="dbl")
    again = checkout(client, admin_headers, c["id"], key="dbl")
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1
        assert s.scalar(select(func.count()).select_from(Payment)) == 1
    other = checkout(client, admin_headers, c["id"], key="dbl", channel="app")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    later = checkout(client, admin_headers, c["id"], key="another")
    assert later.status_code == 409 and later.json()["code"] == "cart_not_active"


def test_the_price_the_customer_saw_or_a_refusal_with_what_changed(db, client, admin_headers):
    shop(db)
    c = cart(client, admin_headers)
    got = checkout(client, admin_headers, c["id"], expected_total="1.00")
    assert got.status_code == 409 and got.json()["code"] == "price_changed"
    assert got.json()["details"]["quote"]["total"] == c["total"]
    assert level(db, "TEE-M", "WH") == (10, 0)  # nothing held
    assert "Checkout Started" not in events(db)


def test_a_declined_card_releases_the_stock_and_leaves_the_cart(db, client, admin_headers):
    shop(db)
    c = cart(client, admin_headers)
    got = checkout(client, admin_headers, c["id"],
                   payments=[{"method": "card", "provider": "test", "payment_method": "pm_card_chargeDeclined"}])
    assert got.status_code == 402, got.text
    assert got.json()["code"] == "payment_declined"
    assert level(db, "TEE-M", "WH") == (10, 0)
    assert client.get(f"/api/v1/carts/{c['id']}", headers=admin_headers).json()["status"] == "active"
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 0
    # the shopper tries another card: a new attempt (new key) goes through
    ok = checkout(client, admin_headers, c["id"], key="key-2")
    assert ok.status_code == 201, ok.text


def test_bad_checkouts_are_refused_and_change_nothing(db, client, admin_headers):
    shop(db)
    c = cart(client, admin_headers, customer_id=None)
    h = admin_headers
    no_key = client.post(f"/api/v1/carts/{c['id']}/checkout", json={"channel": "web", "payments": [CARD]},
                         headers=h)
    assert no_key.status_code == 422 and no_key.json()["field"] == "Idempotency-Key"
    assert checkout(client, h, "nope").status_code == 404
    empty = client.post("/api/v1/carts", json={"channel": "web", "anonymous_id": "anon-2"}, headers=h).json()
    got = checkout(client, h, empty["id"])
    assert got.status_code == 422 and got.json()["code"] == "empty_cart"
    short = checkout(client, h, c["id"], key="k3", payments=[{**CARD, "amount": "1.00"}])
    assert short.status_code == 422 and "payments" in short.json()["field"]
    assert level(db, "TEE-M", "WH") == (10, 0)


def test_click_and_collect_from_the_shelf_with_a_pickup_code_at_the_right_store(db, client, admin_headers):
    shop(db)
    h = admin_headers
    c = cart(client, h, "app", ("TEE-M", 1))
    got = checkout(client, h, c["id"], channel="app", fulfilment={"mode": "pickup", "location": "S01"})
    assert got.status_code == 201, got.text
    order = got.json()
    assert order["pickup_location"] == "S01" and order["shipping"] == "0.00"  # collected: no shipping fee
    oid = order["id"]

    def move(to: str, channel: str = "S01", **extra: Any):
        return client.post(f"/api/v1/orders/{oid}/transitions", json={"to": to, "channel": channel, **extra},
                           headers=h)

    early = move("collected", pickup_code="XXXXXX")
    assert early.status_code == 409 and early.json()["code"] == "illegal_transition"
    assert move("picked").status_code == 200
    ready = move("ready_for_pickup")
    assert ready.status_code == 200
    code = ready.json()["pickup_code"]
    assert code and len(code) == 6
    assert move("collected", "S02", pickup_code=code).json()["code"] == "wrong_store"
    assert move("collected", pickup_code="ABCDEF").json()["code"] == "wrong_pickup_code"
    done = move("collected", pickup_code=code)
    assert done.status_code == 200 and done.json()["status"] == "collected"
    assert level(db, "TEE-M", "S01") == (2, 0)  # sold off the shelf
    twice = move("collected", pickup_code=code)
    assert twice.status_code == 409
    assert "Order Ready for Pickup" in events(db) and "Order Collected" in events(db)


def test_an_uncollected_pickup_goes_back_to_stock_after_its_deadline(db, client, admin_headers):
    shop(db)
    h = admin_headers
    c = cart(client, h, "web", ("JEANS-32", 1))
    oid = checkout(client, h, c["id"], fulfilment={"mode": "pickup", "location": "S01"}).json()["id"]
    for to in ("picked", "ready_for_pickup"):
        assert client.post(f"/api/v1/orders/{oid}/transitions", json={"to": to, "channel": "S01"},
                           headers=h).status_code == 200
    assert level(db, "JEANS-32", "S01") == (2, 1)
    with db.transaction() as s:
        s.execute(text("UPDATE orders SET pickup_deadline = :t"), {"t": "2000-01-01 00:00:00"})
        s.execute(text("UPDATE jobs SET run_at = :t WHERE kind = 'orders.release_uncollected'"),
                  {"t": "2000-01-01 00:00:00"})
    run_jobs(db)
    order = client.get(f"/api/v1/orders/{oid}", headers=h).json()
    assert order["status"] == "cancelled"
    assert level(db, "JEANS-32", "S01") == (2, 0)
    assert "Pickup Released" in events(db) and "Order Cancelled" in events(db)


def test_a_till_sells_from_its_shelf_at_once(db, client, admin_headers):
    shop(db)
    h = admin_headers
    c = cart(client, h, "S01", ("JEANS-32", 2))
    got = checkout(client, h, c["id"], channel="S01", fulfilment={"mode": "in_store"},
                   payments=[{"method": "cash"}])
    assert got.status_code == 201, got.text
    assert got.json()["status"] == "collected"
    assert level(db, "JEANS-32", "S01") == (0, 0)
    with db.transaction() as s:
        assert stock.check(s) == []


def test_no_single_location_has_everything_so_the_fewest_parcels(db, client, admin_headers):
    network(db)
    priced(db)
    stock_up(db, {("TEE-M", "WH"): 5, ("JEANS-32", "S01"): 1})
    h = admin_headers
    c = cart(client, h, "web", ("TEE-M", 1), ("JEANS-32", 1))
    order = checkout(client, h, c["id"]).json()
    assert order["sourcing"]["rule"] == "fewest_shipments"
    assert sorted(s["location"] for s in order["shipments"]) == ["S01", "WH"]
    oid = order["id"]
    assert client.post(f"/api/v1/orders/{oid}/transitions", json={"to": "picked", "channel": "web"},
                       headers=h).status_code == 200
    one = client.post(f"/api/v1/orders/{oid}/transitions",
                      json={"to": "shipped", "channel": "web", "location": "WH", "tracking": "1Z1"}, headers=h)
    assert one.status_code == 200 and one.json()["status"] == "picked"  # one parcel of two has left
    both = client.post(f"/api/v1/orders/{oid}/transitions", json={"to": "shipped", "channel": "web"}, headers=h)
    assert both.status_code == 200 and both.json()["status"] == "shipped"
    assert level(db, "TEE-M", "WH") == (4, 0) and level(db, "JEANS-32", "S01") == (0, 0)


def test_out_of_stock_at_checkout_offers_alternatives(db, client, admin_headers):
    network(db)
    priced(db)
    stock_up(db, {("JEANS-32", "S02"): 1})  # only on a shelf that does not ship
    h = admin_headers
    c = cart(client, h, "web", ("JEANS-32", 1))
    got = checkout(client, h, c["id"])
    assert got.status_code == 409 and got.json()["code"] == "out_of_stock"
    ok = checkout(client, h, c["id"], key="k2", fulfilment={"mode": "pickup", "location": "S02"})
    assert ok.status_code == 201, ok.text


def test_orders_are_listed_the_same_for_every_channel(db, client, admin_headers):
    shop(db)
    h = admin_headers
    from tests.factories_inventory import STORES  # noqa: F401

    c1 = cart(client, h, "web", ("TEE-M", 1), anonymous_id="a1")
    o1 = checkout(client, h, c1["id"]).json()
    c2 = cart(client, h, "S01", ("TEE-M", 1), anonymous_id="a2")
    o2 = checkout(client, h, c2["id"], channel="S01", fulfilment={"mode": "in_store"},
                  payments=[{"method": "cash"}]).json()
    everything = client.get("/api/v1/orders", headers=h).json()
    assert [o["id"] for o in everything["items"]] == [o2["id"], o1["id"]]
    stores = client.get("/api/v1/orders", params={"channel": "S01"}, headers=h).json()
    assert [o["id"] for o in stores["items"]] == [o2["id"]]
    by_mode = client.get("/api/v1/orders", params={"fulfilment": "ship"}, headers=h).json()
    assert [o["id"] for o in by_mode["items"]] == [o1["id"]]
    by_number = client.get(f"/api/v1/orders/{o1['number']}", headers=h)
    assert by_number.status_code == 200 and by_number.json()["id"] == o1["id"]


def test_the_customer_360_shows_orders_from_every_channel(db, client, admin_headers):
    from tests.carts.test_carts import customer

    shop(db)
    h = admin_headers
    who = customer(db)
    c1 = cart(client, h, "app", ("TEE-M", 1), customer_id=who)
    checkout(client, h, c1["id"], channel="app", customer_id=who)
    c2 = cart(client, h, "S01", ("JEANS-32", 1), customer_id=who)
    checkout(client, h, c2["id"], channel="S01", fulfilment={"mode": "in_store"}, payments=[{"method": "cash"}])
    seen = client.get(f"/api/v1/customers/{who}", headers=h).json()["orders"]
    assert seen["count"] == 2 and seen["by_channel"] == {"app": 1, "S01": 1}
    assert seen["spent"] == {"EUR": "104.95"}  # 20.00 + 4.95 shipping in the app, 80.00 at the till
    assert [o["channel"] for o in seen["recent"]] == ["S01", "app"]
    someone_else = customer(db)
    c3 = cart(client, h, "web", ("TEE-S", 1), customer_id=who)
    refused = checkout(client, h, c3["id"], customer_id=someone_else)
    assert refused.status_code == 403 and refused.json()["code"] == "not_your_cart"


def test_a_voucher_is_redeemed_once_and_a_second_cart_is_told_what_changed(db, client, admin_headers):
    from omnijourney.pricing import offers
    from omnijourney.pricing.models import Voucher

    shop(db)
    h = admin_headers
    with db.transaction() as s:
        offers.create_promotion(s, code="five", name="5 off", rule={"type": "amount_off", "amount": 5},
                                currency="EUR", needs_voucher=True)
        offers.create_voucher(s, code="ONCE", promotion="five", max_uses=1)
    carts = []
    for anon in ("v1", "v2"):
        c = cart(client, h, "web", ("TEE-M", 1), anonymous_id=anon)
        got = client.post(f"/api/v1/carts/{c['id']}/vouchers", json={"code": "ONCE", "channel": "web"}, headers=h)
        assert got.status_code == 200, got.text
        carts.append(got.json())
    first = checkout(client, h, carts[0]["id"], key="a", expected_total=carts[0]["total"])
    assert first.status_code == 201 and first.json()["vouchers"] == ["ONCE"]
    assert checkout(client, h, carts[0]["id"], key="a", expected_total=carts[0]["total"]).status_code == 201
    with db.transaction() as s:
        assert s.get(Voucher, "ONCE").used == 1  # the retry redeemed nothing
    second = checkout(client, h, carts[1]["id"], key="b", expected_total=carts[1]["total"])
    assert second.status_code == 409 and second.json()["code"] == "price_changed"
    assert second.json()["details"]["quote"]["total"] != carts[1]["total"]


def test_order_in_store_deliver_home(db, client, admin_headers):
    """The endless aisle: a store's till sells what its shelf lacks, shipped home from the warehouse."""
    shop(db)
    h = admin_headers
    c = cart(client, h, "S02", ("TEE-S", 1))  # S02 has no TEE-S on its shelf
    got = checkout(client, h, c["id"], channel="S02", fulfilment={"mode": "ship", "ship_to": {"city": "Potsdam"}},
                   payments=[{"method": "cash"}])
    assert got.status_code == 201, got.text
    order = got.json()
    assert order["channel"] == "S02" and [s["location"] for s in order["shipments"]] == ["WH"]
    assert order["shipping"] == "4.95" and order["status"] == "allocated"


def test_a_double_click_makes_one_order_and_both_clicks_get_it(db, client, admin_headers):
    """Two requests with one key at the same moment (PostgreSQL: truly at once): one order, one charge."""
    import threading

    from omnijourney.orders import checkout as service

    shop(db)
    c = cart(client, admin_headers, "web", ("TEE-M", 1))
    req = service.Request(cart_id=c["id"], channel_code="web", tenders=[CARD])
    answers: list[service.Answer] = []
    barrier = threading.Barrier(2)

    def click() -> None:
        barrier.wait()
        answers.append(service.checkout(db, req, idempotency_key="click"))

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status for a in answers] == [201, 201], [a.body for a in answers]
    assert answers[0].body["id"] == answers[1].body["id"]
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1
        assert s.scalar(select(func.count()).select_from(Payment)) == 1


def test_goods_sent_to_the_pickup_store_stay_there_if_nobody_collects_them(db, client, admin_headers):
    shop(db)
    h = admin_headers
    c = cart(client, h, "web", ("TEE-S", 1))  # no TEE-S on S02's shelf: the warehouse sends it
    order = checkout(client, h, c["id"], fulfilment={"mode": "pickup", "location": "S02"}).json()
    assert order["sourcing"]["rule"] == "transfer_to_store"
    run_jobs(db)  # captured
    assert client.get(f"/api/v1/orders/{order['id']}", headers=h).json()["payment_status"] == "paid"
    for to in ("picked", "ready_for_pickup"):
        assert client.post(f"/api/v1/orders/{order['id']}/transitions", json={"to": to, "channel": "S02"},
                           headers=h).status_code == 200
    assert level(db, "TEE-S", "WH") == (9, 0) and level(db, "TEE-S", "S02") == (1, 1)  # on the store's shelf, held
    with db.transaction() as s:
        s.execute(text("UPDATE orders SET pickup_deadline = :t"), {"t": "2000-01-01 00:00:00"})
        s.execute(text("UPDATE jobs SET run_at = :t WHERE kind = 'orders.release_uncollected'"),
                  {"t": "2000-01-01 00:00:00"})
    run_jobs(db)
    assert level(db, "TEE-S", "S02") == (1, 0)  # released: the unit is S02's to sell now
    from omnijourney.inventory import stock as stock_service

    with db.transaction() as s:
        assert stock_service.check(s) == []


def test_an_order_follows_its_customer_through_a_merge(db, client, admin_headers):
    """An order of a profile later merged is the survivor's: listed under it, its timeline events moved with it."""
    from tests.customers.test_identity import customer_of
    from tests.factories import msg, send, source

    shop(db)
    h = admin_headers
    web, till = source(db, "web"), source(db, "store", store="S01")
    send(db, msg(web, "identify", user_id="u-1", anonymous_id="w-1", minutes=0))
    send(db, msg(till, "identify", anonymous_id="pos-1", minutes=5,
                 context={"externalIds": [{"id": "LC-1", "type": "loyalty_card"}]}))
    first, second = customer_of(db, "user_id", "u-1"), customer_of(db, "loyalty_card", "LC-1")
    c = cart(client, h, "S01", ("JEANS-32", 1), customer_id=second)
    order = checkout(client, h, c["id"], channel="S01", fulfilment={"mode": "in_store"},
                     payments=[{"method": "cash"}]).json()
    send(db, msg(web, "identify", user_id="u-1", minutes=10,
                 context={"externalIds": [{"id": "LC-1", "type": "loyalty_card"}]}))
    run_jobs(db)  # the domains follow the merge in a background job
    assert client.get(f"/api/v1/orders/{order['id']}", headers=h).json()["customer_id"] == first
    listed = client.get("/api/v1/orders", params={"customer_id": first}, headers=h).json()["items"]
    assert [o["id"] for o in listed] == [order["id"]]
    assert client.get(f"/api/v1/customers/{first}", headers=h).json()["orders"]["count"] == 1
