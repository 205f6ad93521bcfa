"""Channels, categories, products, variants and where each product is published."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from omnijourney.core.types import JSONType, UTCDateTime
from omnijourney.db import Base


class Channel(Base):
    """One place the brand sells: the web shop, the app, store 12, the call center, a marketplace.

    ``type`` is one of ``core.channels.CHANNELS``. A store channel's ``code`` is the ``store_code`` of
    its tracking sources. ``default_price_list`` names a price list of the pricing domain (no foreign key:
    the catalog does not depend on pricing).
    """

    __tablename__ = "channels"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    market: Mapped[str] = mapped_column(String(8))  # ISO 3166 country, e.g. "DE" (tax rules)
    default_price_list: Mapped[str | None] = mapped_column(String(64), nullable=True)
    address: Mapped[str | None] = mapped_column(String(500), nullable=True)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Category(Base):
    """A node of the category tree; ``code`` is its id (e.g. ``women-dresses``)."""

    __tablename__ = "categories"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("categories.code"), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Product(Base):
    """What a shopper thinks of as one product; its variants are what is sold (by SKU)."""

    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    handle: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    brand: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active")  # draft, active, archived
    tax_class: Mapped[str] = mapped_column(String(32), default="standard")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProductCategory(Base):
    """A product belongs to a category (and, through the tree, to its ancestors)."""

    __tablename__ = "product_categories"
    __table_args__ = (Index("ix_product_categories_category", "category_code"),)

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), primary_key=True)
    category_code: Mapped[str] = mapped_column(ForeignKey("categories.code"), primary_key=True)


class Variant(Base):
    """A sellable item: one SKU of a product (size M, colour navy), with its barcode and images."""

    __tablename__ = "variants"
    __table_args__ = (Index("ix_variants_product", "product_id", "position"),)

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(500), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # {"size": "M", "colour": "navy"}
    barcode: Mapped[str | None] = mapped_column(String(14), unique=True, nullable=True)  # GTIN-8/12/13/14
    image_urls: Mapped[list[str]] = mapped_column(JSONType, default=list)
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Publication(Base):
    """The product is sold in the channel. No row: not sold there (online only, stores only, everywhere)."""

    __tablename__ = "publications"
    __table_args__ = (Index("ix_publications_channel", "channel_code"),)

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), primary_key=True)
    channel_code: Mapped[str] = mapped_column(ForeignKey("channels.code"), primary_key=True)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)
