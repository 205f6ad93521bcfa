"""Benchmark: one in-process quote of a 20-line basket with 50 active promotions (target p99 < 10 ms).

Run: ``.venv/bin/python bench/quote.py [--quotes 2000] [--lines 20] [--promotions 50] [--db sqlite|postgresql]``.
On PostgreSQL it uses a database of its own, ``omni_bench_quote`` (dropped and created again).
Measures the pure engine (``price_basket``) with the promotion index built once, as the service caches it
per process; with ``--db`` also the whole service call (``pricing.service.quote``: its queries, in a read
transaction as the API opens one per request) against a database holding the same rules.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe
from omnijourney.db import Database
from omnijourney.pricing.engine import BasketLine, Context, Market, PriceList, price_basket
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


def build(n_lines: int, n_promos: int, rng: random.Random):
    """A catalog of 5,000 SKUs in 40 categories, three price lists, ``n_promos`` active promotions."""
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    skus = [f"SKU-{i:05d}" for i in range(5000)]
    base = PriceList("base", "EUR", {s: Decimal(rng.randint(199, 19999)).scaleb(-2) for s in skus})
    def off(s: str, factor: str) -> Decimal:
        return (base.prices[s] * Decimal(factor)).quantize(Decimal("0.01"))

    web = PriceList("web", "EUR", {s: off(s, "0.95") for s in skus[:500]}, priority=5, channel_types=frozenset({"web"}))
    vip = PriceList("vip", "EUR", {s: off(s, "0.90") for s in skus[::7]}, priority=10, segments=frozenset({"vip"}))
    lines = [BasketLine(s, rng.randint(1, 4), product_id=f"P-{s[4:8]}",
                        category_ids=frozenset({f"C{int(s[4:]) % 40}", f"C{int(s[4:]) % 7 + 40}"}),
                        tax_class=rng.choice(["standard", "reduced"]))
             for s in rng.sample(skus[:800], n_lines)]
    in_basket = [ln.sku for ln in lines]
    window = {"valid_from": now - timedelta(days=3), "valid_to": now + timedelta(days=3)}
    promos: list[Promotion] = []
    for i in range(n_promos):
        kind = i % 6
        target = Target(category_ids=frozenset({f"C{rng.randrange(47)}"})) if i % 3 else \
            Target(skus=frozenset(rng.sample(in_basket, 3)))
        rule = [PercentOff(Decimal(rng.choice([5, 10, 15, 20]))), AmountOff(Decimal("2.00"), per_unit=True),
                BuyXGetY(2, 1), Bundle(tuple(sorted((s, 1) for s in rng.sample(in_basket, 2))), Decimal("30.00")),
                AmountOff(Decimal("10.00")), FreeShipping()][kind]
        promos.append(Promotion(
            f"promo-{i:03d}", f"promotion {i}", rule, target if kind not in (4, 5) else Target(),
            priority=rng.randint(0, 9), exclusive=(i == 7), stacking_group=f"g{i % 4}" if i % 5 == 0 else None,
            min_basket=Decimal("50.00") if kind == 5 else None, currency="EUR",
            segments=frozenset({"vip"}) if i % 11 == 0 else frozenset(), needs_voucher=(i == 13), **window))
    vouchers = [Voucher("WELCOME", "promo-013", max_uses=1000, used=10)]
    market = Market("EU", True, {"standard": Decimal("0.20"), "reduced": Decimal("0.055")}, Decimal("4.90"))
    ctx = Context("web-eu", "web", "EUR", market, now, frozenset({"vip"}), "cust-1")
    return lines, ctx, [base, web, vip], PromotionIndex(promos), vouchers


def fresh_database(kind: str, name: str) -> Database:
    """An empty, migrated database of its own: a temporary SQLite file, or PostgreSQL database ``name``
    (dropped and created again) on the server of ``OMNI_BENCH_PG_URL``."""
    from sqlalchemy import create_engine, make_url, text

    from omnijourney.migrate import upgrade

    if kind == "sqlite":
        db = Database(f"sqlite:///{tempfile.mkdtemp(prefix='omni-bench-')}/{name}.db")
    else:
        url = make_url(os.environ.get("OMNI_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        db = Database(url.set(database=name).render_as_string(hide_password=False))
    upgrade(db.engine)
    return db


def build_db(db: Database, lines: list[BasketLine], lists: list[PriceList], index: PromotionIndex) -> None:
    """The same catalog slice, price lists and promotions in a database, through the services."""
    from omnijourney.catalog import service as catalog
    from omnijourney.pricing import service

    with db.transaction() as s:
        catalog.create_channel(s, code="web-eu", name="Web", type="web", currency="EUR", market="DE",
                               default_price_list="base")
        cats = sorted({c for ln in lines for c in ln.category_ids} | {f"C{i}" for i in range(47)})
        for c in cats:
            catalog.create_category(s, code=c, name=c)
        for ln in lines:
            catalog.create_product(s, handle=ln.sku.lower(), title=ln.sku, tax_class=ln.tax_class,
                                   category_ids=sorted(ln.category_ids), channels=["web-eu"],
                                   variants=[{"sku": ln.sku}])
        for pl in lists:
            kind = "segment" if pl.segments else ("channel" if pl.targets_channel else "base")
            service.create_price_list(s, code=pl.code, name=pl.code, currency="EUR", kind=kind,
                                      channel_types=sorted(pl.channel_types), segments=sorted(pl.segments),
                                      priority=pl.priority)
            service.set_prices(s, price_list=pl.code, prices=dict(pl.prices))
        service.set_market(s, market="DE", taxes_included=True, tax_rates={"standard": "0.20", "reduced": "0.055"},
                           shipping_fees={"EUR": "4.90"})
        for p in index.promotions:
            r = p.rule
            rule = ({"type": "percent_off", "percent": str(r.percent)} if isinstance(r, PercentOff) else
                    {"type": "amount_off", "amount": str(r.amount), "per_unit": r.per_unit}
                    if isinstance(r, AmountOff) else
                    {"type": "buy_x_get_y", "buy": r.buy, "get": r.get} if isinstance(r, BuyXGetY) else
                    {"type": "bundle", "price": str(r.price), "items": [{"sku": k, "quantity": q} for k, q in r.items]}
                    if isinstance(r, Bundle) else {"type": "free_shipping"})
            service.create_promotion(
                s, code=p.id, name=p.name, rule=rule, priority=p.priority, exclusive=p.exclusive,
                target={"skus": sorted(p.target.skus), "category_ids": sorted(p.target.category_ids)},
                stacking_group=p.stacking_group, valid_from=p.valid_from, valid_to=p.valid_to,
                segments=sorted(p.segments), currency="EUR", min_basket=p.min_basket, needs_voucher=p.needs_voucher)
        service.create_voucher(s, code="WELCOME", promotion="promo-013", max_uses=1000)


def _percentiles(timings: list[float]) -> str:
    timings.sort()
    pct = statistics.quantiles(timings, n=100, method="inclusive")
    return f"p50 {pct[49]:.3f} ms, p95 {pct[94]:.3f} ms, p99 {pct[98]:.3f} ms, max {timings[-1]:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quotes", type=int, default=2000)
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--promotions", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), help="also time the service call on this database")
    args = parser.parse_args()
    lines, ctx, lists, index, vouchers = build(args.lines, args.promotions, random.Random(args.seed))
    for _ in range(50):  # warm-up
        q = price_basket(lines, ctx, price_lists=lists, promotions=index, vouchers=vouchers)
    timings = []
    for _ in range(args.quotes):
        t0 = time.perf_counter_ns()
        price_basket(lines, ctx, price_lists=lists, promotions=index, vouchers=vouchers)
        timings.append((time.perf_counter_ns() - t0) / 1e6)
    applied = sum(p.status == "applied" for p in q.promotions)
    print(f"machine: {describe()}")
    print(f"settings: {args.quotes} quotes, {args.lines} lines, {args.promotions} active promotions "
          f"({applied} applied), 3 price lists x 5,000 SKUs")
    print(f"engine: quote total {q.total} {q.currency}; {_percentiles(timings)} (target p99 < 10 ms)")
    if args.db:
        from omnijourney.pricing.service import quote

        db = fresh_database(args.db, "omni_bench_quote")
        build_db(db, lines, lists, index)
        basket = [(ln.sku, ln.quantity) for ln in lines]
        timings = []
        for i in range(args.quotes + 50):
            t0 = time.perf_counter_ns()
            with db.transaction(write=False) as s:
                sq = quote(s, channel_code="web-eu", lines=basket, vouchers=["WELCOME"], segments=["vip"], at=ctx.at)
            if i >= 50:  # the first 50 warm the pool and the promotion cache
                timings.append((time.perf_counter_ns() - t0) / 1e6)
        same = "same total as the engine" if sq.total == q.total else f"engine said {q.total}"
        print(f"service ({args.db}): quote total {sq.total} {sq.currency} ({same}); {_percentiles(timings)}")
        db.dispose()


if __name__ == "__main__":
    main()
