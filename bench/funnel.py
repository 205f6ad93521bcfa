"""A 4-step funnel with a 7-day window and a channel breakdown over a generated store (bench/analytics_generate.py):
ours (``analytics.funnels.funnel`` on DuckDB, through Ibis) against two pandas implementations of the same funnel,
in the same run, each in a process of its own (so each one's peak memory is its own); the answers must agree
before any ratio is printed.

    .venv/bin/python bench/analytics_generate.py --events 10000000 --out bench-analytics.duckdb
    .venv/bin/python bench/funnel.py --db bench-analytics.duckdb

Target (issue 15): ours under 3 s over 10M events on the 2-core machine, and at least 10x faster than a
straightforward pandas implementation.

Steps: Products Searched -> Product Viewed -> Product Added -> Order Completed, ordered, 7-day window counted from
the first step, breakdown by the first touch's channel (the rules of docs/analytics.md).

* ours: the whole ``funnels.funnel`` call (checks, compiling the Ibis expression, the queries, the result table),
  best and median of ``--runs``.
* pandas, straightforward: what an analyst writes first. Per person (``groupby("person").apply``) walk their step
  events in time order: from each first-step event, take the next step's first event strictly later, and so on,
  until the window closes; keep the entry that got furthest (the earliest among equals) and its channel. One run
  by default (``--straightforward-runs``): over 10M events it takes minutes, and it runs in full, not on a sample.
* pandas, vectorised: the same funnel with ``merge_asof`` (a sorted merge per step, as our DuckDB query does): what
  someone who knows pandas well writes; best and median of ``--pandas-runs``.

Both pandas versions start from the four steps' events already in a DataFrame (``person, name, channel, t, id``,
read out of DuckDB with the person resolved as the analyses resolve it): reading them is not timed, in pandas'
favour.

Each time is wall-clock, with the process's CPU seconds beside it (all threads: DuckDB uses both cores, pandas one),
which a loaded machine disturbs less.

Memory: each process's peak RSS while computing (the high-water mark is reset once the store is open or the events
loaded, so that reading them is not counted), beside its RSS before; for ours also DuckDB's own peak buffer memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

STEPS = ["Products Searched", "Product Viewed", "Product Added", "Order Completed"]
WINDOW_S = 7 * 86400
# the step events as the analyses see them (analytics.tables.Tables.events): the person through merges, time in
# epoch seconds (the same double as the store's: microseconds / 1e6)
STEP_EVENTS_SQL = """
SELECT COALESCE(p.survivor_id, e.customer_id, 'anon:' || e.anonymous_id) AS person, e.name, e.channel,
       epoch_us(e.ts) / 1e6 AS t, e.id
FROM events e LEFT JOIN people p ON e.customer_id = p.merged_id
WHERE e.name IN ({names})
"""


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the peak so far


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    return _status_mb("VmRSS")


def reset_peak_rss() -> None:
    """Start measuring the peak resident memory from now on (Linux: /proc/self/clear_refs), so that reading the
    events (a larger transient peak for the pandas versions) is not counted as the funnel's."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def cpu_s() -> float:
    """CPU seconds this process has used (all its threads): less sensitive than wall time to the shared machine's
    load, though not immune (caches, memory bandwidth)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident memory since :func:`reset_peak_rss`, in MB."""
    return _status_mb("VmHWM")


def run_ours(path: str, runs: int) -> dict:
    import ibis

    from omnijourney.analytics import funnels
    from omnijourney.analytics.schemas import FunnelQuery
    from omnijourney.analytics.store import Store
    from omnijourney.analytics.tables import Tables

    store = Store(path)
    q = FunnelQuery(steps=[{"event": s} for s in STEPS], window=7, window_unit="day", breakdown="channel")
    load = os.getloadavg()[0]
    times, cpu, df = [], [], None
    with store.cursor() as cur:
        tables = Tables("duckdb", ibis.duckdb.from_connection(cur))
        before = rss_mb()
        reset_peak_rss()
        for _ in range(runs):
            t0, c0 = time.perf_counter(), cpu_s()
            df = funnels.funnel(tables, q)
            times.append(time.perf_counter() - t0)
            cpu.append(cpu_s() - c0)
        peak_rss = peak_rss_mb()
        buffer_mb = duckdb_peak_buffer_mb(cur, lambda: funnels.funnel(tables, q))
    counts = {f"{r.breakdown}|{r.step}": int(r.people) for r in df.itertuples()}
    return {"times": times, "cpu": cpu, "counts": counts, "peak_mb": peak_rss, "before_mb": before,
            "duckdb_buffer_mb": buffer_mb, "load": [load, os.getloadavg()[0]]}


