"""The one call between carts and pricing: quote a cart's lines through the promotion engine.

A cart never stores prices: every read re-quotes, so a cart never shows a price the checkout will not honour.
Lines that cannot be priced here (not sold in the channel, no list price) stay in the cart, unpriced, with
the reason; the rest of the cart is still quoted.

A cart shows every term of its quote and satisfies the quote's money equation (``pricing/quoting.py``), on
each priced line and on the cart::

    total = subtotal - discount + shipping_fee - shipping_discount + added_tax

``discount`` is the goods' discount only; waived shipping is ``shipping_discount`` and ``shipping`` is
``shipping_fee - shipping_discount``. ``included_tax`` (tax-inclusive markets) is shown, not added. A cart in a
store channel is a counter sale: no shipping (``fulfilment`` ``in_store``, ``shipping_reason`` says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from omnijourney.catalog.service import VariantInfo, get_channel
from omnijourney.core.errors import OmniError
from omnijourney.pricing import engine
from omnijourney.pricing.quoting import quote as pricing_quote


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
    tax: Decimal | None = None
    added_tax: Decimal | None = None
    included_tax: Decimal | None = None

    def terms(self) -> dict[str, Any]:
        """The line's money terms beyond subtotal, discount and total (for ``CartLineRead``)."""
        return {"tax": self.tax, "added_tax": self.added_tax, "included_tax": self.included_tax}


@dataclass(slots=True)
class CartQuote:
    """Prices of a cart's lines as the checkout would charge them now; ``priced`` False without an engine."""

    currency: str
    priced: bool
    lines: list[QuotedLine]
    subtotal: Decimal | None = None
    discount: Decimal | None = None  # the goods' discounts; waived shipping is ``shipping_discount``
    shipping: Decimal | None = None  # shipping_fee - shipping_discount
    tax: Decimal | None = None  # added_tax + included_tax
    total: Decimal | None = None
    promotions: list[dict[str, Any]] = field(default_factory=list)
    vouchers: list[dict[str, Any]] = field(default_factory=list)  # code, status, reason_code, reason
    problems: list[str] = field(default_factory=list)
    items_total: Decimal | None = None  # subtotal - discount
    shipping_fee: Decimal | None = None
    shipping_discount: Decimal | None = None
    added_tax: Decimal | None = None
    included_tax: Decimal | None = None
    taxes_included: bool | None = None
    fulfilment: str | None = None  # delivery | in_store
    shipping_reason: str | None = None

    def terms(self) -> dict[str, Any]:
        """The money terms beyond subtotal, discount, shipping, tax and total (for ``CartRead``)."""
        return {"items_total": self.items_total, "shipping_fee": self.shipping_fee,
                "shipping_discount": self.shipping_discount, "added_tax": self.added_tax,
                "included_tax": self.included_tax, "taxes_included": self.taxes_included,
                "fulfilment": self.fulfilment, "shipping_reason": self.shipping_reason}


def _pricing_quote(session: Session, *, currency: str, channel_code: str, customer_id: str | None,
                   lines: Sequence[engine.BasketLine], voucher_codes: Sequence[str],
                   strict_vouchers: bool, fulfilment: str | None = None,
                   items: Mapping[str, VariantInfo] | None = None) -> engine.Quote | None:
    """The pricing service's quote (``pricing.quoting.quote``) of a basket of distinct SKUs (``items``: the
    catalog's answer for them, read by the caller: not read again)."""
    return pricing_quote(session, channel_code=channel_code, lines=[(b.sku, b.quantity) for b in lines],
                         customer_id=customer_id, vouchers=voucher_codes, currency=currency,
                         strict_vouchers=strict_vouchers, fulfilment=fulfilment, items=items)


