"""Price lists and their prices, tax markets, promotions, vouchers and voucher redemptions.

Amounts are stored as integer minor units of their currency (exact on SQLite and PostgreSQL alike);
tax rates as integer parts per million (20 % = 200000). Promotion rules are JSON validated by
``pricing.rules`` on the way in. Channel codes, SKUs and product ids carry no foreign keys: prices may be
loaded before the catalog has the variant, and pricing does not own those tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnijourney.core.types import BigIntPK, JSONType, UTCDateTime
from omnijourney.db import Base


class PriceList(Base):
    """A list of unit prices in one currency. ``kind``: base (untargeted; a channel's default list), channel
    (targets ``channel_codes``/``channel_types``) or segment (targets ``segments``, optionally a channel too)."""

    __tablename__ = "price_lists"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(16))
    channel_codes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    channel_types: Mapped[list[str]] = mapped_column(JSONType, default=list)
    segments: Mapped[list[str]] = mapped_column(JSONType, default=list)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    prices_include_tax: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PriceEntry(Base):
    """The unit price of one SKU in one list, in minor units of the list's currency."""

    __tablename__ = "price_list_entries"
    __table_args__ = (Index("ix_price_list_entries_sku", "sku"),)

    price_list_code: Mapped[str] = mapped_column(ForeignKey("price_lists.code", ondelete="CASCADE"),
                                                 primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class TaxMarket(Base):
    """How a market (ISO 3166 country, as on channels) shows prices and what shipping costs there."""

    __tablename__ = "tax_markets"

    market: Mapped[str] = mapped_column(String(8), primary_key=True)
    taxes_included: Mapped[bool] = mapped_column(Boolean, default=True)
    shipping_fees: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)  # currency -> "4.90"
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TaxRate(Base):
    """The tax rate of a tax class in a market, in parts per million (20 % = 200000)."""

    __tablename__ = "tax_rates"

    market: Mapped[str] = mapped_column(ForeignKey("tax_markets.market", ondelete="CASCADE"), primary_key=True)
    tax_class: Mapped[str] = mapped_column(String(32), primary_key=True)
    rate_ppm: Mapped[int] = mapped_column(Integer)


class Promotion(Base):
    """A promotion; ``rule`` and ``target`` are validated JSON (see ``pricing.rules``)."""

    __tablename__ = "promotions"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    rule: Mapped[dict[str, Any]] = mapped_column(JSONType)  # {"type": "percent_off", "percent": "10"}
    target: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # {"skus": [], "product_ids": [], ...}
    priority: Mapped[int] = mapped_column(Integer, default=0)
    exclusive: Mapped[bool] = mapped_column(Boolean, default=False)
    stacking_group: Mapped[str | None] = mapped_column(String(64), nullable=True)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    channel_codes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    channel_types: Mapped[list[str]] = mapped_column(JSONType, default=list)
    segments: Mapped[list[str]] = mapped_column(JSONType, default=list)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    min_basket_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    needs_voucher: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Voucher(Base):
    """A code that unlocks a promotion. ``used`` only grows, by SQL arithmetic (``redeem_voucher``)."""

    __tablename__ = "vouchers"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)  # stored upper-case
    promotion_code: Mapped[str] = mapped_column(ForeignKey("promotions.code"), index=True)
    max_uses: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1: single use; NULL: unlimited
    per_customer_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    used: Mapped[int] = mapped_column(Integer, default=0)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VoucherRedemption(Base):
    """Append-only: the voucher was used by an order (one row per voucher and order)."""

    __tablename__ = "voucher_redemptions"
    __table_args__ = (
        UniqueConstraint("voucher_code", "order_ref", name="uq_voucher_redemptions_order"),
        Index("ix_voucher_redemptions_customer", "voucher_code", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    voucher_code: Mapped[str] = mapped_column(ForeignKey("vouchers.code"))
    customer_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    order_ref: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
