"""The storefront (``/shop``, channel web) and the app view (``/app``, channel app): the same shop, two channels.

Browse by category, search, product pages with the stock of the stores near the shopper (a chosen store, or the
browser's position), a cart that follows the customer from one device to the other, a handoff code with its QR
code, checkout with home delivery or pickup in a store, paid with the test provider's cards and gift cards, and the
customer's orders with their status. Every change goes through the domains (carts, orders, payments), which write
their own events on the timeline; each page also sends what the shopper saw through analytics.js, with the
channel's own source (see ``web.tracking``).

Logging in is demo-only: a customer's email is enough (``OMNI_SHOP_DEMO_LOGIN``, which ``omni demo`` turns on),
and every login page says so. Without it the shop is for guests only.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney.api.deps import DatabaseDep, SessionDep, SettingsDep
from omnijourney.carts import handoff
from omnijourney.carts import service as carts
from omnijourney.carts.models import Cart, CartHandoff
from omnijourney.carts.quote import quote_cart
from omnijourney.catalog import service as catalog
from omnijourney.catalog.models import Category
from omnijourney.core.errors import Conflict, Forbidden, Invalid, NotFound, OmniError
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.customers import service as customers
from omnijourney.customers.models import Customer
from omnijourney.inventory import availability
from omnijourney.inventory.models import Location
from omnijourney.orders import checkout as checkout_service
from omnijourney.orders import orders as orders_service
from omnijourney.orders.models import Order
from omnijourney.orders.schemas import order_read
from omnijourney.payments import giftcards
from omnijourney.pricing.money import from_minor
from omnijourney.shop import web
from omnijourney.shop.web import APP, WEB, Channel, Errors, Shopper

PAGE = 24
TEST_CARDS = (("pm_card_visa", "Visa ending 4242 (approved)"),
              ("pm_card_mastercard", "Mastercard ending 4444 (approved)"),
              ("pm_card_threeDSecure2Required", "Visa ending 3220 (asks your bank: 3-D Secure)"),
              ("pm_card_chargeDeclined", "Visa ending 0002 (declined)"))
MODES = (("pickup", "Pick up in store (free)"), ("ship", "Deliver to my address"))
Fields = Annotated[dict[str, str], Depends(web.form_fields)]


# ---------------------------------------------------------------- reading what a page shows

@dataclass
class Card:
    """A product as a list shows it."""

    handle: str
    title: str
    brand: str | None
    price: Decimal | None
    currency: str
    sku: str | None


def _currency(session: Session, ch: Channel) -> str:
    return catalog.get_channel(session, code=ch.code).currency


def _customer(session: Session, shopper: Shopper) -> Customer | None:
    if shopper.customer_id is None:
        return None
    try:
        return customers.survivor(session, shopper.customer_id)
    except NotFound:
        return None


def _prices(session: Session, ch: Channel, skus: list[str], customer_id: str | None) -> dict[str, Decimal | None]:
    """Each SKU's price for one unit in the channel (the same engine as every channel's quote)."""
    if not skus:
        return {}
    items = catalog.variants_for_skus(session, skus, ch.code)
    quote = quote_cart(session, currency=_currency(session, ch), channel_code=ch.code, customer_id=customer_id,
                       lines=[(s, 1) for s in dict.fromkeys(skus)], items=items)
    return {q.sku: q.total for q in quote.lines}


def _cards(session: Session, ch: Channel, views: list[catalog.ProductView], customer_id: str | None) -> list[Card]:
    firsts = {v.product.id: next((x.sku for x in v.variants if x.active), None) for v in views}
    prices = _prices(session, ch, [s for s in firsts.values() if s], customer_id)
    currency = _currency(session, ch)
    return [Card(v.product.handle, v.product.title, v.product.brand, prices.get(firsts[v.product.id] or ""),
                 currency, firsts[v.product.id]) for v in views]


def _categories(session: Session) -> list[Category]:
    return [c for c in catalog.list_categories(session) if c.parent_code is None]


def _active_cart(session: Session, shopper: Shopper) -> Cart | None:
    customer = _customer(session, shopper)
    if customer is not None:
        found, _ = carts.list_carts(session, customer_id=customer.id, status="active", limit=1)
    else:
        found, _ = carts.list_carts(session, anonymous_id=shopper.anonymous_id, status="active", limit=1)
        found = [c for c in found if c.customer_id is None]
    return found[0] if found else None


def _cart_count(session: Session, shopper: Shopper) -> int:
    cart = _active_cart(session, shopper)
    if cart is None:
        return 0
    from omnijourney.carts.models import CartLine

    return sum(session.scalars(select(CartLine.quantity).where(CartLine.cart_id == cart.id)))


def _stores(session: Session) -> list[Location]:
    """Stores a shopper can choose (those that hand out pickups), by name."""
    return list(session.scalars(select(Location).where(Location.type == "store", Location.active.is_(True),
                                                       Location.pickup.is_(True)).order_by(Location.name)))


def _origin(session: Session, shopper: Shopper, near: str | None) -> tuple[tuple[float, float] | None, str]:
    """Where the shopper is: the browser's position (``near``), else their chosen store; and how we know."""
    if near:
        parsed = availability.parse_near(near)
        if parsed is not None:
            return parsed, "your position"
    if shopper.store:
        store = session.get(Location, shopper.store)
        if store is not None and store.latitude is not None and store.longitude is not None:
            return (store.latitude, store.longitude), store.name
    return None, ""


