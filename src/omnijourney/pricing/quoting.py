"""``quote``: load what a basket needs in a handful of set-based queries, then run the pure engine.

**The money equation.** Every quote, in every channel, and every cart (``carts/quote.py`` shows the same
terms) satisfies, on each line and on the basket::

    total = subtotal - discount + shipping_fee - shipping_discount + added_tax

- ``subtotal``: unit price x quantity, in the market's terms (prices with tax in tax-inclusive markets such
  as the demo's Germany, without tax in markets that add it, e.g. US sales tax);
- ``discount`` (``discount_total`` in a quote): the promotions' discounts on the goods, never shipping;
- ``shipping_fee``: what delivery costs before promotions; 0 on a line (shipping belongs to the basket) and
  0 when nothing is delivered: a store channel sells at its counter (``fulfilment`` ``in_store``) unless
  ``fulfilment="delivery"`` says the goods are to be delivered; ``shipping_reason`` explains the fee;
- ``shipping_discount``: the part of the fee a free-shipping promotion waives (``shipping`` = fee - waived);
- ``added_tax``: tax added on top of the prices; 0 in tax-inclusive markets, where the tax contained in
  the prices is shown as ``included_tax`` and not added again (``tax_total`` = added + included);
- ``total``: what the customer pays.

Basket terms are the sums of the lines' terms (plus the basket's shipping), ``items_total`` = subtotal -
discount, and the applied promotions' amounts add up to discount + shipping_discount. Shipping carries no tax.

Queries per quote, whatever the number of lines: channel, customer (if any), variants (2, catalog),
candidate price lists with their prices for the basket's SKUs, tax market with its rates, the promotions
stamp, vouchers and the customer's redemptions (only when codes were entered). Active promotions are kept per
process as a ``PromotionIndex`` and rebuilt when the stamp (count and latest ``updated_at`` of the
promotions table) changes, so a change is seen by the very next quote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from functools import cache
from threading import Lock
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from omnijourney.catalog.models import Channel
from omnijourney.catalog.service import VariantInfo, get_channel, variants_for_skus
from omnijourney.core.errors import Conflict, Invalid, NotFound, OmniError
from omnijourney.core.time import parse_ts, utcnow
from omnijourney.customers.models import Customer
from omnijourney.pricing import engine, models
from omnijourney.pricing.money import ZERO, from_minor
from omnijourney.pricing.promotions import PromotionIndex, Voucher
from omnijourney.pricing.rules import to_engine

MAX_QUANTITY = 999
MAX_LINES = 200
# a voucher that cannot be used at all is refused with a 4xx (strict); conditions of its promotion
# (threshold, channel, segment, items) are explained in the quote instead
_VOUCHER_ERRORS: dict[str, tuple[type[OmniError], str]] = {
    "voucher_inactive": (Invalid, "voucher_inactive"), "promotion_inactive": (Invalid, "voucher_inactive"),
    "voucher_expired": (Invalid, "voucher_expired"), "outside_window": (Invalid, "voucher_expired"),
    "voucher_currency": (Invalid, "voucher_currency"), "voucher_exhausted": (Conflict, "voucher_exhausted"),
    "voucher_customer_limit": (Conflict, "voucher_customer_limit"),
}
_cache: dict[str, tuple[tuple[int, object], PromotionIndex]] = {}
_cache_lock = Lock()


@cache
def _statements() -> dict[str, Any]:
    """The reads of every quote, built once with bound parameters (building them cost about what running them
    did): the promotions' stamp, a tax market, and the candidate price lists (a channel's default list or every
    base list in its currency; the prices of some SKUs or of all)."""
    TM, TR, PL, PE = models.TaxMarket, models.TaxRate, models.PriceList, models.PriceEntry
    out: dict[str, Any] = {
        "stamp": select(func.count(), func.max(models.Promotion.updated_at)),
        "market": select(TM.taxes_included, TM.shipping_fees, TR.tax_class, TR.rate_ppm)
        .outerjoin(TR, TR.market == TM.market).where(TM.market == bindparam("market"))}
    for by_default in (True, False):
        base = PL.code == bindparam("base") if by_default else PL.currency == bindparam("base")
        for some in (True, False):
            on = PE.price_list_code == PL.code
            if some:
                on = and_(on, PE.sku.in_(bindparam("skus", expanding=True)))
            out[f"lists:{by_default}:{some}"] = (
                select(PL.code, PL.currency, PL.priority, PL.channel_codes, PL.channel_types, PL.segments,
                       PL.valid_from, PL.valid_to, PL.prices_include_tax, PE.sku, PE.amount_minor)
                .outerjoin(PE, on).where(PL.active.is_(True), or_(PL.kind != "base", base)).order_by(PL.code))
    return out


def promotion_index(session: Session) -> PromotionIndex:
    """Every active promotion, indexed by target; cached per database until the promotions table changes."""
    stamp = tuple(session.execute(_statements()["stamp"]).one())
    key = session.get_bind().url.render_as_string(hide_password=True)
    hit = _cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    rows = session.scalars(select(models.Promotion).where(models.Promotion.active.is_(True)))
    index = PromotionIndex(to_engine(r) for r in rows)
    with _cache_lock:
        _cache[key] = (stamp, index)  # type: ignore[assignment]
    return index


def market_for(session: Session, *, market: str, currency: str, with_shipping: bool = True) -> engine.Market:
    """The engine's view of a tax market (no row: prices include tax, no rates, no shipping fee), in one query."""
    rows = session.execute(_statements()["market"], {"market": market}).all()
    if not rows:
        return engine.Market(market)
    included, fees = rows[0][0], rows[0][1]
    fee = Decimal(fees.get(currency, "0")) if with_shipping else ZERO
    rates = {cls: Decimal(ppm).scaleb(-6) for _, _, cls, ppm in rows if cls is not None}
    return engine.Market(market, included, rates, fee)


