"""Hot SKU on PostgreSQL: concurrent clients reserving 1 unit each of the same SKU at the same location.

Target (issue 14): at least 1,000 reservations/s with 32 concurrent clients, zero oversell.

Builds its own database (``omni_bench_inventory_hot``, dropped and created): a web channel, one SKU, a warehouse
holding 1,000,000 units. Each client has its own connection and makes one transaction per reservation through
``reservations.reserve`` (the checkout's path: channel, location, SKU and feed checks, the reservation, its line,
its expiry job, the ledger rows, and the units taken from one of the level's pool rows, ``inventory.pools``, or
from the level itself, which then refills a pool row). ``OMNI_INVENTORY__POOL_SLOTS=0`` measures it without pools
(every reservation updates the one hot row). After ``--seconds`` it prints
reservations/s, p50/p99 latency and the machine, then runs the checker (``inventory.audit``) with every
acknowledged reservation: no level negative, reserved equal to what the reservations hold, the ledger rebuilding
the counters.

    .venv/bin/python bench/inventory_hot.py                          # 32 clients: 4 processes x 8 threads
    .venv/bin/python bench/inventory_hot.py --processes 1            # 32 threads in one process (its GIL)
    OMNI_INVENTORY__POOL_SLOTS=0 .venv/bin/python bench/inventory_hot.py   # no pools: every client on one row
    .venv/bin/python bench/inventory_hot.py --ttl none               # no expiry job (diagnosis)
    .venv/bin/python bench/inventory_hot.py --path bare              # psycopg UPDATE + INSERT only (the floor)
    .venv/bin/python bench/inventory_hot.py --path lean              # the same rows as reserve, 2 round trips
    .venv/bin/python bench/inventory_hot.py --skus 32                # one SKU per client: no hot row (diagnosis)

``--path lean`` is the floor without pools, for comparison: the same checks in one query and the same writes
(reservation, line, expiry job, ledger row, guarded update of the hot row) sent in one pipeline with psycopg, no
ORM and no transaction object around them.
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

from sqlalchemy import create_engine, make_url
from sqlalchemy.orm import sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.databases import fresh_database as recreate
from bench.machine import describe
from omnijourney.db import Database

PG = os.environ.get("OMNI_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/omni_bench_inventory_hot")
SKU, LOCATION = "HOT-1", "WH"
VALIDATE = """SELECT c.active, l.active, l.type, l.channel_code, l.online_floor,
       EXISTS (SELECT 1 FROM variants v WHERE v.sku = %(sku)s),
       EXISTS (SELECT 1 FROM location_feeds f WHERE f.location_code = l.code AND f.channel_code = c.code)
