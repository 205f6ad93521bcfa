"""The POS (``/pos``): a store associate's till, on the same staff session as the console.

Find a customer by loyalty card, email or phone; pull a cart by its handoff code, typed or scanned (the camera:
the browser's BarcodeDetector where it has one, else frames sent to ``POST /pos/scan``, which reads them with
zxing-cpp, a Python package: no third-party JavaScript); take payment with split tender (gift card, cash, a test
card for the rest) through the one checkout of every channel; accept a return of an order of any channel; see the
stock of the stores nearby. Everything acts in the associate's own store (a store associate's principal names it);
other roles choose a store.

Each page tracks through analytics.js with the store's POS source. A visit has an anonymous id of its own (never
the till's: one till serves many people, and identifying a shared id would merge them into one person); when the
associate finds the customer, the page identifies the visit with what found them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney.api.deps import DatabaseDep, SessionDep, SettingsDep
from omnijourney.auth.service import Principal
from omnijourney.carts import handoff
from omnijourney.carts import service as carts
from omnijourney.carts.models import Cart
from omnijourney.catalog.channels import list_channels
from omnijourney.catalog.models import Channel
from omnijourney.console.web import viewer
from omnijourney.core.errors import Forbidden, Invalid, NotFound, OmniError
from omnijourney.core.ids import new_id
from omnijourney.customers import service as customers
from omnijourney.customers.models import Customer, Identity
from omnijourney.inventory import availability
from omnijourney.orders import checkout as checkout_service
from omnijourney.orders import orders as orders_service
from omnijourney.orders import returns
from omnijourney.orders.models import Order
from omnijourney.orders.schemas import order_read
from omnijourney.shop import web
from omnijourney.shop.web import Errors

PREFIX = "/pos"
router = APIRouter(prefix=PREFIX, include_in_schema=False)
Till = Annotated[Principal, Depends(viewer("orders:write"))]
Fields = Annotated[dict[str, str], Depends(web.form_fields)]
FIND_BY = (("loyalty_card", "Loyalty card"), ("email", "Email"), ("phone", "Phone"))
CARDS = (("", "No card: cash or gift card cover it all"), ("pm_card_visa", "Card: Visa 4242 (approved)"),
         ("pm_card_mastercard", "Card: Mastercard 4444 (approved)"),
         ("pm_card_chargeDeclined", "Card: Visa 0002 (declined)"))
REASONS = ("Does not fit", "Changed my mind", "Damaged", "Not as described")
MAX_FRAME = 1600 * 1600  # grey pixels of one camera frame sent to be read
_HANDOFF_IN_LINK = re.compile(r"/handoff/([A-Za-z0-9-]{4,32})/?$")


# ---------------------------------------------------------------- the store and the frame

def _stores(session: Session, who: Principal) -> list[Channel]:
    return [c for c in list_channels(session, type="store") if who.works_in(c.code)]


def _store(session: Session, who: Principal, asked: str | None) -> Channel:
    """The store the till acts in: the one asked for if the person works there, else their first."""
    stores = _stores(session, who)
    if not stores:
        raise Forbidden("you work in no store: the till needs one", field="store", code="store_not_allowed")
    if asked:
        who.check_store(asked[:64], field="store")
        found = next((c for c in stores if c.code == asked), None)
        if found is None:
            raise NotFound(f"no store {asked[:64]!r}", field="store")
        return found
    return stores[0]


def display_name(c: Customer | None) -> str:
    """How the till names the customer: their name, else their email, else "a guest"."""
    if c is None:
        return "a guest"
    t = c.traits or {}
    name = " ".join(str(t[k]) for k in ("first_name", "last_name") if t.get(k))
    return name or str(t.get("email") or t.get("phone") or "a customer")


def _customer_traits(c: Customer | None) -> dict[str, Any]:
    if c is None:
        return {}
    return {k: c.traits[k] for k in ("email", "phone", "first_name", "last_name") if c.traits.get(k)}


def _identities(session: Session, customer_id: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for id_type, value in session.execute(select(Identity.type, Identity.value).where(
            Identity.customer_id == customer_id, Identity.type.in_(("email", "phone", "loyalty_card")))
            .order_by(Identity.first_seen)):
        out.setdefault(id_type, value)
    return out


def _render(request: Request, session: Session, template: str, *, store: Channel, who: Principal, title: str,
            page: str, visit: str, status: int = 200, events: list[tuple[str, dict[str, Any]]] | None = None,
            identify: dict[str, Any] | None = None, **context: Any) -> Response:
    track = web.tracking(request, session, kind="store", store=store.code, anonymous_id=visit,
                         page=("POS", page), events=events, identify=identify)
    staff = getattr(request.state, "console_staff", None)
    return web.render(template, status=status, title=title, store=store, store_options=_stores(session, who),
                      who_name=staff.name if staff is not None and staff.name else who.name,
                      csrf_token=getattr(request.state, "csrf_token", None) or "", tracking=track,
                      here=request.url.path, display_name=display_name, **context)


def _visit(store: Channel, about: str | None) -> str:
    """The anonymous id of a visit at the till: per customer or cart served, never one for the whole till."""
    return f"pos-{store.code}-{about or new_id()}"


def _loyalty_identify(identities: dict[str, str], traits: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"traits": traits}
    if identities.get("loyalty_card"):
        out["externalIds"] = [{"id": identities["loyalty_card"], "type": "loyalty_card", "collection": "users",
                               "encoding": "none"}]
    return out


# ---------------------------------------------------------------- the till's home: find, pull, look up

def _home(request: Request, session: Session, who: Principal, store: Channel, *, errors: Errors | None = None,
          status: int = 200, sent: dict[str, str] | None = None, matches: list[Customer] | None = None) -> Response:
    customer = None
    cart = None
    orders: list[Order] = []
    identities: dict[str, str] = {}
    wanted = request.query_params.get("customer")
    if wanted:
        try:
            customer = customers.survivor(session, wanted[:32])
        except NotFound:
            customer = None
    if customer is not None:
        identities = _identities(session, customer.id)
        found, _ = carts.list_carts(session, customer_id=customer.id, status="active", limit=1)
        cart = carts.cart_view(session, cart_id=found[0].id, channel_code=store.code) if found else None
        orders = orders_service.list_orders(session, customer_id=customer.id, limit=10).items
    identify = _loyalty_identify(identities, _customer_traits(customer)) if customer is not None else None
    return _render(request, session, "pos_home.html", store=store, who=who, title="Till", page="Till",
                   visit=_visit(store, customer.id if customer else None), status=status, identify=identify,
                   errors=errors or Errors(), sent=sent or {}, find_by=FIND_BY, customer=customer,
                   identities=identities, cart=cart, orders=orders, matches=matches or [],
                   flash=_flash(request))


def _flash(request: Request) -> str | None:
    done = request.query_params.get("done") or ""
    change = (request.query_params.get("change") or "")[:12]
    if done == "paid" and re.fullmatch(r"\d+(\.\d{1,2})?", change):
        return f"Paid. Give back {change} in change. The receipt is below."
    return {"returned": "Return accepted: the refund goes back to the original payment.",
            "paid": "Paid. The receipt is below."}.get(done)


def _total(session: Session, cart_id: str, store: Channel) -> Any:
    cart = session.get(Cart, cart_id[:32])
    if cart is None:
        raise NotFound("no such cart", field="cart_id")
    total = carts.view_of(session, cart=cart, channel_code=store.code, fulfilment="in_store").quote.total
    if total is None:
        raise Invalid("this cart has no price here", field="_")
    return total


@router.get("")
def till(request: Request, session: SessionDep, who: Till) -> Response:
    """The till: find a customer, pull a cart by its code or its QR code, look stock up, take a return."""
    store = _store(session, who, request.query_params.get("store"))
    return _home(request, session, who, store)


@router.post("/find")
def find_customer(request: Request, fields: Fields, db: DatabaseDep, settings: SettingsDep, who: Till) -> Response:
    """Find the customer at the counter by loyalty card, email or phone."""
    errors = Errors()
    with db.transaction(write=False) as session:
        store = _store(session, who, fields.get("store"))
        try:
            by = fields.get("by") or "loyalty_card"
            if by not in dict(FIND_BY):
                raise Invalid("find by loyalty card, email or phone", field="by")
            value = web.text(fields.get("value"), "value", max_len=120)
            if value is None:
                raise Invalid("type or scan what the customer shows", field="value")
            found = customers.find(session, id_type=by, value=value, settings=settings.identity)
            if not found:
                raise NotFound(f"no customer has the {dict(FIND_BY)[by].lower()} {value}", field="value")
        except OmniError as exc:
            errors.add(exc, ("by", "value"))
            return _home(request, session, who, store, errors=errors, status=exc.status, sent=fields)
        if len(found) > 1:
            return _home(request, session, who, store, sent=fields, matches=found)
    target = f"{PREFIX}?{urlencode({'store': store.code, 'customer': found[0].id})}"
    return RedirectResponse(target, status_code=303)


def _code_of(raw: str | None) -> str | None:
    """A handoff code as typed, or read from a QR code (the bare code, or a link ending in /handoff/CODE)."""
    value = (raw or "").strip()
    found = _HANDOFF_IN_LINK.search(value)
    if found:
        value = found.group(1)
    value = handoff.normalise_code(value)
    return value or None


@router.post("/pull")
def pull_cart(request: Request, fields: Fields, db: DatabaseDep, who: Till) -> Response:
    """Open a cart at this till by its handoff code (the code is used up): the sale begins."""
    errors = Errors()
    with db.transaction(write=False) as session:
        store = _store(session, who, fields.get("store"))
    try:
        code = _code_of(web.text(fields.get("code"), "code", max_len=200))
        if code is None:
            raise Invalid("type the code the customer shows, or scan its QR code", field="code")
        with db.transaction() as session:
            view = handoff.claim(session, code=code, channel_code=store.code)
            cart_id = view.cart.id
    except OmniError as exc:
        errors.add(exc, ("code",))
        with db.transaction(write=False) as session:
            return _home(request, session, who, store, errors=errors, status=exc.status, sent=fields)
    return RedirectResponse(f"{PREFIX}/sale/{cart_id}?{urlencode({'store': store.code})}", status_code=303)


@router.post("/scan")
async def scan(request: Request, who: Till) -> Response:
    """Read a QR code from one grey camera frame (``image/x-grey; width=W; height=H`` bytes, one per pixel): for
    browsers without BarcodeDetector. Answers ``{"text": ...}``, null when the frame holds no QR code."""
    kind = request.headers.get("content-type", "")
    params = dict(p.strip().split("=", 1) for p in kind.split(";")[1:] if "=" in p)
    body = await request.body()
    try:
        width, height = int(params.get("width", "0")), int(params.get("height", "0"))
    except ValueError:
        width = height = 0
    if not kind.startswith("image/x-grey") or width <= 0 or height <= 0 or width * height > MAX_FRAME \
            or len(body) != width * height:
        raise Invalid("send one grey frame: Content-Type image/x-grey; width=W; height=H and W*H bytes",
                      field="body")
    try:
        import numpy as np
        import zxingcpp
    except ImportError:
        return JSONResponse({"code": "no_decoder", "message": "zxing-cpp is not installed: type the code"},
                            status_code=501)
    image = np.frombuffer(body, dtype=np.uint8).reshape(height, width)
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    return JSONResponse({"text": found[0].text if found else None}, headers={"Cache-Control": "no-store"})


@router.post("/carts/{cart_id}/open")
def open_customer_cart(cart_id: str, fields: Fields, db: DatabaseDep, who: Till) -> Response:
    """Open the customer's own cart at the till (they are here, found by their card: no code needed)."""
    with db.transaction() as session:
        store = _store(session, who, fields.get("store"))
        cart, channel = carts.lock_for_change(session, cart_id=cart_id[:32], channel_code=store.code)
        carts.touch(session, cart=cart, channel=channel)
        view = carts.view_of(session, cart=cart, channel_code=store.code)
        carts.record_view(session, view=view, channel_code=store.code)
    return RedirectResponse(f"{PREFIX}/sale/{cart.id}?{urlencode({'store': store.code})}", status_code=303)


