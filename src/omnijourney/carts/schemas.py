"""Request and response shapes of the carts API. Money is a decimal string (never a float)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field


class CartCreate(BaseModel):
    """Open the owner's active cart (created when they have none)."""

    channel: str = Field(min_length=1, max_length=64)
    customer_id: str | None = Field(default=None, max_length=32)
    anonymous_id: str | None = Field(default=None, min_length=1, max_length=200)
    currency: str | None = Field(default=None, max_length=3)


class CartLineCreate(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = 1
    channel: str = Field(min_length=1, max_length=64)
    currency: str | None = Field(default=None, max_length=3)
    expected_version: int | None = Field(default=None, description="409 version_mismatch if the cart changed")


class CartLineUpdate(BaseModel):
    quantity: int = Field(description="0 removes the line")
    channel: str = Field(min_length=1, max_length=64)
    expected_version: int | None = None


class CartAssign(BaseModel):
    customer_id: str = Field(min_length=1, max_length=32)
    channel: str = Field(min_length=1, max_length=64)


class VoucherCreate(BaseModel):
    code: str = Field(min_length=1, max_length=64)
    channel: str = Field(min_length=1, max_length=64)
    expected_version: int | None = None


class HandoffCreate(BaseModel):
    channel: str = Field(min_length=1, max_length=64, description="where the cart is handed off from")
    ttl_seconds: int | None = Field(default=None, description="default OMNI_CART_HANDOFF_TTL_S (900)")


class HandoffClaim(BaseModel):
    channel: str = Field(min_length=1, max_length=64, description="the device's or POS's channel")


class HandoffRead(BaseModel):
    code: str
    cart_id: str
    expires_at: datetime
    link: str
    svg_url: str
    png_url: str
    png_data_uri: str


class CartLineRead(BaseModel):
    sku: str
    product_id: str | None
    title: str | None
    quantity: int
    channel: str
    sellable: bool
    unit_price: Decimal | None
    subtotal: Decimal | None
    discount: Decimal | None
    total: Decimal | None
    promotions: list[dict[str, Any]]
    problem: str | None


class CartRead(BaseModel):
    id: str
    customer_id: str | None
    anonymous_id: str | None
    status: str
    currency: str
    channel: str
    merged_into: str | None
    version: int
    lines: list[CartLineRead]
    priced: bool
    subtotal: Decimal | None
    discount: Decimal | None
    shipping: Decimal | None
    tax: Decimal | None
    total: Decimal | None
    promotions: list[dict[str, Any]]
    voucher_codes: list[str]
    vouchers: list[dict[str, Any]]
    problems: list[str]
    created_at: datetime
    updated_at: datetime


class CartSummary(BaseModel):
    id: str
    customer_id: str | None
    anonymous_id: str | None
    status: str
    currency: str
    channel: str
    merged_into: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class CartPage(BaseModel):
    items: list[CartSummary]
