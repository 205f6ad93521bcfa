"""Carts routes under ``/api/v1/carts`` (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from omnijourney.api.deps import SessionDep, SettingsDep, require
from omnijourney.api.idempotency import IdempotencyDep
from omnijourney.auth.service import Principal
from omnijourney.carts import handoff, service, vouchers
from omnijourney.carts.models import Cart
from omnijourney.carts.schemas import (
    CartAssign,
    CartCreate,
    CartLineCreate,
    CartLineRead,
    CartLineUpdate,
    CartPage,
    CartRead,
    CartSummary,
    HandoffClaim,
    HandoffCreate,
    HandoffRead,
    VoucherCreate,
)

router = APIRouter(prefix="/carts", tags=["carts"])
CanRead = Annotated[Principal, Depends(require("carts:read"))]
CanWrite = Annotated[Principal, Depends(require("carts:write"))]


def _read(view: service.CartView) -> CartRead:
    c, q = view.cart, view.quote
    quoted = {ql.sku: ql for ql in q.lines}
    lines = []
    for ln in view.lines:
        info, ql = view.items.get(ln.sku), quoted.get(ln.sku)
        lines.append(CartLineRead(
            sku=ln.sku, product_id=info.product_id if info else None, title=info.title if info else None,
            quantity=ln.quantity, channel=ln.channel_code, sellable=bool(info and info.sellable),
            unit_price=ql.unit_price if ql else None, subtotal=ql.subtotal if ql else None,
            discount=ql.discount if ql else None, total=ql.total if ql else None,
            promotions=ql.promotions if ql else [], problem=ql.problem if ql else None, **(ql.terms() if ql else {})))
    return CartRead(id=c.id, customer_id=c.customer_id, anonymous_id=c.anonymous_id, status=c.status,
                    currency=c.currency, channel=c.channel_code, merged_into=c.merged_into, version=c.version,
                    lines=lines, priced=q.priced, subtotal=q.subtotal, discount=q.discount, shipping=q.shipping,
                    tax=q.tax, total=q.total, promotions=q.promotions, voucher_codes=list(c.voucher_codes),
                    vouchers=q.vouchers, problems=q.problems, **q.terms(),
                    created_at=c.created_at, updated_at=c.updated_at)


def _summary(c: Cart) -> CartSummary:
    return CartSummary(id=c.id, customer_id=c.customer_id, anonymous_id=c.anonymous_id, status=c.status,
                       currency=c.currency, channel=c.channel_code, merged_into=c.merged_into, version=c.version,
                       created_at=c.created_at, updated_at=c.updated_at)


@router.post("", response_model=CartRead, status_code=201,
             responses={200: {"description": "the owner's active cart existed already"}})
def open_cart(body: CartCreate, session: SessionDep, response: Response, idem: IdempotencyDep,
              _: CanWrite) -> CartRead:
    """The customer's (or anonymous id's) active cart: 201 when created now, 200 when it existed."""
    cart, created = service.open_cart(session, channel_code=body.channel, customer_id=body.customer_id,
                                      anonymous_id=body.anonymous_id, currency=body.currency)
    if not created:
        response.status_code = 200
    return idem.done(_read(service.cart_view(session, cart_id=cart.id, channel_code=body.channel)),
                     response.status_code or 201)


@router.get("", response_model=CartPage)
def list_carts(session: SessionDep, _: CanRead, customer_id: str | None = None, anonymous_id: str | None = None,
               status: Annotated[str, Query(description="active (default), merged, converted, any")] = "active",
               channel: Annotated[str | None, Query(description="last changed in this channel (code)")] = None,
               cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
               limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50) -> CartPage:
    """Carts, most recently changed first: a customer's (through profile merges), an anonymous id's, or all.
    404 for an unknown customer or channel."""
    carts, next_cursor = service.list_carts(session, customer_id=customer_id, anonymous_id=anonymous_id,
                                            status=None if status == "any" else status, channel_code=channel,
                                            cursor=cursor, limit=limit)
    return CartPage(items=[_summary(c) for c in carts], next_cursor=next_cursor)


@router.get("/handoff/{code}.svg", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {}}}})
def handoff_svg(code: str, session: SessionDep, settings: SettingsDep, _: CanRead) -> Response:
    row = handoff.valid_handoff(session, code=code)
    return Response(handoff.qr_svg(handoff.link(row.code, settings.public_url)), media_type="image/svg+xml")


@router.get("/handoff/{code}.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def handoff_png(code: str, session: SessionDep, settings: SettingsDep, _: CanRead) -> Response:
    row = handoff.valid_handoff(session, code=code)
    return Response(handoff.qr_png(handoff.link(row.code, settings.public_url)), media_type="image/png")


@router.post("/handoff/{code}/claim", response_model=CartRead)
def claim_handoff(code: str, body: HandoffClaim, session: SessionDep, _: CanWrite) -> CartRead:
    """Open the handed-off cart in this channel; the code is used up (409 handoff_claimed, 410 handoff_expired)."""
    return _read(handoff.claim(session, code=code, channel_code=body.channel))


@router.get("/{cart_id}", response_model=CartRead)
def get_cart(cart_id: str, session: SessionDep, _: CanRead,
             channel: Annotated[str | None, Query(description="quote it as this channel would (default: the "
                                                              "channel it was last changed in)")] = None,
             ) -> CartRead:
    """The cart re-quoted now. Reading is not customer activity: nothing is written on the timeline (a channel
    that shows the cart to its customer sends "Cart Viewed" through the tracking API, as any Segment source)."""
    return _read(service.cart_view(session, cart_id=cart_id, channel_code=channel))


@router.post("/{cart_id}/lines", response_model=CartRead)
def add_line(cart_id: str, body: CartLineCreate, session: SessionDep, idem: IdempotencyDep,
             _: CanWrite) -> CartRead:
    """Add a quantity of a SKU in a channel (summed with an existing line). Send an ``Idempotency-Key`` to make
    a retry safe: without one, a retried add adds again."""
    return idem.done(_read(service.add_line(session, cart_id=cart_id, sku=body.sku, quantity=body.quantity,
                                  channel_code=body.channel, currency=body.currency,
                                  expected_version=body.expected_version)))


@router.patch("/{cart_id}/lines/{sku}", response_model=CartRead)
def set_quantity(cart_id: str, sku: str, body: CartLineUpdate, session: SessionDep, idem: IdempotencyDep,
                 _: CanWrite) -> CartRead:
    return idem.done(_read(service.set_quantity(session, cart_id=cart_id, sku=sku, quantity=body.quantity,
                                                channel_code=body.channel, expected_version=body.expected_version)))


@router.delete("/{cart_id}/lines/{sku}", response_model=CartRead)
def remove_line(cart_id: str, sku: str, channel: str, session: SessionDep, idem: IdempotencyDep, _: CanWrite,
                expected_version: int | None = None) -> CartRead:
    return idem.done(_read(service.remove_line(session, cart_id=cart_id, sku=sku, channel_code=channel,
                                               expected_version=expected_version)))


@router.post("/{cart_id}/vouchers", response_model=CartRead)
def add_voucher(cart_id: str, body: VoucherCreate, session: SessionDep, idem: IdempotencyDep,
                _: CanWrite) -> CartRead:
    """Enter a voucher code; refused (cart unchanged) when it is unknown, expired, exhausted or used up by the
    customer, with the engine's reason code."""
    return idem.done(_read(vouchers.add_voucher(session, cart_id=cart_id, code=body.code, channel_code=body.channel,
                                                expected_version=body.expected_version)))


