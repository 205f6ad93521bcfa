"""Orders: placed by checkout, moved through their lifecycle by staff, carriers and the payment provider, and read
the same in every channel.

Locks, in the lock module's order: the order's person (anonymous id, then customer), then the order row; every
check that guards a change runs after them. Every change writes the order's history and a timeline event in the
same transaction; later work (capturing the money, releasing an uncollected pickup) is a background job enqueued
in that transaction too.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, event, insert, inspect, or_, select
from sqlalchemy.orm import Session

from omnijourney import jobs, locks
from omnijourney.carts import service as carts
from omnijourney.carts.models import Cart
from omnijourney.catalog import service as catalog
from omnijourney.catalog.models import Channel
from omnijourney.core.cursors import bad_cursor, decode_cursor, encode_cursor
from omnijourney.core.errors import Conflict, Invalid, NotFound, OmniError
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.inventory import reservations
from omnijourney.inventory.models import Location, Reservation
from omnijourney.orders import lifecycle
from omnijourney.orders.models import Checkout, Order, OrderHistory, OrderLine, Return, Shipment
from omnijourney.payments import service as payments
from omnijourney.pricing.offers import redeem_voucher
from omnijourney.tracking import timeline

PICKUP_DAYS = 7  # an order ready for pickup waits this long, then goes back to stock
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # nothing to misread at a counter (no 0/O, 1/I/L)
RELEASE_JOB = "orders.release_uncollected"
SETTLE_JOB = "orders.settle_cancelled"
PAYMENT_JOB = "orders.follow_payment"
REFUND_FAILED_JOB = "orders.refund_failed"
MAX_PAGE = 200
_LOCKED = "omni_locked_orders"  # session.info: the orders this transaction holds locked, by id


# ---------------------------------------------------------------- reading

def read(session: Session, order_id: str) -> dict[str, Any]:
    """The order as every channel sees it (the API's body): lines, shipments, payments, returns and history."""
    from omnijourney.orders.schemas import order_read

    order = session.get(Order, order_id)
    if order is None:
        raise NotFound(f"no order {order_id!r}", field="order_id")
    return order_read(session, order).model_dump(mode="json")


def get(session: Session, order_id: str) -> Order:
    order = session.get(Order, order_id)
    if order is None:
        order = session.scalar(select(Order).where(Order.number == order_id))
    if order is None:
        raise NotFound(f"no order {order_id!r}", field="order_id")
    return order


@dataclass(slots=True)
class OrderPage:
    items: list[Order]
    next_cursor: str | None


def list_orders(session: Session, *, customer_id: str | None = None, channel_code: str | None = None,
                status: str | None = None, fulfilment: str | None = None, location: str | None = None,
                cursor: str | None = None, limit: int = 50) -> OrderPage:
    """Orders newest first, filtered; a customer's through profile merges (the survivor's include the merged)."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    q = select(Order).order_by(Order.placed_at.desc(), Order.id.desc()).limit(limit + 1)
    if customer_id is not None:
        from omnijourney.customers.service import survivor

        q = q.where(Order.customer_id == survivor(session, customer_id).id)
    if channel_code:
        q = q.where(Order.channel_code == channel_code)
    if status:
        q = q.where(Order.status == status)
    if fulfilment:
        if fulfilment not in lifecycle.FULFILMENTS:
            raise Invalid(f"fulfilment is one of {', '.join(lifecycle.FULFILMENTS)}", field="fulfilment")
        q = q.where(Order.fulfilment == fulfilment)
    if location:
        q = q.where(Order.pickup_location == location)
    if cursor:
        try:
            at, oid = decode_cursor(cursor)
            at = datetime.fromisoformat(at)
        except Exception:
            raise bad_cursor() from None
        q = q.where(or_(Order.placed_at < at, and_(Order.placed_at == at, Order.id < oid)))
    rows = list(session.scalars(q))
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1].placed_at.isoformat(), rows[-1].id) if more else None
    return OrderPage(rows, nxt)


# ---------------------------------------------------------------- the timeline

def _channel(session: Session, code: str | None) -> Channel | None:
    return session.get(Channel, code) if code else None


def record_event(session: Session, order: Order, event: str, channel_code: str | None,
           extra: dict[str, Any] | None = None) -> None:
    """An order event on the customer's timeline, in the channel where it happened (Segment's order properties)."""
    channel = _channel(session, channel_code) or _channel(session, order.channel_code)
    lines = list(session.scalars(select(OrderLine).where(OrderLine.order_id == order.id)))
    props = _order_props(order, lines)
    props.update(extra or {})
    timeline.record(session, customer_id=order.customer_id, anonymous_id=order.anonymous_id, event=event,
                    channel=channel.type if channel else "web",
                    store_code=channel.code if channel and channel.type == "store" else None, properties=props)


def advance(session: Session, order: Order, to: str, channel_code: str | None, note: str | None = None,
          extra: dict[str, Any] | None = None) -> None:
    lifecycle.move(session, order, to, channel_code=channel_code, note=note,
                   record=lambda event: record_event(session, order, event, channel_code, extra))


# ---------------------------------------------------------------- placing (called by checkout)

def _number(order_id: str) -> str:
    return "O-" + order_id[-10:].upper()


def new_order(session: Session, *, customer_id: str | None, anonymous_id: str | None, email: str | None,
              channel_code: str, cart_id: str | None, quote: dict[str, Any], sourcing: dict[str, Any],
              ship_to: dict[str, Any] | None, reservation_id: str | None, payment_status: str) -> Order:
    """Write a placed order: the row, its lines at the quoted prices, a shipment per sourced parcel, the history's
    first row. ``quote`` and ``sourcing`` as a checkout's plan holds them."""
    now = utcnow()
    order_id = new_id()
    order = Order(id=order_id, number=_number(order_id), customer_id=customer_id, anonymous_id=anonymous_id,
                  email=email, channel_code=channel_code, cart_id=cart_id, status="placed",
                  payment_status=payment_status, fulfilment=sourcing["fulfilment"],
                  pickup_location=sourcing.get("pickup_location"), ship_to=ship_to, currency=quote["currency"],
                  subtotal=Decimal(quote["subtotal"]), discount=Decimal(quote["discount"]),
                  shipping=Decimal(quote["shipping"]), tax=Decimal(quote["tax"]), total=Decimal(quote["total"]),
                  refunded=Decimal("0"), vouchers=list(quote.get("vouchers", [])),
                  promotions=quote.get("promotions", []),
                  sourcing={"rule": sourcing["rule"], "explanation": sourcing["explanation"],
                            "parcels": sourcing["parcels"]},
                  reservation_id=reservation_id, placed_at=now, updated_at=now)
    session.add(order)
    titles = catalog.variants_for_skus(session, [ln["sku"] for ln in quote["lines"]], channel_code)
    session.add_all([OrderLine(order_id=order_id, sku=ln["sku"], title=titles[ln["sku"]].title if ln["sku"] in titles
                               else None, quantity=ln["quantity"], unit_price=Decimal(ln["unit_price"]),
                               discount=Decimal(ln["discount"]), total=Decimal(ln["total"]), returned=0)
                     for ln in quote["lines"]])
    session.add_all([Shipment(id=new_id(), order_id=order_id, location_code=p["location"],
                              to_location=p["to_location"], lines=p["lines"], status="allocated", created_at=now,
                              updated_at=now) for p in sourcing["parcels"]])
    session.flush()
    lifecycle.start(session, order, channel_code=channel_code)
    return order


