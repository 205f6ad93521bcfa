"""Payments of a checkout on both engines: begin, authorise (declines, split tender), attach, capture, void,
refunds over the original tenders, the reconcile job for an orphan authorisation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from omnijourney.config import Settings
from omnijourney.core.errors import Conflict, Invalid
from omnijourney.core.ids import new_id
from omnijourney.core.time import clock, utcnow
from omnijourney.db import Database
from omnijourney.jobs.models import Job
from omnijourney.payments import service
from omnijourney.payments.models import Payment, PaymentOperation
from omnijourney.payments.providers import Method
from tests.factories import run_jobs
from tests.payments.helpers import balance, begin, card, gift_card, intents_for, payment, sim, statuses


@pytest.fixture(autouse=True)
def _providers(payment_settings: Settings) -> None:
    """Every test here uses the providers configured for it (the test provider's file in its folder)."""


def _count(db: Database, model) -> int:
    with db.transaction(write=False) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# ---------------------------------------------------------------- begin

@pytest.mark.parametrize(("tenders", "field", "code"), [
    ([card(amount="30.00")], "payments", "payments_do_not_cover_total"),
    ([card(amount="30.00"), card(amount="20.01")], "payments", "payments_exceed_total"),
    ([card(), card()], "payments[1].amount", "payment_amount_missing"),
    ([{"method": "gift_card", "code": "X", "amount": "50.00"}, card()], "payments[1].amount", "payments_exceed_total"),
    ([card(amount="-1")], "payments[0].amount", "invalid"),
    ([card(amount="10.001")], "payments[0].amount", "invalid"),
    ([{"method": "card", "number": "4242424242424242", "cvc": "123"}], "payments[0]", "card_data_refused"),
    ([{"method": "cheque"}], "payments[0].method", "invalid"),
    ([card(provider="acme")], "payments[0].provider", "unknown_provider"),
    ([{"method": "gift_card", "amount": "5.00"}, card()], "payments[0].code", "invalid"),
    ([], "payments", "payments_missing"),
])
def test_payments_that_do_not_cover_the_total_exactly_are_refused(db: Database, tenders: list, field: str,
                                                                   code: str) -> None:
    with pytest.raises(Invalid) as exc:
        begin(db, "50.00", *tenders)
    assert (exc.value.field, exc.value.code) == (field, code)
    assert _count(db, Payment) == 0 and _count(db, Job) == 0  # and nothing was created


def test_begin_makes_the_tenders_and_schedules_their_reconciliation(db: Database) -> None:
    code = gift_card(db)
    ids = begin(db, "50.00", {"method": "gift_card", "code": code, "amount": "20.00"}, card(), ref="checkout-1")
    rows = [payment(db, i) for i in ids]
    assert [(p.method, p.provider, p.amount, p.status, p.position) for p in rows] == [
        ("gift_card", "gift_card", Decimal("20.00"), "new", 0), ("card", "test", Decimal("30.00"), "new", 1)]
    with db.transaction(write=False) as session:
        job = session.scalar(select(Job))
    assert (job.kind, job.args) == ("payments.reconcile", {"ref": "checkout-1", "payment_ids": ids})
    assert job.run_at > utcnow() + timedelta(minutes=14)


# ---------------------------------------------------------------- authorise

def test_a_card_is_authorised_once_however_often_it_is_asked(db: Database) -> None:
    [pid] = begin(db, "42.50", card())
    first = service.authorise(db, [pid])
    again = service.authorise(db, [pid])
    assert (first.status, again.status) == ("authorised", "authorised")
    p = payment(db, pid)
    assert (p.status, p.money(p.authorised_minor), p.brand, p.last4) == ("authorised", Decimal("42.50"), "visa",
                                                                        "4242")
    assert len(intents_for(db, pid)) == 1
    assert intents_for(db, pid)[0]["status"] == "requires_capture"


@pytest.mark.parametrize(("pm", "code", "reason"), [
    ("pm_card_chargeDeclined", "generic_decline", "Your card was declined."),
    ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds", "Your card has insufficient funds."),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "Your card has expired."),
])
def test_a_decline_says_which_tender_and_why(db: Database, pm: str, code: str, reason: str) -> None:
    [pid] = begin(db, "10.00", card(pm))
    outcome = service.authorise(db, [pid])
    assert outcome.status == "declined"
    assert outcome.decline == service.Decline(pid, 0, "card", code, reason)
    p = payment(db, pid)
    assert (p.status, p.decline_code, p.decline_reason, p.authorised_minor) == ("declined", code, reason, 0)


def test_split_tender_a_declined_card_gives_the_gift_card_its_money_back(db: Database) -> None:
    code = gift_card(db, "20.00")
    ids = begin(db, "50.00", card("pm_card_chargeDeclinedInsufficientFunds"),
                {"method": "gift_card", "code": code, "amount": "20.00"})
    outcome = service.authorise(db, ids)
    assert (outcome.status, outcome.decline.position, outcome.decline.code) == ("declined", 0, "insufficient_funds")
    assert statuses(db, ids) == ["declined", "voided"]  # the gift card was held first, then released
    assert balance(db, code) == (Decimal("20.00"), Decimal("20.00"))


def test_gift_card_declines_come_before_the_card_is_touched(db: Database) -> None:
    code = gift_card(db, "10.00")
    ids = begin(db, "50.00", card(), {"method": "gift_card", "code": code, "amount": "20.00"})
    outcome = service.authorise(db, ids)
    assert (outcome.status, outcome.decline.method, outcome.decline.code) == ("declined", "gift_card",
                                                                              "insufficient_funds")
    assert "10.00 EUR" in outcome.decline.reason
    assert statuses(db, ids) == ["voided", "declined"]
    assert intents_for(db, ids[0]) == []  # never sent to the card provider
    assert balance(db, code) == (Decimal("10.00"), Decimal("10.00"))


def test_a_provider_refusal_is_a_failure_with_its_reason(db: Database) -> None:
    [pid] = begin(db, "10.00", card("pm_card_unknown"))
    outcome = service.authorise(db, [pid])
    assert (outcome.status, outcome.decline.code) == ("failed", "resource_missing")
    assert payment(db, pid).status == "failed"


# ---------------------------------------------------------------- attach, capture

def _authorised(db: Database, total: str = "50.00", *tenders: dict) -> list[str]:
    ids = begin(db, total, *(tenders or (card(),)))
    assert service.authorise(db, ids).status == "authorised"
    return ids


def test_capture_happens_once_the_order_exists(db: Database) -> None:
    code = gift_card(db, "20.00")
    ids = _authorised(db, "50.00", {"method": "gift_card", "code": code, "amount": "20.00"}, card())
    order = new_id()
    with db.transaction() as session:
        service.attach(session, ids, order)
        service.attach(session, ids, order)  # again: nothing changes
        service.enqueue_capture(session, ids)
        service.enqueue_capture(session, ids)  # one capture job per payment however often it is asked
    assert run_jobs(db) == 2
    assert statuses(db, ids) == ["captured", "captured"]
    assert [payment(db, i).order_id for i in ids] == [order, order]
    assert intents_for(db, ids[1])[0]["amount_received"] == 3000
    assert balance(db, code) == (Decimal("0.00"), Decimal("0.00"))
    assert service.capture(db, ids[1]).status == "captured"  # asked again: the same answer, no second capture
    with db.transaction() as session, pytest.raises(Conflict) as exc:
        service.attach(session, ids, new_id())
    assert exc.value.code == "payment_attached"


def test_partial_capture_releases_the_rest_and_never_exceeds_the_authorisation(db: Database) -> None:
    code = gift_card(db, "30.00")
    ids = _authorised(db, "50.00", {"method": "gift_card", "code": code, "amount": "30.00"}, card())
    with pytest.raises(Invalid) as exc:
        service.capture(db, ids[1], amount=Decimal("20.01"))
    assert exc.value.code == "capture_exceeds_authorised"
    assert payment(db, ids[1]).status == "authorised"
    assert service.capture(db, ids[1], amount=Decimal("15.00")).captured_minor == 1500
    assert service.capture(db, ids[0], amount=Decimal("25.00")).captured_minor == 2500
    assert balance(db, code) == (Decimal("5.00"), Decimal("5.00"))  # the 5.00 not captured went back
    assert intents_for(db, ids[1])[0]["amount_received"] == 1500


def test_a_declined_or_voided_payment_cannot_pay_for_an_order(db: Database) -> None:
    [declined] = begin(db, "10.00", card("pm_card_chargeDeclined"))
    service.authorise(db, [declined])
    [voided] = _authorised(db, "10.00")
    service.void(db, [voided])
    for pid in (declined, voided):
        with db.transaction() as session, pytest.raises(Conflict) as exc:
            service.attach(session, [pid], new_id())
        assert exc.value.code == "payment_not_authorised"
    with pytest.raises(Conflict):
        service.capture(db, voided)
    assert intents_for(db, voided)[0]["status"] == "canceled"


# ---------------------------------------------------------------- refunds

def _captured(db: Database, total: str, *tenders: dict) -> tuple[str, list[str]]:
    ids = _authorised(db, total, *tenders)
    order = new_id()
    with db.transaction() as session:
        service.attach(session, ids, order)
        service.enqueue_capture(session, ids)
    run_jobs(db)
    return order, ids


def test_refunds_go_to_the_card_first_then_the_gift_card_never_above_what_each_captured(db: Database) -> None:
    code = gift_card(db, "20.00")
    order, (gift, card_id) = _captured(db, "50.00", {"method": "gift_card", "code": code, "amount": "20.00"}, card())
    first = service.refund(db, order_id=order, amount=Decimal("10.00"), reason="requested_by_customer")
    assert [(r.payment_id, r.amount, r.status) for r in first] == [(card_id, Decimal("10.00"), "succeeded")]
    second = service.refund(db, order_id=order, amount=Decimal("25.00"))
    assert [(r.payment_id, r.amount) for r in second] == [(card_id, Decimal("20.00")), (gift, Decimal("5.00"))]
    assert statuses(db, [gift, card_id]) == ["partly_refunded", "refunded"]
    assert balance(db, code) == (Decimal("5.00"), Decimal("5.00"))
    assert intents_for(db, card_id)[0]["amount_received"] == 3000
    with pytest.raises(Invalid) as exc:
        service.refund(db, order_id=order, amount=Decimal("15.01"))
    assert (exc.value.field, exc.value.code) == ("amount", "refund_exceeds_captured")
    assert "15.00 EUR" in exc.value.message
    last = service.refund(db, order_id=order, amount=Decimal("15.00"))
    assert [(r.payment_id, r.amount) for r in last] == [(gift, Decimal("15.00"))]
    assert statuses(db, [gift, card_id]) == ["refunded", "refunded"]
    assert balance(db, code) == (Decimal("20.00"), Decimal("20.00"))


def test_a_refund_under_the_same_reference_happens_once(db: Database) -> None:
    order, [pid] = _captured(db, "30.00", card())
    a = service.refund(db, order_id=order, amount=Decimal("12.00"), reference="return-1")
    b = service.refund(db, order_id=order, amount=Decimal("12.00"), reference="return-1")
    assert [r.request_id for r in a] == [r.request_id for r in b]
    p = payment(db, pid)
    assert (p.refunded_minor, p.refund_pending_minor, p.status) == (1200, 0, "partly_refunded")


def test_a_refund_enqueued_in_a_returns_transaction_is_held_back_at_once_and_sent_by_a_job(db: Database) -> None:
    order, [pid] = _captured(db, "30.00", card())
    with db.transaction() as session:
        service.enqueue_refund(session, order_id=order, amount=Decimal("30.00"), reference="return-2")
    p = payment(db, pid)
    assert (p.refund_pending_minor, p.refunded_minor) == (3000, 0)
    with pytest.raises(Invalid):  # what is being refunded cannot be refunded twice
        service.refund(db, order_id=order, amount=Decimal("0.01"))
    assert run_jobs(db) == 1
    p = payment(db, pid)
    assert (p.refund_pending_minor, p.refunded_minor, p.status) == (0, 3000, "refunded")


def test_cash_is_taken_at_once_and_given_back_as_a_refund(db: Database) -> None:
    _, [pid] = _captured(db, "12.00", {"method": "cash"})
    p = payment(db, pid)
    assert (p.status, p.captured_minor) == ("captured", 1200)
    [r] = service.refund(db, payment_ids=[pid], amount=Decimal("2.00"))
    assert (r.method, r.amount, r.status) == ("cash", Decimal("2.00"), "succeeded")


# ---------------------------------------------------------------- crashes: the reconcile job

def _later(minutes: float):
    moment = utcnow() + timedelta(minutes=minutes)
    return clock(lambda: moment)


def test_an_authorisation_whose_order_never_committed_is_voided_at_the_deadline(db: Database) -> None:
    code = gift_card(db, "20.00")
    ids = _authorised(db, "50.00", {"method": "gift_card", "code": code, "amount": "20.00"}, card())
    assert balance(db, code)[0] == Decimal("0.00")
    assert run_jobs(db) == 0  # not yet
    with _later(16):
        assert run_jobs(db) == 1
    assert statuses(db, ids) == ["voided", "voided"]
    assert intents_for(db, ids[1])[0]["status"] == "canceled"
    assert balance(db, code) == (Decimal("20.00"), Decimal("20.00"))
    with db.transaction() as session, pytest.raises(Conflict):  # a late order cannot take them any more
        service.attach(session, ids, new_id())


def test_the_reconcile_job_leaves_paid_orders_alone(db: Database) -> None:
    _, ids = _captured(db, "20.00", card())
    with _later(16):
        run_jobs(db)
    assert statuses(db, ids) == ["captured"]


def test_a_lost_answer_is_asked_again_with_the_same_key_and_voided(db: Database) -> None:
    [pid] = begin(db, "25.00", card())
    p = payment(db, pid)
    # the crash: the provider authorised, but the process died before recording its answer
    with db.transaction() as session:
        session.add(PaymentOperation(id=new_id(), payment_id=pid, kind="authorise", phase="request",
                                     status="requested", idempotency_key=f"{pid}:authorise", details={},
                                     created_at=utcnow()))
    sim(db).authorise(amount=p.amount, currency="EUR", method=Method("card", "pm_card_visa"),
                      idempotency_key=f"{pid}:authorise", metadata={"payment_id": pid, "ref": p.ref})
    with _later(16):
        assert run_jobs(db) == 1
    [intent] = intents_for(db, pid)  # still one charge at the provider, and it is released
    assert intent["status"] == "canceled"
    assert payment(db, pid).status == "voided"


def test_an_orphaned_cash_payment_is_refunded(db: Database) -> None:
    ids = _authorised(db, "9.00", {"method": "cash"})
    with _later(16):
        run_jobs(db)
    p = payment(db, ids[0])
    assert (p.status, p.refunded_minor) == ("refunded", 900)


def test_a_capture_whose_answer_was_lost_is_sent_again_with_the_same_key(db: Database) -> None:
    [pid] = _authorised(db, "40.00")
    p = payment(db, pid)
    # the crash: the provider captured, the process died before recording it; the job runs again
    sim(db).capture(ref=p.provider_ref, amount=Decimal("40.00"), currency="EUR", idempotency_key=f"{pid}:capture")
    with db.transaction() as session:
        service.attach(session, [pid], new_id())
        service.enqueue_capture(session, [pid])
    assert run_jobs(db) == 1
    assert (payment(db, pid).status, intents_for(db, pid)[0]["amount_received"]) == ("captured", 4000)


def test_stripe_payments_through_the_service(db: Database, stripe_server) -> None:
    code = gift_card(db, "10.00")
    ids = begin(db, "35.00", {"method": "gift_card", "code": code, "amount": "10.00"}, card(provider="stripe"))
    assert service.authorise(db, ids).status == "authorised"
    order = new_id()
    with db.transaction() as session:
        service.attach(session, ids, order)
        service.enqueue_capture(session, ids)
    assert run_jobs(db) == 2
    stripe_id = payment(db, ids[1]).provider_ref
    assert stripe_server.fake.intents[stripe_id]["status"] == "succeeded"
    assert stripe_server.fake.intents[stripe_id]["metadata"] == {"payment_id": ids[1], "ref": payment(db, ids[1]).ref}
    parts = service.refund(db, order_id=order, amount=Decimal("30.00"), reason="requested_by_customer")
    assert [(r.method, r.amount, r.status) for r in parts] == [("card", Decimal("25.00"), "succeeded"),
                                                             ("gift_card", Decimal("5.00"), "succeeded")]
    refund = [r for r in stripe_server.fake.refunds.values() if r["payment_intent"] == stripe_id]
    assert [(r["amount"], r["reason"]) for r in refund] == [(2500, "requested_by_customer")]
    sent = [r for r in stripe_server.fake.requests if r["params"].get("payment_intent") == stripe_id]
    assert sent[0]["headers"]["idempotency-key"] == f"{ids[1]}:refund:{parts[0].request_id}"


def test_a_refund_the_provider_did_not_answer_is_pending_and_sent_again_by_a_job(db: Database,
                                                                                 stripe_server) -> None:
    order, [pid] = _captured(db, "20.00", card(provider="stripe"))
    stripe_server.fake.fail_next = 503
    [part] = service.refund(db, order_id=order, amount=Decimal("8.00"))
    assert part.status == "pending"
    p = payment(db, pid)
    assert (p.refund_pending_minor, p.refunded_minor) == (800, 0)  # held back meanwhile
    with _later(1):
        assert run_jobs(db) == 1
    p = payment(db, pid)
    assert (p.refund_pending_minor, p.refunded_minor, p.status) == (0, 800, "partly_refunded")
    refunds = [r for r in stripe_server.fake.refunds.values() if r["payment_intent"] == p.provider_ref]
    assert [r["amount"] for r in refunds] == [800]


def test_no_provider_is_called_while_a_transaction_of_ours_is_open(db: Database) -> None:
    from omnijourney.payments import providers

    calls: list[str] = []
    real = sim(db)

    class Probe:
        """The test provider, checking at each call that no connection of ours is in use (no transaction open)."""

        name = "probe"

        def __getattr__(self, op: str):
            def call(*args, **kwargs):
                assert db.engine.pool.checkedout() == 0, f"{op} called inside a transaction"
                calls.append(op)
                return getattr(real, op)(*args, **kwargs)
            return call

    providers.register("probe", lambda _db: Probe())
    try:
        code = gift_card(db, "5.00")
        ids = begin(db, "30.00", {"method": "gift_card", "code": code, "amount": "5.00"}, card(provider="probe"))
        assert service.authorise(db, ids).status == "authorised"
        order = new_id()
        with db.transaction() as session:
            service.attach(session, ids, order)
            service.enqueue_capture(session, ids)
        run_jobs(db)
        service.refund(db, order_id=order, amount=Decimal("30.00"))
        [declined] = begin(db, "10.00", card("pm_card_chargeDeclined", provider="probe"))
        service.authorise(db, [declined])
        [orphan] = _authorised(db, "10.00", card(provider="probe"))
        with _later(16):
            run_jobs(db)
        assert payment(db, orphan).status == "voided"
    finally:
        providers.unregister("probe")
    assert calls == ["authorise", "capture", "refund", "authorise", "authorise", "void"]
