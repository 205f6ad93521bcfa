"""Full checkout over real HTTP on PostgreSQL: each client makes a cart, adds a line, and checks it out with the test
provider's ``pm_card_visa`` (quote, sourcing, reservation, authorisation, order), again and again.

Target (issue 14): p99 of the checkout request under 100 ms with 20 concurrent clients.

With ``--carts-first`` every client's carts (a cart and its line each, through the carts service) are made before
the timed phase
and the jobs they scheduled are left to finish, so that the timed phase runs checkouts only (what the target
measures); without it each client makes its cart and line in the loop, loading the same cores.

Builds its own database (``omni_bench_checkout``, dropped and created): a web channel, ``--skus`` SKUs priced in EUR
with German VAT and a shipping fee, a warehouse and a store holding plenty of each, and an admin key. Serves it with
``omni serve --workers N`` as a subprocess (the embedded job worker on in each, so captures run as in production; the
test provider's state in a temporary file). The clients run in this process (threads, one connection each) on the
same machine. Prints the latency of the checkout request alone (p50/p95/p99, max), checkouts/s, the other requests'
latency, the machine and the load; then waits for the capture jobs and runs the checker (``orders.audit``).

    .venv/bin/python bench/checkout.py --carts-first --workers 2  # the carts made before the timed phase
    .venv/bin/python bench/checkout.py                          # 20 clients, 1 server process, 30 s
    .venv/bin/python bench/checkout.py --workers 2 --seconds 60
    .venv/bin/python bench/checkout.py --skus 1                 # every checkout on one hot SKU
    .venv/bin/python bench/checkout.py --carts-first --workers 2 --floor  # the same with nothing but its SQL
    .venv/bin/python bench/checkout.py --profile steps          # time each step of the checkout in the server
    .venv/bin/python bench/checkout.py --profile cprofile       # cProfile of every checkout call (1 worker)
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.databases import fresh_database as recreate
from bench.machine import describe
from omnijourney.db import Database

PG = os.environ.get("OMNI_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/omni_bench_checkout")
CARD = {"method": "card", "provider": "test", "payment_method": "pm_card_visa"}
BERLIN = {"city": "Berlin", "latitude": 52.52, "longitude": 13.40}

# run in the server process for --profile: wraps the checkout's steps (or the whole call, under cProfile) and writes
# what it measured to OMNI_BENCH_PROFILE_OUT when the process ends
_PROFILED_SERVER = r'''
import atexit, cProfile, os, pstats, signal, sys, threading, time
from omnijourney.orders import checkout as co
mode, out = os.environ["OMNI_BENCH_PROFILE"], os.environ["OMNI_BENCH_PROFILE_OUT"]
lock, times, profiles = threading.Lock(), {}, []

def timed(name, fn):
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            with lock:
                times.setdefault(name, []).append(time.perf_counter() - t0)
    return wrapper

if mode == "steps":
    co._reserve = timed("1 reserve (in its transaction, commit excluded)", co._reserve)
    co.payments.authorise = timed("2 authorise (provider and its 3 short transactions)", co.payments.authorise)
    co._complete = timed("3 complete (in its transaction, commit excluded)", co._complete)
    co.finish = timed("2+3 finish (authorise, complete with locks and commit)", co.finish)
    co.checkout = timed("checkout (the whole call)", co.checkout)
else:
    inner = co.checkout
    def profiled(*a, **k):
        p = cProfile.Profile()
        try:
            return p.runcall(inner, *a, **k)
        finally:
            with lock:
                profiles.append(p)
    co.checkout = profiled

def dump():
    if mode == "steps":
        with open(out, "w") as f:
            for name, xs in sorted(times.items()):
                xs.sort()
                f.write(f"{name}: n={len(xs)} mean {sum(xs) / len(xs) * 1000:.1f} ms, p50 {xs[len(xs) // 2] * 1000:.1f}"
                        f" ms, p99 {xs[int(len(xs) * 0.99)] * 1000:.1f} ms\n")
    elif profiles:
        stats = pstats.Stats(profiles[0])
        for p in profiles[1:]:
            stats.add(p)
        stats.dump_stats(out)
atexit.register(dump)
# uvicorn shuts down on SIGTERM, then raises it again for the handler found before it started: this one, which exits
# through atexit (the default handler would end the process without it)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
import uvicorn
uvicorn.run("omnijourney.api.asgi:app", host="127.0.0.1", port=int(sys.argv[1]), workers=1, log_level="warning")
'''


def sku(i: int) -> str:
    return f"BENCH-{i:04d}"


def fresh_database(url: str, skus: int) -> str:
    """Drop and create the database, migrate it, seed the shop; returns an admin key."""
    db = recreate(url)
    from omnijourney.auth.service import create_key
    from omnijourney.catalog import service
    from omnijourney.inventory import locations, stock
    from omnijourney.pricing import service as pricing

    with db.transaction() as s:
        service.create_channel(s, code="web", name="Web", type="web", currency="EUR", market="DE")
        service.create_channel(s, code="S01", name="Berlin Mitte", type="store", currency="EUR", market="DE",
                               address="Berlin Mitte 1", latitude=52.52, longitude=13.405)
        for p in range(0, skus, 10):
            service.create_product(s, handle=f"bench-{p:04d}", title=f"Bench product {p}", category_ids=[],
                                   channels=["web", "S01"],
                                   variants=[{"sku": sku(i), "attributes": {"size": str(i - p)}}
                                             for i in range(p, min(p + 10, skus))])
        pricing.create_price_list(s, code="base-eur", name="Base EUR", currency="EUR")
        pricing.set_prices(s, price_list="base-eur", prices={sku(i): f"{20 + i % 50}.00" for i in range(skus)})
        pricing.set_market(s, market="DE", taxes_included=True, tax_rates={"standard": "0.19"},
                           shipping_fees={"EUR": "4.95"})
        locations.create_location(s, code="WH", name="Erfurt warehouse", type="warehouse", latitude=50.98,
                                  longitude=11.03)
        locations.create_location(s, code="S01", name="Berlin Mitte", type="store", channel_code="S01", ships=True)
        for i in range(skus):
            stock.receive(s, sku=sku(i), location="WH", quantity=1_000_000, ref="bench")
            stock.receive(s, sku=sku(i), location="S01", quantity=50, ref="bench")
        _, key = create_key(s, name="bench", scopes=["admin"])
    db.dispose()
    return key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, port: int, workers: int, provider_path: str, profile: str | None,
                 profile_out: str, floor: bool = False) -> subprocess.Popen:
    env = {**os.environ, "OMNI_DATABASE_URL": url, "OMNI_PAYMENTS__TEST_PROVIDER_PATH": provider_path,
           "OMNI_JOBS__EMBEDDED": "true"}
    if profile:
        env |= {"OMNI_BENCH_PROFILE": profile, "OMNI_BENCH_PROFILE_OUT": profile_out}
        cmd = [sys.executable, "-c", _PROFILED_SERVER, str(port)]
    elif floor:  # the same checkout with nothing but its SQL (bench/checkout_floor.py)
        cmd = [sys.executable, "-m", "bench.checkout_floor", "--port", str(port), "--workers", str(workers)]
    else:
        cmd = [sys.executable, "-m", "omnijourney.cli", "serve", "--port", str(port), "--workers", str(workers)]
    log = open(Path(profile_out).with_name("server.log"), "wb")  # noqa: SIM115  (the server writes to it)
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                              cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start: see {log.name}")
        time.sleep(0.2)


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.checkout: list[float] = []
        self.cart: list[float] = []  # create the cart and add its line
        self.orders: dict[str, dict] = {}
        self.errors: list[str] = []


def make_carts(url: str, clients: int, count: int, skus: int) -> list[list[tuple[str, str]]]:
    """Each client's carts for the timed phase (a cart with one line each, through the carts service in this process,
    as the API would make them): [(id, total)] per client."""
    from omnijourney.carts import service as carts

    db = Database(url)
    out: list[list[tuple[str, str]]] = []
    for n in range(clients):
        rnd = random.Random(n)
        mine = []
        for i in range(count):
            with db.transaction() as s:
                cart, _ = carts.open_cart(s, channel_code="web", anonymous_id=f"bench-{n}-{i}")
                view = carts.add_line(s, cart_id=cart.id, sku=sku(rnd.randrange(skus)), quantity=1,
                                      channel_code="web")
                mine.append((cart.id, str(view.quote.total)))
        out.append(mine)
    db.dispose()
    return out


def client(base: str, key: str, n: int, skus: int, start: float, warm: float, stop: float, tally: Tally,
           carts: list[tuple[str, str]] | None = None) -> None:
    """Checks out again and again until ``stop``: the carts made before (``carts``, --carts-first: only the checkout
    runs in the timed phase), else a new cart and line each time."""
    rnd = random.Random(n)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        while time.monotonic() < start:
            time.sleep(0.001)
        i = 0
        while time.monotonic() < stop:
            i += 1
            try:
                t0 = time.monotonic()
                if carts is not None:
                    if i > len(carts):
                        with tally.lock:
                            tally.errors.append("a client ran out of prepared carts: raise --carts-per-client")
                        return
                    cid, total = carts[i - 1]
                else:
                    cart = http.post("/api/v1/carts", json={"channel": "web", "anonymous_id": f"bench-{n}-{i}"})
                    cart.raise_for_status()
                    cid = cart.json()["id"]
                    line = http.post(f"/api/v1/carts/{cid}/lines", json={"sku": sku(rnd.randrange(skus)),
                                                                         "quantity": 1, "channel": "web"})
                    line.raise_for_status()
                    total = line.json()["total"]
                t1 = time.monotonic()
                got = http.post(f"/api/v1/carts/{cid}/checkout", headers={"Idempotency-Key": f"bench-{n}-{i}"},
                                json={"channel": "web", "payments": [CARD], "expected_total": total,
                                      "fulfilment": {"mode": "ship", "ship_to": BERLIN}})
                t2 = time.monotonic()
            except httpx.HTTPError as exc:
                with tally.lock:
                    tally.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            if got.status_code != 201:
                with tally.lock:
                    tally.errors.append(f"checkout {got.status_code}: {got.text[:200]}")
                continue
            with tally.lock:
                tally.orders[got.json()["id"]] = got.json()
                if t0 >= warm:
                    tally.checkout.append(t2 - t1)
                    if carts is None:
                        tally.cart.append(t1 - t0)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


class CpuMeter:
    """CPU used by the server's processes, the PostgreSQL backends of the bench database, and this process (the
    clients): what one checkout cycle costs the machine, whoever runs it."""

    def __init__(self, server_pid: int, url: str) -> None:
        self.server_pid, self.url = server_pid, url

    def sample(self) -> dict[str, float]:
        db = Database(self.url)
        with db.transaction(write=False) as s:
            backends = list(s.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")))
        db.dispose()
        server = [self.server_pid, *_children(self.server_pid)]
        return {"server": sum(_cpu_s(p) for p in server), "postgresql": sum(_cpu_s(p) for p in backends),
                "clients": time.process_time()}


def _settle_jobs(url: str) -> None:
    """Wait (at most a minute) until the jobs due now are done: the carts' adoption checks run before, not during,
    the timed phase."""
    db = Database(url)
    _wait_for_none(db, "SELECT COUNT(*) FROM jobs WHERE status <> 'failed' AND run_at <= now()", 60, 0.5)
    db.dispose()


def _wait_for_none(db: Database, count_sql: str, seconds: float, poll_s: float) -> None:
    """Poll ``count_sql`` until it counts nothing, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with db.transaction(write=False) as s:
            if not s.scalar(text(count_sql)):
                return
        time.sleep(poll_s)


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(len(xs) * q))] * 1000


