"""The payments of a checkout and its order: the interface checkout, orders and returns use.

Every provider call goes in three steps, and none while a transaction of ours is open (on SQLite a write
transaction holds the database lock, on PostgreSQL row locks):

1. record the intent in a short transaction (a ``request`` row in ``payment_operations``; for a refund, the amount
   held back from other refunds by SQL arithmetic);
2. call the provider outside any transaction, with an idempotency key derived from the payment id
   (``{payment_id}:authorise``, ``:capture``, ``:void``, ``:refund:{request id}``), so a retry after a crash or a lost
   answer is the same request and never charges twice;
3. record the result in a new transaction (a ``result`` row, the payment's new state).

The flow of a checkout::

    begin(session, ...)            in the checkout's transaction: rows (status new) + a reconcile job at a deadline
    authorise(db, ids)             no transaction: gift cards and cash first, the card last; a decline voids the rest
    attach(session, ids, order)    in the order's transaction (refused once a void was decided)
    enqueue_capture(session, ids)  in the order's transaction: money is taken only once the order exists

A crash anywhere leaves nothing behind: an authorisation whose order never committed is voided by the
``payments.reconcile`` job (the job re-asks the provider with the same key when the answer was lost), and an order
always has its capture job, committed with it. Asynchronous changes (3-D Secure finished, a decline after a pending
authorisation) arrive by webhook; :func:`on_change` listeners learn of them in the webhook's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import bindparam, exists, insert, select
from sqlalchemy.orm import Session, make_transient_to_detached

from omnijourney import jobs, locks
from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.db import Database
from omnijourney.payments import providers
from omnijourney.payments.models import METHODS, Payment, PaymentOperation
from omnijourney.payments.providers import (
    Authorisation,
    Method,
    ProviderError,
    ProviderUnavailable,
)
from omnijourney.pricing.money import check_currency, from_minor, to_minor

RECONCILE_JOB, CAPTURE_JOB, VOID_JOB, REFUND_JOB = ("payments.reconcile", "payments.capture", "payments.void",
                                                    "payments.refund")
_FIRST = {"gift_card": 0, "cash": 1, "card": 2}  # authorised in this order: our own tenders first, the card last
_HOLDING = ("new", "pending", "authorised")  # what a void releases
_CAPTURED = ("captured", "partly_refunded")  # what can be refunded
_CARD_DATA = ("number", "card_number", "pan", "cvc", "cvv", "exp_month", "exp_year", "expiry")

Listener = Callable[[Session, Payment], None]
_listeners: list[Listener] = []
_lockers: list[Callable[[Session, str], None]] = []


def on_change(fn: Listener) -> Listener:
    """Call ``fn(session, payment)`` in the transaction that changes a payment's status asynchronously: a webhook
    (pending -> authorised or declined, a provider's cancellation), a capture (-> captured) or a capture the
    provider refused (-> failed).
    Usable as a decorator. The listener may write (create the order, :func:`attach`, :func:`enqueue_capture`); if it
    raises, the webhook is answered 500 and the provider sends it again."""
    if fn not in _listeners:
        _listeners.append(fn)
    return fn


def _changed(session: Session, payment: Payment) -> None:
    for fn in list(_listeners):
        fn(session, payment)


def on_lock(fn: Callable[[Session, str], None]) -> Callable[[Session, str], None]:
    """Call ``fn(session, order_id)`` first in a transaction of this module's that records a capture of an order's
    payment, before the payment's row is locked: the orders domain takes the order's locks there, in the lock
    module's order (an order before its payments), so that its :func:`on_change` listener may write the order in
    the capture's own transaction instead of a job of its own. Usable as a decorator."""
    if fn not in _lockers:
        _lockers.append(fn)
    return fn


def _lock_owner(session: Session, payment: Payment) -> None:
    if payment.order_id is not None:
        for fn in list(_lockers):
            fn(session, payment.order_id)


# ---------------------------------------------------------------- begin: the tenders of a checkout

@dataclass(frozen=True, slots=True)
class _Tender:
    method: str
    provider: str
    instrument: str | None
    minor: int | None


def _tenders(tenders: Sequence[Mapping[str, Any]], currency: str) -> list[_Tender]:
    if not tenders:
        raise Invalid("at least one payment is needed", field="payments", code="payments_missing")
    out: list[_Tender] = []
    for i, t in enumerate(tenders):
        at = f"payments[{i}]"
        if not isinstance(t, Mapping):
            raise Invalid(f"{at} is not an object", field=at)
        if any(k in t for k in _CARD_DATA):
            raise Invalid("card data is never accepted: send the provider's payment method id (payment_method)",
                          field=at, code="card_data_refused")
        method = t.get("method")
        if method not in METHODS:
            raise Invalid(f"{at}.method must be one of {', '.join(METHODS)}", field=f"{at}.method")
        if method == "card":
            provider = t.get("provider") or providers.settings().payments.card_provider
            instrument = t.get("payment_method")
            if not isinstance(instrument, str) or not instrument.strip():
                raise Invalid("a card payment needs its provider's payment method id", field=f"{at}.payment_method")
        elif method == "gift_card":
            provider, instrument = "gift_card", t.get("code")
            if not isinstance(instrument, str) or not instrument.strip():
                raise Invalid("a gift card payment needs the card's code", field=f"{at}.code")
        else:
            provider, instrument = "cash", None
        if not isinstance(provider, str) or not providers.available(provider):
            raise Invalid(f"no payment provider {provider!r}", field=f"{at}.provider", code="unknown_provider")
        out.append(_Tender(method, provider, instrument.strip() if instrument else None,
                           _minor(t.get("amount"), currency, f"{at}.amount")))
    return out


def _minor(value: Any, currency: str, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool | float) or not isinstance(value, str | int | Decimal):
        raise Invalid(f"{field} is a decimal string such as \"20.00\"", field=field)
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise Invalid(f"{field} is not a number: {value!r}", field=field) from None
    if not amount.is_finite() or amount <= 0:
        raise Invalid(f"{field} must be positive", field=field)
    return to_minor(amount, currency, field=field)


def begin(session: Session, *, ref: str, currency: str, total: Decimal,
          tenders: Sequence[Mapping[str, Any]], sending: bool = False) -> list[Payment]:
    """Create the payments (status new) of a checkout ``ref`` that must pay ``total`` in the caller's transaction.

    ``tenders``: e.g. ``[{"method": "gift_card", "code": "GC-...", "amount": "20.00"}, {"method": "card",
    "provider": "test", "payment_method": "pm_card_visa"}]``; at most one tender without an amount takes the
    remainder; the amounts must cover ``total`` exactly (``Invalid`` naming ``payments`` or ``payments[i].amount``).
    A ``payments.reconcile`` job is enqueued at the deadline (``OMNI_PAYMENTS__RECONCILE_AFTER_S``): whatever of
    these is still holding money without an order by then is voided.

    ``sending``: the caller sends a lone tender's authorisation as soon as this transaction commits
    (:func:`send_authorisation`, then :func:`record_authorisation`): its request is recorded here, with the payment
    (step 1), instead of in a transaction of its own. A crash before the provider was asked leaves a request that
    the recovery asks again with the same key (one charge at most), as after a lost answer.
    """
    check_currency(currency)
    if not ref or len(ref) > 64:
        raise Invalid("ref is 1 to 64 characters", field="ref")
    total_minor = to_minor(total, currency, field="total")
    if total_minor <= 0:
        raise Invalid("the total to pay must be positive", field="total")
    parsed = _tenders(tenders, currency)
    open_ = [i for i, t in enumerate(parsed) if t.minor is None]
    if len(open_) > 1:
        raise Invalid("only one payment may leave its amount out (it takes the remainder)",
                      field=f"payments[{open_[1]}].amount", code="payment_amount_missing")
    fixed = sum(t.minor or 0 for t in parsed)
    if open_:
        rest = total_minor - fixed
        if rest <= 0:
            raise Invalid(f"the other payments already cover {from_minor(fixed, currency)} of "
                          f"{from_minor(total_minor, currency)}: nothing is left for this one",
                          field=f"payments[{open_[0]}].amount", code="payments_exceed_total")
        parsed[open_[0]] = _Tender(parsed[open_[0]].method, parsed[open_[0]].provider, parsed[open_[0]].instrument,
                                   rest)
    elif fixed != total_minor:
        word = "short of" if fixed < total_minor else "more than"
        raise Invalid(f"the payments add up to {from_minor(fixed, currency)} {currency}, {word} the total "
                      f"{from_minor(total_minor, currency)} {currency}", field="payments",
                      code="payments_do_not_cover_total" if fixed < total_minor else "payments_exceed_total")
    now = utcnow()
    values = [{"id": new_id(), "ref": ref, "order_id": None, "position": i, "method": t.method,
               "provider": t.provider, "instrument": t.instrument, "brand": None, "last4": None,
               "currency": currency, "amount_minor": t.minor, "authorised_minor": 0, "captured_minor": 0,
               "refunded_minor": 0, "refund_pending_minor": 0, "status": "new", "provider_ref": None,
               "decline_code": None, "decline_reason": None, "next_action_url": None, "void_requested_at": None,
               "created_at": now, "updated_at": now} for i, t in enumerate(parsed)]
    session.execute(insert(Payment.__table__), values)  # no unit of work: the rows as written join the session below
    rows = []
    for v in values:
        p = Payment(**v)
        make_transient_to_detached(p)
        session.add(p)
        rows.append(p)
    if sending and len(rows) == 1:
        p = rows[0]
        session.execute(insert(PaymentOperation.__table__), [{
            "id": new_id(), "payment_id": p.id, "kind": "authorise", "phase": "request", "status": "requested",
            "amount_minor": p.amount_minor, "idempotency_key": f"{p.id}:authorise", "details": {},
            "created_at": now}])
    jobs.enqueue(session, RECONCILE_JOB, {"ref": ref, "payment_ids": [p.id for p in rows]},
                 delay_s=providers.settings().payments.reconcile_after_s, unique_key=jobs.key(RECONCILE_JOB, ref))
    return rows


# ---------------------------------------------------------------- reading

def get(session: Session, payment_id: str) -> Payment:
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id!r}", field="payment_id")
    return payment


