"""Returns in any channel, whatever channel sold the goods: bought online and brought to a store, bought in a store
and sent back by post, partly or wholly, each reason recorded.

Rules: the order's goods must have reached the customer (shipped, delivered or collected); a SKU the order never had
or units already returned are refused; the window is ``RETURN_DAYS`` after delivery or collection (shorter for
marketplaces, a product's own ``return_days`` attribute wins, ``final_sale`` products are not returned).
Resellable units go back on the receiving location's shelf, damaged ones into quarantine; the refund, the returned
lines' share of what was paid, goes back to the original tenders by a background job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney.catalog.models import Product, Variant
from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.inventory import stock
from omnijourney.inventory.models import Location
from omnijourney.orders import lifecycle
from omnijourney.orders import orders as order_service
from omnijourney.orders.models import OrderHistory, OrderLine, Return
from omnijourney.payments import service as payments

RETURN_DAYS = 30
RETURN_DAYS_BY_CHANNEL_TYPE = {"marketplace": 14}
CONDITIONS = ("resellable", "damaged")
CENT = Decimal("0.01")


def _received_at(session: Session, order_id: str) -> Any:
    """When the customer got the goods (delivered or collected; shipped if no delivery was reported)."""
    rows = dict(session.execute(select(OrderHistory.to_status, OrderHistory.at).where(
        OrderHistory.order_id == order_id, OrderHistory.to_status.in_(("delivered", "collected", "shipped")))).all())
    return rows.get("delivered") or rows.get("collected") or rows.get("shipped")


def _window_days(session: Session, sku: str, channel_type: str) -> int | None:
    """Days a SKU may come back after it was received; ``None``: never (a final sale)."""
    attrs = session.scalar(select(Product.attributes).join(Variant, Variant.product_id == Product.id)
                           .where(Variant.sku == sku)) or {}
    if attrs.get("final_sale"):
        return None
    if isinstance(attrs.get("return_days"), int):
        return attrs["return_days"]
    return RETURN_DAYS_BY_CHANNEL_TYPE.get(channel_type, RETURN_DAYS)


def _receiving(session: Session, channel_code: str, location: str | None) -> Location:
    if location is None:  # a store takes returns at its own counter
        found = session.scalar(select(Location).where(Location.channel_code == channel_code))
        if found is None:
            raise Invalid("say where the goods are received (a store or a warehouse)", field="location")
        return found
    found = stock.check_location(session, location, field="location")
    if found.type not in ("store", "warehouse"):
        raise Invalid(f"returns are received in a store or a warehouse, not {found.type} {location}", field="location")
    return found


def _not_returnable(order: Any) -> str | None:
    """Why nothing of ``order`` can come back in its state (None: its goods are with the shopper)."""
    if order.status in lifecycle.RETURNABLE:
        return None
    hint = "cancel it instead" if order.status in lifecycle.CANCELLABLE else "nothing can come back"
    return f"order {order.number} is {order.status}: {hint}"


def _outside_window(session: Session, sku: str, channel_type: str, received: Any, now: Any) -> tuple[str, str] | None:
    """(code, message) when ``sku`` cannot come back ``now``: a final sale, or its window closed."""
    days = _window_days(session, sku, channel_type)
    if days is None:
        return "final_sale", f"{sku} was a final sale: it is not taken back"
    if received is not None and now - received > timedelta(days=days):
        return ("return_window_closed",
                f"{sku}: the {days}-day return window closed on {(received + timedelta(days=days)).date()}")
    return None


def _quarantine(session: Session) -> Location:
    found = session.scalar(select(Location).where(Location.type == "quarantine", Location.active.is_(True))
                           .order_by(Location.code).limit(1))
    if found is None:
        raise Invalid("damaged goods go to a quarantine location: create one first", field="lines")
    return found


def create_return(session: Session, *, order_id: str, channel_code: str, lines: Sequence[dict[str, Any]],
                  location: str | None = None, exchange: Sequence[dict[str, Any]] = ()) -> Return:
    """Take goods back for an order in ``channel_code`` at ``location``; ``lines``: sku, quantity, reason,
    condition (resellable or damaged). Refunds the returned share to the original tenders, less what ``exchange``
    (sku, quantity: another size or colour of a returned product) is worth, sent as a new order."""
    channel = order_service.get_channel_ok(session, channel_code)
    order = order_service.lock(session, order_id)
    if (why := _not_returnable(order)) is not None:
        raise Conflict(why, field="order_id", code="not_returnable")
    if not lines:
        raise Invalid("name what comes back", field="lines")
    place = _receiving(session, channel.code, location)
    bought = {ln.sku: ln for ln in session.scalars(select(OrderLine).where(OrderLine.order_id == order.id))}
    received = _received_at(session, order.id)
    sold_in = order_service.get_channel_ok(session, order.channel_code)
    now = utcnow()
    wanted: dict[str, int] = {}
    checked = []
    for i, line in enumerate(lines):
        sku, qty = line.get("sku"), line.get("quantity", 1)
        reason, condition = (line.get("reason") or "").strip(), line.get("condition", "resellable")
        if sku not in bought:
            raise Invalid(f"{sku} was never bought in order {order.number}", field=f"lines[{i}].sku",
                          code="not_bought")
        stock.check_units(qty, f"lines[{i}].quantity")
        if not reason:
            raise Invalid("say why it comes back (too small, damaged, changed mind, ...)", field=f"lines[{i}].reason")
        if condition not in CONDITIONS:
            raise Invalid(f"condition is one of {', '.join(CONDITIONS)}", field=f"lines[{i}].condition")
        wanted[sku] = wanted.get(sku, 0) + qty
        left = bought[sku].quantity - bought[sku].returned
        if wanted[sku] > left:
            raise Conflict(f"{sku}: {bought[sku].quantity} bought, {bought[sku].returned} returned already; "
                           f"{left} can come back", field=f"lines[{i}].quantity", code="already_returned")
        if (refusal := _outside_window(session, sku, sold_in.type, received, now)) is not None:
            raise Conflict(refusal[1], field=f"lines[{i}].sku", code=refusal[0])
        checked.append({"sku": sku, "quantity": qty, "reason": reason, "condition": condition})
    refund = Decimal("0")
    for sku, qty in wanted.items():
        ln = bought[sku]
        unit = (ln.total / ln.quantity).quantize(CENT, rounding=ROUND_HALF_UP)
        # the last units returned take what is left of the line, so a line refunds exactly what it cost
        share = ln.total - unit * ln.returned if ln.returned + qty == ln.quantity else unit * qty
        refund += share
        ln.returned = ln.returned + qty
    swap = _exchange_lines(session, exchange, bought, wanted, order.channel_code)
    refund -= sum((v for _, _, v in swap), Decimal("0"))
    quarantine = _quarantine(session) if any(c["condition"] == "damaged" for c in checked) else None
    rid = new_id()
    for c in checked:
        where = quarantine.code if c["condition"] == "damaged" and quarantine else place.code
        stock.return_units(session, sku=c["sku"], location=where, quantity=c["quantity"], ref=rid,
                           reason=c["reason"], channel=channel.code)
        c["location"] = where
    ret = Return(id=rid, order_id=order.id, channel_code=channel.code, location_code=place.code, status="received",
                 lines=checked, refund_amount=refund, exchange_order_id=None, created_at=now)
    session.add(ret)
    session.flush()
    if swap:
        ret.exchange_order_id = _send_exchange(session, order, channel, place, swap, rid).id
    everything = all(ln.returned >= ln.quantity for ln in bought.values())
    extra = {"return_id": rid, "returned_at": place.code, "items": checked, "refund": str(refund)}
    order_service.advance(session, order, "returned" if everything else "partly_returned", channel.code,
                        "; ".join(f"{c['sku']}: {c['reason']}" for c in checked), extra)
    if refund > 0:
        payments.enqueue_refund(session, amount=refund, order_id=order.id, reason=f"return {rid}",
                                reference=f"return:{rid}")
        order.refunded = order.refunded + refund
        order.payment_status = "refunded" if order.refunded >= order.total else "partly_refunded"
        ret.status = "refunded"
        order_service.record_event(session, order, "Order Refunded", channel.code,
                             {"refund": str(refund), "return_id": rid, "reason": "returned"})
    session.flush()
    return ret


def _exchange_lines(session: Session, exchange: Sequence[dict[str, Any]], bought: dict[str, OrderLine],
                    returned: dict[str, int], channel_code: str) -> list[tuple[str, int, Decimal]]:
    """(sku, quantity, value) of each exchanged SKU: another variant of a returned product, worth what the returned
    unit cost; never more units of a product than come back."""
    if not exchange:
        return []
    from omnijourney.catalog.service import variants_for_skus

    wanted = {e["sku"]: e.get("quantity", 1) for e in exchange}
    info = variants_for_skus(session, [*wanted, *returned], channel_code)
    room: dict[str, list[tuple[str, int]]] = {}  # product -> returned (sku, units)
    for sku, q in returned.items():
        if sku in info:
            room.setdefault(info[sku].product_id, []).append((sku, q))
    out = []
    for i, (sku, q) in enumerate(wanted.items()):
        stock.check_units(q, f"exchange[{i}].quantity")
        if sku not in info:
            raise NotFound(f"unknown SKU {sku!r}", field=f"exchange[{i}].sku")
        pool = room.get(info[sku].product_id, [])
        if sum(n for _, n in pool) < q:
            raise Invalid(f"{sku} is not another size or colour of what comes back (or more units than come back): "
                          "buy it as a new order", field=f"exchange[{i}].sku", code="not_an_exchange")
        value, left = Decimal("0"), q
        for j, (from_sku, n) in enumerate(pool):
            take = min(n, left)
            ln = bought[from_sku]
            value += (ln.total / ln.quantity).quantize(CENT, rounding=ROUND_HALF_UP) * take
            pool[j], left = (from_sku, n - take), left - take
        out.append((sku, q, value))
    return out


def _send_exchange(session: Session, original: Any, channel: Any, place: Location,
                   swap: list[tuple[str, int, Decimal]], return_id: str) -> Any:
    """The exchanged goods as an order paid by the returned ones: taken from the shelf at a store's counter, else
    shipped home. Not a new purchase: no "Order Completed", so revenue is not counted twice."""
    from omnijourney.inventory import reservations
    from omnijourney.orders import sourcing

    at_counter = place.type == "store" and place.channel_code == channel.code
    mode = "in_store" if at_counter else "ship"
    plan = sourcing.source(session, channel_code=channel.code, lines=[(s, q) for s, q, _ in swap], fulfilment=mode,
                           near=None)
    total = sum((v for _, _, v in swap), Decimal("0"))
    quote = {"currency": original.currency, "subtotal": str(total), "discount": "0", "shipping": "0", "tax": "0",
             "total": str(total), "lines": [{"sku": s, "quantity": q, "unit_price": str((v / q).quantize(CENT)),
                                             "discount": "0", "total": str(v)} for s, q, v in swap]}
    held = reservations.reserve(session, channel_code=channel.code, lines=plan.reservation_lines(), ttl_s=None,
                                ref=return_id, field="exchange")
    order = order_service.new_order(
        session, customer_id=original.customer_id, anonymous_id=original.anonymous_id, email=original.email,
        channel_code=channel.code, cart_id=None, quote=quote, sourcing=plan.to_dict(), ship_to=original.ship_to,
        reservation_id=held.id, payment_status="paid")
    reservations.hold(session, reservation_id=held.id, ref=order.id)
    order_service.record_event(session, order, "Order Placed", channel.code,
                               {"exchange_for": original.id, "return_id": return_id})
    order_service.advance(session, order, "paid", channel.code, f"exchange for {original.number}")
    if mode == "in_store":
        reservations.consume(session, reservation_id=held.id, ref=order.id)
        order_service.advance(session, order, "collected", channel.code)
    else:
        order_service.advance(session, order, "allocated", channel.code)
    return order


def get_return(session: Session, return_id: str) -> Return:
    found = session.get(Return, return_id)
    if found is None:
        raise NotFound(f"no return {return_id!r}", field="return_id")
    return found


# ---------------------------------------------------------------- what a counter or the call center is shown

@dataclass(frozen=True, slots=True)
class ReturnableLine:
    """One line of an order as a return desk sees it: ``left`` units may come back (each refunds ``unit_refund``)
    until ``closes`` (a date; None before the goods were received), unless ``refused`` says why not; the SKUs it may
    be exchanged for (``exchange_for``: sku, title) are the product's variants sold in the desk's channel."""

    sku: str
    title: str | None
    bought: int
    returned: int
    left: int
    unit_refund: Decimal
    closes: date | None
    refused: str | None
    exchange_for: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Returnable:
    """What of ``order`` can come back in a channel, line by line; ``refused``: why nothing can (its state)."""

    order: Any
    lines: list[ReturnableLine]
    refused: str | None
    received_at: datetime | None


def returnable(session: Session, *, order_id: str, channel_code: str) -> Returnable:
    """What of the order can come back at a desk of ``channel_code``, with the rules :func:`create_return` applies
    (the same messages), so a person sees before they try what would be refused."""
    order = order_service.get(session, order_id)
    order_service.get_channel_ok(session, channel_code)
    sold_in = order_service.get_channel_ok(session, order.channel_code)
    received = _received_at(session, order.id)
    refused_order = _not_returnable(order)
    now = utcnow()
    lines = order_service.lines(session, order.id)
    options = _exchange_options(session, [ln.sku for ln in lines], channel_code)
    out = []
    for ln in lines:
        left = ln.quantity - ln.returned
        days = _window_days(session, ln.sku, sold_in.type)
        closes = (received + timedelta(days=days)).date() if received is not None and days is not None else None
        refusal = _outside_window(session, ln.sku, sold_in.type, received, now)
        why = refusal[1] if refusal else (f"all {ln.quantity} came back already" if left <= 0 else None)
        out.append(ReturnableLine(sku=ln.sku, title=ln.title, bought=ln.quantity, returned=ln.returned, left=left,
                                  unit_refund=(ln.total / ln.quantity).quantize(CENT, rounding=ROUND_HALF_UP),
                                  closes=closes, refused=why, exchange_for=options.get(ln.sku, [])))
    return Returnable(order=order, lines=out, refused=refused_order, received_at=received)


def _exchange_options(session: Session, skus: Sequence[str], channel_code: str) -> dict[str, list[tuple[str, str]]]:
    """SKU -> (sku, title) of the variants of its product that ``channel_code`` sells (the SKU itself included: a
    new one for a faulty one)."""
    from omnijourney.catalog.service import variants_for_skus

    info = variants_for_skus(session, skus, channel_code)
    products = {i.product_id for i in info.values()}
    if not products:
        return {}
    siblings = list(session.scalars(select(Variant.sku).where(Variant.product_id.in_(products),
                                                              Variant.active.is_(True)).order_by(Variant.position)))
    sold = {sku: v for sku, v in variants_for_skus(session, siblings, channel_code).items() if v.sellable}
    return {sku: [(s, sold[s].title) for s in siblings if s in sold and sold[s].product_id == i.product_id]
            for sku, i in info.items()}


@dataclass(frozen=True, slots=True)
class RefundPart:
    """The part of a return's refund on one of the order's tenders: ``status`` succeeded or failed once the provider
    answered, pending until the refund job sent it."""

    method: str
    brand: str | None
    last4: str | None
    amount: Decimal
    status: str
    message: str | None


@dataclass(frozen=True, slots=True)
class PlacedUnits:
    """Units of a return put back at ``location`` (``quarantine`` when damaged), and its on hand now."""

    sku: str
    quantity: int
    location: str
    quarantine: bool
    on_hand: int


@dataclass(frozen=True, slots=True)
class ReturnReceipt:
    """A return as its desk confirms it: the refund over the original tenders, where the units went, the exchange."""

    ret: Return
    order: Any
    refund: list[RefundPart]
    placed: list[PlacedUnits]
    exchange: Any | None


def refund_of(session: Session, return_id: str, tenders: Sequence[Any]) -> list[RefundPart]:
    """The parts of a return's refund as they stand, one per tender (``tenders``: the order's payments, for their
    brand and last digits): succeeded, pending until the job sends it, or failed with why (refused, or failed
    later at the provider): then the desk refunds it another way."""
    by_id = {p.id: p for p in tenders}
    out = []
    for part in payments.refund_parts(session, reference=f"return:{return_id}"):
        p = by_id.get(part.payment_id)
        out.append(RefundPart(method=part.method, brand=p.brand if p else None, last4=p.last4 if p else None,
                              amount=part.amount, status=part.status, message=part.message))
    return out


def receipt(session: Session, return_id: str) -> ReturnReceipt:
    """The return ``return_id`` with its refund's parts as they stand and the stock where its units went."""
    ret = get_return(session, return_id)
    order = order_service.get(session, ret.order_id)
    refund = refund_of(session, ret.id, payments.find(session, order_id=order.id))
    kinds = dict(session.execute(select(Location.code, Location.type).where(
        Location.code.in_({ln["location"] for ln in ret.lines if ln.get("location")}))).all())
    placed = [PlacedUnits(sku=ln["sku"], quantity=ln["quantity"], location=ln["location"],
                          quarantine=kinds.get(ln["location"]) == "quarantine",
                          on_hand=stock.level(session, ln["sku"], ln["location"]).on_hand)
              for ln in ret.lines if ln.get("location")]
    exchange = order_service.get(session, ret.exchange_order_id) if ret.exchange_order_id else None
    return ReturnReceipt(ret=ret, order=order, refund=refund, placed=placed, exchange=exchange)
