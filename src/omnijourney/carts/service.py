"""Carts that follow the customer: one cart in every channel, changed safely by many devices at once.

Concurrency: every change takes the locks of ``omnijourney.locks`` in its order: first the person the cart belongs
to (its anonymous id, then its customer: a profile merged at this moment leads to its survivor, and the job that
moves merged profiles' carts waits for this change), then the cart row (a row lock on PostgreSQL;
SQLite write transactions are serialised by ``BEGIN IMMEDIATE``), so concurrent changes queue and none is lost.
Every check that guards a change runs after the locks. The row also
carries a ``version`` (SQLAlchemy ``version_id_col``: ``UPDATE ... WHERE version = :v``) that grows by one on every
change; a client may send the version it saw (``expected_version``) and get 409 ``version_mismatch`` if the cart
changed since. Every change writes its timeline event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from omnijourney import jobs, locks
from omnijourney.carts.models import Cart, CartLine
from omnijourney.carts.quote import CartQuote, QuotedLine, quote_cart
from omnijourney.catalog import service as catalog
from omnijourney.catalog.models import Channel
from omnijourney.core.cursors import bad_cursor, decode_cursor, encode_cursor
from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.customers.hooks import KNOWN_TYPES, on_known, on_merge
from omnijourney.customers.models import Customer, Identity
from omnijourney.customers.service import survivor
from omnijourney.db import select_pairs
from omnijourney.tracking import timeline

MAX_QUANTITY = 999  # per line: more is a typo or abuse, not a shopper
MAX_LINES = 100
MAX_PAGE = 200
STATUSES = ("active", "merged", "converted")
ADOPT_JOB = "carts.adopt_if_known"


@dataclass(slots=True)
class CartView:
    """A cart, its lines in the order they were added, what the catalog says of each SKU, and its quote."""

    cart: Cart
    lines: list[CartLine]
    items: dict[str, catalog.VariantInfo]
    quote: CartQuote

    def quoted(self, sku: str) -> QuotedLine | None:
        return next((q for q in self.quote.lines if q.sku == sku), None)


# ---------------------------------------------------------------- reading

# the reads of every cart change and checkout, built once with bound parameters
_CART = select(Cart).where(Cart.id == bindparam("id")).execution_options(populate_existing=True)
_LINES = select(CartLine).where(CartLine.cart_id == bindparam("id")).order_by(CartLine.added_at, CartLine.sku)
_RESOLVED = select(Identity.customer_id).where(Identity.type == "anonymous_id", Identity.value == bindparam("anon"))


def _cart(session: Session, cart_id: str) -> Cart:
    cart = session.scalar(_CART, {"id": cart_id})
    if cart is None:
        raise NotFound(f"no cart {cart_id!r}", field="cart_id")
    return cart


def _lock(session: Session, cart_ids: list[str], *, customers: tuple[str, ...] = ()) -> dict[str, Cart]:
    """Lock carts for a change, in the lock module's order: the people first (anonymous ids, then customers, with
    ``customers`` the caller will write for), then the cart rows in id order. Returns the carts as locked."""
    carts = [_cart(session, cid) for cid in cart_ids]
    anonymous = [c.anonymous_id for c in carts if c.anonymous_id]
    if anonymous:
        locks.anonymous(session, anonymous)
        # read the owners again now: adoption by a customer cannot happen any more while we hold the anonymous lock
        carts = [_cart(session, c.id) for c in carts]
    owners = {c.customer_id for c in carts if c.customer_id}
    locks.customers(session, sorted(owners | set(customers)))
    return locks.rows(session, Cart, cart_ids)


def cart_view(session: Session, *, cart_id: str, channel_code: str | None = None) -> CartView:
    """The cart with its lines re-quoted now, in ``channel_code`` (default: where it was last touched)."""
    cart = _cart(session, cart_id)
    return _view(session, cart, channel_code or cart.channel_code)


def _view(session: Session, cart: Cart, channel_code: str, fulfilment: str | None = None) -> CartView:
    lines = list(session.scalars(_LINES, {"id": cart.id}))
    items = catalog.variants_for_skus(session, [ln.sku for ln in lines], channel_code)
    quote = quote_cart(session, currency=cart.currency, channel_code=channel_code, customer_id=cart.customer_id,
                       lines=[(ln.sku, ln.quantity) for ln in lines], items=items,
                       voucher_codes=cart.voucher_codes, fulfilment=fulfilment)
    return CartView(cart, lines, items, quote)


def list_carts(session: Session, *, customer_id: str | None = None, anonymous_id: str | None = None,
               status: str | None = "active", channel_code: str | None = None, cursor: str | None = None,
               limit: int = 50) -> tuple[list[Cart], str | None]:
    """Carts, most recently changed first, a page at a time; returns the page and the next page's cursor.

    ``customer_id`` reads through merges: the survivor's carts and those of profiles merged into it that the
    merge-follow job has not moved yet. Without an owner, every cart (a console's list).
    """
    if customer_id is not None and anonymous_id is not None:
        raise Invalid("give at most one of customer_id and anonymous_id", field="customer_id")
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)} or any, not {status!r}", field="status")
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be from 1 to {MAX_PAGE}", field="limit")
    q = select(Cart)
    if customer_id is not None:
        try:
            owner = survivor(session, customer_id).id
        except NotFound:
            raise NotFound(f"no customer {customer_id!r}", field="customer_id") from None
        q = q.where(Cart.customer_id.in_(select(Customer.id).where(
            or_(Customer.id == owner, Customer.merged_into == owner))))
    elif anonymous_id is not None:
        q = q.where(Cart.anonymous_id == anonymous_id)
    if status is not None:
        q = q.where(Cart.status == status)
    if channel_code is not None:
        q = q.where(Cart.channel_code == catalog.get_channel(session, code=channel_code, field="channel").code)
    if cursor is not None:
        tag, at, cart_id = decode_cursor(cursor, 3)
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise bad_cursor() from None
        if tag != "k1":
            raise bad_cursor()
        q = q.where(or_(Cart.updated_at < when, and_(Cart.updated_at == when, Cart.id < cart_id)))
    rows = list(session.scalars(q.order_by(Cart.updated_at.desc(), Cart.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor("k1", rows[-1].updated_at.isoformat(), rows[-1].id) if more else None


# ---------------------------------------------------------------- checks shared by every change

def _channel(session: Session, code: str) -> Channel:
    channel = catalog.get_channel(session, code=code, field="channel")
    if not channel.active:
        raise Invalid(f"channel {code!r} is not active", field="channel", code="channel_inactive")
    return channel


def _check_currency(cart: Cart, channel: Channel, currency: str | None) -> None:
    if currency is not None and currency != cart.currency:
        raise Invalid(f"the cart is in {cart.currency}, not {currency}", field="currency", code="currency_mismatch")
    if channel.currency != cart.currency:
        raise Invalid(f"channel {channel.code!r} sells in {channel.currency}, the cart is in {cart.currency}",
                      field="channel", code="currency_mismatch")


def _check_quantity(quantity: int, *, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not low <= quantity <= MAX_QUANTITY:
        raise Invalid(f"quantity must be a whole number from {low} to {MAX_QUANTITY}, not {quantity!r}",
                      field="quantity", code="bad_quantity")


def _changeable(session: Session, cart_id: str, expected_version: int | None) -> Cart:
    cart = _lock(session, [cart_id])[cart_id]
    return _check_changeable(cart, expected_version)


def _check_changeable(cart: Cart, expected_version: int | None) -> Cart:
    if cart.status != "active":
        raise Conflict(f"cart {cart.id} is {cart.status}" + (f" into {cart.merged_into}" if cart.merged_into else ""),
                       field="cart_id", code="cart_not_active", details={"merged_into": cart.merged_into})
    if expected_version is not None and expected_version != cart.version:
        raise Conflict(f"the cart changed: version {cart.version}, not {expected_version}", field="expected_version",
                       code="version_mismatch", details={"version": cart.version})
    return cart


def _sellable(session: Session, sku: str, channel: Channel) -> catalog.VariantInfo:
    info = catalog.variants_for_skus(session, [sku], channel.code).get(sku)
    if info is None:
        raise NotFound(f"unknown SKU {sku!r}", field="sku", code="unknown_sku")
    if not info.sellable:
        raise Invalid(f"SKU {sku!r} is not sold in channel {channel.code!r}", field="sku", code="not_sold_in_channel")
    return info


def _touch(cart: Cart, channel: Channel) -> None:
    # any change to the row makes SQLAlchemy bump ``version`` with UPDATE ... WHERE version = :old
    cart.channel_code = channel.code
    cart.updated_at = utcnow()


def _flush(session: Session) -> None:
    # the row lock makes this unreachable; the version check is the net under it
    try:
        session.flush()
    except StaleDataError:
        raise Conflict("the cart changed meanwhile; read it again", field="cart_id", code="version_mismatch")


def _customer_of(session: Session, cart: Cart) -> str | None:
    """The profile the event belongs to: the cart's customer, or whoever the anonymous id was resolved to
    (``timeline.record`` follows it to the survivor, under its lock)."""
    if cart.customer_id is not None or cart.anonymous_id is None:
        return cart.customer_id
    return session.scalar(_RESOLVED, {"anon": cart.anonymous_id})


def _record(session: Session, cart: Cart, channel: Channel, event: str, properties: dict[str, Any]) -> None:
    timeline.record(session, customer_id=_customer_of(session, cart), anonymous_id=cart.anonymous_id,
                    event=event, channel=channel.type, store_code=channel.code if channel.type == "store" else None,
                    properties={"cart_id": cart.id, "channel_code": channel.code, **properties})


def _product_event(session: Session, cart: Cart, channel: Channel, event: str, info: catalog.VariantInfo,
                   quantity: int) -> CartView:
    view = _view(session, cart, channel.code)
    quoted = view.quoted(info.sku)
    props: dict[str, Any] = {"product_id": info.product_id, "sku": info.sku, "name": info.title,
                             "quantity": quantity, "currency": cart.currency}
    if quoted is not None and quoted.unit_price is not None:
        props["price"] = str(quoted.unit_price)
    _record(session, cart, channel, event, props)
    return view


# ---------------------------------------------------------------- changes

def open_cart(session: Session, *, channel_code: str, customer_id: str | None = None,
              anonymous_id: str | None = None, currency: str | None = None) -> tuple[Cart, bool]:
    """The owner's active cart, created if they have none; returns (cart, created).

    The owner is a customer (merged profiles answer with their survivor) or, until they identify, an
    anonymous id. A new cart takes the channel's currency.
    """
    if customer_id is None and not anonymous_id:
        raise Invalid("a cart belongs to a customer_id or an anonymous_id", field="customer_id")
    channel = _channel(session, channel_code)
    if currency is not None and currency != channel.currency:
        raise Invalid(f"channel {channel.code!r} sells in {channel.currency}, not {currency}", field="currency",
                      code="currency_mismatch")
    # the person's lock before anything is read or written for them (a merge now leads to the survivor)
    owner = locks.customer(session, customer_id) if customer_id is not None else None
    if owner is None:
        locks.anonymous(session, [anonymous_id])  # type: ignore[list-item]
    existing = _active_cart(session, customer_id=owner, anonymous_id=anonymous_id)
    if existing is None:
        now = utcnow()
        cart = Cart(id=new_id(), customer_id=owner, anonymous_id=anonymous_id, currency=channel.currency,
                    channel_code=channel.code, status="active", voucher_codes=[], created_at=now, updated_at=now)
        try:
            with session.begin_nested():  # a savepoint: another device may open the same person's cart now
                session.add(cart)
        except IntegrityError:
            existing = _active_cart(session, customer_id=owner, anonymous_id=anonymous_id)
            if existing is None:
                raise
        else:
            if owner is None:
                # a login being resolved right now cannot see this cart before it commits: look again after
                jobs.enqueue(session, ADOPT_JOB, {"cart_id": cart.id})
            return cart, True
    if currency is not None and currency != existing.currency:
        raise Invalid(f"the active cart is in {existing.currency}, not {currency}", field="currency",
                      code="currency_mismatch")
    return existing, False


def _active_cart(session: Session, *, customer_id: str | None, anonymous_id: str | None) -> Cart | None:
    if customer_id is not None:
        return session.scalar(select(Cart).where(Cart.customer_id == customer_id, Cart.status == "active"))
    return session.scalar(select(Cart).where(Cart.anonymous_id == anonymous_id, Cart.customer_id.is_(None),
                                             Cart.status == "active"))


def add_line(session: Session, *, cart_id: str, sku: str, quantity: int, channel_code: str,
             currency: str | None = None, expected_version: int | None = None) -> CartView:
    """Add ``quantity`` of ``sku`` (summed with the line if there is one); records "Product Added"."""
    _check_quantity(quantity)
    cart = _changeable(session, cart_id, expected_version)
    channel = _channel(session, channel_code)
    _check_currency(cart, channel, currency)
    info = _sellable(session, sku, channel)
    now = utcnow()
    line = session.get(CartLine, (cart.id, sku), populate_existing=True)
    if line is None:
        count = len(session.scalars(select(CartLine.sku).where(CartLine.cart_id == cart.id)).all())
        if count >= MAX_LINES:
            raise Invalid(f"a cart holds at most {MAX_LINES} different items", field="sku", code="cart_full")
        session.add(CartLine(cart_id=cart.id, sku=sku, quantity=quantity, channel_code=channel.code,
                             added_at=now, updated_at=now))
    else:
        if line.quantity + quantity > MAX_QUANTITY:
            raise Invalid(f"{line.quantity} + {quantity} of {sku} is more than {MAX_QUANTITY}", field="quantity",
                          code="bad_quantity")
        # arithmetic in SQL: the count is what the database holds, not what this process read
        session.execute(update(CartLine).where(CartLine.cart_id == cart.id, CartLine.sku == sku)
                        .values(quantity=CartLine.quantity + quantity, channel_code=channel.code, updated_at=now)
                        .execution_options(synchronize_session=False))
        session.expire(line)
    _touch(cart, channel)
    _flush(session)
    return _product_event(session, cart, channel, "Product Added", info, quantity)


def set_quantity(session: Session, *, cart_id: str, sku: str, quantity: int, channel_code: str,
                 expected_version: int | None = None) -> CartView:
    """Set a line's quantity (0 removes it); records "Product Added" or "Product Removed" with the difference."""
    _check_quantity(quantity, allow_zero=True)
    cart = _changeable(session, cart_id, expected_version)
    channel = _channel(session, channel_code)
    _check_currency(cart, channel, None)
    line = session.get(CartLine, (cart.id, sku), populate_existing=True)
    if line is None:
        raise NotFound(f"the cart has no line for SKU {sku!r}", field="sku")
    if quantity > line.quantity:
        info = _sellable(session, sku, channel)  # more of it must be sellable here; fewer is always allowed
    else:
        info = catalog.variants_for_skus(session, [sku], channel.code)[sku]
    delta = quantity - line.quantity
    if delta == 0:
        return _view(session, cart, channel.code)
    if quantity == 0:
        session.delete(line)
    else:
        line.quantity, line.channel_code, line.updated_at = quantity, channel.code, utcnow()
    _touch(cart, channel)
    _flush(session)
    return _product_event(session, cart, channel, "Product Added" if delta > 0 else "Product Removed", info,
                          abs(delta))


def remove_line(session: Session, *, cart_id: str, sku: str, channel_code: str,
                expected_version: int | None = None) -> CartView:
    """Remove a line; records "Product Removed" with the quantity it had."""
    return set_quantity(session, cart_id=cart_id, sku=sku, quantity=0, channel_code=channel_code,
                        expected_version=expected_version)


def record_view(session: Session, *, view: CartView, channel_code: str, extra: dict[str, Any] | None = None) -> None:
    """Record "Cart Viewed" in ``channel_code`` for a cart just read (``extra``: more properties)."""
    channel = _channel(session, channel_code)
    _record(session, view.cart, channel, "Cart Viewed", {
        "currency": view.cart.currency, **(extra or {}),
        "products": [{"product_id": view.items[ln.sku].product_id if ln.sku in view.items else None,
                      "sku": ln.sku, "quantity": ln.quantity} for ln in view.lines]})


def assign(session: Session, *, cart_id: str, customer_id: str, channel_code: str) -> CartView:
    """Give an anonymous cart to the customer who just identified; returns the customer's cart.

    Merge rule: when the customer has no active cart, this cart simply becomes theirs (same id). Otherwise it is
    merged into the customer's active cart, which keeps its id and currency: for each SKU the quantities are
    summed, capped at ``MAX_QUANTITY``; SKUs only in the anonymous cart are appended in the order they were
    added (up to ``MAX_LINES`` lines; any beyond are dropped and named in the event). The anonymous cart ends
    with status ``merged`` and ``merged_into`` pointing at the customer's cart. Records "Cart Merged".
    """
    channel = _channel(session, channel_code)
    anonymous = _cart(session, cart_id).anonymous_id
    if anonymous:
        locks.anonymous(session, [anonymous])  # the lock module's order: anonymous ids before customers
    owner = locks.customer(session, customer_id)
    target = _active_cart(session, customer_id=owner, anonymous_id=None)
    locked = _lock(session, sorted({cart_id} | ({target.id} if target else set())), customers=(owner,))
    # every check after the locks: two assigns of one anonymous cart to two customers cannot both pass
    cart = locked[cart_id]
    target = _active_cart(session, customer_id=owner, anonymous_id=None)
    if target is not None and target.id not in locked:  # another device opened one meanwhile
        raise Conflict("the customer's cart changed meanwhile; retry", field="cart_id", code="version_mismatch")
    if cart.customer_id == owner and cart.status == "active":
        return _view(session, cart, channel.code)
    if cart.customer_id is not None and cart.customer_id != owner:
        raise Conflict(f"cart {cart.id} belongs to another customer", field="cart_id", code="cart_owned")
    for c in locked.values():
        _check_changeable(c, None)
    if target is None:
        cart.customer_id = owner
        _touch(cart, channel)
        _flush(session)
        return _view(session, cart, channel.code)
    moved, dropped = _merge_lines(session, source=cart, target=target)
    cart.status, cart.merged_into, cart.customer_id, cart.updated_at = "merged", target.id, owner, utcnow()
    _touch(target, channel)
    _flush(session)
    _record(session, target, channel, "Cart Merged", {"merged_cart_id": cart.id, "products": moved,
                                                      "dropped_skus": dropped})
    return _view(session, target, channel.code)


def _merge_lines(session: Session, *, source: Cart, target: Cart) -> tuple[list[dict[str, Any]], list[str]]:
    def lines(cart: Cart) -> list[CartLine]:
        return list(session.scalars(select(CartLine).where(CartLine.cart_id == cart.id)
                                    .order_by(CartLine.added_at, CartLine.sku)))

    mine = {ln.sku: ln for ln in lines(target)}
    moved: list[dict[str, Any]] = []
    dropped: list[str] = []
    now = utcnow()
    for ln in lines(source):
        kept = mine.get(ln.sku)
        if kept is not None:
            kept.quantity = min(MAX_QUANTITY, kept.quantity + ln.quantity)
            kept.updated_at = now
        elif len(mine) >= MAX_LINES:
            dropped.append(ln.sku)
            continue
        else:
            mine[ln.sku] = CartLine(cart_id=target.id, sku=ln.sku, quantity=ln.quantity,
                                    channel_code=ln.channel_code, added_at=ln.added_at, updated_at=now)
            session.add(mine[ln.sku])
        moved.append({"sku": ln.sku, "quantity": ln.quantity})
    return moved, dropped


# ---------------------------------------------------------------- for the other cart modules (handoff, vouchers)

def lock(session: Session, cart_id: str) -> Cart:
    """Lock a cart (its people, then its row) for another domain's change, whatever its status (checkout converts
    it); ``NotFound`` naming ``cart_id``."""
    return _lock(session, [cart_id])[cart_id]


class Relock(Exception):
    """The cart changed hands (a login adopted it, a merge moved it) between the read that named its people and the
    row's lock: its new person cannot be locked after its row (the lock order), so the caller's transaction rolls
    back and locks again."""


def lock_once(session: Session, cart_id: str, *, seen: Cart | None = None) -> Cart:
    """:func:`lock` in the fewest round trips, for checkout: the people named by ``seen`` (the cart as this request
    read it in an earlier transaction; else it is read now), then the row, read as locked. Raises :class:`Relock`
    when the locked row names a person that was not locked (it changed hands in between): roll back, lock again
    without ``seen``."""
    cart = seen if seen is not None else _cart(session, cart_id)
    if cart.anonymous_id:
        locks.anonymous(session, [cart.anonymous_id])
    if cart.customer_id:
        locks.customers(session, [cart.customer_id])
    row = locks.row(session, Cart, cart_id, field="cart_id")
    if row.customer_id is not None and row.customer_id not in session.info.get(locks.LOCKED, ()):
        raise Relock(f"cart {cart_id} changed hands while it was being locked")
    return row


def check_for_change(session: Session, cart: Cart, channel_code: str) -> Channel:
    """:func:`lock_for_change`'s checks of a cart locked already: active, the channel active and in its currency."""
    _check_changeable(cart, None)
    channel = _channel(session, channel_code)
    _check_currency(cart, channel, None)
    return channel


def lock_for_change(session: Session, *, cart_id: str, channel_code: str,
                    expected_version: int | None = None) -> tuple[Cart, Channel]:
    """Lock an active cart for a change made in ``channel_code`` (checked: active, same currency)."""
    cart = _changeable(session, cart_id, expected_version)
    channel = _channel(session, channel_code)
    _check_currency(cart, channel, None)
    return cart, channel


def touch(session: Session, *, cart: Cart, channel: Channel) -> None:
    """Mark a locked cart as changed in ``channel`` (bumps its version)."""
    _touch(cart, channel)
    _flush(session)


def record_event(session: Session, *, cart: Cart, channel: Channel, event: str, properties: dict[str, Any]) -> None:
    """Write a cart event on the owner's timeline (``cart_id`` and ``channel_code`` are added)."""
    _record(session, cart, channel, event, properties)


def view_of(session: Session, *, cart: Cart, channel_code: str, fulfilment: str | None = None) -> CartView:
    """The cart quoted in ``channel_code``; ``fulfilment`` (pricing's ``delivery`` or ``in_store``) quotes it for that
    mode instead of the channel's rule (checkout)."""
    return _view(session, cart, channel_code, fulfilment)


# ---------------------------------------------------------------- when identity resolution merges two profiles

@on_merge
def follow_profile_merge(session: Session, pairs: Sequence[tuple[str, str]]) -> None:
    """A person has one active cart: when profiles merge, the merged profiles' active carts are merged into the
    survivor's by the ``assign`` rule (the survivor's cart keeps its id). Runs in the merge-follow job, which holds
    the people's locks; moving every other cart to the survivor is the job's plain re-pointing (``customer_ref``)."""
    merged = [m for m, _ in pairs]
    active = list(session.scalars(select(Cart).where(Cart.customer_id.in_(merged), Cart.status == "active")))
    if not active:
        return  # most merged profiles never had a cart
    survivor_of = dict(pairs)
    by_survivor: dict[str, list[Cart]] = {}
    for cart in active:
        by_survivor.setdefault(survivor_of[cart.customer_id], []).append(cart)  # type: ignore[index]
    for survivor_id, carts in sorted(by_survivor.items()):
        target = _active_cart(session, customer_id=survivor_id, anonymous_id=None)
        ids = sorted({c.id for c in carts} | ({target.id} if target else set()))
        locked = locks.rows(session, Cart, ids)
        carts = [locked[c.id] for c in sorted(carts, key=lambda c: c.id) if locked[c.id].status == "active"]
        target = locked[target.id] if target else (carts.pop(0) if carts else None)
        for cart in carts:
            _merge_lines(session, source=cart, target=target)  # type: ignore[arg-type]
            cart.status, cart.merged_into = "merged", target.id  # type: ignore[union-attr]
            target.updated_at = cart.updated_at = utcnow()  # type: ignore[union-attr]
    _flush(session)


def _with_open_anonymous_carts(session: Session, anonymous_ids: dict[str, list[str]]) -> dict[str, list[str]]:
    """The profiles whose anonymous ids have an open anonymous cart (run while identity resolution commits)."""
    open_anonymous = select(Cart.id).where(Cart.status == "active", Cart.customer_id.is_(None),
                                           Cart.anonymous_id.is_not(None)).limit(1)
    if session.scalar(open_anonymous) is None:
        return {}  # no anonymous cart anywhere (a history import, say): nothing to send a list of ids for
    pairs = [(anon, cid) for cid, anons in anonymous_ids.items() for anon in anons]
    # one indexed probe per anonymous id (the partial unique index of active anonymous carts), in one round trip
    rows = select_pairs(session, "SELECT p.b, p.a FROM carts c JOIN p ON c.anonymous_id = p.a "
                                 "WHERE c.status = 'active' AND c.customer_id IS NULL", pairs)
    out: dict[str, list[str]] = {}
    for cid, anon in rows:
        out.setdefault(cid, []).append(anon)
    return out


@jobs.handler(ADOPT_JOB, backoff_s=1.0)
def adopt_if_known(session: Session, args: dict[str, Any]) -> None:
    """A new anonymous cart whose visitor is known is theirs: the login may have been resolved while the cart was
    being opened, and its own adoption (``adopt_anonymous_carts``) could not see the cart. An anonymous id stays
    the same device's until the channel resets it at logout (Segment's ``analytics.reset()``)."""
    cart = session.get(Cart, args["cart_id"])
    if cart is None or cart.status != "active" or cart.customer_id is not None or cart.anonymous_id is None:
        return
    owner = _customer_of(session, cart)
    if owner is None:
        return
    owner = survivor(session, owner).id
    known = session.scalar(select(Identity.type).where(Identity.customer_id == owner,
                                                       Identity.type.in_(sorted(KNOWN_TYPES))).limit(1))
    if known is not None:
        assign(session, cart_id=cart.id, customer_id=owner, channel_code=cart.channel_code)


@on_known(interested=_with_open_anonymous_carts)
def adopt_anonymous_carts(session: Session, anonymous_ids: dict[str, list[str]]) -> None:
    """A visitor who logs in, gives an email or scans a card keeps the cart they filled anonymously: their
    anonymous carts are assigned to the profile by the ``assign`` rule, in the channel the cart was last used."""
    pairs = [(anon, cid) for cid, anons in anonymous_ids.items() for anon in anons]
    rows = select_pairs(session, "SELECT c.id, c.channel_code, p.b FROM carts c JOIN p ON c.anonymous_id = p.a "
                                 "WHERE c.status = 'active' AND c.customer_id IS NULL ORDER BY c.id", pairs)
    for cart_id, channel_code, customer_id in rows:
        assign(session, cart_id=cart_id, customer_id=customer_id, channel_code=channel_code)
