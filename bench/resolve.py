"""Resolving N events of M people's identifiers into profiles (target: 1,000,000 events of 200,000 people
in under 20 s), in-process through the same ``ingest`` the HTTP API uses, in batches.

    .venv/bin/python bench/resolve.py --db sqlite --events 1000000 --people 200000
    .venv/bin/python bench/resolve.py --db postgresql

Generation of the messages is not timed; storing them with their profiles is.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe
from omnijourney.config import IdentitySettings
from omnijourney.core.runtime import tune_gc
from omnijourney.customers.models import Customer, Identity, Merge
from omnijourney.db import Database
from omnijourney.demo.people import Channels, journeys
from omnijourney.migrate import upgrade
from omnijourney.tracking.bulk import import_messages
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
    else:
        from sqlalchemy import create_engine, make_url

        url = make_url(PG)
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{url.database}"'))
        admin.dispose()
        db = Database(url.render_as_string(hide_password=False))
    upgrade(db.engine)
    return db


def channels(db: Database) -> Channels:
    with db.transaction() as s:
        def mk(name: str, channel: str, store: str | None = None) -> tuple[str, str]:
            src = create_source(s, name=name, channel=channel, store_code=store)
            return src.id, src.name
        stores = tuple((*mk(f"Store {c} POS", "store", c), c) for c in ("S01", "S02", "S03", "S04", "S05"))
        return Channels(web=mk("Web shop", "web"), app=mk("App", "app"), call_center=mk("Call center", "call_center"),
                        whatsapp=mk("WhatsApp", "whatsapp"), stores=stores)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--people", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--slice", type=int, default=200_000, help="events per transaction (bulk import)")
    ap.add_argument("--via", choices=["import", "ingest"], default="import",
                    help="import: the bulk import (omni events import); ingest: one ingest() per batch, as the "
                         "HTTP API does")
    args = ap.parse_args()

    db = fresh_database(args.db)
    ch = channels(db)
    per_person = args.events / args.people
    t0 = time.perf_counter()
    messages = []
    for m in journeys(people=args.people, seed=7, channels=ch, start=datetime(2026, 1, 1, tzinfo=UTC),
                      events_per_person=per_person):
        messages.append(m)
    messages = messages[: args.events]
    messages.sort(key=lambda m: m.timestamp)
    gen_s = time.perf_counter() - t0
    # The generated messages are the load, not the system under test: frozen out of the garbage
    # collector with everything else that exists now, as the server does at start-up.
    tune_gc()
    settings = IdentitySettings()
    spent = {"identifiers": 0.0, "resolution": 0.0}
    _time_calls(spent)
    start = time.perf_counter()
    with Progress(TextColumn("resolving"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("", total=len(messages))
        if args.via == "import":
            report = import_messages(db, messages, settings=settings, batch_size=args.batch, slice_size=args.slice,
                            on_progress=lambda n: bar.advance(task, n))
        else:
            for i in range(0, len(messages), args.batch):
                part = messages[i:i + args.batch]
                with db.transaction() as s:
                    ingest(s, messages=part, settings=settings)
                bar.advance(task, len(part))
    elapsed = time.perf_counter() - start
    with db.transaction(write=False) as s:
        live = s.scalar(select(func.count()).select_from(Customer).where(Customer.merged_into.is_(None)))
        idents = s.scalar(select(func.count()).select_from(Identity))
        merges = s.scalar(select(func.count()).select_from(Merge))
    print(f"machine: {describe()}")
    print(f"database: {args.db}; via {args.via}; batch {args.batch}; slice {args.slice}; people {args.people:,}; "
          f"generation {gen_s:.1f} s (not timed)")
    print(f"resolved {len(messages):,} events in {elapsed:.1f} s = {len(messages) / elapsed:,.0f} events/s "
          f"(target: 1,000,000 in < 20 s)")
    print(f"profiles {live:,} (merged away {merges:,}), identities {idents:,}")
    ident_s = spent["identifiers"] + spent["resolution"]
    if args.via == "import":  # two threads: the database one overlaps the calling one
        print("time per step: " + "; ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items()))
        return
    print(f"of which identity resolution alone (identifier extraction, graph, profile and identity writes): "
          f"{ident_s:.1f} s; the rest is storing the events and the per-batch transaction")


def _time_calls(spent: dict[str, float]) -> None:
    """Wrap the two identity steps of ingestion to report how much of the time they take."""
    from omnijourney.tracking import service

    def timed(name: str, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t
        return wrapper

    service.message_identifiers = timed("identifiers", service.message_identifiers)
    service.resolve_messages = timed("resolution", service.resolve_messages)


if __name__ == "__main__":
    main()
