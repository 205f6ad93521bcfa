"""The Stripe adapter against a local fake Stripe that checks each request as Stripe's API reference documents it."""

from __future__ import annotations

import time
from decimal import Decimal

import orjson
import pytest

from omnijourney.payments import signatures
from omnijourney.payments.providers import Method, ProviderError, ProviderUnavailable, WebhookInvalid
from omnijourney.payments.stripe import StripeProvider, encode_form
from tests.payments.conftest import STRIPE_KEY, STRIPE_SECRET
from tests.payments.fake_stripe import FakeStripe, Served, decode_form


@pytest.fixture
def stripe(stripe_server: Served) -> StripeProvider:
    return StripeProvider(api_key=STRIPE_KEY, webhook_secrets=[STRIPE_SECRET], api_base=stripe_server.url,
                          return_url="https://shop.test/checkout/return")


def _key() -> str:
    return f"pay-{time.monotonic_ns()}:authorise"


def test_bracket_notation_round_trips() -> None:
    form = encode_form({"amount": 1999, "confirm": True, "metadata": {"payment_id": "p1", "ref": "c1"},
                        "expand": ["payment_method"], "skip": None})
    assert form == [("amount", "1999"), ("confirm", "true"), ("metadata[payment_id]", "p1"), ("metadata[ref]", "c1"),
                    ("expand[0]", "payment_method")]
    body = "&".join(f"{k}={v}" for k, v in form).encode()
    assert decode_form(body) == {"amount": "1999", "confirm": "true", "metadata": {"payment_id": "p1", "ref": "c1"},
                                 "expand": ["payment_method"]}


def test_authorise_sends_a_manual_capture_confirmation_as_documented(stripe: StripeProvider,
                                                                     stripe_server: Served) -> None:
    key = _key()
    result = stripe.authorise(amount=Decimal("19.99"), currency="EUR", method=Method("card", "pm_card_visa"),
                              idempotency_key=key, metadata={"payment_id": "p-1", "ref": "checkout-1"})
    assert (result.status, result.amount, result.brand, result.last4) == ("authorised", Decimal("19.99"), "visa",
                                                                          "4242")
    assert result.provider_ref.startswith("pi_")
    sent = stripe_server.fake.requests[-1]
    assert sent["path"] == "/v1/payment_intents"
    assert sent["params"] == {"amount": "1999", "currency": "eur", "payment_method": "pm_card_visa", "confirm": "true",
                              "capture_method": "manual", "return_url": "https://shop.test/checkout/return",
                              "metadata": {"payment_id": "p-1", "ref": "checkout-1"}, "expand": ["payment_method"]}
    assert sent["headers"]["authorization"] == f"Bearer {STRIPE_KEY}"
    assert sent["headers"]["idempotency-key"] == key
    assert sent["headers"]["content-type"] == "application/x-www-form-urlencoded"


def test_zero_decimal_currencies_are_sent_as_they_are(stripe: StripeProvider, stripe_server: Served) -> None:
    result = stripe.authorise(amount=Decimal("1500"), currency="JPY", method=Method("card", "pm_card_visa"),
                              idempotency_key=_key(), metadata={})
    assert stripe_server.fake.requests[-1]["params"]["amount"] == "1500"
    assert stripe_server.fake.requests[-1]["params"]["currency"] == "jpy"
    assert result.amount == Decimal("1500")
    captured = stripe.capture(ref=result.provider_ref, amount=Decimal("1000"), currency="JPY", idempotency_key=_key())
    assert captured.amount == Decimal("1000")
    assert stripe_server.fake.requests[-1]["params"] == {"amount_to_capture": "1000"}


@pytest.mark.parametrize(("pm", "code", "reason"), [
    ("pm_card_chargeDeclined", "generic_decline", "Your card was declined."),
    ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds", "Your card has insufficient funds."),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "Your card has expired."),
])
def test_a_402_card_error_is_a_decline_with_its_reason(stripe: StripeProvider, pm: str, code: str,
                                                       reason: str) -> None:
    result = stripe.authorise(amount=Decimal("10.00"), currency="EUR", method=Method("card", pm),
                              idempotency_key=_key(), metadata={})
    assert (result.status, result.decline_code, result.decline_reason) == ("declined", code, reason)
    assert result.provider_ref.startswith("pi_")


