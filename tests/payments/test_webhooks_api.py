"""Pending payments completed by webhook, the webhook endpoint's signature check and replays, the test provider's
bank page (with real delivery over HTTP), gift cards and payments through the API."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from omnijourney.config import Settings
from omnijourney.db import Database
from omnijourney.payments import service, signatures
from omnijourney.payments.models import Payment
from tests.conftest import make_key
from tests.factories import run_jobs
from tests.payments.conftest import STRIPE_SECRET
from tests.payments.helpers import balance, begin, card, gift_card, intents_for, payment, statuses

WEBHOOK = "/api/v1/payments/webhooks/test"


@pytest.fixture(autouse=True)
def _providers(payment_settings: Settings) -> None:
    """Every test here uses the providers configured for it."""


@pytest.fixture
def heard() -> Any:
    """What the on_change listeners heard: (payment id, status) in the webhook's transaction."""
    seen: list[tuple[str, str]] = []

    def listener(session: Any, p: Payment) -> None:
        seen.append((p.id, p.status))

    service.on_change(listener)
    yield seen
    service._listeners.remove(listener)


def _pending(db: Database, *tenders: dict) -> tuple[list[str], service.AuthoriseOutcome]:
    ids = begin(db, "50.00", *(tenders or (card("pm_card_threeDSecure2Required"),)))
    outcome = service.authorise(db, ids)
    assert outcome.status == "pending"
    return ids, outcome


def _authenticate(client: TestClient, ref: str, action: str = "authenticate") -> dict[str, Any]:
    r = client.post(f"/payments/test-provider/api/authenticate/{ref}", json={"action": action, "deliver": False})
    assert r.status_code == 200, r.text
    return r.json()["webhook"]


def test_a_pending_payment_is_authorised_by_the_webhook(db: Database, client: TestClient, heard: list) -> None:
    ids, outcome = _pending(db)
    p = payment(db, ids[0])
    assert outcome.next_action_url == p.next_action_url
    assert p.next_action_url.endswith(f"/payments/test-provider/authenticate/{p.provider_ref}")
    hook = _authenticate(client, p.provider_ref)
    assert hook["url"] == "http://testserver/api/v1/payments/webhooks/test"
    r = client.post(WEBHOOK, content=hook["body"], headers=hook["headers"])
    assert r.json() == {"received": True, "outcome": "applied"}
    p = payment(db, ids[0])
    assert (p.status, p.authorised_minor, p.next_action_url) == ("authorised", 5000, None)
    assert heard == [(p.id, "authorised")]
    # the provider sends it again (it never saw our answer): applied once
    r = client.post(WEBHOOK, content=hook["body"], headers=hook["headers"])
    assert r.json()["outcome"] == "duplicate"
    assert heard == [(p.id, "authorised")]
    # the order can now be made and paid
    with db.transaction() as session:
        service.attach(session, ids, "order-1")
        service.enqueue_capture(session, ids)
    run_jobs(db)
    assert statuses(db, ids) == ["captured"]


def test_a_failed_authentication_declines_and_releases_the_other_tenders(db: Database, client: TestClient,
                                                                       heard: list) -> None:
    code = gift_card(db, "20.00")
    ids, _ = _pending(db, {"method": "gift_card", "code": code, "amount": "20.00"},
                      card("pm_card_authenticationRequired"))
    assert balance(db, code)[0] == Decimal("0.00")  # held while the shopper is at the bank
    ref = payment(db, ids[1]).provider_ref
    hook = _authenticate(client, ref, "fail")
    assert client.post(WEBHOOK, content=hook["body"], headers=hook["headers"]).json()["outcome"] == "applied"
    p = payment(db, ids[1])
    assert (p.status, p.decline_code) == ("declined", "payment_intent_authentication_failure")
    assert heard == [(p.id, "declined")]
    assert run_jobs(db) == 1  # the void of the gift card, outside the webhook's transaction
    assert statuses(db, ids) == ["voided", "declined"]
    assert balance(db, code) == (Decimal("20.00"), Decimal("20.00"))


def test_webhooks_with_a_bad_signature_are_refused_and_change_nothing(db: Database, client: TestClient) -> None:
    ids, _ = _pending(db)
    hook = _authenticate(client, payment(db, ids[0]).provider_ref)
    body, header = hook["body"], hook["headers"]["Stripe-Signature"]
    cases = {
        "tampered": (body.replace("requires_capture", "requires_capturE"), header),
        "other secret": (body, signatures.sign(body.encode(), "whsec_someone_else")),
        "too old": (body, signatures.sign(body.encode(), "whsec_omnijourney_test_provider",
                                          timestamp=int(time.time()) - 3600)),
        "unsigned": (body, None),
    }
    for name, (content, signature) in cases.items():
        headers = {"Content-Type": "application/json"} | ({"Stripe-Signature": signature} if signature else {})
        r = client.post(WEBHOOK, content=content, headers=headers)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_signature"), name
    assert payment(db, ids[0]).status == "pending"
    assert client.post("/api/v1/payments/webhooks/nobody", content=body, headers=hook["headers"]).status_code == 404


