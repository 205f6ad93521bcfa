"""Background jobs: how many jobs a second two worker processes get through on PostgreSQL (no target yet).

Creates a fresh database (``omni_bench_jobs``), starts ``omni worker`` processes on it (``python -m
omnijourney.cli worker``, ``OMNI_DATABASE_URL`` set for them), waits until they poll,
then enqueues N no-op jobs (``jobs.noop``) in one transaction through ``jobs.enqueue`` and measures the time from
that commit until the ``jobs`` table is empty. Each job is one transaction of its own (the handler's changes and
the job's deletion commit together), plus one claim transaction per ``--batch`` jobs.

    .venv/bin/python bench/jobs.py                         # 20,000 jobs, 2 processes of 1 worker, batches of 10
    .venv/bin/python bench/jobs.py --processes 4 --batch 50
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.databases import fresh_database
from bench.machine import describe
from omnijourney import jobs
from omnijourney.jobs.models import Job

PG = os.environ.get("OMNI_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/omni_bench_jobs")


def start_workers(url: str, processes: int, threads: int, batch: int) -> list[subprocess.Popen[str]]:
    """``processes`` worker processes on ``url``, each polling when this returns."""
    env = {**os.environ, "OMNI_DATABASE_URL": url, "OMNI_JOBS__POLL_S": "0.1"}
    command = [sys.executable, "-m", "omnijourney.cli", "worker", "--threads", str(threads), "--batch", str(batch)]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(processes)]
    for p in procs:
        assert p.stdout is not None
        seen = ""
        while "worker(s) on" not in seen:  # "N worker(s) on ...; Ctrl-C stops" once its threads poll
            line = p.stdout.readline()
            seen += line
            if not line:
                for q in procs:
                    q.kill()
                raise SystemExit(f"a worker did not start: {seen}")
    return procs


def stop_workers(procs: list[subprocess.Popen[str]]) -> list[str]:
    """SIGTERM each worker; returns the last line each printed (jobs done, failed)."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    lines = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        lines.append((out.strip().splitlines() or ["(no output)"])[-1])
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--processes", type=int, default=2, help="`omni worker` processes")
    ap.add_argument("--threads", type=int, default=1, help="worker threads per process (`omni worker --threads`)")
    ap.add_argument("--batch", type=int, default=10, help="jobs claimed at a time (`omni worker --batch`)")
    args = ap.parse_args()

    db = fresh_database(PG)
    url = db.engine.url.render_as_string(hide_password=False)
    with db.transaction(write=False) as s:
        pg_version = s.scalar(text("SHOW server_version"))
        sync_commit = s.scalar(text("SHOW synchronous_commit"))

    load_before = os.getloadavg()[0]
    procs = start_workers(url, args.processes, args.threads, args.batch)
    try:
        t = time.perf_counter()
        with db.transaction() as s:
            for _ in range(args.jobs):
                jobs.enqueue(s, "jobs.noop")
        start = time.perf_counter()
        enqueue_s = start - t
        left, progress = args.jobs, [(start, args.jobs)]  # (when, jobs left): the rate over the run
        while left:
            time.sleep(0.1)
            with db.transaction(write=False) as s:
                left = s.scalar(select(func.count()).select_from(Job))
            progress.append((time.perf_counter(), left))
            if any(p.poll() is not None for p in procs):
                raise SystemExit("a worker stopped")
        elapsed = time.perf_counter() - start
    finally:
        finals = stop_workers(procs)
    db.dispose()

    print(f"machine: {describe()}")
    print(f"database: PostgreSQL {pg_version} (synchronous_commit={sync_commit}), local; load average "
          f"{load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after (a shared machine: compare A/B runs)")
    print(f"workers: {args.processes} process(es) x {args.threads} thread(s), batches of {args.batch}; "
          f"{args.jobs:,} jobs.noop enqueued in one transaction in {enqueue_s:.2f} s")
    print(f"ran {args.jobs:,} jobs in {elapsed:.2f} s = {args.jobs / elapsed:,.0f} jobs/s (no target yet)")
    print(f"jobs/s in each tenth of the run: {' '.join(rates(progress, args.jobs))}")
    for i, line in enumerate(finals):
        print(f"worker process {i + 1}: {line}")


def rates(progress: list[tuple[float, int]], total: int, parts: int = 10) -> list[str]:
    """Jobs done per second in each tenth of the work (whether the claim slows as the table churns)."""
    out, start = [], progress[0][0]
    for k in range(1, parts + 1):
        target = total - total * k // parts
        when = next(t for t, left in progress if left <= target)
        out.append(f"{(total // parts) / max(when - start, 1e-9):,.0f}")
        start = when
    return out


if __name__ == "__main__":
    main()
