"""Locations, the stock of each SKU in each location, its append-only ledger, reservations and transfers.

``stock_levels`` holds the two counters that every channel sells from (``on_hand``, ``reserved``); they only move
by arithmetic in SQL, each change written beside its ledger row (``stock_movements``) in the same transaction,
so the ledger rebuilds them exactly (``omni inventory check``). The database refuses a negative count or more
reserved than on hand (CHECK constraints): a bug elsewhere fails loudly instead of overselling.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Index, Integer, String, func, select
from sqlalchemy.orm import Mapped, column_property, mapped_column

from omnijourney.core.types import BigIntPK, UTCDateTime
from omnijourney.db import Base

LOCATION_TYPES = ("warehouse", "store", "transit", "quarantine")


class Location(Base):
    """A place that holds stock: a warehouse, a store (its ``channel_code`` is the store's channel), goods in
    transit between two locations, or a quarantine for damaged returns (never sold from).

    ``online_floor``: units of a store's shelf kept for the store's own customers; the store's stock feeds online
    orders only above it. ``ships``: can send parcels (warehouses; stores that ship from store). ``pickup``: a
    store where online orders are collected. ``handling_hours``: time to pick and pack here, the base of every
    promise made from this location.
    """

    __tablename__ = "locations"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    channel_code: Mapped[str | None] = mapped_column(ForeignKey("channels.code"), nullable=True, unique=True)
    address: Mapped[str | None] = mapped_column(String(500), nullable=True)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    online_floor: Mapped[int] = mapped_column(Integer, default=0)
    ships: Mapped[bool] = mapped_column(Boolean, default=False)
    pickup: Mapped[bool] = mapped_column(Boolean, default=False)
    handling_hours: Mapped[int] = mapped_column(Integer, default=24)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LocationFeed(Base):
    """The location's stock is available to promise in this channel (a warehouse feeds the web shop and the app;
    a store feeds itself and, above its ``online_floor``, the online channels)."""

    __tablename__ = "location_feeds"
    __table_args__ = (Index("ix_location_feeds_channel", "channel_code"),)

    location_code: Mapped[str] = mapped_column(ForeignKey("locations.code", ondelete="CASCADE"), primary_key=True)
    channel_code: Mapped[str] = mapped_column(ForeignKey("channels.code"), primary_key=True)


class StockLevel(Base):
    """One SKU in one location. Available to promise = on_hand - held - safety_stock (- the online floor).

    ``reserved`` counts the units held by reservations plus the units set aside in the level's pool
    (``StockPool``, ``pooled``): a hot level hands blocks of units to its pool rows so that concurrent reservations
    lock one of those instead of this row. Pooled units are still free to promise: ``held`` and ``free`` are what
    readers show."""

    __tablename__ = "stock_levels"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="ck_stock_levels_on_hand"),
        CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="ck_stock_levels_reserved"),
        CheckConstraint("safety_stock >= 0", name="ck_stock_levels_safety"),
        Index("ix_stock_levels_location", "location_code", "sku"),
    )

    sku: Mapped[str] = mapped_column(ForeignKey("variants.sku"), primary_key=True)
    location_code: Mapped[str] = mapped_column(ForeignKey("locations.code"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    safety_stock: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @property
    def held(self) -> int:
        """Units held by reservations (``reserved`` without the pool's units)."""
        return self.reserved - (self.pooled or 0)

    @property
    def free(self) -> int:
        """Units on hand that nothing holds (before safety stock and a store's online floor)."""
        return self.on_hand - self.held


class StockPool(Base):
    """A share of a level's free units set aside for reservations (``inventory.pools``): a reservation takes its
    units from one pool row, so concurrent reservations of a hot SKU lock different rows instead of queueing on
    the level's. The level counts these units in ``reserved``; ``units`` never goes below zero."""

    __tablename__ = "stock_pools"
    __table_args__ = (CheckConstraint("units >= 0", name="ck_stock_pools_units"),)

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    location_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    units: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


# loaded with every level: the units its pool holds (an index probe on the pool's primary key)
StockLevel.pooled = column_property(  # type: ignore[attr-defined]
    select(func.coalesce(func.sum(StockPool.units), 0))
    .where(StockPool.sku == StockLevel.sku, StockPool.location_code == StockLevel.location_code)
    .correlate_except(StockPool).scalar_subquery())


MOVEMENT_KINDS = ("receipt", "sale", "reservation", "release", "return", "adjustment", "transfer_out",
                  "transfer_in", "count", "pool")


class StockMovement(Base):
    """One change of one stock level, never updated or deleted. ``on_hand_delta`` and ``reserved_delta`` are what
    the change did to the counters; summed per SKU and location they give the counters back. ``ref`` is what
    caused it (a reservation, an order, a transfer, an import), ``reason`` why (adjustments must say)."""

    __tablename__ = "stock_movements"
    __table_args__ = (
        Index("ix_stock_movements_level", "sku", "location_code", "id"),
        Index("ix_stock_movements_ref", "ref"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(64))
    location_code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    on_hand_delta: Mapped[int] = mapped_column(Integer, default=0)
    reserved_delta: Mapped[int] = mapped_column(Integer, default=0)
    counted: Mapped[int | None] = mapped_column(Integer, nullable=True)  # a cycle count's figure
    reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    channel_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Reservation(Base):
    """Units held for a checkout (or an order awaiting collection) until ``expires_at``; a job releases them then
    if nobody consumed or released them first. ``status``: active, consumed, released, expired."""

    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_ref", "ref"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    channel_code: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the cart, checkout or order it holds for
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReservationLine(Base):
    """Units of one SKU held at one location; ``status`` active until sold (consumed) or given back (released)."""

    __tablename__ = "reservation_lines"

    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id", ondelete="CASCADE"), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    location_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="active")


class Transfer(Base):
    """Units sent from one location to another: out of ``from_code`` into the transit location when shipped, out of
    transit into ``to_code`` when received. ``status``: shipped, received."""

    __tablename__ = "stock_transfers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("variants.sku"))
    from_code: Mapped[str] = mapped_column(ForeignKey("locations.code"))
    to_code: Mapped[str] = mapped_column(ForeignKey("locations.code"))
    via_code: Mapped[str] = mapped_column(ForeignKey("locations.code"))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="shipped")
    shipped_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
