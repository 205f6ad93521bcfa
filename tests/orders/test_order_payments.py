"""Money around orders: split tender, 3-D Secure completing later, paying a reserved order at the till, a checkout
whose request was lost finished by the recovery job, and cancellations giving the money back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text

from omnijourney.orders import checkout as checkout_service
from omnijourney.orders.models import Checkout, Order
from omnijourney.payments import giftcards
from omnijourney.payments.models import Payment
from tests.factories import run_jobs
from tests.orders.test_checkout import CARD, cart, checkout, events, level, pending_jobs, shop

WEBHOOK = "/api/v1/payments/webhooks/test"


def gift_card(db, amount: str = "15.00") -> str:
    from decimal import Decimal

    with db.transaction() as s:
        return giftcards.issue(s, currency="EUR", amount=Decimal(amount)).code


def balance(client, h, code: str) -> str:
    return client.get(f"/api/v1/gift-cards/{code}", headers=h).json()["balance"]


def payments_of(db) -> list[tuple[str, str, str]]:
    with db.transaction() as s:
        return [(p.method, p.status, str(p.amount)) for p in s.scalars(select(Payment).order_by(Payment.position))]


def test_a_gift_card_and_a_card_pay_one_order(db, client, admin_headers):
    shop(db)
    h = admin_headers
    code = gift_card(db, "15.00")
    c = cart(client, h, "web", ("TEE-M", 1))  # 20.00 + 4.95 shipping
    got = checkout(client, h, c["id"], payments=[{"method": "gift_card", "code": code, "amount": "15.00"}, CARD])
    assert got.status_code == 201, got.text
    assert sorted((p["method"], p["amount"]) for p in got.json()["payments"]) == [("card", "9.95"),
                                                                                  ("gift_card", "15.00")]
    assert balance(client, h, code) == "0.00"
    run_jobs(db)
    assert {status for _, status, _ in payments_of(db)} == {"captured"}


def test_the_capture_job_alone_makes_the_order_paid(db, client, admin_headers):
    from omnijourney.jobs.models import Job
    from omnijourney.jobs.worker import Worker

    shop(db)
    h = admin_headers
    code = gift_card(db, "15.00")
    order = checkout(client, h, cart(client, h, "web", ("TEE-M", 1))["id"],
                     payments=[{"method": "gift_card", "code": code, "amount": "15.00"}, CARD]).json()
    assert order["payment_status"] == "authorised"
    Worker(db, name="tests").run_once()  # one round: the jobs due now, the two captures among them
    assert client.get(f"/api/v1/orders/{order['id']}", headers=h).json()["payment_status"] == "paid"
    with db.transaction() as s:  # followed in the capture's own transaction: nothing left to do for the order
        assert s.scalar(select(func.count()).select_from(Job).where(Job.kind.in_(
            ("payments.capture", "orders.follow_payment")))) == 0


def test_a_declined_card_gives_the_gift_card_its_money_back(db, client, admin_headers):
    shop(db)
    h = admin_headers
    code = gift_card(db, "15.00")
    c = cart(client, h, "web", ("TEE-M", 1))
    got = checkout(client, h, c["id"], payments=[
        {"method": "gift_card", "code": code, "amount": "15.00"},
        {"method": "card", "provider": "test", "payment_method": "pm_card_chargeDeclinedInsufficientFunds"}])
    assert got.status_code == 402, got.text
    assert got.json()["field"] == "payments[1]" and "insufficient" in got.json()["message"].lower()
    assert balance(client, h, code) == "15.00"
    assert level(db, "TEE-M", "WH") == (10, 0)


def test_a_payment_waiting_for_3ds_completes_the_order_by_webhook(db, client, admin_headers):
    shop(db)
    h = admin_headers
    c = cart(client, h, "app", ("TEE-M", 1))
    got = checkout(client, h, c["id"], channel="app",
                   payments=[{"method": "card", "provider": "test", "payment_method": "pm_card_threeDSecure2Required"}])
    assert got.status_code == 202, got.text
    order = got.json()
    assert order["status"] == "placed" and order["payment_status"] == "pending"
    assert "/payments/test-provider/authenticate/" in order["next_action_url"]
    assert level(db, "TEE-M", "WH") == (10, 1)  # held while the shopper confirms
    assert "Order Completed" not in events(db)
    # the units are held until the shopper's deadline, and the payment stays watched until it finds its order
    assert pending_jobs(db) == ["inventory.expire_reservation", "payments.reconcile"]
    ref = order["next_action_url"].rsplit("/", 1)[1]
    hook = client.post(f"/payments/test-provider/api/authenticate/{ref}",
                       json={"action": "authenticate", "deliver": False}).json()["webhook"]
    assert client.post(WEBHOOK, content=hook["body"], headers=hook["headers"]).status_code == 200
    run_jobs(db)
    now = client.get(f"/api/v1/orders/{order['id']}", headers=h).json()
    assert now["status"] == "allocated" and now["payment_status"] == "paid"  # authorised, then captured by the job
    assert "Order Completed" in events(db)


def test_a_failed_3ds_cancels_the_order_and_frees_the_units(db, client, admin_headers):
    shop(db)
    h = admin_headers
    c = cart(client, h, "web", ("TEE-M", 1))
    order = checkout(client, h, c["id"], payments=[
        {"method": "card", "provider": "test", "payment_method": "pm_card_authenticationRequired"}]).json()
    ref = order["next_action_url"].rsplit("/", 1)[1]
    hook = client.post(f"/payments/test-provider/api/authenticate/{ref}",
                       json={"action": "fail", "deliver": False}).json()["webhook"]
    client.post(WEBHOOK, content=hook["body"], headers=hook["headers"])
    run_jobs(db)
    now = client.get(f"/api/v1/orders/{order['id']}", headers=h).json()
    assert now["status"] == "cancelled"
    assert level(db, "TEE-M", "WH") == (10, 0)


def test_reserve_online_pay_at_the_till_then_collect(db, client, admin_headers):
    shop(db)
    h = admin_headers
    c = cart(client, h, "web", ("TEE-M", 1))
    got = checkout(client, h, c["id"], payments=[], fulfilment={"mode": "reserve_in_store", "location": "S01"})
    assert got.status_code == 201, got.text
    order = got.json()
    assert order["payment_status"] == "unpaid" and order["status"] == "allocated"
    oid = order["id"]

    def move(to: str, **extra: Any):
        return client.post(f"/api/v1/orders/{oid}/transitions", json={"to": to, "channel": "S01", **extra},
                           headers=h)

    move("picked")
    code = move("ready_for_pickup").json()["pickup_code"]
    unpaid = move("collected", pickup_code=code)
    assert unpaid.status_code == 409 and unpaid.json()["code"] == "unpaid"

    def pay(channel: str, key: str, tenders: list[dict[str, Any]]):
        return client.post(f"/api/v1/orders/{oid}/payments", json={"channel": channel, "payments": tenders},
                           headers={**h, "Idempotency-Key": key})

    assert pay("S02", "t1", [{"method": "cash"}]).json()["code"] == "wrong_store"
    paid = pay("S01", "t2", [{"method": "cash", "amount": "10.00"}, CARD])
    assert paid.status_code == 200, paid.text
    assert paid.json()["payment_status"] == "paid"
    again = pay("S01", "t2", [{"method": "cash", "amount": "10.00"}, CARD])
    assert again.status_code == 200  # the same key: nothing charged twice
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Payment)) == 2
    done = move("collected", pickup_code=code)
    assert done.status_code == 200 and done.json()["status"] == "collected"
    assert level(db, "TEE-M", "S01") == (2, 0)


def test_a_lost_checkout_request_is_finished_by_the_recovery_job(db, client, admin_headers):
    """The server died after reserving and recording the payment, before authorising: the job completes it."""
    shop(db)
    h = admin_headers
    c = cart(client, h, "web", ("TEE-M", 1))
    req = checkout_service.Request(cart_id=c["id"], channel_code="web", tenders=[CARD])
    with db.transaction() as s:  # step 1 only, as a crash would leave it
        co = checkout_service._reserve(s, req, "lost-key", req.fingerprint())
        checkout_id = co.id
    with db.transaction() as s:
        s.execute(text("UPDATE jobs SET run_at = :t WHERE kind = 'orders.finish_checkout'"),
                  {"t": "2000-01-01 00:00:00"})
    run_jobs(db)
    with db.transaction() as s:
        co = s.get(Checkout, checkout_id)
        assert co.status == "completed" and co.answer_status == 201
        assert s.scalar(select(func.count()).select_from(Order)) == 1
    # the client comes back with its key and gets the order the job made
    again = client.post(f"/api/v1/carts/{c['id']}/checkout", json={"channel": "web", "payments": [CARD]},
                        headers={**h, "Idempotency-Key": "lost-key"})
    assert again.status_code == 201 and again.json()["id"] == co.order_id


def test_a_cancelled_order_gets_its_money_back(db, client, admin_headers):
    shop(db)
    h = admin_headers
    c = cart(client, h, "web", ("TEE-M", 1))
    order = checkout(client, h, c["id"]).json()
    run_jobs(db)  # captured
    got = client.post(f"/api/v1/orders/{order['id']}/transitions",
                      json={"to": "cancelled", "channel": "web", "note": "changed mind"},
                      headers=h)
    assert got.status_code == 200 and got.json()["status"] == "cancelled"
    assert level(db, "TEE-M", "WH") == (10, 0)
    run_jobs(db)
    now = client.get(f"/api/v1/orders/{order['id']}", headers=h).json()
    assert now["payment_status"] == "refunded" and now["refunded"] == now["total"]
    assert "Order Refunded" in events(db)
    shipped = client.post(f"/api/v1/orders/{order['id']}/transitions", json={"to": "picked", "channel": "web"},
                          headers=h)
    assert shipped.status_code == 409 and shipped.json()["code"] == "illegal_transition"
