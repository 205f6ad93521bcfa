"""The embedded analytics store: one DuckDB file beside the application database.

It holds what the sync (:mod:`omnijourney.analytics.sync`) copied from the application database, and where it got
to, in the same file:

* ``events``: every touchpoint and domain event, as the feed handed it out (never updated: a profile merge is a row
  of ``people``, not a rewrite of events), with the campaign of its context (the rest of the context is not kept);
* ``people``: merged profile -> its survivor, chains already followed (A merged into B, B later into C: A -> C), so
  a person's events count once, under the survivor;
* ``sync_state``: the feed's cursor and the merge log's watermark, written in the same DuckDB transaction as the
  rows they account for: a crash between the two cannot skip events or copy them twice.

A DuckDB file is opened read-write by one process at a time. Inside the process, one database instance is shared and
each user takes a cursor of it (DuckDB connections are not shared between threads); another process that wants the
file while ``omni serve`` has it gets :class:`StoreBusy`, one clear line.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy.engine import make_url

from omnijourney.analytics.settings import AnalyticsSettings
from omnijourney.core.errors import OmniError

DEFAULT_FILE = "omni-analytics.duckdb"

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
        id BIGINT NOT NULL,
        type VARCHAR NOT NULL,
        event VARCHAR,            -- as sent
        name VARCHAR,             -- canonical (tracking.spec): one spelling per event
        customer_id VARCHAR,      -- the profile when the feed handed the event out (people resolves merges)
        anonymous_id VARCHAR,
        user_id VARCHAR,
        channel VARCHAR NOT NULL,
        store_code VARCHAR,
        ts TIMESTAMPTZ NOT NULL,
        received_at TIMESTAMPTZ,
        properties JSON
    )""",
    # the campaign the touch came from (Segment's context.campaign.name: analytics.js sets it from utm_campaign);
    # added after the first stores were made, so a column of its own at the end (writers insert BY NAME)
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS campaign VARCHAR",
    "CREATE TABLE IF NOT EXISTS people (merged_id VARCHAR PRIMARY KEY, survivor_id VARCHAR NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sync_state (key VARCHAR PRIMARY KEY, value VARCHAR)",
]


class StoreBusy(OmniError):
    """The DuckDB file is held by another process (``omni serve`` / ``omni demo``)."""

    status = 503
    code = "analytics_store_busy"


def default_path(database_url: str, settings: AnalyticsSettings) -> str:
    """The store's file: the setting; else ``<name>-analytics.duckdb`` beside an SQLite file; else
    ``omni-analytics.duckdb`` in the current directory (PostgreSQL, or an in-memory SQLite database)."""
    if settings.path:
        return settings.path
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db_file = Path(url.database)
        return str(db_file.with_name(f"{db_file.stem}-analytics.duckdb"))
    return DEFAULT_FILE


class Store:
    """One DuckDB database, opened once per process; :meth:`cursor` for each unit of work."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._db = duckdb.connect(path)
        except duckdb.IOException as exc:
            raise StoreBusy(f"the analytics store {path} is in use by another process ({_first_line(exc)}); "
                            "ask that process (the API under /api/v1/analytics), stop it, or use "
                            "OMNI_ANALYTICS__BACKEND=app on PostgreSQL", field="analytics.path") from None
        self.write_lock = threading.Lock()  # one writer (sync) at a time in this process
        with self.cursor() as cur:
            for ddl in SCHEMA:
                cur.execute(ddl)

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of this process's database instance, for one thread, closed after use."""
        cur = self._db.cursor()
        try:
            cur.execute("SET TimeZone = 'UTC'")
            yield cur
        finally:
            cur.close()

    def state(self, cur: duckdb.DuckDBPyConnection, key: str) -> str | None:
        row = cur.execute("SELECT value FROM sync_state WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    @staticmethod
    def set_state(cur: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
        cur.execute("INSERT OR REPLACE INTO sync_state VALUES (?, ?)", [key, value])

    def close(self) -> None:
        self._db.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def open_store(path: str) -> Store:
    """The process's :class:`Store` for ``path`` (opened on first use)."""
    key = str(Path(path).resolve()) if path != ":memory:" else path
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = Store(path)
        return store


def close_store(path: str) -> None:
    """Close the process's store for ``path`` (tests; a CLI command that is done with it)."""
    key = str(Path(path).resolve()) if path != ":memory:" else path
    with _stores_lock:
        store = _stores.pop(key, None)
    if store is not None:
        store.close()


def rows(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return cur.execute(sql, params or []).fetchall()