class Page:
    """Rendering for one shopper in one channel: the frame every page has (the shopper, their cart's size, the
    tracking set-up) and the cookie written back when it changed."""

    def __init__(self, request: Request, session: Session, ch: Channel, shopper: Shopper) -> None:
        self.request, self.session, self.ch, self.shopper = request, session, ch, shopper

    def render(self, template: str, *, title: str, page: tuple[str, str], status: int = 200,
               events: list[tuple[str, dict[str, Any]]] | None = None, page_properties: dict[str, Any] | None = None,
               **context: Any) -> Response:
        customer = _customer(self.session, self.shopper)
        identify = None
        if self.shopper.extra.get("identify") and customer is not None:
            traits = {k: customer.traits[k] for k in ("email", "first_name", "last_name") if customer.traits.get(k)}
            identify = {"traits": traits}
        track = web.tracking(self.request, self.session, kind=self.ch.kind, anonymous_id=self.shopper.anonymous_id,
                             page=page, events=events, identify=identify, screen=self.ch is APP,
                             page_properties=page_properties)
        answer = web.render(template, status=status, title=title, ch=self.ch, app=self.ch is APP, P=self.ch.prefix,
                            other=WEB if self.ch is APP else APP, customer=customer,
                            customer_name=_name(customer), cart_count=_cart_count(self.session, self.shopper),
                            token=web.form_token(self.request, self.shopper.anonymous_id), tracking=track,
                            demo_login=web.state(self.request).settings.demo_login, here=self.request.url.path,
                            **context)
        if self.shopper.changed or identify is not None:
            self.shopper.extra.pop("identify", None)
            web.write_shopper(self.request, answer, self.ch, self.shopper)
        return answer


def _name(customer: Customer | None) -> str:
    if customer is None:
        return ""
    t = customer.traits or {}
    name = " ".join(str(t[k]) for k in ("first_name", "last_name") if t.get(k)) or t.get("name") or t.get("email")
    return str(name or "you")


def _shopper(request: Request, ch: Channel) -> Shopper:
    shopper = web.read_shopper(request, ch)
    raw = request.cookies.get(web.COOKIE + "_id")  # set for one page after a login: send identify there
    if raw == shopper.anonymous_id:
        shopper.extra["identify"] = True
    return shopper


