"""Request and response shapes of the pricing API. Amounts travel as decimal strings ("19.99"), never floats.

Whole numbers in requests are strict (``StrictInt``): JSON ``true`` or ``"2"`` is refused with a 422 naming the
field instead of being read as 1 or 2. Times without a zone are UTC.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from omnijourney.pricing.rules import RuleSpec, TargetSpec

Kind = Literal["base", "channel", "segment"]


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PriceListCreate(BaseModel):
    code: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    currency: str = Field(min_length=3, max_length=3)
    kind: Kind = "base"
    channel_codes: list[str] = Field(default_factory=list)
    channel_types: list[str] = Field(default_factory=list)
    segments: list[str] = Field(default_factory=list)
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    priority: StrictInt = 0
    prices_include_tax: bool = True


class PriceListUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: Kind | None = None
    channel_codes: list[str] | None = None
    channel_types: list[str] | None = None
    segments: list[str] | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    priority: StrictInt | None = None
    prices_include_tax: bool | None = None
    active: bool | None = None


class PriceListRead(_Read):
    code: str
    name: str
    currency: str
    kind: str
    channel_codes: list[str]
    channel_types: list[str]
    segments: list[str]
    valid_from: datetime | None
    valid_to: datetime | None
    priority: int
    prices_include_tax: bool
    active: bool
    created_at: datetime
    updated_at: datetime


class PricesSet(BaseModel):
    """Unit prices to insert or replace (SKU -> amount), and SKUs whose price to remove."""

    prices: dict[str, Decimal] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class PricesRead(BaseModel):
    price_list: str
    currency: str
    prices: dict[str, Decimal]


class MarketSet(BaseModel):
    taxes_included: bool
    tax_rates: dict[str, Decimal] = Field(default_factory=dict, description="tax class -> rate, 0.20 = 20 %")
    shipping_fees: dict[str, Decimal] = Field(default_factory=dict, description="currency -> fee")


class MarketRead(BaseModel):
    market: str
    taxes_included: bool
    tax_rates: dict[str, Decimal]
    shipping_fees: dict[str, Decimal]


class PromotionCreate(BaseModel):
    code: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    rule: RuleSpec
    target: TargetSpec = Field(default_factory=TargetSpec)
    priority: StrictInt = 0
    exclusive: bool = False
    stacking_group: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    channel_codes: list[str] = Field(default_factory=list)
    channel_types: list[str] = Field(default_factory=list)
    segments: list[str] = Field(default_factory=list)
    currency: str | None = None
    min_basket: Decimal | None = None
    needs_voucher: bool = False


class PromotionUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    rule: RuleSpec | None = None
    target: TargetSpec | None = None
    priority: StrictInt | None = None
    exclusive: bool | None = None
    stacking_group: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    channel_codes: list[str] | None = None
    channel_types: list[str] | None = None
    segments: list[str] | None = None
    currency: str | None = None
    min_basket: Decimal | None = None
    needs_voucher: bool | None = None
    active: bool | None = None


class PromotionRead(BaseModel):
    code: str
    name: str
    rule: dict
    target: dict
    priority: int
    exclusive: bool
    stacking_group: str | None
    valid_from: datetime | None
    valid_to: datetime | None
    channel_codes: list[str]
    channel_types: list[str]
    segments: list[str]
    currency: str | None
    min_basket: Decimal | None
    needs_voucher: bool
    active: bool
    created_at: datetime
    updated_at: datetime


class VoucherCreate(BaseModel):
    code: str = Field(min_length=1, max_length=64)
    promotion: str
    max_uses: StrictInt | None = Field(default=None, description="1: single use; absent: unlimited")
    per_customer_limit: StrictInt | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None


class VoucherUpdate(BaseModel):
    active: bool | None = None
    max_uses: StrictInt | None = None
    per_customer_limit: StrictInt | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None


class VoucherRead(_Read):
    code: str
    promotion_code: str
    max_uses: int | None
    per_customer_limit: int | None
    used: int
    valid_from: datetime | None
    valid_to: datetime | None
    active: bool
    created_at: datetime


class RedemptionCreate(BaseModel):
    order_ref: str = Field(min_length=1, max_length=64)
    customer_id: str | None = None


class RedemptionRead(_Read):
    voucher_code: str
    customer_id: str | None
    order_ref: str
    at: datetime


class QuoteLineIn(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    quantity: StrictInt = Field(description="a whole number from 1 to 999 (true is not 1)")


class QuoteRequest(BaseModel):
    channel: str = Field(description='channel code, e.g. "web" or a store\'s "S01" (not its type)')
    lines: list[QuoteLineIn]
    customer_id: str | None = None
    segments: list[str] = Field(default_factory=list)
    vouchers: list[str] = Field(default_factory=list)
    at: datetime | None = Field(default=None, description="moment to price at (default now; no zone: UTC)")
    currency: str | None = None
    fulfilment: Literal["delivery", "in_store"] | None = Field(
        default=None, description="delivery: the market's shipping fee applies; in_store: sold at a store's "
                                  "counter or collected there, no shipping. Default: in_store in store channels, "
                                  "delivery elsewhere")
    with_shipping: bool = True
    strict_vouchers: bool = True


class CandidateRead(_Read):
    price_list: str
    unit_price: Decimal
    status: str
    reason: str


class LineDiscountRead(_Read):
    promotion_id: str
    name: str
    amount: Decimal


class QuoteLineRead(_Read):
    sku: str
    quantity: int
    unit_price: Decimal
    price_list: str
    price_reason: str
    candidates: list[CandidateRead]
    subtotal: Decimal
    discounts: list[LineDiscountRead]
    discount_total: Decimal
    total: Decimal
    tax_class: str
    tax_rate: Decimal
    tax: Decimal = Field(description="added_tax + included_tax")
    added_tax: Decimal = Field(description="tax added on top of the prices (0 where prices include tax)")
    included_tax: Decimal = Field(description="tax contained in the prices, shown, not added again")


class PromotionResultRead(_Read):
    promotion_id: str
    name: str
    status: str
    code: str
    reason: str
    amount: Decimal
    voucher: str | None


class VoucherResultRead(_Read):
    code: str
    promotion_id: str
    status: str
    reason_code: str
    reason: str


class QuoteRead(_Read):
    """A priced basket. On every line and on the basket:
    total = subtotal - discount_total + shipping_fee - shipping_discount + added_tax (lines have no shipping)."""

    currency: str
    channel_code: str
    market: str
    at: datetime
    taxes_included: bool
    fulfilment: str = Field(description="delivery or in_store (no shipping)")
    shipping_reason: str = Field(description="why shipping_fee is what it is")
    lines: list[QuoteLineRead]
    promotions: list[PromotionResultRead]
    vouchers: list[VoucherResultRead]
    subtotal: Decimal
    discount_total: Decimal = Field(description="discounts on the goods (not shipping)")
    items_total: Decimal = Field(description="subtotal - discount_total")
    shipping_fee: Decimal
    shipping_discount: Decimal = Field(description="the part of shipping_fee waived by promotions")
    shipping: Decimal = Field(description="shipping_fee - shipping_discount")
    added_tax: Decimal = Field(description="tax added on top of the prices (0 where prices include tax)")
    included_tax: Decimal = Field(description="tax contained in the prices, shown, not added again")
    tax_total: Decimal = Field(description="added_tax + included_tax")
    total: Decimal


class ChannelPriceRead(_Read):
    channel: str
    currency: str
    price: Decimal | None = Field(description="effective price in the channel; null: sold there without a price")
    neutral: Decimal | None = Field(description="price from untargeted rules only (its base list, untargeted "
                                                "promotions)")
    rules: list[str] = Field(description="channel-targeted price list or promotions that changed the price")


class FindingRead(_Read):
    product_id: str
    sku: str
    status: Literal["unexplained", "missing_price", "explained"]
    reason: str
    prices: list[ChannelPriceRead]


class ConsistencyRead(_Read):
    at: datetime
    channels: list[str]
    skus_checked: int
    products: list[str] = Field(description="products with an unexplained difference or a missing price")
    findings: list[FindingRead]