def candidate_lists(session: Session, channel: Channel, skus: Iterable[str] | None) -> list[engine.PriceList]:
    """The channel's base list (its default; without one, every base list in its currency) and every active
    targeted list, with their prices for ``skus`` (``None``: all prices), in one query."""
    by_default = bool(channel.default_price_list)
    params: dict[str, object] = {"base": channel.default_price_list if by_default else channel.currency}
    if skus is not None:
        params["skus"] = sorted(set(skus))
    statement = _statements()[f"lists:{by_default}:{skus is not None}"]
    rows = session.execute(statement, params).all()
    heads: dict[str, tuple] = {}
    prices: dict[str, dict[str, Decimal]] = {}
    for row in rows:
        code, currency = row[0], row[1]
        if code not in heads:
            heads[code], prices[code] = tuple(row[:9]), {}
        if row.sku is not None:
            prices[code][row.sku] = from_minor(row.amount_minor, currency)
    default = channel.default_price_list
    if default:
        if default not in heads:
            raise Invalid(f"channel {channel.code} names price list {default!r}, which does not exist or is not "
                          "active", field="channel", code="no_price_list")
        if heads[default][1] != channel.currency:
            raise Invalid(f"channel {channel.code} sells in {channel.currency} but its price list {default} is in "
                          f"{heads[default][1]}", field="channel", code="currency_mismatch")
    return [engine.PriceList(code, cur, prices[code], prio, frozenset(codes), frozenset(types), frozenset(segs),
                             start, end, incl)
            for code, (_, cur, prio, codes, types, segs, start, end, incl) in heads.items()]


def customer_segments(session: Session, customer_id: str) -> tuple[str, frozenset[str]]:
    """The surviving profile's id and its ``traits["segments"]`` (follows merges)."""
    customer = session.get(Customer, customer_id)
    for _ in range(8):  # merges chain rarely; a bound keeps a bad row from looping forever
        if customer is None or customer.merged_into is None:
            break
        customer = session.get(Customer, customer.merged_into)
    if customer is None:
        raise NotFound(f"no customer {customer_id!r}", field="customer_id")
    segments = (customer.traits or {}).get("segments") or []
    return customer.id, frozenset(str(s) for s in segments) if isinstance(segments, list) else frozenset()