_FIND = {(r, o): select(Payment).where(*([Payment.ref == bindparam("ref")] if r else []),
                                       *([Payment.order_id == bindparam("order_id")] if o else []))
         .order_by(Payment.ref, Payment.position) for r in (True, False) for o in (True, False)}  # built once


def find(session: Session, *, ref: str | None = None, order_id: str | None = None) -> list[Payment]:
    """The payments of a checkout (``ref``) or of an order, in tender order."""
    if ref is None and order_id is None:
        raise Invalid("ref or order_id is needed", field="ref")
    q = _FIND[(ref is not None, order_id is not None)]
    return list(session.scalars(q, {k: v for k, v in (("ref", ref), ("order_id", order_id)) if v is not None}))


def operations(session: Session, payment_id: str) -> list[PaymentOperation]:
    return list(session.scalars(select(PaymentOperation).where(PaymentOperation.payment_id == payment_id)
                                .order_by(PaymentOperation.created_at, PaymentOperation.id)))


def _load(db: Database, ids: Iterable[str]) -> list[Payment]:
    wanted = list(dict.fromkeys(ids))
    with db.transaction(write=False) as session:
        found = {p.id: p for p in session.scalars(select(Payment).where(Payment.id.in_(wanted)))}
    if missing := [i for i in wanted if i not in found]:
        raise NotFound(f"no payment {missing[0]!r}", field="payment_ids")
    return [found[i] for i in wanted]


