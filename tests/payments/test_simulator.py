"""The built-in test provider behaves like a real one: Stripe's test payment methods, its refusals, idempotency,
state that survives a restart, and signed events when a pending payment completes."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from omnijourney.payments import signatures
from omnijourney.payments.providers import Method, ProviderError, WebhookInvalid
from omnijourney.payments.simulator import TestProvider

SECRET = "whsec_sim"


@pytest.fixture
def sim(tmp_path: Path) -> TestProvider:
    return TestProvider(tmp_path / "sim.db", webhook_secret=SECRET, public_url="http://shop.test")


def _auth(sim: TestProvider, pm: str, amount: str = "40.00", key: str = "p1:authorise"):
    return sim.authorise(amount=Decimal(amount), currency="EUR", method=Method("card", pm), idempotency_key=key,
                         metadata={"payment_id": key.partition(":")[0]})


def test_test_cards_answer_as_stripes_do(sim: TestProvider) -> None:
    visa = _auth(sim, "pm_card_visa", key="a:authorise")
    assert (visa.status, visa.amount, visa.brand, visa.last4) == ("authorised", Decimal("40.00"), "visa", "4242")
    assert _auth(sim, "pm_card_mastercard", key="b:authorise").status == "authorised"
    declines = {pm: _auth(sim, pm, key=f"{pm}:authorise") for pm in (
        "pm_card_chargeDeclined", "pm_card_chargeDeclinedInsufficientFunds", "pm_card_chargeDeclinedExpiredCard")}
    assert {pm: (d.status, d.decline_code, d.decline_reason) for pm, d in declines.items()} == {
        "pm_card_chargeDeclined": ("declined", "generic_decline", "Your card was declined."),
        "pm_card_chargeDeclinedInsufficientFunds": ("declined", "insufficient_funds",
                                                    "Your card has insufficient funds."),
        "pm_card_chargeDeclinedExpiredCard": ("declined", "expired_card", "Your card has expired."),
    }
    for pm in ("pm_card_authenticationRequired", "pm_card_threeDSecure2Required"):
        pending = _auth(sim, pm, key=f"{pm}:authorise")
        assert pending.status == "pending"
        assert pending.next_action_url == f"http://shop.test/payments/test-provider/authenticate/{pending.provider_ref}"
    with pytest.raises(ProviderError) as exc:
        _auth(sim, "4242424242424242", key="raw:authorise")  # card numbers are not payment methods
    assert exc.value.code == "resource_missing"


def test_it_refuses_what_a_real_provider_refuses(sim: TestProvider) -> None:
    ref = _auth(sim, "pm_card_visa").provider_ref
    with pytest.raises(ProviderError, match="amount_too_large"):
        sim.capture(ref=ref, amount=Decimal("40.01"), currency="EUR", idempotency_key="p1:capture-too-much")
    with pytest.raises(ProviderError, match="payment_intent_unexpected_state"):
        sim.refund(ref=ref, amount=Decimal("1.00"), currency="EUR", idempotency_key="p1:refund-early")
    assert sim.capture(ref=ref, amount=Decimal("25.00"), currency="EUR", idempotency_key="p1:capture").amount == \
        Decimal("25.00")
    with pytest.raises(ProviderError, match="payment_intent_unexpected_state"):  # captured once: the rest is released
        sim.capture(ref=ref, amount=Decimal("5.00"), currency="EUR", idempotency_key="p1:capture-2")
    with pytest.raises(ProviderError, match="payment_intent_unexpected_state"):
        sim.void(ref=ref, idempotency_key="p1:void")
    assert sim.refund(ref=ref, amount=Decimal("20.00"), currency="EUR", idempotency_key="p1:r1").amount == \
        Decimal("20.00")
    with pytest.raises(ProviderError, match="amount_too_large"):
        sim.refund(ref=ref, amount=Decimal("5.01"), currency="EUR", idempotency_key="p1:r2")
    sim.refund(ref=ref, amount=Decimal("5.00"), currency="EUR", idempotency_key="p1:r3")
    with pytest.raises(ProviderError, match="charge_already_refunded"):
        sim.refund(ref=ref, amount=Decimal("0.01"), currency="EUR", idempotency_key="p1:r4")
    assert sim.intent(ref)["amount_received"] == 2500

    voided = _auth(sim, "pm_card_visa", key="p2:authorise").provider_ref
    sim.void(ref=voided, idempotency_key="p2:void")
    with pytest.raises(ProviderError, match="status of canceled"):
        sim.capture(ref=voided, amount=Decimal("1.00"), currency="EUR", idempotency_key="p2:capture")


def test_one_idempotency_key_is_one_charge_even_across_a_restart(sim: TestProvider, tmp_path: Path) -> None:
    first = _auth(sim, "pm_card_visa")
    again = _auth(sim, "pm_card_visa")
    restarted = TestProvider(tmp_path / "sim.db", webhook_secret=SECRET)
    after_restart = _auth(restarted, "pm_card_visa")
    assert first.provider_ref == again.provider_ref == after_restart.provider_ref
    assert restarted.intent(first.provider_ref)["status"] == "requires_capture"
    with pytest.raises(ProviderError, match="idempotency_key_reused"):
        _auth(sim, "pm_card_visa", amount="41.00")
    # a refusal is kept under its key too: the retry of a refused capture is refused the same way
    with pytest.raises(ProviderError, match="amount_too_large"):
        sim.capture(ref=first.provider_ref, amount=Decimal("99"), currency="EUR", idempotency_key="p1:c")
    with pytest.raises(ProviderError, match="amount_too_large"):
        sim.capture(ref=first.provider_ref, amount=Decimal("99"), currency="EUR", idempotency_key="p1:c")
    # and refunds are counted once per key
    sim.capture(ref=first.provider_ref, amount=Decimal("40.00"), currency="EUR", idempotency_key="p1:capture")
    for _ in range(3):
        sim.refund(ref=first.provider_ref, amount=Decimal("10.00"), currency="EUR", idempotency_key="p1:refund:1")
    assert sim.intent(first.provider_ref)["amount_received"] == 4000
    assert restarted.refund(ref=first.provider_ref, amount=Decimal("30.00"), currency="EUR",
                            idempotency_key="p1:refund:2").amount == Decimal("30.00")


def test_zero_decimal_currencies(sim: TestProvider) -> None:
    auth = sim.authorise(amount=Decimal("1500"), currency="JPY", method=Method("card", "pm_card_visa"),
                         idempotency_key="jpy:authorise", metadata={})
    assert sim.intent(auth.provider_ref)["amount"] == 1500
    with pytest.raises(Exception, match="more decimals"):
        sim.authorise(amount=Decimal("15.5"), currency="JPY", method=Method("card", "pm_card_visa"),
                      idempotency_key="jpy2:authorise", metadata={})


def test_a_pending_payment_completes_with_a_signed_event(sim: TestProvider) -> None:
    pending = _auth(sim, "pm_card_authenticationRequired")
    event = first = sim.complete(pending.provider_ref, success=True)
    parsed = sim.parse_webhook(event.headers, event.body)
    assert (parsed.status, parsed.provider_ref, parsed.payment_id, parsed.amount) == (
        "authorised", pending.provider_ref, "p1", Decimal("40.00"))
    assert parsed.id == event.id
    with pytest.raises(ProviderError, match="not waiting for authentication"):
        sim.complete(pending.provider_ref, success=False)
    failed = _auth(sim, "pm_card_threeDSecure2Required", key="p3:authorise")
    event = sim.complete(failed.provider_ref, success=False)
    parsed = sim.parse_webhook(event.headers, event.body)
    assert (parsed.status, parsed.decline_code) == ("declined", "payment_intent_authentication_failure")
    assert sim.undelivered() == [first.id, event.id]  # the outbox, oldest first
    # signed with Stripe's scheme and the test secret, nothing else
    with pytest.raises(WebhookInvalid):
        sim.parse_webhook({"Stripe-Signature": signatures.sign(event.body, "whsec_other")}, event.body)


def test_refunds_are_listed_as_stripe_lists_them(sim: TestProvider) -> None:
    from omnijourney.payments.stripe import refunded

    ref = _auth(sim, "pm_card_visa").provider_ref
    other = _auth(sim, "pm_card_visa", key="p2:authorise").provider_ref
    for r, key in ((ref, "p1"), (other, "p2")):
        sim.capture(ref=r, amount=Decimal("40.00"), currency="EUR", idempotency_key=f"{key}:capture")
    first = sim.refund(ref=ref, amount=Decimal("15.00"), currency="EUR", idempotency_key="p1:r1")
    second = sim.refund(ref=ref, amount=Decimal("5.00"), currency="EUR", idempotency_key="p1:r2")
    sim.refund(ref=other, amount=Decimal("1.00"), currency="EUR", idempotency_key="p2:r1")
    listed = sim.refunds(ref)
    assert [(r["id"], r["object"], r["amount"], r["currency"], r["payment_intent"], r["status"]) for r in listed] == [
        (second.refund_ref, "refund", 500, "eur", ref, "succeeded"),
        (first.refund_ref, "refund", 1500, "eur", ref, "succeeded")]  # newest first
    assert refunded(sim.refunds()) == {ref: 2000, other: 100}
    assert "amount_refunded" not in sim.intent(ref)  # not a PaymentIntent field: its refunds say it
