"""Money reconciles: every quote and every cart satisfies one equation, on each line and on the basket.

    total = subtotal - discount + shipping_fee - shipping_discount + added_tax

(lines have no shipping terms; ``added_tax`` is 0 where prices include tax, whose tax is ``included_tax``).
Properties over random baskets, markets, channels, fulfilments, promotions and vouchers (pure engine and the
cart's view of a quote), then the three defects a first user met, through the API.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any
from unittest.mock import patch

from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from omnijourney.carts import quote as cart_quote
from omnijourney.catalog.service import VariantInfo
from omnijourney.db import Database
from omnijourney.pricing import service
from omnijourney.pricing.engine import BasketLine, Context, Market, PriceList, Quote, price_basket
from omnijourney.pricing.money import minor_units
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
from tests import factories_catalog as fc

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
SKUS = ("A", "B", "C", "D")
# (market, currency, list prices include tax): tax-inclusive and tax-added markets, 0, 2 and 3 decimals
MARKETS = [
    (Market("DE", True, {"standard": D("0.19"), "reduced": D("0.07")}, D("4.95")), "EUR", True),
    (Market("FR", True, {"standard": D("0.20"), "reduced": D("0.055")}, D("4.90")), "EUR", False),
    (Market("US", False, {"standard": D("0.0825")}, D("5.00")), "USD", False),
    (Market("US-G", False, {"standard": D("0.08"), "reduced": D("0.02")}, D("5.00")), "USD", True),
    (Market("JP", True, {"standard": D("0.10")}, D("500")), "JPY", True),
    (Market("KW", False, {"standard": D("0.05")}, D("1.250")), "KWD", False),
]
CHANNELS = [("web", "web"), ("app", "app"), ("S01", "store"), ("call-center", "call_center")]
PRICES = {"A": D("10.00"), "B": D("19.99"), "C": D("5.00"), "D": D("99.99")}


def _in(currency: str, amount: D) -> D:
    """``amount`` made exact in ``currency`` (JPY: x100, no decimals)."""
    places = minor_units(currency)
    return (amount * 100 if places == 0 else amount).quantize(D(1).scaleb(-places))


_PERCENT = st.decimals("0.5", "100", places=1)
_AMOUNT = st.decimals("0.01", "60", places=2)
_UNIT_AMOUNT = st.decimals("0.01", "8", places=2)
_TARGET = st.sets(st.sampled_from(SKUS), max_size=2)
_BASKET = st.dictionaries(st.sampled_from(SKUS), st.integers(1, 12), min_size=1)
_TAX_CLASS = st.sampled_from(["standard", "standard", "reduced", "zero-rated"])
_KIND = st.integers(0, 5)
_THRESHOLD = st.sampled_from([None, D(20), D(50), D(150)])
_CHANNEL_TYPES = st.sampled_from([frozenset(), frozenset(), frozenset({"web"}), frozenset({"store"})])
_VOUCHER_STATE = st.sampled_from([None, "ok", "ok", "expired", "used", "foreign"])


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    market, currency, gross = draw(st.sampled_from(MARKETS))
    channel, kind = draw(st.sampled_from(CHANNELS))
    lines = [BasketLine(sku, qty, f"p-{sku}", frozenset({"shoes"} if sku in "AB" else ()), draw(_TAX_CLASS))
             for sku, qty in sorted(draw(_BASKET).items())]
    other = "EUR" if currency != "EUR" else "USD"
    promos = []
    for i in range(draw(st.integers(0, 7))):
        rule = [lambda: PercentOff(draw(_PERCENT)), lambda: AmountOff(_in(currency, draw(_AMOUNT))),
                lambda: AmountOff(_in(currency, draw(_UNIT_AMOUNT)), per_unit=True),
                lambda: BuyXGetY(draw(st.integers(1, 3)), 1, draw(st.sampled_from([D(100), D(50)]))),
                lambda: Bundle((("A", 1), ("C", 1)), _in(currency, D("12.00"))), FreeShipping][draw(_KIND)]()
        threshold = draw(_THRESHOLD)
        amounts = isinstance(rule, (AmountOff, Bundle)) or threshold is not None or draw(st.booleans())
        promos.append(Promotion(
            f"p{i}", f"promo {i}", rule, Target(skus=frozenset(draw(_TARGET))), priority=draw(st.integers(0, 3)),
            exclusive=draw(st.booleans()), stacking_group=draw(st.sampled_from([None, None, "g"])),
            channel_types=draw(_CHANNEL_TYPES), min_basket=_in(currency, threshold) if threshold else None,
            # a promotion with amounts is in one currency; now and then in the wrong one
            currency=(other if draw(st.integers(0, 5)) == 0 else currency) if amounts else None,
            needs_voucher=draw(st.integers(0, 2)) == 0))
    vouchers = []
    for p in promos:
        state = draw(_VOUCHER_STATE) if p.needs_voucher else None
        if state is not None:
            vouchers.append(Voucher(
                f"V-{p.id}", p.id, max_uses=1 if state == "used" else None, used=1 if state == "used" else 0,
                valid_to=NOW - timedelta(days=1) if state == "expired" else None,
                currency=other if state == "foreign" else p.currency))
    lists = [PriceList(f"base-{currency}", currency, {s: _in(currency, a) for s, a in PRICES.items()},
                       prices_include_tax=gross)]
    ctx = Context(channel, kind, currency, market, NOW, frozenset(), None,
                  draw(st.sampled_from([None, None, "delivery", "in_store"])))
    return {"lines": lines, "ctx": ctx, "lists": lists, "promos": promos, "vouchers": vouchers}


def _quote(sc: dict[str, Any]) -> Quote:
    return price_basket(sc["lines"], sc["ctx"], price_lists=sc["lists"], promotions=PromotionIndex(sc["promos"]),
                        vouchers=sc["vouchers"])


class _Channels:
    """A stand-in session that knows every channel (the cart's quote checks its channel exists)."""

    def get(self, model: type, code: str) -> object:
        return object()


def _exact(amount: D, currency: str) -> bool:
    return amount == amount.quantize(D(1).scaleb(-minor_units(currency)))


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_every_quote_reconciles_on_each_line_and_on_the_basket(sc: dict[str, Any]) -> None:
    q = _quote(sc)
    ctx: Context = sc["ctx"]
    for ln in q.lines:
        assert ln.total == ln.subtotal - ln.discount_total + ln.added_tax
        assert ln.discount_total == sum((d.amount for d in ln.discounts), D(0))
        assert D(0) <= ln.discount_total <= ln.subtotal
        assert ln.tax == ln.added_tax + ln.included_tax
        assert (ln.added_tax, ln.included_tax) == ((D(0), ln.tax) if q.taxes_included else (ln.tax, D(0)))
        assert all(_exact(a, q.currency) for a in (ln.subtotal, ln.discount_total, ln.tax, ln.total))
    assert q.subtotal == sum((ln.subtotal for ln in q.lines), D(0))
    assert q.discount_total == sum((ln.discount_total for ln in q.lines), D(0))
    assert q.added_tax == sum((ln.added_tax for ln in q.lines), D(0))
    assert q.included_tax == sum((ln.included_tax for ln in q.lines), D(0))
    assert q.tax_total == q.added_tax + q.included_tax
    assert q.items_total == q.subtotal - q.discount_total
    assert D(0) <= q.shipping_discount <= q.shipping_fee
    assert q.shipping == q.shipping_fee - q.shipping_discount
    assert q.total == q.subtotal - q.discount_total + q.shipping_fee - q.shipping_discount + q.added_tax
    assert q.total == sum((ln.total for ln in q.lines), D(0)) + q.shipping
    assert all(_exact(getattr(q, term), q.currency) for term in (
        "subtotal", "discount_total", "items_total", "shipping_fee", "shipping_discount", "shipping", "added_tax",
        "included_tax", "tax_total", "total"))
    # promotions explain every cent taken off, goods and shipping apart
    assert sum((p.amount for p in q.promotions if p.status == "applied"), D(0)) == \
        q.discount_total + q.shipping_discount
    # a sale at a store's counter carries no shipping; delivery pays the market's fee
    counter = ctx.fulfilment == "in_store" or (ctx.fulfilment is None and ctx.channel_type == "store")
    assert q.fulfilment == ("in_store" if counter else "delivery")
    assert q.shipping_fee == (D(0) if counter else ctx.market.shipping_fee)
    assert q.shipping_reason.startswith(q.fulfilment)
    # a voucher in the wrong currency never applies
    for v in q.vouchers:
        foreign = next(x for x in sc["vouchers"] if x.code == v.code).currency not in (None, q.currency)
        assert not (foreign and v.status == "applied")
        assert v.reason_code == "voucher_currency" if foreign else v.reason_code != "voucher_currency"


@settings(max_examples=100, deadline=None)
@given(scenarios(), st.sets(st.sampled_from(SKUS)))
def test_every_cart_shows_the_terms_of_its_quote_and_reconciles(sc: dict[str, Any], unsellable: set[str]) -> None:
    lines: list[BasketLine] = sc["lines"]
    items = {ln.sku: VariantInfo(ln.sku, ln.product_id or "", ln.sku, ln.tax_class, ln.category_ids,
                                 ln.sku not in unsellable) for ln in lines}

    def engine_only(session: Any, *, lines: list[BasketLine], **_: Any) -> Quote:
        return _quote({**sc, "lines": lines})

    with patch.object(cart_quote, "_pricing_quote", engine_only):
        cart = cart_quote.quote_cart(_Channels(), currency=sc["ctx"].currency,  # type: ignore[arg-type]
                                     channel_code=sc["ctx"].channel_code, customer_id=None,
                                     lines=[(ln.sku, ln.quantity) for ln in lines], items=items)
    if not cart.priced:
        assert {ln.sku for ln in lines} <= unsellable and all(ql.total is None for ql in cart.lines)
        return
    priced = [ql for ql in cart.lines if ql.total is not None]
    assert {ql.sku for ql in priced} == {ln.sku for ln in lines} - unsellable
    for ql in priced:
        assert ql.total == ql.subtotal - ql.discount + ql.added_tax  # type: ignore[operator]
        assert ql.tax == ql.added_tax + ql.included_tax  # type: ignore[operator]
    assert cart.subtotal == sum((ql.subtotal for ql in priced), D(0))  # type: ignore[misc]
    assert cart.discount == sum((ql.discount for ql in priced), D(0))  # type: ignore[misc]
    assert cart.added_tax == sum((ql.added_tax for ql in priced), D(0))  # type: ignore[misc]
    assert cart.tax == cart.added_tax + cart.included_tax  # type: ignore[operator]
    assert cart.shipping == cart.shipping_fee - cart.shipping_discount  # type: ignore[operator]
    assert cart.items_total == cart.subtotal - cart.discount  # type: ignore[operator]
    assert cart.total == cart.subtotal - cart.discount + cart.shipping_fee - cart.shipping_discount \
        + cart.added_tax  # type: ignore[operator]
    assert cart.fulfilment in ("delivery", "in_store") and cart.shipping_reason


def test_a_store_sells_at_its_counter_unless_told_to_deliver() -> None:
    de = MARKETS[0][0]
    lists = [PriceList("base", "EUR", {"A": D("10.00")})]
    free = Promotion("ship", "Free shipping", FreeShipping())

    def q(kind: str, fulfilment: str | None) -> Quote:
        return price_basket([BasketLine("A", 2)], Context("S01" if kind == "store" else kind, kind, "EUR", de, NOW,
                                                          fulfilment=fulfilment),
                            price_lists=lists, promotions=PromotionIndex([free]))

    counter = q("store", None)
    assert (counter.fulfilment, counter.shipping_fee, counter.total) == ("in_store", D(0), D("20.00"))
    assert counter.shipping_reason == "in_store: store channel, sold at the counter, no shipping"
    assert [(p.status, p.reason) for p in counter.promotions] == [("rejected", "no shipping fee to waive")]
    delivered = q("store", "delivery")
    assert (delivered.shipping_fee, delivered.shipping_discount, delivered.total) == (D("4.95"), D("4.95"),
                                                                                      D("20.00"))
    assert delivered.shipping_reason == "delivery: shipping fee of market DE, 4.95 EUR"
    assert q("web", "in_store").shipping_fee == D(0)  # collected in a store
    assert q("web", None).fulfilment == "delivery"


# --- the defects a first user met, through the API ---------------------------------------------------------

def _shop(db: Database) -> None:
    """web and store-12 in DE (prices with 19 % VAT, 4.90 shipping), 10 % off tees, free shipping from 50."""
    fc.shop(db)
    with db.transaction() as s:
        service.create_price_list(s, code="base-eur", name="Base EUR", currency="EUR")
        service.set_prices(s, price_list="base-eur", prices={"TEE-S": D("20.00"), "TEE-M": D("20.00"),
                                                             "SOCK-1": D("5.00"), "HOOD-M": D("49.00")})
        service.set_market(s, market="DE", taxes_included=True, tax_rates={"standard": D("0.19")},
                           shipping_fees={"EUR": "4.90"})
        service.create_promotion(s, code="tees-10", name="Tees -10%", rule={"type": "percent_off", "percent": "10"},
                                 target={"category_ids": ["tees"]})
        service.create_promotion(s, code="ship-50", name="Free shipping from 50", rule={"type": "free_shipping"},
                                 currency="EUR", min_basket=D(50))


def _quote_api(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post("/api/v1/pricing/quote", json={"at": NOW.isoformat(), **body}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _reconciles(q: dict[str, Any], discount: str = "discount_total") -> bool:
    """The money equation on an API answer (a quote, or a cart with ``discount``)."""
    d = {k: D(q[k]) for k in ("total", "subtotal", discount, "shipping_fee", "shipping_discount", "added_tax")}
    return d["total"] == d["subtotal"] - d[discount] + d["shipping_fee"] - d["shipping_discount"] + d["added_tax"]


def test_a_quote_at_a_store_has_no_shipping_and_its_total_reconciles(db: Database, client: TestClient,
                                                                      admin_headers: dict[str, str]) -> None:
    _shop(db)
    lines = [{"sku": "TEE-S", "quantity": 1}, {"sku": "SOCK-1", "quantity": 2}]
    store = _quote_api(client, admin_headers, channel="store-12", lines=lines)
    assert (store["fulfilment"], store["shipping_fee"], store["shipping"]) == ("in_store", "0.00", "0.00")
    assert "no shipping" in store["shipping_reason"]
    # German prices include VAT: nothing is added, the VAT in them is shown
    assert (store["subtotal"], store["discount_total"], store["added_tax"], store["total"]) == \
        ("30.00", "2.00", "0.00", "28.00")
    assert D(store["included_tax"]) == D(store["tax_total"]) > 0
    assert D(store["total"]) == D(store["subtotal"]) - D(store["discount_total"]) and _reconciles(store)
    # the same basket to be delivered from the store: the market's shipping, explained
    delivered = _quote_api(client, admin_headers, channel="store-12", lines=lines, fulfilment="delivery")
    assert (delivered["shipping_fee"], delivered["total"]) == ("4.90", "32.90") and _reconciles(delivered)
    web = _quote_api(client, admin_headers, channel="web", lines=[{"sku": "TEE-S", "quantity": 1}])
    assert (web["fulfilment"], web["shipping_fee"], web["total"]) == ("delivery", "4.90", "22.90")
    assert web["shipping_reason"] == "delivery: shipping fee of market DE, 4.90 EUR" and _reconciles(web)