_OP_COLUMNS = tuple(c.key for c in PaymentOperation.__table__.columns)


def _log(session: Session, p: Payment, kind: str, phase: str, status: str, **fields: Any) -> PaymentOperation:
    """Append an operation: one ``INSERT`` of every column (one compiled statement whatever is given), no unit of
    work (a flush was a third of a capture's client time); the row as written joins the session."""
    row: dict[str, Any] = dict.fromkeys(_OP_COLUMNS)
    row.update(id=fields.pop("id", None) or new_id(), payment_id=p.id, kind=kind, phase=phase, status=status,
               details=fields.pop("details", None) or {}, created_at=utcnow(), **fields)
    session.execute(insert(PaymentOperation.__table__), [row])
    op = PaymentOperation(**row)
    make_transient_to_detached(op)
    session.add(op)
    return op


# ---------------------------------------------------------------- authorise

@dataclass(frozen=True, slots=True)
class Decline:
    """Which tender was refused, and why (the provider's code, a reason a shopper can read)."""

    payment_id: str
    position: int
    method: str
    code: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class AuthoriseOutcome:
    """``authorised`` (every tender holds its money), ``pending`` (a tender waits for the shopper:
    ``next_action_url``; a webhook completes it), ``declined`` (``decline`` says which and why; the others were
    released) or ``failed`` (a provider refused the request or could not be reached: ``decline`` has its code; the
    others were released, and an unanswered authorisation is voided by a job once its outcome is known)."""

    status: str
    payments: list[Payment]
    decline: Decline | None = None
    next_action_url: str | None = None