def quote_cart(session: Session, *, currency: str, channel_code: str, customer_id: str | None,
               lines: Sequence[tuple[str, int]], items: Mapping[str, VariantInfo],
               voucher_codes: Sequence[str] = (), strict_vouchers: bool = False,
               fulfilment: str | None = None) -> CartQuote:
    """Quote ``lines`` (sku, quantity) for the customer in the channel; ``items`` from ``variants_for_skus``;
    ``fulfilment`` (pricing's ``delivery`` or ``in_store``) defaults to the channel's rule.

    A cart read never fails because of pricing: a line or voucher the engine refuses is left out of the
    quote with the reason, and any other pricing error leaves the cart unpriced with the reason. With
    ``strict_vouchers`` (entering a code) a refused voucher raises the engine's error instead. An unknown
    ``channel_code`` is the caller's mistake, not pricing's: ``NotFound`` naming ``channel``.
    """
    get_channel(session, code=channel_code, field="channel")  # by primary key: no query once the session has it
    problems: dict[str, str] = {}
    general: list[str] = []
    basket: list[engine.BasketLine] = []
    for sku, qty in lines:
        info = items.get(sku)
        if info is None or not info.sellable:
            problems[sku] = f"not sold in channel {channel_code}"
            continue
        basket.append(engine.BasketLine(sku=sku, quantity=qty, product_id=info.product_id,
                                        category_ids=info.category_ids, tax_class=info.tax_class))
    codes = list(voucher_codes)
    quote: engine.Quote | None = None
    while basket:
        try:
            quote = _pricing_quote(session, currency=currency, channel_code=channel_code, customer_id=customer_id,
                                   lines=basket, voucher_codes=codes, strict_vouchers=strict_vouchers,
                                   fulfilment=fulfilment, items=items)
            if quote is None:
                general.append("pricing is not available")
            break
        except OmniError as exc:
            # one line without a price must not hide the whole cart: drop it, say why, quote the rest
            bad_line = _at_fault(exc, "lines", basket)
            bad_code = None if strict_vouchers else _at_fault(exc, "vouchers", codes)
            if bad_line is not None:
                problems[bad_line.sku] = exc.message
                basket.remove(bad_line)
            elif bad_code is not None:
                general.append(f"voucher {bad_code}: {exc.message}")
                codes.remove(bad_code)
            elif strict_vouchers:
                raise
            else:
                general.append(exc.message)
                break
    if quote is None:
        return CartQuote(currency=currency, priced=False,
                         problems=general + [f"{sku}: {why}" for sku, why in problems.items()],
                         lines=[QuotedLine(sku, qty, problem=problems.get(sku)) for sku, qty in lines])
    out = _from_engine(quote, lines, problems)
    out.problems[:0] = general
    return out


def _at_fault(exc: OmniError, name: str, items: Sequence[Any]) -> Any:
    """The item an error's field ``name[i]...`` points at, if it does."""
    field_name = exc.field or ""
    if not field_name.startswith(f"{name}["):
        return None
    try:
        index = int(field_name[len(name) + 1:field_name.index("]")])
    except ValueError:
        return None
    return items[index] if 0 <= index < len(items) else None


def _from_engine(quote: engine.Quote, lines: Sequence[tuple[str, int]], problems: Mapping[str, str]) -> CartQuote:
    by_sku = {ql.sku: ql for ql in quote.lines}
    out: list[QuotedLine] = []
    for sku, qty in lines:
        ql = by_sku.get(sku)
        if ql is None:
            out.append(QuotedLine(sku, qty, problem=problems.get(sku)))
            continue
        out.append(QuotedLine(sku, qty, unit_price=ql.unit_price, subtotal=ql.subtotal, discount=ql.discount_total,
                              total=ql.total, promotions=[{"promotion_id": d.promotion_id, "name": d.name,
                                                           "amount": str(d.amount)} for d in ql.discounts],
                              tax=ql.tax, added_tax=ql.added_tax, included_tax=ql.included_tax))
    promotions = [{"promotion_id": p.promotion_id, "name": p.name, "status": p.status, "code": p.code,
                   "reason": p.reason, "amount": str(p.amount), "voucher": p.voucher} for p in quote.promotions]
    vouchers = [{"code": v.code, "status": v.status, "reason_code": v.reason_code, "reason": v.reason}
                for v in quote.vouchers]
    rejected = [f"voucher {v.code}: {v.reason}" for v in quote.vouchers if v.status != "applied"]
    # the quote's terms as they are: waived shipping is a shipping discount, never part of ``discount``
    return CartQuote(currency=quote.currency, priced=True, lines=out, subtotal=quote.subtotal,
                     discount=quote.discount_total, shipping=quote.shipping, tax=quote.tax_total, total=quote.total,
                     promotions=promotions, vouchers=vouchers,
                     problems=[f"{sku}: {why}" for sku, why in problems.items()] + rejected,
                     items_total=quote.items_total, shipping_fee=quote.shipping_fee,
                     shipping_discount=quote.shipping_discount, added_tax=quote.added_tax,
                     included_tax=quote.included_tax, taxes_included=quote.taxes_included,
                     fulfilment=quote.fulfilment, shipping_reason=quote.shipping_reason)
