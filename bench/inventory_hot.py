"""Hot SKU on PostgreSQL: concurrent clients reserving 1 unit each of the same SKU at the same location.

Target (issue 14): at least 1,000 reservations/s with 32 concurrent clients, zero oversell.

Builds its own database (``omni_bench_inventory_hot``, dropped and created): a web channel, one SKU, a warehouse
holding 1,000,000 units. Each client has its own connection and makes one transaction per reservation through
``reservations.reserve`` (the checkout's path: channel, location, SKU and feed checks, the reservation, its line,
its expiry job, the ledger row, then the guarded ``UPDATE`` of the hot row last). After ``--seconds`` it prints
reservations/s, p50/p99 latency and the machine, then runs the checker (``inventory.audit``) with every
acknowledged reservation: no level negative, reserved equal to what the reservations hold, the ledger rebuilding
the counters.

    .venv/bin/python bench/inventory_hot.py                          # 32 threads in this process
    .venv/bin/python bench/inventory_hot.py --processes 4            # 4 processes x 8 threads
    .venv/bin/python bench/inventory_hot.py --ttl none               # no expiry job (diagnosis)
    .venv/bin/python bench/inventory_hot.py --path bare              # psycopg UPDATE + INSERT only (the floor)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe
from omnijourney.db import Database
from omnijourney.migrate import upgrade

PG = os.environ.get("OMNI_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/omni_bench_inventory_hot")
SKU, LOCATION = "HOT-1", "WH"


def fresh_database(url: str) -> None:
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()
    db = Database(url)
    upgrade(db.engine)
    from omnijourney.catalog import service
    from omnijourney.inventory import locations, stock

    with db.transaction() as s:
        service.create_channel(s, code="web", name="Web", type="web", currency="EUR", market="DE")
        service.create_product(s, handle="hot", title="Hot item", category_ids=[], channels=["web"],
                               variants=[{"sku": SKU, "attributes": {"size": "M"}}])
        locations.create_location(s, code=LOCATION, name="Warehouse", type="warehouse")
        stock.receive(s, sku=SKU, location=LOCATION, quantity=1_000_000, ref="bench")
    db.dispose()


def pooled(url: str, size: int) -> Database:
    """A ``Database`` whose pool holds a connection per client (the default pool holds 30)."""
    db = Database(url)
    db.engine.dispose()
    db.engine = create_engine(make_url(url), pool_size=size, max_overflow=0,
                              connect_args={"options": "-c jit=off"})
    db.sessions = sessionmaker(db.engine, expire_on_commit=False, autoflush=True)
    return db


def client_loop(db: Database, path: str, ttl: float | None, start: float, stop: float,
                lat: list[float], ids: list[str], errors: list[str]) -> None:
    from omnijourney.inventory import reservations

    raw = None
    if path == "bare":
        import psycopg

        parsed = make_url(db.url)
        raw = psycopg.connect(f"host={parsed.host} port={parsed.port or 5432} user={parsed.username} "
                              f"dbname={parsed.database}")
    while time.monotonic() < start:
        time.sleep(0.001)
    while True:
        t0 = time.monotonic()
        if t0 >= stop:
            break
        try:
            if raw is not None:  # the floor: a ledger row, then the guarded update, one transaction
                with raw.transaction():
                    raw.execute("INSERT INTO stock_movements (sku, location_code, kind, on_hand_delta, "
                                "reserved_delta, created_at) VALUES (%s, %s, 'reservation', 0, 1, now())",
                                (SKU, LOCATION))
                    raw.execute("UPDATE stock_levels SET reserved = reserved + 1 WHERE sku = %s AND "
                                "location_code = %s AND on_hand - reserved - 1 >= 0", (SKU, LOCATION))
                ids.append("")
            else:
                with db.transaction() as s:
                    r = reservations.reserve(s, channel_code="web", lines=[(SKU, LOCATION, 1)], ttl_s=ttl)
                ids.append(r.id)
        except Exception as exc:  # counted and shown: a benchmark that hides errors measures nothing
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            continue
        lat.append(time.monotonic() - t0)
    if raw is not None:
        raw.close()


def run_clients(url: str, threads: int, path: str, ttl: float | None, start: float, stop: float,
                out: mp.Queue | None = None) -> tuple[list[float], list[str], list[str]]:
    db = pooled(url, threads + 1)
    lat: list[float] = []
    ids: list[str] = []
    errors: list[str] = []
    workers = [threading.Thread(target=client_loop, args=(db, path, ttl, start, stop, lat, ids, errors))
               for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    db.dispose()
    if out is not None:
        out.put((lat, ids, errors))
    return lat, ids, errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--processes", type=int, default=1, help="client processes (the clients split among them)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--ttl", default="900", help="reservation ttl_s, or 'none' (no expiry job)")
    ap.add_argument("--path", choices=["reserve", "bare"], default="reserve")
    args = ap.parse_args()
    ttl = None if args.ttl == "none" else float(args.ttl)
    print(f"machine: {describe()}; load average before {os.getloadavg()[0]:.1f}")
    fresh_database(PG)
    per = [args.clients // args.processes + (1 if i < args.clients % args.processes else 0)
           for i in range(args.processes)]
    start = time.monotonic() + 3.0  # every client connected and waiting
    stop = start + args.seconds
    lat: list[float] = []
    ids: list[str] = []
    errors: list[str] = []
    if args.processes == 1:
        lat, ids, errors = run_clients(PG, per[0], args.path, ttl, start, stop)
    else:
        ctx = mp.get_context("fork")
        queue: mp.Queue = ctx.Queue()
        procs = [ctx.Process(target=run_clients, args=(PG, n, args.path, ttl, start, stop, queue)) for n in per]
        for p in procs:
            p.start()
        for _ in procs:
            part = queue.get()
            lat += part[0]
            ids += part[1]
            errors += part[2]
        for p in procs:
            p.join()
    load = os.getloadavg()[0]
    lat.sort()
    done = len(lat)
    print(f"{args.path} path, {args.clients} clients in {args.processes} process(es), ttl {args.ttl}: "
          f"{done:,} reservations in {args.seconds:.0f} s = {done / args.seconds:,.0f} reservations/s; "
          f"p50 {statistics.median(lat) * 1000:.1f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms; "
          f"{len(errors)} errors; load average {load:.1f}")
    for e in sorted(set(errors))[:5]:
        print(f"  error: {e}")
    if args.path == "reserve":
        from omnijourney.inventory.audit import audit

        db = Database(PG)
        with db.transaction(write=False) as s:
            found = audit(s, acknowledged={rid: 1 for rid in ids})
        db.dispose()
        oversold = found.units_reserved - done
        print(f"checker: {found}")
        print(f"oversell: {'none' if found.ok and oversold == 0 else oversold}; reserved {found.units_reserved:,} "
              f"= acknowledged {done:,}")


if __name__ == "__main__":
    main()
