"""Resolving N events of M people's identifiers into profiles (target: 1,000,000 events of 200,000 people
in under 20 s), in-process, in batches.

    .venv/bin/python bench/resolve.py --db postgresql                 # identity resolution alone
    .venv/bin/python bench/resolve.py --db postgresql --via import    # the bulk import: stored and resolved
    .venv/bin/python bench/resolve.py --db sqlite --via ingest        # ingest() per batch, as the HTTP API

``--via resolve`` measures what the target names: the messages' identifiers extracted and resolved,
profiles, identities and merges written, each event's profile known. Storing the event rows is
ingestion's part; ``--via import`` measures both together. Generation of the messages is not timed.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.databases import fresh_database as fresh_postgresql
from bench.machine import describe
from omnijourney.config import IdentitySettings
from omnijourney.core.runtime import collector_paused, tune_gc
from omnijourney.customers.bulk import BulkResolver
from omnijourney.customers.identifiers import Identifier
from omnijourney.customers.models import Customer, Identity, Merge
from omnijourney.customers.resolution import extractor_for, message_identifiers
from omnijourney.db import Database
from omnijourney.demo.people import Channels, journeys
from omnijourney.migrate import upgrade
from omnijourney.tracking.bulk import import_messages
from omnijourney.tracking.messages import Message
from omnijourney.tracking.models import Event
from omnijourney.tracking.service import ingest
from omnijourney.tracking.sources import create_source

PG = os.environ.get("OMNI_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/omni_bench")


def fresh_database(kind: str) -> Database:
    if kind == "sqlite":
        path = Path("bench/out/resolve.db")
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db = Database(f"sqlite:///{path}")
        upgrade(db.engine)
        return db
    return fresh_postgresql(PG)


def channels(db: Database) -> Channels:
    with db.transaction() as s:
        def mk(name: str, channel: str, store: str | None = None) -> tuple[str, str]:
            src = create_source(s, name=name, channel=channel, store_code=store)
            return src.id, src.name
        stores = tuple((*mk(f"Store {c} POS", "store", c), c) for c in ("S01", "S02", "S03", "S04", "S05"))
        return Channels(web=mk("Web shop", "web"), app=mk("App", "app"), call_center=mk("Call center", "call_center"),
                        whatsapp=mk("WhatsApp", "whatsapp"), stores=stores)


def resolve_only(db: Database, messages: list[Message], settings: IdentitySettings, batch: int, per_tx: int,
                 advance: Callable[[int], None]) -> dict[str, float]:
    """Identity resolution alone, as the bulk import runs it (BulkResolver: one graph per transaction, the
    database work on its own thread): identifiers extracted, graph read, messages resolved, identities,
    merges and profiles written. The events themselves are not stored (ingestion's part: --via import)."""
    seconds: dict[str, float] = defaultdict(float)
    ex = extractor_for(settings)

    def identifiers(part: list[Message]) -> list[list[Identifier]]:
        t = time.perf_counter()
        out = [message_identifiers(ex, m) for m in part]
        seconds["identifiers"] += time.perf_counter() - t
        return out

    committed: Future[None] | None = None
    with ThreadPoolExecutor(1) as pool:
        for start in range(0, len(messages), per_tx):
            parts = [messages[i:i + batch] for i in range(start, min(start + per_tx, len(messages)), batch)]
            resolver = BulkResolver(db, settings, pool, seconds)
            resolver.begin(after=committed)
            idents = identifiers(parts[0])
            read = resolver.read(idents)
            for k, part in enumerate(parts):
                following = identifiers(parts[k + 1]) if k + 1 < len(parts) else None
                rows, _ = resolver.fetched(read)
                resolver.resolve(rows, part, idents)
                if following is not None:
                    read = resolver.read(following)
                resolver.write().add_done_callback(lambda _, n=len(part): advance(n))
                idents = following or []
            committed = resolver.commit()
        if committed is not None:
            committed.result()
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--people", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--slice", type=int, default=200_000, help="events per transaction (bulk import)")
    ap.add_argument("--slice-seconds", type=float, default=2.0,
                    help="the import's time bound per transaction (omni events import --slice-seconds)")
    ap.add_argument("--via", choices=["resolve", "import", "ingest"], default="resolve",
                    help="resolve: identity resolution alone, events not stored; import: the bulk import "
                         "(omni events import), events stored and resolved; ingest: one ingest() per batch, as the "
                         "HTTP API does")
    args = ap.parse_args()

    db = fresh_database(args.db)
    ch = channels(db)
    per_person = args.events / args.people
    t0 = time.perf_counter()
    messages = list(journeys(people=args.people, seed=7, channels=ch, start=datetime(2026, 1, 1, tzinfo=UTC),
                             events_per_person=per_person))[: args.events]
    messages.sort(key=lambda m: m.timestamp)
    gen_s = time.perf_counter() - t0
    # The generated messages are the load, not the system under test: frozen out of the garbage
    # collector with everything else that exists now, as the server does at start-up.
    tune_gc()
    settings = IdentitySettings()
    spent: dict[str, float] = {}
    start = time.perf_counter()
    # one redraw a second: the bar's thread takes the GIL from the thread under test each time it redraws
    with Progress(TextColumn(args.via), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  refresh_per_second=1) as bar:
        task = bar.add_task("", total=len(messages))

        def advance(n: int) -> None:
            bar.advance(task, n)

        if args.via == "resolve":
            with collector_paused():  # as import_messages does
                spent = resolve_only(db, messages, settings, args.batch, args.slice, advance)
        elif args.via == "import":
            spent = import_messages(db, messages, settings=settings, batch_size=args.batch, slice_size=args.slice,
                                    slice_seconds=args.slice_seconds, on_progress=advance).seconds
        else:
            for i in range(0, len(messages), args.batch):
                part = messages[i:i + args.batch]
                with db.transaction() as s:
                    ingest(s, messages=part, settings=settings)
                advance(len(part))
    elapsed = time.perf_counter() - start
    with db.transaction(write=False) as s:
        live = s.scalar(select(func.count()).select_from(Customer).where(Customer.merged_into.is_(None)))
        idents = s.scalar(select(func.count()).select_from(Identity))
        merges = s.scalar(select(func.count()).select_from(Merge))
        events = s.scalar(select(func.count()).select_from(Event))
    what = {"resolve": "resolved into profiles (events not stored)", "import": "imported (stored and resolved)",
            "ingest": "ingested (stored and resolved)"}[args.via]
    print(f"machine: {describe()}")
    print(f"database: {database_settings(db)}")
    bound = f", at most {args.slice_seconds:g} s (import)" if args.via == "import" else ""
    print(f"via {args.via}; batch {args.batch:,}; events per transaction {args.slice:,} (import, resolve){bound}; "
          f"people {args.people:,}; generation {gen_s:.1f} s (not timed)")
    print(f"{len(messages):,} events {what} in {elapsed:.1f} s = {len(messages) / elapsed:,.0f} events/s "
          f"(target: 1,000,000 resolved in < 20 s)")
    print(f"profiles {live:,} (merged away {merges:,}), identities {idents:,}, events stored {events:,}")
    if spent:
        print("time per step: " + "; ".join(f"{k} {v:.1f} s" for k, v in spent.items()))


def database_settings(db: Database) -> str:
    if db.dialect == "sqlite":
        return f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL)"
    with db.transaction(write=False) as s:
        version = s.scalar(text("SHOW server_version"))
        names = ("shared_buffers", "max_wal_size", "synchronous_commit", "work_mem")
        values = ", ".join(f"{n}={s.scalar(text(f'SHOW {n}'))}" for n in names)
    return f"PostgreSQL {version} ({values})"


if __name__ == "__main__":
    main()
