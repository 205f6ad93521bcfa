"""The customer list and its searches stay index-driven on grown, never-analysed tables (see tests/test_db_plans.py).

A plan that scans ``customers`` (or walks all of an index) makes the console's search box slower as the shop grows:
counted here as the transaction's sequential scans and the rows it fetched, on 30,000 profiles whose statistics
PostgreSQL has never gathered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from omnijourney.config import IdentitySettings
from omnijourney.customers.service import CustomerSearch, search
from omnijourney.db import Database

ROWS = 30_000
# every tenth profile named (last names Name0..Name2999), every profile an email and every other one a phone; the
# profiles get older as n grows, and every 100th is merged away
GROW = [
    "INSERT INTO customers (id, merged_into, traits, trait_meta, consent, merge_count, created_at, updated_at) "
    "SELECT lpad(to_hex(g), 32, '0'), CASE WHEN g % 100 = 0 THEN lpad(to_hex(g + 1), 32, '0') END, "
    "CASE WHEN g % 10 = 0 THEN jsonb_build_object('first_name', 'First' || g, 'last_name', 'Name' || (g / 10)) "
    "ELSE '{}'::jsonb END, '{}', '{}', 0, now() - g * interval '1 minute', now() FROM generate_series(1, :n) g",
    "INSERT INTO identities (type, value, customer_id, first_seen) "
    "SELECT 'email', 'p' || g || '@x.io', lpad(to_hex(g), 32, '0'), now() FROM generate_series(1, :n) g "
    "UNION ALL SELECT 'phone', '+1415' || lpad(g::text, 7, '0'), lpad(to_hex(g), 32, '0'), now() "
    "FROM generate_series(1, :n, 2) g",
]
COUNTERS = text("SELECT relname, coalesce(seq_scan, 0), coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
                "WHERE relname IN ('customers', 'identities')")


@pytest.fixture
def grown(db: Database) -> Database:
    if db.dialect != "postgresql":
        pytest.skip("a PostgreSQL planner trap: SQLite's planner has no statistics to go stale")
    with db.transaction() as s:
        for statement in GROW:
            s.execute(text(statement), {"n": ROWS})
    return db


def reads(db: Database, work: Callable[[Session], Any]) -> tuple[Any, dict[str, tuple[int, int]]]:
    """``work``'s result and, per table, the sequential scans it made and the rows it fetched through indexes."""
    with db.transaction() as s:
        before = {t: (seq, fetched) for t, seq, fetched in s.execute(COUNTERS)}
        result = work(s)
        after = {t: (seq, fetched) for t, seq, fetched in s.execute(COUNTERS)}
    return result, {t: (after[t][0] - before.get(t, (0, 0))[0], after[t][1] - before.get(t, (0, 0))[1])
                    for t in after}


def cid(n: int) -> str:
    return f"{n:032x}"


@pytest.mark.parametrize(("query", "expected"), [
    (CustomerSearch(), [1, 2, 3]),                                    # the newest, a range of ix_customers_newest
    (CustomerSearch(name="name29"), [290, 2910, 2920, 2930]),          # Name29, Name291... (Name290: merged)
    (CustomerSearch(name="first2999"), [29990]),
    (CustomerSearch(email_prefix="p2999"), [2999, 29990, 29991, 29992]),
    (CustomerSearch(phone_prefix="+1 415 002 999"), [29991, 29993, 29995, 29997]),
])
def test_the_customer_list_and_its_searches_read_only_what_they_show(grown: Database, query: CustomerSearch,
                                                                   expected: list[int]) -> None:
    def page(s: Session) -> tuple[list[str], str | None]:
        rows, next_cursor = search(s, query=query, settings=IdentitySettings(), limit=4)
        if next_cursor:  # the second page too
            more, _ = search(s, query=query, settings=IdentitySettings(), limit=4, cursor=next_cursor)
            rows += more
        return [r.id for r in rows], next_cursor

    (ids, _), counters = reads(grown, page)

    assert ids[:len(expected)] == [cid(n) for n in expected]
    for table, (seq_scans, fetched) in counters.items():
        assert (table, seq_scans) == (table, 0)
        assert fetched < 1000, (table, fetched)  # the matches (a few hundred at most), not 30,000 profiles


@pytest.mark.parametrize("query", [CustomerSearch(), CustomerSearch(name="ann sm"), CustomerSearch(email_prefix="ann"),
                                   CustomerSearch(phone_prefix="+1 415 555")], ids=repr)
def test_sqlite_reads_the_list_and_its_searches_through_their_indexes(db: Database, query: CustomerSearch) -> None:
    # SQLite's planner has no statistics either (nobody runs ANALYZE): "merged_into IS NULL" looks selective to it,
    # and ix_customers_merged_into would read every listed profile
    if db.dialect != "sqlite":
        pytest.skip("the PostgreSQL plans are counted above")
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.transaction(write=False) as s:
            _, cursor = search(s, query=query, settings=IdentitySettings(), limit=1)
            search(s, query=query, settings=IdentitySettings(), limit=1, cursor=cursor or "YzF8MjAyNi0wMy0wMXx4")
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    with db.engine.connect() as conn:
        plans = [" / ".join(row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
                 for sql, params in statements]
    assert len(plans) == 2
    for plan in plans:
        assert "ix_customers_merged_into" not in plan and "SCAN customers /" not in f"{plan} /", plan
        assert ("ix_customers_newest" in plan) == (query == CustomerSearch()), plan
