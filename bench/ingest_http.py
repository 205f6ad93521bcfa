"""Ingestion through ``POST /v1/batch`` over real HTTP, identity resolution included.

Targets: PostgreSQL at least 20,000 events/s, SQLite at least 5,000 events/s, on this machine with the
load generator on the same machine. Starts ``omni serve`` as a subprocess on a fresh database, builds
all request bodies first (realistic cross-channel journeys, 500 messages a batch, unique messageIds),
then posts them from several keep-alive connections and reports the sustained rate, and checks that
every acknowledged event was stored.

    .venv/bin/python bench/ingest_http.py --db postgresql --workers 2 --events 200000
    .venv/bin/python bench/ingest_http.py --db sqlite --events 50000
    .venv/bin/python bench/ingest_http.py --db postgresql --events 200000 --follow-feed   # + the feed's lag

With ``--follow-feed`` a consumer reads the event feed (``tracking.feed``) during the load, as analytics sync
would (whole pages at once, then a 200 ms pause), and reports how far behind ``received_at`` each event was
delivered, and that every stored event was delivered exactly once.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe
from bench.resolve import fresh_database
from bench.server import omni_server
from omnijourney.demo.people import Channels, journeys
from omnijourney.tracking.messages import Message
from omnijourney.tracking.models import Event
from omnijourney.tracking.sources import create_source


def segment_payload(m: Message) -> dict:
    """The JSON an SDK would send for ``m``."""
    body: dict = {"type": m.type, "messageId": m.message_id, "timestamp": m.timestamp.isoformat(),
                  "context": m.context}
    if m.user_id:
        body["userId"] = m.user_id
    if m.anonymous_id:
        body["anonymousId"] = m.anonymous_id
    if m.type == "track":
        body["event"] = m.event
        body["properties"] = m.properties
    elif m.type in ("page", "screen"):
        body["name"] = m.event
        body["properties"] = m.properties
    elif m.type == "identify":
        body["traits"] = m.traits or {}
    return body


def build_bodies(events: int, batch: int, ch: Channels) -> list[bytes]:
    people = max(1, events // 5)
    messages = list(journeys(people=people, seed=11, channels=ch, start=datetime(2026, 1, 1, tzinfo=UTC)))
    messages = messages[:events]
    now = datetime.now(UTC).isoformat()
    return [orjson.dumps({"batch": [segment_payload(m) for m in messages[i:i + batch]], "sentAt": now})
            for i in range(0, len(messages), batch)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn processes")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--follow-feed", action="store_true", help="read the event feed during the load")
    args = ap.parse_args()

    db = fresh_database(args.db)
    with db.transaction() as s:
        src = create_source(s, name="Web shop", channel="web")
        key = src.write_key
        sid = (src.id, src.name)
    ch = Channels(web=sid, app=sid, call_center=sid, whatsapp=sid, stores=((src.id, src.name, "S01"),))
    bodies = build_bodies(args.events, args.batch, ch)
    sizes = [len(orjson.loads(b)["batch"]) for b in bodies]
    sent = sum(sizes)
    url = db.engine.url.render_as_string(hide_password=False)
    db.dispose()

    follower = FeedFollower(url) if args.follow_feed else None
    with omni_server(url, args.port, args.workers):
        if follower is not None:
            follower.start()
        auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        headers = {"Content-Type": "application/json", "Authorization": auth}
        lock = threading.Lock()
        queue = list(reversed(bodies))
        status: dict[int, int] = {}
        latencies: list[float] = []
        body_sizes = {id(b): n for b, n in zip(bodies, sizes, strict=True)}
        done_at: list[tuple[float, int]] = []  # (when, events) of each stored batch: the rate over time

        def worker() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                while True:
                    t = time.perf_counter()
                    conn.request("POST", "/v1/batch", body=body, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    with lock:
                        status[resp.status] = status.get(resp.status, 0) + 1
                        latencies.append(time.perf_counter() - t)
                        if resp.status == 200:
                            done_at.append((time.perf_counter(), body_sizes[id(body)]))
                    if resp.status != 429:
                        break
                    time.sleep(float(resp.getheader("Retry-After", "1")))

        start = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    if follower is not None:
        follower.stop()
    from omnijourney.db import Database

    check = Database(url)
    with check.transaction(write=False) as s:
        stored = s.scalar(select(func.count()).select_from(Event))
        resolved = s.scalar(select(func.count()).select_from(Event).where(Event.customer_id.is_not(None)))
    check.dispose()
    latencies.sort()
    print(f"machine: {describe()}")
    print(f"database: {args.db}; uvicorn workers {args.workers}; {args.connections} client connections; "
          f"batches of {args.batch}; load generator on the same machine")
    print(f"sent {sent:,} events in {len(bodies):,} batches in {elapsed:.1f} s = {sent / elapsed:,.0f} events/s "
          f"(target: PostgreSQL >= 20,000/s, SQLite >= 5,000/s)")
    print(f"responses {status}; batch latency p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms")
    print(f"stored {stored:,} events, {resolved:,} resolved to a profile")
    print(f"sustained: events/s in each tenth of the run: {' '.join(rates(done_at, start, elapsed))}")
    if follower is not None:
        follower.report(stored)
    if stored != sent:
        raise SystemExit(f"LOST EVENTS: sent {sent}, stored {stored}")


class FeedFollower:
    """A feed consumer in a thread: pages until the feed is caught up, pauses 200 ms, again."""

    def __init__(self, url: str) -> None:
        from omnijourney.db import Database

        self.db = Database(url)
        self.cursor: str | None = None
        self.ids: set[int] = set()
        self.repeats = 0
        self.lags: list[float] = []
        self.reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _catch_up(self) -> None:
        from omnijourney.tracking import feed

        while True:
            with self.db.transaction(write=False) as s:
                page = feed.read(s, cursor=self.cursor, limit=1000)
            self.reads += 1
            now = datetime.now(UTC)
            for e in page.events:
                if e["id"] in self.ids:
                    self.repeats += 1
                self.ids.add(e["id"])
                self.lags.append((now - e["received_at"]).total_seconds())
            self.cursor = page.cursor
            if not page.more:
                return

    def _run(self) -> None:
        while not self._stop.is_set():
            self._catch_up()
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._catch_up()  # what committed at the very end

    def report(self, stored: int) -> None:
        lags = sorted(self.lags)
        pick = lambda q: lags[min(len(lags) - 1, int(len(lags) * q))] * 1000  # noqa: E731
        print(f"feed: {len(self.ids):,} events delivered in {self.reads:,} reads, {self.repeats} repeated; lag behind "
              f"received_at p50 {pick(0.5):.0f} ms, p99 {pick(0.99):.0f} ms, max {lags[-1] * 1000:.0f} ms "
              f"(includes each batch's own time to commit)")
        self.db.dispose()
        if len(self.ids) != stored or self.repeats:
            raise SystemExit(f"FEED WRONG: stored {stored:,}, delivered {len(self.ids):,}, repeats {self.repeats}")


def rates(done_at: list[tuple[float, int]], start: float, elapsed: float, parts: int = 10) -> list[str]:
    """Events stored per second in each of ``parts`` equal spans of the run: whether the rate holds as the
    tables grow."""
    span = elapsed / parts
    counts = [0] * parts
    for when, n in done_at:
        counts[min(parts - 1, int((when - start) / span))] += n
    return [f"{c / span:,.0f}" for c in counts]


if __name__ == "__main__":
    main()
