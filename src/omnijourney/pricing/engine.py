"""The one price: a pure function from (basket, customer, channel, moment, rules) to an explained Quote.

No database, no HTTP: the service loads the candidates and calls ``price_basket``.

Algorithm (every step is deterministic; nothing depends on input order except line order):

1. **Price lists.** A list is a candidate when its currency is the quote's currency, ``at`` is inside its
   validity window (from inclusive, to exclusive), its channel targeting (codes or types, if any) matches the
   channel and its segment targeting (if any) meets the customer's segments. Candidates are ranked by
   priority (high first), then specificity (channel+segment > segment > channel > untargeted), then code;
   each line takes its unit price from the first ranked list that prices its SKU. No price: ``Invalid``.
2. **Taxes.** A list says whether its prices include tax; the market says whether quotes show prices with
   tax included (EU) or add it on top (US). A unit price is converted once (``gross = net * (1 + rate)`` or
   back), rounded to the currency. Line tax is computed on the discounted line amount, rounded per line.
3. **Shipping** depends on the fulfilment (``Context.fulfilment``; absent: the channel's rule,
   :func:`fulfilment_of`): ``delivery`` is charged the market's fee in the quote's currency; ``in_store``
   (a sale at a store's counter, or goods collected in a store) carries no shipping. Store channels sell
   ``in_store`` unless told the goods are to be delivered; every other channel delivers. The quote says
   which applied and why (``fulfilment``, ``shipping_reason``). Shipping carries no tax here.
4. **Promotions** are taken in order of priority (high first), then id. For each, the first failing check
   gives the reason it was rejected: validity window, channel, segment, currency of its amounts, voucher
   (needed, entered, not expired, not exhausted, per-customer limit, currency), stacking, matching items, basket
   threshold (measured on the basket total *at that point*, i.e. after higher-priority discounts), and
   finally whether the rule gives anything. Stacking: once an exclusive promotion applied, every later one
   is rejected; an exclusive promotion is rejected when another one already applied. The members of a
   stacking group are decided together when the first of them comes up: each eligible member is evaluated
   on the same basket, the largest discount wins (ties: application order), the others are rejected.
5. **Discounts** land on lines (basket-wide amounts are split over lines in proportion to their value,
   largest remainder), are rounded half-up per line and never exceed what is left of a line. A free-shipping
   promotion's amount is the ``shipping_discount``, never a line discount.
6. **Totals** follow the money equation, the same for every line and for the basket (see
   ``pricing/quoting.py``)::

       total = subtotal - discount + shipping_fee - shipping_discount + added_tax

   ``added_tax`` is the tax added on top of the prices (markets that quote without tax); in markets whose
   prices include tax it is 0 and the tax in the prices is shown as ``included_tax``. A line has no shipping
   terms (shipping belongs to the basket). Every basket term is the sum of its lines' terms, plus shipping.

So a quote differs between two channels only when a price list or a promotion targets a channel, when the
fulfilment differs (a counter sale has no shipping), or when the channels differ in currency or market (which
the consistency check reports).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from omnijourney.core.errors import Invalid
from omnijourney.pricing.money import ZERO, fmt, quantize
from omnijourney.pricing.promotions import (
    Effect,
    LineState,
    Promotion,
    PromotionIndex,
    Voucher,
    apply,
    effect,
)
from omnijourney.pricing.rejections import Rejected, check_context, check_voucher

DELIVERY = "delivery"  # the goods travel to the customer: the market's shipping fee applies
IN_STORE = "in_store"  # the customer takes the goods in a store (at the counter, or collected there): no shipping
FULFILMENTS = (DELIVERY, IN_STORE)


@dataclass(frozen=True, slots=True)
class BasketLine:
    sku: str
    quantity: int
    product_id: str | None = None
    category_ids: frozenset[str] = frozenset()
    tax_class: str = "standard"


@dataclass(frozen=True, slots=True)
class PriceList:
    code: str
    currency: str
    prices: Mapping[str, Decimal]  # sku -> unit price, exact in ``currency``
    priority: int = 0
    channel_codes: frozenset[str] = frozenset()
    channel_types: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    prices_include_tax: bool = True

    @property
    def targets_channel(self) -> bool:
        return bool(self.channel_codes or self.channel_types)

    @property
    def specificity(self) -> int:
        return (2 if self.segments else 0) + (1 if self.targets_channel else 0)


@dataclass(frozen=True, slots=True)
class Market:
    code: str
    taxes_included: bool = True
    tax_rates: Mapping[str, Decimal] = field(default_factory=dict)  # tax class -> rate (0.20 = 20 %)
    shipping_fee: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Context:
    """Who buys where and when."""

    channel_code: str
    channel_type: str
    currency: str
    market: Market
    at: datetime
    segments: frozenset[str] = frozenset()
    customer_id: str | None = None
    fulfilment: str | None = None  # delivery | in_store; None: the channel's rule (``fulfilment_of``)


def fulfilment_of(ctx: Context) -> str:
    """How the goods reach the customer: as asked, else by channel: a store sells at its counter, others deliver."""
    if ctx.fulfilment is not None:
        if ctx.fulfilment not in FULFILMENTS:
            raise Invalid(f"fulfilment {ctx.fulfilment!r} is not one of {', '.join(FULFILMENTS)}", field="fulfilment")
        return ctx.fulfilment
    return IN_STORE if ctx.channel_type == "store" else DELIVERY


def shipping_of(ctx: Context, *, has_lines: bool) -> tuple[Decimal, str]:
    """The shipping fee the basket is charged before promotions, and the sentence that explains it."""
    how = fulfilment_of(ctx)
    none = quantize(ZERO, ctx.currency)  # "0.00": every amount of a quote is exact in its currency
    if not has_lines:
        return none, "empty basket: no shipping"
    if how == IN_STORE:
        why = "store channel, sold at the counter" if ctx.fulfilment is None else "taken in the store"
        return none, f"{IN_STORE}: {why}, no shipping"
    fee = quantize(ctx.market.shipping_fee, ctx.currency)
    if fee == 0:
        return none, f"{DELIVERY}: market {ctx.market.code} sets no shipping fee in {ctx.currency}"
    return fee, f"{DELIVERY}: shipping fee of market {ctx.market.code}, {fmt(fee, ctx.currency)}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A price list that prices the line's SKU, and whether it was chosen."""

    price_list: str
    unit_price: Decimal
    status: str  # chosen | outranked | rejected
    reason: str