def _money(value: Any) -> Decimal:
    # as the database gives it back (Numeric(14, 2)): the answer written now reads like the order read later
    return Decimal(value).quantize(_CENT)


_CENT = Decimal("0.01")


def _order_props(order: Order, lines: Sequence[OrderLine]) -> dict[str, Any]:
    """Segment's order properties (``record_event``'s), from the order and its lines as the caller has them."""
    props: dict[str, Any] = {
        "order_id": order.id, "order_number": order.number, "channel_code": order.channel_code,
        "fulfilment": order.fulfilment, "status": order.status, "currency": order.currency,
        "total": str(order.total), "revenue": str(order.subtotal - order.discount), "shipping": str(order.shipping),
        "tax": str(order.tax), "discount": str(order.discount),
        "products": [{"sku": ln.sku, "name": ln.title, "price": str(ln.unit_price), "quantity": ln.quantity}
                     for ln in sorted(lines, key=lambda ln: ln.sku)]}
    if order.vouchers:
        props["coupon"] = ",".join(order.vouchers)
    if order.pickup_location:
        props["pickup_location"] = order.pickup_location
    return props


def place(session: Session, *, checkout: Checkout, cart: Cart, payment_ids: Sequence[str], pending: bool,
          pending_ttl_s: float, channel: Channel | None = None,
          payments_locked: dict[str, Any] | None = None) -> tuple[Order, dict[str, Any]]:
    """Write the order a checkout decided on (its quote, sourcing and payments), in the checkout's final
    transaction, with the cart locked: the reservation becomes the order's, vouchers are redeemed, the cart is
    converted (unless a profile merge folded it into another cart meanwhile: that cart keeps its lines), the
    payments are attached and their capture enqueued, and the order goes as far as its money allows (paid and
    allocated; a counter sale collected). Returns the order and its body as :func:`read` gives it.

    What can refuse (the person, the reservation, the vouchers, the payments) runs before anything is written; the
    order, its lines, shipments, history rows and timeline events are then written one ``INSERT`` each, the order
    already in the state its moves reach (each move checked against the lifecycle and written to the history, with
    its event, as :func:`advance` would). ``channel``: the checkout's channel as the caller read it;
    ``payments_locked``: the payments as the caller locked them in this transaction (not locked again)."""
    quote = checkout.plan["quote"]
    code = checkout.channel_code
    channel = channel if channel is not None and channel.code == code else session.get(Channel, code)
    customer_id = locks.customer(session, cart.customer_id) if cart.customer_id else None
    now = utcnow()
    order_id = new_id()
    reservations.hold(session, reservation_id=checkout.reservation_id, ref=order_id,  # type: ignore[arg-type]
                      expires_at=now + timedelta(seconds=pending_ttl_s) if pending else None)
    vouchers = list(quote.get("vouchers", []))
    for voucher in vouchers:
        redeem_voucher(session, code=voucher, order_ref=order_id, customer_id=customer_id)
    attached: list[Any] = []
    if payment_ids and not pending:  # a pending payment is attached once it is authorised (PAYMENT_JOB)
        attached = payments.attach(session, list(payment_ids), order_id, locked=payments_locked)
    # ---- nothing below refuses (an error there is a bug: the whole transaction rolls back, no half order)
    try:
        return _write_placed(session, checkout=checkout, cart=cart, channel=channel, customer_id=customer_id,
                             order_id=order_id, now=now, vouchers=vouchers, payment_ids=payment_ids, pending=pending,
                             attached=attached)
    except OmniError as exc:
        raise RuntimeError(f"placing order {order_id} failed after its checks: {exc.message}") from exc


