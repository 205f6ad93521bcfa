"""Benchmark: the server time of each console page on the demo's data (target: p95 under 150 ms), and the customer
360 page of a customer with 10,000 events (target: p95 under 300 ms).

    .venv/bin/python bench/console.py [--demo omni-demo.db] [--requests 30] [--events 10000]

Without ``--demo`` it builds the demo first (``omni demo --fresh --no-serve``, seed 42, about a minute) in a
temporary directory; with it, it works on a copy of that file (the 10,000 events are added to the copy). The app runs
in-process; the time is taken inside the server, from the request's arrival at the ASGI app to the last byte of its
answer, so the client's own work is not counted. Each page is asked twice to warm up, then ``--requests`` times, logged
in as an administrator (who sees every section of every page). Prints the machine and its load beside the figures.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe
from omnijourney.api.app import create_app
from omnijourney.auth import staff as staff_service
from omnijourney.config import IdentitySettings, JobSettings, Settings
from omnijourney.core.ids import new_id
from omnijourney.db import Database
from omnijourney.tracking.messages import Message
from omnijourney.tracking.service import ingest

PAGE_TARGET_MS = 150
BIG_360_TARGET_MS = 300
MIA = "01a196564a807876ae284e34e5ea9576"  # the README's customer (seed 42)


class Timed:
    """An ASGI wrapper that notes how long the app took to answer the last request (arrival to last byte)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - start

        await self.app(scope, receive, timed_send)


def demo_file(given: str | None, work: Path) -> Path:
    target = work / "omni-demo.db"
    if given:
        shutil.copy(given, target)
        return target
    omni = Path(sys.executable).with_name("omni")
    print(f"building the demo in {work} (omni demo --fresh --no-serve) ...", flush=True)
    started = time.perf_counter()
    subprocess.run([str(omni), "demo", "--fresh", "--no-serve", "--path", str(target)], check=True,
                   stdout=subprocess.DEVNULL, cwd=work)
    print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
    return target


def busy_customer(db: Database, events: int) -> str:
    """A customer with ``events`` events over 90 days in five channels (stored through the ingestion path)."""
    rng = random.Random(7)
    user = f"bench-{new_id()[-8:]}"
    now = datetime.now(UTC)
    channels = [("web", None), ("app", None), ("store", "S01"), ("call_center", None), ("email", None)]
    names = ["Product Viewed", "Product Added", "Cart Viewed", "Checkout Started", "Email Opened", "Store Visited"]

    def message(i: int) -> Message:
        channel, store = rng.choice(channels)
        ts = now - timedelta(days=90) + timedelta(seconds=rng.randint(0, 90 * 86400))
        if i == 0:
            return Message(message_id=new_id(), type="identify", channel="web", timestamp=ts, received_at=ts,
                           user_id=user, traits={"first_name": "Busy", "last_name": "Shopper",
                                                 "email": f"{user}@example.com"})
        return Message(message_id=new_id(), type="track", channel=channel, store_code=store, timestamp=ts,
                       received_at=ts, user_id=user, event=rng.choice(names), properties={"sku": "BAG001-BLK"})

    settings = IdentitySettings()
    for start in range(0, events, 2000):
        with db.transaction() as session:
            ingest(session, messages=[message(i) for i in range(start, min(events, start + 2000))],
                   settings=settings)
    with db.transaction(write=False) as session:
        from omnijourney.customers.service import find

        return find(session, id_type="user_id", value=user, settings=settings)[0].id


def measure(client: Any, timed: Timed, url: str, n: int) -> dict[str, float]:
    times = []
    for i in range(n + 2):
        r = client.get(url)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
        if i >= 2:
            times.append(timed.last * 1000)
    times.sort()
    return {"p50": statistics.median(times), "p95": times[max(0, round(0.95 * len(times)) - 1)],
            "max": times[-1]}