@dataclass(frozen=True, slots=True)
class LineDiscount:
    promotion_id: str
    name: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class QuoteLine:
    sku: str
    quantity: int
    unit_price: Decimal
    price_list: str
    price_reason: str
    candidates: tuple[Candidate, ...]
    subtotal: Decimal
    discounts: tuple[LineDiscount, ...]
    discount_total: Decimal
    total: Decimal
    tax_class: str
    tax_rate: Decimal
    tax: Decimal  # the line's tax, whether included in its prices or added on top
    added_tax: Decimal = ZERO  # tax added on top (markets quoting without tax); 0 when prices include it
    included_tax: Decimal = ZERO  # tax contained in the prices (markets quoting with tax); 0 otherwise


@dataclass(frozen=True, slots=True)
class PromotionResult:
    promotion_id: str
    name: str
    status: str  # applied | rejected
    code: str  # applied, or the stable code of the reason
    reason: str
    amount: Decimal = ZERO
    voucher: str | None = None


@dataclass(frozen=True, slots=True)
class VoucherResult:
    code: str
    promotion_id: str
    status: str  # applied | rejected
    reason_code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Quote:
    currency: str
    channel_code: str
    market: str
    at: datetime
    taxes_included: bool
    lines: tuple[QuoteLine, ...]
    promotions: tuple[PromotionResult, ...]
    vouchers: tuple[VoucherResult, ...]
    subtotal: Decimal
    discount_total: Decimal
    items_total: Decimal
    shipping_fee: Decimal
    shipping_discount: Decimal
    shipping: Decimal
    tax_total: Decimal
    total: Decimal
    added_tax: Decimal = ZERO
    included_tax: Decimal = ZERO
    fulfilment: str = DELIVERY
    shipping_reason: str = ""


