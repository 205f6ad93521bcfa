"""The one call between carts and pricing: quote a cart's lines through the promotion engine.

A cart never stores prices: every read re-quotes, so a cart never shows a price the checkout will not honour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session


@dataclass(slots=True)
class QuotedLine:
    sku: str
    quantity: int
    unit_price: Decimal | None = None
    subtotal: Decimal | None = None
    discount: Decimal | None = None
    total: Decimal | None = None
    promotions: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None  # why this line has no price (not sold in the channel, no list price, ...)


@dataclass(slots=True)
class CartQuote:
    """Prices of a cart's lines as the checkout would charge them now; ``priced`` False without an engine."""

    currency: str
    priced: bool
    lines: list[QuotedLine]
    subtotal: Decimal | None = None
    discount: Decimal | None = None
    shipping: Decimal | None = None
    tax: Decimal | None = None
    total: Decimal | None = None
    promotions: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def quote_cart(session: Session, *, currency: str, channel_code: str, customer_id: str | None,
               lines: Sequence[tuple[str, int]], voucher_codes: Sequence[str] = ()) -> CartQuote:
    """Quote ``lines`` (sku, quantity) for the customer in the channel, through the pricing engine."""
    return CartQuote(currency=currency, priced=False, lines=[QuotedLine(sku, qty) for sku, qty in lines],
                     problems=["pricing is not available yet"])
