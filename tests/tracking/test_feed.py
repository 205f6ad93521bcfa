"""The event feed: every committed event exactly once, whatever order transactions commit in."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow
from omnijourney.db import Database
from omnijourney.tracking import feed
from omnijourney.tracking.models import Event
from tests.conftest import make_key


def _event(name: str) -> dict:
    now = utcnow()
    return {"source_id": None, "message_id": new_id(), "type": "track", "event": name, "customer_id": None,
            "channel": "web", "timestamp": now, "received_at": now, "properties": {}}


def _add(session, name: str) -> None:
    session.execute(insert(Event.__table__), [_event(name)])


def _read(db: Database, cursor: str | None, limit: int = 500) -> feed.FeedPage:
    with db.transaction(write=False) as s:
        return feed.read(s, cursor=cursor, limit=limit)


def _names(page: feed.FeedPage) -> list[str]:
    return [e["event"] for e in page.events]


def test_a_transaction_that_commits_after_a_later_id_is_not_skipped(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite's writers are serial: ids are handed out in commit order")
    slow = db.begin()
    _add(slow, "Order Placed")  # takes the lower id, commits last
    slow.flush()
    with db.transaction() as fast:
        _add(fast, "Product Viewed")
    first = _read(db, None)
    assert _names(first) == ["Product Viewed"]
    assert _names(_read(db, first.cursor)) == []  # nothing new, and the one in flight is not visible yet
    slow.commit()
    slow.close()
    second = _read(db, first.cursor)
    assert _names(second) == ["Order Placed"]  # committed late, below the watermark: still delivered
    assert _names(_read(db, second.cursor)) == []  # and only once
    with db.transaction() as s:
        _add(s, "Cart Viewed")
    assert _names(_read(db, second.cursor)) == ["Cart Viewed"]


def test_a_rolled_back_transaction_leaves_no_hole_and_no_event(db: Database) -> None:
    failed = db.begin()
    _add(failed, "Order Placed")
    failed.flush()
    failed.rollback()
    failed.close()
    with db.transaction() as s:
        _add(s, "Product Viewed")
    page = _read(db, None)
    assert _names(page) == ["Product Viewed"]
    assert _names(_read(db, page.cursor)) == []


def test_pages_follow_each_other_without_gaps_or_repeats(db: Database) -> None:
    with db.transaction() as s:
        for i in range(7):
            _add(s, "Product Viewed" if i % 2 else "Product Added")
    seen, cursor, pages = [], None, 0
    while True:
        page = _read(db, cursor, limit=3)
        seen += [e["id"] for e in page.events]
        cursor, pages = page.cursor, pages + 1
        if not page.more:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7 and seen == sorted(seen)


def test_feed_api(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        _add(s, "Product Viewed")
    reader = {"Authorization": f"Bearer {make_key(db, 'events:read')}"}
    r = client.get("/api/v1/events/feed", params={"limit": 10}, headers=reader)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [e["event"] for e in body["events"]] == ["Product Viewed"] and body["more"] is False
    again = client.get("/api/v1/events/feed", params={"cursor": body["cursor"]}, headers=reader).json()
    assert again["events"] == []
    r = client.get("/api/v1/events/feed", params={"cursor": "garbage"}, headers=reader)
    assert (r.status_code, r.json()["field"]) == (400, "cursor") or (r.status_code, r.json()["field"]) == (
        422, "cursor")
    no_scope = {"Authorization": f"Bearer {make_key(db, 'carts:read')}"}
    assert client.get("/api/v1/events/feed", headers=no_scope).status_code == 403