# ---------------------------------------------------------------- the sale and its tenders

def _sale(request: Request, session: Session, who: Principal, store: Channel, cart_id: str, *,
          errors: Errors | None = None, status: int = 200, sent: dict[str, str] | None = None) -> Response:
    cart = session.get(Cart, cart_id[:32])
    if cart is None:
        raise NotFound("no such cart", field="cart_id")
    if cart.status != "active":
        order = session.scalar(select(Order).where(Order.cart_id == cart.id))
        if order is not None:
            return RedirectResponse(f"{PREFIX}/orders/{order.id}?{urlencode({'store': store.code})}",
                                    status_code=303)
        raise NotFound("this cart is closed", field="cart_id")
    view = carts.view_of(session, cart=cart, channel_code=store.code, fulfilment="in_store")
    customer = customers.survivor(session, cart.customer_id) if cart.customer_id else None
    identities = _identities(session, customer.id) if customer else {}
    sent = dict(sent or {})
    sent.setdefault("key", new_id())
    sent.setdefault("card", "pm_card_visa")
    products = [{"sku": ln.sku, "quantity": ln.quantity} for ln in view.lines]
    events = [] if errors else [("Checkout Started", {"cart_id": cart.id, "currency": cart.currency,
                                                      "products": products,
                                                      **({"value": float(view.quote.total)}
                                                         if view.quote.total is not None else {})})]
    return _render(request, session, "pos_sale.html", store=store, who=who, title="Sale", page="Sale",
                   visit=_visit(store, cart.id), status=status, events=events,
                   identify=_loyalty_identify(identities, _customer_traits(customer)) if customer else None,
                   view=view, customer=customer, errors=errors or Errors(), sent=sent, cards=CARDS)


