"""The orders' checker reads the payment provider's side as the provider documents it: PaymentIntents and their
Refund objects (each with its amount and status), listed from the local fake Stripe; a captured intent holds what it
received less the refunds that took money back. It agrees with our payments after refunds, and names the intent when
a refund failed at the provider after we counted it, or was made there behind our back."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from omnijourney.core.ids import new_id
from omnijourney.db import Database
from omnijourney.orders import audit
from omnijourney.payments import providers, service, signatures
from omnijourney.payments.models import PaymentOperation
from omnijourney.payments.stripe import StripeProvider
from tests.factories import run_jobs
from tests.payments.conftest import STRIPE_SECRET, payment_settings, stripe_server  # noqa: F401 (fixtures)
from tests.payments.fake_stripe import Served
from tests.payments.helpers import begin, card, payment


def captured_on_stripe(db: Database, total: str) -> str:
    """A Stripe card payment of an order, authorised and captured; its id."""
    [pid] = begin(db, total, card(provider="stripe"))
    assert service.authorise(db, [pid]).status == "authorised"
    with db.transaction() as s:
        service.attach(s, [pid], new_id())
        service.enqueue_capture(s, [pid])
    run_jobs(db)
    assert payment(db, pid).status == "captured"
    return pid


def stripes_side(db: Database, pids: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Our payments' intents and each one's refunds, read back from Stripe (the fake serves other tests too)."""
    stripe = providers.get("stripe", db)
    assert isinstance(stripe, StripeProvider)
    refs = [payment(db, pid).provider_ref for pid in pids]
    return [stripe.intent(ref) for ref in refs], [r for ref in refs for r in stripe.refunds(ref)]


def provider_problems(db: Database, pids: list[str]) -> list[str]:
    intents, refunds = stripes_side(db, pids)
    with db.transaction(write=False) as s:
        found = audit.audit(s, intents=intents, refunds=refunds, provider="stripe")
    assert found.intents == len(pids)
    return found.problems


@pytest.mark.usefixtures("payment_settings")
def test_the_checker_reads_stripes_refunds_and_finds_the_ones_that_differ(db: Database,
                                                                         stripe_server: Served) -> None:  # noqa: F811
    kept, refunded, failed = (captured_on_stripe(db, "50.00") for _ in range(3))
    service.refund(db, payment_ids=[refunded], amount=Decimal("20.00"), reason="requested_by_customer")
    [part] = service.refund(db, payment_ids=[failed], amount=Decimal("50.00"))
    assert provider_problems(db, [kept, refunded, failed]) == []  # 50, 30 and 0 held there, as here
    # the full refund fails at Stripe afterwards (the card was closed): Stripe holds the 50 we think we gave back
    stripe_server.fake.fail_refund(part.refund_ref)
    ref = payment(db, failed).provider_ref
    assert provider_problems(db, [kept, refunded, failed]) == [
        f"provider and payments disagree: {ref}: holds 5000 minor units (5000 received, 0 refunded), payment "
        f"{failed} says 0 (5000 captured, 5000 refunded)"]


def tell_refund(client: Any, refund: dict[str, Any], event_id: str) -> str:
    """Stripe's ``charge.refund.updated`` for ``refund`` (a Refund object as Stripe lists it), signed, delivered."""
    body = orjson.dumps({"id": event_id, "object": "event", "type": "charge.refund.updated",
                         "created": int(time.time()), "data": {"object": refund}})
    got = client.post("/api/v1/payments/webhooks/stripe", content=body,
                      headers={"Stripe-Signature": signatures.sign(body, STRIPE_SECRET)})
    assert got.status_code == 200, got.text
    return got.json()["outcome"]


@pytest.mark.usefixtures("payment_settings")
def test_a_refund_that_fails_at_stripe_afterwards_is_taken_back_by_its_webhook(db: Database, client: Any,
                                                                               stripe_server: Served) -> None:  # noqa: F811
    pid = captured_on_stripe(db, "50.00")
    first, second = (service.refund(db, payment_ids=[pid], amount=Decimal(a))[0] for a in ("20.00", "10.00"))
    assert payment(db, pid).status == "partly_refunded" and payment(db, pid).refunded_minor == 3000
    stripe_server.fake.fail_refund(first.refund_ref, "lost_or_stolen_card")
    [failed] = [r for r in stripes_side(db, [pid])[1] if r["id"] == first.refund_ref]
    assert tell_refund(client, failed, "evt_refund_failed_1") == "applied"
    p = payment(db, pid)
    assert (p.status, p.refunded_minor, p.refundable_minor) == ("partly_refunded", 1000, 4000)  # 20 back to give
    assert provider_problems(db, [pid]) == []  # the books agree with Stripe again
    assert tell_refund(client, failed, "evt_refund_failed_1") == "duplicate"
    assert tell_refund(client, failed, "evt_refund_failed_2") == "ignored"  # told again: taken back once
    with db.transaction(write=False) as s:
        ops = [(o.status, o.code, o.message) for o in s.scalars(select(PaymentOperation).where(
            PaymentOperation.payment_id == pid, PaymentOperation.kind == "refund",
            PaymentOperation.phase == "result").order_by(PaymentOperation.id))]
    assert ops == [("succeeded", None, None), ("succeeded", None, None),
                   ("failed", "lost_or_stolen_card", "the card was reported lost or stolen")]
    # the second one fails too: nothing refunded is left, and all of it can be refunded again
    stripe_server.fake.fail_refund(second.refund_ref)
    [failed] = [r for r in stripes_side(db, [pid])[1] if r["id"] == second.refund_ref]
    assert tell_refund(client, failed, "evt_refund_failed_3") == "applied"
    assert (payment(db, pid).status, payment(db, pid).refundable_minor) == ("captured", 5000)
    run_jobs(db)  # the payment's order is none of ours here: nobody to tell, and the job ends
    [again] = service.refund(db, payment_ids=[pid], amount=Decimal("50.00"))
    assert again.status == "succeeded" and provider_problems(db, [pid]) == []


@pytest.mark.usefixtures("payment_settings")
def test_a_refund_made_at_stripe_behind_our_back_is_named(db: Database) -> None:
    pid = captured_on_stripe(db, "40.00")
    stripe = providers.get("stripe", db)
    ref = payment(db, pid).provider_ref
    stripe.refund(ref=ref, amount=Decimal("15.00"), currency="EUR", idempotency_key=f"dashboard:{ref}")
    assert provider_problems(db, [pid]) == [
        f"provider and payments disagree: {ref}: holds 2500 minor units (4000 received, 1500 refunded), payment "
        f"{pid} says 4000 (4000 captured, 0 refunded)"]


def test_intents_are_not_read_without_their_refunds(db: Database) -> None:
    with db.transaction(write=False) as s, pytest.raises(ValueError, match="refunds are needed"):
        audit.audit(s, intents=[])
