"""The pure pricing engine: list prices, taxes, promotions, stacking, vouchers (no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnijourney.core.errors import Invalid
from omnijourney.pricing.engine import BasketLine, Context, Market, PriceList, Quote, price_basket
from omnijourney.pricing.money import allocate, from_minor, quantize, to_minor
from omnijourney.pricing.promotions import (
    AmountOff,
    Bundle,
    BuyXGetY,
    FreeShipping,
    PercentOff,
    Promotion,
    PromotionIndex,
    Target,
    Voucher,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EU = Market("EU", taxes_included=True, tax_rates={"standard": D("0.20"), "reduced": D("0.055")},
            shipping_fee=D("4.90"))
US = Market("US", taxes_included=False, tax_rates={"standard": D("0.08")}, shipping_fee=D("0"))
BASE = PriceList("base-eur", "EUR", {"A": D("10.00"), "B": D("20.00"), "C": D("5.00"), "D": D("99.99")})


def ctx(channel: str = "web", kind: str = "web", *, segments: tuple[str, ...] = (), market: Market = EU,
        currency: str = "EUR", at: datetime = NOW, customer: str | None = None,
        fulfilment: str | None = None) -> Context:
    return Context(channel, kind, currency, market, at, frozenset(segments), customer, fulfilment)


def basket(*items: tuple[str, int]) -> list[BasketLine]:
    return [BasketLine(sku, qty, product_id=f"p-{sku}", category_ids=frozenset({"shoes"} if sku in "AB" else ()))
            for sku, qty in items]


def quote(lines: list[BasketLine], context: Context | None = None, *, lists: tuple[PriceList, ...] = (BASE,),
          promos: tuple[Promotion, ...] = (), vouchers: tuple[Voucher, ...] = ()) -> Quote:
    return price_basket(lines, context or ctx(), price_lists=lists, promotions=PromotionIndex(promos),
                        vouchers=vouchers)


def status(q: Quote) -> dict[str, tuple[str, str]]:
    return {p.promotion_id: (p.status, p.reason) for p in q.promotions}


def test_money_rounds_half_up_per_currency_and_splits_exactly() -> None:
    assert quantize(D("0.125"), "EUR") == D("0.13")
    assert quantize(D("1234.5"), "JPY") == D("1235")
    assert quantize(D("1.0005"), "KWD") == D("1.001")
    assert to_minor(D("19.99"), "EUR") == 1999
    assert from_minor(1999, "EUR") == D("19.99")
    assert from_minor(500, "JPY") == D("500")
    with pytest.raises(Invalid, match="more decimals than EUR"):
        to_minor(D("1.999"), "EUR")
    assert allocate(D("10.00"), [D(1), D(1), D(1)], "EUR") == [D("3.34"), D("3.33"), D("3.33")]
    assert allocate(D("5"), [D("10"), D("30")], "JPY") == [D("1"), D("4")]


def test_list_price_tax_included_and_totals() -> None:
    q = quote(basket(("A", 2), ("C", 1)))
    a, c = q.lines
    assert (a.unit_price, a.subtotal, a.total, a.tax, a.price_list) == (D("10.00"), D("20.00"), D("20.00"),
                                                                       D("3.33"), "base-eur")
    assert a.price_reason == "base list, priority 0"
    assert (c.total, c.tax) == (D("5.00"), D("0.83"))
    assert (q.subtotal, q.discount_total, q.items_total, q.shipping, q.tax_total, q.total) == \
        (D("25.00"), D("0.00"), D("25.00"), D("4.90"), D("4.16"), D("29.90"))


def test_market_that_adds_tax_on_top_converts_gross_list_prices() -> None:
    usd = PriceList("base-usd", "USD", {"A": D("10.80")}, prices_include_tax=True)
    q = quote(basket(("A", 3)), ctx(market=US, currency="USD"), lists=(usd,))
    line = q.lines[0]
    # the line's total is what the customer pays for it: the tax added on top is in it
    assert (line.unit_price, line.subtotal, line.tax, line.added_tax, line.total) == \
        (D("10.00"), D("30.00"), D("2.40"), D("2.40"), D("32.40"))
    assert (q.items_total, q.added_tax, q.included_tax, q.tax_total, q.total) == \
        (D("30.00"), D("2.40"), D("0"), D("2.40"), D("32.40"))


def test_price_list_ranking_is_explained() -> None:
    vip = PriceList("vip", "EUR", {"A": D("8.00")}, priority=10, segments=frozenset({"vip"}))
    app = PriceList("app-sale", "EUR", {"A": D("7.00")}, priority=20, channel_codes=frozenset({"app"}))
    usd = PriceList("base-usd", "USD", {"A": D("11.00")})
    q = quote(basket(("A", 1)), ctx(segments=("vip",)), lists=(BASE, vip, app, usd))
    line = q.lines[0]
    assert (line.price_list, line.unit_price, line.price_reason) == ("vip", D("8.00"),
                                                                    "segment vip list, priority 10")
    assert [(c.price_list, c.unit_price, c.status, c.reason) for c in line.candidates] == [
        ("vip", D("8.00"), "chosen", "segment vip list, priority 10"),
        ("base-eur", D("10.00"), "outranked", "outranked by vip"),
        ("app-sale", D("7.00"), "rejected", "not for channel web"),
        ("base-usd", D("11.00"), "rejected", "in USD, quote in EUR"),
    ]
    assert quote(basket(("A", 1)), ctx("app", "app"), lists=(BASE, vip, app)).lines[0].unit_price == D("7.00")


def test_no_price_and_bad_lines_are_refused() -> None:
    with pytest.raises(Invalid, match="no price for SKU Z in channel web") as err:
        quote(basket(("A", 1), ("Z", 1)))
    assert (err.value.field, err.value.code) == ("lines[1].sku", "no_price")
    with pytest.raises(Invalid, match="appears twice"):
        quote(basket(("A", 1), ("A", 2)))
    with pytest.raises(Invalid, match="at least 1"):
        quote(basket(("A", 0)))


def test_percent_and_fixed_discounts_on_targets_and_basket() -> None:
    shoes = Promotion("p1", "Shoes -10%", PercentOff(D("10")), Target(category_ids=frozenset({"shoes"})),
                      priority=5)
    five = Promotion("p2", "5 EUR off", AmountOff(D("5.00")), currency="EUR")
    unit = Promotion("p3", "1 EUR off each C", AmountOff(D("1.00"), per_unit=True), Target(skus=frozenset({"C"})),
                     currency="EUR")
    q = quote(basket(("A", 1), ("B", 1), ("C", 2)), promos=(shoes, five, unit))
    assert [(ln.sku, ln.total, [(d.promotion_id, d.amount) for d in ln.discounts]) for ln in q.lines] == [
        ("A", D("7.78"), [("p1", D("1.00")), ("p2", D("1.22"))]),  # 5.00 split over 9 : 18 : 10
        ("B", D("15.57"), [("p1", D("2.00")), ("p2", D("2.43"))]),
        ("C", D("6.65"), [("p2", D("1.35")), ("p3", D("2.00"))]),
    ]
    assert (q.subtotal, q.discount_total, q.items_total) == (D("40.00"), D("10.00"), D("30.00"))
    assert status(q)["p2"] == ("applied", "5.00 EUR off")


def test_buy_two_get_one_free_discounts_the_cheapest() -> None:
    b2g1 = Promotion("b2g1", "3 for 2", BuyXGetY(2, 1))
    q = quote(basket(("A", 2), ("B", 1), ("C", 1)), promos=(b2g1,))
    assert [ln.discount_total for ln in q.lines] == [D("0.00"), D("0.00"), D("5.00")]
    half = Promotion("b1h", "second at half price", BuyXGetY(1, 1, D("50")), Target(skus=frozenset({"A", "B"})))
    q = quote(basket(("A", 2), ("B", 3)), promos=(half,))
    # 5 units make 2 pairs; the 2 cheapest units (both A) are half price
    assert [ln.discount_total for ln in q.lines] == [D("10.00"), D("0.00")]
    q = quote(basket(("A", 1)), promos=(b2g1,))
    assert status(q)["b2g1"] == ("rejected", "needs 3 matching items, basket has 1")


def test_bundle_price_and_units_not_taken_twice() -> None:
    bundle = Promotion("bun", "A+B for 25", Bundle((("A", 1), ("B", 1)), D("25.00")), currency="EUR", priority=9)
    b2g1 = Promotion("b2g1", "3 for 2", BuyXGetY(2, 1), Target(skus=frozenset({"A", "B"})))
    q = quote(basket(("A", 2), ("B", 1)), promos=(bundle, b2g1))
    assert [ln.discount_total for ln in q.lines] == [D("1.67"), D("3.33")]
    assert status(q) == {"bun": ("applied", "5.00 EUR off"),
                         "b2g1": ("rejected", "needs 3 matching items, basket has 1")}
    q = quote(basket(("A", 1)), promos=(bundle,))
    assert status(q)["bun"] == ("rejected", "bundle incomplete: needs 1 x B")


def test_free_shipping_over_threshold() -> None:
    free = Promotion("ship", "Free shipping over 30", FreeShipping(), min_basket=D("30.00"), currency="EUR")
    q = quote(basket(("A", 2)), promos=(free,))
    assert status(q)["ship"] == ("rejected", "threshold 30.00 EUR not reached (basket 20.00 EUR)")
    assert (q.shipping, q.total) == (D("4.90"), D("24.90"))
    q = quote(basket(("A", 3)), promos=(free,))
    assert (q.shipping_fee, q.shipping_discount, q.shipping, q.total) == (D("4.90"), D("4.90"), D("0.00"),
                                                                          D("30.00"))


def test_targeting_reasons() -> None:
    promos = (
        Promotion("old", "Old", PercentOff(D("5")), valid_to=datetime(2026, 1, 1, tzinfo=UTC)),
        Promotion("app", "App only", PercentOff(D("5")), channel_types=frozenset({"app"})),
        Promotion("vip", "VIP", PercentOff(D("5")), segments=frozenset({"vip", "gold"})),
        Promotion("usd", "USD", AmountOff(D("1")), currency="USD"),
        Promotion("code", "Code", PercentOff(D("5")), needs_voucher=True),
        Promotion("none", "Socks", PercentOff(D("5")), Target(skus=frozenset({"SOCK"}))),
    )
    assert status(quote(basket(("A", 1)), promos=promos)) == {
        "app": ("rejected", "not for channel web"),
        "code": ("rejected", "needs a voucher code"),
        "none": ("rejected", "no matching items in the basket"),
        "old": ("rejected", "outside validity window (until 2026-01-01T00:00:00Z)"),
        "usd": ("rejected", "amounts in USD, quote in EUR"),
        "vip": ("rejected", "customer not in segment gold or vip"),
    }


def test_exclusive_and_stacking_group() -> None:
    excl = Promotion("x", "Exclusive 30%", PercentOff(D("30")), priority=10, exclusive=True)
    low = Promotion("y", "10%", PercentOff(D("10")), priority=1)
    q = quote(basket(("A", 1)), promos=(excl, low))
    assert status(q) == {"x": ("applied", "3.00 EUR off"),
                         "y": ("rejected", "lower priority than exclusive promotion x")}
    late = Promotion("z", "Exclusive late", PercentOff(D("50")), priority=0, exclusive=True)
    q = quote(basket(("A", 1)), promos=(low, late))
    assert status(q)["z"] == ("rejected", "exclusive, but other promotions with higher priority already applied")
    g1 = Promotion("g1", "15%", PercentOff(D("15")), priority=5, stacking_group="spring")
    g2 = Promotion("g2", "2 EUR", AmountOff(D("2.00")), priority=1, stacking_group="spring", currency="EUR")
    q = quote(basket(("A", 2)), promos=(g1, g2, low))
    assert status(q) == {"g1": ("applied", "3.00 EUR off"),
                         "y": ("applied", "1.70 EUR off"),
                         "g2": ("rejected", "stacking group spring: g1 gives more (3.00 EUR vs 2.00 EUR)")}


def test_vouchers() -> None:
    promo = Promotion("v", "WELCOME 10%", PercentOff(D("10")), needs_voucher=True)
    ok = Voucher("WELCOME", "v", max_uses=100, used=3, per_customer_limit=1)
    q = quote(basket(("A", 1)), promos=(promo,), vouchers=(ok,))
    assert status(q)["v"] == ("applied", "1.00 EUR off")
    assert [(v.code, v.status, v.reason) for v in q.vouchers] == [("WELCOME", "applied", "1.00 EUR off")]
    cases = {
        Voucher("ONCE", "v", max_uses=1, used=1): ("voucher_exhausted", "voucher ONCE exhausted (1 of 1 uses)"),
        Voucher("MINE", "v", per_customer_limit=1, used_by_customer=1):
            ("voucher_customer_limit", "per-customer limit reached for voucher MINE (1)"),
        Voucher("OLD", "v", valid_to=datetime(2026, 2, 1, tzinfo=UTC)):
            ("voucher_expired", "voucher OLD outside validity window (until 2026-02-01T00:00:00Z)"),
        Voucher("GHOST", "gone"): ("promotion_inactive", "voucher GHOST: its promotion is not active"),
    }
    for voucher, expected in cases.items():
        q = quote(basket(("A", 1)), promos=(promo,), vouchers=(voucher,))
        assert [(v.reason_code, v.reason) for v in q.vouchers] == [expected]
        assert q.discount_total == D("0.00")


def test_jpy_has_no_minor_unit() -> None:
    jpy = PriceList("base-jpy", "JPY", {"A": D("1999")})
    q = quote(basket(("A", 1)), ctx(currency="JPY", market=Market("JP", True, {"standard": D("0.10")})),
              lists=(jpy,), promos=(Promotion("p", "15%", PercentOff(D("15"))),))
    assert (q.lines[0].discount_total, q.total, q.tax_total) == (D("300"), D("1699"), D("154"))


# --- properties ---------------------------------------------------------------------------------

SKUS = ["A", "B", "C", "D"]
_promo = st.builds(
    lambda i, kind, pct, amt, prio, excl, group, target, chan: Promotion(
        f"p{i}", f"p{i}",
        [PercentOff(pct), AmountOff(amt, per_unit=False), AmountOff(amt, per_unit=True), BuyXGetY(1, 1),
         Bundle((("A", 1), ("C", 1)), D("12.00")), FreeShipping()][kind],
        Target(skus=frozenset(target)), priority=prio, exclusive=excl, stacking_group=group,
        currency="EUR", channel_codes=frozenset({chan}) if chan else frozenset()),
    st.integers(0, 999), st.integers(0, 5), st.decimals("0.01", "100", places=2), st.decimals("0.01", "50", places=2),
    st.integers(0, 3), st.booleans(), st.sampled_from([None, None, "g"]), st.sets(st.sampled_from(SKUS), max_size=2),
    st.sampled_from([None, None, "web", "store-1"]),
)
_basket = st.dictionaries(st.sampled_from(SKUS), st.integers(1, 5), min_size=1).map(
    lambda d: basket(*sorted(d.items())))


@settings(max_examples=150, deadline=None)
@given(_basket, st.lists(_promo, max_size=8, unique_by=lambda p: p.id))
def test_totals_never_negative_and_discounts_within_lines(lines: list[BasketLine], promos: list[Promotion]) -> None:
    q = quote(lines, promos=tuple(promos))
    for ln in q.lines:
        assert D(0) <= ln.discount_total <= ln.subtotal
        assert ln.total == ln.subtotal - sum((d.amount for d in ln.discounts), D(0)) >= 0
    assert q.total >= 0 and q.shipping >= 0
    assert q.discount_total == sum((p.amount for p in q.promotions if p.status == "applied"), D(0)) - \
        q.shipping_discount


@settings(max_examples=150, deadline=None)
@given(_basket, st.lists(_promo, max_size=8, unique_by=lambda p: p.id))
def test_same_quote_in_every_channel_unless_a_rule_targets_one(lines: list[BasketLine],
                                                               promos: list[Promotion]) -> None:
    untargeted = tuple(p for p in promos if not p.targets_channel)
    # the same fulfilment (a store can deliver too); a counter sale has no shipping (test_money_equation.py)
    web = quote(lines, ctx("web", "web"), promos=untargeted)
    store = quote(lines, ctx("store-1", "store", fulfilment="delivery"), promos=untargeted)
    assert (web.lines, web.promotions, web.total) == (store.lines, store.promotions, store.total)