@router.get("/sale/{cart_id}")
def sale(cart_id: str, request: Request, session: SessionDep, who: Till) -> Response:
    """The sale: what the cart holds at this store's prices, and the tenders."""
    store = _store(session, who, request.query_params.get("store"))
    return _sale(request, session, who, store, cart_id)


@router.post("/sale/{cart_id}/pay")
def pay(cart_id: str, request: Request, fields: Fields, db: DatabaseDep, who: Till) -> Response:
    """Take the payment: a gift card and cash as typed, a test card for the rest (split tender); the goods go
    over the counter (fulfilment ``in_store``)."""
    errors = Errors()
    with db.transaction(write=False) as session:
        store = _store(session, who, fields.get("store"))
    status = 422
    try:
        tenders: list[dict[str, Any]] = []
        gift = web.text(fields.get("gift_card"), "gift_card", max_len=40)
        gift_amount = web.amount(fields.get("gift_amount"), "gift_amount")
        cash = web.amount(fields.get("cash"), "cash")
        card = fields.get("card") or ""
        if card not in dict(CARDS):
            raise Invalid("choose a card, or no card", field="card")
        if gift:
            if gift_amount is None:
                raise Invalid("how much of the gift card to use", field="gift_amount")
            tenders.append({"method": "gift_card", "code": gift, "amount": str(gift_amount)})
        elif gift_amount is not None:
            raise Invalid("type the gift card's code", field="gift_card")
        if cash is not None:
            tenders.append({"method": "cash", "amount": str(cash)})
        change = None
        if card:
            tenders.append({"method": "card", "provider": "test", "payment_method": card})
        elif not tenders:
            raise Invalid("choose how the customer pays", field="card")
        else:  # no card: the gift card and the cash must cover it all (more cash: the change is given back)
            with db.transaction(write=False) as session:
                total = _total(session, cart_id, store)
            rest = total - (gift_amount or 0)
            if cash is None and rest > 0:
                raise Invalid(f"the gift card leaves {rest} to pay: add cash or a card", field="card")
            if cash is not None and cash < rest:
                raise Invalid(f"{cash} in cash leaves {rest - cash} to pay: add a card", field="cash")
            if cash is not None and cash > rest:
                change = cash - rest
            tenders[-1].pop("amount")  # the last tender takes exactly the rest
        req = checkout_service.Request(cart_id=cart_id[:32], channel_code=store.code, fulfilment="in_store",
                                       tenders=tenders)
        answer = checkout_service.checkout(db, req, idempotency_key=f"pos:{fields.get('key', '')[:64]}")
        if answer.status == 201:
            done = {"store": store.code, "done": "paid", **({"change": str(change)} if change else {})}
            target = f"{PREFIX}/orders/{answer.body['id']}?{urlencode(done)}"
            return RedirectResponse(target, status_code=303)
        body = answer.body
        status = answer.status
        field = str(body.get("field") or "")
        position = re.match(r"payments\[(\d+)\]", field)
        name = "_"
        if position and int(position.group(1)) < len(tenders):
            name = {"gift_card": "gift_card", "cash": "cash", "card": "card"}[tenders[int(position.group(1))]["method"]]
        errors[name] = str(body.get("message") or "the payment did not go through")
    except OmniError as exc:
        errors.add(exc, ("gift_card", "gift_amount", "cash", "card"))
        if exc.field and exc.field.startswith("payments"):
            errors["_"] = exc.message
        status = exc.status
    with db.transaction(write=False) as session:
        return _sale(request, session, who, store, cart_id, errors=errors, status=status, sent=fields)


