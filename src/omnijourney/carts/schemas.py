"""Request and response shapes of the carts API. Money is a decimal string (never a float).

Whole numbers in requests are strict (``StrictInt``): JSON ``true`` or ``"2"`` is refused with a 422 naming the
field instead of being read as 1 or 2. ``channel`` is always a channel's code ("web", "S01"); an unknown code
is a 404 naming ``channel``. Money terms: see ``CartRead``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field, StrictInt


class CartCreate(BaseModel):
    """Open the owner's active cart (created when they have none)."""

    channel: str = Field(min_length=1, max_length=64)
    customer_id: str | None = Field(default=None, max_length=32)
    anonymous_id: str | None = Field(default=None, min_length=1, max_length=200)
    currency: str | None = Field(default=None, max_length=3)


class CartLineCreate(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    quantity: StrictInt = 1
    channel: str = Field(min_length=1, max_length=64)
    currency: str | None = Field(default=None, max_length=3)
    expected_version: StrictInt | None = Field(default=None, description="409 version_mismatch if the cart changed")


class CartLineUpdate(BaseModel):
    quantity: StrictInt = Field(description="0 removes the line")
    channel: str = Field(min_length=1, max_length=64)
    expected_version: StrictInt | None = None


class CartAssign(BaseModel):
    customer_id: str = Field(min_length=1, max_length=32)
    channel: str = Field(min_length=1, max_length=64)


class VoucherCreate(BaseModel):
    code: str = Field(min_length=1, max_length=64)
    channel: str = Field(min_length=1, max_length=64)
    expected_version: StrictInt | None = None


class HandoffCreate(BaseModel):
    channel: str = Field(min_length=1, max_length=64, description="where the cart is handed off from")
    ttl_seconds: StrictInt | None = Field(default=None, description="default OMNI_CART_HANDOFF_TTL_S (900)")


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
    total: Decimal | None = Field(description="subtotal - discount + added_tax")
    promotions: list[dict[str, Any]]
    problem: str | None
    tax: Decimal | None = Field(default=None, description="added_tax + included_tax")
    added_tax: Decimal | None = Field(default=None, description="tax added on top (0 where prices include tax)")
    included_tax: Decimal | None = Field(default=None, description="tax contained in the prices, not added again")


class CartRead(BaseModel):
    """A cart re-quoted now. Over its priced lines, like every quote:
    total = subtotal - discount + shipping_fee - shipping_discount + added_tax."""

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
    discount: Decimal | None = Field(description="discounts on the goods (waived shipping: shipping_discount)")
    shipping: Decimal | None = Field(description="shipping_fee - shipping_discount")
    tax: Decimal | None = Field(description="added_tax + included_tax")
    total: Decimal | None = Field(description="subtotal - discount + shipping_fee - shipping_discount + added_tax")
    items_total: Decimal | None = Field(default=None, description="subtotal - discount")
    shipping_fee: Decimal | None = Field(default=None, description="delivery's fee before promotions; 0 in_store")
    shipping_discount: Decimal | None = Field(default=None, description="the part of shipping_fee waived")
    added_tax: Decimal | None = Field(default=None, description="tax added on top (0 where prices include tax)")
    included_tax: Decimal | None = Field(default=None, description="tax contained in the prices, not added again")
    taxes_included: bool | None = None
    fulfilment: str | None = Field(default=None, description="delivery, or in_store (a store's counter: no "
                                                             "shipping)")
    shipping_reason: str | None = None
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
    next_cursor: str | None = None  # pass it back as ``cursor`` for the next page (None on the last)
