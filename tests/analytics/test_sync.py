"""The sync: incremental through the feed, exactly once (also when transactions commit out of id order), merges
followed, the cursor kept with the data, and the background job that keeps the store at most a moment behind."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import ibis
import pytest
from sqlalchemy import func, insert, select

from omnijourney.analytics import jobs as analytics_jobs
from omnijourney.analytics.settings import AnalyticsSettings
from omnijourney.analytics.store import Store, open_store
from omnijourney.analytics.sync import backlog, status, sync
from omnijourney.analytics.tables import Tables
from omnijourney.config import JobSettings, Settings
from omnijourney.core.ids import new_id
from omnijourney.customers.models import Merge
from omnijourney.db import Database
from omnijourney.jobs.models import Job
from omnijourney.tracking.models import Event
from tests.factories import msg, run_jobs, send, source

T = datetime(2026, 3, 1, 12, tzinfo=UTC)


def event_row(customer: str | None, name: str = "Product Viewed", **kw: Any) -> dict[str, Any]:
    return {"source_id": None, "message_id": new_id(), "type": "track", "event": name, "customer_id": customer,
            "anonymous_id": None, "channel": "web", "timestamp": T, "received_at": T, "properties": {}, **kw}


def stored(store: Store) -> list[tuple[int, str | None]]:
    with store.cursor() as cur:
        return cur.execute("SELECT id, customer_id FROM events ORDER BY id").fetchall()


def test_a_second_sync_copies_only_what_is_new(db: Database, store_path: str) -> None:
    web = source(db, "web")
    send(db, *[msg(web, anonymous_id=f"a{i}", minutes=i) for i in range(3)])
    store = open_store(store_path)
    assert backlog(db, store) == 3
    first = sync(db, store)
    send(db, *[msg(web, anonymous_id=f"b{i}", minutes=10 + i) for i in range(2)])
    second = sync(db, store)
    third = sync(db, store)
    assert (first.events, second.events, third.events) == (3, 2, 0)
    ids = [i for i, _ in stored(store)]
    assert len(ids) == len(set(ids)) == 5
    assert backlog(db, store) == 0 and status(store)["events"] == 5


def test_pages_beyond_one_transaction_and_a_crash_before_commit(db: Database, store_path: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with db.transaction() as s:
        s.execute(insert(Event.__table__), [event_row(f"c{i % 7}") for i in range(2500)])
    store = open_store(store_path)
    real = Store.set_state

    def crash(cur: Any, key: str, value: str) -> None:
        raise RuntimeError("the power went out")

    monkeypatch.setattr(Store, "set_state", staticmethod(crash))
    with pytest.raises(RuntimeError):
        sync(db, store, batch_pages=1)
    assert stored(store) == []  # the events went with the cursor: rolled back together
    monkeypatch.setattr(Store, "set_state", staticmethod(real))
    seen: list[int] = []
    result = sync(db, store, batch_pages=1, progress=seen.append)
    assert result.events == 2500 and seen == [1000, 1000, 500] and result.transactions == 3
    assert len({i for i, _ in stored(store)}) == 2500


def test_merges_count_a_person_once_under_the_survivor_even_along_a_chain(db: Database, store_path: str) -> None:
    with db.transaction() as s:
        s.execute(insert(Event.__table__), [event_row("a"), event_row("b"), event_row("c"), event_row("d")])
    store = open_store(store_path)
    sync(db, store)
    with db.transaction() as s:  # a is merged into b, later b into c (the log keeps each step)
        s.execute(insert(Merge.__table__), [{"survivor_id": "b", "merged_id": "a", "at": T, "reason": "test"}])
    sync(db, store)
    with db.transaction() as s:
        s.execute(insert(Merge.__table__), [{"survivor_id": "c", "merged_id": "b", "at": T, "reason": "test"}])
    result = sync(db, store)
    assert result.events == 0 and result.merges == 1
    with store.cursor() as cur:
        assert dict(cur.execute("SELECT merged_id, survivor_id FROM people").fetchall()) == {"a": "c", "b": "c"}


    with store.cursor() as cur:
        people = Tables("duckdb", ibis.duckdb.from_connection(cur)).events().person.nunique().execute()
    assert people == 2  # c (with a and b) and d


def test_events_committed_out_of_id_order_are_copied_once(db: Database, store_path: str) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite's writers are serial: ids are handed out in commit order")
    store = open_store(store_path)
    slow = db.begin()
    slow.execute(insert(Event.__table__), [event_row("late")])  # takes the lower id, commits last
    with db.transaction() as s:
        s.execute(insert(Event.__table__), [event_row("early")])
    assert sync(db, store).events == 1
    slow.commit()
    slow.close()
    assert sync(db, store).events == 1
    assert sorted(c for _, c in stored(store)) == ["early", "late"]


def test_the_background_job_keeps_syncing_as_one_chain(db: Database, store_path: str) -> None:
    settings = Settings(database_url=db.url, jobs=JobSettings(embedded=True),
                        analytics=AnalyticsSettings(backend="duckdb", path=store_path, sync_interval_s=0.01))
    analytics_jobs.schedule(db, settings)  # an empty database: no chain yet
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
        s.execute(insert(Event.__table__), [event_row("x"), event_row("y")])
    analytics_jobs.schedule(db, settings)
    analytics_jobs.schedule(db, settings)  # again (a restart): still one chain
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.kind == analytics_jobs.SYNC_JOB)) == 1
    from omnijourney.jobs.worker import Worker

    worker = Worker(db, name="t")
    assert worker.run_once() == 1
    assert status(open_store(store_path))["events"] == 2
    with db.transaction() as s:
        keys = s.scalars(select(Job.unique_key).where(Job.kind == analytics_jobs.SYNC_JOB)).all()
    assert keys == [analytics_jobs.KEYS[1]]  # the next run, under the other key
    analytics_jobs.schedule(db, settings)  # a restart now adds a second job ...
    time.sleep(0.05)
    run_jobs(db)  # ... which ends when its successor's key is taken
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.kind == analytics_jobs.SYNC_JOB)) == 1


def test_no_chain_without_the_embedded_worker_or_with_the_app_backend(db: Database, store_path: str) -> None:
    for settings in (Settings(jobs=JobSettings(embedded=False), analytics=AnalyticsSettings(path=store_path)),
                     Settings(analytics=AnalyticsSettings(backend="app")),
                     Settings(analytics=AnalyticsSettings(path=store_path, sync=False))):
        analytics_jobs.schedule(db, settings)
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_a_store_made_before_campaigns_were_kept_gains_them_and_syncs_on(db: Database, store_path: str) -> None:
    import duckdb

    from omnijourney.analytics.store import SCHEMA, close_store

    old = duckdb.connect(store_path)  # the store as the first releases made it: no campaign column
    for ddl in SCHEMA:
        if not ddl.startswith("ALTER"):
            old.execute(ddl)
    old.close()
    web = source(db, "web")
    send(db, msg(web, anonymous_id="a1", context={"campaign": {"name": "spring-sale", "source": "google"}}),
         msg(web, anonymous_id="a2", minutes=1, context={"campaign": {"name": " "}}), msg(web, anonymous_id="a3"))
    assert sync(db, open_store(store_path)).events == 3
    with open_store(store_path).cursor() as cur:
        assert cur.execute("SELECT campaign FROM events ORDER BY id").fetchall() == [("spring-sale",), (None,), (None,)]
    close_store(store_path)
