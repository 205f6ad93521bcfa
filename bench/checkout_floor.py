"""The floor under the checkout benchmark: the same checkout with nothing but its SQL, to say what any server written
in Python could reach on this machine (``bench/checkout.py --floor`` serves this instead of ``omni serve``).

A bare ASGI app (no framework, no ORM, no validation beyond what the checkout needs) on uvicorn, each request in a
thread with a psycopg connection of its own. It writes what a real checkout writes, so that the benchmark's checker
(``orders.audit``) passes on it too: the key look-up; step 1 in one transaction (the cart locked, its lines priced
with the market's VAT and shipping, the units reserved at the warehouse with their ledger row, the reservation with
its line and expiry job, the checkout, the payment and its request, "Checkout Started") sent as one pipeline; the
test provider's authorisation (the same SQLite-backed provider); step 2 in one transaction (the cart and checkout
locked; the authorisation's result, the order with its line, parcel and history, the reservation held for it, the
cart converted, four timeline events, the capture job, the checkout's answer) as one pipeline. A thread per process
captures: it claims due capture jobs, captures at the provider, and marks payments and orders paid.

What it leaves out: every check a real checkout makes that these carts always pass (channel, owner, idempotency
twin, price change, sourcing between locations, pools, vouchers, promotions, lifecycle) and all of FastAPI.

    .venv/bin/python -m bench.checkout_floor --port 8001 --workers 2   # OMNI_DATABASE_URL, ..._TEST_PROVIDER_PATH
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from omnijourney.core.ids import new_id
from omnijourney.payments.providers import Method
from omnijourney.payments.simulator import TestProvider

CENT = Decimal("0.01")
_local = threading.local()
_pool = ThreadPoolExecutor(max_workers=12)
_provider: TestProvider | None = None


def _dsn() -> str:
    return os.environ["OMNI_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")


def _conn() -> psycopg.Connection:
    c = getattr(_local, "conn", None)
    if c is None or c.closed:
        c = _local.conn = psycopg.connect(_dsn(), prepare_threshold=0)
    return c


def provider() -> TestProvider:
    global _provider
    if _provider is None:
        _provider = TestProvider(os.environ["OMNI_PAYMENTS__TEST_PROVIDER_PATH"], webhook_secret="floor")
    return _provider


def _job(kind: str, args: dict[str, Any], at: datetime, now: datetime) -> dict[str, Any]:
    return {"kind": kind, "args": Jsonb(args), "status": "pending", "run_at": at, "attempts": 0, "max_attempts": 10,
            "unique_key": None, "created_at": now}


def _event(name: str, anon: str, props: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"message_id": new_id(), "type": "track", "event": name, "anonymous_id": anon, "channel": "web",
            "timestamp": now, "received_at": now, "properties": Jsonb(props)}


JOB = ("INSERT INTO jobs (kind, args, status, run_at, attempts, max_attempts, unique_key, created_at) VALUES "
       "(%(kind)s, %(args)s, %(status)s, %(run_at)s, %(attempts)s, %(max_attempts)s, %(unique_key)s, %(created_at)s)")
EVENT = ("INSERT INTO events (message_id, type, event, anonymous_id, channel, timestamp, received_at, properties) "
         "VALUES (%(message_id)s, %(type)s, %(event)s, %(anonymous_id)s, %(channel)s, %(timestamp)s, %(received_at)s, "
         "%(properties)s)")
CART = """SELECT c.id, c.anonymous_id, c.status, l.sku, l.quantity, e.amount_minor, t.shipping_fees, r.rate_ppm
FROM carts c JOIN cart_lines l ON l.cart_id = c.id
JOIN price_list_entries e ON e.price_list_code = 'base-eur' AND e.sku = l.sku
JOIN tax_markets t ON t.market = 'DE' LEFT JOIN tax_rates r ON r.market = 'DE' AND r.tax_class = 'standard'
WHERE c.id = %s FOR UPDATE OF c"""
RESERVE = ("UPDATE stock_levels SET reserved = reserved + %(q)s, updated_at = %(now)s WHERE sku = %(sku)s AND "
           "location_code = 'WH' AND on_hand - reserved - safety_stock >= %(q)s")


def checkout(key: str, cart_id: str, idem: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    c = _conn()
    now = datetime.now(UTC)
    with c.transaction(), c.cursor() as cur:
        cur.execute("SELECT scopes, revoked_at FROM api_keys WHERE key_hash = %s",
                    (hashlib.sha256(key.encode()).hexdigest(),))
        row = cur.fetchone()
        if row is None or row[1] is not None:
            return 401, {"code": "unauthorized"}
        cur.execute(CART, (cart_id,))
        rows = cur.fetchall()
        if not rows or rows[0][2] != "active":
            return 409, {"code": "cart_not_active"}
        anon = rows[0][1]
        lines = [(r[3], r[4], Decimal(r[5]) / 100) for r in rows]
        items = sum((q * price for _, q, price in lines), Decimal(0))
        shipping = Decimal(str(rows[0][6]["EUR"]))
        total = items + shipping
        tax = (total - total / (1 + Decimal(rows[0][7] or 0) / 1_000_000)).quantize(CENT, ROUND_HALF_UP)
        if body.get("expected_total") is not None and Decimal(body["expected_total"]) != total:
            return 409, {"code": "price_changed"}
        co_id, rid, pid = new_id(), new_id(), new_id()
        minor = int(total * 100)
        with c.pipeline(), c.cursor() as held:
            held.executemany(RESERVE, [{"q": q, "sku": sku, "now": now} for sku, q, _ in lines])
            cur.execute("INSERT INTO reservations (id, status, channel_code, ref, expires_at, created_at, updated_at) "
                        "VALUES (%s, 'active', 'web', %s, %s, %s, %s)",
                        (rid, co_id, now + timedelta(minutes=15), now, now))
            cur.executemany("INSERT INTO reservation_lines (reservation_id, sku, location_code, quantity, status) "
                            "VALUES (%s, %s, 'WH', %s, 'active')", [(rid, s, q) for s, q, _ in lines])
            cur.executemany("INSERT INTO stock_movements (sku, location_code, kind, on_hand_delta, reserved_delta, "
                            "ref, channel_code, created_at) VALUES (%s, 'WH', 'reservation', 0, %s, %s, 'web', %s)",
                            [(s, q, rid, now) for s, q, _ in lines])
            cur.execute("INSERT INTO checkouts (id, cart_id, idempotency_key, request_hash, status, channel_code, "
                        "reservation_id, plan, created_at, updated_at) VALUES (%s, %s, %s, '', 'paying', 'web', %s, "
                        "%s, %s, %s)", (co_id, cart_id, idem, rid, Jsonb({"payments": [pid]}), now, now))
            cur.execute("INSERT INTO payments (id, ref, position, method, provider, currency, amount_minor, "
                        "authorised_minor, captured_minor, refunded_minor, refund_pending_minor, status, created_at, "
                        "updated_at) VALUES (%s, %s, 0, 'card', 'test', 'EUR', %s, 0, 0, 0, 0, 'new', %s, %s)",
                        (pid, co_id, minor, now, now))
            cur.execute("INSERT INTO payment_operations (id, payment_id, kind, phase, status, amount_minor, "
                        "idempotency_key, details, created_at) VALUES (%s, %s, 'authorise', 'request', 'requested', "
                        "%s, %s, %s, %s)", (new_id(), pid, minor, f"{pid}:authorise", Jsonb({}), now))
            cur.execute(JOB, _job("inventory.expire_reservation", {"id": rid}, now + timedelta(minutes=15), now))
            cur.execute(EVENT, _event("Checkout Started", anon, {"checkout_id": co_id, "value": str(total)}, now))
        if held.rowcount != len(lines):  # executemany adds up its rows: every line had its units
            raise RuntimeError(f"cart {cart_id}: the warehouse lacked the units (the floor does not source elsewhere)")
    card = body["payments"][0]
    auth = provider().authorise(amount=total, currency="EUR", method=Method("card", card["payment_method"]),
                                idempotency_key=f"{pid}:authorise", metadata={"payment_id": pid, "ref": co_id})
    now = datetime.now(UTC)
    oid = new_id()
    with c.transaction(), c.cursor() as cur:
        cur.execute("SELECT id FROM carts WHERE id = %s FOR UPDATE", (cart_id,))
        cur.execute("SELECT id FROM checkouts WHERE id = %s FOR UPDATE", (co_id,))
        cur.fetchone()
        order = {"id": oid, "number": "O-" + oid[-10:].upper(), "status": "allocated", "payment_status": "authorised",
                 "channel": "web", "fulfilment": "ship", "currency": "EUR", "subtotal": str(items),
                 "discount": "0.00", "shipping": str(shipping), "tax": str(tax), "total": str(total),
                 "lines": [{"sku": s, "quantity": q, "unit_price": str(p), "total": str(q * p)} for s, q, p in lines],
                 "shipments": [{"location": "WH", "status": "allocated"}],
                 "payments": [{"id": pid, "method": "card", "status": "authorised", "amount": str(total)}]}
        with c.pipeline():
            cur.execute("INSERT INTO payment_operations (id, payment_id, kind, phase, status, amount_minor, "
                        "idempotency_key, provider_ref, details, created_at) VALUES (%s, %s, 'authorise', 'result', "
                        "'authorised', %s, %s, %s, %s, %s)",
                        (new_id(), pid, minor, f"{pid}:authorise", auth.provider_ref, Jsonb({}), now))
            cur.execute("UPDATE payments SET status = 'authorised', authorised_minor = %s, provider_ref = %s, "
                        "brand = %s, last4 = %s, order_id = %s, updated_at = %s WHERE id = %s",
                        (minor, auth.provider_ref, auth.brand, auth.last4, oid, now, pid))
            cur.execute("UPDATE reservations SET ref = %s, expires_at = NULL, updated_at = %s WHERE id = %s "
                        "AND status = 'active'", (oid, now, rid))
            cur.execute("INSERT INTO orders (id, number, anonymous_id, channel_code, cart_id, status, payment_status, "
                        "fulfilment, ship_to, currency, subtotal, discount, shipping, tax, total, refunded, vouchers, "
                        "promotions, sourcing, reservation_id, placed_at, updated_at) VALUES (%s, %s, %s, 'web', %s, "
                        "'allocated', 'authorised', 'ship', %s, 'EUR', %s, 0, %s, %s, %s, 0, %s, %s, %s, %s, %s, %s)",
                        (oid, order["number"], anon, cart_id, Jsonb(body.get("fulfilment", {}).get("ship_to")), items,
                         shipping, tax, total, Jsonb([]), Jsonb([]), Jsonb({"rule": "one_location"}), rid, now, now))
            cur.executemany("INSERT INTO order_lines (order_id, sku, quantity, unit_price, discount, total, returned) "
                            "VALUES (%s, %s, %s, %s, 0, %s, 0)", [(oid, s, q, p, q * p) for s, q, p in lines])
            cur.execute("INSERT INTO shipments (id, order_id, location_code, lines, status, created_at, updated_at) "
                        "VALUES (%s, %s, 'WH', %s, 'allocated', %s, %s)",
                        (new_id(), oid, Jsonb([{"sku": s, "quantity": q} for s, q, _ in lines]), now, now))
            cur.executemany("INSERT INTO order_history (order_id, from_status, to_status, channel_code, at) VALUES "
                            "(%s, %s, %s, 'web', %s)", [(oid, None, "placed", now), (oid, "placed", "paid", now),
                                                        (oid, "paid", "allocated", now)])
            cur.execute("UPDATE carts SET status = 'converted', version = version + 1, updated_at = %s WHERE id = %s",
                        (now, cart_id))
            cur.executemany(EVENT, [_event(n, anon, {"order_id": oid, "total": str(total)}, now) for n in
                                    ("Order Placed", "Order Paid", "Order Completed", "Order Allocated")])
            cur.execute(JOB, _job("payments.capture", {"payment_id": pid, "amount": None}, now, now))
            cur.execute("UPDATE checkouts SET status = 'completed', order_id = %s, answer = %s, answer_status = 201, "
                        "updated_at = %s WHERE id = %s", (oid, Jsonb(order), now, co_id))
    _woken.put(None)
    return 201, order


_woken: queue.Queue[None] = queue.Queue()


def capture_forever() -> None:
    """Claim due capture jobs (SKIP LOCKED), capture each at the provider, mark payment and order paid."""
    c = psycopg.connect(_dsn(), prepare_threshold=0)
    while True:
        with contextlib.suppress(queue.Empty):
            _woken.get(timeout=1.0)
        while True:
            with c.transaction(), c.cursor() as cur:
                cur.execute("SELECT j.id, p.id, p.provider_ref, p.authorised_minor, p.order_id FROM jobs j "
                            "JOIN payments p ON p.id = j.args->>'payment_id' WHERE j.kind = 'payments.capture' AND "
                            "j.status = 'pending' AND j.run_at <= now() ORDER BY j.id LIMIT 20 FOR UPDATE OF j "
                            "SKIP LOCKED")
                due = cur.fetchall()
                if not due:
                    break
                now = datetime.now(UTC)
                for _, pid, ref, minor, _ in due:
                    provider().capture(ref=ref, amount=Decimal(minor) / 100, currency="EUR",
                                       idempotency_key=f"{pid}:capture")
                with c.pipeline():
                    cur.executemany("UPDATE payments SET status = 'captured', captured_minor = %s, updated_at = %s "
                                    "WHERE id = %s", [(m, now, p) for _, p, _, m, _ in due])
                    cur.executemany("UPDATE orders SET payment_status = 'paid', updated_at = %s WHERE id = %s",
                                    [(now, o) for *_, o in due])
                    cur.executemany("INSERT INTO payment_operations (id, payment_id, kind, phase, status, "
                                    "amount_minor, idempotency_key, details, created_at) VALUES (%s, %s, 'capture', "
                                    "'result', 'captured', %s, %s, %s, %s)",
                                    [(new_id(), p, m, f"{p}:capture", Jsonb({}), now) for _, p, _, m, _ in due])
                    cur.execute("DELETE FROM jobs WHERE id = ANY(%s)", ([j for j, *_ in due],))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                threading.Thread(target=capture_forever, daemon=True).start()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    path = scope["path"]
    if path == "/health":
        status, answer = 200, {"status": "ok"}
    else:
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        cart_id = path.split("/")[4]
        key = headers.get("authorization", "").removeprefix("Bearer ")
        status, answer = await asyncio.get_running_loop().run_in_executor(
            _pool, checkout, key, cart_id, headers.get("idempotency-key", ""), orjson.loads(body))
    out = orjson.dumps(answer)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    import uvicorn

    uvicorn.run("bench.checkout_floor:app", host="127.0.0.1", port=args.port, workers=args.workers,
                log_level="warning", access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