def rank_price_lists(lists: Sequence[PriceList], ctx: Context) -> tuple[list[PriceList], dict[str, str]]:
    """Applicable lists in rank order, and for the others the reason they do not apply."""
    applicable: list[PriceList] = []
    rejected: dict[str, str] = {}
    for pl in lists:
        if pl.currency != ctx.currency:
            rejected[pl.code] = f"in {pl.currency}, quote in {ctx.currency}"
        elif (why := check_context(pl, ctx)) is not None:
            rejected[pl.code] = why.reason
        else:
            applicable.append(pl)
    applicable.sort(key=lambda pl: (-pl.priority, -pl.specificity, pl.code))
    return applicable, rejected


def _describe(pl: PriceList) -> str:
    parts = []
    if pl.targets_channel:
        parts.append("channel " + ", ".join(sorted(pl.channel_codes | pl.channel_types)))
    if pl.segments:
        parts.append("segment " + ", ".join(sorted(pl.segments)))
    return f"{' and '.join(parts)} list" if parts else "base list"


def _to_market(amount: Decimal, pl: PriceList, rate: Decimal, ctx: Context) -> Decimal:
    if pl.prices_include_tax == ctx.market.taxes_included or not rate:
        return quantize(amount, ctx.currency)
    factor = 1 + rate
    return quantize(amount / factor if pl.prices_include_tax else amount * factor, ctx.currency)


def _list_price(i: int, line: BasketLine, ranked: list[PriceList], rejected: dict[str, str],
                by_code: Mapping[str, PriceList], rate: Decimal,
                ctx: Context) -> tuple[PriceList, tuple[Candidate, ...]]:
    """The list that prices the line (first in rank), and every list that had a price for its SKU."""
    chosen: PriceList | None = None
    candidates: list[Candidate] = []
    for pl in ranked:
        price = pl.prices.get(line.sku)
        if price is None:
            continue
        if chosen is None:
            chosen = pl
            reason = f"{_describe(pl)}, priority {pl.priority}"
        else:
            reason = f"outranked by {chosen.code}"
        candidates.append(Candidate(pl.code, _to_market(price, pl, rate, ctx),
                                    "chosen" if chosen is pl else "outranked", reason))
    for code in sorted(rejected):
        other = by_code[code]
        price = other.prices.get(line.sku)
        if price is not None:  # shown in the list's own terms when its currency differs
            shown = _to_market(price, other, rate, ctx) if other.currency == ctx.currency else price
            candidates.append(Candidate(code, shown, "rejected", rejected[code]))
    if chosen is None:
        raise Invalid(f"no price for SKU {line.sku} in channel {ctx.channel_code} ({ctx.currency})",
                      field=f"lines[{i}].sku", code="no_price")
    return chosen, tuple(candidates)


