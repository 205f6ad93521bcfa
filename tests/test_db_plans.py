"""Statements on the ingest path stay index-driven whatever PostgreSQL's statistics say.

Statistics go stale while a shop's tables grow (between ANALYZE runs, or always where autovacuum is off, as on
our benchmark machine). A plan chosen on them that scans a table makes every transaction slower as the table
grows: ingestion fell from 29,000 to 18,000 events/s over 2,000,000 events before the profile update was
made plan-proof. The observable here is the transaction's own count of sequential scans of the table.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from omnijourney.customers.models import Customer
from omnijourney.customers.resolution import fetch_graph
from omnijourney.db import Database, encode_update, remap, update_encoded
from omnijourney.tracking.models import Event
from omnijourney.tracking.service import stored_keys


def seq_scans(session, table: str) -> int:
    return session.execute(text("SELECT coalesce(seq_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = :t"),
                           {"t": table}).scalar() or 0


def test_a_few_profile_updates_never_scan_a_grown_table(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("a PostgreSQL planner trap: SQLite's planner has no statistics to go stale")
    with db.transaction() as s:
        # 30,000 profiles the planner has never been told about (no ANALYZE since): it guesses the table from
        # its pages and the declared width of the JSON columns, far too small
        s.execute(text("INSERT INTO customers (id, merged_into, traits, trait_meta, consent, merge_count, created_at, "
                       "updated_at) SELECT lpad(to_hex(g), 32, '0'), NULL, '{\"tier\": \"silver\"}', '{}', '{}', 0, "
                       "now(), now() FROM generate_series(1, 30000) g"))
    when = datetime(2026, 3, 1, tzinfo=UTC)
    changed = [{"id": f"{n:032x}", "traits": {"tier": "gold"}, "trait_meta": {}, "consent": {}, "merge_count": 0,
                "updated_at": when, "merged_into": None} for n in (7, 29_999)]

    with db.transaction() as s:
        before = seq_scans(s, "customers")
        update_encoded(s, encode_update(Customer.__table__, changed, "postgresql"), "id")
        scanned = seq_scans(s, "customers") - before
        # the planner is itself again for the rest of the transaction
        assert s.execute(text("SHOW enable_seqscan")).scalar() == "on"

    assert scanned == 0
    with db.transaction(write=False) as s:
        tiers = dict(s.execute(select(Customer.id, Customer.traits["tier"].as_string())
                               .where(Customer.id.in_([c["id"] for c in changed] + [f"{8:032x}"]))).all())
    assert tiers == {f"{7:032x}": "gold", f"{29_999:032x}": "gold", f"{8:032x}": "silver"}


def test_the_duplicate_check_never_scans_a_grown_events_table(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("a PostgreSQL planner trap: SQLite's planner has no statistics to go stale")
    with db.transaction() as s:
        s.execute(text("INSERT INTO events (source_id, message_id, type, channel, timestamp, received_at, properties) "
                       "SELECT 'web', 'm-' || g, 'track', 'web', now(), now(), '{}' FROM generate_series(1, 30000) g"))
    # a batch's worth of messageIds, as /v1/batch checks them: two stored before, the rest new
    keys = {("web", f"m-{n}") for n in (7, 29_999)} | {("web", f"new-{n}") for n in range(500)}

    with db.transaction() as s:
        before = seq_scans(s, "events")
        found = stored_keys(s, keys)
        scanned = seq_scans(s, "events") - before

    assert found == {("web", "m-7"), ("web", "m-29999")}
    assert scanned == 0


def test_the_graph_read_never_scans_grown_identities(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("a PostgreSQL planner trap: SQLite's planner has no statistics to go stale")
    with db.transaction() as s:
        s.execute(text("INSERT INTO identities (type, value, customer_id, first_seen) SELECT 'email', "
                       "'p' || g || '@x.io', lpad(to_hex(g), 32, '0'), now() FROM generate_series(1, 30000) g"))
        s.execute(text("INSERT INTO identities (type, value, customer_id, first_seen) SELECT 'anonymous_id', "
                       "'a-' || g, lpad(to_hex(g), 32, '0'), now() FROM generate_series(1, 30000) g"))
    wanted = {("email", "p7@x.io")} | {("anonymous_id", f"unknown-{n}") for n in range(500)}

    with db.transaction() as s:
        before = seq_scans(s, "identities")
        rows = fetch_graph(s, wanted)
        scanned = seq_scans(s, "identities") - before

    assert sorted((t, v) for t, v, _, _ in rows.identities) == [("anonymous_id", "a-7"), ("email", "p7@x.io")]
    assert scanned == 0


def test_a_merge_re_points_a_grown_events_table_without_scanning_it(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("a PostgreSQL planner trap: SQLite's planner has no statistics to go stale")
    with db.transaction() as s:
        s.execute(text("INSERT INTO events (source_id, message_id, type, channel, timestamp, received_at, properties, "
                       "customer_id) SELECT 'web', 'm-' || g, 'track', 'web', now(), now(), '{}', "
                       "lpad(to_hex(g % 5000), 32, '0') FROM generate_series(1, 30000) g"))
    loser, survivor = f"{7:032x}", f"{8:032x}"

    with db.transaction() as s:
        before = seq_scans(s, "events")
        remap(s, Event.__table__, "customer_id", {loser: survivor})
        scanned = seq_scans(s, "events") - before
        owners = s.execute(text("SELECT customer_id, count(*) FROM events WHERE customer_id IN (:a, :b) "
                                "GROUP BY customer_id"), {"a": loser, "b": survivor}).all()

    assert owners == [(survivor, 12)]
    assert scanned == 0


def test_profiles_are_read_without_scanning_a_grown_customers_table(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("a PostgreSQL planner trap: SQLite's planner has no statistics to go stale")
    with db.transaction() as s:
        s.execute(text("INSERT INTO customers (id, traits, trait_meta, consent, merge_count, created_at, updated_at) "
                       "SELECT lpad(to_hex(g), 32, '0'), '{}', '{}', '{}', 0, now(), now() "
                       "FROM generate_series(1, 30000) g"))
        s.execute(text("INSERT INTO identities (type, value, customer_id, first_seen) SELECT 'anonymous_id', "
                       "'a-' || g, lpad(to_hex(g), 32, '0'), now() FROM generate_series(1, 30000) g"))
    wanted = {("anonymous_id", f"a-{n}") for n in range(1, 400)}

    with db.transaction() as s:
        before = seq_scans(s, "customers")
        rows = fetch_graph(s, wanted)
        scanned = seq_scans(s, "customers") - before

    assert len(rows.profiles) == 399
    assert scanned == 0