def duckdb_peak_buffer_mb(cur: duckdb.DuckDBPyConnection, call: Callable[[], object]) -> float | None:
    """DuckDB's peak buffer memory during the funnel's main query, from its profiler (an untimed run: profiling
    costs time). The funnel's last query is its aggregate over the matches, which holds the whole plan."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.json"
        cur.execute("PRAGMA enable_profiling = 'json'")
        cur.execute(f"PRAGMA profiling_output = '{out}'")
        try:
            call()
        finally:
            cur.execute("PRAGMA disable_profiling")
        try:
            peak = json.loads(out.read_text())["system"]["peak_buffer_memory"]
        except (OSError, KeyError, ValueError):
            return None
    return peak / 1024 / 1024


def load_step_events(path: str) -> pd.DataFrame:
    import duckdb

    names = ", ".join(f"'{s}'" for s in STEPS)
    with duckdb.connect(path, read_only=True) as con:
        return con.execute(STEP_EVENTS_SQL.format(names=names)).df()


def run_pandas(path: str, runs: int, kind: str) -> dict:
    ev = load_step_events(path)
    reset_peak_rss()
    loaded_rss = rss_mb()
    implementation = straightforward_funnel if kind == "straightforward" else vectorised_funnel
    load = os.getloadavg()[0]
    times, cpu, counts = [], [], {}
    for _ in range(runs):
        t0, c0 = time.perf_counter(), cpu_s()
        counts = implementation(ev)
        times.append(time.perf_counter() - t0)
        cpu.append(cpu_s() - c0)
    return {"times": times, "cpu": cpu, "counts": counts, "peak_mb": peak_rss_mb(), "before_mb": loaded_rss,
            "rows": len(ev), "load": [load, os.getloadavg()[0]]}


def straightforward_funnel(ev: pd.DataFrame) -> dict[str, int]:
    """The funnel as an analyst first writes it: sort, group by person, and walk each person's events in a loop."""
    ordered = ev.sort_values(["person", "t", "id"])

    def person_funnel(g: pd.DataFrame) -> tuple[str | None, int]:
        names, times, channels = g["name"].tolist(), g["t"].tolist(), g["channel"].tolist()
        best_reached, best_channel = 0, None
        for i, name in enumerate(names):
            if name != STEPS[0]:
                continue
            start = last = times[i]
            reached = 1
            for j in range(i + 1, len(names)):
                if times[j] > start + WINDOW_S:  # the window closed
                    break
                if names[j] == STEPS[reached] and times[j] > last:  # the next step, strictly later
                    last, reached = times[j], reached + 1
                    if reached == len(STEPS):
                        break
            if reached > best_reached:  # entries come in time order: the earliest among equals is kept
                best_reached, best_channel = reached, channels[i]
        return best_channel, best_reached

    per_person = ordered.groupby("person")[["name", "t", "channel"]].apply(person_funnel)
    out: dict[str, int] = {}
    for channel, reached in per_person:
        if reached == 0:  # no first step: not in the funnel
            continue
        for k in range(len(STEPS)):
            key = f"{channel}|{k}"
            out[key] = out.get(key, 0) + (reached >= k + 1)
    return out