def authorise(db: Database, payment_ids: Sequence[str]) -> AuthoriseOutcome:
    """Authorise the tenders (called with no transaction open). Gift cards and cash go first and the card last, so
    a card is never held for a basket the gift card could not cover. Idempotent: a payment already authorised is
    not asked again, and one whose answer was lost is asked again with the same key (one charge)."""
    ordered = sorted(_load(db, payment_ids), key=lambda p: (_FIRST.get(p.method, 9), p.position))
    for p in ordered:
        done = _authorise_one(db, p)
        if done.status in ("declined", "failed", "voided") or (done.status == "new"):
            release = [q.id for q in ordered if q.id != done.id]
            if done.status == "new":  # no answer from the provider: decided void, done by a job once it answers
                release.append(done.id)
            void(db, release, only_orphans=True, retry_later=True)
            code = done.decline_code or ("provider_unavailable" if done.status == "new" else None)
            reason = done.decline_reason or ("The payment provider did not answer; nothing was charged."
                                             if done.status == "new" else None)
            status = "declined" if done.status == "declined" else "failed"
            return AuthoriseOutcome(status, _load(db, payment_ids),
                                    Decline(done.id, done.position, done.method, code, reason))
    final = _load(db, payment_ids)
    pending = [p for p in final if p.status == "pending"]
    if pending:
        return AuthoriseOutcome("pending", final, next_action_url=pending[0].next_action_url)
    return AuthoriseOutcome("authorised", final)


def _authorise_one(db: Database, p: Payment) -> Payment:
    key = f"{p.id}:authorise"
    with db.transaction() as session:
        p = locks.row(session, Payment, p.id, field="payment_ids")
        if p.status != "new" or p.void_requested_at is not None:
            return p  # answered before (or being voided): the provider is not asked again
        _log(session, p, "authorise", "request", "requested", amount_minor=p.amount_minor, idempotency_key=key)
    try:
        result = _call_authorise(db, p, key)
    except ProviderUnavailable as exc:
        with db.transaction() as session:
            _log(session, p, "authorise", "result", "unknown", idempotency_key=key, code=exc.code,
                 message=exc.message[:1000])
        return _load(db, [p.id])[0]
    except ProviderError as exc:
        result = None
        error = exc
    with db.transaction() as session:
        p = locks.row(session, Payment, p.id)
        _record_answer(session, p, error if result is None else result, key)
        session.flush()
        return p


def send_authorisation(db: Database, payment: Payment) -> Authorisation | ProviderError:
    """Step 2 for a lone tender begun with ``sending=True`` (no transaction open): the provider's answer, or its
    refusal; ``ProviderUnavailable`` when it did not answer (then :func:`authorise` asks again, same key)."""
    try:
        return _call_authorise(db, payment, f"{payment.id}:authorise")
    except ProviderUnavailable:
        raise
    except ProviderError as exc:
        return exc


