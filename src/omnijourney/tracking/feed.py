"""The event feed: every committed event exactly once, for consumers that follow the timeline incrementally
(analytics sync, journeys, outbound integrations).

Event ids come from a sequence, and sequence order is not commit order: a transaction holding id 100 can commit
after one holding id 101, so a reader of "id > last seen" would skip event 100. The feed's cursor is a watermark
id plus, on PostgreSQL, the snapshot it was read in (``txid_current_snapshot()``). Each read returns

* the events with an id above the watermark (primary-key order, up to ``limit``), and
* the events at or below it whose transaction the previous read's snapshot could not see (in flight then,
  committed now): found by the writing transaction's id (``events.txid``, a BRIN index: only the recent band of
  transactions is ever asked for), and returned whatever the limit.

Both come from one statement, so from one snapshot, and the new cursor holds that snapshot: nothing committed is
skipped, nothing is returned twice. SQLite's writers are serial (``BEGIN IMMEDIATE``), so ids are handed out in
commit order and the watermark alone suffices (as long as the newest event is never deleted: SQLite would hand its
id out again, below a reader's watermark; erasure must keep that in mind).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from omnijourney.core.cursors import bad_cursor, decode_cursor, encode_cursor
from omnijourney.core.errors import Invalid
from omnijourney.tracking.models import Event

MAX_LIMIT = 1000
_COLUMNS = [c for c in Event.__table__.columns if c.name != "txid"]

# one statement, one snapshot: the late events below the watermark, then the next ones above it, each row with the
# snapshot (one row of NULLs when there are none). The late part must not walk the primary key from the start
# (``id + 0``): only the BRIN band of recent transactions.
_PG_FEED = """
WITH snap AS (SELECT txid_current_snapshot() AS s),
late AS (
    SELECT 0 AS part, {cols}, e.txid FROM events e
    WHERE CAST(:prev AS txid_snapshot) IS NOT NULL
      AND e.txid >= txid_snapshot_xmin(CAST(:prev AS txid_snapshot)) AND e.id + 0 <= :after
      AND NOT txid_visible_in_snapshot(e.txid, CAST(:prev AS txid_snapshot))
),
fresh AS (SELECT 1 AS part, {cols}, e.txid FROM events e WHERE e.id > :after ORDER BY e.id LIMIT :limit)
SELECT CAST(snap.s AS text) AS snapshot, x.* FROM snap
LEFT JOIN (SELECT * FROM late UNION ALL SELECT * FROM fresh) x ON true
"""


@dataclass(slots=True)
class FeedPage:
    """Events in the order to process them, and the cursor to read on from (also when there were none)."""

    events: list[dict[str, Any]]
    cursor: str
    more: bool  # the page was cut at ``limit``: read again at once


def _parse(cursor: str | None, postgresql: bool) -> tuple[int, str | None]:
    if cursor is None:
        return 0, None
    parts = decode_cursor(cursor, 3)
    if parts[0] != "feed":
        raise bad_cursor()
    try:
        after = int(parts[1])
    except ValueError:
        raise bad_cursor() from None
    snapshot = parts[2] or None
    if snapshot is not None and (not postgresql or not all(p.replace(",", "").isdigit() or p == ""
                                                           for p in snapshot.split(":"))):
        raise bad_cursor()
    return after, snapshot


def read(session: Session, *, cursor: str | None = None, limit: int = 500) -> FeedPage:
    """The events committed since ``cursor`` (from the beginning without one)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be from 1 to {MAX_LIMIT}", field="limit")
    postgresql = session.get_bind().dialect.name == "postgresql"
    after, previous = _parse(cursor, postgresql)
    if not postgresql:
        rows = session.execute(select(*_COLUMNS).where(Event.id > after).order_by(Event.id).limit(limit)).all()
        events = [dict(r._mapping) for r in rows]
        last = events[-1]["id"] if events else after
        return FeedPage(events, encode_cursor("feed", last, ""), len(rows) == limit)
    cols = ", ".join(f"e.{c.name}" for c in _COLUMNS)
    stmt = text(_PG_FEED.format(cols=cols))
    session.execute(text("SET LOCAL enable_seqscan = off"))  # see _PG_FEED: stale statistics must not pick a scan
    result = session.execute(stmt, {"prev": previous, "after": after, "limit": limit})
    rows = result.mappings().all()
    session.execute(text("SET LOCAL enable_seqscan TO DEFAULT"))
    snapshot = rows[0]["snapshot"]
    late = sorted((r for r in rows if r["part"] == 0), key=lambda r: (r["txid"], r["id"]))
    fresh = sorted((r for r in rows if r["part"] == 1), key=lambda r: r["id"])
    events = [_event(r) for r in (*late, *fresh)]
    last = fresh[-1]["id"] if fresh else after
    return FeedPage(events, encode_cursor("feed", last, snapshot), len(fresh) == limit)


_RESULT = {c.name: c.type for c in _COLUMNS}


def _event(row: Any) -> dict[str, Any]:
    """A feed row as the ORM would give it (zone-aware times)."""
    out = {}
    for name, ctype in _RESULT.items():
        value = row[name]
        if value is not None and hasattr(ctype, "process_result_value"):
            value = ctype.process_result_value(value, None)
        out[name] = value
    return out
