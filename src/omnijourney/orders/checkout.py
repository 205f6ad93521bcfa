"""Checkout: one path from a cart to an order for every channel — quote, reservation, payment, order.

Three steps, because a payment provider is another system and no transaction of ours stays open while it answers:

1. **Reserve** (one transaction): the cart is locked and checked (active, not empty, the caller's, every line
   priced), re-quoted for the fulfilment chosen, and compared with the total the customer saw (``expected_total``:
   409 ``price_changed`` with the new quote if it differs). Sourcing picks the locations, the units are reserved
   (they expire by themselves), the payments are recorded, and a recovery job is scheduled. The checkout row is
   keyed by the client's ``Idempotency-Key`` and a cart has one checkout in flight at most.
2. **Pay** (no transaction): the tenders are authorised, each with an idempotency key derived from its payment,
   so a retry never charges twice.
3. **Complete** (one transaction): the order is written with its lines, shipments and history, the reservation
   becomes the order's, vouchers are redeemed, the cart is converted, the payments are attached and their capture
   is enqueued — or, on a decline, the units are released and the checkout fails with the reason.

A crash between the steps loses nothing: the recovery job (``FINISH_JOB``) resumes any checkout without an
answer — it asks the provider again (the same idempotency keys) and completes or fails it — and the payments
domain voids an authorisation that never found its order. A retry of the request with the same key does the
same at once, then answers what the first attempt would have.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import bindparam, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from omnijourney import jobs, locks
from omnijourney.carts import service as carts
from omnijourney.carts.models import Cart
from omnijourney.carts.quote import CartQuote
from omnijourney.catalog.models import Channel
from omnijourney.config import OrderSettings
from omnijourney.core.errors import Conflict, Forbidden, Invalid, NotFound, OmniError
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.db import Database
from omnijourney.inventory import availability, reservations
from omnijourney.inventory.models import Location
from omnijourney.inventory.stock import OutOfStock
from omnijourney.orders import orders as order_service
from omnijourney.orders import sourcing
from omnijourney.orders.models import Checkout
from omnijourney.payments import providers
from omnijourney.payments import service as payments
from omnijourney.payments.models import Payment

FINISH_JOB = "orders.finish_checkout"
SOURCING_ROUNDS = 3  # a checkout that loses the units it planned on to another is sourced again, this many times


def timing() -> OrderSettings:
    """How long a checkout holds its units (``reserve_ttl_s``, 15 min; ``pending_ttl_s`` while the shopper confirms a
    payment) and when the recovery job looks at it (``finish_after_s``, 1 min): ``OMNI_ORDERS__...``, read from the
    settings the payments' own deadlines come from (``providers.settings()``)."""
    return providers.settings().orders