def show(name: str, got: dict[str, float], target: float) -> None:
    verdict = "ok" if got["p95"] < target else "OVER"
    print(f"  {name:<36} p50 {got['p50']:7.1f} ms  p95 {got['p95']:7.1f} ms  max {got['max']:7.1f} ms  {verdict}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", help="an existing omni-demo.db (a copy is used)")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

    print(f"machine: {describe()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="omni-bench-console-") as tmp:
        path = demo_file(args.demo, Path(tmp))
        url = f"sqlite:///{path}"
        db = Database(url)
        with db.transaction() as session:
            _, password = staff_service.add_staff(session, email="bench-admin@shop.example", role="admin",
                                                  must_change_password=False)
        timed = Timed(create_app(db, Settings(database_url=url, jobs=JobSettings(embedded=False))))
        client = TestClient(timed)
        r = client.post("/api/v1/session", json={"email": "bench-admin@shop.example", "password": password})
        assert r.status_code == 201, r.text
        with db.transaction(write=False) as session:
            from sqlalchemy import select

            from omnijourney.catalog.models import Product
            from omnijourney.orders.models import Order

            order = session.scalar(select(Order.id).order_by(Order.placed_at.desc()).limit(1))
            ready = session.scalar(select(Order.id).where(Order.status == "ready_for_pickup").limit(1)) or order
            product = session.scalar(select(Product.id).order_by(Product.id).limit(1))
        pages = [
            ("overview", "/console"),
            ("customers, newest", "/console/customers"),
            ("customers, search by name", "/console/customers?q=Mia Smith"),
            ("customers, search by email", "/console/customers?q=umar.nguyen%40"),
            ("customer 360 (README's customer)", f"/console/customers/{MIA}"),
            ("products", "/console/catalog/products"),
            ("products in S01", "/console/catalog/products?channel=S01"),
            ("product", f"/console/catalog/products/{product}"),
            ("price quote, 3 lines + voucher", "/console/pricing/quote?channel=web&sku=BAG001-BLK&qty=2"
                                               "&sku=MJK001-NVY-M&qty=1&sku=MSN001-BLK-40&qty=1&vouchers=WELCOME10"),
            ("price consistency", "/console/pricing/consistency"),
            ("price consistency, all", "/console/pricing/consistency?show=all"),
            ("availability", "/console/inventory/availability?sku=BAG001-BLK&channel=web&near=52.52,13.40"),
            ("stock movements", "/console/inventory/movements"),
            ("stock movements of a SKU", "/console/inventory/movements?sku=BAG001-BLK"),
            ("orders", "/console/orders"),
            ("orders: S01, pickup, ready", "/console/orders?channel=web&fulfilment=pickup&status=ready_for_pickup"),
            ("order", f"/console/orders/{order}"),
            ("order ready for pickup", f"/console/orders/{ready}"),
            ("pickup queue S01", "/console/pickups?store=S01"),
        ]
        rows = []
        assert client.get("/console/pricing/consistency").status_code == 200
        print(f"  price consistency, first view (the report computed): {timed.last * 1000:.0f} ms", flush=True)
        for name, page in pages:
            got = measure(client, timed, page, args.requests)
            rows.append((name, got, PAGE_TARGET_MS))
            show(name, got, PAGE_TARGET_MS)
        started = time.perf_counter()
        busy = busy_customer(db, args.events)
        print(f"  ({args.events:,} events added to one customer in {time.perf_counter() - started:.1f} s)",
              flush=True)
        got = measure(client, timed, f"/console/customers/{busy}", args.requests)
        rows.append((f"customer 360, {args.events:,} events", got, BIG_360_TARGET_MS))
        show(f"customer 360, {args.events:,} events", got, BIG_360_TARGET_MS)
        worst = max(r[1]["p95"] for r in rows[:-1])
        print(f"worst page p95 {worst:.1f} ms (target < {PAGE_TARGET_MS} ms); 360 of a busy customer p95 "
              f"{got['p95']:.1f} ms (target < {BIG_360_TARGET_MS} ms); load average after "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        db.dispose()


if __name__ == "__main__":
    main()