def test_3d_secure_is_pending_with_the_redirect(stripe: StripeProvider) -> None:
    result = stripe.authorise(amount=Decimal("10.00"), currency="EUR",
                              method=Method("card", "pm_card_threeDSecure2Required"), idempotency_key=_key(),
                              metadata={})
    assert result.status == "pending"
    assert result.next_action_url == f"https://hooks.stripe.com/3d_secure_2/hosted?payment_intent={result.provider_ref}"
    stripe.void(ref=result.provider_ref, idempotency_key=_key())  # abandoned: cancel works on requires_action


def test_partial_capture_then_refunds_up_to_what_was_captured(stripe: StripeProvider, stripe_server: Served) -> None:
    auth = stripe.authorise(amount=Decimal("50.00"), currency="EUR", method=Method("card", "pm_card_mastercard"),
                            idempotency_key=_key(), metadata={})
    with pytest.raises(ProviderError) as exc:
        stripe.capture(ref=auth.provider_ref, amount=Decimal("50.01"), currency="EUR", idempotency_key=_key())
    assert exc.value.code == "amount_too_large"
    assert stripe.capture(ref=auth.provider_ref, amount=Decimal("30.00"), currency="EUR",
                          idempotency_key=_key()).amount == Decimal("30.00")
    refund = stripe.refund(ref=auth.provider_ref, amount=Decimal("10.00"), currency="EUR", idempotency_key=_key(),
                           reason="requested_by_customer")
    assert (refund.amount, refund.status) == (Decimal("10.00"), "succeeded")
    assert refund.refund_ref.startswith("re_")
    assert stripe_server.fake.requests[-1]["params"] == {"payment_intent": auth.provider_ref, "amount": "1000",
                                                         "reason": "requested_by_customer"}
    with pytest.raises(ProviderError) as exc:
        stripe.refund(ref=auth.provider_ref, amount=Decimal("20.01"), currency="EUR", idempotency_key=_key())
    assert exc.value.code == "amount_too_large"
    stripe.refund(ref=auth.provider_ref, amount=Decimal("20.00"), currency="EUR", idempotency_key=_key(),
                  reason="returned goods")  # a reason Stripe does not take is not sent
    assert "reason" not in stripe_server.fake.requests[-1]["params"]


def test_capture_after_void_is_refused(stripe: StripeProvider, stripe_server: Served) -> None:
    auth = stripe.authorise(amount=Decimal("5.00"), currency="EUR", method=Method("card", "pm_card_visa"),
                            idempotency_key=_key(), metadata={})
    stripe.void(ref=auth.provider_ref, idempotency_key=_key())
    assert stripe_server.fake.requests[-1]["path"] == f"/v1/payment_intents/{auth.provider_ref}/cancel"
    with pytest.raises(ProviderError) as exc:
        stripe.capture(ref=auth.provider_ref, amount=Decimal("5.00"), currency="EUR", idempotency_key=_key())
    assert exc.value.code == "payment_intent_unexpected_state"


def test_the_same_idempotency_key_makes_one_payment_intent(stripe: StripeProvider, stripe_server: Served) -> None:
    key, before = _key(), len(stripe_server.fake.intents)
    stripe_server.fake.fail_next = 500  # the first try fails on Stripe's side: the outcome is unknown
    with pytest.raises(ProviderUnavailable):
        stripe.authorise(amount=Decimal("7.00"), currency="EUR", method=Method("card", "pm_card_visa"),
                         idempotency_key=key, metadata={"payment_id": "p-7"})
    first = stripe.authorise(amount=Decimal("7.00"), currency="EUR", method=Method("card", "pm_card_visa"),
                             idempotency_key=key, metadata={"payment_id": "p-7"})
    again = stripe.authorise(amount=Decimal("7.00"), currency="EUR", method=Method("card", "pm_card_visa"),
                             idempotency_key=key, metadata={"payment_id": "p-7"})
    assert first.provider_ref == again.provider_ref
    assert len(stripe_server.fake.intents) == before + 1
    with pytest.raises(ProviderError) as exc:  # the same key with another amount is a bug: Stripe refuses it
        stripe.authorise(amount=Decimal("8.00"), currency="EUR", method=Method("card", "pm_card_visa"),
                         idempotency_key=key, metadata={"payment_id": "p-7"})
    assert exc.value.code == "idempotency_error"


def test_an_unreachable_stripe_is_unavailable_not_a_decline() -> None:
    fake = FakeStripe()
    with Served(fake) as served:
        url = served.url
    stripe = StripeProvider(api_key=STRIPE_KEY, webhook_secrets=[], api_base=url, timeout_s=2)
    with pytest.raises(ProviderUnavailable):
        stripe.void(ref="pi_123", idempotency_key="k")


