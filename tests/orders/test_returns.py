"""Returns in any channel: bought online, returned in a store (and the reverse), partly, with reasons, refunded to
the original tenders; what was never bought, or twice, is refused."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from tests.factories import run_jobs
from tests.factories_inventory import network, priced, stock_up
from tests.orders.test_audit import tell_refund
from tests.orders.test_checkout import cart, checkout, events, level
from tests.payments.conftest import payment_settings, stripe_server  # noqa: F401 (fixtures)

STRIPE_CARD = {"method": "card", "provider": "stripe", "payment_method": "pm_card_visa"}


def delivered_order(db, client, h, *lines: tuple[str, int], **body: Any) -> dict[str, Any]:
    c = cart(client, h, "web", *lines)
    order = checkout(client, h, c["id"], **body).json()
    run_jobs(db)  # the capture
    for to in ("picked", "shipped", "delivered"):
        got = client.post(f"/api/v1/orders/{order['id']}/transitions", json={"to": to, "channel": "web"}, headers=h)
        assert got.status_code == 200, got.text
    return got.json()


def give_back(client, h, order_id: str, channel: str = "S02", **body: Any):
    body.setdefault("lines", [{"sku": "TEE-M", "quantity": 1, "reason": "too small"}])
    return client.post(f"/api/v1/orders/{order_id}/returns", json={"channel": channel, **body}, headers=h)


def test_bought_online_returned_in_a_store_partly_then_fully(db, client, admin_headers):
    network(db)
    priced(db)
    stock_up(db, {("TEE-M", "WH"): 5})
    h = admin_headers
    order = delivered_order(db, client, h, ("TEE-M", 2))
    assert level(db, "TEE-M", "WH") == (3, 0)
    first = give_back(client, h, order["id"])
    assert first.status_code == 201, first.text
    assert first.json()["location"] == "S02" and first.json()["refund_amount"] == "20.00"
    assert level(db, "TEE-M", "S02") == (1, 0)  # back on the Potsdam shelf, sellable there
    now = client.get(f"/api/v1/orders/{order['id']}", headers=h).json()
    assert now["status"] == "partly_returned" and now["refunded"] == "20.00"
    assert now["lines"][0]["returned"] == 1
    second = give_back(client, h, order["id"], lines=[{"sku": "TEE-M", "quantity": 1, "reason": "colour",
                                                       "condition": "damaged"}])
    assert second.status_code == 201
    assert level(db, "TEE-M", "QUAR") == (1, 0)  # damaged: quarantine, never sold
    done = client.get(f"/api/v1/orders/{order['id']}", headers=h).json()
    assert done["status"] == "returned" and done["refunded"] == "40.00"  # the goods; shipping is not refunded
    assert "Order Returned" in events(db) and "Order Refunded" in events(db)


def test_returning_twice_or_what_was_never_bought_is_refused(db, client, admin_headers):
    network(db)
    priced(db)
    stock_up(db, {("TEE-M", "WH"): 5})
    h = admin_headers
    order = delivered_order(db, client, h, ("TEE-M", 1))
    assert give_back(client, h, order["id"]).status_code == 201
    again = give_back(client, h, order["id"])
    assert again.status_code == 409 and again.json()["code"] in ("already_returned", "not_returnable")
    never = give_back(client, h, order["id"], lines=[{"sku": "JEANS-32", "quantity": 1, "reason": "x"}])
    assert never.status_code in (409, 422)


def test_a_return_before_the_goods_left_is_refused(db, client, admin_headers):
    network(db)
    priced(db)
    stock_up(db, {("TEE-M", "WH"): 5})
    h = admin_headers
    c = cart(client, h, "web", ("TEE-M", 1))
    order = checkout(client, h, c["id"]).json()
    got = give_back(client, h, order["id"])
    assert got.status_code == 409 and got.json()["code"] == "not_returnable"
    assert "cancel it instead" in got.json()["message"]


def test_bought_in_a_store_sent_back_to_the_warehouse(db, client, admin_headers):
    network(db)
    priced(db)
    stock_up(db, {("JEANS-32", "S01"): 2})
    h = admin_headers
    c = cart(client, h, "S01", ("JEANS-32", 1))
    order = checkout(client, h, c["id"], channel="S01", fulfilment={"mode": "in_store"},
                     payments=[{"method": "cash"}]).json()
    run_jobs(db)
    got = give_back(client, h, order["id"], channel="web", location="WH",
                    lines=[{"sku": "JEANS-32", "quantity": 1, "reason": "does not fit"}])
    assert got.status_code == 201, got.text
    assert level(db, "JEANS-32", "WH") == (1, 0)
    assert got.json()["refund_amount"] == "80.00"


def test_an_exchange_for_another_size_at_the_store_counter(db, client, admin_headers):
    network(db)
    priced(db)
    stock_up(db, {("TEE-M", "WH"): 5, ("TEE-S", "S01"): 2})
    h = admin_headers
    order = delivered_order(db, client, h, ("TEE-M", 1))
    got = give_back(client, h, order["id"], channel="S01", exchange=[{"sku": "TEE-S", "quantity": 1}])
    assert got.status_code == 201, got.text
    ret = got.json()
    assert ret["refund_amount"] == "0.00" and ret["exchange_order_id"]
    swap = client.get(f"/api/v1/orders/{ret['exchange_order_id']}", headers=h).json()
    assert swap["status"] == "collected" and swap["fulfilment"] == "in_store"
    assert [(ln["sku"], ln["total"]) for ln in swap["lines"]] == [("TEE-S", "20.00")]
    assert level(db, "TEE-S", "S01") == (1, 0) and level(db, "TEE-M", "S01") == (1, 0)
    not_a_swap = give_back(client, h, order["id"], channel="S01", exchange=[{"sku": "JEANS-32", "quantity": 1}])
    assert not_a_swap.status_code in (409, 422)


def test_a_desk_sees_what_can_come_back_and_the_receipt_of_what_did(db, client, admin_headers):
    from omnijourney.orders import returns

    network(db)
    priced(db)
    stock_up(db, {("TEE-M", "WH"): 5})
    h = admin_headers
    order = delivered_order(db, client, h, ("TEE-M", 2))
    with db.transaction(write=False) as s:
        before = returns.returnable(s, order_id=order["number"], channel_code="S02")
    [line] = before.lines
    assert before.refused is None and before.received_at is not None
    assert (line.sku, line.left, line.unit_refund, line.refused) == ("TEE-M", 2, Decimal("20.00"), None)
    assert line.closes == (before.received_at + timedelta(days=30)).date()
    assert [sku for sku, _ in line.exchange_for] == ["TEE-S", "TEE-M"]  # the tee's sizes Potsdam sells
    ret = give_back(client, h, order["id"], lines=[{"sku": "TEE-M", "quantity": 2, "reason": "too small"}]).json()
    with db.transaction(write=False) as s:
        got = returns.receipt(s, ret["id"])
        after = returns.returnable(s, order_id=order["id"], channel_code="S02")
    assert [(p.method, p.brand, p.last4, p.amount, p.status) for p in got.refund] == [
        ("card", "visa", "4242", Decimal("40.00"), "pending")]  # the refund job has not sent it yet
    assert [(p.sku, p.quantity, p.location, p.quarantine, p.on_hand) for p in got.placed] == [
        ("TEE-M", 2, "S02", False, 2)]
    assert after.refused == f"order {order['number']} is returned: nothing can come back"
    assert after.lines[0].refused == "all 2 came back already"
    run_jobs(db)
    with db.transaction(write=False) as s:
        assert [p.status for p in returns.receipt(s, ret["id"]).refund] == ["succeeded"]


@pytest.mark.usefixtures("payment_settings")
def test_a_refund_that_never_reaches_the_card_is_told_on_the_timeline(db, client, admin_headers,
                                                                     stripe_server):  # noqa: F811
    from omnijourney.orders import returns

    network(db)
    priced(db)
    stock_up(db, {("TEE-M", "WH"): 5})
    h = admin_headers
    order = delivered_order(db, client, h, ("TEE-M", 1), payments=[STRIPE_CARD])  # captured at Stripe
    ret = give_back(client, h, order["id"]).json()
    run_jobs(db)  # the refund, sent to Stripe
    with db.transaction(write=False) as s:
        [part] = returns.receipt(s, ret["id"]).refund
    assert part.status == "succeeded"
    # weeks later the card turns out closed: Stripe tells us the refund failed
    refund = next(r for r in stripe_refunds(db, order) if r["status"] == "succeeded")
    stripe_server.fake.fail_refund(refund["id"])
    failed = next(r for r in stripe_refunds(db, order) if r["id"] == refund["id"])
    assert tell_refund(client, failed, "evt_closed_card") == "applied"
    run_jobs(db)
    with db.transaction(write=False) as s:
        [part] = returns.receipt(s, ret["id"]).refund
    assert (part.status, part.amount) == ("failed", Decimal("20.00"))  # the desk sees it, and refunds another way
    props = told_refund_failed(db)
    assert (props["order_id"], props["refund"], props["method"], props["failure_code"]) == (
        order["id"], "20.00", "card", "expired_or_canceled_card")


@pytest.mark.usefixtures("payment_settings")
def test_a_refund_stripe_refuses_is_told_on_the_timeline_too(db, client, admin_headers):
    from omnijourney.payments import providers

    network(db)
    priced(db)
    stock_up(db, {("TEE-M", "WH"): 5})
    h = admin_headers
    order = delivered_order(db, client, h, ("TEE-M", 1), payments=[STRIPE_CARD])
    with db.transaction(write=False) as s:
        ref = s.execute(text("SELECT provider_ref FROM payments WHERE order_id = :id"), {"id": order["id"]}).scalar()
    # someone refunded it all in Stripe's dashboard: the return's refund is refused there
    providers.get("stripe", db).refund(ref=ref, amount=Decimal(order["total"]), currency="EUR",
                                       idempotency_key=f"dashboard:{ref}")
    give_back(client, h, order["id"])
    run_jobs(db)
    props = told_refund_failed(db)
    assert (props["refund"], props["failure_code"]) == ("20.00", "charge_already_refunded")


def told_refund_failed(db) -> dict[str, Any]:
    """The properties of the one "Refund Failed" event on the timeline."""
    with db.transaction(write=False) as s:
        [props] = s.execute(text("SELECT properties FROM events WHERE event = 'Refund Failed'")).scalars().all()
    return props if isinstance(props, dict) else json.loads(props)


def stripe_refunds(db, order: dict[str, Any]) -> list[dict[str, Any]]:
    """The order's card payment's Refund objects, as Stripe lists them."""
    from omnijourney.payments import providers

    [p] = [p for p in order["payments"] if p["method"] == "card"]
    with db.transaction(write=False) as s:
        ref = s.execute(text("SELECT provider_ref FROM payments WHERE id = :id"), {"id": p["id"]}).scalar_one()
    return providers.get("stripe", db).refunds(ref)
