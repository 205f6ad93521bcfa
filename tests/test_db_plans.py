"""Statements on the ingest path stay index-driven whatever PostgreSQL's statistics say.

Statistics go stale while a shop's tables grow (between ANALYZE runs, or always where autovacuum is off, as on
our benchmark machine). A plan chosen on them that scans a table makes every transaction slower as the table
grows: ingestion fell from 32,000 to under 20,000 events/s over 2,000,000 events before the profile update
was made plan-proof. The observable here is the transaction's own count of sequential scans of a table that
grew to 30,000 rows without an ANALYZE (the planner guesses it from its pages and the declared width of the
JSON columns, far too small).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from omnijourney.config import IdentitySettings
from omnijourney.customers.models import Customer
from omnijourney.customers.resolution import fetch_graph
from omnijourney.customers.service import find, profile, timeline
from omnijourney.db import Database, encode_update, remap, update_encoded
from omnijourney.tracking.models import Event
from omnijourney.tracking.service import stored_keys

T = TypeVar("T")
ROWS = 30_000
GROWN = {
    "customers": "INSERT INTO customers (id, traits, trait_meta, consent, merge_count, created_at, updated_at) "
                 "SELECT lpad(to_hex(g), 32, '0'), '{\"tier\": \"silver\"}', '{}', '{}', 0, now(), now() "
                 "FROM generate_series(1, :n) g",
    "identities": "INSERT INTO identities (type, value, customer_id, first_seen) "
                  "SELECT 'email', 'p' || g || '@x.io', lpad(to_hex(g), 32, '0'), now() FROM generate_series(1, :n) g "
                  "UNION ALL SELECT 'anonymous_id', 'a-' || g, lpad(to_hex(g), 32, '0'), now() "
                  "FROM generate_series(1, :n) g",
    "events": "INSERT INTO events (source_id, message_id, type, channel, timestamp, received_at, properties, "
              "customer_id) SELECT 'web', 'm-' || g, 'track', 'web', now(), now(), '{}', "
              "lpad(to_hex(g % 5000), 32, '0') FROM generate_series(1, :n) g",
}


@pytest.fixture
def grown(db: Database) -> Callable[..., None]:
    """Fill tables with ``ROWS`` rows each, never analysed (PostgreSQL only)."""
    if db.dialect != "postgresql":
        pytest.skip("a PostgreSQL planner trap: SQLite's planner has no statistics to go stale")

    def grow(*tables: str) -> None:
        with db.transaction() as s:
            for table in tables:
                s.execute(text(GROWN[table]), {"n": ROWS})
    return grow


def scanning(db: Database, table: str, work: Callable[[Session], T]) -> tuple[T, int]:
    """``work``'s result and how many sequential scans of ``table`` it made, in one transaction."""
    count = text("SELECT coalesce(seq_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = :t")
    with db.transaction() as s:
        before = s.execute(count, {"t": table}).scalar() or 0
        result = work(s)
        return result, (s.execute(count, {"t": table}).scalar() or 0) - before


def cid(n: int) -> str:
    return f"{n:032x}"


def test_a_few_profile_updates_never_scan_a_grown_table(db: Database, grown: Callable[..., None]) -> None:
    grown("customers")
    when = datetime(2026, 3, 1, tzinfo=UTC)
    changed = [{"id": cid(n), "traits": {"tier": "gold"}, "trait_meta": {}, "consent": {}, "merge_count": 0,
                "updated_at": when, "merged_into": None} for n in (7, 29_999)]

    def update(s: Session) -> Any:
        update_encoded(s, encode_update(Customer.__table__, changed, "postgresql"), "id")
        return s.execute(text("SHOW enable_seqscan")).scalar()  # the planner is itself again afterwards

    seqscan_setting, scans = scanning(db, "customers", update)

    assert (scans, seqscan_setting) == (0, "on")
    with db.transaction(write=False) as s:
        tiers = dict(s.execute(select(Customer.id, Customer.traits["tier"].as_string())
                               .where(Customer.id.in_([cid(7), cid(29_999), cid(8)]))).all())
    assert tiers == {cid(7): "gold", cid(29_999): "gold", cid(8): "silver"}


def test_the_duplicate_check_never_scans_a_grown_events_table(db: Database, grown: Callable[..., None]) -> None:
    grown("events")
    # a batch's worth of messageIds, as /v1/batch checks them: two stored before, the rest new
    keys = {("web", f"m-{n}") for n in (7, 29_999)} | {("web", f"new-{n}") for n in range(500)}

    found, scans = scanning(db, "events", lambda s: stored_keys(s, keys))

    assert (found, scans) == ({("web", "m-7"), ("web", "m-29999")}, 0)


def test_the_graph_read_never_scans_grown_identities(db: Database, grown: Callable[..., None]) -> None:
    grown("identities")
    wanted = {("email", "p7@x.io")} | {("anonymous_id", f"unknown-{n}") for n in range(500)}

    rows, scans = scanning(db, "identities", lambda s: fetch_graph(s, wanted))

    assert sorted((t, v) for t, v, _, _ in rows.identities) == [("anonymous_id", "a-7"), ("email", "p7@x.io")]
    assert scans == 0


def test_profiles_are_read_without_scanning_a_grown_customers_table(db: Database,
                                                                    grown: Callable[..., None]) -> None:
    grown("customers", "identities")
    wanted = {("anonymous_id", f"a-{n}") for n in range(1, 400)}

    rows, scans = scanning(db, "customers", lambda s: fetch_graph(s, wanted))

    assert (len(rows.profiles), scans) == (399, 0)


def test_a_merge_re_points_a_grown_events_table_without_scanning_it(db: Database,
                                                                    grown: Callable[..., None]) -> None:
    grown("events")

    def merge(s: Session) -> list[Any]:
        remap(s, Event.__table__, "customer_id", {cid(7): cid(8)})
        return s.execute(text("SELECT customer_id, count(*) FROM events WHERE customer_id IN (:a, :b) "
                              "GROUP BY customer_id"), {"a": cid(7), "b": cid(8)}).all()

    owners, scans = scanning(db, "events", merge)

    assert (owners, scans) == ([(cid(8), 12)], 0)


def test_the_customer_360_reads_never_scan_grown_tables(db: Database, grown: Callable[..., None]) -> None:
    # what a call-center agent opens: the lookup by email, the profile with its channels, the timeline
    grown("customers", "identities", "events")
    settings = IdentitySettings()

    def open_360(s: Session) -> tuple[Any, ...]:
        found = find(s, id_type="email", value="P7@x.io", settings=settings)
        p360 = profile(s, customer_id=cid(7))
        _, page, _ = timeline(s, customer_id=cid(7), limit=5)
        return [c.id for c in found], p360.events, len(page)

    for table in ("customers", "identities", "events"):
        result, scans = scanning(db, table, open_360)
        assert (result, table, scans) == (([cid(7)], 6, 5), table, 0)
