"""Carts, their lines and handoff codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from omnijourney.core.types import JSONType, UTCDateTime
from omnijourney.customers.follow import customer_ref
from omnijourney.db import Base


class Cart(Base):
    """One cart, the same in every channel. It belongs to a customer or, until they identify, to an
    anonymous id. ``version`` grows by one on every change (optimistic concurrency for clients);
    ``channel_code`` is where it was last touched. A person has at most one active cart per owner id
    (partial unique indexes), so two devices opening "my cart" at once meet the same row.
    """

    __tablename__ = "carts"
    __table_args__ = (
        Index("ux_carts_active_customer", "customer_id", unique=True,
              sqlite_where=text("status = 'active' AND customer_id IS NOT NULL"),
              postgresql_where=text("status = 'active' AND customer_id IS NOT NULL")),
        Index("ux_carts_active_anonymous", "anonymous_id", unique=True,
              sqlite_where=text("status = 'active' AND customer_id IS NULL AND anonymous_id IS NOT NULL"),
              postgresql_where=text("status = 'active' AND customer_id IS NULL AND anonymous_id IS NOT NULL")),
        Index("ix_carts_customer", "customer_id", "updated_at"),
        Index("ix_carts_anonymous", "anonymous_id", "updated_at"),
        Index("ix_carts_updated", "updated_at", "id"),  # every cart, most recently changed first (console)
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str | None] = customer_ref(ForeignKey("customers.id"))  # follows profile merges
    anonymous_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    channel_code: Mapped[str] = mapped_column(ForeignKey("channels.code"))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active, merged, converted
    merged_into: Mapped[str | None] = mapped_column(String(32), nullable=True)
    voucher_codes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # every UPDATE of the row says WHERE version = :seen and bumps it: a lost update fails instead
    __mapper_args__ = {"version_id_col": version}


class CartLine(Base):
    """``quantity`` of one SKU in a cart; ``channel_code`` is where the line was last changed."""

    __tablename__ = "cart_lines"

    cart_id: Mapped[str] = mapped_column(ForeignKey("carts.id", ondelete="CASCADE"), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("variants.sku"), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    channel_code: Mapped[str] = mapped_column(ForeignKey("channels.code"))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CartHandoff(Base):
    """A short single-use code that opens a cart on another device or in a store's POS until it expires."""

    __tablename__ = "cart_handoffs"
    __table_args__ = (Index("ix_cart_handoffs_cart", "cart_id"),)

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    cart_id: Mapped[str] = mapped_column(ForeignKey("carts.id", ondelete="CASCADE"))
    channel_code: Mapped[str] = mapped_column(ForeignKey("channels.code"))  # where it was handed off from
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claimed_channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