def _write_placed(session: Session, *, checkout: Checkout, cart: Cart, channel: Channel | None,
                  customer_id: str | None, order_id: str, now: datetime, vouchers: list[str],
                  payment_ids: Sequence[str], pending: bool, attached: list[Any]) -> tuple[Order, dict[str, Any]]:
    plan, quote = checkout.plan, checkout.plan["quote"]
    src, req = plan["sourcing"], plan["request"]
    code = checkout.channel_code
    if customer_id is not None and customer_id not in session.info.get(locks.LOCKED, ()):
        raise RuntimeError("an order written without its customer's person lock")  # what the ORM's guard checks
    fulfilment = src["fulfilment"]
    order = Order(id=order_id, number=_number(order_id), customer_id=customer_id, anonymous_id=cart.anonymous_id,
                  email=req.get("email"), channel_code=code, cart_id=cart.id, status="placed",
                  payment_status="pending" if pending else ("authorised" if payment_ids else "unpaid"),
                  fulfilment=fulfilment, pickup_location=src.get("pickup_location"), pickup_code=None,
                  pickup_deadline=None, ship_to=req.get("ship_to"), currency=quote["currency"],
                  subtotal=_money(quote["subtotal"]), discount=_money(quote["discount"]),
                  shipping=_money(quote["shipping"]), tax=_money(quote["tax"]), total=_money(quote["total"]),
                  refunded=_money(0), vouchers=vouchers, promotions=quote.get("promotions", []),
                  sourcing={"rule": src["rule"], "explanation": src["explanation"], "parcels": src["parcels"]},
                  reservation_id=checkout.reservation_id, placed_at=now, updated_at=now)
    titles = plan.get("titles")
    if titles is None:  # a checkout begun before its plan kept the titles
        found = catalog.variants_for_skus(session, [ln["sku"] for ln in quote["lines"]], code)
        titles = {sku: v.title for sku, v in found.items()}
    lines = [OrderLine(order_id=order_id, sku=ln["sku"], title=titles.get(ln["sku"]), quantity=ln["quantity"],
                       unit_price=_money(ln["unit_price"]), discount=_money(ln["discount"]),
                       total=_money(ln["total"]), returned=0) for ln in quote["lines"]]
    history = [OrderHistory(order_id=order_id, from_status=None, to_status="placed", channel_code=code, note=None,
                            at=now)]
    events: list[tuple[str, dict[str, Any]]] = [("Order Placed", {**_order_props(order, lines), "cart_id": cart.id})]

    def move(to: str) -> None:
        lifecycle.check(order, to)
        history.append(OrderHistory(order_id=order_id, from_status=order.status, to_status=to, channel_code=code,
                                    note=None, at=now))
        order.status = to
        events.append((lifecycle.EVENTS[to], _order_props(order, lines)))

    parcel_status = "allocated"
    if not pending:  # the money is secured: the purchase is made and the order goes on (as _secured does)
        if fulfilment != "reserve_in_store":
            order.payment_status = "authorised" if payment_ids else "paid"
            move("paid")
            events.append(("Order Completed", _order_props(order, lines)))  # Segment's purchase event
        if fulfilment == "in_store":
            move("collected")
            parcel_status = "collected"
        else:
            move("allocated")
    shipments = [Shipment(id=new_id(), order_id=order_id, location_code=p["location"], to_location=p["to_location"],
                          lines=p["lines"], status=parcel_status, carrier=None, tracking=None, created_at=now,
                          updated_at=now) for p in src["parcels"]]
    session.execute(_INSERT[Order], [_row(order)])
    session.execute(_INSERT[OrderLine], [_row(ln) for ln in lines])
    if shipments:
        session.execute(_INSERT[Shipment], [_row(sh) for sh in shipments])
    session.execute(_INSERT[OrderHistory], [{k: v for k, v in _row(h).items() if k != "id"} for h in history])
    if cart.status == "active":
        cart.status = "converted"
        carts.touch(session, cart=cart, channel=channel)  # type: ignore[arg-type]
    timeline.record_many(session, customer_id=order.customer_id, anonymous_id=order.anonymous_id, events=events,
                         channel=channel.type if channel else "web",
                         store_code=channel.code if channel and channel.type == "store" else None)
    if payment_ids and not pending:
        payments.enqueue_capture(session, list(payment_ids))
    if fulfilment == "in_store" and not pending:
        reservations.consume(session, reservation_id=checkout.reservation_id, ref=order_id)  # type: ignore[arg-type]
    if attached:
        paid_with: list[Any] | None = attached
    elif payment_ids:  # pending: the checkout's tenders, not attached yet
        paid_with = payments.find(session, ref=checkout.id)
    else:
        paid_with = []
    body = read_new(session, order, lines=lines, shipments=shipments, history=history, payments_=paid_with)
    return order, body