def record_authorisation(session: Session, payment_id: str, result: Authorisation | ProviderError
                         ) -> tuple[AuthoriseOutcome, Payment]:
    """Step 3 of :func:`send_authorisation`, in the caller's transaction (checkout's last one, which attaches the
    payment to its order in the same write): the result row and the payment's new state, with its row locked.
    Another finisher (a retry, the recovery job, a webhook) may have recorded it first: then its state stands.
    Returns the outcome :func:`authorise` would give for this tender, and the locked payment."""
    key = f"{payment_id}:authorise"
    p = locks.row(session, Payment, payment_id, field="payment_ids")
    _record_answer(session, p, result, key)
    if p.status in ("authorised", "captured"):  # (a void decided meanwhile: attaching it refuses)
        return AuthoriseOutcome("authorised", [p]), p
    if p.status == "pending":
        return AuthoriseOutcome("pending", [p], next_action_url=p.next_action_url), p
    declined = p.status == "declined"
    return AuthoriseOutcome("declined" if declined else "failed", [p], Decline(
        p.id, p.position, p.method, p.decline_code or ("declined" if declined else "provider_error"),
        p.decline_reason)), p


def _record_answer(session: Session, p: Payment, answer: Authorisation | ProviderError, key: str) -> None:
    """The provider's answer to an authorisation, on a locked payment: its result row and the payment's new state
    (a refusal fails a payment still new; an answer recorded first by another finisher stands)."""
    if isinstance(answer, ProviderError):
        _log(session, p, "authorise", "result", "failed", idempotency_key=key, code=answer.code,
             message=answer.message[:1000])
        if p.status == "new":
            p.status, p.decline_code, p.decline_reason = "failed", answer.code[:100], answer.message[:500]
    else:
        _record_authorisation(session, p, answer, key)
    p.updated_at = utcnow()


def _call_authorise(db: Database, p: Payment, key: str) -> Authorisation:
    return providers.get(p.provider, db).authorise(
        amount=p.amount, currency=p.currency, method=Method(p.method, p.instrument), idempotency_key=key,
        metadata={"payment_id": p.id, "ref": p.ref})


def _record_authorisation(session: Session, p: Payment, result: Authorisation, key: str) -> None:
    _log(session, p, "authorise", "result", result.status, idempotency_key=key, provider_ref=result.provider_ref,
         amount_minor=to_minor(result.amount, p.currency) if result.amount else None, code=result.decline_code,
         message=result.decline_reason)
    p.provider_ref = p.provider_ref or result.provider_ref
    p.brand, p.last4 = p.brand or result.brand, p.last4 or result.last4
    if p.status != "new":
        return  # a webhook told us first: it is the later news
    p.status = result.status
    if result.status in ("authorised", "captured"):
        p.authorised_minor = to_minor(result.amount, p.currency)
        if result.status == "captured":  # settled at once (cash)
            p.captured_minor = p.authorised_minor
    elif result.status == "pending":
        p.next_action_url = result.next_action_url
    elif result.status == "declined":
        p.decline_code = (result.decline_code or "declined")[:100]
        p.decline_reason = (result.decline_reason or "The payment was declined.")[:500]


# ---------------------------------------------------------------- attach and capture

def attach(session: Session, payment_ids: Sequence[str], order_id: str, *,
           locked: Mapping[str, Payment] | None = None) -> list[Payment]:
    """Tie the payments to ``order_id`` in the order's transaction. Refused (409 ``payment_not_authorised``) when a
    payment does not hold its money, or a void was decided (the reconcile job got there first): the order must not
    commit without its payment. Attaching again to the same order changes nothing. ``locked``: the payments as the
    caller locked them in this transaction (:func:`record_authorisation`), not locked again. Every payment is
    checked before any is changed."""
    if locked is not None and all(i in locked for i in payment_ids):
        rows = dict(locked)
    else:
        rows = locks.rows(session, Payment, payment_ids)
    if missing := [i for i in payment_ids if i not in rows]:
        raise NotFound(f"no payment {missing[0]!r}", field="payment_ids")
    for pid in payment_ids:
        p = rows[pid]
        if p.order_id == order_id:
            continue
        if p.order_id is not None:
            raise Conflict(f"payment {pid} belongs to order {p.order_id}", field="payments", code="payment_attached")
        if p.void_requested_at is not None or p.status not in ("authorised", "captured"):
            state = "being voided" if p.void_requested_at is not None else p.status
            raise Conflict(f"payment {pid} cannot pay for an order: it is {state}", field="payments",
                           code="payment_not_authorised")
    now = utcnow()
    for pid in payment_ids:
        p = rows[pid]
        if p.order_id != order_id:
            p.order_id, p.updated_at = order_id, now
    session.flush()
    return [rows[i] for i in payment_ids]