def test_a_wrong_api_key_is_refused(stripe_server: Served) -> None:
    stripe = StripeProvider(api_key="sk_live_nope!", webhook_secrets=[], api_base=stripe_server.url)
    with pytest.raises(ProviderError) as exc:
        stripe.void(ref="pi_123", idempotency_key="k")
    assert "Invalid API Key" in exc.value.message


def _event(kind: str, pi: dict) -> bytes:
    return orjson.dumps({"id": f"evt_{time.monotonic_ns()}", "object": "event", "type": kind,
                         "created": int(time.time()), "data": {"object": pi}})


PI = {"id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "object": "payment_intent", "amount": 2000, "amount_capturable": 2000,
      "amount_received": 0, "currency": "eur", "status": "requires_capture", "metadata": {"payment_id": "p-42"}}


def test_webhooks_are_verified_and_normalised(stripe: StripeProvider) -> None:
    body = _event("payment_intent.amount_capturable_updated", PI)
    event = stripe.parse_webhook({"Stripe-Signature": signatures.sign(body, STRIPE_SECRET)}, body)
    assert (event.status, event.provider_ref, event.payment_id, event.amount) == (
        "authorised", PI["id"], "p-42", Decimal("20.00"))
    failed = {**PI, "status": "requires_payment_method", "amount_capturable": 0, "last_payment_error": {
        "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds."}}
    body = _event("payment_intent.payment_failed", failed)
    event = stripe.parse_webhook({"stripe-signature": signatures.sign(body, STRIPE_SECRET)}, body)
    assert (event.status, event.decline_code, event.decline_reason) == (
        "declined", "insufficient_funds", "Your card has insufficient funds.")
    body = _event("customer.created", {"id": "cus_1", "object": "customer"})
    assert stripe.parse_webhook({"Stripe-Signature": signatures.sign(body, STRIPE_SECRET)}, body).status is None


# a card refund that failed after Stripe accepted it, as the Refund object documents it (charge.refund.updated)
FAILED_REFUND = {"id": "re_3MtwBwLkdIwHu7ix0Dd1a2bC", "object": "refund", "amount": 1500,
                 "balance_transaction": "txn_1Mtw", "charge": "ch_3MtwBwLkdIwHu7ix0snN0B15", "created": 1680651573,
                 "currency": "eur", "failure_balance_transaction": "txn_1Mtx",
                 "failure_reason": "expired_or_canceled_card", "metadata": {},
                 "payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "reason": "requested_by_customer",
                 "receipt_number": None, "source_transfer_reversal": None, "status": "failed",
                 "transfer_reversal": None}


@pytest.mark.parametrize("kind", ["charge.refund.updated", "refund.updated", "refund.failed"])
def test_a_refund_that_failed_afterwards_is_told_with_its_reason(stripe: StripeProvider, kind: str) -> None:
    body = _event(kind, FAILED_REFUND)
    event = stripe.parse_webhook({"Stripe-Signature": signatures.sign(body, STRIPE_SECRET)}, body)
    assert (event.status, event.provider_ref, event.refund_ref, event.amount) == (
        "refund_failed", FAILED_REFUND["payment_intent"], FAILED_REFUND["id"], Decimal("15.00"))
    assert (event.decline_code, event.decline_reason) == ("expired_or_canceled_card",
                                                          "the card has expired or was cancelled")
    body = _event("charge.refund.updated", {**FAILED_REFUND, "status": "succeeded", "failure_reason": None})
    assert stripe.parse_webhook({"Stripe-Signature": signatures.sign(body, STRIPE_SECRET)}, body).status is None


def test_webhooks_with_a_bad_signature_are_refused(stripe: StripeProvider) -> None:
    body = _event("payment_intent.amount_capturable_updated", PI)
    good = signatures.sign(body, STRIPE_SECRET)
    with pytest.raises(WebhookInvalid, match="no signature matches"):
        stripe.parse_webhook({"Stripe-Signature": good}, body.replace(b"2000", b"9000"))
    with pytest.raises(WebhookInvalid, match="no signature matches"):
        stripe.parse_webhook({"Stripe-Signature": signatures.sign(body, "whsec_other")}, body)
    with pytest.raises(WebhookInvalid, match="s ago"):
        stripe.parse_webhook({"Stripe-Signature": signatures.sign(body, STRIPE_SECRET,
                                                                  timestamp=int(time.time()) - 301)}, body)
    with pytest.raises(WebhookInvalid, match="no Stripe-Signature header"):
        stripe.parse_webhook({}, body)


