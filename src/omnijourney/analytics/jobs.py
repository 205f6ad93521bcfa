"""The sync as background work: a job that copies what the feed has and schedules its next run.

The job is ``external`` (no application transaction is held while DuckDB writes) and re-enqueues itself
``sync_interval_s`` later. Its unique key alternates between two values: while a run is in progress its own row
still holds its key, so it enqueues the next run under the other one; a second chain (the app started twice, an
operator's retry) collides with the first on the key of its next run and ends, so there is one chain at a time.
:func:`schedule` starts it (``omni serve`` / ``omni demo`` at start-up, when the embedded worker runs and the
DuckDB store is the backend); it is a no-op when the chain is already there.
"""

from __future__ import annotations

import logging
from typing import Any

from omnijourney import jobs
from omnijourney.db import Database

log = logging.getLogger(__name__)

SYNC_JOB = "analytics.sync"
KEYS = ("analytics.sync:a", "analytics.sync:b")


def _enqueue(db: Database, args: dict[str, Any], key: str, delay_s: float) -> None:
    with db.transaction() as session:
        jobs.enqueue(session, SYNC_JOB, {**args, "key": key}, delay_s=delay_s, unique_key=key)


def schedule(db: Database, settings: Any, *, only_with_events: bool = True) -> None:
    """Start the sync chain for the app's settings (idempotent); nothing unless the DuckDB store is the backend, the
    sync is on and this process runs the embedded worker (the only process that may hold the DuckDB file).

    At start-up (``only_with_events``) an empty database starts no chain (a job row that would never go away from a
    server nobody has used yet); the first analytics request starts it then (``analytics.api``)."""
    from sqlalchemy import select

    from omnijourney.analytics.settings import effective_backend
    from omnijourney.analytics.store import default_path
    from omnijourney.tracking.models import Event

    analytics = settings.analytics
    if effective_backend(analytics, db.dialect) != "duckdb" or not analytics.sync or not settings.jobs.embedded:
        return
    if only_with_events:
        with db.transaction(write=False) as session:
            if session.scalar(select(Event.id).limit(1)) is None:
                return
    path = default_path(db.url, analytics)
    _enqueue(db, {"path": path, "interval_s": analytics.sync_interval_s, "budget_s": analytics.sync_budget_s,
                  "batch_pages": analytics.batch_pages}, KEYS[0], 0.0)


@jobs.handler(SYNC_JOB, external=True, max_attempts=1000, backoff_s=5.0, max_backoff_s=60.0)
def run(db: Database, args: dict[str, Any]) -> None:
    """Copy what the feed has (within the run's time budget), then schedule the next run: at once if the budget ran
    out before the feed did, else after the interval."""
    from omnijourney.analytics.store import StoreBusy, open_store
    from omnijourney.analytics.sync import sync

    caught_up = True
    try:
        store = open_store(args["path"])
    except StoreBusy as exc:  # another process holds the file: try again later rather than fail
        log.warning("analytics sync: %s", exc.message)
    else:
        result = sync(db, store, budget_s=args.get("budget_s", 20.0), batch_pages=args.get("batch_pages", 20))
        caught_up = result.caught_up
        if result.events:
            log.info("analytics sync: %s events, %s merges", result.events, result.merges)
    nxt = KEYS[1] if args.get("key") == KEYS[0] else KEYS[0]
    rest = {k: v for k, v in args.items() if k != "key"}
    _enqueue(db, rest, nxt, float(args.get("interval_s", 5.0)) if caught_up else 0.0)
