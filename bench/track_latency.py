"""Single ``POST /v1/track`` latency at a fixed arrival rate (target: p99 under 25 ms at 300 requests/s).

Open loop: requests are scheduled at the target rate whatever the answers do, so a slow server shows
up as latency instead of as a lower rate (latency is measured from the scheduled send time).

    .venv/bin/python bench/track_latency.py --db postgresql --rate 300 --seconds 20
    .venv/bin/python bench/track_latency.py --db sqlite
    .venv/bin/python bench/track_latency.py --db postgresql --during-import 300000 --seconds 30

``--during-import N`` runs ``omni events import`` of N history events into the same database while the
load runs, and reports the latency of the requests sent while the import was running too: a backfill
holds the identity lock one transaction at a time, and live calls wait for it.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.ingest_http import segment_payload
from bench.machine import describe
from bench.resolve import channels, fresh_database
from bench.server import omni_server
from omnijourney.demo.people import Channels, journeys
from omnijourney.tracking.sources import list_sources


def history_file(events: int, path: Path, ch: Channels) -> Path:
    """An NDJSON export of ``events`` past events (5 per person), as Segment's S3 archive holds them."""
    messages = list(journeys(people=max(1, events // 5), seed=3, channels=ch,
                             start=datetime(2025, 6, 1, tzinfo=UTC)))[:events]
    messages.sort(key=lambda m: m.timestamp)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for m in messages:
            f.write(orjson.dumps(segment_payload(m)) + b"\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    ap.add_argument("--rate", type=int, default=300)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--port", type=int, default=8124)
    ap.add_argument("--during-import", type=int, default=0, metavar="N",
                    help="import N history events (omni events import) while the load runs")
    ap.add_argument("--import-options", default="", help="extra options for omni events import")
    args = ap.parse_args()

    db = fresh_database(args.db)
    ch = channels(db)  # the demo's sources: "Web shop" takes the load (and the import)
    with db.transaction(write=False) as s:
        key = next(src.write_key for src in list_sources(s) if src.name == "Web shop")
    history = history_file(args.during_import, Path("bench/out/history.ndjson"), ch) if args.during_import else None
    url = db.engine.url.render_as_string(hide_password=False)
    db.dispose()
    importing: list[float] = []  # the import's start and end, on the perf_counter clock
    with omni_server(url, args.port, args.workers):
        auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        headers = {"Content-Type": "application/json", "Authorization": auth}
        total = args.rate * args.seconds
        start = time.perf_counter() + 0.5
        lock = threading.Lock()
        next_i = [0]
        latencies: list[float] = []
        sent_at: list[float] = []
        errors: dict[int, int] = {}

        def backfill() -> None:
            time.sleep(max(0.0, start + 2 - time.perf_counter()))  # 2 s of quiet load first
            cmd = [sys.executable, "-m", "omnijourney.cli", "events", "import", str(history),
                   "--source", "Web shop", *args.import_options.split()]
            importing.append(time.perf_counter())
            done = subprocess.run(cmd, env={**os.environ, "OMNI_DATABASE_URL": url}, capture_output=True, text=True)
            importing.append(time.perf_counter())
            if done.returncode != 0:
                raise SystemExit(f"the import failed: {done.stdout}{done.stderr}")

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
                    sent_at.append(due)
                    if resp.status != 200:
                        errors[resp.status] = errors.get(resp.status, 0) + 1

        threads = [threading.Thread(target=worker) for _ in range(args.threads)]
        if history is not None:
            threads.append(threading.Thread(target=backfill))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    during = sorted(t for t, at in zip(latencies, sent_at, strict=True)
                    if importing and importing[0] <= at <= importing[-1])
    latencies.sort()

    def pct(p: float, values: list[float] = latencies) -> float:
        return values[min(len(values) - 1, int(len(values) * p))] * 1000

    print(f"machine: {describe()}")
    print(f"database: {args.db}; uvicorn workers {args.workers}; open loop at {args.rate} req/s for "
          f"{args.seconds} s from {args.threads} keep-alive connections on the same machine")
    print(f"{len(latencies):,} requests in {elapsed:.1f} s ({len(latencies) / elapsed:,.0f}/s); non-200: {errors}")
    print(f"latency p50 {pct(0.5):.1f} ms, p95 {pct(0.95):.1f} ms, p99 {pct(0.99):.1f} ms, max {pct(1.0):.1f} ms "
          f"(target p99 < 25 ms)")
    if importing:
        took = importing[-1] - importing[0]
        print(f"during the import of {args.during_import:,} events ({took:.1f} s, "
              f"{args.during_import / took:,.0f} events/s; options: {args.import_options or 'defaults'}): "
              f"{len(during):,} requests, latency p50 {pct(0.5, during):.1f} ms, p99 {pct(0.99, during):.1f} ms, "
              f"max {pct(1.0, during):.1f} ms")


if __name__ == "__main__":
    main()
