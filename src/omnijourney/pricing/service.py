"""Pricing use cases: price lists and their prices, tax markets; promotions, vouchers and quotes re-exported.

The functions other domains call: ``quote`` (carts, on every read), ``redeem_voucher`` (orders). Every
function takes a ``Session``, flushes and never commits (the caller owns the transaction).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.time import utcnow
from omnijourney.db import dialect_insert
from omnijourney.pricing import validate as v
from omnijourney.pricing.models import PriceEntry, PriceList, TaxMarket, TaxRate
from omnijourney.pricing.money import check_currency, from_minor
from omnijourney.pricing.offers import (  # noqa: F401  (the public surface of the domain)
    create_promotion,
    create_voucher,
    get_promotion,
    get_voucher,
    list_promotions,
    list_vouchers,
    redeem_voucher,
    update_promotion,
    update_voucher,
)
from omnijourney.pricing.quoting import quote  # noqa: F401

KINDS = ("base", "channel", "segment")
_LIST_FIELDS = ("name", "kind", "channel_codes", "channel_types", "segments", "valid_from", "valid_to", "priority",
                "prices_include_tax", "active")
MAX_BULK = 10_000


def _apply_list(row: PriceList, spec: Mapping[str, Any]) -> None:
    kind = spec.get("kind") or "base"
    if kind not in KINDS:
        raise Invalid(f"unknown price list kind {kind!r}: one of {', '.join(KINDS)}", field="kind")
    name = (spec.get("name") or "").strip()
    if not name or len(name) > 200:
        raise Invalid("a price list needs a name of 1-200 characters", field="name")
    codes = v.names(spec.get("channel_codes") or (), field="channel_codes")
    types = v.channel_types(spec.get("channel_types") or ())
    segments = v.names(spec.get("segments") or (), field="segments")
    # the kind says what the list targets, so a base list can never silently favour one channel
    if kind == "base" and (codes or types or segments):
        raise Invalid("a base list targets no channel and no segment (use kind channel or segment)", field="kind")
    if kind == "channel" and (not (codes or types) or segments):
        raise Invalid("a channel list targets channel_codes or channel_types, and no segment", field="kind")
    if kind == "segment" and not segments:
        raise Invalid("a segment list targets at least one segment", field="segments")
    row.name, row.kind, row.channel_codes, row.channel_types, row.segments = name, kind, codes, types, segments
    row.valid_from, row.valid_to = v.window(spec.get("valid_from"), spec.get("valid_to"))
    row.priority = int(spec.get("priority") or 0)
    row.prices_include_tax = bool(spec.get("prices_include_tax", True))
    row.active = bool(spec.get("active", True))
    row.updated_at = utcnow()


def create_price_list(session: Session, *, code: str, name: str, currency: str, kind: str = "base",
                      channel_codes: Sequence[str] = (), channel_types: Sequence[str] = (),
                      segments: Sequence[str] = (), valid_from: datetime | None = None,
                      valid_to: datetime | None = None, priority: int = 0,
                      prices_include_tax: bool = True) -> PriceList:
    """Create a price list: ``base`` (a channel's default), ``channel`` or ``segment`` (targeted)."""
    v.code(code)
    if session.get(PriceList, code) is not None:
        raise Conflict(f"a price list with code {code!r} exists already", field="code")
    row = PriceList(code=code, currency=check_currency(currency), created_at=utcnow())
    _apply_list(row, dict(name=name, kind=kind, channel_codes=channel_codes, channel_types=channel_types,
                          segments=segments, valid_from=valid_from, valid_to=valid_to, priority=priority,
                          prices_include_tax=prices_include_tax))
    session.add(row)
    session.flush()
    return row


def get_price_list(session: Session, *, code: str, field: str = "code") -> PriceList:
    row = session.get(PriceList, code)
    if row is None:
        raise NotFound(f"no price list {code!r}", field=field)
    return row


def update_price_list(session: Session, *, code: str, changes: Mapping[str, Any]) -> PriceList:
    """Change some fields (not the code or currency: prices are exact in it); validated as a whole again."""
    row = get_price_list(session, code=code)
    unknown = sorted(set(changes) - set(_LIST_FIELDS))
    if unknown:
        raise Invalid(f"price list field {unknown[0]!r} cannot be changed", field=unknown[0])
    _apply_list(row, {**{f: getattr(row, f) for f in _LIST_FIELDS}, **changes})
    session.flush()
    return row


def list_price_lists(session: Session) -> list[PriceList]:
    return list(session.scalars(select(PriceList).order_by(PriceList.code)))


def set_prices(session: Session, *, price_list: str, prices: Mapping[str, Decimal | str]) -> int:
    """Insert or replace unit prices (SKU -> amount exact in the list's currency) in one statement."""
    row = get_price_list(session, code=price_list, field="price_list")
    if len(prices) > MAX_BULK:
        raise Invalid(f"at most {MAX_BULK} prices per call", field="prices")
    entries = []
    for sku, amount in sorted(prices.items()):
        if not sku or len(sku) > 64:
            raise Invalid(f"SKU {sku!r} must be 1-64 characters", field="prices")
        entries.append({"price_list_code": price_list, "sku": sku,
                        "amount_minor": v.money_minor(amount, row.currency, field=f"prices.{sku}")})
    if entries:
        stmt = dialect_insert(session, PriceEntry)
        session.execute(stmt.on_conflict_do_update(index_elements=["price_list_code", "sku"],
                                                   set_={"amount_minor": stmt.excluded.amount_minor}), entries)
        row.updated_at = utcnow()
        session.flush()
    return len(entries)


def remove_prices(session: Session, *, price_list: str, skus: Iterable[str]) -> int:
    """Remove the prices of ``skus`` from the list; returns how many were there."""
    row = get_price_list(session, code=price_list, field="price_list")
    wanted = sorted(set(skus))
    removed = session.execute(delete(PriceEntry).where(PriceEntry.price_list_code == price_list,
                                                       PriceEntry.sku.in_(wanted))).rowcount if wanted else 0
    row.updated_at = utcnow()
    session.flush()
    return removed


def list_prices(session: Session, *, price_list: str, skus: Iterable[str] | None = None) -> dict[str, Decimal]:
    """SKU -> unit price of the list (all of them, or only ``skus``)."""
    row = get_price_list(session, code=price_list, field="price_list")
    stmt = select(PriceEntry.sku, PriceEntry.amount_minor).where(PriceEntry.price_list_code == price_list)
    if skus is not None:
        stmt = stmt.where(PriceEntry.sku.in_(sorted(set(skus))))
    return {sku: from_minor(minor, row.currency) for sku, minor in session.execute(stmt.order_by(PriceEntry.sku))}


def set_market(session: Session, *, market: str, taxes_included: bool, tax_rates: Mapping[str, Decimal | str],
               shipping_fees: Mapping[str, Decimal | str] | None = None) -> TaxMarket:
    """Say how ``market`` shows prices (tax included or added on top), its rate per tax class (0.20 = 20 %)
    and its shipping fee per currency. Replaces what was there."""
    if not market or len(market) > 8 or market != market.upper():
        raise Invalid(f"market {market!r} is not an upper-case country code such as DE", field="market")
    fees: dict[str, str] = {}
    for currency, fee in sorted((shipping_fees or {}).items()):
        minor = v.money_minor(fee, check_currency(currency, field="shipping_fees"), field=f"shipping_fees.{currency}")
        fees[currency] = str(from_minor(minor, currency))
    rates = {cls: v.rate_ppm(rate, field=f"tax_rates.{cls}") for cls, rate in sorted(tax_rates.items())}
    for cls in rates:
        if not cls or len(cls) > 32:
            raise Invalid(f"tax class {cls!r} must be 1-32 characters", field="tax_rates")
    row = session.get(TaxMarket, market)
    if row is None:
        row = TaxMarket(market=market)
        session.add(row)
    row.taxes_included, row.shipping_fees, row.updated_at = taxes_included, fees, utcnow()
    session.flush()
    session.execute(delete(TaxRate).where(TaxRate.market == market))
    session.add_all(TaxRate(market=market, tax_class=cls, rate_ppm=ppm) for cls, ppm in rates.items())
    session.flush()
    return row


def get_market(session: Session, *, market: str) -> tuple[TaxMarket, dict[str, Decimal]]:
    """The market's settings and its rates by tax class."""
    row = session.get(TaxMarket, market)
    if row is None:
        raise NotFound(f"no tax market {market!r}", field="market")
    rates = session.execute(select(TaxRate.tax_class, TaxRate.rate_ppm).where(TaxRate.market == market))
    return row, {cls: Decimal(ppm).scaleb(-6).normalize() for cls, ppm in rates}