def _basket(session: Session, lines: Sequence[tuple[str, int]], channel_code: str,
            known: dict[str, VariantInfo] | None = None) -> list[engine.BasketLine]:
    if len(lines) > MAX_LINES:
        raise Invalid(f"at most {MAX_LINES} lines per quote", field="lines")
    merged: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, (sku, qty) in enumerate(lines):
        if not isinstance(qty, int) or isinstance(qty, bool) or not 1 <= qty <= MAX_QUANTITY:
            raise Invalid(f"quantity of {sku} must be between 1 and {MAX_QUANTITY}, not {qty}",
                          field=f"lines[{i}].quantity")
        first.setdefault(sku, i)
        merged[sku] = merged.get(sku, 0) + qty  # the same SKU twice is one line
        if merged[sku] > MAX_QUANTITY:
            raise Invalid(f"quantity of {sku} must be at most {MAX_QUANTITY}", field=f"lines[{i}].quantity")
    if known is None:
        info = variants_for_skus(session, merged, channel_code)
    else:  # a Quoter's: what it has not seen yet is read once
        missing = [sku for sku in merged if sku not in known]
        if missing:
            known.update(variants_for_skus(session, missing, channel_code))
        info = known
    out = []
    for sku, qty in merged.items():
        v = info.get(sku)
        if v is None:
            raise NotFound(f"unknown SKU {sku}", field=f"lines[{first[sku]}].sku", code="unknown_sku")
        if not v.sellable:
            raise Invalid(f"SKU {sku} is not sold in channel {channel_code}", field=f"lines[{first[sku]}].sku",
                          code="not_sold_in_channel")
        out.append(engine.BasketLine(sku, qty, v.product_id, v.category_ids, v.tax_class))
    return out


def _vouchers(session: Session, codes: Sequence[str], customer_id: str | None) -> tuple[list[Voucher], list[str]]:
    wanted = list(dict.fromkeys(c.strip().upper() for c in codes if c.strip()))
    if not wanted:
        return [], []
    V, P = models.Voucher, models.Promotion
    found = session.execute(select(V, P.currency).outerjoin(P, P.code == V.promotion_code).where(V.code.in_(wanted)))
    rows, currency = {}, {}
    for r, promo_currency in found:
        rows[r.code], currency[r.code] = r, promo_currency
    for i, code in enumerate(wanted):
        if code not in rows:
            raise NotFound(f"unknown voucher {code}", field=f"vouchers[{i}]", code="unknown_voucher")
    mine: dict[str, int] = {}
    if customer_id is not None and any(r.per_customer_limit is not None for r in rows.values()):
        R = models.VoucherRedemption
        mine = dict(session.execute(select(R.voucher_code, func.count()).where(
            and_(R.voucher_code.in_(wanted), R.customer_id == customer_id)).group_by(R.voucher_code)).all())
    out = [Voucher(r.code, r.promotion_code, r.max_uses, r.used, r.per_customer_limit, mine.get(r.code, 0),
                   r.valid_from, r.valid_to, r.active, currency[r.code]) for r in (rows[c] for c in wanted)]
    return out, wanted