def _redirect(request: Request, ch: Channel, shopper: Shopper, target: str, *, identify: bool = False) -> Response:
    answer = RedirectResponse(target, status_code=303)
    web.write_shopper(request, answer, ch, shopper)
    if identify:  # the next page tells analytics.js who this is (and then forgets it)
        answer.set_cookie(web.COOKIE + "_id", shopper.anonymous_id, max_age=300, path=ch.prefix, httponly=True,
                          samesite="lax", secure=request.url.scheme == "https")
    else:
        answer.delete_cookie(web.COOKIE + "_id", path=ch.prefix)
    return answer


def _back(value: str | None, ch: Channel) -> str:
    """A page of this channel to go back to (never another site)."""
    if value and value.startswith(ch.prefix) and not value.startswith("//") and "\\" not in value \
            and "\n" not in value and "\r" not in value:
        return value
    return ch.prefix


def _cart_products(view: carts.CartView) -> list[dict[str, Any]]:
    out = []
    for ln in view.lines:
        info, quoted = view.items.get(ln.sku), view.quoted(ln.sku)
        item: dict[str, Any] = {"sku": ln.sku, "quantity": ln.quantity,
                                "product_id": info.product_id if info else None, "name": info.title if info else None}
        if quoted is not None and quoted.unit_price is not None:
            item["price"] = float(quoted.unit_price)
        out.append(item)
    return out


# ---------------------------------------------------------------- the routes, once per channel

