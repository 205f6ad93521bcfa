"""Promotions as plain values, and what each kind of rule does to a basket (pure, no I/O).

A promotion is its targeting (channel, segment, validity window, voucher, basket threshold), its stacking
(priority, exclusive, stacking group), the lines it looks at (``Target``) and one rule:

- ``PercentOff``: a percentage off each matching line (or every line when the target is empty).
- ``AmountOff``: a fixed amount off each matching unit (``per_unit``) or off the matching lines together,
  split over them in proportion to their value.
- ``BuyXGetY``: for every ``buy + get`` matching units, the ``get`` cheapest are ``percent`` off (100 = free).
- ``Bundle``: a set of SKUs (with quantities) sold together for ``price``.
- ``FreeShipping``: the shipping fee is waived.

A rule's ``effect`` never mutates the basket: the engine compares effects (stacking groups) before it
applies one. Units taken by a bundle or a buy-X-get-Y cannot be taken again by another one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from omnijourney.pricing.money import ZERO, allocate, quantize

_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Target:
    """The lines a promotion looks at: any listed SKU, product or category. Empty: the whole basket."""

    skus: frozenset[str] = frozenset()
    product_ids: frozenset[str] = frozenset()
    category_ids: frozenset[str] = frozenset()

    @property
    def whole_basket(self) -> bool:
        return not (self.skus or self.product_ids or self.category_ids)


@dataclass(frozen=True, slots=True)
class PercentOff:
    percent: Decimal


@dataclass(frozen=True, slots=True)
class AmountOff:
    amount: Decimal
    per_unit: bool = False


@dataclass(frozen=True, slots=True)
class BuyXGetY:
    buy: int
    get: int
    percent: Decimal = _HUNDRED


@dataclass(frozen=True, slots=True)
class Bundle:
    items: tuple[tuple[str, int], ...]  # (sku, quantity), sorted by sku
    price: Decimal


@dataclass(frozen=True, slots=True)
class FreeShipping:
    pass


Rule = PercentOff | AmountOff | BuyXGetY | Bundle | FreeShipping


@dataclass(frozen=True, slots=True)
class Promotion:
    """One promotion. ``currency`` is the currency of its amounts (fixed amount, bundle price, threshold)."""

    id: str
    name: str
    rule: Rule
    target: Target = Target()
    priority: int = 0
    exclusive: bool = False
    stacking_group: str | None = None
    valid_from: datetime | None = None  # inclusive
    valid_to: datetime | None = None  # exclusive
    channel_codes: frozenset[str] = frozenset()
    channel_types: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    min_basket: Decimal | None = None
    currency: str | None = None
    needs_voucher: bool = False

    @property
    def targets_channel(self) -> bool:
        return bool(self.channel_codes or self.channel_types)

    def effective_target(self) -> Target:
        if isinstance(self.rule, Bundle):
            return Target(skus=frozenset(sku for sku, _ in self.rule.items))
        return self.target


@dataclass(frozen=True, slots=True)
class Voucher:
    """A code entered by the customer, with its usage counts as the store knows them now."""

    code: str
    promotion_id: str
    max_uses: int | None = None  # 1: single use; None: unlimited
    used: int = 0
    per_customer_limit: int | None = None
    used_by_customer: int = 0
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    active: bool = True
    currency: str | None = None  # the currency of its promotion's amounts (None: a percentage, any currency)


@dataclass(slots=True)
class LineState:
    """A basket line while promotions are applied: its current total and units still free to take."""

    index: int
    sku: str
    product_id: str | None
    category_ids: frozenset[str]
    quantity: int
    subtotal: Decimal
    total: Decimal
    free_units: int
    discounts: list[tuple[Promotion, Decimal]] = field(default_factory=list)

    def unit_value(self) -> Decimal:
        return self.total / self.quantity


@dataclass(slots=True)
class Effect:
    """What a rule would do: discount per line index, units it takes, shipping waived."""

    discounts: dict[int, Decimal]
    consumed: dict[int, int] = field(default_factory=dict)
    shipping: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return sum(self.discounts.values(), ZERO) + self.shipping


def effect(rule: Rule, lines: Sequence[LineState], *, currency: str, shipping: Decimal) -> Effect | str:
    """The effect of ``rule`` on the matching ``lines`` (in basket order), or why it gives nothing."""
    if isinstance(rule, PercentOff):
        return _percent(rule, lines, currency)
    if isinstance(rule, AmountOff):
        return _amount(rule, lines, currency)
    if isinstance(rule, BuyXGetY):
        return _buy_x_get_y(rule, lines, currency)
    if isinstance(rule, Bundle):
        return _bundle(rule, lines, currency)
    if shipping > 0:
        return Effect({}, shipping=shipping)
    return "no shipping fee to waive"


def _nonzero(discounts: dict[int, Decimal]) -> dict[int, Decimal]:
    return {i: d for i, d in discounts.items() if d > 0}


def _percent(rule: PercentOff, lines: Sequence[LineState], currency: str) -> Effect | str:
    found = _nonzero({ln.index: min(ln.total, quantize(ln.total * rule.percent / _HUNDRED, currency))
                      for ln in lines})
    return Effect(found) if found else "matching items are already free"


def _amount(rule: AmountOff, lines: Sequence[LineState], currency: str) -> Effect | str:
    if rule.per_unit:
        found = _nonzero({ln.index: min(ln.total, rule.amount * ln.quantity) for ln in lines})
    else:
        value = sum((ln.total for ln in lines), ZERO)
        shares = allocate(min(rule.amount, value), [ln.total for ln in lines], currency)
        found = _nonzero({ln.index: s for ln, s in zip(lines, shares, strict=True)})
    return Effect(found) if found else "matching items are already free"


def _buy_x_get_y(rule: BuyXGetY, lines: Sequence[LineState], currency: str) -> Effect | str:
    # one entry per line, cheapest first: expanding units one by one would cost O(units)
    pool = sorted((ln for ln in lines if ln.free_units > 0), key=lambda ln: (ln.unit_value(), ln.index))
    units = sum(ln.free_units for ln in pool)
    groups = units // (rule.buy + rule.get)
    if groups == 0:
        return f"needs {rule.buy + rule.get} matching items, basket has {units}"
    to_discount, to_take = groups * rule.get, groups * (rule.buy + rule.get)
    discounts: dict[int, Decimal] = {}
    consumed: dict[int, int] = {}
    for ln in pool:
        if to_take == 0:
            break
        take = min(ln.free_units, to_take)
        off = min(take, to_discount)
        consumed[ln.index] = take
        to_take -= take
        to_discount -= off
        if off:
            amount = quantize(ln.total * off / ln.quantity * rule.percent / _HUNDRED, currency)
            discounts[ln.index] = min(ln.total, amount)
    found = _nonzero(discounts)
    return Effect(found, consumed) if found else "the items to discount are already free"


def _bundle(rule: Bundle, lines: Sequence[LineState], currency: str) -> Effect | str:
    by_sku = {ln.sku: ln for ln in lines}
    missing = [f"{qty} x {sku}" for sku, qty in rule.items if by_sku.get(sku) is None
               or by_sku[sku].free_units < qty]
    if missing:
        return f"bundle incomplete: needs {', '.join(missing)}"
    count = min(by_sku[sku].free_units // qty for sku, qty in rule.items)
    members = [(by_sku[sku], qty) for sku, qty in rule.items]
    weights = [ln.unit_value() * qty for ln, qty in members]
    value = sum(weights, ZERO)
    saving = quantize(count * (value - rule.price), currency)
    if saving <= 0:
        return "bundle price is not below the items' price"
    shares = allocate(saving, weights, currency)
    return Effect(_nonzero({ln.index: min(ln.total, s) for (ln, _), s in zip(members, shares, strict=True)}),
                  {ln.index: count * qty for ln, qty in members})


def apply(promotion: Promotion, eff: Effect, lines: Sequence[LineState]) -> None:
    """Write ``eff`` into the basket state."""
    for index, amount in eff.discounts.items():
        line = lines[index]
        line.total -= amount
        line.discounts.append((promotion, amount))
    for index, units in eff.consumed.items():
        lines[index].free_units -= units


class PromotionIndex:
    """Promotions in application order (priority desc, then id), indexed by what they target.

    Built once per set of active promotions and reused across quotes, so a quote only meets the
    promotions its lines can match: lines x index look-ups instead of lines x promotions.
    """

    def __init__(self, promotions: Iterable[Promotion]) -> None:
        self.promotions: list[Promotion] = sorted(promotions, key=lambda p: (-p.priority, p.id))
        self.groups: dict[str, list[Promotion]] = {}
        self.basket_wide: list[int] = []
        self._by: tuple[dict[str, list[int]], dict[str, list[int]], dict[str, list[int]]] = ({}, {}, {})
        for pos, promo in enumerate(self.promotions):
            if promo.stacking_group is not None:
                self.groups.setdefault(promo.stacking_group, []).append(promo)
            target = promo.effective_target()
            if target.whole_basket:
                self.basket_wide.append(pos)
            for keys, index in zip((target.skus, target.product_ids, target.category_ids), self._by, strict=True):
                for key in keys:
                    index.setdefault(key, []).append(pos)

    def matches(self, lines: Sequence[LineState]) -> dict[str, list[LineState]]:
        """Promotion id -> the lines it targets (in basket order)."""
        promos = self.promotions
        found: dict[str, list[LineState]] = {promos[pos].id: list(lines) for pos in self.basket_wide}
        by_sku, by_product, by_category = self._by
        for line in lines:
            positions = set(by_sku.get(line.sku, ()))
            if line.product_id is not None:
                positions.update(by_product.get(line.product_id, ()))
            for cat in line.category_ids:
                positions.update(by_category.get(cat, ()))
            for pos in sorted(positions):
                found.setdefault(promos[pos].id, []).append(line)
        return found