_INSERT = {m: insert(m.__table__) for m in (Order, OrderLine, Shipment, OrderHistory)}  # a placed order's rows
_KEYS: dict[type, tuple[str, ...]] = {}


def _row(obj: Any) -> dict[str, Any]:
    keys = _KEYS.get(type(obj))
    if keys is None:
        keys = _KEYS[type(obj)] = tuple(c.key for c in inspect(type(obj)).column_attrs)
    return {k: getattr(obj, k) for k in keys}


def read_new(session: Session, order: Order, *, lines: list[OrderLine], shipments: list[Shipment],
             history: list[OrderHistory], payments_: list[Any] | None) -> dict[str, Any]:
    """:func:`read` of an order this transaction just wrote, from what it wrote (the payments are read unless
    given)."""
    from omnijourney.orders.schemas import order_read

    known: dict[str, Any] = {"lines": sorted(lines, key=lambda ln: ln.sku),
                             "shipments": sorted(shipments, key=lambda sh: (sh.created_at, sh.id)),
                             "returns": [], "history": history}
    if payments_ is not None:
        known["payments"] = sorted(payments_, key=lambda p: (p.ref, p.position))
    return order_read(session, order, known).model_dump(mode="json")


def _secured(session: Session, order: Order, payment_ids: Sequence[str], channel_code: str) -> None:
    """The money is secured (authorised, or nothing to pay, or paid at the till later): the purchase is made, the
    capture is enqueued, and the order goes on to allocation (a counter sale is collected at once)."""
    if payment_ids:
        payments.enqueue_capture(session, list(payment_ids))
    if order.fulfilment != "reserve_in_store":
        order.payment_status = "authorised" if payment_ids else "paid"
        advance(session, order, "paid", channel_code)
        record_event(session, order, "Order Completed", channel_code)  # Segment's purchase event: the conversion
    if order.fulfilment == "in_store":
        reservations.consume(session, reservation_id=order.reservation_id, ref=order.id)  # type: ignore[arg-type]
        _ship_all(session, order, "collected")
        advance(session, order, "collected", channel_code)
        return
    advance(session, order, "allocated", channel_code)


