"""BG/NBD + Gamma-Gamma fit over many customers, ours against the `lifetimes` package on the same data.

Target (issue 15): the fit over 100,000 customers under 30 s, and at least as fast as `lifetimes` in the same run.

Draws ``--customers`` customers from the models themselves with CDNOW's published parameters (r 0.243, alpha
4.414, a 0.793, b 2.426; p 6.25, q 3.74, v 15.44), first purchases spread over 12 weeks and a 39-week
calibration period, times on whole days as order data has them (``--continuous`` keeps them exact: every
customer is then distinct, the worst case for our grouping). Fits both models with our code and with
`lifetimes` (``BetaGeoFitter`` then ``GammaGammaFitter``, no penalizer) on the same arrays, ``--repeat`` times
each (alternating), and prints both times, the ratio, the parameters and the log-likelihoods. Peak memory of our
fit is measured apart with tracemalloc (numpy reports its buffers to it), untimed.

With `lifetimes` installed (the test extra), also prints the CDNOW reproduction: the published estimates against
ours, from the CDNOW sample the package ships. ``--cli`` also writes the drawn customers' orders as a CSV and
times ``omni analytics clv`` on it (reading, summarising, both fits, the holdout check, JSON).

    .venv/bin/python bench/clv.py
    .venv/bin/python bench/clv.py --customers 100000 --repeat 5 --cli
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe
from omnijourney.analytics import clv

PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "v": 15.44}


def draw(n: int, seed: int, continuous: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    first_day = rng.integers(0, 84, n)  # the cohort's first purchases over 12 weeks
    T_days = 273 - first_day
    d = clv.simulate(n, r=0.243, alpha=4.414, a=0.793, b=2.426, T=T_days / 7, p=6.25, q=3.74, v=15.44,
                     holdout=39, seed=seed)
    d["first_day"] = first_day
    if not continuous:  # whole days, as orders have them; a repeat purchase at least a day after the first
        pos = d["frequency"] > 0
        days = np.where(pos, np.clip(np.round(d["recency"] * 7), 1, T_days), 0)
        d["recency"] = days / 7
        d["monetary"] = np.round(d["monetary"], 2)
    return d


def fit_ours(d):
    bg = clv.fit_bgnbd(d["frequency"], d["recency"], d["T"])
    gg = clv.fit_gamma_gamma(d["frequency"], d["monetary"])
    return bg, gg


def fit_lifetimes(d):
    import lifetimes

    bgf = lifetimes.BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(d["frequency"], d["recency"], d["T"])
    rep = (d["frequency"] > 0) & (d["monetary"] > 0)
    ggf = lifetimes.GammaGammaFitter(penalizer_coef=0.0)
    ggf.fit(d["frequency"][rep], d["monetary"][rep])
    return bgf, ggf


def timed(fn, d, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(d)
        times.append(time.perf_counter() - t)
    return out, times


def fmt(times):
    listed = ", ".join(f"{t:.3f}" for t in times)
    return f"best {min(times):.3f} s, median {sorted(times)[len(times) // 2]:.3f} s ({listed})"


def cdnow() -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import lifetimes
    except ImportError:
        print("CDNOW: lifetimes is not installed (pip install -e '.[test]'): its CDNOW sample is not here")
        return
    path = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt"
    ids, days, amounts = [], [], []
    for line in path.read_text().splitlines():
        _, customer, day, _, amount = line.split()
        ids.append(customer)
        days.append(f"{day[:4]}-{day[4:6]}-{day[6:]}")
        amounts.append(float(amount))
    s = clv.summarise(ids, np.array(days, dtype="datetime64[D]"), amounts, np.datetime64("1997-09-30"))
    f = clv.fit(s)
    ours = f.bgnbd.params() | f.gamma_gamma.params()
    print(f"CDNOW sample ({len(s):,} customers, 39 weeks), published vs ours:")
    for k, v in PUBLISHED.items():
        digits = 3 if k in ("r", "alpha", "a", "b") else 2
        verdict = "ok" if round(ours[k], digits) == v else "DIFFERS"
        print(f"  {k:<6} {v:<8} {ours[k]:.6f}  -> {round(ours[k], digits)}  {verdict}")
    ll = f.bgnbd.log_likelihood
    print(f"  LL     -9582.4  {ll:.4f}  -> {round(ll, 1)}  {'ok' if round(ll, 1) == -9582.4 else 'DIFFERS'}")


def orders_csv(d, path: Path, seed: int) -> int:
    """The drawn customers' orders: the first, x repeat purchases up to t_x (the earlier ones uniform before it,
    as a Poisson process has them) and the holdout purchases; amounts around each customer's mean."""
    rng = np.random.default_rng(seed + 1)
    n = len(d["frequency"])
    x = d["frequency"].astype(int)
    cust = np.repeat(np.arange(n), x)
    t_last = np.repeat(d["recency"] * 7, x)
    is_last = np.r_[np.diff(cust) != 0, True] if len(cust) else np.zeros(0, bool)
    rep_days = np.where(is_last, t_last, rng.uniform(0, t_last))
    hold = d["holdout"].astype(int)
    h_cust = np.repeat(np.arange(n), hold)
    h_days = 273 - d["first_day"][h_cust] + 1 + rng.integers(0, 273, len(h_cust))
    all_cust = np.r_[np.arange(n), cust, h_cust]
    all_days = np.r_[np.zeros(n), rep_days, h_days]
    day = d["first_day"][all_cust] + np.floor(all_days).astype(int)
    base = np.datetime64("2024-01-01")
    amount = rng.gamma(4.0, 10.0, len(all_cust))
    with path.open("w") as f:
        f.write("customer_id,timestamp,amount\n")
        for c, dd, a in zip(all_cust.tolist(), (base + day).astype(str).tolist(), amount.tolist(), strict=True):
            f.write(f"c{c},{dd},{a:.2f}\n")
    return len(all_cust)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--continuous", action="store_true", help="exact times: no two customers alike")
    ap.add_argument("--cli", action="store_true", help="also time `omni analytics clv` on the customers' orders")
    args = ap.parse_args()
    print(f"machine: {describe()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    d = draw(args.customers, args.seed, args.continuous)
    distinct = len(np.unique(np.stack([d["frequency"], d["recency"], d["T"]], axis=1), axis=0))
    print(f"{args.customers:,} customers ({int((d['frequency'] > 0).sum()):,} with repeat purchases, "
          f"{distinct:,} distinct (x, t_x, T)), times {'exact' if args.continuous else 'in whole days'}")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import lifetimes
        version = lifetimes.__version__
    except ImportError:
        lifetimes = None
    # ours and lifetimes' runs alternate, so that a change in the shared machine's load hits both alike
    ours, theirs = [], []
    for _ in range(args.repeat):
        (bg, gg), t = timed(fit_ours, d, 1)
        ours += t
        if lifetimes is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                (bgf, ggf), t = timed(fit_lifetimes, d, 1)
            theirs += t
    tracemalloc.start()
    fit_ours(d)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"ours      BG/NBD + Gamma-Gamma: {fmt(ours)}; peak memory of the fit {peak / 2**20:.1f} MiB")
    print(f"          r {bg.r:.4f} alpha {bg.alpha:.4f} a {bg.a:.4f} b {bg.b:.4f} LL {bg.log_likelihood:.3f}; "
          f"p {gg.p:.4f} q {gg.q:.4f} v {gg.v:.4f} LL {gg.log_likelihood:.3f}")
    if lifetimes is None:
        print("lifetimes is not installed: no comparison (pip install -e '.[test]')")
    else:
        p = bgf.params_
        print(f"lifetimes {version} BG/NBD + Gamma-Gamma: {fmt(theirs)}")
        print(f"          r {p['r']:.4f} alpha {p['alpha']:.4f} a {p['a']:.4f} b {p['b']:.4f}; "
              f"p {ggf.params_['p']:.4f} q {ggf.params_['q']:.4f} v {ggf.params_['v']:.4f}")
        print(f"ratio (lifetimes / ours, best times): {min(theirs) / min(ours):.1f}x")
    cdnow()
    if args.cli:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "orders.csv"
            rows = orders_csv(d, path, args.seed)
            omni = Path(sys.executable).parent / "omni"
            wrap = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else []
            for _ in range(args.repeat):
                t = time.perf_counter()
                done = subprocess.run([*wrap, str(omni), "analytics", "clv", "--orders", str(path),
                                       "--calibration-end", "2024-09-29", "--holdout-end", "2025-06-29"],
                                      capture_output=True, text=True)
                took = time.perf_counter() - t
                assert done.returncode == 0, done.stderr
                peak_cmd = f"{int(done.stderr.split()[-1]) / 1024:,.0f} MiB" if wrap else "unknown"
                print(f"omni analytics clv on {rows:,} orders: {took:.2f} s, peak RSS of the command {peak_cmd}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