def vectorised_funnel(ev: pd.DataFrame) -> dict[str, int]:
    """The same funnel with merge_asof: for every entry, the earliest next step strictly later, step by step."""
    import pandas as pd

    cur = ev[ev.name == STEPS[0]][["person", "t", "channel", "id"]]
    cur = cur.rename(columns={"t": "t0", "channel": "c0", "id": "sid"}).sort_values("t0").reset_index(drop=True)
    cur["last"] = cur["t0"]
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
    best = cur.sort_values(["person", "reached", "t0", "sid"], ascending=[True, False, True, True])
    best = best.drop_duplicates("person")
    out = {}
    for channel, g in best.groupby("c0"):
        for k in range(len(STEPS)):
            out[f"{channel}|{k}"] = int((g["reached"] >= k + 1).sum())
    return out


def child(kind: str, path: str, runs: int) -> dict:
    """Run one implementation in a process of its own; its JSON answer."""
    cmd = [sys.executable, __file__, "--db", path, "--runs", str(runs), "--child", kind]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        sys.exit(f"{kind} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def timing(r: dict) -> str:
    t, c = r["times"], r["cpu"]
    if len(t) == 1:
        return f"{t[0]:.2f} s (1 run; CPU {c[0]:.2f} s)"
    return (f"best {min(t):.2f} s, median {statistics.median(t):.2f} s of {len(t)} runs (CPU: best {min(c):.2f} s, "
            f"median {statistics.median(c):.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="bench-analytics.duckdb")
    parser.add_argument("--runs", type=int, default=3, help="runs of ours (best and median)")
    parser.add_argument("--pandas-runs", type=int, default=3, help="runs of the vectorised pandas version")
    parser.add_argument("--straightforward-runs", type=int, default=1,
                        help="runs of the straightforward pandas version (minutes each over 10M events)")
    parser.add_argument("--child", choices=["ours", "vectorised", "straightforward"])
    args = parser.parse_args()
    if args.child:
        result = (run_ours(args.db, args.runs) if args.child == "ours"
                  else run_pandas(args.db, args.runs, args.child))
        print(json.dumps(result))
        return
    if not Path(args.db).exists():
        sys.exit(f"{args.db}: no such store; make one with bench/analytics_generate.py")
    import duckdb

    with duckdb.connect(args.db, read_only=True) as con:
        events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    print(f"machine: {describe()}")
    print(f"store: {args.db}, {events:,} events; load average (1 min) at start: {os.getloadavg()[0]:.2f}")
    ours = child("ours", args.db, args.runs)
    vec = child("vectorised", args.db, args.pandas_runs)
    plain = child("straightforward", args.db, args.straightforward_runs)

    def loads(r: dict) -> str:
        return f"load {r['load'][0]:.2f} -> {r['load'][1]:.2f}"

    buffer = f"{ours['duckdb_buffer_mb']:,.0f} MB" if ours["duckdb_buffer_mb"] is not None else "not reported"
    print(f"ours, DuckDB through Ibis: {timing(ours)} (target < 3 s); peak RSS {ours['peak_mb']:,.0f} MB while "
          f"computing ({ours['before_mb']:,.0f} MB before), DuckDB's peak buffer memory {buffer}; {loads(ours)}")
    for name, r in (("straightforward (groupby.apply, a loop over each person's events)", plain),
                    ("vectorised (merge_asof per step)", vec)):
        print(f"pandas, {name}: {timing(r)} over {r['rows']:,} step events already in memory; peak RSS "
              f"{r['peak_mb']:,.0f} MB while computing ({r['before_mb']:,.0f} MB before: the loaded events); "
              f"{loads(r)}")
    differences = {}
    for name, r in (("straightforward", plain), ("vectorised", vec)):
        for key in sorted(set(ours["counts"]) | set(r["counts"])):
            if ours["counts"].get(key, 0) != r["counts"].get(key, 0):
                differences[f"{name} {key}"] = (ours["counts"].get(key), r["counts"].get(key))
    if differences:
        print(f"DIFFERENT ANSWERS (ours, pandas): {dict(list(differences.items())[:10])}; no ratio printed")
        sys.exit(1)
    print(f"same answers: all three agree on every channel and step ({len(ours['counts'])} counts)")
    best = min(ours["times"])
    print(f"ours vs a straightforward pandas: {min(plain['times']) / best:.1f}x (goal >= 10x); "
          f"vs a vectorised pandas: {min(vec['times']) / best:.1f}x (best against best)")


if __name__ == "__main__":
    main()
