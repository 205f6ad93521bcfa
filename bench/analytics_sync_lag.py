"""How far the DuckDB analytics store is behind the timeline under a sustained ``/v1/batch`` load.

Serves the app (an SQLite database in a temporary folder, the embedded worker running the analytics sync job every
``--interval`` seconds) with uvicorn on a free local port, sends ``--rate`` events a second in batches of 100 for
``--seconds``, and once a second asks ``GET /api/v1/analytics/sync`` how many events are not in the store yet
(``backlog``) and how old the newest one in the store is. Prints the lag's median, p95 and maximum in seconds.

    .venv/bin/python bench/analytics_sync_lag.py --rate 2000 --seconds 60
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn

from omnijourney.analytics.settings import AnalyticsSettings
from omnijourney.api.app import create_app
from omnijourney.auth.service import create_key
from omnijourney.config import JobSettings, Settings
from omnijourney.db import Database
from omnijourney.migrate import upgrade
from omnijourney.tracking.sources import create_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000, help="events a second")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--interval", type=float, default=5.0, help="the sync job's pause")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="omni-lag-"))
    db = Database(f"sqlite:///{folder / 'omni.db'}")
    upgrade(db.engine)
    with db.transaction() as s:
        src = create_source(s, name="Web", channel="web")
        _, key = create_key(s, name="bench", scopes=["analytics:read"])
    settings = Settings(database_url=db.url, jobs=JobSettings(embedded=True, poll_s=0.2),
                        analytics=AnalyticsSettings(path=str(folder / "omni-analytics.duckdb"),
                                                    sync_interval_s=args.interval))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(db, settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    sent = [0]

    def load() -> None:
        with httpx.Client(base_url=base, auth=(src.write_key, ""), timeout=30) as client:
            start = time.monotonic()
            while not stop.is_set() and time.monotonic() - start < args.seconds:
                batch = [{"type": "track", "event": "Product Viewed", "anonymousId": f"a-{sent[0] % 5000}",
                          "messageId": uuid.uuid4().hex, "properties": {"sku": "TEE-M"}} for _ in range(100)]
                client.post("/v1/batch", json={"batch": batch}).raise_for_status()
                sent[0] += 100
                behind = sent[0] / args.rate - (time.monotonic() - start)
                if behind > 0:
                    time.sleep(behind)

    loader = threading.Thread(target=load)
    loader.start()
    lags: list[float] = []
    backlogs: list[int] = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        while loader.is_alive():
            time.sleep(1)
            st = client.get("/api/v1/analytics/sync").json()
            backlogs.append(int(st["backlog"]))
            newest = st.get("newest_event_received_at")
            if newest and newest != "None":
                then = datetime.fromisoformat(str(newest))
                then = then if then.tzinfo else then.replace(tzinfo=UTC)
                lags.append((datetime.now(UTC) - then).total_seconds())
        loader.join()
        load_ended = time.monotonic()
        deadline = load_ended + 120
        while time.monotonic() < deadline:  # the tail: until the store has everything
            st = client.get("/api/v1/analytics/sync").json()
            if int(st["backlog"]) == 0:
                break
            time.sleep(0.5)
        caught_up = time.monotonic()
    server.should_exit = True
    lags.sort()
    print(f"sent {sent[0]:,} events in {args.seconds} s ({sent[0] / args.seconds:,.0f}/s); the store holds "
          f"{st['events']:,}; sync every {args.interval} s")
    if lags:
        print(f"lag of the newest stored event: median {statistics.median(lags):.1f} s, "
              f"p95 {lags[int(0.95 * (len(lags) - 1))]:.1f} s, max {lags[-1]:.1f} s; "
              f"backlog max {max(backlogs):,} events; all in the store {caught_up - load_ended:.1f} s after the "
              "load ended")


if __name__ == "__main__":
    main()