def router_for(ch: Channel) -> APIRouter:
    """The shop's pages under ``ch.prefix``, in channel ``ch.code``."""
    router = APIRouter(prefix=ch.prefix, include_in_schema=False)

    def page(request: Request, session: Session) -> Page:
        return Page(request, session, ch, _shopper(request, ch))

    @router.get("")
    def home(request: Request, session: SessionDep) -> Response:
        """Categories, a search box and a first shelf of products."""
        p = page(request, session)
        views, _ = catalog.list_products(session, channel=ch.code, status="active", limit=12)
        return p.render("shop_home.html", title="Home", page=("Shop", "Home"), categories=_categories(session),
                        cards=_cards(session, ch, views, p.shopper.customer_id), q="")

    def _listing(request: Request, session: Session, *, category: Category | None, q: str | None) -> Response:
        p = page(request, session)
        errors = Errors()
        offset = 0
        try:
            offset = web.whole(request.query_params.get("start") or "0", "start", low=0, high=100_000)
        except Invalid as exc:
            errors.add(exc)
        views, total = catalog.list_products(session, channel=ch.code, status="active", limit=PAGE, offset=offset,
                                             category=category.code if category else None, search=q)
        cards = _cards(session, ch, views, p.shopper.customer_id)
        products = [{"product_id": v.product.id, "sku": c.sku, "name": c.title, "position": offset + i + 1}
                    for i, (v, c) in enumerate(zip(views, cards, strict=True))][:10]
        if q is not None:
            events = [("Products Searched", {"query": q, "results": total})]
            title, name = f"Search: {q}", "Search"
        else:
            assert category is not None
            events = [("Product List Viewed", {"list_id": category.code, "category": category.name,
                                               "products": products})]
            title, name = category.name, "Category"
        base = {"q": q} if q is not None else {}
        more = offset + PAGE < total
        next_url = f"{request.url.path}?{urlencode({**base, 'start': offset + PAGE})}" if more else None
        return p.render("shop_list.html", title=title, page=("Shop", name), events=events, category=category,
                        q=q or "", cards=cards, total=total, next_url=next_url, errors=errors,
                        categories=_categories(session), status=422 if errors else 200)

    @router.get("/search")
    def search(request: Request, session: SessionDep) -> Response:
        """Products whose title holds what was typed."""
        q = web.text(request.query_params.get("q"), "q", max_len=100)
        if not q:
            return RedirectResponse(ch.prefix, status_code=303)
        return _listing(request, session, category=None, q=q)

    @router.get("/c/{code}")
    def category_page(code: str, request: Request, session: SessionDep) -> Response:
        """A category's products (its sub-categories' too)."""
        category = session.get(Category, code[:64])
        if category is None:
            raise NotFound(f"no category {code[:64]!r}", field="category")
        return _listing(request, session, category=category, q=None)

    def _product_page(request: Request, session: Session, p: Page, handle: str, *, errors: Errors | None = None,
                      status: int = 200, sku: str | None = None, quantity: int = 1) -> Response:
        view = catalog.get_product_by_handle(session, handle=handle[:200])
        if view.product.status != "active" or ch.code not in view.channels:
            raise NotFound(f"no product {handle[:200]!r} in this shop", field="handle")
        variants = [v for v in view.variants if v.active]
        if not variants:
            raise NotFound(f"no product {handle[:200]!r} in this shop", field="handle")
        chosen = next((v for v in variants if v.sku == (sku or request.query_params.get("sku"))), variants[0])
        prices = _prices(session, ch, [v.sku for v in variants], p.shopper.customer_id)
        errors = errors or Errors()
        near = None
        try:
            near = web.text(request.query_params.get("near"), "near", max_len=64)
            origin, origin_label = _origin(session, p.shopper, near)
        except Invalid as exc:
            errors.add(exc, ("near",))
            origin, origin_label = _origin(session, p.shopper, None)
        stock = availability.availability(session, skus=[chosen.sku], channel_code=ch.code, near=origin)[0]
        stores = [r for r in stock.locations if r.type == "store"]
        for r in stock.nearest_stores:
            if r.code not in {s.code for s in stores}:
                stores.append(r)
        stores.sort(key=lambda r: (r.distance_km is None, r.distance_km or 0.0, r.name))
        promises = {pr.mode: pr for pr in stock.promises}
        currency = _currency(session, ch)
        price = prices.get(chosen.sku)
        event = {"product_id": view.product.id, "sku": chosen.sku, "name": view.product.title,
                 "brand": view.product.brand, "currency": currency, "url": str(request.url)}
        if price is not None:
            event["price"] = float(price)
        return p.render("shop_product.html", title=view.product.title, page=("Shop", "Product"), status=status,
                        events=[("Product Viewed", event)], product=view.product, variants=variants, chosen=chosen,
                        prices=prices, price=price, currency=currency, stores=stores[:6], promises=promises,
                        origin_label=origin_label, near=near or "", errors=errors, quantity=quantity,
                        store_choices=_stores(session), my_store=p.shopper.store or "",
                        place_names={r.code: r.name for r in stock.locations})

    @router.get("/p/{handle}")
    def product_page(handle: str, request: Request, session: SessionDep) -> Response:
        """A product: its sizes and prices, delivery and pickup promises, and the stock of the stores near you."""
        return _product_page(request, session, page(request, session), handle)

    @router.post("/store")
    def choose_store(request: Request, fields: Fields, session: SessionDep) -> Response:
        """Remember the shopper's store (stock near them, and the pickup store at checkout)."""
        shopper = _shopper(request, ch)
        web.check_form(request, shopper.anonymous_id, fields.get("token"))
        code = web.text(fields.get("store"), "store", max_len=64)
        if code is not None and session.get(Location, code) is None:
            raise NotFound(f"no store {code!r}", field="store")
        shopper.store = code
        return _redirect(request, ch, shopper, _back(fields.get("back"), ch))

    @router.post("/cart/lines")
    def add_to_cart(request: Request, fields: Fields, db: DatabaseDep) -> Response:
        """Add a product to the shopper's cart (their customer's cart once logged in: the same on every device)."""
        shopper = _shopper(request, ch)
        handle = (fields.get("handle") or "")[:200]
        sku = (fields.get("sku") or "")[:64]
        errors = Errors()
        quantity = 1
        try:
            web.check_form(request, shopper.anonymous_id, fields.get("token"))
            quantity = web.whole(fields.get("quantity") or "1", "quantity")
            if not sku:
                raise Invalid("choose a size", field="sku")
            with db.transaction() as session:
                customer = _customer(session, shopper)
                cart, _ = carts.open_cart(session, channel_code=ch.code,
                                          customer_id=customer.id if customer else None,
                                          anonymous_id=None if customer else shopper.anonymous_id)
                carts.add_line(session, cart_id=cart.id, sku=sku, quantity=quantity, channel_code=ch.code)
        except OmniError as exc:
            errors.add(exc, ("sku", "quantity"))
            with db.transaction(write=False) as session:
                return _product_page(request, session, Page(request, session, ch, shopper), handle, errors=errors,
                                     status=exc.status, sku=sku, quantity=quantity)
        return _redirect(request, ch, shopper, f"{ch.prefix}/cart?{urlencode({'added': sku})}")

    def _cart_page(request: Request, session: Session, p: Page, *, errors: Errors | None = None,
                   status: int = 200) -> Response:
        cart = _active_cart(session, p.shopper)
        view = carts.cart_view(session, cart_id=cart.id, channel_code=ch.code) if cart is not None else None
        events: list[tuple[str, dict[str, Any]]] = []
        if view is not None:
            events.append(("Cart Viewed", {"cart_id": cart.id if cart else None, "currency": view.cart.currency,
                                           "products": _cart_products(view)}))
        added = request.query_params.get("added")
        flash = None
        if view is not None and added and any(ln.sku == added for ln in view.lines):
            info = view.items.get(added)
            flash = f"Added {info.title if info else added} to your cart."
        return p.render("shop_cart.html", title="Your cart", page=("Shop", "Cart"), status=status, events=events,
                        view=view, flash=flash, errors=errors or Errors())

    @router.get("/cart")
    def cart_page(request: Request, session: SessionDep) -> Response:
        """The cart: lines, quantities, total; checkout, or hand it over to another device or a store's till."""
        return _cart_page(request, session, page(request, session))

    @router.post("/cart/lines/{sku}")
    def change_line(sku: str, request: Request, fields: Fields, db: DatabaseDep) -> Response:
        """Change a line's quantity (0 removes it)."""
        shopper = _shopper(request, ch)
        errors = Errors()
        try:
            web.check_form(request, shopper.anonymous_id, fields.get("token"))
            quantity = web.whole(fields.get("quantity"), "quantity", low=0)
            with db.transaction() as session:
                cart = _active_cart(session, shopper)
                if cart is None:
                    raise NotFound("your cart is empty", field="_")
                carts.set_quantity(session, cart_id=cart.id, sku=sku[:64], quantity=quantity, channel_code=ch.code)
        except OmniError as exc:
            errors[f"qty-{sku[:64]}" if exc.field == "quantity" else "_"] = exc.message
            with db.transaction(write=False) as session:
                return _cart_page(request, session, Page(request, session, ch, shopper), errors=errors,
                                  status=exc.status)
        return _redirect(request, ch, shopper, f"{ch.prefix}/cart")

    @router.post("/cart/handoff")
    def hand_over(request: Request, fields: Fields, db: DatabaseDep) -> Response:
        """A short code and its QR code that open this cart on another device or at a store's till."""
        shopper = _shopper(request, ch)
        web.check_form(request, shopper.anonymous_id, fields.get("token"))
        with db.transaction() as session:
            cart = _active_cart(session, shopper)
            if cart is None:
                raise NotFound("your cart is empty: nothing to hand over", field="_")
            row = handoff.create_handoff(session, cart_id=cart.id, channel_code=ch.code)
            locked, channel = carts.lock_for_change(session, cart_id=cart.id, channel_code=ch.code)
            carts.record_event(session, cart=locked, channel=channel, event="Cart Handed Off",
                               properties={"handoff_code": row.code, "expires_at": row.expires_at.isoformat()})
            code = row.code
        return _redirect(request, ch, shopper, f"{ch.prefix}/cart/handoff/{code}")

    @router.get("/cart/handoff/{code}")
    def handoff_page(code: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
        """The code, large, and its QR code: a till scans it, another device types it."""
        p = page(request, session)
        row = session.get(CartHandoff, handoff.normalise_code(code[:32]))
        cart = _active_cart(session, p.shopper)
        if row is None or cart is None or row.cart_id != cart.id:
            raise NotFound("no handoff code of your cart has this value", field="code")
        target = handoff.link(row.code, settings.public_url)
        from markupsafe import Markup

        svg = Markup(handoff.qr_svg(target).decode())
        view = carts.cart_view(session, cart_id=cart.id, channel_code=ch.code)
        return p.render("shop_handoff.html", title="Hand over your cart", page=("Shop", "Cart handoff"),
                        code=row.code, svg=svg, expires_at=row.expires_at, claimed=row.claimed_at is not None,
                        expired=row.expires_at <= utcnow(), view=view)

    def _checkout_page(request: Request, session: Session, p: Page, *, errors: Errors | None = None,
                       status: int = 200, sent: dict[str, str] | None = None) -> Response:
        cart = _active_cart(session, p.shopper)
        if cart is None:
            return RedirectResponse(f"{ch.prefix}/cart", status_code=303)
        view = carts.cart_view(session, cart_id=cart.id, channel_code=ch.code)
        if not view.lines:
            return RedirectResponse(f"{ch.prefix}/cart", status_code=303)
        sent = dict(sent or {})
        sent.setdefault("mode", "pickup")
        sent.setdefault("store", p.shopper.store or "")
        sent.setdefault("card", "pm_card_visa")
        sent.setdefault("key", new_id())
        customer = _customer(session, p.shopper)
        sent.setdefault("email", str((customer.traits or {}).get("email", "")) if customer else "")
        events = [] if errors else [("Checkout Started", {
            "cart_id": cart.id, "currency": view.cart.currency, "products": _cart_products(view),
            **({"value": float(view.quote.total)} if view.quote.total is not None else {})})]
        return p.render("shop_checkout.html", title="Checkout", page=("Shop", "Checkout"), status=status,
                        events=events, view=view, errors=errors or Errors(), sent=sent, modes=MODES,
                        cards=TEST_CARDS, store_choices=_stores(session))

    @router.get("/checkout")
    def checkout_page(request: Request, session: SessionDep) -> Response:
        """How to get the goods (pickup in a store, or delivery) and how to pay (a test card, a gift card)."""
        return _checkout_page(request, session, page(request, session))

    @router.post("/checkout")
    def place_order(request: Request, fields: Fields, db: DatabaseDep) -> Response:
        """Place the order through the one checkout every channel uses (the form's key makes a double click one
        order)."""
        shopper = _shopper(request, ch)
        errors = Errors()
        try:
            web.check_form(request, shopper.anonymous_id, fields.get("token"))
            req = _checkout_request(db, ch, shopper, fields)
            answer = checkout_service.checkout(db, req, idempotency_key=f"shop:{fields.get('key', '')[:64]}")
            if answer.status in (201, 202):
                order_id = answer.body["id"]
                target = f"{ch.prefix}/orders/{order_id}?{urlencode({'placed': 1})}"
                if answer.status == 202:
                    target = f"{ch.prefix}/orders/{order_id}?{urlencode({'placed': 1, 'bank': 1})}"
                return _redirect(request, ch, shopper, target)
            body = answer.body
            field = str(body.get("field") or "_")
            message = str(body.get("message") or "the order could not be placed")
            if field.startswith("payments"):
                field = "card"
            elif body.get("code") == "out_of_stock":
                field, message = "_", f"Sorry, not enough left: {message}. Try another store or delivery."
            errors[field if field in ("card", "gift_card", "store", "email") else "_"] = message
            status = answer.status
        except OmniError as exc:
            errors.add(exc, ("mode", "store", "card", "gift_card", "gift_amount", "email", "name", "street", "city",
                             "postcode"))
            status = exc.status
        with db.transaction(write=False) as session:
            return _checkout_page(request, session, Page(request, session, ch, shopper), errors=errors,
                                  status=status, sent=fields)

    @router.get("/orders")
    def orders_page(request: Request, session: SessionDep) -> Response:
        """The logged-in customer's orders in every channel, newest first."""
        p = page(request, session)
        customer = _customer(session, p.shopper)
        rows = orders_service.list_orders(session, customer_id=customer.id, limit=20).items if customer else []
        return p.render("shop_orders.html", title="Your orders", page=("Shop", "Orders"), rows=rows)

    @router.get("/orders/{order_id}")
    def order_page(order_id: str, request: Request, session: SessionDep) -> Response:
        """One of the shopper's orders: its status, how it comes, what was paid (and the pickup code when ready)."""
        p = page(request, session)
        order = _own_order(session, p.shopper, order_id)
        view = order_read(session, order)
        bank = None
        if request.query_params.get("bank") and view.payment_status == "pending":
            bank = next((pay.next_action_url for pay in orders_service.payments_of(session, order)
                         if pay.next_action_url), None)
        return p.render("shop_order.html", title=f"Order {view.number}", page=("Shop", "Order"), o=view,
                        placed=bool(request.query_params.get("placed")), bank=bank)

    @router.get("/login")
    def login_page(request: Request, session: SessionDep) -> Response:
        """Log in as a demo customer: the email alone (demo only, and the page says so)."""
        p = page(request, session)
        return p.render("shop_login.html", title="Log in", page=("Shop", "Login"), errors=Errors(), email="",
                        back=_back(request.query_params.get("back"), ch))

    @router.post("/login")
    def login(request: Request, fields: Fields, db: DatabaseDep, settings: SettingsDep) -> Response:
        """Find the customer by email (a new email becomes a new customer), give them this device's cart, and let
        the next page identify them to analytics.js."""
        shopper = _shopper(request, ch)
        errors = Errors()
        email = (fields.get("email") or "").strip()[:320]
        back = _back(fields.get("back"), ch)
        try:
            web.check_form(request, shopper.anonymous_id, fields.get("token"))
            if not web.state(request).settings.demo_login:
                raise Forbidden("logging in by email alone is for the demo only, and it is off on this server "
                                "(OMNI_SHOP_DEMO_LOGIN)", field="email", code="demo_login_off")
            if not email:
                raise Invalid("give your email", field="email")
            customer_id = _log_in(db, settings, ch, shopper, email)
        except OmniError as exc:
            errors.add(exc, ("email",))
            with db.transaction(write=False) as session:
                return Page(request, session, ch, shopper).render(
                    "shop_login.html", title="Log in", page=("Shop", "Login"), status=exc.status, errors=errors,
                    email=email, back=back)
        shopper.customer_id = customer_id
        return _redirect(request, ch, shopper, back, identify=True)

    @router.post("/logout")
    def logout(request: Request, fields: Fields) -> Response:
        """Forget the customer on this device (a new anonymous id, as analytics.js's reset does)."""
        shopper = _shopper(request, ch)
        web.check_form(request, shopper.anonymous_id, fields.get("token"))
        fresh = Shopper(anonymous_id=f"{ch.code}-{new_id()}", store=shopper.store)
        return _redirect(request, ch, fresh, ch.prefix)

    return router


def _own_order(session: Session, shopper: Shopper, order_id: str) -> Order:
    """The order if it is this shopper's (their customer's, or placed on this device); 404 otherwise."""
    order = session.get(Order, order_id[:32])
    customer = _customer(session, shopper)
    mine = order is not None and (
        (order.anonymous_id is not None and order.anonymous_id == shopper.anonymous_id)
        or (customer is not None and order.customer_id is not None
            and customers.survivor(session, order.customer_id).id == customer.id))
    if order is None or not mine:
        raise NotFound("no order of yours has this number", field="order_id")
    return order


def _log_in(db: Any, settings: Any, ch: Channel, shopper: Shopper, email: str) -> str:
    """The customer of ``email`` (created through the channel's source when new); this device's anonymous cart
    becomes theirs (merged into theirs when they have one)."""
    from omnijourney.customers.identifiers import normalise_email

    if normalise_email(email) is None:
        raise Invalid("this is not an email address", field="email")
    with db.transaction() as session:
        found = customers.find(session, id_type="email", value=email, settings=settings.identity)
        if not found:
            _identify_new(session, settings, ch, shopper, email)
            found = customers.find(session, id_type="email", value=email, settings=settings.identity)
        if not found:
            raise NotFound("no customer has this email", field="email")
        customer_id = found[0].id
        cart = _active_cart(session, Shopper(anonymous_id=shopper.anonymous_id))
        if cart is not None:
            carts.assign(session, cart_id=cart.id, customer_id=customer_id, channel_code=ch.code)
    return customer_id


def _identify_new(session: Session, settings: Any, ch: Channel, shopper: Shopper, email: str) -> None:
    """A new customer signs up: the shop's server tells the tracking API who this device is, as a shop's backend
    does when an account is made (the page's analytics.js identifies them again, which changes nothing)."""
    from omnijourney.tracking.messages import Message
    from omnijourney.tracking.service import ingest

    source = web.source_for(session, ch.kind)
    if source is None:
        raise NotFound("no customer has this email (and no source to sign a new one up)", field="email")
    now = utcnow()
    ingest(session, settings=settings.identity, messages=[Message(
        message_id=new_id(), type="identify", channel=source.channel, timestamp=now, received_at=now,
        anonymous_id=shopper.anonymous_id, traits={"email": email}, source_id=source.id, source_name=source.name,
        context={"library": {"name": "omnijourney-shop", "version": "1"}})])


def _checkout_request(db: Any, ch: Channel, shopper: Shopper, fields: dict[str, str]) -> checkout_service.Request:
    """The checkout request the form describes; ``Invalid`` naming the field that is wrong."""
    mode = fields.get("mode") or ""
    if mode not in dict(MODES):
        raise Invalid("choose pickup in a store or delivery", field="mode")
    card = fields.get("card") or ""
    if card not in dict(TEST_CARDS):
        raise Invalid("choose one of the test cards", field="card")
    gift = web.text(fields.get("gift_card"), "gift_card", max_len=40)
    gift_amount = web.amount(fields.get("gift_amount"), "gift_amount")
    email = web.text(fields.get("email"), "email", max_len=320)
    with db.transaction(write=False) as session:
        cart = _active_cart(session, shopper)
        if cart is None:
            raise Conflict("your cart is empty", field="_", code="empty_cart")
        customer = _customer(session, shopper)
        if customer is None and not email:
            raise Invalid("give your email: the order's messages go there", field="email")
        location = ship_to = None
        if mode == "pickup":
            location = web.text(fields.get("store"), "store", max_len=64)
            if location is None:
                raise Invalid("choose the store where you collect it", field="store")
            if session.get(Location, location) is None:
                raise NotFound(f"no store {location!r}", field="store")
        else:
            ship_to = {}
            for name in ("name", "street", "postcode", "city"):
                value = web.text(fields.get(name), name, max_len=120)
                if value is None:
                    raise Invalid("needed for the delivery", field=name)
                ship_to[name] = value
        view = carts.view_of(session, cart=cart, channel_code=ch.code,
                             fulfilment="delivery" if mode == "ship" else "in_store")
        total = view.quote.total
        tenders: list[dict[str, Any]] = []
        if gift:
            try:
                gc = giftcards.get(session, gift)
            except NotFound:
                raise NotFound("no gift card has this code", field="gift_card") from None
            balance = from_minor(gc.balance_minor, gc.currency)
            use = gift_amount or (min(balance, total) if total is not None else balance)
            if use > balance:
                raise Invalid(f"this gift card holds {balance} {gc.currency}", field="gift_amount")
            tenders.append({"method": "gift_card", "code": gc.code, "amount": str(use)})
            if total is not None and use >= total:
                tenders[-1].pop("amount")
                card = ""
        if card:
            tenders.append({"method": "card", "provider": "test", "payment_method": card})
    req = checkout_service.Request(
        cart_id=cart.id, channel_code=ch.code, fulfilment=mode, location=location, ship_to=ship_to, tenders=tenders,
        customer_id=customer.id if customer else None, email=None if customer else email)
    return req


ROUTERS = (router_for(WEB), router_for(APP))
