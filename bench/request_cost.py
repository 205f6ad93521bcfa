"""What one request costs the server, measured on a quiet path: CPU, SQL statements, transactions, pool checkouts.

Wall-clock percentiles on a machine shared with others are mostly the others' noise; what a request costs in CPU is
not. This serves the benchmark databases with ``omni serve`` (1 worker, its embedded job worker on) in a subprocess
that counts, through SQLAlchemy's engine events, every statement sent, every commit and rollback, and every
connection taken from the pool (each costs a round trip of its own when the pool pings before use); then sends
requests one at a time and divides what the server process (and the PostgreSQL backends of the bench database) used
by the number of requests.

- ``availability``: ``GET /api/v1/inventory/availability`` of one SKU across 100 locations (the database of
  ``bench/inventory_availability.py``; SQLite or PostgreSQL);
- ``checkout``: ``POST /api/v1/carts/{id}/checkout`` of a one-line cart made before (the shop of
  ``bench/checkout.py``; PostgreSQL), and after the last one the jobs due now (the captures, and what they enqueue)
  left to finish: their cost is counted in the checkout's, as in production.

    .venv/bin/python bench/request_cost.py availability --db sqlite
    .venv/bin/python bench/request_cost.py availability --db postgresql
    .venv/bin/python bench/request_cost.py checkout -n 200
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.checkout import CpuMeter, _children, _cpu_s, _free_port, _settle_jobs
from bench.machine import describe
from omnijourney.db import Database

# the server, with counters on every engine; SIGUSR1 writes them to OMNI_BENCH_COUNTS_OUT
_COUNTING_SERVER = r'''
import json, os, signal, sys, threading
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool
counts = {"statements": 0, "commits": 0, "rollbacks": 0, "checkouts": 0, "calls": 0}
lock = threading.Lock()
def bump(name):
    with lock:
        counts[name] += 1
if os.environ.get("OMNI_BENCH_CALLS"):  # every Python and C function call in every thread: work that load cannot blur
    import itertools
    calls = itertools.count()
    def profiler(frame, event, arg, tick=calls.__next__):
        if event == "call" or event == "c_call":
            tick()
    sys.setprofile(profiler)
    threading.setprofile(profiler)
event.listen(Engine, "before_cursor_execute", lambda *a: bump("statements"))
event.listen(Engine, "commit", lambda *a: bump("commits"))
event.listen(Engine, "rollback", lambda *a: bump("rollbacks"))
event.listen(Pool, "checkout", lambda *a: bump("checkouts"))
def dump(*_):
    with lock:
        data = dict(counts)
    if os.environ.get("OMNI_BENCH_CALLS"):
        data["calls"] = int(repr(calls)[6:-1])  # "count(N)": the count so far, read without counting
    with open(os.environ["OMNI_BENCH_COUNTS_OUT"], "w") as f:
        json.dump(data, f)
signal.signal(signal.SIGUSR1, dump)
import uvicorn
uvicorn.run("omnijourney.api.asgi:app", host="127.0.0.1", port=int(sys.argv[1]), workers=1, log_level="warning")
'''


class Server:
    """The counting server on ``url``; :meth:`counts` reads its counters."""

    def __init__(self, url: str, folder: Path, env: dict[str, str] | None = None, calls: bool = False) -> None:
        self.port = _free_port()
        self.out = folder / "counts.json"
        environ = {**os.environ, "OMNI_DATABASE_URL": url, "OMNI_JOBS__EMBEDDED": "true",
                   "OMNI_BENCH_COUNTS_OUT": str(self.out), **(env or {})}
        if calls:
            environ["OMNI_BENCH_CALLS"] = "1"
        self.log = open(folder / "server.log", "wb")  # noqa: SIM115  (the server writes to it)
        self.proc = subprocess.Popen([sys.executable, "-c", _COUNTING_SERVER, str(self.port)], env=environ,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: see {self.log.name}")
            time.sleep(0.2)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        return sum(_cpu_s(p) for p in [self.proc.pid, *_children(self.proc.pid)])

    def counts(self) -> dict[str, int]:
        self.out.unlink(missing_ok=True)
        self.proc.send_signal(10)  # SIGUSR1
        for _ in range(200):
            if self.out.exists() and self.out.stat().st_size:
                return json.loads(self.out.read_text())
            time.sleep(0.01)
        raise SystemExit("the server did not write its counters")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def measure(server: Server, meter: CpuMeter | None, n: int, one, settle=None, spy: str | None = None) -> None:
    """Run ``one(i)`` ``n`` times (one request each), then ``settle()``; print the cost per request. ``spy``: where
    py-spy (``pip install py-spy``, not a dependency of the project) writes a flame graph of the server meanwhile
    (it samples every thread: the event loop's and the thread pool's that runs the routes; inflates the figures)."""
    sampler = None
    if spy:
        sampler = subprocess.Popen(["py-spy", "record", "--pid", str(server.proc.pid), "--rate", "500", "--gil",
                                    "-o", spy, "--format", "raw" if spy.endswith(".txt") else "flamegraph"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
    c0, p0, t0 = server.counts(), meter.sample()["postgresql"] if meter else 0.0, server.cpu_s()
    w0 = time.perf_counter()
    for i in range(n):
        one(i)
    wall = time.perf_counter() - w0
    if settle is not None:
        settle()
    t1, p1 = server.cpu_s(), meter.sample()["postgresql"] if meter else 0.0
    c1 = server.counts()
    if sampler is not None:
        sampler.send_signal(2)  # SIGINT: py-spy writes its output and exits
        sampler.wait(60)
    per = {k: (c1[k] - c0[k]) / n for k in c0}
    # the meter's own samples open a connection of the bench's: its backend's CPU is the meter's, a fraction of a ms
    print(f"  per request: server CPU {(t1 - t0) / n * 1000:.2f} ms" +
          (f", PostgreSQL backends {(p1 - p0) / n * 1000:.2f} ms" if meter else "") +
          f"; statements {per['statements']:.1f}, commits {per['commits']:.1f}, rollbacks {per['rollbacks']:.1f}, "
          f"pool checkouts {per['checkouts']:.1f}; wall {wall / n * 1000:.2f} ms a request (client included)" +
          (f"; Python function calls {per['calls'] / 1000:.1f}k (CPU figures inflated by counting them)"
           if per["calls"] else ""))


def availability(args: argparse.Namespace, folder: Path) -> None:
    from bench.inventory_availability import CITIES, PG, fresh_database, network

    db = fresh_database(args.db, folder)
    codes, key = network(db, 1_000, 5)
    url = db.url
    db.dispose()
    server = Server(url, folder, calls=args.calls)
    meter = CpuMeter(server.proc.pid, url) if args.db == "postgresql" else None
    rng = random.Random(5)
    try:
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            def one(_: int) -> None:
                lat, lon = rng.choice(CITIES)
                got = http.get("/api/v1/inventory/availability",
                               params={"sku": rng.choice(codes), "channel": "web", "near": f"{lat},{lon}"})
                if got.status_code != 200 or len(got.json()["items"][0]["locations"]) != 100:
                    raise SystemExit(f"unexpected answer {got.status_code}: {got.text[:300]}")

            for i in range(200):
                one(i)
            print(f"availability of one SKU across 100 locations, {args.db}, {args.n} requests one at a time:")
            measure(server, meter, args.n, one, spy=args.py_spy)
    finally:
        server.stop()
    del PG


def checkout(args: argparse.Namespace, folder: Path) -> None:
    from bench.checkout import BERLIN, CARD, PG, fresh_database, make_carts

    key = fresh_database(PG, 20)
    warm = 20
    carts = make_carts(PG, 1, warm + args.n, 20)[0]
    _settle_jobs(PG)
    server = Server(PG, folder, {"OMNI_PAYMENTS__TEST_PROVIDER_PATH": str(folder / "test-provider.db")},
                    calls=args.calls)
    meter = CpuMeter(server.proc.pid, PG)
    try:
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            def one(i: int) -> None:
                cid, total = carts[i]
                got = http.post(f"/api/v1/carts/{cid}/checkout", headers={"Idempotency-Key": f"cost-{i}"},
                                json={"channel": "web", "payments": [CARD], "expected_total": total,
                                      "fulfilment": {"mode": "ship", "ship_to": BERLIN}})
                if got.status_code != 201:
                    raise SystemExit(f"checkout {got.status_code}: {got.text[:300]}")

            for i in range(warm):
                one(i)
            _settle_jobs(PG)
            print(f"checkout over HTTP, PostgreSQL, {args.n} checkouts one at a time, then the jobs due now "
                  "(captures and what they enqueue) left to finish:")
            measure(server, meter, args.n, lambda i: one(warm + i), settle=lambda: _settle_jobs(PG),
                    spy=args.py_spy)
            db = Database(PG)
            with db.transaction(write=False) as s:
                left = s.execute(text("SELECT kind, COUNT(*) FROM jobs GROUP BY kind ORDER BY kind")).all()
                paid = s.scalar(text("SELECT COUNT(*) FROM payments WHERE status = 'captured'"))
            db.dispose()
            print(f"  captured {paid} of {warm + args.n} payments; jobs left (due later): "
                  + ", ".join(f"{k} {c}" for k, c in left))
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["availability", "checkout"])
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql",
                    help="availability only (checkout runs on PostgreSQL)")
    ap.add_argument("-n", type=int, default=0, help="requests measured (default 1,000 availability, 200 checkouts)")
    ap.add_argument("--calls", action="store_true", help="count the server's Python function calls (every thread): "
                    "a measure of its work that other processes cannot change; slows it down")
    ap.add_argument("--py-spy", metavar="OUT", help="a py-spy profile of the server while measured (.svg, or .txt: "
                    "collapsed stacks)")
    args = ap.parse_args()
    args.n = args.n or (1_000 if args.what == "availability" else 200)
    print(f"machine: {describe()}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="omni-request-cost-") as tmp:
        (availability if args.what == "availability" else checkout)(args, Path(tmp))
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