def settle_and_check(url: str, orders: dict[str, dict], provider_path: str) -> None:
    from omnijourney.orders import audit
    from omnijourney.payments.simulator import TestProvider

    db = Database(url)
    _wait_for_none(db, "SELECT COUNT(*) FROM jobs WHERE kind = 'payments.capture' AND status <> 'failed'", 120, 1.0)
    provider = TestProvider(provider_path, webhook_secret="unused")
    with db.transaction(write=False) as s:
        found = audit.audit(s, acknowledged=orders, settled=False, intents=provider.intents(),
                            refunds=provider.refunds())
        captured = s.scalar(text("SELECT COUNT(*) FROM payments WHERE status = 'captured'"))
    db.dispose()
    print(f"checker: {found}")
    print(f"captured by the server's job worker: {captured:,} payments")


def report(args: argparse.Namespace, tally: Tally, load: float) -> None:
    lat = sorted(tally.checkout)
    carts = sorted(tally.cart)
    if not lat:
        raise SystemExit(f"no checkout succeeded: {tally.errors[:5]}")
    loop = "checkout of a cart made before, again" if args.carts_first else "cart, line, checkout, again"
    print(f"{args.clients} clients, {args.workers} server process(es), {args.skus} SKU(s), {args.seconds:.0f} s "
          f"measured after {args.warmup:.0f} s: {len(lat):,} checkouts = {len(lat) / args.seconds:,.1f} checkouts/s "
          f"(each client: {loop})")
    print(f"checkout request: p50 {pct(lat, 0.5):.1f} ms, p95 {pct(lat, 0.95):.1f} ms, p99 {pct(lat, 0.99):.1f} ms, "
          f"max {lat[-1] * 1000:.1f} ms, mean {statistics.fmean(lat) * 1000:.1f} ms")
    if carts:
        print(f"cart + line (two requests{', before the timed phase' if args.carts_first else ''}): "
              f"p50 {pct(carts, 0.5):.1f} ms, p99 {pct(carts, 0.99):.1f} ms")
    print(f"errors: {len(tally.errors)}; load average after {load:.1f}")
    for e in sorted(set(tally.errors))[:5]:
        print(f"  error: {e}")