def test_the_fake_refuses_what_stripe_refuses(stripe_server: Served) -> None:
    import httpx

    auth = {"Authorization": f"Bearer {STRIPE_KEY}"}
    with httpx.Client(base_url=stripe_server.url) as http:
        form = {"amount": "100", "currency": "eur"}
        assert http.post("/v1/payment_intents", data=form, headers=auth).status_code == 400  # no Idempotency-Key
        r = http.post("/v1/payment_intents", data={**form, "amout": "1"}, headers={**auth, "Idempotency-Key": _key()})
        assert (r.status_code, r.json()["error"]["param"]) == (400, "amout")
        r = http.post("/v1/payment_intents", json=form, headers={**auth, "Idempotency-Key": _key()})
        assert r.status_code == 400  # JSON is not form encoding
        for bad in ({"currency": "EUR"}, {"amount": "1.5"}, {"amount": "0"}):
            r = http.post("/v1/payment_intents", data={**form, **bad}, headers={**auth, "Idempotency-Key": _key()})
            assert r.status_code == 400, bad
        assert http.post("/v1/payment_intents", data=form, headers={"Idempotency-Key": _key()}).status_code == 401


# ---------------------------------------------------------------- reading back: intents and their refunds

def _captured(stripe: StripeProvider, amount: str = "50.00") -> str:
    key = _key()
    ref = stripe.authorise(amount=Decimal(amount), currency="EUR", method=Method("card", "pm_card_visa"),
                           idempotency_key=key, metadata={"payment_id": key}).provider_ref
    stripe.capture(ref=ref, amount=Decimal(amount), currency="EUR", idempotency_key=f"{key}:capture")
    return ref


def test_a_payment_intents_refunds_are_listed_page_by_page_as_documented(stripe: StripeProvider,
                                                                          stripe_server: Served) -> None:
    from omnijourney.payments.stripe import refunded

    ref = _captured(stripe)
    made = [stripe.refund(ref=ref, amount=Decimal(a), currency="EUR", idempotency_key=f"{ref}:refund:{i}")
            for i, a in enumerate(("10.00", "5.00", "2.50"))]
    seen = len(stripe_server.fake.requests)
    listed = stripe.refunds(ref, page_size=2)
    assert [r["id"] for r in listed] == [m.refund_ref for m in reversed(made)]  # newest first
    assert [(r["object"], r["amount"], r["status"], r["payment_intent"]) for r in listed] == [
        ("refund", 250, "succeeded", ref), ("refund", 500, "succeeded", ref), ("refund", 1000, "succeeded", ref)]
    sent = stripe_server.fake.requests[seen:]
    assert [(r["method"], r["path"], r["params"]) for r in sent] == [
        ("GET", "/v1/refunds", {"payment_intent": ref, "limit": "2"}),
        ("GET", "/v1/refunds", {"payment_intent": ref, "limit": "2", "starting_after": listed[1]["id"]})]
    assert all("idempotency-key" not in r["headers"] for r in sent)  # a read changes nothing
    assert refunded(listed) == {ref: 1750}
    # a refund that failed afterwards (the card was closed) gave nothing back, and can be refunded again
    stripe_server.fake.fail_refund(made[0].refund_ref)
    again = stripe.refunds(ref)
    assert [r["status"] for r in again] == ["succeeded", "succeeded", "failed"]
    assert refunded(again) == {ref: 750}
    assert stripe.refund(ref=ref, amount=Decimal("42.50"), currency="EUR",
                         idempotency_key=f"{ref}:refund:3").amount == Decimal("42.50")


def test_reads_are_checked_as_stripe_checks_them(stripe: StripeProvider, stripe_server: Served) -> None:
    ref = _captured(stripe, "12.00")
    pi = stripe.intent(ref)
    assert (pi["id"], pi["status"], pi["amount_received"]) == (ref, "succeeded", 1200)
    assert "amount_refunded" not in pi  # Stripe documents no refunded total on a PaymentIntent
    assert ref in [p["id"] for p in stripe.intents()]
    with pytest.raises(ProviderError) as exc:
        stripe.intent("pi_nosuch")
    assert exc.value.code == "resource_missing"
    with pytest.raises(ProviderError, match="less than or equal to 100"):
        stripe.refunds(ref, page_size=101)
    with pytest.raises(ProviderError, match="unknown parameter: amount"):
        list(stripe.list_all("/v1/refunds", {"amount": 5}))
    stripe_server.fake.fail_next = 503
    with pytest.raises(ProviderUnavailable):
        stripe.refunds(ref)
