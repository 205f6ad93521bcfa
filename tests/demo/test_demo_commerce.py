"""The demo retailer's commerce: catalog, stores, prices that agree across channels, promotions, carts that crossed
channels; the same seed builds the same shop."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from omnijourney.carts.models import Cart, CartLine
from omnijourney.catalog.barcodes import gtin_problem
from omnijourney.catalog.models import Category, Channel, Product, ProductCategory, Publication, Variant
from omnijourney.customers.models import Identity
from omnijourney.customers.service import timeline
from omnijourney.db import Database
from omnijourney.demo.build import STEPS, DemoContext, default_now
from omnijourney.migrate import upgrade
from omnijourney.pricing import service as pricing
from omnijourney.pricing.models import PriceEntry, PriceList, Promotion, Voucher
from omnijourney.tracking.models import Event

SEED = 11
CART_EVENTS = ("Product Added", "Product Removed", "Cart Viewed", "Cart Merged", "Coupon Applied")


def build(path: Path, seed: int = SEED) -> Database:
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    ctx = DemoContext(db=db, seed=seed, people=150, now=default_now(), rng=random.Random(seed))
    for _, _, run in STEPS:
        run(ctx, lambda n: None)
    return db


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = build(tmp_path_factory.mktemp("demo") / "a.db")
    yield db
    db.dispose()


def snapshot(db: Database) -> dict[str, Any]:
    """What a user would see of the shop, ids aside (test_demo.py checks those): catalog, prices, promotions, carts."""
    with db.transaction(write=False) as s:
        handle = dict(s.execute(select(Product.id, Product.handle)).all())
        owner: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for kind, value, cid in s.execute(select(Identity.type, Identity.value, Identity.customer_id)):
            owner[cid].append((kind, value))
        lines: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for cart_id, sku, qty, channel in s.execute(select(CartLine.cart_id, CartLine.sku, CartLine.quantity,
                                                           CartLine.channel_code)):
            lines[cart_id].append((sku, qty, channel))
        carts = sorted((c.anonymous_id or "", sorted(owner[c.customer_id]) if c.customer_id else [], c.status,
                        c.channel_code, sorted(lines[c.id])) for c in s.scalars(select(Cart)))
        cart_events = sorted((e.event, e.channel, e.timestamp, e.properties.get("sku"), e.properties.get("quantity"))
                             for e in s.scalars(select(Event).where(Event.event.in_(CART_EVENTS),
                                                                    Event.source_id.is_(None))))
        return {
            "products": sorted(s.execute(select(Product.handle, Product.title, Product.brand,
                                                Product.tax_class)).all()),
            "variants": sorted((handle[v.product_id], v.sku, v.barcode, sorted(v.attributes.items()), v.image_urls)
                               for v in s.scalars(select(Variant))),
            "publications": sorted((handle[p], c) for p, c in s.execute(select(Publication.product_id,
                                                                               Publication.channel_code))),
            "prices": sorted(s.execute(select(PriceEntry.price_list_code, PriceEntry.sku,
                                              PriceEntry.amount_minor)).all()),
            "promotions": sorted((p.code, p.rule, p.target, p.valid_from, p.valid_to) for p in
                                 s.scalars(select(Promotion))),
            "carts": carts,
            "cart_events": cart_events,
        }


def test_a_few_hundred_products_with_variants(demo: Database) -> None:
    with demo.transaction(write=False) as s:
        products = s.scalar(select(func.count()).select_from(Product))
        variants = list(s.scalars(select(Variant)))
        assert 200 <= products <= 1000
        assert len(variants) > 3 * products
        assert len({v.product_id for v in variants}) == products  # every product has variants
        assert all(v.barcode and gtin_problem(v.barcode) is None for v in variants)
        assert all(v.image_urls and v.image_urls[0].startswith("https://") for v in variants)
        sized = [v for v in variants if "size" in v.attributes]
        assert len(sized) > len(variants) / 2 and all("colour" in v.attributes for v in variants)
        # a tree: every product sits in a sub-category of a root (women, men, accessories, lifestyle)
        roots = set(s.scalars(select(Category.code).where(Category.parent_code.is_(None))))
        leaves = set(s.scalars(select(Category.code).where(Category.parent_code.is_not(None))))
        assert {"women", "men", "accessories"} <= roots
        assert set(s.scalars(select(ProductCategory.category_code))) <= leaves
        # some products are sold online only, some in stores only
        where: dict[str, set[str]] = defaultdict(set)
        for pid, code in s.execute(select(Publication.product_id, Publication.channel_code)):
            where[pid].add(code)
        assert sum(1 for codes in where.values() if not any(c.startswith("S") for c in codes)) >= 3
        assert sum(1 for codes in where.values() if codes <= {"S01", "S02", "S03", "S04", "S05"}) >= 3


def test_channels_and_stores(demo: Database) -> None:
    with demo.transaction(write=False) as s:
        channels = list(s.scalars(select(Channel)))
        assert {c.type for c in channels} >= {"web", "app", "call_center", "marketplace", "store"}
        assert all(c.currency == "EUR" and c.market == "DE" for c in channels)
        stores = [c for c in channels if c.type == "store"]
        assert len(stores) == 5
        for store in stores:  # somewhere in Germany, with a street address
            assert store.latitude is not None and store.longitude is not None
            assert 47.2 < store.latitude < 55.1 and 5.8 < store.longitude < 15.1
            assert store.address and store.address[-1] != ","
        lists = list(s.scalars(select(PriceList)))
        assert {pl.kind for pl in lists} == {"base", "channel", "segment"}
        assert any(pl.valid_from and pl.valid_to for pl in lists)
        assert s.scalar(select(func.count()).select_from(Promotion)) >= 6
        welcome = s.get(Voucher, "WELCOME10")
        assert welcome is not None and welcome.per_customer_limit == 1


def _sold_in(s: Any, channels: set[str], *, category: str | None = None) -> list[str]:
    """SKUs (one per product, first few) sold in every one of ``channels``."""
    where: dict[str, set[str]] = defaultdict(set)
    for pid, code in s.execute(select(Publication.product_id, Publication.channel_code)):
        where[pid].add(code)
    q = select(Variant.product_id, func.min(Variant.sku)).group_by(Variant.product_id)
    if category is not None:
        q = q.join(ProductCategory, ProductCategory.product_id == Variant.product_id).where(
            ProductCategory.category_code.in_(select(Category.code).where(Category.parent_code == category)))
    return sorted(sku for pid, sku in s.execute(q) if channels <= where[pid])


def test_same_basket_same_price_except_where_a_rule_says_so(demo: Database) -> None:
    at = default_now()
    with demo.transaction(write=False) as s:
        basket = [(sku, 1) for sku in _sold_in(s, {"web", "app", "marketplace"})[:4]]
        web, app, market = (pricing.quote(s, channel_code=c, lines=basket, at=at)
                            for c in ("web", "app", "marketplace"))
        assert web.total == app.total
        assert market.total != web.total  # its channel list prices the marketplace's commission in
        assert {ln.price_list for ln in market.lines} == {"EUR-MARKETPLACE"}
        assert web.taxes_included and web.tax_total > 0  # German prices include VAT

        # the store-only promotion: applied in every store, in no other channel
        accessory = [(_sold_in(s, {"web", "app", "S01", "S02", "S03", "S04", "S05"}, category="accessories")[0], 1)]
        for channel in ("S01", "S02", "S03", "S04", "S05", "web", "app", "call-center"):
            q = pricing.quote(s, channel_code=channel, lines=accessory, at=at)
            applied = {p.promotion_id for p in q.promotions if p.status == "applied"}
            assert ("STORE-ACCESSORIES-15" in applied) == channel.startswith("S"), channel


def test_carts_crossed_channels_on_the_timelines(demo: Database) -> None:
    with demo.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Cart)) >= 10
        events = list(s.scalars(select(Event).where(Event.event.in_(CART_EVENTS), Event.source_id.is_(None))))
        assert {"Product Added", "Product Removed", "Cart Viewed"} <= {e.event for e in events}
        assert all(e.customer_id is not None for e in events)  # on a person's timeline
        assert all(e.timestamp <= default_now() for e in events)
        channels: dict[str, set[str]] = defaultdict(set)
        for e in events:
            channels[e.properties["cart_id"]].add(e.channel)
        crossed = [cart for cart, seen in channels.items() if len(seen) >= 2]
        assert len(crossed) >= len(channels) // 2
        # the customer's timeline shows the cart's events with the channel each happened in
        e = next(e for e in events if e.properties["cart_id"] == crossed[0])
        _, shown, _ = timeline(s, customer_id=e.customer_id, limit=200)
        seen = {(ev.event, ev.channel) for ev in shown}
        assert len({ch for ev, ch in seen if ev in CART_EVENTS}) >= 2


def test_same_seed_same_shop(demo: Database, tmp_path: Path) -> None:
    again = build(tmp_path / "b.db")
    try:
        assert snapshot(again) == snapshot(demo)
    finally:
        again.dispose()