@dataclass(slots=True)
class Request:
    """What a channel sends to check a cart out."""

    cart_id: str
    channel_code: str
    fulfilment: str = "ship"
    location: str | None = None  # the pickup store, for pickup and reserve_in_store
    ship_to: dict[str, Any] | None = None  # address; latitude/longitude make "nearest" mean something
    tenders: list[dict[str, Any]] = field(default_factory=list)
    expected_total: Decimal | None = None
    customer_id: str | None = None  # who says they are checking out: refused if the cart is someone else's
    email: str | None = None

    def fingerprint(self) -> str:
        body = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        return hashlib.sha256(orjson.dumps(body, default=str, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(slots=True)
class Answer:
    status: int
    body: dict[str, Any]


def _pricing_fulfilment(mode: str) -> str:
    return "delivery" if mode == "ship" else "in_store"


def _quote(session: Session, cart: Cart, channel: Channel, mode: str
           ) -> tuple[CartQuote, list[tuple[str, int]], dict[str, str | None]]:
    # one quote, for the fulfilment chosen (the cart's own view would quote it once more for the channel's rule)
    view = carts.view_of(session, cart=cart, channel_code=channel.code, fulfilment=_pricing_fulfilment(mode))
    lines = [(ln.sku, ln.quantity) for ln in view.lines]
    titles = {sku: info.title for sku, info in view.items.items()}
    if not lines:
        raise Invalid(f"cart {cart.id} is empty", field="cart_id", code="empty_cart")
    quote = view.quote
    unpriced = [ql for ql in quote.lines if ql.total is None]
    if not quote.priced or unpriced:
        raise Invalid("the cart has lines that cannot be sold here: " + "; ".join(quote.problems),
                      field="cart_id", code="cart_not_sellable", details={"problems": quote.problems})
    return quote, lines, titles


def _quote_dict(q: CartQuote) -> dict[str, Any]:
    return {"currency": q.currency, "subtotal": str(q.subtotal), "discount": str(q.discount),
            "shipping": str(q.shipping), "tax": str(q.tax), "total": str(q.total), "promotions": q.promotions,
            "vouchers": [v["code"] for v in q.vouchers if v["status"] == "applied"],
            "lines": [{"sku": ql.sku, "quantity": ql.quantity, "unit_price": str(ql.unit_price),
                       "discount": str(ql.discount), "total": str(ql.total)} for ql in q.lines]}


@dataclass(slots=True)
class _Begun:
    """What step 1 of this request hands to steps 2 and 3: what it read (the cart, its channel) and wrote (the
    checkout, its payments), so that they are not read again."""

    checkout: Checkout
    cart: Cart
    channel: Channel
    payments: list[Payment]

    @property
    def id(self) -> str:
        return self.checkout.id

    @property
    def plan(self) -> dict[str, Any]:
        return self.checkout.plan


def _earlier(found: Checkout, fingerprint: str) -> Checkout | Answer:
    if found.request_hash != fingerprint:
        raise Invalid("this Idempotency-Key was used for a different checkout request", field="Idempotency-Key",
                      code="idempotency_key_reused")
    return Answer(found.answer_status, found.answer) if found.answer is not None else found  # type: ignore[arg-type]


# a twin with this key, or another checkout of the cart in flight (built once)
_EARLIER = (select(Checkout).where(Checkout.cart_id == bindparam("cart"), or_(
    Checkout.idempotency_key == bindparam("key"), Checkout.status.in_(("reserved", "paying"))))
    .execution_options(populate_existing=True))


def _reserve(session: Session, req: Request, key: str, fingerprint: str) -> _Begun | Checkout | Answer:
    """Step 1; returns the checkout to pay (begun now, or an earlier request's with this key still unanswered), or
    the stored answer of an earlier request with this key."""
    cart = carts.lock_once(session, req.cart_id)
    # after the lock: a twin with this key (a double click) may have committed while we waited for the cart; and
    # in the same read, whether another checkout of this cart is in flight
    found = session.scalars(_EARLIER, {"cart": cart.id, "key": key}).all()
    mine = next((c for c in found if c.idempotency_key == key), None)
    if mine is not None:
        return _earlier(mine, fingerprint)
    channel = carts.check_for_change(session, cart, req.channel_code)
    if req.customer_id is not None and cart.customer_id is not None:
        owner = locks.customer(session, cart.customer_id)
        if owner != locks.customer(session, req.customer_id):
            raise Forbidden(f"cart {cart.id} belongs to another customer", field="customer_id",
                            code="not_your_cart")
    if found:
        raise Conflict(f"cart {cart.id} is being checked out (checkout {found[0].id}); retry with the same "
                       "Idempotency-Key to get its answer", field="Idempotency-Key", code="checkout_in_progress")
    quote, lines, titles = _quote(session, cart, channel, req.fulfilment)
    if req.expected_total is not None and quote.total != req.expected_total:
        raise Conflict(f"the total is now {quote.total} {quote.currency}, not {req.expected_total}: show the "
                       "customer the new quote", field="expected_total", code="price_changed",
                       details={"expected_total": str(req.expected_total), "quote": _quote_dict(quote)})
    if req.fulfilment == "reserve_in_store" and req.tenders:
        raise Invalid("reserve in store is paid at the till when collected: send no payments", field="payments")
    near = None
    if req.ship_to and req.ship_to.get("latitude") is not None and req.ship_to.get("longitude") is not None:
        near = (float(req.ship_to["latitude"]), float(req.ship_to["longitude"]))
    plan, checkout_id = None, new_id()
    with jobs.batch(session):  # the reservation's expiry, the payments' reconcile and the recovery: one INSERT
        try:
            plan = sourcing.source(session, channel_code=channel.code, lines=lines, fulfilment=req.fulfilment,
                                   pickup_location=req.location, near=near)
            reservation = reservations.reserve(session, channel_code=channel.code, lines=plan.reservation_lines(),
                                               ref=checkout_id, ttl_s=timing().reserve_ttl_s, checked=plan.rules)
        except OutOfStock as exc:  # after a plan: sourcing read the stock unlocked and another checkout took it first
            raise _Short(exc, lines, raced=plan is not None) from None
        now = utcnow()
        paid_now = req.fulfilment != "reserve_in_store" and quote.total and quote.total > 0
        # a lone tender is authorised as soon as this commits: its request is recorded now (payments.begin)
        rows = payments.begin(session, ref=checkout_id, currency=quote.currency, total=quote.total,
                              tenders=req.tenders, sending=len(req.tenders) == 1) if paid_now else []
        co = Checkout(id=checkout_id, cart_id=cart.id, idempotency_key=key, request_hash=fingerprint,
                      status="paying", channel_code=channel.code, reservation_id=reservation.id, order_id=None,
                      plan={"quote": _quote_dict(quote), "sourcing": plan.to_dict(), "payments": [p.id for p in rows],
                            "request": {"fulfilment": req.fulfilment, "location": req.location,
                                        "ship_to": req.ship_to, "email": req.email},
                            "titles": {sku: titles.get(sku) for sku, _ in lines}},
                      created_at=now, updated_at=now)
        session.add(co)
        try:
            session.flush()
        except IntegrityError:  # a twin request got here first with another key
            raise Conflict(f"cart {cart.id} is being checked out", field="Idempotency-Key",
                           code="checkout_in_progress") from None
        jobs.enqueue(session, FINISH_JOB, {"id": checkout_id}, delay_s=timing().finish_after_s,
                     unique_key=jobs.key(FINISH_JOB, checkout_id))
    carts.record_event(session, cart=cart, channel=channel, event="Checkout Started",
                       properties={"checkout_id": checkout_id, "currency": quote.currency, "value": str(quote.total),
                                   "revenue": str(quote.items_total), "shipping": str(quote.shipping),
                                   "tax": str(quote.tax), "fulfilment": req.fulfilment})
    return _Begun(co, cart, channel, rows)


def checkout(db: Database, req: Request, *, idempotency_key: str) -> Answer:
    """Turn the cart into an order (the three steps above); returns the HTTP status and body to answer with.

    201 with the order; 202 with the order and ``next_action_url`` when a payment waits for the shopper; 402
    ``payment_declined`` naming the tender; 409 ``out_of_stock`` with ``details.alternatives`` (other locations and
    fulfilment modes) when the units cannot be had, after sourcing again a plan that another checkout beat to its
    units; the cart's own errors as raised."""
    if not idempotency_key or len(idempotency_key) > 200:
        raise Invalid("checkout needs an Idempotency-Key header (1-200 characters): a retry with the same key never "
                      "makes a second order or charge", field="Idempotency-Key", code="idempotency_key_required")
    fingerprint = req.fingerprint()
    rounds = relocks = 0
    while True:
        try:
            with db.transaction() as session:
                step = _reserve(session, req, idempotency_key, fingerprint)
            break
        except _Short as short:  # a lost race is sourced again from what is left; else the shopper is told
            rounds += 1
            if not short.raced or rounds == SOURCING_ROUNDS:
                raise _with_alternatives(db, short, req.channel_code) from None
        except carts.Relock:  # the cart changed hands while we locked it: lock its new person first
            relocks += 1
            if relocks == 3:
                raise
    if isinstance(step, Answer):
        return step
    if isinstance(step, _Begun) and len(step.payments) <= 1:
        return _finish_begun(db, step)
    co = step.checkout if isinstance(step, _Begun) else step
    return finish(db, co.id, list(co.plan["payments"]))


def _finish_begun(db: Database, begun: _Begun) -> Answer:
    """Steps 2 and 3 of a checkout this request began, with what step 1 read and wrote: the lone tender's
    authorisation (its request recorded in step 1), then one transaction that records its result and completes
    the order. A provider that does not answer leaves it to :func:`finish`, which asks again with the same key."""
    result = None
    if begun.payments:
        try:
            result = payments.send_authorisation(db, begun.payments[0])
        except providers.ProviderUnavailable:
            return finish(db, begun.checkout.id, [p.id for p in begun.payments])
    seen: Cart | None = begun.cart
    while True:
        try:
            with db.transaction() as session:
                cart = carts.lock_once(session, begun.cart.id, seen=seen)
                co = locks.row(session, Checkout, begun.checkout.id, field="checkout_id")
                if co.answer is not None:  # finished meanwhile by the twin (request or job)
                    return Answer(co.answer_status, co.answer)  # type: ignore[arg-type]
                outcome, locked = None, None
                if result is not None:
                    outcome, paid = payments.record_authorisation(session, begun.payments[0].id, result)
                    locked = {paid.id: paid}
                answer, void = _complete(session, co, cart, outcome, channel=begun.channel, payments_locked=locked)
                co.answer, co.answer_status, co.updated_at = answer.body, answer.status, utcnow()
                session.flush()
            break
        except carts.Relock:
            if seen is None:
                raise
            seen = None  # read the cart's people again, then lock them
    if void:
        payments.void(db, void)
    return answer


class _Short(Exception):
    """Step 1 could not have the units (``error``, the 409 to answer); ``raced`` when the plan was made on stock
    another checkout took before this one reserved it."""

    def __init__(self, error: OutOfStock, lines: list[tuple[str, int]], *, raced: bool) -> None:
        super().__init__(error.message)
        self.error, self.lines, self.raced = error, lines, raced


def _with_alternatives(db: Database, short: _Short, channel_code: str) -> OutOfStock:
    """The out-of-stock answer with what the shopper can have instead (other locations, other fulfilment modes, as
    the inventory's own answer offers), read after the refused attempt rolled back."""
    exc = short.error
    sku = exc.details.get("sku") if isinstance(exc.details, dict) else None
    if sku:
        wanted = sum(q for s, q in short.lines if s == sku) or 1
        with db.transaction(write=False) as session:
            exc.details["alternatives"] = availability.alternatives(
                session, sku=sku, channel_code=channel_code, quantity=wanted,
                instead_of=exc.details.get("location") or None)
    return exc


def finish(db: Database, checkout_id: str, payment_ids: list[str] | None = None) -> Answer:
    """Steps 2 and 3 for a checkout (the request, a retry or the recovery job): authorise, then complete."""
    if payment_ids is None:
        with db.transaction(write=False) as session:
            co = session.get(Checkout, checkout_id)
            if co is None or co.answer is not None:
                return Answer(co.answer_status, co.answer) if co is not None else Answer(404, {})
            payment_ids = list(co.plan["payments"])
    outcome = payments.authorise(db, payment_ids) if payment_ids else None
    void: list[str] = []
    with db.transaction() as session:
        seen = session.get(Checkout, checkout_id)
        if seen is None:
            raise NotFound(f"no checkout {checkout_id!r}", field="checkout_id")
        cart = carts.lock(session, seen.cart_id)  # the person and the cart before the checkout row: the lock order
        co = locks.row(session, Checkout, checkout_id, field="checkout_id")
        if co.answer is not None:  # finished meanwhile by the twin (request or job)
            return Answer(co.answer_status, co.answer)  # type: ignore[arg-type]
        answer, void = _complete(session, co, cart, outcome)
        co.answer, co.answer_status, co.updated_at = answer.body, answer.status, utcnow()
        session.flush()
    if void:
        payments.void(db, void)
    return answer


def _complete(session: Session, co: Checkout, cart: Cart, outcome: Any, *, channel: Channel | None = None,
              payments_locked: dict[str, Any] | None = None) -> tuple[Answer, list[str]]:
    payment_ids = list(co.plan["payments"])
    status = outcome.status if outcome is not None else "authorised"
    if status in ("declined", "failed"):
        # the payments domain released the other tenders already; the units go back now
        _release_quietly(session, co.reservation_id)
        co.status = "failed"
        d = outcome.decline
        if status == "failed":
            return Answer(503, {"code": "payment_unavailable", "field": "payments",
                                "message": "the payment provider did not answer: nothing was charged; try again"}), []
        field = f"payments[{d.position}]" if d else "payments"
        return Answer(402, {"code": "payment_declined", "field": field,
                            "message": f"the {d.method if d else 'payment'} was declined: "
                                       f"{(d.reason if d else None) or 'no reason given'}",
                            "details": {"decline_code": d.code if d else None,
                                        "payment_id": d.payment_id if d else None}}), []
    # a refusal leaves nothing behind: place() refuses before it writes, except a voucher used up after another
    # was redeemed, hence a savepoint when there are vouchers
    undo = session.begin_nested() if co.plan["quote"].get("vouchers") else nullcontext()
    try:
        with undo:
            order, body = order_service.place(session, checkout=co, cart=cart, payment_ids=payment_ids,
                                              pending=status == "pending", pending_ttl_s=timing().pending_ttl_s,
                                              channel=channel, payments_locked=payments_locked)
    except OmniError as exc:  # the reservation ran out, a voucher was used up meanwhile: no order, no charge
        _release_quietly(session, co.reservation_id)
        co.status = "failed"
        return Answer(exc.status, exc.to_dict()), payment_ids
    co.status, co.order_id = "completed", order.id
    # the checkout has its answer (the reservation's hold replaced its expiry): the recovery has nothing left to do,
    # nor the reconcile once the payments are attached (a pending one's still waits)
    moot = [jobs.key(FINISH_JOB, co.id)]
    if status != "pending":
        moot.append(jobs.key(payments.RECONCILE_JOB, co.id))
    jobs.cancel(session, moot)
    if status == "pending":
        body["next_action_url"] = outcome.next_action_url
        return Answer(202, body), []
    return Answer(201, body), []


def _release_quietly(session: Session, reservation_id: str | None) -> None:
    if reservation_id is None:
        return
    try:
        with session.begin_nested():
            reservations.release(session, reservation_id=reservation_id)
    except Conflict:
        pass  # expired already: its units are back


@jobs.handler(FINISH_JOB, external=True)
def finish_stale(db: Database, args: dict[str, Any]) -> None:
    """The recovery job: a checkout still without an answer a minute after it began is finished now."""
    finish(db, args["id"])


# ---------------------------------------------------------------- paying at the till (reserve online, pay in store)

def pay_at_till(db: Database, *, order_id: str, channel_code: str, tenders: list[dict[str, Any]],
                idempotency_key: str) -> Answer:
    """A reserved order is paid at its pickup store's till, in the same three steps as a checkout: the tenders are
    recorded with the order locked, authorised with no transaction open, then attached (the capture enqueued, the
    purchase recorded as "Order Completed"). The same key again answers the same; 402 with the declined tender."""
    if not idempotency_key or len(idempotency_key) > 200:
        raise Invalid("paying needs an Idempotency-Key header (1-200 characters)", field="Idempotency-Key",
                      code="idempotency_key_required")
    ref = "till:" + hashlib.sha256(f"{order_id}|{idempotency_key}".encode()).hexdigest()[:40]
    with db.transaction() as session:
        order = order_service.lock(session, order_id)
        earlier = payments.find(session, ref=ref)
        if not earlier:
            _check_till(session, order, channel_code)
            earlier = payments.begin(session, ref=ref, currency=order.currency, total=order.total, tenders=tenders)
        oid, ids = order.id, [p.id for p in earlier]
    outcome = payments.authorise(db, ids)
    with db.transaction() as session:
        order = order_service.lock(session, oid)
        if order.payment_status == "paid":  # done by a twin request with this key
            return Answer(200, order_service.read(session, oid))
        if outcome.status != "authorised":
            d = outcome.decline
            return Answer(402 if outcome.status == "declined" else 503, {
                "code": "payment_declined" if outcome.status == "declined" else "payment_unavailable",
                "field": f"payments[{d.position}]" if d else "payments",
                "message": f"the {d.method} was declined: {d.reason or 'no reason given'}" if d else
                           "the payment did not go through: nothing was charged; try again"})
        order_service.paid_at_till(session, order, ids, channel_code)
        return Answer(200, order_service.read(session, oid))


def _check_till(session: Session, order: Any, channel_code: str) -> None:
    if order.fulfilment != "reserve_in_store":
        raise Conflict(f"order {order.number} was paid when it was placed", field="order_id", code="paid_already")
    if order.payment_status == "paid":
        raise Conflict(f"order {order.number} is paid already", field="order_id", code="paid_already")
    if order.status not in ("allocated", "picked", "ready_for_pickup"):
        raise Conflict(f"order {order.number} is {order.status}: nothing to pay", field="order_id",
                       code="illegal_transition")
    store = session.scalar(select(Location).where(Location.code == order.pickup_location))
    if store is None or store.channel_code != channel_code:
        raise Conflict(f"order {order.number} is paid at {store.name if store else 'its store'}'s till",
                       field="channel", code="wrong_store")
