"""A 4-step funnel with a 7-day window and a channel breakdown over a generated store (bench/analytics_generate.py):
``analytics.funnels.funnel`` on DuckDB, and a straightforward pandas implementation of the same funnel, each in a
process of its own (so each one's peak memory is its own), in the same run; the ratio; the answers compared.

    .venv/bin/python bench/analytics_generate.py --events 10000000 --out bench-analytics.duckdb
    .venv/bin/python bench/funnel.py --db bench-analytics.duckdb

Steps: Products Searched -> Product Viewed -> Product Added -> Order Completed, ordered, first-touch channel.
DuckDB time: the whole call (checks, compiling the Ibis expression, the query, the result), best and median of
``--runs``. pandas time: the funnel computed from a DataFrame of the four steps' events already in memory (reading
them out of DuckDB is not counted, in pandas' favour).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

STEPS = ["Products Searched", "Product Viewed", "Product Added", "Order Completed"]
WINDOW_S = 7 * 86400


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_duckdb(path: str, runs: int) -> dict:
    import ibis

    from omnijourney.analytics import funnels
    from omnijourney.analytics.schemas import FunnelQuery
    from omnijourney.analytics.store import Store
    from omnijourney.analytics.tables import Tables

    store = Store(path)
    q = FunnelQuery(steps=[{"event": s} for s in STEPS], window=7, window_unit="day", breakdown="channel")
    times, df = [], None
    with store.cursor() as cur:
        tables = Tables("duckdb", ibis.duckdb.from_connection(cur))
        for _ in range(runs):
            t0 = time.perf_counter()
            df = funnels.funnel(tables, q)
            times.append(time.perf_counter() - t0)
    counts = {f"{r.breakdown}|{r.step}": int(r.people) for r in df.itertuples()}
    return {"times": times, "counts": counts, "peak_mb": peak_mb()}


def run_pandas(path: str, runs: int) -> dict:
    import duckdb
    import pandas as pd

    con = duckdb.connect(path, read_only=True)
    names = ", ".join(f"'{s}'" for s in STEPS)
    ev = con.execute(f"SELECT customer_id AS person, name, channel, epoch(ts) AS t, id FROM events "
                     f"WHERE name IN ({names})").df()
    con.close()
    times, counts = [], {}
    for _ in range(runs):
        t0 = time.perf_counter()
        counts = pandas_funnel(pd, ev)
        times.append(time.perf_counter() - t0)
    return {"times": times, "counts": counts, "peak_mb": peak_mb(), "rows": len(ev)}


def pandas_funnel(pd, ev) -> dict:
    """The same funnel, the way one writes it in pandas: merge_asof for the earliest next step of each entry."""
    cur = ev[ev.name == STEPS[0]][["person", "t", "channel"]].rename(columns={"t": "t0", "channel": "c0"})
    cur = cur.sort_values("t0").reset_index(drop=True)
    cur["last"] = cur["t0"]
    cur["sid"] = range(len(cur))
    for k in range(1, len(STEPS)):
        s = ev[ev.name == STEPS[k]][["person", "t"]].rename(columns={"t": f"t{k}"}).sort_values(f"t{k}")
        alive, dead = cur[cur["last"].notna()].sort_values("last"), cur[cur["last"].isna()].copy()
        m = pd.merge_asof(alive, s, left_on="last", right_on=f"t{k}", by="person", direction="forward",
                          allow_exact_matches=False)
        m.loc[m[f"t{k}"] > m["t0"] + WINDOW_S, f"t{k}"] = float("nan")
        dead[f"t{k}"] = float("nan")
        cur = pd.concat([m, dead], ignore_index=True)
        cur["last"] = cur[f"t{k}"]
    done = cur[[f"t{k}" for k in range(1, len(STEPS))]].notna()
    cur["reached"] = 1 + done.cumprod(axis=1).sum(axis=1)
    best = cur.sort_values(["person", "reached", "t0"], ascending=[True, False, True]).drop_duplicates("person")
    out = {}
    for channel, g in best.groupby("c0"):
        for k in range(len(STEPS)):
            out[f"{channel}|{k}"] = int((g["reached"] >= k + 1).sum())
    return out


def child(engine: str, path: str, runs: int) -> dict:
    """Run one engine in a process of its own; its JSON answer."""
    cmd = [sys.executable, __file__, "--db", path, "--runs", str(runs), "--child", engine]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="bench-analytics.duckdb")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", choices=["duckdb", "pandas"])
    args = parser.parse_args()
    if args.child:
        result = run_duckdb(args.db, args.runs) if args.child == "duckdb" else run_pandas(args.db, args.runs)
        print(json.dumps(result))
        return
    if not Path(args.db).exists():
        sys.exit(f"{args.db}: no such store; make one with bench/analytics_generate.py")
    load = os.getloadavg()[0]
    import duckdb

    with duckdb.connect(args.db, read_only=True) as con:
        events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    duck = child("duckdb", args.db, args.runs)
    pand = child("pandas", args.db, max(1, min(args.runs, 3)))
    d_best, d_med = min(duck["times"]), statistics.median(duck["times"])
    p_best = min(pand["times"])
    same = duck["counts"] == pand["counts"]
    print(f"events: {events:,}  load average before: {load:.2f}")
    print(f"DuckDB (Ibis): best {d_best:.2f} s, median {d_med:.2f} s, first {duck['times'][0]:.2f} s "
          f"(target < 3 s); peak RSS {duck['peak_mb']:,.0f} MB")
    print(f"pandas: best {p_best:.2f} s over {pand['rows']:,} step events already in memory; "
          f"peak RSS {pand['peak_mb']:,.0f} MB")
    print(f"ratio pandas/DuckDB: {p_best / d_best:.1f}x (goal >= 10x); same answers: {same}")
    if not same:
        diff = {k: (duck["counts"].get(k), pand["counts"].get(k))
                for k in sorted(set(duck["counts"]) | set(pand["counts"]))
                if duck["counts"].get(k) != pand["counts"].get(k)}
        print(f"differences (DuckDB, pandas): {dict(list(diff.items())[:10])}")


if __name__ == "__main__":
    main()