def paid_at_till(session: Session, order: Order, payment_ids: Sequence[str], channel_code: str) -> None:
    """A reserved order was paid at its store's till (its payments authorised): attached, captured by a job, and
    the purchase made."""
    payments.attach(session, list(payment_ids), order.id)
    payments.enqueue_capture(session, list(payment_ids))
    order.payment_status, order.updated_at = "paid", utcnow()
    session.execute(insert(OrderHistory), [{"order_id": order.id, "from_status": order.status,
                                            "to_status": order.status, "channel_code": channel_code,
                                            "note": "paid at the till", "at": order.updated_at}])
    record_event(session, order, "Order Paid", channel_code)
    record_event(session, order, "Order Completed", channel_code)
    session.flush()


def _ship_all(session: Session, order: Order, status: str, location: str | None = None) -> list[Shipment]:
    now = utcnow()
    changed = []
    for sh in session.scalars(select(Shipment).where(Shipment.order_id == order.id).order_by(Shipment.id)):
        if location is None or sh.location_code == location:
            sh.status, sh.updated_at = status, now
            changed.append(sh)
    session.flush()
    return changed


# ---------------------------------------------------------------- changes

_PEOPLE = select(Order.id, Order.anonymous_id, Order.customer_id).where(Order.id == bindparam("id"))


def lock(session: Session, order_id: str) -> Order:
    """Lock an order for a change: its person first (anonymous id, customer), then its row; read as locked."""
    # the people from three columns (the row itself is read once, as locked): by id, else by number
    order = session.execute(_PEOPLE, {"id": order_id}).first() or get(session, order_id)
    if order.anonymous_id:
        locks.anonymous(session, [order.anonymous_id])
    if order.customer_id:
        locks.customer(session, order.customer_id)
    locked = locks.row(session, Order, order.id, field="order_id")
    session.info.setdefault(_LOCKED, {})[locked.id] = locked
    return locked


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _unlocked(session: Session) -> None:
    session.info.pop(_LOCKED, None)  # row locks end with the transaction


@payments.on_lock
def _lock_for_capture(session: Session, order_id: str) -> None:
    """A capture of this order's payment is about to be recorded: the order is locked first (see payment_changed)."""
    with suppress(NotFound):  # no such order (a payment's order_id always names one): nothing to follow
        lock(session, order_id)


def _active_reservation(session: Session, order: Order) -> Reservation | None:
    if not order.reservation_id:
        return None
    r = session.get(Reservation, order.reservation_id)
    return r if r is not None and r.status == "active" else None


def _new_pickup_code(session: Session) -> str:
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))
        if session.scalar(select(Order.id).where(Order.pickup_code == code)) is None:
            return code


def transition(session: Session, *, order_id: str, to: str, channel_code: str, note: str | None = None,
               location: str | None = None, pickup_code: str | None = None, carrier: str | None = None,
               tracking: str | None = None) -> Order:
    """Move an order on, by staff, a carrier or a store's till; the side effects of each state come with it:

    - ``picked``: the goods are taken off the shelf; ``shipped`` (one parcel with ``location``, or all): they leave,
      their units are sold off the ledger; the order is shipped when its last parcel left;
    - ``ready_for_pickup``: the goods wait in the pickup store; a pickup code is issued and a job releases the order
      back to stock if nobody collects it within ``PICKUP_DAYS``;
    - ``collected``: at the pickup store only (``channel_code``), with the order's pickup code;
    - ``cancelled``: see :func:`cancel`. Anything the lifecycle forbids is a 409 ``illegal_transition``.
    """
    get_channel_ok(session, channel_code)
    order = lock(session, order_id)
    if to == "cancelled":
        return cancel(session, order_id=order.id, channel_code=channel_code, reason=note)
    if to in ("partly_returned", "returned"):
        raise Invalid("returns are recorded with POST /orders/{id}/returns", field="status")
    if to == "shipped":
        return _ship(session, order, channel_code, location, carrier, tracking, note)
    lifecycle.check(order, to)
    extra: dict[str, Any] = {}
    if to == "ready_for_pickup":
        order.pickup_code = _new_pickup_code(session)
        order.pickup_deadline = utcnow() + timedelta(days=PICKUP_DAYS)
        r = _active_reservation(session, order)
        if r is not None:  # units sent from a warehouse are now on the pickup store's shelf, held there
            for place in sorted({ln.location_code for ln in reservations.lines_of(session, r.id)
                                 if ln.status == "active" and ln.location_code != order.pickup_location}):
                reservations.move(session, reservation_id=r.id, from_location=place,
                                  to_location=order.pickup_location, ref=order.id)  # type: ignore[arg-type]
        jobs.enqueue(session, RELEASE_JOB, {"id": order.id}, at=order.pickup_deadline)
        extra = {"pickup_deadline": order.pickup_deadline.isoformat()}
    elif to == "collected":
        _check_collection(session, order, channel_code, pickup_code)
        r = _active_reservation(session, order)
        if r is not None:
            reservations.consume(session, reservation_id=r.id, ref=order.id)
        _ship_all(session, order, "collected")
    elif to == "picked":
        _ship_all(session, order, "picked")
    elif to == "delivered":
        _ship_all(session, order, "delivered")
    advance(session, order, to, channel_code, note, extra)
    if to in ("delivered", "collected"):
        order.pickup_code = None if to == "collected" else order.pickup_code
    session.flush()
    return order


