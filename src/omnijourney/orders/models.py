"""Checkouts, orders and their lines, shipments, the order's history, and returns."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from omnijourney.core.types import BigIntPK, JSONType, UTCDateTime
from omnijourney.customers.follow import customer_ref
from omnijourney.db import Base

Money = Numeric(14, 2)


class Checkout(Base):
    """One attempt to turn a cart into an order, keyed by the client's ``Idempotency-Key``: its steps (reserved,
    paying, completed, failed) survive a crash, so a retry or the recovery job finishes what a lost request began.
    ``answer`` is the response a retry with the same key gets again."""

    __tablename__ = "checkouts"
    __table_args__ = (
        UniqueConstraint("cart_id", "idempotency_key", name="uq_checkouts_key"),
        # one checkout in flight per cart: a second client gets 409 instead of a second charge
        Index("ux_checkouts_open", "cart_id", unique=True,
              sqlite_where=text("status IN ('reserved', 'paying')"),
              postgresql_where=text("status IN ('reserved', 'paying')")),
        # an order's checkout: a pending payment's webhook, a cancelled order's settle job, reading an order whose
        # payments are not attached (reserve in store) look it up by order
        Index("ix_checkouts_order", "order_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    cart_id: Mapped[str] = mapped_column(ForeignKey("carts.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # reserved, paying, completed, failed
    channel_code: Mapped[str] = mapped_column(ForeignKey("channels.code"))
    reservation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    order_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    plan: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the quote, the sourcing and the payments, as decided
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    answer_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Order(Base):
    """An order from any channel. ``status`` follows ``lifecycle.TRANSITIONS``; ``fulfilment`` is ship,
    pickup, reserve_in_store or in_store; ``sourcing`` explains which locations fill it and why."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_customer", "customer_id", "placed_at"),
        Index("ix_orders_placed", "placed_at", "id"),
        Index("ix_orders_pickup_code", "pickup_code", unique=True),
        # a guest's orders are found by the email given at checkout (the console's returns desk)
        Index("ix_orders_guest_email", "email", "placed_at", sqlite_where=text("customer_id IS NULL"),
              postgresql_where=text("customer_id IS NULL")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)  # what a shopper reads out on the phone
    customer_id: Mapped[str | None] = customer_ref(ForeignKey("customers.id"))  # follows profile merges
    anonymous_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    channel_code: Mapped[str] = mapped_column(ForeignKey("channels.code"))
    cart_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str] = mapped_column(String(24))
    payment_status: Mapped[str] = mapped_column(String(24))  # unpaid, pending, authorised, paid, refunded, ...
    fulfilment: Mapped[str] = mapped_column(String(24))
    pickup_location: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pickup_code: Mapped[str | None] = mapped_column(String(16), nullable=True)
    pickup_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ship_to: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[Decimal] = mapped_column(Money)
    discount: Mapped[Decimal] = mapped_column(Money)
    shipping: Mapped[Decimal] = mapped_column(Money)
    tax: Mapped[Decimal] = mapped_column(Money)
    total: Mapped[Decimal] = mapped_column(Money)
    refunded: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    vouchers: Mapped[list[str]] = mapped_column(JSONType, default=list)
    promotions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    sourcing: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    reservation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OrderLine(Base):
    """``quantity`` of one SKU at the price charged; ``returned`` units came back."""

    __tablename__ = "order_lines"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("variants.sku"), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(500), nullable=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    discount: Mapped[Decimal] = mapped_column(Money)
    total: Mapped[Decimal] = mapped_column(Money)  # what the customer paid for the line, taxes as quoted
    returned: Mapped[int] = mapped_column(Integer, default=0)


class Shipment(Base):
    """What one location sends (or hands over) for an order: ``lines`` [{sku, quantity}]. ``to_location`` is set
    when goods go to a store for collection (a transfer to the pickup store)."""

    __tablename__ = "shipments"
    __table_args__ = (Index("ix_shipments_order", "order_id"), Index("ix_shipments_location", "location_code",
                                                                     "status"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    location_code: Mapped[str] = mapped_column(String(64))
    to_location: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(24))  # allocated, picked, shipped, delivered, cancelled
    carrier: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tracking: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OrderHistory(Base):
    """Every change of an order's state, where and by whom (the order page's history)."""

    __tablename__ = "order_history"
    __table_args__ = (Index("ix_order_history_order", "order_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(24), nullable=True)
    to_status: Mapped[str] = mapped_column(String(24))
    channel_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    note: Mapped[str | None] = mapped_column(String(500), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Return(Base):
    """Goods coming back, in any channel: ``lines`` [{sku, quantity, reason, condition}], received at
    ``location_code`` (resellable units back on its shelf, damaged ones into quarantine), refunded to the
    original tenders. ``exchange_order_id``: the order sent in exchange, if any."""

    __tablename__ = "returns"
    __table_args__ = (Index("ix_returns_order", "order_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    channel_code: Mapped[str] = mapped_column(ForeignKey("channels.code"))
    location_code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # received, refunded
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    refund_amount: Mapped[Decimal] = mapped_column(Money)
    exchange_order_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
