"""Refunds to the original tenders: split, held back, sent, recorded (the three steps of ``service``).

:func:`plan_refund` splits an amount over an order's captured tenders and holds it back from other refunds by SQL
arithmetic (``refund_pending_minor``), in the caller's transaction: :func:`refund` does that in its own and sends
at once; :func:`enqueue_refund` does it in a return's transaction and leaves the sending to a job. Each part's
idempotency key is ``{payment_id}:refund:{request id}``, so a resent part is one refund at the provider.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from omnijourney import jobs, locks
from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.db import Database
from omnijourney.payments import providers
from omnijourney.payments.models import Payment, PaymentOperation
from omnijourney.payments.providers import ProviderError, ProviderUnavailable
from omnijourney.payments.service import _CAPTURED, _FIRST, REFUND_JOB, _log, _minor, find
from omnijourney.pricing.money import from_minor


@dataclass(frozen=True, slots=True)
class Refund:
    """One part of a refund, on one tender: ``succeeded``, ``pending`` (the provider did not answer; a job
    retries with the same key) or ``failed`` (refused: ``code``, ``message``; the amount is refundable again)."""

    request_id: str
    payment_id: str
    method: str
    amount: Decimal
    status: str
    refund_ref: str | None = None
    code: str | None = None
    message: str | None = None


def plan_refund(session: Session, *, amount: Decimal, order_id: str | None = None,
                payment_ids: Sequence[str] | None = None, reason: str | None = None,
                reference: str | None = None) -> list[PaymentOperation]:
    """Split ``amount`` over the captured tenders (of ``order_id``, or ``payment_ids``) and hold it back from other
    refunds, in the caller's transaction; returns the refund requests. The tenders are refunded in the reverse of
    the order they were charged in: the card first (money back where it came from, nothing left on a gift card
    the customer may not use again), then cash, then gift cards; each at most what it captured minus what was
    refunded. More than is refundable is refused (422 naming ``amount``). With ``reference`` (a return's id), a
    second request under the same reference returns the first one's requests instead of refunding again."""
    if reference is not None:
        done = list(session.scalars(select(PaymentOperation).where(
            PaymentOperation.reference == reference, PaymentOperation.kind == "refund",
            PaymentOperation.phase == "request").order_by(PaymentOperation.id)))
        if done:
            return done
    if order_id is not None:
        ids = [p.id for p in find(session, order_id=order_id)]
    elif payment_ids:
        ids = list(payment_ids)
    else:
        raise Invalid("order_id or payment_ids is needed", field="order_id")
    rows = locks.rows(session, Payment, ids)
    if not rows:
        raise NotFound(f"order {order_id} has no payments" if order_id else "no such payments", field="order_id"
                       if order_id else "payment_ids")
    currencies = {p.currency for p in rows.values()}
    if len(currencies) != 1:
        raise Invalid("payments in several currencies cannot share one refund", field="payment_ids")
    currency = currencies.pop()
    minor = _minor(amount, currency, "amount") or 0
    tenders = sorted((p for p in rows.values() if p.status in _CAPTURED and p.refundable_minor > 0),
                     key=lambda p: (-_FIRST.get(p.method, 9), -p.position))
    refundable = sum(p.refundable_minor for p in tenders)
    if minor > refundable:
        raise Invalid(f"at most {from_minor(refundable, currency)} {currency} can be refunded",
                      field="amount", code="refund_exceeds_captured")
    requests, left = [], minor
    for p in tenders:
        if left == 0:
            break
        part = min(left, p.refundable_minor)
        held = session.execute(update(Payment).where(
            Payment.id == p.id,
            Payment.captured_minor - Payment.refunded_minor - Payment.refund_pending_minor >= part)
            .values(refund_pending_minor=Payment.refund_pending_minor + part, updated_at=utcnow()))
        if held.rowcount != 1:  # cannot happen under the row lock; refuse rather than over-refund
            raise Conflict(f"payment {p.id} changed during the refund", field="amount", code="refund_conflict")
        op_id = new_id()
        requests.append(_log(session, p, "refund", "request", "requested", id=op_id, amount_minor=part,
                             idempotency_key=f"{p.id}:refund:{op_id}", reference=reference,
                             details={"reason": reason} if reason else None))
        left -= part
        session.expire(p)  # its counters changed in SQL
    return requests


def refund_parts(session: Session, *, reference: str) -> list[Refund]:
    """The parts of the refund requested under ``reference`` (a return's), one per tender, as they stand now:
    ``succeeded`` or ``failed`` once the provider answered, ``pending`` while the job has not sent them yet."""
    requests = list(session.scalars(select(PaymentOperation).where(
        PaymentOperation.reference == reference, PaymentOperation.kind == "refund",
        PaymentOperation.phase == "request").order_by(PaymentOperation.id)))
    if not requests:
        return []
    # the latest answer of each (a refund that failed after it succeeded has two)
    answers = {a.request_id: a for a in session.scalars(select(PaymentOperation).where(
        PaymentOperation.request_id.in_([r.id for r in requests]), PaymentOperation.phase == "result")
        .order_by(PaymentOperation.id))}
    tenders = {p.id: p for p in session.scalars(select(Payment).where(
        Payment.id.in_({r.payment_id for r in requests})))}
    out = []
    for r in requests:
        p, answer = tenders[r.payment_id], answers.get(r.id)
        out.append(Refund(r.id, p.id, p.method, p.money(r.amount_minor or 0),
                          answer.status if answer is not None else "pending",
                          answer.provider_ref if answer is not None else None,
                          answer.code if answer is not None else None,
                          answer.message if answer is not None else None))
    return out


def enqueue_refund(session: Session, *, amount: Decimal, order_id: str | None = None,
                   payment_ids: Sequence[str] | None = None, reason: str | None = None,
                   reference: str | None = None) -> list[PaymentOperation]:
    """:func:`plan_refund` in the caller's transaction (a return's) and a ``payments.refund`` job that sends it."""
    requests = plan_refund(session, amount=amount, order_id=order_id, payment_ids=payment_ids, reason=reason,
                           reference=reference)
    jobs.enqueue(session, REFUND_JOB, {"requests": [r.id for r in requests]},
                 unique_key=f"{REFUND_JOB}:{requests[0].id}" if requests else None)
    return requests


def refund(db: Database, *, amount: Decimal, order_id: str | None = None, payment_ids: Sequence[str] | None = None,
           reason: str | None = None, reference: str | None = None) -> list[Refund]:
    """Refund ``amount`` over the original tenders now (called with no transaction open; see :func:`plan_refund`
    for the split). Parts the provider did not answer are ``pending`` and retried by a job with the same key."""
    with db.transaction() as session:
        requests = plan_refund(session, amount=amount, order_id=order_id, payment_ids=payment_ids, reason=reason,
                               reference=reference)
        ids = [r.id for r in requests]
    results = send_refunds(db, ids)
    if waiting := [r.request_id for r in results if r.status == "pending"]:
        with db.transaction() as session:
            jobs.enqueue(session, REFUND_JOB, {"requests": waiting}, delay_s=30,
                         unique_key=f"{REFUND_JOB}:{waiting[0]}")
    return results


def send_refunds(db: Database, request_ids: Sequence[str]) -> list[Refund]:
    """Send refund requests to their providers (step 2 and 3); requests answered before are not sent again."""
    results = []
    for rid in request_ids:
        with db.transaction(write=False) as session:
            req = session.get(PaymentOperation, rid)
            if req is None:
                raise NotFound(f"no refund request {rid!r}", field="requests")
            p = session.get(Payment, req.payment_id)
            answered = session.scalar(select(PaymentOperation).where(PaymentOperation.request_id == rid,
                                                                     PaymentOperation.phase == "result")
                                      .order_by(PaymentOperation.id.desc()).limit(1))
        assert p is not None and req.amount_minor is not None
        amount = p.money(req.amount_minor)
        if answered is not None:
            results.append(Refund(rid, p.id, p.method, amount, answered.status, answered.provider_ref,
                                  answered.code, answered.message))
            continue
        try:
            done = providers.get(p.provider, db).refund(ref=p.provider_ref or "", amount=amount, currency=p.currency,
                                                        idempotency_key=req.idempotency_key or "",
                                                        reason=(req.details or {}).get("reason"))
        except ProviderUnavailable as exc:
            results.append(Refund(rid, p.id, p.method, amount, "pending", code=exc.code, message=exc.message))
            continue
        except ProviderError as exc:
            with db.transaction() as session:
                p = locks.row(session, Payment, p.id)
                session.execute(update(Payment).where(Payment.id == p.id).values(
                    refund_pending_minor=Payment.refund_pending_minor - req.amount_minor, updated_at=utcnow()))
                _log(session, p, "refund", "result", "failed", request_id=rid, amount_minor=req.amount_minor,
                     idempotency_key=req.idempotency_key, code=exc.code, message=exc.message[:1000])
                _tell(session, p, p.money(req.amount_minor), exc.code, exc.message)
            results.append(Refund(rid, p.id, p.method, amount, "failed", code=exc.code, message=exc.message))
            continue
        with db.transaction() as session:
            p = locks.row(session, Payment, p.id)
            session.execute(update(Payment).where(Payment.id == p.id).values(
                refunded_minor=Payment.refunded_minor + req.amount_minor,
                refund_pending_minor=Payment.refund_pending_minor - req.amount_minor, updated_at=utcnow()))
            session.refresh(p)
            p.status = "refunded" if p.refunded_minor >= p.captured_minor else "partly_refunded"
            _log(session, p, "refund", "result", "succeeded", request_id=rid, amount_minor=req.amount_minor,
                 idempotency_key=req.idempotency_key, provider_ref=done.refund_ref)
        results.append(Refund(rid, p.id, p.method, amount, "succeeded", done.refund_ref))
    return results


# ---------------------------------------------------------------- a refund that does not reach the customer

RefundListener = Callable[[Session, Payment, Decimal, str | None, str | None], None]
_refund_listeners: list[RefundListener] = []


def on_refund_failed(fn: RefundListener) -> RefundListener:
    """Call ``fn(session, payment, amount, code, reason)`` in the transaction that records that a refund of
    ``amount`` did not reach the customer: refused when it was sent, or failed later at the provider (a closed
    card). The payment's row is locked there; the orders domain answers with a job (an order is locked before its
    payments). Usable as a decorator."""
    if fn not in _refund_listeners:
        _refund_listeners.append(fn)
    return fn


def _tell(session: Session, p: Payment, amount: Decimal, code: str | None, reason: str | None) -> None:
    for fn in list(_refund_listeners):
        fn(session, p, amount, code, reason)


def failed_later(session: Session, p: Payment, *, refund_ref: str, code: str | None,
                 reason: str | None) -> PaymentOperation | None:
    """A refund the provider accepted failed afterwards (its webhook; ``p`` locked by the caller): the money is on
    the charge again, so the payment's refunded total gives it back and the amount is refundable again (SQL
    arithmetic); the refund's answer becomes ``failed`` with the reason (a new result: the log stays append-only),
    and the listeners hear of it. Returns that result; None when no refund of ``p`` under ``refund_ref`` stands as
    succeeded (unknown, or failed already: the same failure told again under another event id)."""
    answers = list(session.scalars(select(PaymentOperation).where(
        PaymentOperation.payment_id == p.id, PaymentOperation.kind == "refund", PaymentOperation.phase == "result",
        PaymentOperation.provider_ref == refund_ref).order_by(PaymentOperation.id)))
    if not answers or answers[-1].status != "succeeded" or not answers[-1].amount_minor:
        return None
    done = answers[-1]
    minor = done.amount_minor
    session.execute(update(Payment).where(Payment.id == p.id).values(
        refunded_minor=Payment.refunded_minor - minor,
        status=case((Payment.refunded_minor - minor <= 0, "captured"), else_="partly_refunded"),
        updated_at=utcnow()))
    session.expire(p)  # its counters changed in SQL
    op = _log(session, p, "refund", "result", "failed", request_id=done.request_id, amount_minor=minor,
              idempotency_key=done.idempotency_key, provider_ref=refund_ref, reference=done.reference,
              code=(code or "failed")[:100], message=(reason or "")[:1000] or None)
    _tell(session, p, p.money(minor), code, reason)
    return op