def get_channel_ok(session: Session, code: str) -> Channel:
    channel = session.get(Channel, code)
    if channel is None:
        raise NotFound(f"no channel {code!r}", field="channel")
    return channel


def _check_collection(session: Session, order: Order, channel_code: str, pickup_code: str | None) -> None:
    store = session.get(Location, order.pickup_location) if order.pickup_location else None
    if store is None or store.channel_code != channel_code:
        raise Conflict(f"order {order.number} is collected at {store.name if store else 'its store'}, not here",
                       field="channel", code="wrong_store")
    if order.fulfilment == "reserve_in_store" and order.payment_status != "paid":
        raise Conflict(f"order {order.number} is paid at the till before it is handed over", field="status",
                       code="unpaid")
    if not pickup_code or (pickup_code.strip().upper() != (order.pickup_code or "")):
        raise Conflict("the pickup code does not match this order", field="pickup_code", code="wrong_pickup_code")


def _ship(session: Session, order: Order, channel_code: str, location: str | None, carrier: str | None,
          tracking: str | None, note: str | None) -> Order:
    if order.fulfilment != "ship" or order.status not in ("picked", "allocated"):
        lifecycle.check(order, "shipped")
    if order.status != "picked":
        raise Conflict(f"order {order.number} is {order.status}: it is picked before it ships", field="status",
                       code="illegal_transition", details={"status": order.status,
                                                           "allowed": list(lifecycle.allowed(order.fulfilment,
                                                                                             order.status))})
    parcels = [sh for sh in session.scalars(select(Shipment).where(Shipment.order_id == order.id))
               if sh.status == "picked" and (location is None or sh.location_code == location)]
    if not parcels:
        raise Conflict(f"order {order.number} has no parcel waiting to ship" + (f" at {location}" if location else ""),
                       field="location", code="nothing_to_ship")
    r = _active_reservation(session, order)
    now = utcnow()
    for sh in parcels:
        if r is not None:
            reservations.consume(session, reservation_id=r.id, location=sh.location_code, ref=order.id)
        sh.status, sh.carrier, sh.tracking, sh.updated_at = "shipped", carrier, tracking, now
    session.flush()
    left = session.scalar(select(Shipment.id).where(Shipment.order_id == order.id, Shipment.status == "picked"))
    extra = {"parcels": [sh.location_code for sh in parcels], "carrier": carrier, "tracking": tracking}
    if left is None:
        advance(session, order, "shipped", channel_code, note, extra)
    else:  # one parcel of several: the order stays picked until its last one leaves
        record_event(session, order, "Order Shipped", channel_code, {**extra, "partial": True})
    session.flush()
    return order


def cancel(session: Session, *, order_id: str, channel_code: str, reason: str | None = None,
           event_extra: dict[str, Any] | None = None) -> Order:
    """Cancel an order before its goods left: its units go back to stock at once; its money goes back to its
    tenders by a background job (voided if only authorised, refunded if captured), which records "Order Refunded"
    for what it refunds."""
    order = lock(session, order_id)
    lifecycle.check(order, "cancelled")
    r = _active_reservation(session, order)
    if r is not None:
        reservations.release(session, reservation_id=r.id)
    _ship_all(session, order, "cancelled")
    order.pickup_code = None
    advance(session, order, "cancelled", channel_code, reason, {"reason": reason, **(event_extra or {})})
    if order.payment_status in ("pending", "authorised", "paid", "partly_refunded"):
        jobs.enqueue(session, SETTLE_JOB, {"order_id": order.id, "channel": channel_code, "reason": reason})
    session.flush()
    return order