def enqueue_capture(session: Session, payment_ids: Sequence[str],
                    amounts: Mapping[str, Decimal] | None = None) -> None:
    """Schedule the capture of each payment (its full authorisation, or ``amounts[id]``) in the order's
    transaction: money is taken only once the order exists, and always once it does."""
    for pid in payment_ids:
        amount = (amounts or {}).get(pid)
        jobs.enqueue(session, CAPTURE_JOB, {"payment_id": pid, "amount": None if amount is None else str(amount)},
                     unique_key=f"{CAPTURE_JOB}:{pid}")


def capture(db: Database, payment_id: str, *, amount: Decimal | None = None,
            also: Callable[[Session], None] | None = None) -> Payment:
    """Take ``amount`` (default: all that was authorised; never more) of an authorised payment. Idempotent: a
    captured payment is returned as it is. 409 ``payment_not_capturable`` when it holds no money (voided,
    declined...); ``ProviderUnavailable`` when the provider did not answer (retry: same key, one capture).

    The provider's answer is recorded in one transaction with the order's locks taken first (:func:`on_lock`), so
    the order's listener follows it there (paid once every tender is captured); ``also(session)`` runs in it too
    (the capture job's own completion: ``jobs.service.complete``)."""
    key = f"{payment_id}:capture"
    with db.transaction() as session:
        p = locks.row(session, Payment, payment_id, field="payment_id")
        if p.status in ("captured", "partly_refunded", "refunded"):
            return p
        if p.status != "authorised" or p.void_requested_at is not None:
            raise Conflict(f"payment {payment_id} is {p.status}: nothing to capture", field="payment_id",
                           code="payment_not_capturable")
        minor = p.authorised_minor if amount is None else to_minor(amount, p.currency)
        if minor <= 0 or minor > p.authorised_minor:
            raise Invalid(f"a capture is between 0 and the authorised {p.money(p.authorised_minor)} {p.currency}",
                          field="amount", code="capture_exceeds_authorised")
        _log(session, p, "capture", "request", "requested", amount_minor=minor, idempotency_key=key)
    provider = providers.get(p.provider, db)
    try:
        captured = provider.capture(ref=p.provider_ref or "", amount=from_minor(minor, p.currency),
                                    currency=p.currency, idempotency_key=key)
    except ProviderUnavailable:
        raise
    except ProviderError as exc:
        with db.transaction() as session:
            _lock_owner(session, p)
            p = locks.row(session, Payment, payment_id)
            _log(session, p, "capture", "result", "failed", idempotency_key=key, code=exc.code,
                 message=exc.message[:1000])
            if p.status == "authorised":
                p.status, p.decline_code, p.decline_reason = "failed", exc.code[:100], exc.message[:500]
                p.updated_at = utcnow()
                session.flush()
                _changed(session, p)
        raise Conflict(f"the provider refused the capture: {exc.message}", field="payment_id",
                       code="capture_refused") from exc
    with db.transaction() as session:
        _lock_owner(session, p)
        p = locks.row(session, Payment, payment_id)
        _log(session, p, "capture", "result", "captured", idempotency_key=key,
             amount_minor=to_minor(captured.amount, p.currency))
        if p.status == "authorised":
            p.status, p.captured_minor, p.updated_at = "captured", to_minor(captured.amount, p.currency), utcnow()
            session.flush()
            _changed(session, p)  # the order learns its money is taken
        if also is not None:
            also(session)
        session.flush()
        return p


# ---------------------------------------------------------------- void

