"""Payments, the log of every provider call, gift cards and their ledger.

Amounts are stored as integer minor units of their currency (exact on both engines), as in pricing; the
``Decimal`` properties give currency units. No card data: ``instrument`` holds a provider's payment-method id or
token (``pm_...``) or our own gift card's code, and ``brand``/``last4`` only when a provider returned them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from omnijourney.core.types import JSONType, UTCDateTime
from omnijourney.db import Base
from omnijourney.pricing.money import from_minor

STATUSES = ("new", "pending", "authorised", "captured", "partly_refunded", "refunded", "voided", "declined", "failed")
METHODS = ("card", "gift_card", "cash")


class Payment(Base):
    """One tender of a checkout (``ref``, the caller's reference, groups them; ``position`` keeps their order).

    ``status``: new -> pending (the shopper must act) -> authorised -> captured -> partly_refunded -> refunded;
    or voided, declined, failed. ``void_requested_at`` is set when a void is decided (the reconcile job, a
    cancellation): from then on the payment cannot be attached to an order, so a void and the order's commit can
    never both win. ``refund_pending_minor`` is what refunds under way hold back from further refunds.
    """

    __tablename__ = "payments"
    __table_args__ = (
        Index("ix_payments_ref", "ref", "position"),
        Index("ix_payments_order", "order_id"),
        Index("ix_payments_provider_ref", "provider", "provider_ref"),
        CheckConstraint("captured_minor - refunded_minor - refund_pending_minor >= 0", name="ck_payments_refundable"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ref: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    position: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(32))
    instrument: Mapped[str | None] = mapped_column(String(200), nullable=True)
    brand: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last4: Mapped[str | None] = mapped_column(String(4), nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    authorised_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    captured_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refund_pending_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default="new")
    provider_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    decline_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    decline_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    next_action_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    void_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def money(self, minor: int) -> Decimal:
        return from_minor(minor, self.currency)

    @property
    def amount(self) -> Decimal:
        return self.money(self.amount_minor)

    @property
    def refundable_minor(self) -> int:
        return self.captured_minor - self.refunded_minor - self.refund_pending_minor


class PaymentOperation(Base):
    """Append-only log of every provider call (a ``request`` row before it, a ``result`` row after) and every
    webhook received (``event_id``, unique: a replayed event is recognised). A refund's result names its request
    (``request_id``); ``reference`` is the caller's name for a refund (a return), so asking twice refunds once."""

    __tablename__ = "payment_operations"
    __table_args__ = (
        Index("ix_payment_operations_payment", "payment_id", "created_at"),
        Index("ux_payment_operations_event", "event_id", unique=True),
        Index("ix_payment_operations_reference", "reference"),
        Index("ix_payment_operations_request", "request_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"))
    kind: Mapped[str] = mapped_column(String(16))  # authorise, capture, void, refund, webhook
    phase: Mapped[str] = mapped_column(String(8))  # request, result, event
    status: Mapped[str] = mapped_column(String(32))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    provider_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    message: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GiftCard(Base):
    """A gift card: its balance changes only by SQL arithmetic, guarded so it never goes below zero."""

    __tablename__ = "gift_cards"
    __table_args__ = (CheckConstraint("balance_minor >= 0", name="ck_gift_cards_balance"),)

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    initial_minor: Mapped[int] = mapped_column(BigInteger)
    balance_minor: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GiftCardMovement(Base):
    """The gift card ledger (append-only): ``issue``, ``hold`` (an authorisation), ``capture`` (releases what was
    held beyond the captured amount), ``release`` (a void), ``refund``. ``balance_change`` is the signed effect on
    the balance, so the balance is always the sum of its card's movements. ``hold_id`` ties a hold's later
    movements to it; ``idempotency_key`` (unique) makes each operation happen once."""

    __tablename__ = "gift_card_movements"
    __table_args__ = (
        Index("ix_gift_card_movements_card", "code", "created_at"),
        Index("ix_gift_card_movements_hold", "hold_id"),
        Index("ux_gift_card_movements_key", "idempotency_key", unique=True),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    code: Mapped[str] = mapped_column(ForeignKey("gift_cards.code"))
    kind: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    balance_change: Mapped[int] = mapped_column(BigInteger)
    hold_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    payment_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