# ---------------------------------------------------------------- orders and returns

def _order_page(request: Request, session: Session, who: Principal, store: Channel, order_id: str, *,
                errors: Errors | None = None, status: int = 200) -> Response:
    try:
        order = orders_service.get(session, order_id[:64])
    except NotFound:
        raise NotFound("no order has this number", field="order_id") from None
    view = order_read(session, order)
    customer = customers.survivor(session, order.customer_id) if order.customer_id else None
    returnable = [ln for ln in view.lines if ln.quantity > ln.returned]
    return _render(request, session, "pos_order.html", store=store, who=who, title=f"Order {view.number}",
                   page="Order", visit=_visit(store, customer.id if customer else order.id), status=status,
                   o=view, customer=customer, returnable=returnable, reasons=REASONS, errors=errors or Errors(),
                   flash=_flash(request))


@router.get("/orders")
def find_order(request: Request, session: SessionDep, who: Till) -> Response:
    """An order by its number (a receipt, an email), to take a return."""
    store = _store(session, who, request.query_params.get("store"))
    number = web.text(request.query_params.get("number"), "number", max_len=64)
    errors = Errors()
    if number:
        try:
            order = orders_service.get(session, number.upper())
        except NotFound:
            errors["number"] = f"no order has the number {number}"
        else:
            return RedirectResponse(f"{PREFIX}/orders/{order.id}?{urlencode({'store': store.code})}",
                                    status_code=303)
    else:
        errors["number"] = "type the order's number"
    return _home(request, session, who, store, errors=errors, status=404 if number else 422,
                 sent={"number": number or ""})


