"""One checkout, measured in-process and deterministically: SQL statements, transactions and Python CPU.

The same shop as ``bench/checkout.py`` (a web channel, SKUs with German VAT and a shipping fee, a warehouse and a
store) in a database of its own (``omni_bench_checkout_profile``, dropped and created). Carts with one line each are
made first; then each checkout is run alone, one after another, in this process, and measured:

- **statements**: every SQL statement sent to PostgreSQL (SQLAlchemy's ``before_cursor_execute``; ``BEGIN`` and
  ``COMMIT`` are not statements there: they are counted as transactions), by kind and by the step they ran in;
- **CPU**: this process's CPU time (``time.process_time``: the server's share of a checkout; PostgreSQL's backend
  is another process and not counted), median of the runs;
- with ``--http``, the checkout request through the ASGI app (FastAPI's routing, authentication, validation and
  the answer's JSON, as ``omni serve`` runs it; the test client's own work included in the CPU);
- with ``--cprofile``, a cProfile of the service call (``orders.checkout.checkout``) over all runs, top functions by
  own and cumulative time (use ``--cpu-clock`` to profile CPU instead of wall time).

Nothing else runs meanwhile, so two runs of this script differ only by the machine's load (CPU figures) and never
by statements.

    .venv/bin/python bench/checkout_profile.py                 # 30 checkouts through the service, statements + CPU
    .venv/bin/python bench/checkout_profile.py --http          # through the ASGI app instead
    .venv/bin/python bench/checkout_profile.py --cprofile --cpu-clock -n 100
    .venv/bin/python bench/checkout_profile.py --sql           # print the statements of one checkout
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PG = os.environ.get("OMNI_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/omni_bench_checkout_profile")
BERLIN = {"city": "Berlin", "latitude": 52.52, "longitude": 13.40}
CARD = {"method": "card", "provider": "test", "payment_method": "pm_card_visa"}


class Statements:
    """Counts (and optionally keeps) the statements an engine sends."""

    def __init__(self, engine) -> None:
        from sqlalchemy import event

        self.n, self.kinds, self.kept, self.keep, self.tx = 0, Counter(), [], False, 0
        event.listen(engine, "before_cursor_execute", self._on)
        event.listen(engine, "commit", self._commit)

    def _on(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.n += 1
        words = statement.split(None, 3)
        kind = words[0].upper()
        if kind in ("INSERT", "DELETE") and len(words) > 2:
            kind += " " + words[2].strip('"').lower()
        elif kind == "UPDATE" and len(words) > 1:
            kind += " " + words[1].strip('"').lower()
        elif kind == "SELECT":
            m = re.search(r"\bFROM\s+\"?(\w+)", statement, re.I)
            kind += " " + (m.group(1).lower() if m else re.sub(r"\(.*", "", words[1])[:40])
            if "FOR UPDATE" in statement:
                kind += " FOR UPDATE"
        self.kinds[kind] += 1
        if self.keep:
            self.kept.append(" ".join(statement.split())[:220])

    def _commit(self, conn) -> None:
        self.tx += 1

    def reset(self) -> None:
        self.n, self.kinds, self.kept, self.tx = 0, Counter(), [], 0


def make_carts(db, n: int, skus: int) -> list[tuple[str, str]]:
    """``n`` carts of one line each (one of ``skus`` SKUs, round robin); returns (cart id, total)."""
    from bench.checkout import sku
    from omnijourney.carts import service as carts

    out = []
    for i in range(n):
        with db.transaction() as s:
            cart, _ = carts.open_cart(s, channel_code="web", anonymous_id=f"profile-{i}")
            view = carts.add_line(s, cart_id=cart.id, sku=sku(i % skus), quantity=1, channel_code="web")
            out.append((cart.id, str(view.quote.total)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30, help="checkouts measured (after --warmup)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--skus", type=int, default=20)
    ap.add_argument("--http", action="store_true", help="through the ASGI app (TestClient) instead of the service")
    ap.add_argument("--cprofile", action="store_true", help="cProfile of the service call over all runs")
    ap.add_argument("--cpu-clock", action="store_true", help="cProfile with a CPU clock (process_time)")
    ap.add_argument("--sql", action="store_true", help="print the statements of the last checkout")
    ap.add_argument("--top", type=int, default=35)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="omni-checkout-profile-")
    os.environ["OMNI_PAYMENTS__TEST_PROVIDER_PATH"] = str(Path(tmp) / "test-provider.db")
    from bench.checkout import fresh_database
    from bench.machine import describe
    from omnijourney.db import Database
    from omnijourney.orders import checkout as co

    print(f"machine: {describe()}; load average {os.getloadavg()[0]:.1f}")
    key = fresh_database(PG, args.skus)
    db = Database(PG)
    total = args.warmup + args.n
    carts = make_carts(db, total, args.skus)
    counter = Statements(db.engine)

    client = None
    if args.http:
        from fastapi.testclient import TestClient

        from omnijourney.api.app import create_app
        from omnijourney.config import JobSettings, Settings

        settings = Settings(database_url=PG, jobs=JobSettings(embedded=False))
        client = TestClient(create_app(db, settings), headers={"Authorization": f"Bearer {key}"})
        client.__enter__()

    def one(i: int) -> dict:
        cid, expected = carts[i]
        if client is not None:
            r = client.post(f"/api/v1/carts/{cid}/checkout", headers={"Idempotency-Key": f"profile-{i}"},
                            json={"channel": "web", "payments": [CARD], "expected_total": expected,
                                  "fulfilment": {"mode": "ship", "ship_to": BERLIN}})
            if r.status_code != 201:
                raise SystemExit(f"checkout {r.status_code}: {r.text[:300]}")
            return r.json()
        req = co.Request(cart_id=cid, channel_code="web", fulfilment="ship", ship_to=BERLIN, tenders=[CARD],
                         expected_total=Decimal(expected))
        answer = co.checkout(db, req, idempotency_key=f"profile-{i}")
        if answer.status != 201:
            raise SystemExit(f"checkout {answer.status}: {answer.body}")
        return answer.body

    for i in range(args.warmup):
        one(i)
    profile = cProfile.Profile(time.process_time) if args.cpu_clock else cProfile.Profile()
    cpu, wall, stmts, txs, kinds = [], [], [], [], Counter()
    for i in range(args.warmup, total):
        counter.reset()
        counter.keep = args.sql and i == total - 1
        c0, w0 = time.process_time(), time.perf_counter()
        if args.cprofile and client is None:
            profile.runcall(one, i)
        else:
            one(i)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        stmts.append(counter.n)
        txs.append(counter.tx)
        kinds.update(counter.kinds)
    if client is not None:
        client.__exit__(None, None, None)
    how = "over HTTP through the ASGI app" if args.http else "through the service (orders.checkout.checkout)"
    print(f"{args.n} checkouts {how}, one at a time, after {args.warmup} warm-up(s); PostgreSQL {PG.rsplit('@')[-1]}")
    print(f"statements per checkout: {statistics.median(stmts):.0f} (min {min(stmts)}, max {max(stmts)}); "
          f"commits {statistics.median(txs):.0f}")
    print(f"CPU in this process per checkout: median {statistics.median(cpu) * 1000:.1f} ms "
          f"(min {min(cpu) * 1000:.1f}); wall median {statistics.median(wall) * 1000:.1f} ms "
          f"(min {min(wall) * 1000:.1f})" + (" [under cProfile: inflated]" if args.cprofile else ""))
    print("statements by kind, per checkout:")
    for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {n / args.n:5.1f}  {kind}")
    if counter.kept:
        print("statements of the last checkout:")
        for s in counter.kept:
            print("  " + s)
    if args.cprofile and client is None:
        out = Path(tmp) / "checkout.prof"
        profile.dump_stats(out)
        for key_ in ("tottime", "cumulative"):
            print(f"cProfile ({'CPU' if args.cpu_clock else 'wall'} clock), top {args.top} by {key_} ({out}):")
            pstats.Stats(str(out)).sort_stats(key_).print_stats(args.top)
    db.dispose()
    if not args.cprofile:  # keep the profile for pstats; the rest is the run's scratch
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
