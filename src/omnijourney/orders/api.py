"""Checkout (``POST /api/v1/carts/{id}/checkout``), orders and returns under ``/api/v1/orders`` (thin routers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import JSONResponse

from omnijourney.api.deps import DatabaseDep, SessionDep, require
from omnijourney.api.idempotency import IdempotencyDep
from omnijourney.auth.service import Principal
from omnijourney.auth.stores import check_location
from omnijourney.orders import checkout as checkout_service
from omnijourney.orders import orders as service
from omnijourney.orders import returns
from omnijourney.orders.schemas import (
    CheckoutCreate,
    OrderPage,
    OrderRead,
    ReturnCreate,
    ReturnRead,
    TillPayment,
    TransitionCreate,
    order_read,
    return_read,
    summary,
)

checkout_router = APIRouter(prefix="/carts", tags=["orders"])
router = APIRouter(prefix="/orders", tags=["orders"])
CanRead = Annotated[Principal, Depends(require("orders:read"))]
CanWrite = Annotated[Principal, Depends(require("orders:write"))]


@checkout_router.post("/{cart_id}/checkout", response_model=OrderRead, status_code=201,
                      responses={202: {"description": "the order waits for the shopper to confirm a payment "
                                                      "(next_action_url)"},
                                 402: {"description": "a payment was declined (which tender, and why)"}})
def checkout(cart_id: str, body: CheckoutCreate, db: DatabaseDep, who: CanWrite,
             idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> Response:
    """Turn the cart into an order: quote, reservation, payment, order. Needs an ``Idempotency-Key``: a retry with
    the same key returns the first answer and never charges twice. 404 for an unknown cart, 409
    ``cart_not_active`` (converted already), ``checkout_in_progress``, ``price_changed`` (with the new quote) or
    ``out_of_stock`` (with alternatives), 403 ``not_your_cart``, 422 ``empty_cart`` or a bad tender."""
    who.check_store(body.channel, field="channel")
    req = checkout_service.Request(
        cart_id=cart_id, channel_code=body.channel, fulfilment=body.fulfilment.mode,
        location=body.fulfilment.location, ship_to=body.fulfilment.ship_to,
        tenders=[t.model_dump(exclude_none=True, mode="json") for t in body.payments],
        expected_total=body.expected_total, customer_id=body.customer_id, email=body.email)
    answer = checkout_service.checkout(db, req, idempotency_key=idempotency_key or "")
    return JSONResponse(answer.body, status_code=answer.status)


@router.get("/{order_id}", response_model=OrderRead)
def get_order(order_id: str, session: SessionDep, _: CanRead) -> OrderRead:
    """One order by id or number, the same in every channel. 404 when unknown."""
    return order_read(session, service.get(session, order_id))


@router.get("", response_model=OrderPage)
def list_orders(session: SessionDep, _: CanRead, customer_id: str | None = None,
                channel: str | None = None, status: str | None = None, fulfilment: str | None = None,
                location: Annotated[str | None, Query(description="pickup store (a store's pickup queue)")] = None,
                cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50) -> OrderPage:
    """Orders newest first: a customer's (through profile merges), a channel's, a store's pickup queue."""
    page = service.list_orders(session, customer_id=customer_id, channel_code=channel, status=status,
                               fulfilment=fulfilment, location=location, cursor=cursor, limit=limit)
    return OrderPage(items=[summary(o) for o in page.items], next_cursor=page.next_cursor)


@router.post("/{order_id}/transitions", response_model=OrderRead)
def transition(order_id: str, body: TransitionCreate, session: SessionDep, idem: IdempotencyDep,
               who: CanWrite) -> OrderRead:
    """Move the order on (picked, shipped, delivered, ready_for_pickup, collected, cancelled). 409
    ``illegal_transition`` names the allowed moves; collecting needs the pickup code at the pickup store (409
    ``wrong_pickup_code``, ``wrong_store``)."""
    who.check_store(body.channel, field="channel")
    if body.location is not None:
        check_location(session, who, body.location, field="location")
    order = service.transition(session, order_id=order_id, to=body.to, channel_code=body.channel, note=body.note,
                               location=body.location, pickup_code=body.pickup_code, carrier=body.carrier,
                               tracking=body.tracking)
    return idem.done(order_read(session, order))


@router.post("/{order_id}/payments", response_model=OrderRead)
def pay(order_id: str, body: TillPayment, db: DatabaseDep, who: CanWrite,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> Response:
    """Pay a reserve-in-store order at its store's till (split tender allowed); then it can be collected. 402
    ``payment_declined`` names the tender; 409 ``paid_already``, ``wrong_store``."""
    who.check_store(body.channel, field="channel")
    answer = checkout_service.pay_at_till(db, order_id=order_id, channel_code=body.channel,
                                          tenders=[t.model_dump(exclude_none=True, mode="json") for t in body.payments],
                                          idempotency_key=idempotency_key or "")
    return JSONResponse(answer.body, status_code=answer.status)


@router.post("/{order_id}/returns", response_model=ReturnRead, status_code=201)
def create_return(order_id: str, body: ReturnCreate, session: SessionDep, idem: IdempotencyDep,
                  who: CanWrite) -> ReturnRead:
    """Take goods back in any channel; refunds their share to the original tenders. 409 ``not_returnable``,
    ``already_returned``, ``return_window_closed``, ``final_sale``; 422 ``not_bought``."""
    who.check_store(body.channel, field="channel")
    if body.location is not None:
        check_location(session, who, body.location, field="location")
    ret = returns.create_return(session, order_id=order_id, channel_code=body.channel, location=body.location,
                                lines=[ln.model_dump() for ln in body.lines],
                                exchange=[e.model_dump() for e in body.exchange])
    return idem.done(return_read(session, ret), 201)