@jobs.handler(SETTLE_JOB, external=True)
def settle_cancelled(db: Any, args: dict[str, Any]) -> None:
    """Give a cancelled order's money back: void what is only authorised, refund what was captured (a capture that
    ran before the cancellation included). Runs with no transaction open: it calls the providers."""
    with db.transaction(write=False) as session:
        ids = [p.id for p in payments.find(session, order_id=args["order_id"])]
        checkout_ids = session.scalars(select(Checkout.id).where(Checkout.order_id == args["order_id"])).all()
        for ref in checkout_ids:  # pending tenders were never attached: they carry the checkout's reference
            ids += [p.id for p in payments.find(session, ref=ref) if p.id not in ids]
    if not ids:
        return
    payments.void(db, ids)
    with db.transaction(write=False) as session:
        owed = sum((p.money(p.refundable_minor) for p in payments.find(session, order_id=args["order_id"])
                    if p.status in ("captured", "partly_refunded")), Decimal("0"))
    refunded = Decimal("0")
    if owed > 0:
        for part in payments.refund(db, amount=owed, order_id=args["order_id"], reason=args.get("reason"),
                                    reference=f"cancel:{args['order_id']}"):
            refunded += part.amount
    with db.transaction() as session:
        order = lock(session, args["order_id"])
        held = [p for p in payments.find(session, order_id=order.id) if p.status in ("authorised", "captured")]
        if refunded > 0:
            order.refunded = order.refunded + refunded
            record_event(session, order, "Order Refunded", args.get("channel"),
                         {"refund": str(refunded), "reason": args.get("reason")})
        order.payment_status = "refunded" if order.refunded > 0 else ("voided" if not held else order.payment_status)
        session.flush()


@jobs.handler(RELEASE_JOB)
def release_uncollected(session: Session, args: dict[str, Any]) -> None:
    """An order ready for pickup that nobody collected by its deadline goes back to stock and is refunded."""
    order = session.get(Order, args["id"])
    if order is None or order.status != "ready_for_pickup" or order.pickup_deadline is None \
            or order.pickup_deadline > utcnow():
        return
    cancel(session, order_id=order.id, channel_code=order.channel_code, reason="not collected by the deadline")
    record_event(session, order, "Pickup Released", order.pickup_location or order.channel_code)


# ---------------------------------------------------------------- payments that complete later (3-D Secure)

@payments.on_change
def payment_changed(session: Session, payment: Any) -> None:
    """A payment changed by itself (a webhook, a capture): its order is looked at by a job, which takes the order's
    locks in the lock module's order (a webhook holds the payment's row). A capture took the order's locks first
    (``_lock_for_capture``): an authorised order is followed at once, in the capture's transaction."""
    order_id = payment.order_id or session.scalar(select(Checkout.order_id).where(Checkout.id == payment.ref))
    held = session.info.get(_LOCKED, {}).get(order_id) if order_id is not None else None
    if held is not None and held.payment_status == "authorised":
        _paid_once_captured(session, held)
        return
    if order_id is not None and (held is not None or session.get(Order, order_id) is not None):
        jobs.enqueue(session, PAYMENT_JOB, {"order_id": order_id})  # no unique key: each change is looked at


@jobs.handler(PAYMENT_JOB)
def follow_payment(session: Session, args: dict[str, Any]) -> None:
    """A pending order whose payments are now all authorised goes on (attached, captured, allocated); one whose
    payment was declined or failed is cancelled and its units go back; an authorised order whose tenders are all
    captured is paid."""
    order = lock(session, args["order_id"])
    if order.payment_status == "authorised":  # the capture jobs ran: paid once every tender is captured
        _paid_once_captured(session, order)
        return
    if order.payment_status != "pending" or order.status != "placed":
        return
    ref = session.scalar(select(Checkout.id).where(Checkout.order_id == order.id))
    tenders = payments.find(session, ref=ref) if ref else []
    if tenders and all(p.status in ("authorised", "captured") for p in tenders):
        r = _active_reservation(session, order)
        if r is None or any(p.void_requested_at is not None for p in tenders):  # too late: units or money gone
            cancel(session, order_id=order.id, channel_code=order.channel_code,
                   reason="payment completed after the order's time ran out")
            return
        reservations.hold(session, reservation_id=r.id, ref=order.id, expires_at=None)
        ids = [p.id for p in tenders]
        payments.attach(session, ids, order.id)
        _secured(session, order, ids, order.channel_code)
    elif any(p.status in ("declined", "failed", "voided") for p in tenders):
        cancel(session, order_id=order.id, channel_code=order.channel_code, reason="payment declined")