def quote(session: Session, *, channel_code: str, lines: Sequence[tuple[str, int]], customer_id: str | None = None,
          segments: Iterable[str] | None = None, vouchers: Sequence[str] = (), at: datetime | None = None,
          currency: str | None = None, with_shipping: bool = True, strict_vouchers: bool = True,
          fulfilment: str | None = None, items: Mapping[str, VariantInfo] | None = None) -> engine.Quote:
    """Price ``lines`` ((sku, quantity), a SKU given twice counts once) for a customer in a channel at ``at``.

    ``channel_code`` is a channel's code ("web", "S01"), never its type. ``segments`` adds to the segments in
    the customer's ``traits["segments"]``. ``currency``, when given, must be the channel's. ``fulfilment``:
    ``delivery`` or ``in_store`` (default: the channel's rule, a store sells at its counter without shipping);
    ``with_shipping=False`` leaves shipping out altogether. With ``strict_vouchers`` an unknown voucher is a
    404 and an expired, disabled, foreign-currency or exhausted one (or one over its per-customer limit) a
    422/409 naming it; without, such vouchers are only explained as rejected in the quote (for carts that must
    still show their content). ``at`` without a zone is taken as UTC. Raises ``NotFound`` for an unknown
    channel, customer or SKU, ``Invalid`` for a SKU not sold in the channel, a SKU without price, a bad
    quantity or a currency mismatch. ``items``: what ``catalog.variants_for_skus`` said of these SKUs in this
    channel, when the caller read it already in this transaction (a cart does): not read again.
    """
    channel = get_channel(session, code=channel_code, field="channel")
    if not channel.active:
        raise Invalid(f"channel {channel_code} is not active", field="channel")
    if fulfilment is not None and fulfilment not in engine.FULFILMENTS:
        raise Invalid(f"fulfilment {fulfilment!r} is not one of {', '.join(engine.FULFILMENTS)}", field="fulfilment")
    if currency is not None and currency != channel.currency:
        raise Invalid(f"channel {channel_code} sells in {channel.currency}, not {currency}", field="currency",
                      code="currency_mismatch")
    found = frozenset(segments or ())
    if customer_id is not None:
        customer_id, traits = customer_segments(session, customer_id)
        found |= traits
    basket = _basket(session, lines, channel_code, dict(items) if items is not None else None)
    entered, codes = _vouchers(session, vouchers, customer_id)
    ctx = engine.Context(channel.code, channel.type, channel.currency,
                         market_for(session, market=channel.market, currency=channel.currency,
                                    with_shipping=with_shipping),
                         parse_ts(at) or utcnow(), found, customer_id, fulfilment)
    result = engine.price_basket(basket, ctx, price_lists=candidate_lists(session, channel, [b.sku for b in basket]),
                                 promotions=promotion_index(session), vouchers=entered)
    if not with_shipping and result.fulfilment == engine.DELIVERY and result.lines:
        result = replace(result, shipping_reason=f"{engine.DELIVERY}: shipping not quoted (with_shipping false)")
    if strict_vouchers:
        for res in result.vouchers:
            refusal = _VOUCHER_ERRORS.get(res.reason_code)
            if refusal is not None:
                error, code = refusal
                reason = res.reason if res.reason.startswith("voucher") else f"voucher {res.code}: {res.reason}"
                raise error(reason, field=f"vouchers[{codes.index(res.code)}]", code=code)
    return result


class Quoter:
    """:func:`quote` for many baskets in one channel, without a customer or vouchers (the demo's order history, a
    price export): the channel, its market, its price lists and the promotions are read once, the SKUs as they
    come, and each basket is priced by the same engine with the same inputs :func:`quote` would give it.
    Prices or promotions changed while a Quoter lives are not seen: make a new one."""

    def __init__(self, session: Session, *, channel_code: str, with_shipping: bool = True) -> None:
        self.session = session
        self.channel = get_channel(session, code=channel_code, field="channel")
        self.market = market_for(session, market=self.channel.market, currency=self.channel.currency,
                                 with_shipping=with_shipping)
        self.lists = candidate_lists(session, self.channel, None)
        self.promotions = promotion_index(session)
        self.variants: dict[str, VariantInfo] = {}

    def preload(self, skus: Iterable[str]) -> None:
        """Read what the catalog says of these SKUs in one go (else each basket reads its new ones)."""
        missing = sorted(set(skus) - self.variants.keys())
        if missing:
            self.variants.update(variants_for_skus(self.session, missing, self.channel.code))

    def quote(self, lines: Sequence[tuple[str, int]], *, at: datetime) -> engine.Quote:
        """What :func:`quote` gives for ``lines`` at ``at`` (no customer, no vouchers, the channel's fulfilment)."""
        c = self.channel
        basket = _basket(self.session, lines, c.code, self.variants)
        ctx = engine.Context(c.code, c.type, c.currency, self.market, at, frozenset(), None, None)
        return engine.price_basket(basket, ctx, price_lists=self.lists, promotions=self.promotions, vouchers=[])
