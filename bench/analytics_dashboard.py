"""Benchmark: the console's KPI dashboard (/console/analytics) built the first time, and `omni analytics report`, on
the demo's data (target: the dashboard's first build under 1 s).

    .venv/bin/python bench/analytics_dashboard.py [--demo omni-demo.db] [--runs 3]

Without ``--demo`` it builds the demo first (``omni demo --fresh --no-serve``, seed 42, about a minute) in a
temporary directory; with it, it works on a copy of that file. The copy's events are synced into its DuckDB store
(``omni analytics sync``) before anything is timed.

Each run is a fresh process, as after a server's start: an in-process app, logged in as an administrator, asks for
the dashboard with its default question (every KPI, the whole period and per week); the time is taken inside the
server, from the request's arrival at the ASGI app to the last byte of its answer. It does so twice: as it comes
(the first request also loads Ibis, DuckDB and Plotly, over a second on this machine) and with those modules
loaded first (what the target is about: the page's own work). The page is then asked again once its kept charts
are dropped (the same question built again in the same process) and per day and channel (a new question).
``omni analytics report --out`` runs as its own command, timed from start to exit, and its charts are timed one by
one in a fresh process. The machine and its load average are printed beside the figures: on a shared machine they
are indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.console import Timed, demo_file
from bench.machine import describe

TARGET_S = 1.0
ADMIN = "bench-admin@shop.example"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def omni(*args: str, url: str, cwd: Path) -> float:
    """Run ``omni ARGS`` on the demo's copy; its wall time in seconds."""
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("omni")), *args], check=True, cwd=cwd,
                   env={**os.environ, "OMNI_DATABASE_URL": url}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def child(what: str, url: str, password: str) -> dict[str, Any]:
    """In a fresh process: the dashboard's pages, or the report's charts one by one (seconds)."""
    warnings.simplefilter("ignore", DeprecationWarning)
    started = time.perf_counter()
    from omnijourney.db import Database

    db = Database(url)
    if what == "report":
        from omnijourney.analytics import charts
        from omnijourney.analytics.settings import AnalyticsSettings
        from omnijourney.analytics.tables import open_tables

        times: dict[str, float] = {}
        last = time.perf_counter()

        def done(title: str) -> None:
            nonlocal last
            now = time.perf_counter()
            times[title] = now - last
            last = now

        with open_tables(db, AnalyticsSettings()) as tables:
            last = time.perf_counter()
            charts.report_charts(tables, charts.ReportQuestion(), progress=done)
        return times

    from fastapi.testclient import TestClient

    from omnijourney.api.app import create_app
    from omnijourney.config import JobSettings, Settings
    from omnijourney.console import analytics_pages

    timed = Timed(create_app(db, Settings(database_url=url, jobs=JobSettings(embedded=False))))
    client = TestClient(timed)
    r = client.post("/api/v1/session", json={"email": ADMIN, "password": password})
    assert r.status_code == 201, r.text
    imported = time.perf_counter() - started
    modules = 0.0
    if what == "dashboard-warm":  # the modules the page loads on its first request (Ibis, DuckDB, Plotly) first
        started = time.perf_counter()
        import ibis

        from omnijourney.analytics import charts

        ibis.duckdb  # noqa: B018  (the backend's module loads on first use)
        modules = time.perf_counter() - started

    def page(path: str) -> float:
        r = client.get(path)
        assert r.status_code == 200 and "chart-kpis" in r.text, (path, r.status_code, r.text[:300])
        return timed.last

    first = page("/console/analytics")
    analytics_pages._cache.clear()  # the page's kept charts dropped: built again
    again = page("/console/analytics")
    other = page("/console/analytics?interval=day&by=channel")
    return {"start-up": imported, "modules": modules, "first": first, "again": again, "per day and channel": other}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", help="an existing omni-demo.db (a copy is used)")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes for each measure")
    parser.add_argument("--child", nargs=3, metavar=("WHAT", "URL", "PASSWORD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    print(f"machine: {describe()}; load average {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="omni-bench-dashboard-") as tmp:
        work = Path(tmp)
        path = demo_file(args.demo, work)
        url = f"sqlite:///{path}"
        print(f"  store synced in {omni('analytics', 'sync', url=url, cwd=work):.1f} s", flush=True)
        from omnijourney.auth import staff as staff_service
        from omnijourney.db import Database

        db = Database(url)
        with db.transaction() as session:
            _, password = staff_service.add_staff(session, email=ADMIN, role="admin", must_change_password=False)
        db.dispose()

        def run(what: str) -> dict[str, float]:
            out = subprocess.run([sys.executable, __file__, "--child", what, url, password], check=True,
                                 capture_output=True, text=True, cwd=work)
            return json.loads(out.stdout.strip().splitlines()[-1])

        firsts = []
        for i in range(args.runs):
            for what in ("dashboard", "dashboard-warm"):
                got = run(what)
                if what == "dashboard-warm":
                    firsts.append(got["first"])
                    how = f"its modules loaded before ({got['modules']:.2f} s)"
                else:
                    how = "the first request loads the analytics modules"
                print(f"  dashboard, run {i + 1}, {how}: first build {got['first']:.2f} s; built again "
                      f"{got['again']:.2f} s; per day and channel {got['per day and channel']:.2f} s; load {load()}",
                      flush=True)
        for i in range(args.runs):
            wall = omni("analytics", "report", "--out", str(work / "report.html"), "--quiet", url=url, cwd=work)
            print(f"  omni analytics report, run {i + 1}: {wall:.1f} s; load {load()}", flush=True)
        charts = run("report")
        print("  the report's charts in a fresh process: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in charts.items()), flush=True)
        best = min(firsts)
        print(f"dashboard's first build, its modules loaded: best {best:.2f} s, worst {max(firsts):.2f} s (target "
              f"< {TARGET_S:.0f} s: "
              f"{'met' if best < TARGET_S else 'NOT met'}); load average after {load()}")


if __name__ == "__main__":
    main()