def price_basket(lines: Sequence[BasketLine], ctx: Context, *, price_lists: Sequence[PriceList],
                 promotions: PromotionIndex, vouchers: Sequence[Voucher] = ()) -> Quote:
    """Price ``lines`` for ``ctx``: list prices, promotions, tax, shipping, totals, with every reason."""
    seen: set[str] = set()
    for i, line in enumerate(lines):
        if line.quantity < 1:
            raise Invalid(f"quantity of {line.sku} must be at least 1", field=f"lines[{i}].quantity")
        if line.sku in seen:
            raise Invalid(f"SKU {line.sku} appears twice; merge the lines", field=f"lines[{i}].sku")
        seen.add(line.sku)
    ranked, rejected_lists = rank_price_lists(price_lists, ctx)
    by_code = {pl.code: pl for pl in price_lists}
    rates = [ctx.market.tax_rates.get(line.tax_class, ZERO) for line in lines]
    states: list[LineState] = []
    chosen: list[tuple[PriceList, tuple[Candidate, ...], Decimal]] = []
    for i, line in enumerate(lines):
        pl, candidates = _list_price(i, line, ranked, rejected_lists, by_code, rates[i], ctx)
        unit = candidates[0].unit_price
        chosen.append((pl, candidates, unit))
        states.append(LineState(i, line.sku, line.product_id, line.category_ids, line.quantity,
                                unit * line.quantity, unit * line.quantity, line.quantity))
    fee, shipping_reason = shipping_of(ctx, has_lines=bool(states))
    results, voucher_results, shipping_discount = _promote(states, ctx, promotions, vouchers, fee)

    included = ctx.market.taxes_included
    zero = quantize(ZERO, ctx.currency)
    quote_lines: list[QuoteLine] = []
    for line, st, (pl, candidates, unit), rate in zip(lines, states, chosen, rates, strict=True):
        if included:
            tax = quantize(st.total - st.total / (1 + rate), ctx.currency)
        else:
            tax = quantize(st.total * rate, ctx.currency)
        added = zero if included else tax
        discounts = tuple(LineDiscount(p.id, p.name, d) for p, d in st.discounts)
        discount = st.subtotal - st.total
        # the money equation of a line (no shipping terms): total = subtotal - discount + added tax
        quote_lines.append(QuoteLine(line.sku, line.quantity, unit, pl.code, candidates[0].reason, candidates,
                                     st.subtotal, discounts, discount, st.subtotal - discount + added,
                                     line.tax_class, rate, tax, added, tax - added))
    subtotal = sum((ql.subtotal for ql in quote_lines), zero)
    discount_total = sum((ql.discount_total for ql in quote_lines), zero)
    added_tax = sum((ql.added_tax for ql in quote_lines), zero)
    included_tax = sum((ql.included_tax for ql in quote_lines), zero)
    # the money equation of the basket, term by term
    total = subtotal - discount_total + fee - shipping_discount + added_tax
    return Quote(ctx.currency, ctx.channel_code, ctx.market.code, ctx.at, included, tuple(quote_lines),
                 tuple(results), tuple(voucher_results), subtotal, discount_total, subtotal - discount_total,
                 fee, shipping_discount, fee - shipping_discount, added_tax + included_tax, total, added_tax,
                 included_tax, fulfilment_of(ctx), shipping_reason)


