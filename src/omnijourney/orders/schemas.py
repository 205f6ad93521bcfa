"""Request and response shapes of checkout, orders and returns. Money is a decimal string, never a float."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, StrictInt
from sqlalchemy.orm import Session

from omnijourney.orders.models import Order

Code = Field(min_length=1, max_length=64)


class Fulfilment(BaseModel):
    mode: Literal["ship", "pickup", "reserve_in_store", "in_store"] = Field(
        description="ship: delivered home; pickup: bought online, collected in a store; reserve_in_store: paid "
                    "at the till when collected; in_store: a till's counter sale")
    location: str | None = Field(default=None, max_length=64, description="the pickup store (pickup, reserve)")
    ship_to: dict[str, Any] | None = Field(default=None, description="address; latitude/longitude for nearest")


class Tender(BaseModel):
    method: Literal["card", "gift_card", "cash"]
    provider: str | None = Field(default=None, max_length=32, description="card: test (default) or stripe")
    payment_method: str | None = Field(default=None, max_length=200,
                                       description="the provider's token, e.g. pm_card_visa (never card data)")
    code: str | None = Field(default=None, max_length=64, description="gift card code")
    amount: Decimal | None = Field(default=None, gt=0, description="omitted on one tender: it takes the rest")


class CheckoutCreate(BaseModel):
    channel: str = Code
    fulfilment: Fulfilment = Field(default_factory=lambda: Fulfilment(mode="ship"))
    payments: list[Tender] = Field(default_factory=list, max_length=5)
    expected_total: Decimal | None = Field(default=None, description="the total the customer saw: 409 "
                                                                     "price_changed if it differs now")
    customer_id: str | None = Field(default=None, max_length=32, description="who checks out (403 if not theirs)")
    email: str | None = Field(default=None, max_length=320)


class TillPayment(BaseModel):
    channel: str = Field(min_length=1, max_length=64, description="the pickup store's code")
    payments: list[Tender] = Field(min_length=1, max_length=5)


class OrderLineRead(BaseModel):
    sku: str
    title: str | None
    quantity: int
    unit_price: Decimal
    discount: Decimal
    total: Decimal
    returned: int


class ShipmentRead(BaseModel):
    id: str
    location: str
    to_location: str | None
    lines: list[dict[str, Any]]
    status: str
    carrier: str | None
    tracking: str | None


class HistoryRead(BaseModel):
    from_status: str | None
    to_status: str
    channel: str | None
    note: str | None
    at: datetime


class RefundPartRead(BaseModel):
    method: str
    brand: str | None
    last4: str | None
    amount: Decimal
    status: str = Field(description="succeeded; pending until the refund job sends it; failed (refused, or failed "
                                    "later at the provider, e.g. a closed card): refund it another way")
    message: str | None = Field(description="why it failed, as the provider said")


class ReturnRead(BaseModel):
    id: str
    order_id: str
    channel: str
    location: str
    status: str
    lines: list[dict[str, Any]]
    refund_amount: Decimal
    refund: list[RefundPartRead] = Field(description="the refund's parts, one per original tender, as they stand")
    exchange_order_id: str | None
    created_at: datetime


class OrderRead(BaseModel):
    id: str
    number: str
    customer_id: str | None
    anonymous_id: str | None
    channel: str
    status: str
    allowed: list[str] = Field(description="the states it may move to now")
    payment_status: str
    fulfilment: str
    pickup_location: str | None
    pickup_code: str | None = Field(description="shown to the shopper once ready for pickup")
    pickup_deadline: datetime | None
    ship_to: dict[str, Any] | None
    currency: str
    subtotal: Decimal
    discount: Decimal
    shipping: Decimal
    tax: Decimal
    total: Decimal
    refunded: Decimal
    vouchers: list[str]
    sourcing: dict[str, Any] = Field(description="which locations fill it and why")
    lines: list[OrderLineRead]
    shipments: list[ShipmentRead]
    payments: list[dict[str, Any]]
    returns: list[ReturnRead]
    history: list[HistoryRead]
    placed_at: datetime
    updated_at: datetime


class OrderSummary(BaseModel):
    id: str
    number: str
    customer_id: str | None
    channel: str
    status: str
    payment_status: str
    fulfilment: str
    pickup_location: str | None
    currency: str
    total: Decimal
    placed_at: datetime


class OrderPage(BaseModel):
    items: list[OrderSummary]
    next_cursor: str | None


class TransitionCreate(BaseModel):
    to: Literal["picked", "shipped", "delivered", "ready_for_pickup", "collected", "cancelled"]
    channel: str = Field(min_length=1, max_length=64, description="where it happens (a store's code at a till)")
    note: str | None = Field(default=None, max_length=500)
    location: str | None = Field(default=None, max_length=64, description="shipped: one parcel, from here")
    pickup_code: str | None = Field(default=None, max_length=16, description="collected: the shopper's code")
    carrier: str | None = Field(default=None, max_length=64)
    tracking: str | None = Field(default=None, max_length=128)


class ReturnLineIn(BaseModel):
    sku: str = Code
    quantity: StrictInt = 1
    reason: str = Field(min_length=1, max_length=200)
    condition: Literal["resellable", "damaged"] = "resellable"


class ExchangeLineIn(BaseModel):
    sku: str = Code
    quantity: StrictInt = 1


class ReturnCreate(BaseModel):
    channel: str = Field(min_length=1, max_length=64, description="where the goods are brought back")
    location: str | None = Field(default=None, max_length=64, description="default: that store's own location")
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=100)
    exchange: list[ExchangeLineIn] = Field(default_factory=list, max_length=100,
                                           description="another size or colour of a returned product, sent instead "
                                                       "of part of the refund")


def summary(order: Order) -> OrderSummary:
    return OrderSummary(id=order.id, number=order.number, customer_id=order.customer_id, channel=order.channel_code,
                        status=order.status, payment_status=order.payment_status, fulfilment=order.fulfilment,
                        pickup_location=order.pickup_location, currency=order.currency, total=order.total,
                        placed_at=order.placed_at)


def return_read(session: Session, r: Any, tenders: Sequence[Any] | None = None) -> ReturnRead:
    """A return with its refund's parts as they stand (``tenders``: the order's payments, when the caller has
    them)."""
    from omnijourney.orders import returns
    from omnijourney.payments import service as payments

    if tenders is None:
        tenders = payments.find(session, order_id=r.order_id)
    parts = [RefundPartRead(method=p.method, brand=p.brand, last4=p.last4, amount=p.amount, status=p.status,
                            message=p.message) for p in returns.refund_of(session, r.id, tenders)]
    return ReturnRead(id=r.id, order_id=r.order_id, channel=r.channel_code, location=r.location_code,
                      status=r.status, lines=r.lines, refund_amount=r.refund_amount, refund=parts,
                      exchange_order_id=r.exchange_order_id, created_at=r.created_at)


def order_read(session: Session, order: Order, known: dict[str, Any] | None = None) -> OrderRead:
    """Everything about an order, in five small queries; ``known`` gives parts the caller wrote in this transaction
    (``lines``, ``shipments``, ``payments``, ``returns``, ``history``: checkout's new order), which are not read."""
    from omnijourney.orders import lifecycle
    from omnijourney.orders import orders as svc

    known = known or {}
    lines = known["lines"] if "lines" in known else svc.lines(session, order.id)
    shipments = known["shipments"] if "shipments" in known else svc.shipments(session, order.id)
    payments = known["payments"] if "payments" in known else svc.payments_of(session, order)
    returns = known["returns"] if "returns" in known else svc.returns_of(session, order.id)
    history = known["history"] if "history" in known else svc.history(session, order.id)
    return OrderRead(
        id=order.id, number=order.number, customer_id=order.customer_id, anonymous_id=order.anonymous_id,
        channel=order.channel_code, status=order.status, allowed=list(lifecycle.allowed(order.fulfilment,
                                                                                         order.status)),
        payment_status=order.payment_status, fulfilment=order.fulfilment, pickup_location=order.pickup_location,
        pickup_code=order.pickup_code if order.status == "ready_for_pickup" else None,
        pickup_deadline=order.pickup_deadline, ship_to=order.ship_to, currency=order.currency,
        subtotal=order.subtotal, discount=order.discount, shipping=order.shipping, tax=order.tax, total=order.total,
        refunded=order.refunded, vouchers=list(order.vouchers), sourcing=order.sourcing,
        lines=[OrderLineRead(sku=ln.sku, title=ln.title, quantity=ln.quantity, unit_price=ln.unit_price,
                             discount=ln.discount, total=ln.total, returned=ln.returned)
               for ln in lines],
        shipments=[ShipmentRead(id=s.id, location=s.location_code, to_location=s.to_location, lines=s.lines,
                                status=s.status, carrier=s.carrier, tracking=s.tracking)
                   for s in shipments],
        payments=[{"id": p.id, "method": p.method, "provider": p.provider, "status": p.status,
                   "amount": str(p.amount), "captured": str(p.money(p.captured_minor)),
                   "refunded": str(p.money(p.refunded_minor)), "brand": p.brand, "last4": p.last4,
                   "decline_reason": p.decline_reason} for p in payments],
        returns=[return_read(session, r, payments) for r in returns],
        history=[HistoryRead(from_status=h.from_status, to_status=h.to_status, channel=h.channel_code, note=h.note,
                             at=h.at) for h in history],
        placed_at=order.placed_at, updated_at=order.updated_at)