def test_stripe_webhooks_reach_stripe_payments(db: Database, client: TestClient) -> None:
    ids = begin(db, "30.00", card("pm_card_threeDSecure2Required", provider="stripe"))
    assert service.authorise(db, ids).status == "pending"
    p = payment(db, ids[0])
    assert p.next_action_url.startswith("https://hooks.stripe.com/3d_secure_2/hosted?payment_intent=")
    body = (b'{"id": "evt_1", "object": "event", "type": "payment_intent.amount_capturable_updated", "data": '
            b'{"object": {"id": "%s", "object": "payment_intent", "amount": 3000, "amount_capturable": 3000, '
            b'"currency": "eur", "status": "requires_capture", "metadata": {"payment_id": "%s"}}}}'
            % (p.provider_ref.encode(), p.id.encode()))
    r = client.post("/api/v1/payments/webhooks/stripe", content=body,
                    headers={"Stripe-Signature": signatures.sign(body, STRIPE_SECRET)})
    assert r.json()["outcome"] == "applied"
    assert payment(db, ids[0]).status == "authorised"
    r = client.post("/api/v1/payments/webhooks/stripe", content=body,
                    headers={"Stripe-Signature": signatures.sign(body, "whsec_test_provider_secret")})
    assert r.status_code == 400


def test_the_bank_page_delivers_its_webhook_over_http(db: Database, live_server: str, heard: list) -> None:
    ids, _ = _pending(db)
    ref = payment(db, ids[0]).provider_ref
    with httpx.Client(base_url=live_server) as http:
        page = http.get(f"/payments/test-provider/authenticate/{ref}")
        assert page.status_code == 200
        assert "50.00 EUR" in page.text and 'value="authenticate"' in page.text and 'value="fail"' in page.text
        done = http.post(f"/payments/test-provider/authenticate/{ref}", data={"action": "authenticate"})
        assert done.status_code == 200 and "Payment confirmed" in done.text
        deadline = time.monotonic() + 10
        while payment(db, ids[0]).status != "authorised" and time.monotonic() < deadline:
            time.sleep(0.05)  # the provider calls back after its answer, as a real one does
        assert payment(db, ids[0]).status == "authorised"
        assert heard == [(ids[0], "authorised")]
        again = http.post(f"/payments/test-provider/authenticate/{ref}", data={"action": "fail"})
        assert again.status_code == 409  # nothing to confirm any more
    assert intents_for(db, ids[0])[0]["status"] == "requires_capture"


def test_gift_cards_and_payments_through_the_api(db: Database, client: TestClient,
                                                 admin_headers: dict[str, str]) -> None:
    r = client.post("/api/v1/gift-cards", json={"currency": "EUR", "amount": "25.00"}, headers=admin_headers)
    assert r.status_code == 201, r.text
    card_ = r.json()
    assert card_["code"].startswith("GC-") and (card_["balance"], card_["initial_balance"]) == ("25.00", "25.00")
    r = client.post("/api/v1/gift-cards", json={"currency": "EUR", "amount": "5", "code": card_["code"].lower()},
                    headers=admin_headers)
    assert (r.status_code, r.json()["code"]) == (409, "gift_card_exists")
    r = client.post("/api/v1/gift-cards", json={"currency": "EUR", "amount": "0"}, headers=admin_headers)
    assert (r.status_code, r.json()["field"]) == (422, "amount")
    reader = {"Authorization": f"Bearer {make_key(db, 'payments:read')}"}
    assert client.post("/api/v1/gift-cards", json={"currency": "EUR", "amount": "5"}, headers=reader).status_code \
        == 403
    ids = begin(db, "30.00", {"method": "gift_card", "code": card_["code"], "amount": "10.00"}, card())
    service.authorise(db, ids)
    assert client.get(f"/api/v1/gift-cards/{card_['code'].lower()}", headers=reader).json()["balance"] == "15.00"
    assert client.get("/api/v1/gift-cards/GC-NOPE", headers=reader).status_code == 404
    r = client.get(f"/api/v1/payments/{ids[1]}", headers=reader)
    body = r.json()
    assert (body["status"], body["amount"], body["authorised_amount"], body["brand"], body["last4"]) == (
        "authorised", "20.00", "20.00", "visa", "4242")
    assert [(o["kind"], o["phase"], o["status"]) for o in body["operations"]] == [
        ("authorise", "request", "requested"), ("authorise", "result", "authorised")]
    assert "pm_card" not in str({k: v for k, v in body.items() if k != "operations"})  # no instrument shown
    assert client.get("/api/v1/payments/nope", headers=reader).status_code == 404
    assert client.get(f"/api/v1/payments/{ids[1]}").status_code == 401