@router.get("/orders/{order_id}")
def order(order_id: str, request: Request, session: SessionDep, who: Till) -> Response:
    """An order of any channel: the receipt, and what can still be brought back here."""
    store = _store(session, who, request.query_params.get("store"))
    return _order_page(request, session, who, store, order_id)


@router.post("/orders/{order_id}/returns")
def take_return(order_id: str, request: Request, fields: Fields, db: DatabaseDep, who: Till) -> Response:
    """Take goods of any channel's order back at this store (to the shelf, or quarantine when damaged); the refund
    goes to the original tenders."""
    errors = Errors()
    with db.transaction(write=False) as session:
        store = _store(session, who, fields.get("store"))
    try:
        lines = []
        for name, value in fields.items():
            if not name.startswith("qty-") or not value.strip() or value.strip() == "0":
                continue
            sku = name[4:][:64]
            lines.append({"sku": sku, "quantity": web.whole(value, name, low=0, high=999),
                          "reason": (web.text(fields.get("reason"), "reason", max_len=200) or REASONS[0]),
                          "condition": "damaged" if fields.get("reason") == "Damaged" else "resellable"})
        if not lines:
            raise Invalid("how many of which item come back", field="_")
        with db.transaction() as session:
            found = orders_service.get(session, order_id[:64])
            returns.create_return(session, order_id=found.id, channel_code=store.code, lines=lines)
            done_id = found.id
    except OmniError as exc:
        errors["_"] = exc.message
        with db.transaction(write=False) as session:
            return _order_page(request, session, who, store, order_id, errors=errors, status=exc.status)
    return RedirectResponse(f"{PREFIX}/orders/{done_id}?{urlencode({'store': store.code, 'done': 'returned'})}",
                            status_code=303)


# ---------------------------------------------------------------- stock nearby

@router.get("/stock")
def stock(request: Request, session: SessionDep, who: Till) -> Response:
    """Where a SKU is: this store's shelf and the stores nearby, nearest first."""
    store = _store(session, who, request.query_params.get("store"))
    errors = Errors()
    result = None
    status = 200
    sku = None
    try:
        sku = web.text(request.query_params.get("sku"), "sku", max_len=64)
        if sku:
            result = availability.availability(session, skus=[sku.upper()], channel_code=store.code)[0]
    except OmniError as exc:
        errors.add(exc, ("sku",))
        status = exc.status
    stores = [r for r in (result.locations if result else []) if r.type == "store"]
    for r in result.nearest_stores if result else []:
        if r.code not in {s.code for s in stores}:
            stores.append(r)
    stores.sort(key=lambda r: (r.distance_km is None, r.distance_km or 0.0, r.name))
    return _render(request, session, "pos_stock.html", store=store, who=who, title="Stock nearby", page="Stock",
                   visit=_visit(store, None), status=status, errors=errors, sku=sku or "", result=result,
                   stores=stores)
