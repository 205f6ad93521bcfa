"""Single ``POST /v1/track`` latency at a fixed arrival rate (target: p99 under 25 ms at 300 requests/s).

Open loop: requests are scheduled at the target rate whatever the answers do, so a slow server shows
up as latency instead of as a lower rate (latency is measured from the scheduled send time).

    .venv/bin/python bench/track_latency.py --db postgresql --rate 300 --seconds 20
    .venv/bin/python bench/track_latency.py --db sqlite
"""

from __future__ import annotations

import argparse
import base64
import http.client
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe
from bench.resolve import fresh_database
from bench.server import omni_server
from omnijourney.tracking.sources import create_source


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    ap.add_argument("--rate", type=int, default=300)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--port", type=int, default=8124)
    args = ap.parse_args()

    db = fresh_database(args.db)
    with db.transaction() as s:
        key = create_source(s, name="Web shop", channel="web").write_key
    url = db.engine.url.render_as_string(hide_password=False)
    db.dispose()
    with omni_server(url, args.port, args.workers):
        auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        headers = {"Content-Type": "application/json", "Authorization": auth}
        total = args.rate * args.seconds
        start = time.perf_counter() + 0.5
        lock = threading.Lock()
        next_i = [0]
        latencies: list[float] = []
        errors: dict[int, int] = {}

        def worker() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
            while True:
                with lock:
                    i = next_i[0]
                    next_i[0] += 1
                if i >= total:
                    return
                due = start + i / args.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                body = orjson.dumps({
                    "anonymousId": f"visitor-{i % 5000}", "event": "Product Viewed", "messageId": str(uuid.uuid4()),
                    "properties": {"sku": f"SKU-{i % 300:04d}", "price": 19.99, "currency": "EUR"},
                    "context": {"page": {"path": "/p/linen-shirt"}, "userAgent": "bench"},
                })
                conn.request("POST", "/v1/track", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                took = time.perf_counter() - due
                with lock:
                    latencies.append(took)
                    if resp.status != 200:
                        errors[resp.status] = errors.get(resp.status, 0) + 1

        threads = [threading.Thread(target=worker) for _ in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    print(f"machine: {describe()}")
    print(f"database: {args.db}; uvicorn workers {args.workers}; open loop at {args.rate} req/s for "
          f"{args.seconds} s from {args.threads} keep-alive connections on the same machine")
    print(f"{len(latencies):,} requests in {elapsed:.1f} s ({len(latencies) / elapsed:,.0f}/s); non-200: {errors}")
    print(f"latency p50 {pct(0.5):.1f} ms, p95 {pct(0.95):.1f} ms, p99 {pct(0.99):.1f} ms, max {pct(1.0):.1f} ms "
          f"(target p99 < 25 ms)")


if __name__ == "__main__":
    main()
