"""Promotion rules as validated JSON: one pydantic model per rule type, and the way back to engine values.

Stored shape (``promotions.rule``), amounts as decimal strings in the promotion's currency::

    {"type": "percent_off", "percent": "10"}
    {"type": "amount_off", "amount": "5.00", "per_unit": false}
    {"type": "buy_x_get_y", "buy": 2, "get": 1, "percent": "100"}
    {"type": "bundle", "items": [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 1}], "price": "25.00"}
    {"type": "free_shipping"}
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter

from omnijourney.pricing import promotions as p
from omnijourney.pricing.money import from_minor


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PercentOffRule(_Rule):
    type: Literal["percent_off"]
    percent: Decimal = Field(gt=0, le=100)


class AmountOffRule(_Rule):
    type: Literal["amount_off"]
    amount: Decimal = Field(gt=0)
    per_unit: bool = False


class BuyXGetYRule(_Rule):
    type: Literal["buy_x_get_y"]
    buy: StrictInt = Field(ge=1, le=1000)  # strict: JSON true is not 1
    get: StrictInt = Field(ge=1, le=1000)
    percent: Decimal = Field(default=Decimal(100), gt=0, le=100)


class BundleItem(_Rule):
    sku: str = Field(min_length=1, max_length=64)
    quantity: StrictInt = Field(default=1, ge=1, le=1000)


class BundleRule(_Rule):
    type: Literal["bundle"]
    items: list[BundleItem] = Field(min_length=1, max_length=50)
    price: Decimal = Field(ge=0)


class FreeShippingRule(_Rule):
    type: Literal["free_shipping"]


RuleSpec = Annotated[PercentOffRule | AmountOffRule | BuyXGetYRule | BundleRule | FreeShippingRule,
                     Field(discriminator="type")]
RULE = TypeAdapter(RuleSpec)
NEEDS_CURRENCY = ("amount_off", "bundle")


class TargetSpec(_Rule):
    """The lines a promotion looks at; all empty: the whole basket."""

    skus: list[str] = Field(default_factory=list, max_length=1000)
    product_ids: list[str] = Field(default_factory=list, max_length=1000)
    category_ids: list[str] = Field(default_factory=list, max_length=1000)


def amounts(rule: RuleSpec) -> list[tuple[str, Decimal]]:
    """The money amounts of a rule (to check them against the promotion's currency)."""
    if isinstance(rule, AmountOffRule):
        return [("rule.amount", rule.amount)]
    if isinstance(rule, BundleRule):
        return [("rule.price", rule.price)]
    return []


def _engine_rule(data: dict[str, Any]) -> p.Rule:
    # rows were validated on the way in, so this skips pydantic: it runs whenever the cache is rebuilt
    kind = data["type"]
    if kind == "percent_off":
        return p.PercentOff(Decimal(data["percent"]))
    if kind == "amount_off":
        return p.AmountOff(Decimal(data["amount"]), bool(data.get("per_unit", False)))
    if kind == "buy_x_get_y":
        return p.BuyXGetY(int(data["buy"]), int(data["get"]), Decimal(data.get("percent", "100")))
    if kind == "bundle":
        merged: dict[str, int] = {}
        for item in data["items"]:
            merged[item["sku"]] = merged.get(item["sku"], 0) + int(item.get("quantity", 1))
        return p.Bundle(tuple(sorted(merged.items())), Decimal(data["price"]))
    return p.FreeShipping()


def to_engine(row: Any) -> p.Promotion:
    """The engine's ``Promotion`` for a ``pricing.models.Promotion`` row."""
    target = row.target or {}
    return p.Promotion(
        id=row.code, name=row.name, rule=_engine_rule(row.rule),
        target=p.Target(frozenset(target.get("skus", ())), frozenset(target.get("product_ids", ())),
                        frozenset(target.get("category_ids", ()))),
        priority=row.priority, exclusive=row.exclusive, stacking_group=row.stacking_group,
        valid_from=row.valid_from, valid_to=row.valid_to, channel_codes=frozenset(row.channel_codes),
        channel_types=frozenset(row.channel_types), segments=frozenset(row.segments),
        min_basket=from_minor(row.min_basket_minor, row.currency) if row.min_basket_minor is not None else None,
        currency=row.currency, needs_voucher=row.needs_voucher)
