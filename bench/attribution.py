"""Attribution over many journeys: Markov (order 1-3) and every model, in memory and through the CLI.

Target (issue 15): Markov attribution over 1,000,000 journeys under 30 s on the 2-core machine.

Draws ``--journeys`` journeys over ``--channels`` channels: each a path of 1-20 touches (mean about 3.3) from a
random first-order chain between channels, touch times a few days apart, converting with a probability that
depends on the channels touched, a value for each conversion. Each journey is its own row (nothing aggregated
beforehand). Times, in one process:

- building the columnar journeys from arrays (what the analytics engine hands over),
- Markov attribution of order 1, 2 and 3 (exact: absorbing-chain linear algebra), each on the raw journeys,
- every model at once (first, last, linear, time decay, position based, Markov order 1, Shapley),
- with ``--csv``: the same journeys written as a CSV of path strings, then ``omni analytics attribution`` run on
  it as a subprocess (parsing, merging identical paths, every model, JSON out).

Peak memory: what each step allocates at its peak (tracemalloc, on one more untimed run; numpy reports its
buffers to it), the process's maximum resident set (the drawn journeys included), and the CLI's own maximum.
Prints the machine and the load average; the machine is shared, so run it when the load is low and repeat.

    .venv/bin/python bench/attribution.py
    .venv/bin/python bench/attribution.py --journeys 1000000 --csv
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe
from omnijourney.analytics.attribution import Journeys, attribute_all, markov


def draw(n: int, channels: int, seed: int) -> Journeys:
    rng = np.random.default_rng(seed)
    names = [f"channel_{i:02d}" for i in range(channels)]
    lengths = np.minimum(rng.geometric(0.3, n), 20)
    start = rng.dirichlet(np.ones(channels))
    trans = rng.dirichlet(np.full(channels, 0.5), size=channels)
    cum_start, cum_trans = np.cumsum(start), np.cumsum(trans, axis=1)
    width = int(lengths.max())
    grid = np.full((n, width), -1, dtype=np.int64)
    grid[:, 0] = np.minimum(np.searchsorted(cum_start, rng.random(n)), channels - 1)
    for k in range(1, width):
        rows = np.nonzero(lengths > k)[0]
        prev = grid[rows, k - 1]
        u = rng.random(len(rows))
        grid[rows, k] = np.minimum((u[:, None] > cum_trans[prev]).sum(axis=1), channels - 1)
    touches = grid[grid >= 0]  # row-major: each journey's touches in order
    lift = rng.uniform(0.0, 0.08, channels)
    jid = np.repeat(np.arange(n), lengths)
    p = 0.02 + np.bincount(jid, weights=lift[touches], minlength=n) / np.sqrt(lengths)
    converted = rng.random(n) < np.minimum(p, 0.9)
    value = np.where(converted, rng.lognormal(4.0, 0.6, n), 0.0)
    gaps = rng.exponential(2.0, len(touches))
    # days before the journey's end: the last touch 0-1 days before, earlier ones further back
    offsets = np.r_[0, np.cumsum(lengths)]
    rev = np.cumsum(gaps[::-1])[::-1]  # suffix sums over the whole array
    end_of_journey = np.r_[rev[offsets[1:-1]], 0.0] if n > 1 else np.zeros(1)
    ages = rev - np.repeat(end_of_journey, lengths) - gaps + np.repeat(rng.random(n), lengths)
    return Journeys.from_codes(names, lengths, touches, converted.astype(float), value, (~converted).astype(float),
                               np.maximum(ages, 0.0))


def peak_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def timed(label: str, fn, repeat: int):
    times = []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    best, med = min(times), sorted(times)[len(times) // 2]
    tracemalloc.start()  # once more, untimed: the memory this step itself allocates at its peak
    fn()
    own = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(f"{label:<52} best {best:7.2f} s  median {med:7.2f} s  ({', '.join(f'{x:.2f}' for x in times)})"
          f"  its peak {own:,.0f} MiB, process peak RSS {peak_mib():,.0f} MiB", flush=True)
    return result


def write_csv(j: Journeys, path: Path) -> None:
    names = np.array(j.channels, dtype=object)
    with path.open("w") as f:
        f.write("path,conversions,value,nulls\n")
        offsets = j.offsets
        for i in range(len(j)):
            p = " > ".join(names[j.touches[offsets[i]:offsets[i + 1]]])
            f.write(f"{p},{int(j.conversions[i])},{j.value[i]:.2f},{int(j.nulls[i])}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--journeys", type=int, default=1_000_000)
    ap.add_argument("--channels", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--csv", action="store_true", help="also run `omni analytics attribution` on a CSV of them")
    args = ap.parse_args()
    print(f"machine: {describe()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    t = time.perf_counter()
    j = draw(args.journeys, args.channels, args.seed)
    print(f"drew {len(j):,} journeys, {len(j.touches):,} touches, {args.channels} channels, "
          f"{int(j.conversions.sum()):,} conversions in {time.perf_counter() - t:.1f} s")
    timed("columnar journeys from arrays", lambda: Journeys.from_codes(
        j.channels, j.lengths, j.touches, j.conversions, j.value, j.nulls, j.ages), args.repeat)
    for order in (1, 2, 3):
        m = timed(f"Markov order {order}", lambda order=order: markov(j, order), args.repeat)
        print(f"    {m.details['states']:,} states, P(conversion) {m.details['conversion_probability']:.4f}")
    timed("every model (Markov order 1), lookback 30 days", lambda: attribute_all(j, lookback_days=30),
          args.repeat)
    if args.csv:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "journeys.csv"
            t = time.perf_counter()
            write_csv(j, path)
            print(f"wrote {path.stat().st_size / 2**20:,.0f} MiB of CSV in {time.perf_counter() - t:.1f} s")
            omni = Path(sys.executable).parent / "omni"
            # /usr/bin/time reports the command's own peak (a child forked from this big process would count
            # this process's pages in its own maximum)
            wrap = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else []
            for _ in range(args.repeat):
                t = time.perf_counter()
                done = subprocess.run([*wrap, str(omni), "analytics", "attribution", "--paths", str(path)],
                                      capture_output=True, text=True)
                took = time.perf_counter() - t
                assert done.returncode == 0, done.stderr
                peak = f"{int(done.stderr.split()[-1]) / 1024:,.0f} MiB" if wrap else "unknown"
                print(f"{'omni analytics attribution (CSV, every model)':<52} {took:7.2f} s  "
                      f"peak RSS of the command {peak}", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