@router.delete("/{cart_id}/vouchers/{code}", response_model=CartRead)
def remove_voucher(cart_id: str, code: str, channel: str, session: SessionDep, idem: IdempotencyDep, _: CanWrite,
                   expected_version: int | None = None) -> CartRead:
    return idem.done(_read(vouchers.remove_voucher(session, cart_id=cart_id, code=code, channel_code=channel,
                                                   expected_version=expected_version)))


@router.post("/{cart_id}/assign", response_model=CartRead)
def assign(cart_id: str, body: CartAssign, session: SessionDep, idem: IdempotencyDep, _: CanWrite) -> CartRead:
    """On login: the anonymous cart becomes the customer's, merged into their active cart if they have one
    (quantities summed per SKU, capped at 999; the customer's cart keeps its id)."""
    return idem.done(_read(service.assign(session, cart_id=cart_id, customer_id=body.customer_id,
                                          channel_code=body.channel)))


@router.post("/{cart_id}/handoff", response_model=HandoffRead, status_code=201)
def create_handoff(cart_id: str, body: HandoffCreate, session: SessionDep, settings: SettingsDep,
                   idem: IdempotencyDep, _: CanWrite) -> HandoffRead:
    """A short single-use code and its QR code that open this cart on another device or in a POS."""
    row = handoff.create_handoff(session, cart_id=cart_id, channel_code=body.channel, ttl_seconds=body.ttl_seconds)
    target = handoff.link(row.code, settings.public_url)
    return idem.done(HandoffRead(code=row.code, cart_id=row.cart_id, expires_at=row.expires_at, link=target,
                       svg_url=f"/api/v1/carts/handoff/{row.code}.svg", png_url=f"/api/v1/carts/handoff/{row.code}.png",
                       png_data_uri=handoff.qr_png_data_uri(target)), 201)