def _promote(states: list[LineState], ctx: Context, index: PromotionIndex, vouchers: Sequence[Voucher],
             shipping_fee: Decimal) -> tuple[list[PromotionResult], list[VoucherResult], Decimal]:
    """Step 4 of the algorithm: decide every promotion in order, apply the winners to ``states``."""
    voucher_for: dict[str, Voucher] = {}
    voucher_problem: dict[str, Rejected] = {}
    own_problem: dict[str, Rejected] = {}
    for v in sorted(vouchers, key=lambda v: v.code):
        problem = check_voucher(v, ctx)
        if problem is None:
            voucher_for.setdefault(v.promotion_id, v)
        else:
            own_problem[v.code] = problem
            voucher_problem.setdefault(v.promotion_id, problem)
    matches = index.matches(states)
    shipping_left = shipping_fee
    decided: dict[str, PromotionResult] = {}
    exclusive: Promotion | None = None
    applied_any = False
    for promo in index.promotions:
        if promo.id in decided:
            continue
        group = [promo]
        if promo.stacking_group is not None:
            group = index.groups[promo.stacking_group]
        evaluated: list[tuple[Promotion, Effect]] = []
        for p in group:
            outcome = _evaluate(p, states, matches, ctx, voucher_for, voucher_problem, exclusive, applied_any,
                                shipping_left)
            if isinstance(outcome, Rejected):
                decided[p.id] = _rejected(p, outcome, voucher_for)
            else:
                evaluated.append((p, outcome))
        if not evaluated:
            continue
        # max keeps the first of equals, and ``group`` is in application order
        winner, eff = max(evaluated, key=lambda pe: pe[1].total)
        for p, e in evaluated:
            if p is not winner:
                why = Rejected("stacking_group", f"stacking group {p.stacking_group}: {winner.id} gives more "
                               f"({fmt(eff.total, ctx.currency)} vs {fmt(e.total, ctx.currency)})")
                decided[p.id] = _rejected(p, why, voucher_for)
        apply(winner, eff, states)
        shipping_left -= eff.shipping
        applied_any = True
        if winner.exclusive:
            exclusive = winner
        voucher = voucher_for.get(winner.id)
        decided[winner.id] = PromotionResult(winner.id, winner.name, "applied", "applied",
                                             f"{fmt(eff.total, ctx.currency)} off", eff.total,
                                             voucher.code if voucher else None)
    results = [decided[p.id] for p in index.promotions]
    voucher_results = []
    for v in sorted(vouchers, key=lambda v: v.code):
        res = decided.get(v.promotion_id)
        own = own_problem.get(v.code)
        if own is not None:
            # the voucher's own problem first: it stops the code anywhere, whatever its promotion's targeting
            voucher_results.append(VoucherResult(v.code, v.promotion_id, "rejected", own.code, own.reason))
        elif res is None:
            voucher_results.append(VoucherResult(v.code, v.promotion_id, "rejected", "promotion_inactive",
                                                 f"voucher {v.code}: its promotion is not active"))
        elif res.status == "applied" and res.voucher == v.code:
            voucher_results.append(VoucherResult(v.code, v.promotion_id, "applied", "applied", res.reason))
        else:
            code, reason = (res.code, res.reason) if res.status == "rejected" else \
                ("duplicate", f"promotion {v.promotion_id} already applied with voucher {res.voucher}")
            voucher_results.append(VoucherResult(v.code, v.promotion_id, "rejected", code, reason))
    return results, voucher_results, shipping_fee - shipping_left


def _rejected(p: Promotion, why: Rejected, voucher_for: Mapping[str, Voucher]) -> PromotionResult:
    voucher = voucher_for.get(p.id)
    return PromotionResult(p.id, p.name, "rejected", why.code, why.reason, ZERO, voucher.code if voucher else None)


def _evaluate(p: Promotion, states: list[LineState], matches: Mapping[int, list[LineState]], ctx: Context,
              voucher_for: Mapping[str, Voucher], voucher_problem: Mapping[str, Rejected],
              exclusive: Promotion | None, applied_any: bool, shipping_left: Decimal) -> Effect | Rejected:
    """The effect ``p`` would have now, or the first reason it does not apply (order: see module doc)."""
    why = check_context(p, ctx)
    if why is not None:
        return why
    if p.currency is not None and p.currency != ctx.currency:
        return Rejected("currency", f"amounts in {p.currency}, quote in {ctx.currency}")
    if p.needs_voucher and p.id not in voucher_for:
        return voucher_problem.get(p.id) or Rejected("voucher_missing", "needs a voucher code")
    if exclusive is not None:
        return Rejected("exclusive", f"lower priority than exclusive promotion {exclusive.id}")
    if p.exclusive and applied_any:
        return Rejected("exclusive", "exclusive, but other promotions with higher priority already applied")
    lines = matches.get(p.id)
    if not lines:
        return Rejected("no_match", "no matching items in the basket")
    if p.min_basket is not None:
        value = sum((st.total for st in states), ZERO)
        if value < p.min_basket:
            return Rejected("threshold", f"threshold {fmt(p.min_basket, ctx.currency)} not reached "
                                         f"(basket {fmt(value, ctx.currency)})")
    eff = effect(p.rule, lines, currency=ctx.currency, shipping=shipping_left)
    return Rejected("no_discount", eff) if isinstance(eff, str) else eff

