"""Inventory and orders: availability across locations (nearest first), the stock ledger, the order pool with its
filters, an order's page with the moves it allows as buttons, and a store's pickup queue.

Changes go through the orders domain (``orders.orders.transition``) with the same store scoping as the API: a store
associate acts in their own stores only. A refused move is shown next to the control that asked for it, with the
domain's message, and the page keeps its state; nothing typed here ends in a 500.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney.api.deps import DatabaseDep, SessionDep
from omnijourney.auth.service import Principal
from omnijourney.catalog.channels import list_channels
from omnijourney.catalog.models import Channel
from omnijourney.console.web import (
    PREFIX,
    Errors,
    form_fields,
    query,
    render,
    store_locations,
    text,
    viewer,
    whole,
)
from omnijourney.core.errors import Invalid, NotFound, OmniError
from omnijourney.inventory import availability, stock
from omnijourney.inventory.locations import list_locations
from omnijourney.inventory.models import Location
from omnijourney.orders import lifecycle
from omnijourney.orders import orders as orders_service
from omnijourney.orders.models import Order
from omnijourney.orders.schemas import order_read

router = APIRouter(prefix=PREFIX, include_in_schema=False)
StockRead = Annotated[Principal, Depends(viewer("inventory:read"))]
OrdersRead = Annotated[Principal, Depends(viewer("orders:read"))]
OrdersWrite = Annotated[Principal, Depends(viewer("orders:write"))]
Fields = Annotated[dict[str, str], Depends(form_fields)]

MOVEMENTS_PAGE = 100
ORDERS_PAGE = 50
QUEUE_LIMIT = 200
STATUSES = ("placed", "paid", "allocated", "picked", "shipped", "ready_for_pickup", "delivered", "collected",
            "cancelled", "partly_returned", "returned")
MOVES = ("picked", "shipped", "delivered", "ready_for_pickup", "collected", "cancelled")  # returns: at a till
MOVE_LABELS = {"picked": "Mark picked", "shipped": "Mark shipped", "delivered": "Mark delivered",
               "ready_for_pickup": "Ready for pickup", "collected": "Hand over (collected)",
               "cancelled": "Cancel order"}
PREPARE = ("paid", "allocated", "picked")
PICKUP_MODES = ("pickup", "reserve_in_store")


def _store_channels(session: Session, who: Principal) -> list[Channel]:
    stores = list_channels(session, type="store")
    return [c for c in stores if who.works_in(c.code)]


def _default_channel(session: Session, who: Principal) -> str | None:
    if who.stores:
        return sorted(who.stores)[0]
    codes = [c.code for c in list_channels(session)]
    return "web" if "web" in codes else (codes[0] if codes else None)


# ---------------------------------------------------------------- stock

@router.get("/inventory/availability")
def availability_page(request: Request, session: SessionDep, who: StockRead) -> Response:
    """Where a SKU is and what each channel may promise, nearest location first."""
    errors = Errors()
    channels = list_channels(session)
    sku = channel = near = None
    quantity = 1
    result = None
    status = 200
    try:
        sku = query(request, "sku", max_len=64)
        channel = query(request, "channel", max_len=64) or _default_channel(session, who)
        near = query(request, "near", max_len=64)
        quantity = whole(request.query_params.get("quantity") or "1", "quantity", high=10_000)
        origin = availability.parse_near(near)
        if sku and channel:
            result = availability.availability(session, skus=[sku], channel_code=channel, near=origin,
                                               quantity=quantity)[0]
    except OmniError as exc:
        errors.add(exc, ("sku", "channel", "near", "quantity"))
        status = exc.status
    return render(request, "availability.html", status=status, title="Availability", errors=errors, sku=sku or "",
                  channel=channel or "", near=near or "", quantity=quantity, result=result,
                  channel_options=[(c.code, f"{c.name} ({c.code})") for c in channels])


@router.get("/inventory/movements")
def movements_page(request: Request, session: SessionDep, _: StockRead) -> Response:
    """The stock ledger, newest first, a page at a time; by SKU and location."""
    errors = Errors()
    rows: list[Any] = []
    sku = location = None
    status = 200
    try:
        sku = query(request, "sku", max_len=64)
        location = query(request, "location", max_len=64)
        raw_before = request.query_params.get("before")
        before = whole(raw_before, "before", low=1, high=2**62) if raw_before else None
        rows = stock.movements(session, sku=sku, location=location, before=before, limit=MOVEMENTS_PAGE + 1)
    except OmniError as exc:
        errors.add(exc, ("sku", "location"))
        status = exc.status
    more = len(rows) > MOVEMENTS_PAGE
    rows = rows[:MOVEMENTS_PAGE]
    params = {k: v for k, v in {"sku": sku, "location": location}.items() if v}
    next_url = f"{PREFIX}/inventory/movements?{urlencode({**params, 'before': rows[-1].id})}" if more else None
    locations = list_locations(session)
    return render(request, "movements.html", status=status, title="Stock movements", errors=errors, rows=rows,
                  sku=sku or "", location=location or "", next_url=next_url,
                  location_options=[(loc.code, f"{loc.name} ({loc.code})") for loc in locations])


# ---------------------------------------------------------------- orders

@router.get("/orders")
def orders_page(request: Request, session: SessionDep, _: OrdersRead) -> Response:
    """The order pool of every channel, newest first: by channel, fulfilment and state (or a customer's)."""
    errors = Errors()
    page = orders_service.OrderPage([], None)
    status = 200
    values: dict[str, str | None] = dict.fromkeys(("channel", "fulfilment", "status", "customer_id", "cursor"))
    try:
        number = query(request, "number", max_len=64)
        if number:
            try:
                found = orders_service.get(session, number)
            except NotFound:
                raise NotFound(f"no order {number!r} (give its number or id)", field="number") from None
            return RedirectResponse(f"{PREFIX}/orders/{found.id}", status_code=303)
        for name in ("channel", "fulfilment", "status", "customer_id", "cursor"):
            values[name] = query(request, name, max_len=500 if name == "cursor" else 64)
        if values["status"] and values["status"] not in STATUSES:
            raise Invalid("choose a state from the list", field="status")
        if values["channel"] and session.get(Channel, values["channel"]) is None:
            raise Invalid(f"no channel {values['channel']!r}", field="channel")
        page = orders_service.list_orders(session, customer_id=values["customer_id"], channel_code=values["channel"],
                                          status=values["status"], fulfilment=values["fulfilment"],
                                          cursor=values["cursor"], limit=ORDERS_PAGE)
    except OmniError as exc:
        errors.add(exc, ("channel", "fulfilment", "status", "customer_id", "number"))
        status = exc.status
    params = {k: v for k, v in values.items() if v and k != "cursor"}
    next_url = f"{PREFIX}/orders?{urlencode({**params, 'cursor': page.next_cursor})}" if page.next_cursor else None
    channels = list_channels(session)
    return render(request, "orders.html", status=status, title="Orders", errors=errors, rows=page.items,
                  next_url=next_url, values={k: v or "" for k, v in values.items()},
                  channel_options=[(c.code, f"{c.name} ({c.code})") for c in channels],
                  fulfilment_options=[(f, f.replace("_", " ")) for f in lifecycle.FULFILMENTS],
                  status_options=[(s, s.replace("_", " ")) for s in STATUSES])


def _acting_channels(session: Session, who: Principal, order: Order) -> tuple[list[tuple[str, str]], str | None]:
    """Where a move may be made from (a store associate: their stores), and the likeliest one for this order."""
    channels = [c for c in list_channels(session) if who.works_in(c.code)]
    pickup_store = None
    if order.pickup_location:
        location = session.get(Location, order.pickup_location)
        pickup_store = location.channel_code if location is not None else None
    codes = [c.code for c in channels]
    default = next((c for c in (pickup_store, order.channel_code) if c in codes), codes[0] if codes else None)
    return [(c.code, f"{c.name} ({c.code})") for c in channels], default


def _order_page(request: Request, session: Session, who: Principal, order_id: str, *, errors: Errors | None = None,
                status: int = 200, sent: dict[str, str] | None = None) -> Response:
    if len(order_id) > 64:
        raise NotFound("no such order", field="order_id")
    order = orders_service.get(session, order_id)
    view = order_read(session, order)
    moves = [m for m in view.allowed if m in MOVES]
    acting, default = _acting_channels(session, who, order)
    can_move = who.allows("orders:write") and bool(acting)
    customer = None
    if order.customer_id and who.allows("customers:read"):
        from omnijourney.customers.models import Customer

        customer = session.get(Customer, order.customer_id)
    sent = sent or {}
    done = request.query_params.get("done")
    flash = f"Order {view.number} is now {done.replace('_', ' ')}." if done in MOVES else None
    return render(request, "order.html", status=status, title=f"Order {view.number}", o=view, moves=moves,
                  labels=MOVE_LABELS, acting=acting, acting_default=sent.get("channel") or default,
                  can_move=can_move, errors=errors or Errors(), sent=sent, customer=customer, flash=flash)


@router.get("/orders/{order_id}")
def order_page(order_id: str, request: Request, session: SessionDep, who: OrdersRead) -> Response:
    """An order: lines, sourcing, payments, shipments, returns, its history, and the moves it allows."""
    return _order_page(request, session, who, order_id)


def _back(value: str | None, order_id: str) -> str:
    if value and value.startswith(f"{PREFIX}/pickups") and "//" not in value and "\n" not in value:
        return value
    return f"{PREFIX}/orders/{order_id}"


_MOVE_FIELDS = ("to", "channel", "note", "pickup_code", "carrier", "tracking", "location")


@router.post("/orders/{order_id}/transitions")
def move_order(order_id: str, request: Request, fields: Fields, db: DatabaseDep, who: OrdersWrite) -> Response:
    """Move the order on (a button of its page); a refusal is shown next to the control that asked."""
    errors = Errors()
    try:
        to = fields.get("to", "")
        if to not in MOVES:
            raise Invalid("choose one of the moves the order allows", field="to")
        channel = text(fields.get("channel"), "channel", max_len=64)
        if channel is None:
            raise Invalid("choose where you act from", field="channel")
        who.check_store(channel, field="channel")
        note = text(fields.get("note"), "note", max_len=500)
        pickup_code = text(fields.get("pickup_code"), "pickup_code", max_len=16)
        carrier = text(fields.get("carrier"), "carrier", max_len=64)
        tracking = text(fields.get("tracking"), "tracking", max_len=128)
        if to == "collected" and not pickup_code:
            raise Invalid("type the pickup code the shopper shows", field="pickup_code")
        with db.transaction() as session:
            order = orders_service.get(session, order_id)
            orders_service.transition(session, order_id=order.id, to=to, channel_code=channel, note=note,
                                      pickup_code=pickup_code, carrier=carrier, tracking=tracking)
            done_id = order.id
    except OmniError as exc:
        if isinstance(exc, NotFound) and exc.field == "order_id":
            raise
        errors.add(exc, _MOVE_FIELDS)
        with db.transaction(write=False) as session:
            return _order_page(request, session, who, order_id, errors=errors, status=exc.status, sent=fields)
    back = _back(fields.get("next"), done_id)
    sep = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{sep}done={to}", status_code=303)


# ---------------------------------------------------------------- a store's pickup queue

def _queue(session: Session, locations: list[str]) -> tuple[list[Order], list[Order]]:
    if not locations:
        return [], []
    base = select(Order).where(Order.pickup_location.in_(locations), Order.fulfilment.in_(PICKUP_MODES))
    ready = list(session.scalars(base.where(Order.status == "ready_for_pickup")
                                 .order_by(Order.pickup_deadline, Order.id).limit(QUEUE_LIMIT)))
    prepare = list(session.scalars(base.where(Order.status.in_(PREPARE))
                                   .order_by(Order.placed_at, Order.id).limit(QUEUE_LIMIT)))
    return ready, prepare


def _pickups_page(request: Request, session: Session, who: Principal, store: str | None, *,
                  errors: Errors | None = None, status: int = 200, code: str = "") -> Response:
    stores = _store_channels(session, who)
    errors = errors or Errors()
    if store is None:
        store = stores[0].code if stores else None
    ready: list[Order] = []
    prepare: list[Order] = []
    if store is not None:
        if session.get(Channel, store) is None:
            errors["store"] = f"no store {store!r}"
            status = 404
        else:
            who.check_store(store, field="store")
            ready, prepare = _queue(session, store_locations(session, store))
    done = request.query_params.get("done")
    flash = {"collected": "Handed over: the order is collected.", "picked": "Marked picked.",
             "ready_for_pickup": "Ready for pickup: the shopper can come."}.get(done or "")
    return render(request, "pickups.html", status=status, title="Pickup queue", errors=errors, store=store or "",
                  store_options=[(c.code, f"{c.name} ({c.code})") for c in stores], ready=ready, prepare=prepare,
                  can_move=who.allows("orders:write") and store is not None and who.works_in(store), code=code,
                  labels=MOVE_LABELS, flash=flash,
                  here=f"{PREFIX}/pickups?{urlencode({'store': store or ''})}")


@router.get("/pickups")
def pickups_page(request: Request, session: SessionDep, who: OrdersRead) -> Response:
    """A store's pickup queue: orders waiting for their shopper, and orders to prepare for collection."""
    store = query(request, "store", max_len=64)
    return _pickups_page(request, session, who, store)


@router.post("/pickups/collect")
def collect(request: Request, fields: Fields, db: DatabaseDep, who: OrdersWrite) -> Response:
    """Hand an order over at the counter: the shopper's pickup code finds it in this store's queue."""
    errors = Errors()
    store = (fields.get("store") or "").strip()[:64] or None
    code = (fields.get("pickup_code") or "").strip().upper()[:16]
    try:
        if store is None:
            raise Invalid("choose the store", field="store")
        who.check_store(store, field="store")
        if not code:
            raise Invalid("type the pickup code the shopper shows", field="pickup_code")
        with db.transaction() as session:
            order = session.scalar(select(Order).where(Order.pickup_code == code))
            if order is None or order.pickup_location not in store_locations(session, store) \
                    or order.status != "ready_for_pickup":
                raise NotFound(f"no order waiting at {store} has the pickup code {code}", field="pickup_code")
            orders_service.transition(session, order_id=order.id, to="collected", channel_code=store,
                                      pickup_code=code)
            number = order.number
    except OmniError as exc:
        errors.add(exc, ("store", "pickup_code"))
        if errors.get("_"):  # unpaid, wrong store...: the code's field is where the associate looks
            errors["pickup_code"] = errors.pop("_")
        with db.transaction(write=False) as session:
            if exc.code == "store_not_allowed":
                raise
            return _pickups_page(request, session, who, store, errors=errors, status=exc.status, code=code)
    return RedirectResponse(f"{PREFIX}/pickups?{urlencode({'store': store, 'done': 'collected', 'n': number})}",
                            status_code=303)
