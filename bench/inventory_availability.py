"""Availability of one SKU across 100 locations over HTTP (target: p99 under 10 ms).

Builds its own database (SQLite: a temporary file; PostgreSQL: ``omni_bench_inventory_avail``, dropped and
created): channels web and app, 90 stores (each its own store channel) and 10 warehouses spread over Germany,
``--skus`` SKUs each stocked in all 100 locations (written straight into ``stock_levels``), then serves it with
``omni serve`` (a subprocess, 1 worker) and asks ``GET /api/v1/inventory/availability?sku=..&channel=web&near=..``
from one client, one request at a time (each figure is one request's own time), near a random one of a few
cities. Prints p50/p95/p99 and the machine.

    .venv/bin/python bench/inventory_availability.py --db sqlite
    .venv/bin/python bench/inventory_availability.py --db postgresql --requests 3000
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.databases import fresh_sqlite_or_postgresql
from bench.machine import describe
from bench.server import omni_server
from omnijourney.auth.service import create_key
from omnijourney.catalog import service
from omnijourney.catalog.models import Product, Variant
from omnijourney.core.time import utcnow
from omnijourney.db import Database, encode, insert_encoded
from omnijourney.inventory import locations
from omnijourney.inventory.models import StockLevel

PG = os.environ.get("OMNI_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/omni_bench_inventory_avail")
CITIES = [(52.52, 13.40), (53.55, 9.99), (48.14, 11.58), (50.94, 6.96), (50.11, 8.68), (51.34, 12.37)]


def fresh_database(kind: str, folder: Path) -> Database:
    return fresh_sqlite_or_postgresql(kind, folder, PG)


def network(db: Database, skus: int, seed: int) -> tuple[list[str], str]:
    """100 locations and ``skus`` SKUs stocked everywhere; returns the SKUs and a read key."""
    rng = random.Random(seed)
    now = utcnow()
    with db.transaction() as s:
        service.create_channel(s, code="web", name="Web", type="web", currency="EUR", market="DE")
        service.create_channel(s, code="app", name="App", type="app", currency="EUR", market="DE")
        for i in range(90):
            lat, lon = rng.uniform(47.5, 54.5), rng.uniform(6.5, 14.5)
            service.create_channel(s, code=f"S{i:02d}", name=f"Store {i}", type="store", currency="EUR",
                                   market="DE", latitude=lat, longitude=lon, address=f"Street {i}")
    with db.transaction() as s:
        for i in range(10):
            locations.create_location(s, code=f"WH{i}", name=f"Warehouse {i}", type="warehouse",
                                      latitude=rng.uniform(47.5, 54.5), longitude=rng.uniform(6.5, 14.5),
                                      handling_hours=rng.choice([12, 24, 48]))
        for i in range(90):
            locations.create_location(s, code=f"S{i:02d}", name=f"Store {i}", type="store", channel_code=f"S{i:02d}",
                                      online_floor=rng.choice([0, 1, 2]), ships=i % 5 == 0)
    codes = [f"SKU-{i:05d}" for i in range(skus)]
    with db.transaction() as s:
        s.execute(insert(Product), [{"id": f"P{i:05d}", "handle": f"p-{i}", "title": f"Product {i}", "description": "",
                                     "attributes": {}, "status": "active", "tax_class": "standard",
                                     "created_at": now, "updated_at": now} for i in range(skus)])
        s.execute(insert(Variant), [{"sku": c, "product_id": f"P{i:05d}", "title": "", "attributes": {},
                                     "image_urls": [], "position": 0, "active": True, "created_at": now,
                                     "updated_at": now} for i, c in enumerate(codes)])
        places = [f"WH{i}" for i in range(10)] + [f"S{i:02d}" for i in range(90)]
        rows = []
        for c in codes:
            for loc in places:
                on_hand = rng.randint(0, 40)
                rows.append({"sku": c, "location_code": loc, "on_hand": on_hand,
                             "reserved": rng.randint(0, on_hand // 4), "safety_stock": rng.choice([0, 0, 1, 2]),
                             "updated_at": now})
        insert_encoded(s, encode(StockLevel.__table__, rows, db.dialect))
        _, key = create_key(s, name="bench", scopes=["inventory:read"])
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    return codes, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--skus", type=int, default=1_000)
    ap.add_argument("--requests", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: {describe()}; load average before {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        db = fresh_database(args.db, Path(tmp))
        codes, key = network(db, args.skus, args.seed)
        url = db.url
        db.dispose()
        port = free_port()
        rng = random.Random(args.seed)
        with omni_server(url, port, workers=1), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                                               headers={"Authorization": f"Bearer {key}"}) as http:
            def ask() -> float:
                lat, lon = rng.choice(CITIES)
                t0 = time.perf_counter()
                got = http.get("/api/v1/inventory/availability",
                               params={"sku": rng.choice(codes), "channel": "web", "near": f"{lat},{lon}"})
                took = time.perf_counter() - t0
                if got.status_code != 200 or len(got.json()["items"][0]["locations"]) != 100:
                    raise SystemExit(f"unexpected answer {got.status_code}: {got.text[:500]}")
                return took

            for _ in range(100):  # warm-up: connections, caches, the server's first requests
                ask()
            times = sorted(ask() for _ in range(args.requests))
    ms = [t * 1000 for t in times]
    print(f"{args.db}: {args.requests:,} requests, one SKU of {args.skus:,} across 100 locations (100 feeding web): "
          f"p50 {statistics.median(ms):.2f} ms, p95 {ms[int(len(ms) * 0.95)]:.2f} ms, "
          f"p99 {ms[int(len(ms) * 0.99)]:.2f} ms, max {ms[-1]:.1f} ms; load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