def void(db: Database, payment_ids: Sequence[str], *, only_orphans: bool = False,
         retry_later: bool = False) -> list[Payment]:
    """Release what these payments hold (called with no transaction open): authorised and pending ones are voided
    at their provider, new ones are closed (asking the provider first, with the same key, if an authorisation
    was sent and its answer lost), and money already settled without an order (cash) is refunded. A void is
    decided first (``void_requested_at``), so none of them can be attached to an order afterwards.
    ``only_orphans`` leaves payments that belong to an order alone (the reconcile job). With ``retry_later``, a
    provider that does not answer gets a ``payments.void`` job instead of an exception."""
    with db.transaction() as session:
        rows = locks.rows(session, Payment, payment_ids)
        targets, refunds = [], []
        for pid in payment_ids:
            p = rows.get(pid)
            if p is None or (only_orphans and p.order_id is not None):
                continue
            if p.status in _HOLDING:
                p.void_requested_at = p.void_requested_at or utcnow()
                targets.append(pid)
            elif p.status in _CAPTURED and p.order_id is None and p.refundable_minor > 0:
                p.void_requested_at = p.void_requested_at or utcnow()
                refunds.append(pid)
        session.flush()
    unanswered = []
    for pid in targets:
        try:
            _void_one(db, pid)
        except ProviderUnavailable:
            if not retry_later:
                raise
            unanswered.append(pid)
    for pid in refunds:
        from omnijourney.payments.refunds import refund

        p = _load(db, [pid])[0]
        refund(db, payment_ids=[pid], amount=p.money(p.refundable_minor), reason="no order",
               reference=f"release:{pid}")
    if unanswered:
        with db.transaction() as session:
            jobs.enqueue(session, VOID_JOB, {"payment_ids": unanswered}, delay_s=30)
    return _load(db, payment_ids)


def _void_one(db: Database, payment_id: str) -> None:
    key = f"{payment_id}:void"
    with db.transaction() as session:
        p = locks.row(session, Payment, payment_id)
        if p.status not in _HOLDING:
            return
        asked = session.scalar(select(exists().where(
            PaymentOperation.payment_id == p.id, PaymentOperation.kind == "authorise",
            PaymentOperation.phase == "request")))
        if p.status == "new" and not asked:  # the provider never heard of it: nothing to release
            _log(session, p, "void", "result", "voided", details={"note": "never sent to the provider"})
            p.status, p.updated_at = "voided", utcnow()
            return
    if p.status == "new":  # sent, answer lost: ask again with the same key to learn what the provider holds
        key_auth = f"{p.id}:authorise"
        try:
            result: Authorisation | None = _call_authorise(db, p, key_auth)
        except ProviderUnavailable:
            raise
        except ProviderError as exc:  # refused for good: it holds nothing
            result, error = None, exc
        with db.transaction() as session:
            p = locks.row(session, Payment, payment_id)
            _record_answer(session, p, error if result is None else result, key_auth)
        if p.status not in ("authorised", "pending"):
            if p.status in _CAPTURED:  # settled at once (cash): give it back
                from omnijourney.payments.refunds import refund

                refund(db, payment_ids=[p.id], amount=p.money(p.refundable_minor), reason="no order",
                       reference=f"release:{p.id}")
            return
    with db.transaction() as session:
        p = locks.row(session, Payment, payment_id)
        _log(session, p, "void", "request", "requested", idempotency_key=key)
    try:
        providers.get(p.provider, db).void(ref=p.provider_ref or "", idempotency_key=key)
        status, code, message = "voided", None, None
    except ProviderUnavailable:
        raise
    except ProviderError as exc:  # e.g. the provider cancelled it already (expired): it holds nothing either way
        status, code, message = "failed", exc.code, exc.message[:1000]
    with db.transaction() as session:
        p = locks.row(session, Payment, payment_id)
        _log(session, p, "void", "result", status, idempotency_key=key, code=code, message=message)
        if p.status in ("authorised", "pending") and status == "voided":
            p.status, p.updated_at = "voided", utcnow()


# The refund and webhook halves live in their own modules (which build on this one); their public functions are
# part of this interface too: ``service.refund(...)``, ``service.apply_event(...)``.
_ELSEWHERE = {name: "omnijourney.payments.refunds" for name in
              ("Refund", "enqueue_refund", "plan_refund", "refund_parts", "refund", "send_refunds", "on_refund_failed",
               "failed_later")} | {
              "apply_event": "omnijourney.payments.webhooks"}


def __getattr__(name: str) -> Any:
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