FROM channels c, locations l WHERE c.code = %(ch)s AND l.code = %(loc)s"""
GUARDED = ("UPDATE stock_levels SET reserved = reserved + %(q)s, updated_at = %(now)s WHERE sku = %(sku)s "
           "AND location_code = %(loc)s AND on_hand - reserved - %(q)s >= %(keep)s + "
           "CASE WHEN %(safety)s THEN safety_stock ELSE 0 END")


def sku(n: int) -> str:
    return SKU if n == 0 else f"{SKU}-{n}"


def fresh_database(url: str, skus: int = 1) -> None:
    db = recreate(url)
    from omnijourney.catalog import service
    from omnijourney.inventory import locations, stock

    with db.transaction() as s:
        service.create_channel(s, code="web", name="Web", type="web", currency="EUR", market="DE")
        service.create_product(s, handle="hot", title="Hot item", category_ids=[], channels=["web"],
                               variants=[{"sku": sku(n), "attributes": {"n": n}} for n in range(skus)])
        locations.create_location(s, code=LOCATION, name="Warehouse", type="warehouse")
        for n in range(skus):
            stock.receive(s, sku=sku(n), location=LOCATION, quantity=1_000_000, ref="bench")
    db.dispose()


OPTIONS = "-c jit=off"  # as omnijourney.db connects; --sync-commit off adds "-c synchronous_commit=off"


def pooled(url: str, size: int) -> Database:
    """A ``Database`` whose pool holds a connection per client (the default pool holds 30)."""
    db = Database(url)
    db.engine.dispose()
    db.engine = create_engine(make_url(url), pool_size=size, max_overflow=0, connect_args={"options": OPTIONS})
    db.sessions = sessionmaker(db.engine, expire_on_commit=False, autoflush=True)
    return db


def lean_reserve(conn, item: str, ttl: float | None) -> str:  # type: ignore[no-untyped-def]
    """The prototype: one query of checks, then the writes in one pipeline; the guarded update last."""
    from datetime import timedelta

    import orjson

    from omnijourney.core.ids import new_id
    from omnijourney.core.time import utcnow

    args = {"ch": "web", "loc": LOCATION, "sku": item}
    found = conn.execute(VALIDATE, args).fetchone()
    if found is None or not all((found[0], found[1], found[5], found[6] or found[3] == "web")):
        raise RuntimeError("refused by the checks")
    own = found[3] == "web"
    keep = 0 if own or found[2] != "store" else found[4]
    now = utcnow()
    rid = new_id()
    expires = now + timedelta(seconds=ttl) if ttl is not None else None
    with conn.pipeline():
        conn.execute("INSERT INTO reservations (id, status, channel_code, ref, expires_at, created_at, updated_at) "
                     "VALUES (%s, 'active', 'web', NULL, %s, %s, %s)", (rid, expires, now, now))
        conn.execute("INSERT INTO reservation_lines (reservation_id, sku, location_code, quantity, status) "
                     "VALUES (%s, %s, %s, 1, 'active')", (rid, item, LOCATION))
        if expires is not None:
            conn.execute("INSERT INTO jobs (kind, args, status, run_at, attempts, max_attempts, created_at) "
                         "VALUES ('inventory.expire_reservation', %s, 'pending', %s, 0, 10, %s)",
                         (orjson.dumps({"id": rid}).decode(), expires, now))
        conn.execute("INSERT INTO stock_movements (sku, location_code, kind, on_hand_delta, reserved_delta, ref, "
                     "channel_code, created_at) VALUES (%s, %s, 'reservation', 0, 1, %s, 'web', %s)",
                     (item, LOCATION, rid, now))
        done = conn.execute(GUARDED, {"q": 1, "now": now, "sku": item, "loc": LOCATION, "keep": keep,
                                      "safety": not own})
    if done.rowcount != 1:
        conn.rollback()
        raise RuntimeError("out of stock")
    conn.commit()
    return rid


def client_loop(db: Database, path: str, ttl: float | None, item: str, start: float, stop: float,
                lat: list[float], ids: list[str], errors: list[str]) -> None:
    from omnijourney.inventory import reservations

    raw = None
    if path in ("bare", "lean"):
        import psycopg

        parsed = make_url(db.url)
        raw = psycopg.connect(f"host={parsed.host} port={parsed.port or 5432} user={parsed.username} "
                              f"dbname={parsed.database}", options=OPTIONS)
    while time.monotonic() < start:
        time.sleep(0.001)
    while True:
        t0 = time.monotonic()
        if t0 >= stop:
            break
        try:
            if path == "bare":  # the floor: a ledger row, then the guarded update, one transaction
                with raw.transaction():
                    raw.execute("INSERT INTO stock_movements (sku, location_code, kind, on_hand_delta, "
                                "reserved_delta, created_at) VALUES (%s, %s, 'reservation', 0, 1, now())",
                                (item, LOCATION))
                    raw.execute("UPDATE stock_levels SET reserved = reserved + 1 WHERE sku = %s AND "
                                "location_code = %s AND on_hand - reserved - 1 >= 0", (item, LOCATION))
                ids.append("")
            elif path == "lean":
                ids.append(lean_reserve(raw, item, ttl))
            else:
                with db.transaction() as s:
                    r = reservations.reserve(s, channel_code="web", lines=[(item, LOCATION, 1)], ttl_s=ttl)
                ids.append(r.id)
        except Exception as exc:  # counted and shown: a benchmark that hides errors measures nothing
            errors.append(f"{type(exc).__name__}: {exc}"[:int(os.environ.get("BENCH_ERR_CHARS", "200"))])
            continue
        lat.append(time.monotonic() - t0)
    if raw is not None:
        raw.close()


def run_clients(url: str, threads: int, first: int, skus: int, path: str, ttl: float | None, start: float,
                stop: float, out: mp.Queue | None = None) -> tuple[list[float], list[str], list[str]]:
    db = pooled(url, threads + 1)
    lat: list[float] = []
    ids: list[str] = []
    errors: list[str] = []
    workers = [threading.Thread(target=client_loop, args=(db, path, ttl, sku((first + i) % skus), start, stop, lat,
                                                          ids, errors))
               for i in range(threads)]
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
    ap.add_argument("--processes", type=int, default=4,
                    help="client processes (the clients split among them; one process alone is bound by its GIL)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--ttl", default="900", help="reservation ttl_s, or 'none' (no expiry job)")
    ap.add_argument("--path", choices=["reserve", "bare", "lean"], default="reserve")
    ap.add_argument("--skus", type=int, default=1, help="clients spread over this many SKUs (1: all on one row)")
    ap.add_argument("--sync-commit", choices=["on", "off"], default="on",
                    help="off: commits do not wait for the WAL flush (diagnosis: how long the hot row's lock is held)")
    args = ap.parse_args()
    global OPTIONS
    if args.sync_commit == "off":
        OPTIONS += " -c synchronous_commit=off"
    ttl = None if args.ttl == "none" else float(args.ttl)
    print(f"machine: {describe()}; load average before {os.getloadavg()[0]:.1f}")
    fresh_database(PG, args.skus)
    per = [args.clients // args.processes + (1 if i < args.clients % args.processes else 0)
           for i in range(args.processes)]
    start = time.monotonic() + 3.0  # every client connected and waiting
    stop = start + args.seconds
    lat: list[float] = []
    ids: list[str] = []
    errors: list[str] = []
    if args.processes == 1:
        lat, ids, errors = run_clients(PG, per[0], 0, args.skus, args.path, ttl, start, stop)
    else:
        ctx = mp.get_context("fork")
        queue: mp.Queue = ctx.Queue()
        procs = [ctx.Process(target=run_clients, args=(PG, n, sum(per[:i]), args.skus, args.path, ttl, start, stop,
                                                       queue)) for i, n in enumerate(per)]
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
    if not lat:
        sys.exit(f"no reservation went through; errors: {sorted(set(errors))[:5]}")
    lat.sort()
    done = len(lat)
    print(f"{args.path} path, {args.clients} clients in {args.processes} process(es) on {args.skus} SKU(s), "
          f"ttl {args.ttl}, synchronous_commit {args.sync_commit}: "
          f"{done:,} reservations in {args.seconds:.0f} s = {done / args.seconds:,.0f} reservations/s; "
          f"p50 {statistics.median(lat) * 1000:.1f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms; "
          f"{len(errors)} errors; load average {load:.1f}")
    for e in sorted(set(errors))[:5]:
        print(f"  error: {e}")
    if args.path != "bare":
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