@payments.on_refund_failed
def _refund_failed(session: Session, payment: Any, amount: Decimal, code: str | None, reason: str | None) -> None:
    """A refund of the order's tender did not reach the customer (the payment's row is locked: the order is told by
    a job, which locks it first)."""
    if payment.order_id is not None:
        jobs.enqueue(session, REFUND_FAILED_JOB, {"order_id": payment.order_id, "payment_id": payment.id,
                                                  "method": payment.method, "amount": str(amount), "code": code,
                                                  "reason": reason})


@jobs.handler(REFUND_FAILED_JOB)
def _tell_refund_failed(session: Session, args: dict[str, Any]) -> None:
    """"Refund Failed" on the customer's timeline (a journey writes to them; the desk refunds another way): the
    amount is refundable again on the tender."""
    try:
        order = lock(session, args["order_id"])
    except NotFound:  # a payment attached to no order of ours (a test's, an import's): nobody to tell
        return
    record_event(session, order, "Refund Failed", None, {
        "refund": args["amount"], "payment_id": args["payment_id"], "method": args["method"],
        "failure_code": args["code"], "failure_reason": args["reason"]})


def _paid_once_captured(session: Session, order: Order) -> None:
    """An authorised order (locked) whose tenders are all captured is paid."""
    taken = payments.find(session, order_id=order.id)
    if taken and all(p.status in ("captured", "partly_refunded", "refunded") for p in taken):
        order.payment_status, order.updated_at = "paid", utcnow()


def payments_of(session: Session, order: Order) -> list[Any]:
    """The order's tenders: attached ones, or its checkout's while a payment is pending."""
    found = payments.find(session, order_id=order.id)
    if not found:
        ref = session.scalar(select(Checkout.id).where(Checkout.order_id == order.id))
        found = payments.find(session, ref=ref) if ref else []
    return found


def history(session: Session, order_id: str) -> list[OrderHistory]:
    return list(session.scalars(select(OrderHistory).where(OrderHistory.order_id == order_id)
                                .order_by(OrderHistory.id)))


def shipments(session: Session, order_id: str) -> list[Shipment]:
    return list(session.scalars(select(Shipment).where(Shipment.order_id == order_id).order_by(Shipment.created_at,
                                                                                                  Shipment.id)))


def returns_of(session: Session, order_id: str) -> list[Return]:
    return list(session.scalars(select(Return).where(Return.order_id == order_id).order_by(Return.created_at)))


def lines(session: Session, order_id: str) -> list[OrderLine]:
    return list(session.scalars(select(OrderLine).where(OrderLine.order_id == order_id).order_by(OrderLine.sku)))


def customer_summary(session: Session, customer_id: str, *, recent: int = 5) -> dict[str, Any]:
    """A customer's orders for their 360 view: how many per channel, what they spent per currency (net of refunds),
    and the latest few, whatever channel they came from (the survivor's include merged profiles' orders)."""
    from sqlalchemy import func

    rows = session.execute(select(Order.channel_code, Order.currency, func.count(), func.sum(Order.total),
                                  func.sum(Order.refunded))
                           .where(Order.customer_id == customer_id, Order.status != "cancelled")
                           .group_by(Order.channel_code, Order.currency)).all()
    by_channel: dict[str, int] = {}
    spent: dict[str, Decimal] = {}
    for channel, currency, n, total, refunded in rows:
        by_channel[channel] = by_channel.get(channel, 0) + n
        spent[currency] = spent.get(currency, Decimal("0")) + Decimal(total or 0) - Decimal(refunded or 0)
    latest = list_orders(session, customer_id=customer_id, limit=recent).items
    from omnijourney.orders.schemas import summary

    return {"count": sum(by_channel.values()), "by_channel": by_channel,
            "spent": {c: str(v.quantize(Decimal("0.01"))) for c, v in spent.items()},
            "recent": [summary(o).model_dump(mode="json") for o in latest]}