def report_profile(args: argparse.Namespace, profile_out: str) -> None:
    """What the profiled server wrote when it stopped."""
    if args.profile == "steps" and Path(profile_out).exists():
        print("server-side, per checkout call (all calls, warm-up included):")
        print("  " + Path(profile_out).read_text().replace("\n", "\n  ").rstrip())
    elif args.profile == "cprofile" and Path(profile_out).exists():
        import pstats

        print(f"cProfile of every checkout call, top 30 by cumulative time ({profile_out}):")
        pstats.Stats(profile_out).sort_stats("cumulative").print_stats(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured, after --warmup")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--skus", type=int, default=200, help="checkouts spread over this many SKUs")
    ap.add_argument("--profile", choices=["steps", "cprofile"], default=None,
                    help="one worker: time the checkout's steps, or cProfile every checkout call")
    ap.add_argument("--carts-first", action="store_true",
                    help="make every client's carts before the timed phase, so that only checkouts run in it")
    ap.add_argument("--carts-per-client", type=int, default=0,
                    help="with --carts-first (default: enough for 12 checkouts/s per client over warm-up + measure; a "
                         "client that runs out stops, and says so)")
    ap.add_argument("--floor", action="store_true",
                    help="serve bench/checkout_floor.py (the checkout's SQL alone, no framework) instead of omni serve")
    args = ap.parse_args()
    if args.profile:
        args.workers = 1
    print(f"machine: {describe()}; load average before {os.getloadavg()[0]:.1f}")
    key = fresh_database(PG, args.skus)
    tmp = tempfile.mkdtemp(prefix="omni-bench-checkout-")
    provider_path = str(Path(tmp) / "test-provider.db")
    profile_out = str(Path(tmp) / ("steps.txt" if args.profile == "steps" else "checkout.prof"))
    port = _free_port()
    server = start_server(PG, port, args.workers, provider_path, args.profile, profile_out, args.floor)
    if args.floor:
        print("server: bench/checkout_floor.py, the checkout's SQL alone (no framework, no ORM)")
    tally = Tally()
    try:
        prepared: list[list[tuple[str, str]] | None] = [None] * args.clients
        if args.carts_first:
            per = args.carts_per_client or int((args.warmup + args.seconds) * 12) + 20
            t0 = time.monotonic()
            prepared = list(make_carts(PG, args.clients, per, args.skus))
            print(f"carts made before the timed phase: {args.clients} x {per} in {time.monotonic() - t0:.0f} s")
            _settle_jobs(PG)
        print(f"load average at the start of the timed phase {os.getloadavg()[0]:.1f}")
        start = time.monotonic() + 1.0
        warm = start + args.warmup
        stop = warm + args.seconds
        threads = [threading.Thread(target=client, args=(f"http://127.0.0.1:{port}", key, n, args.skus, start, warm,
                                                         stop, tally, prepared[n])) for n in range(args.clients)]
        for t in threads:
            t.start()
        meter = CpuMeter(server.pid, PG)
        time.sleep(max(0.0, warm - time.monotonic()))
        before = meter.sample()
        time.sleep(max(0.0, stop - time.monotonic()))
        after = meter.sample()
        for t in threads:
            t.join()
        load = os.getloadavg()[0]
        report(args, tally, load)
        cycles = max(1, len(tally.checkout))
        used = {k: after[k] - before[k] for k in before}
        cycle = "checkout" if args.carts_first else "cart, line, checkout"
        print(f"CPU per checkout cycle ({cycle}; the server's job worker included): " + ", ".join(
            f"{k} {v / cycles * 1000:.1f} ms" for k, v in used.items()) +
            f"; together {sum(used.values()) / cycles * 1000:.1f} ms of the {os.cpu_count()} cores' "
            f"{os.cpu_count() * args.seconds / cycles * 1000:.0f} ms (the rest: other processes on the machine)")
        settle_and_check(PG, tally.orders, provider_path)  # with the server up: its worker captures
    finally:
        server.terminate()
        server.wait(60)
    report_profile(args, profile_out)
    if args.profile != "cprofile":  # keep the profile for pstats; the rest is the run's scratch
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
