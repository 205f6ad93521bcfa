"""``omni inventory import`` of a large stock export: rows per second, SQLite and PostgreSQL (no target in the issue).

Builds its own database (SQLite: a temporary file; PostgreSQL: ``omni_bench_inventory``, dropped and created),
a catalog of ``--skus`` variants written straight into the tables, 10 warehouses and 10 stores, and a CSV of
``--rows`` rows (70% receipts, 30% cycle counts of distinct levels, in random order). Runs the real command
(``python -m omnijourney.cli inventory import``) twice: on empty stock, then the same file again over the stock
the first run left (every count then locks a level that exists). Prints the command's own figures, the wall time
and the machine.

    .venv/bin/python bench/inventory_import.py --db sqlite
    .venv/bin/python bench/inventory_import.py --db postgresql --rows 100000
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.databases import fresh_sqlite_or_postgresql
from bench.machine import describe
from omnijourney.catalog.models import Channel, Product, Variant
from omnijourney.core.time import utcnow
from omnijourney.db import Database
from omnijourney.inventory import locations

PG = os.environ.get("OMNI_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/omni_bench_inventory")


def fresh_database(kind: str, folder: Path) -> Database:
    return fresh_sqlite_or_postgresql(kind, folder, PG)


def catalog(db: Database, skus: int, warehouses: int, stores: int) -> tuple[list[str], list[str]]:
    """``skus`` variants (10 per product), channels web and app, ``stores`` store channels; the locations."""
    now = utcnow()
    codes = [f"SKU-{i:06d}" for i in range(skus)]
    with db.transaction() as s:
        s.execute(insert(Channel), [{"code": c, "name": c, "type": c, "currency": "EUR", "market": "DE",
                                     "active": True, "created_at": now, "updated_at": now} for c in ("web", "app")]
                  + [{"code": f"S{i:02d}", "name": f"Store {i}", "type": "store", "currency": "EUR", "market": "DE",
                      "latitude": 52.0 + i / 10, "longitude": 13.0, "active": True, "created_at": now,
                      "updated_at": now} for i in range(stores)])
        s.execute(insert(Product), [{"id": f"P{i:06d}", "handle": f"p-{i}", "title": f"Product {i}", "description": "",
                                     "attributes": {}, "status": "active", "tax_class": "standard",
                                     "created_at": now, "updated_at": now} for i in range(0, skus, 10)])
        s.execute(insert(Variant), [{"sku": c, "product_id": f"P{i - i % 10:06d}", "title": "", "attributes": {},
                                     "image_urls": [], "position": i % 10, "active": True, "created_at": now,
                                     "updated_at": now} for i, c in enumerate(codes)])
        places = []
        for i in range(warehouses):
            locations.create_location(s, code=f"WH{i:02d}", name=f"Warehouse {i}", type="warehouse")
            places.append(f"WH{i:02d}")
        for i in range(stores):
            locations.create_location(s, code=f"S{i:02d}", name=f"Store {i}", type="store", channel_code=f"S{i:02d}")
            places.append(f"S{i:02d}")
    return codes, places


def write_csv(path: Path, rows: int, skus: list[str], places: list[str], seed: int) -> None:
    rng = random.Random(seed)
    counts = int(rows * 0.3)
    counted = set()
    while len(counted) < counts:
        counted.add((rng.choice(skus), rng.choice(places)))
    lines = [(s, loc, rng.randint(0, 60), "count") for s, loc in sorted(counted)]
    lines += [(rng.choice(skus), rng.choice(places), rng.randint(1, 40), "receipt") for _ in range(rows - counts)]
    rng.shuffle(lines)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sku", "location", "quantity", "kind"])
        w.writerows(lines)


def run_import(url: str, path: Path) -> tuple[float, str]:
    env = {**os.environ, "OMNI_DATABASE_URL": url, "COLUMNS": "120"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "omnijourney.cli", "inventory", "import", str(path)], env=env,
                          capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"import failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    summary = [ln for ln in done.stdout.splitlines() if ln.startswith("imported") or " rows/s" in ln]
    return wall, " | ".join(summary)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--skus", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(f"machine: {describe()}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = fresh_database(args.db, folder)
        skus, places = catalog(db, args.skus, 10, 10)
        url = db.url
        db.dispose()
        path = folder / "stock.csv"
        write_csv(path, args.rows, skus, places, args.seed)
        print(f"{args.db}: {args.rows:,} rows ({int(args.rows * 0.3):,} counts), {len(skus):,} SKUs x "
              f"{len(places)} locations")
        for label in ("into empty stock", "again, over that stock"):
            wall, summary = run_import(url, path)
            print(f"  {label}: {wall:.1f} s wall, {args.rows / wall:,.0f} rows/s including start-up; {summary}")
        print(f"  load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
