"""Benchmark: the price consistency check over a few hundred products x ~10 channels (target: about 1 s).

    .venv/bin/python bench/consistency.py [--products 300] [--channels 10] [--db sqlite|postgresql]

On PostgreSQL it uses a database of its own, ``omni_bench_consistency`` (dropped and created again).

Builds a catalog (3 variants per product), three base lists, a channel list, 50 promotions (a few
targeting channels), then times ``pricing.consistency.check`` (the API and ``omni check consistency``
run exactly this). Setup is not timed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe
from bench.quote import fresh_database
from omnijourney.catalog import service as catalog
from omnijourney.db import Database
from omnijourney.pricing import service
from omnijourney.pricing.consistency import check

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
TYPES = ("web", "app", "store", "store", "store", "call_center", "marketplace", "store", "store", "web")


def build(db: Database, n_products: int, n_channels: int, rng: random.Random) -> None:
    with db.transaction() as s:
        for code in ("base-eur", "base-stores", "base-usd"):
            service.create_price_list(s, code=code, name=code, currency="USD" if code == "base-usd" else "EUR")
        service.create_price_list(s, code="app-eur", name="app", currency="EUR", kind="channel",
                                  channel_types=["app"], priority=5)
        service.set_market(s, market="DE", taxes_included=True, tax_rates={"standard": "0.19", "reduced": "0.07"})
        channels = []
        for i in range(n_channels):
            kind = TYPES[i % len(TYPES)]
            code = f"{kind}-{i}"
            usd = i == n_channels - 1
            default = "base-usd" if usd else ("base-stores" if kind == "store" else "base-eur")
            catalog.create_channel(s, code=code, name=code, type=kind, currency="USD" if usd else "EUR",
                                   market="US" if usd else "DE", default_price_list=default)
            channels.append(code)
        for c in range(20):
            catalog.create_category(s, code=f"cat-{c}", name=f"cat {c}")
        prices: dict[str, dict[str, Decimal]] = {"base-eur": {}, "base-stores": {}, "base-usd": {}, "app-eur": {}}
        for p in range(n_products):
            skus = [f"P{p:04d}-{size}" for size in ("S", "M", "L")]
            catalog.create_product(s, handle=f"product-{p}", title=f"Product {p}", category_ids=[f"cat-{p % 20}"],
                                   channels=channels, variants=[{"sku": sku} for sku in skus])
            price = Decimal(rng.randint(500, 20000)).scaleb(-2)
            for sku in skus:
                prices["base-eur"][sku] = price
                prices["base-stores"][sku] = price if p % 17 else price + 1  # a few disagree
                if p % 23:
                    prices["base-usd"][sku] = price + 2
                if p % 5 == 0:
                    prices["app-eur"][sku] = price - 1
        for code, entries in prices.items():
            service.set_prices(s, price_list=code, prices=entries)
        for i in range(50):
            rule = {"type": "percent_off", "percent": str(rng.choice([5, 10, 15]))}
            extra = {"channel_types": ["web"]} if i % 10 == 0 else {}
            service.create_promotion(s, code=f"promo-{i:02d}", name=f"promo {i}", rule=rule, priority=i % 4,
                                     target={"category_ids": [f"cat-{rng.randrange(20)}"]}, **extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    db = fresh_database(args.db, "omni_bench_consistency")
    build(db, args.products, args.channels, random.Random(7))
    timings = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        with db.transaction(write=False) as s:
            report = check(s, at=NOW)
        timings.append(time.perf_counter() - t0)
    statuses: dict[str, int] = {}
    for f in report.findings:
        statuses[f.status] = statuses.get(f.status, 0) + 1
    print(f"machine: {describe()}")
    print(f"settings: {args.db}, {args.products} products x 3 variants, {args.channels} channels, 4 price lists, "
          f"50 promotions; {args.runs} runs")
    print(f"checked {report.skus_checked} SKUs: {len(report.products)} products flagged, findings {statuses}")
    print(f"consistency check: best {min(timings):.3f} s, median {sorted(timings)[len(timings) // 2]:.3f} s "
          f"(target about 1 s)")
    db.dispose()


if __name__ == "__main__":
    main()
