"""The consistency check: SKUs whose effective price differs between channels without a rule that says so.

For every active channel and every SKU that has a price somewhere and is sold in the channel, the check
prices a one-unit basket for an anonymous customer at ``at`` (no vouchers, no shipping) twice:

- *effective*: as the channel sells it (its base list, channel lists, promotions that target the channel),
- *neutral*: with untargeted rules only (its base list and promotions targeting no channel).

Within one currency, channels whose neutral prices disagree are **unexplained** (e.g. two default base
lists that disagree, or markets that convert net prices with different rates); channels whose neutral
prices agree but effective prices differ are **explained** by the channel rules named. A SKU sold in a
channel with no price there (e.g. no list in that channel's currency) is **missing_price**.

Set-based: lists, prices and promotions are loaded once; the catalog lookup is one call per channel;
neutral prices are computed once per (base lists, market, currency) and reused by channels sharing them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnijourney.catalog.models import Channel
from omnijourney.catalog.service import variants_for_skus
from omnijourney.core.errors import Invalid
from omnijourney.core.time import parse_ts, utcnow
from omnijourney.pricing import engine, models
from omnijourney.pricing.money import fmt, from_minor
from omnijourney.pricing.promotions import PromotionIndex
from omnijourney.pricing.quoting import market_for, promotion_index
from omnijourney.pricing.rejections import check_context


@dataclass(frozen=True, slots=True)
class ChannelPrice:
    channel: str
    currency: str
    price: Decimal | None  # effective; None: no price in this channel
    neutral: Decimal | None
    rules: tuple[str, ...]  # channel-targeted price list / promotions that changed the price


@dataclass(frozen=True, slots=True)
class Finding:
    product_id: str
    sku: str
    status: str  # unexplained | explained | missing_price
    reason: str
    prices: tuple[ChannelPrice, ...]


@dataclass(frozen=True, slots=True)
class Report:
    at: datetime
    channels: tuple[str, ...]
    skus_checked: int
    products: tuple[str, ...]  # products with an unexplained difference or a missing price
    findings: tuple[Finding, ...]  # unexplained and missing_price first, then explained


def _lists(session: Session) -> list[engine.PriceList]:
    rows = list(session.scalars(select(models.PriceList).where(models.PriceList.active.is_(True))))
    prices: dict[str, dict[str, Decimal]] = {r.code: {} for r in rows}
    currency = {r.code: r.currency for r in rows}
    for code, sku, minor in session.execute(select(models.PriceEntry.price_list_code, models.PriceEntry.sku,
                                                   models.PriceEntry.amount_minor)):
        if code in prices:
            prices[code][sku] = from_minor(minor, currency[code])
    return [engine.PriceList(r.code, r.currency, prices[r.code], r.priority, frozenset(r.channel_codes),
                            frozenset(r.channel_types), frozenset(r.segments), r.valid_from, r.valid_to,
                            r.prices_include_tax) for r in rows]


def _base_for(channel: Channel, lists: Sequence[engine.PriceList], targeted: set[str]) -> list[engine.PriceList]:
    base = [pl for pl in lists if pl.code not in targeted]
    if channel.default_price_list:
        return [pl for pl in base if pl.code == channel.default_price_list]
    return [pl for pl in base if pl.currency == channel.currency]


def _price(line: engine.BasketLine, ctx: engine.Context, lists: Sequence[engine.PriceList],
           index: PromotionIndex) -> engine.Quote | None:
    try:
        return engine.price_basket([line], ctx, price_lists=lists, promotions=index)
    except Invalid:
        return None


def _goods(q: engine.Quote | None) -> Decimal | None:
    # the price of the goods in the market's terms, before any tax added on top
    return q.lines[0].subtotal - q.lines[0].discount_total if q else None


def check(session: Session, *, at: datetime | None = None) -> Report:
    """Compare every priced SKU's effective price across the active channels at ``at`` (default now; a time
    without a zone is UTC, as everywhere in the platform)."""
    at = parse_ts(at) or utcnow()
    channels = list(session.scalars(select(Channel).where(Channel.active.is_(True)).order_by(Channel.code)))
    lists = _lists(session)
    targeted = {pl.code for pl in lists if pl.targets_channel or pl.segments}
    full = promotion_index(session)
    neutral_index = PromotionIndex(p for p in full.promotions if not p.targets_channel)
    skus = sorted({sku for pl in lists for sku in pl.prices})
    neutral_memo: dict[tuple[tuple[str, ...], str, str, str], Decimal | None] = {}
    per_sku: dict[str, list[ChannelPrice]] = {}
    product_of: dict[str, str] = {}
    for channel in channels:
        market = market_for(session, market=channel.market, currency=channel.currency, with_shipping=False)
        ctx = engine.Context(channel.code, channel.type, channel.currency, market, at)
        base = _base_for(channel, lists, targeted)
        channel_lists = [pl for pl in lists if pl.targets_channel and check_context(pl, ctx) is None]
        channel_promos = [p for p in full.promotions if p.targets_channel and check_context(p, ctx) is None]
        channel_rules = {pl.code for pl in channel_lists} | {p.id for p in channel_promos}
        base_key = tuple(pl.code for pl in base)
        for sku, info in variants_for_skus(session, skus, channel.code).items():
            if not info.sellable:
                continue
            product_of[sku] = info.product_id
            line = engine.BasketLine(sku, 1, info.product_id, info.category_ids, info.tax_class)
            key = (base_key, channel.market, channel.currency, sku)
            if key not in neutral_memo:
                q = _price(line, ctx, base, neutral_index)
                neutral_memo[key] = _goods(q)
            neutral = neutral_memo[key]
            price, rules = neutral, ()
            if channel_promos or any(sku in pl.prices for pl in channel_lists):
                q = _price(line, ctx, base + channel_lists, full)
                price = _goods(q)
                if q is not None:
                    used = [q.lines[0].price_list, *(d.promotion_id for d in q.lines[0].discounts)]
                    rules = tuple(r for r in used if r in channel_rules)
            per_sku.setdefault(sku, []).append(ChannelPrice(channel.code, channel.currency, price, neutral, rules))
    findings = [f for sku in sorted(per_sku) if (f := _judge(product_of[sku], sku, per_sku[sku])) is not None]
    findings.sort(key=lambda f: (f.status == "explained", f.product_id, f.sku))
    return Report(at, tuple(c.code for c in channels), len(per_sku),
                  tuple(sorted({f.product_id for f in findings if f.status != "explained"})), tuple(findings))


def _judge(product_id: str, sku: str, prices: list[ChannelPrice]) -> Finding | None:
    missing = [p for p in prices if p.price is None]
    if missing and len(missing) < len(prices):
        where = ", ".join(f"{p.channel} ({p.currency})" for p in missing)
        return Finding(product_id, sku, "missing_price", f"sold but no price in {where}", tuple(prices))
    by_currency: dict[str, list[ChannelPrice]] = {}
    for p in prices:
        if p.price is not None:
            by_currency.setdefault(p.currency, []).append(p)
    status, reasons = None, []
    for currency, group in sorted(by_currency.items()):
        neutral = {p.neutral for p in group if p.neutral is not None}
        if len(neutral) > 1:
            status = "unexplained"
            reasons.append("prices differ without a channel rule: " + ", ".join(
                f"{p.channel} {fmt(p.neutral, currency)}" for p in group if p.neutral is not None))
        elif len({p.price for p in group}) > 1 and status is None:
            status = "explained"
            reasons.append("channel rules: " + ", ".join(
                f"{p.channel} {fmt(p.price or Decimal(0), currency)} by {' + '.join(p.rules)}"
                for p in group if p.rules))
    if status is None:
        return None
    return Finding(product_id, sku, status, "; ".join(reasons), tuple(prices))
